//! `logoutd serve` nodes as child processes of the benchmark, so that each node's CPU time
//! and memory can be read from `/proc/<pid>` and summed. Each node listens on 127.0.0.1:0 and
//! reports its address in its JSON "logoutd listening" log line.

use super::proc_stats;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStderr, Command};

/// Longest wait for a node to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What every node shares.
pub struct NodeConfig<'a> {
    /// Store URL (one PostgreSQL database for all nodes).
    pub store: &'a str,
    /// Signing keys directory.
    pub keys_dir: &'a Path,
    /// Working directory (no config file is read from it).
    pub work_dir: &'a Path,
    /// The `iss` of every token.
    pub issuer: &'a str,
    /// API bearer token.
    pub api_token: &'a str,
    /// Whether the SSF transmitter is on (`--ssf true`).
    pub ssf: bool,
}

/// One running node.
pub struct Node {
    child: Child,
    /// Process id, for `/proc` figures.
    pub pid: u32,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// Starts `n` nodes one after the other (each runs the migrations at start).
pub async fn start(config: &NodeConfig<'_>, n: usize) -> anyhow::Result<Vec<Node>> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(Node::start(config).await?);
    }
    Ok(nodes)
}

/// The log filter of a node: the caller's `LOGOUTD_LOG` (default `info`), but always the
/// "listening" line.
fn log_filter() -> String {
    let base = std::env::var("LOGOUTD_LOG").unwrap_or_else(|_| "info".to_owned());
    format!("{base},logoutd::cli::serve=info")
}

impl Node {
    async fn start(config: &NodeConfig<'_>) -> anyhow::Result<Self> {
        let mut child = Command::new(crate::logoutd_binary()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--store", config.store])
            .args(["--issuer", config.issuer, "--allow-insecure-rp-urls"])
            .arg("--keys-dir")
            .arg(config.keys_dir)
            .args(["--ssf", if config.ssf { "true" } else { "false" }])
            .env("LOGOUTD_API_TOKEN", config.api_token)
            .env("LOGOUTD_LOG_FORMAT", "json")
            .env("LOGOUTD_LOG", log_filter())
            .env_remove("LOGOUTD_CONFIG")
            .current_dir(config.work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("node exited at once"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("node has no stderr"))?;
        let addr = tokio::time::timeout(START_TIMEOUT, listening(stderr))
            .await
            .map_err(|_| anyhow::anyhow!("node did not report its address"))??;
        Ok(Self {
            child,
            pid,
            base: format!("http://{addr}"),
        })
    }

    /// Kills the node and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Reads log lines until "logoutd listening", returns its address, and keeps draining the
/// rest in the background so the node never blocks on a full pipe.
pub(super) async fn listening(stderr: ChildStderr) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stderr).lines();
    while let Some(line) = lines.next_line().await? {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"] == "logoutd listening"
            && let Some(addr) = fields["addr"].as_str()
        {
            let addr = addr.to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(addr);
        }
        if entry["level"] == "ERROR" {
            eprintln!("node: {line}");
        }
    }
    anyhow::bail!("node exited before listening")
}

/// CPU time consumed so far by all `pids`, summed.
pub fn cpu_total(pids: &[u32]) -> std::time::Duration {
    pids.iter()
        .filter_map(|&pid| proc_stats::cpu_time_of(pid))
        .sum()
}

/// The largest peak RSS among `pids`, KiB.
pub fn peak_rss_max(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&pid| proc_stats::peak_rss_kib_of(pid))
        .max()
        .unwrap_or(0)
}
