//! `MockRpProcess`: the real `logoutd mock-rp` binary as a child process on `127.0.0.1:0`,
//! its address read from the `listening on http://ADDR` line it prints on stdout, its
//! receipts read back from `GET /receipts?format=json`.

use logoutd_core::Receipt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for the process to start, or for receipts to arrive.
pub const WAIT: Duration = Duration::from_secs(30);

/// Numbers the receipts files of the mocks started by one test binary.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// What a mock RP expects: the OP it trusts and the client it is.
pub struct MockRpArgs<'a> {
    /// `--issuer`.
    pub issuer: &'a str,
    /// `--jwks-uri`.
    pub jwks_uri: &'a str,
    /// `--client-id`.
    pub client_id: &'a str,
    /// Further flags: faults, `--accept-typ`, ...
    pub extra: &'a [&'a str],
}

/// A running `logoutd mock-rp`, killed when dropped.
pub struct MockRpProcess {
    _child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The `--receipts` file.
    pub receipts_file: PathBuf,
    http: reqwest::Client,
}

impl MockRpProcess {
    /// Starts `logoutd mock-rp` with its receipts file under `dir`, and waits until it
    /// listens.
    pub async fn start(dir: &Path, args: &MockRpArgs<'_>) -> Self {
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let receipts_file = dir.join(format!("receipts-{n}-{}.jsonl", args.client_id));
        let mut child = Command::new(env!("CARGO_BIN_EXE_logoutd"))
            .args(["mock-rp", "--listen", "127.0.0.1:0"])
            .args(["--issuer", args.issuer, "--jwks-uri", args.jwks_uri])
            .args(["--client-id", args.client_id])
            .arg("--receipts")
            .arg(&receipts_file)
            .args(args.extra)
            .env_remove("LOGOUTD_CONFIG")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn logoutd mock-rp");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("logoutd mock-rp did not report its address")
            .unwrap()
            .expect("logoutd mock-rp exited before listening");
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected mock-rp output: {line}"))
            .to_owned();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self {
            _child: child,
            base,
            receipts_file,
            http,
        }
    }

    /// The URL of `path` on the mock, e.g. the backchannel logout URL to register.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every receipt so far, oldest first.
    pub async fn receipts(&self) -> Vec<Receipt> {
        self.receipts_after(0).await
    }

    /// The receipts once at least `min` exist (the mock holds the request until then, or
    /// until its own wait limit).
    async fn receipts_after(&self, min: usize) -> Vec<Receipt> {
        let path = format!(
            "/receipts?format=json&min={min}&wait_ms={}",
            WAIT.as_millis()
        );
        let res = self.http.get(self.url(&path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        res.json().await.unwrap()
    }

    /// Waits until the receipts satisfy `done`, then returns them; panics after [`WAIT`].
    /// Each round asks the mock for one receipt more than last seen, and the mock answers
    /// when it arrives: waiting on the event, not on a timer.
    pub async fn wait_until(&self, mut done: impl FnMut(&[Receipt]) -> bool) -> Vec<Receipt> {
        let mut last = Vec::new();
        let waited = tokio::time::timeout(WAIT, async {
            last = self.receipts().await;
            while !done(&last) {
                last = self.receipts_after(last.len() + 1).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "receipts never matched; last: {last:#?}");
        last
    }

    /// Waits until there are at least `n` receipts.
    pub async fn wait_receipts(&self, n: usize) -> Vec<Receipt> {
        self.wait_until(|r| r.len() >= n).await
    }
}
