//! `ServeProcess`: the real `logoutd serve` binary as a child process, for crash and
//! shutdown tests. Its JSON logs on stderr give the bound address.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const API_TOKEN: &str = "process-test-token-0123456789abcdef";

pub struct ServeProcess {
    child: Child,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl ServeProcess {
    /// Starts `logoutd serve` on 127.0.0.1:0 over `store`, with keys in `dir/keys`, plus
    /// `extra` flags, and waits for its "listening" log line.
    pub async fn start(dir: &Path, store: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logoutd"));
        cmd.arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--store",
                store,
                "--allow-insecure-rp-urls",
            ])
            .arg("--keys-dir")
            .arg(dir.join("keys"))
            .args(extra)
            .current_dir(dir)
            .env("LOGOUTD_API_TOKEN", API_TOKEN)
            .env("LOGOUTD_LOG_FORMAT", "json")
            .env("LOGOUTD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn logoutd serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(forward_logs(stderr, tx));
        let addr = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("logoutd serve did not report its address")
            .expect("logoutd serve exited before listening");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self { child, addr, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Calls the management API; returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(json!(text)))
    }

    /// The deliveries matching the delivery API's `query` (first page).
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let path = format!("/api/v2/logout-deliveries?{query}");
        let (status, reply) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{reply}");
        reply["deliveries"].as_array().unwrap().clone()
    }

    /// Waits, bounded, until the deliveries matching `query` satisfy `done`, reading them
    /// every 10 ms.
    pub async fn wait_deliveries(
        &self,
        query: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut last = Vec::new();
        let waited = tokio::time::timeout(super::mock_rp_process::WAIT, async {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                last = self.deliveries(query).await;
                if done(&last) {
                    return;
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "deliveries never matched; last: {last:#?}");
        last
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGKILL: no cleanup at all.
    pub async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("logoutd did not exit after SIGTERM")
            .unwrap()
    }
}

/// Reads JSON log lines; reports the "logoutd listening" address, echoes warnings and errors.
async fn forward_logs(
    stderr: tokio::process::ChildStderr,
    tx: tokio::sync::oneshot::Sender<SocketAddr>,
) {
    let mut tx = Some(tx);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            eprintln!("[serve] {line}");
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"] == "logoutd listening"
            && let (Some(tx), Some(addr)) = (tx.take(), fields["addr"].as_str())
        {
            let _ = tx.send(addr.parse().unwrap());
        }
        if matches!(entry["level"].as_str(), Some("WARN" | "ERROR")) {
            eprintln!("[serve] {line}");
        }
    }
}
