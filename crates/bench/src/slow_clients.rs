//! `bench slow-clients`: a `logoutd serve` child process under a small descriptor limit
//! (`ulimit -n`, through `sh`), and many TCP connections that each send half a request's
//! headers and stall. The figures are the seconds, counted from the moment every stalled
//! connection is open, until `GET /healthz` answers 200 and `POST /api/v2/logout-events`
//! answers at all (404 for its unknown session), with the server's peak descriptor count.
//! The stalled connections stay open on this side for the whole measurement.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Pause between probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Longest a probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a stalled connection's connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// What every stalled connection sends: a request line and part of a header, no end.
const HALF_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Stalled: ";

/// One `bench slow-clients` run.
#[derive(Debug, Clone)]
pub struct SlowClientsScenario {
    /// Stalled connections opened.
    pub connections: usize,
    /// The server's descriptor limit.
    pub nofile: u64,
    /// How long to keep probing.
    pub limit: Duration,
    /// The `logoutd` binary to serve with.
    pub binary: PathBuf,
    /// Flags added to `serve` (none: the defaults are measured).
    pub serve_args: Vec<String>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct SlowClientsReport {
    /// The scenario.
    pub scenario: SlowClientsScenario,
    /// Stalled connections whose connect succeeded.
    pub opened: usize,
    /// Seconds until `/healthz` answered 200, if it did within the limit.
    pub healthz: Option<Duration>,
    /// Seconds until `POST /api/v2/logout-events` answered anything but 503.
    pub logout_events: Option<Duration>,
    /// Probes answered 503 (refused past the connection cap).
    pub refused: usize,
    /// Stalled connections the server had closed (or answered) by the end.
    pub closed_by_server: usize,
    /// The server's largest descriptor count seen.
    pub peak_fds: usize,
}

impl std::fmt::Display for SlowClientsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.scenario;
        let after = |d: Option<Duration>| match d {
            Some(d) => format!("{:.2}s", d.as_secs_f64()),
            None => format!("none(>{}s)", s.limit.as_secs()),
        };
        write!(
            f,
            "slow-clients connections={} nofile={} opened={} healthz_after={} logout_events_after={} refused_503={} closed_by_server={} server_fds_peak={}",
            s.connections,
            s.nofile,
            self.opened,
            after(self.healthz),
            after(self.logout_events),
            self.refused,
            self.closed_by_server,
            self.peak_fds,
        )
    }
}

/// Runs the scenario against a fresh `serve` on a memory store.
pub async fn run(scenario: SlowClientsScenario) -> anyhow::Result<SlowClientsReport> {
    let dir = super::deliver::scratch()?;
    let token = format!(
        "{}{}",
        logoutd_core::random_token(),
        logoutd_core::random_token()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n "$0" && exec "$@""#)
        .arg(scenario.nofile.to_string())
        .arg(&scenario.binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory://"])
        .arg("--keys-dir")
        .arg(dir.0.join("keys"))
        .args(&scenario.serve_args)
        .env("LOGOUTD_API_TOKEN", &token)
        .env("LOGOUTD_LOG_FORMAT", "json")
        .env("LOGOUTD_LOG", "warn,logoutd::cli::serve=info")
        .env_remove("LOGOUTD_CONFIG")
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("serve exited at once"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("serve has no stderr"))?;
    let addr = super::nodes::listening(stderr).await?;
    anyhow::ensure!(
        probe(&addr, &healthz()).await == Some(200),
        "/healthz did not answer before the stalled connections"
    );
    let mut stalled = Vec::with_capacity(scenario.connections);
    for _ in 0..scenario.connections {
        if let Some(stream) = stall(&addr).await {
            stalled.push(stream);
        }
    }
    let measured = measure(&scenario, &addr, &token, pid).await;
    let closed_by_server = closed(&mut stalled).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(SlowClientsReport {
        opened: stalled.len(),
        closed_by_server,
        ..measured
    })
}

/// Probes until both routes answered or the limit passed.
async fn measure(
    scenario: &SlowClientsScenario,
    addr: &str,
    token: &str,
    pid: u32,
) -> SlowClientsReport {
    let started = Instant::now();
    let end = logout_event(token);
    let mut report = SlowClientsReport {
        scenario: scenario.clone(),
        opened: 0,
        healthz: None,
        logout_events: None,
        refused: 0,
        closed_by_server: 0,
        peak_fds: 0,
    };
    while started.elapsed() < scenario.limit
        && (report.healthz.is_none() || report.logout_events.is_none())
    {
        report.peak_fds = report.peak_fds.max(fds(pid));
        if report.healthz.is_none() {
            match probe(addr, &healthz()).await {
                Some(200) => report.healthz = Some(started.elapsed()),
                Some(503) => report.refused += 1,
                _ => {}
            }
        }
        if report.logout_events.is_none() {
            match probe(addr, &end).await {
                Some(503) => report.refused += 1,
                Some(_) => report.logout_events = Some(started.elapsed()),
                None => {}
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    report
}

fn healthz() -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec()
}

fn logout_event(token: &str) -> Vec<u8> {
    let body = r#"{"session_id":"bench-no-such-session","initiator":"rp-logout"}"#;
    format!(
        "POST /api/v2/logout-events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` on a new connection; the status answered within [`PROBE_TIMEOUT`].
async fn probe(addr: &str, request: &[u8]) -> Option<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(request).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

/// Opens one connection and sends half a request.
async fn stall(addr: &str) -> Option<TcpStream> {
    let open = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(HALF_REQUEST).await.ok()?;
        Some(stream)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .ok()
        .flatten()
}

/// How many of `stalled` the server has closed or answered (a read that does not block).
async fn closed(stalled: &mut [TcpStream]) -> usize {
    let mut count = 0;
    for stream in stalled {
        let mut byte = [0u8; 1];
        // Data (a 503), end of file or a reset: the server let go of it.
        if tokio::time::timeout(Duration::ZERO, stream.read(&mut byte))
            .await
            .is_ok()
        {
            count += 1;
        }
    }
    count
}

/// The descriptors `pid` holds.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}
