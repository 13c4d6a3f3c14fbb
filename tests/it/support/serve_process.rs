//! `ServeProcess`: the real `logoutd serve` binary on `127.0.0.1:0` over a store in a temporary
//! directory, with its bound address read from the JSON "logoutd listening" log line.

use super::app::API_TOKEN;
use logoutd_core::{Delivery, DeliveryFilter};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for the process to start or stop.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite store URL a [`ServeProcess`] under `dir` uses.
pub fn store_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("db").display())
}

/// Every delivery row in the store under `dir`, read directly (after `serve` has exited).
pub async fn stored_deliveries(dir: &Path) -> Vec<Delivery> {
    let stores = logoutd_core::open_store(&store_url(dir)).await.unwrap();
    let mut rows = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let page = stores
            .deliveries
            .list_deliveries(&DeliveryFilter::default(), from.as_deref(), 500)
            .await
            .unwrap();
        rows.extend(page.items);
        match page.next {
            Some(next) => from = Some(next),
            None => return rows,
        }
    }
}

/// A running `logoutd serve`.
pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ServeProcess {
    /// Starts `logoutd serve` on the store and keys under `dir`, with `extra` flags (which may
    /// give a `--listen` address instead of `127.0.0.1:0`), allowing the plain-http loopback
    /// URLs of the test RPs (`--allow-insecure-rp-urls`).
    pub async fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(dir, &store_url(dir), true, extra).await
    }

    /// Starts `logoutd serve` like [`ServeProcess::start`] but on `store` (a PostgreSQL
    /// database shared by several nodes, say), with the keys under `dir`.
    pub async fn start_on(dir: &Path, store: &str, extra: &[&str]) -> Self {
        Self::spawn(dir, store, true, extra).await
    }

    /// Starts `logoutd serve` like [`ServeProcess::start`] but with the default URL policy:
    /// https and public addresses only, at registration and at connect time.
    pub async fn start_strict(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(dir, &store_url(dir), false, extra).await
    }

    async fn spawn(dir: &Path, store: &str, insecure: bool, extra: &[&str]) -> Self {
        let keys = dir.join("keys");
        let default_listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_logoutd"))
            .args(["serve", "--store", store])
            .args(default_listen)
            .arg("--keys-dir")
            .arg(&keys)
            .args(insecure.then_some("--allow-insecure-rp-urls"))
            .args(extra)
            .env("LOGOUTD_API_TOKEN", API_TOKEN)
            .env("LOGOUTD_LOG_FORMAT", "json")
            .env_remove("LOGOUTD_CONFIG")
            .env_remove("LOGOUTD_ALLOW_INSECURE_RP_URLS")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(PROCESS_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(log) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if log["fields"]["message"] == "logoutd listening" {
                    return log["fields"]["addr"].as_str().unwrap().to_owned();
                }
            }
            panic!("logoutd exited before listening");
        })
        .await
        .expect("logoutd did not start");
        // Keep draining stderr so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(PROCESS_TIMEOUT, self.child.wait())
            .await
            .expect("logoutd did not stop after SIGTERM")
            .unwrap()
    }

    /// SIGKILL: no cleanup at all; waits for the process to be gone.
    pub async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Sends an authenticated API request and returns the status and JSON reply.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Registers client `id` posting to `url` in `all` mode.
    pub async fn client(&self, id: &str, url: &str) {
        let body = json!({ "client_id": id, "name": id,
            "oidc_logout": { "backchannel_logout_urls": [url],
                "backchannel_logout_initiators": { "mode": "all" } } });
        let (status, reply) = self
            .call(reqwest::Method::POST, "/api/v2/clients", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
}
