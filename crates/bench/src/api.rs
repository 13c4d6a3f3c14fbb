//! Management API latency under load on loopback: session create, PATCH metadata and GET
//! session on the embedded SQLite store, at a given number of concurrent clients.

use super::drive::percentiles;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One operation's latencies.
#[derive(Debug, Clone)]
pub struct OpReport {
    /// `create`, `patch` or `get`.
    pub op: &'static str,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Requests made.
    pub requests: usize,
    /// Requests per second over the phase.
    pub per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

impl std::fmt::Display for OpReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "api {:<6} concurrency={:<3} requests={} req/s={:.0} p50={:.2}ms p99={:.2}ms",
            self.op, self.concurrency, self.requests, self.per_sec, self.p50_ms, self.p99_ms
        )
    }
}

/// Runs create, PATCH and GET phases of `requests` each at `concurrency`.
pub async fn run(requests: usize, concurrency: usize) -> anyhow::Result<Vec<OpReport>> {
    let dir = std::env::temp_dir().join(format!(
        "logoutd-bench-api-{}",
        logoutd_core::random_token()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&dir, requests, concurrency).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    dir: &std::path::Path,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<OpReport>> {
    let store = format!("sqlite://{}/bench.db", dir.display());
    let settings = super::deliver::settings(dir, store.clone());
    let now = chrono::Utc::now();
    logoutd_core::generate_key(
        &settings.keys_dir,
        logoutd_core::SigningAlg::ES256,
        None,
        now,
    )?;
    let keys = Arc::new(logoutd_core::KeyRing::load(&settings.keys_dir, now)?);
    let stores = logoutd_core::open_store(&store).await?;
    let server = super::in_process::InProcess::start(settings, stores, keys).await?;
    let base = format!("{}/api/v2", server.base);
    let token = server.token.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let load = Arc::new(Load {
        http,
        base,
        token,
        concurrency,
    });
    // The load runs on a thread of its own, apart from the server's runtime.
    let generator = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for op in ["create", "patch", "get"] {
        let load = load.clone();
        reports.push(
            generator
                .spawn(async move { load.phase(op, requests).await })
                .await??,
        );
    }
    generator.shutdown_background();
    server.stop().await;
    Ok(reports)
}

struct Load {
    http: reqwest::Client,
    base: String,
    token: String,
    concurrency: usize,
}

impl Load {
    fn request(&self, op: &str, n: usize) -> reqwest::RequestBuilder {
        let id = format!("bench-{n}");
        match op {
            "create" => {
                self.http
                    .post(format!("{}/sessions", self.base))
                    .json(&serde_json::json!({
                "id": id, "user_id": format!("user-{}", n % 100),
                "session_metadata": { "tenant": "acme", "plan": "pro" } }))
            }
            "patch" => self
                .http
                .patch(format!("{}/sessions/{id}", self.base))
                .json(&serde_json::json!({
                "session_metadata": { "tenant": "acme", "step": n.to_string() } })),
            _ => self.http.get(format!("{}/sessions/{id}", self.base)),
        }
        .bearer_auth(&self.token)
    }

    async fn phase(&self, op: &'static str, requests: usize) -> anyhow::Result<OpReport> {
        use futures_util::StreamExt as _;
        let start = Instant::now();
        let calls = futures_util::stream::iter(0..requests).map(|n| async move {
            let started = Instant::now();
            let response = self.request(op, n).send().await?;
            let status = response.status();
            let _ = response.bytes().await?;
            anyhow::ensure!(status.is_success(), "{op} answered {status}");
            Ok::<Duration, anyhow::Error>(started.elapsed())
        });
        let mut calls = calls.buffer_unordered(self.concurrency.max(1));
        let mut samples = Vec::with_capacity(requests);
        while let Some(latency) = calls.next().await {
            samples.push(latency?.as_secs_f64() * 1000.0);
        }
        let per_sec = requests as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let (p50_ms, p99_ms) = percentiles(samples).unwrap_or_default();
        Ok(OpReport {
            op,
            concurrency: self.concurrency,
            requests,
            per_sec,
            p50_ms,
            p99_ms,
        })
    }
}
