//! `bench soak`: API load and deliveries to a healthy RP and to hostile ones together, for a
//! bounded time, so that a leak shows. Each round registers sessions through the API (each
//! with the healthy RP and every hostile one), reads them back, and ends them one by one; the
//! healthy RP's latency is the time from an end call to its receipt. The process's RSS and
//! open descriptors are read after the first round and after the last. The server, the
//! hostile receivers and the load run in this process, so the descriptors include the hostile
//! receivers' connections; the healthy RP is the `bench sink` child.

use super::deliver::{client, scratch, settings, tag};
use super::hol::distinct;
use super::hostile::{self, Hostility};
use crate::alg::SigningAlg;
use crate::ids::ClientId;
use crate::keys::KeyRing;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sessions registered and ended per round.
const ROUND: usize = 20;
/// Longest wait for one healthy receipt.
const RECEIPT_LIMIT: Duration = Duration::from_secs(30);

/// One `bench soak` run.
#[derive(Debug, Clone)]
pub struct SoakScenario {
    /// How long the load runs.
    pub duration: Duration,
    /// Signing alg of every client.
    pub alg: SigningAlg,
}

/// Latency, memory and descriptors at the start and at the end of the run.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The scenario.
    pub scenario: SoakScenario,
    /// Rounds completed.
    pub rounds: usize,
    /// The healthy RP's latencies in the first and in the last quarter of the rounds.
    pub first: Vec<Duration>,
    /// See `first`.
    pub last: Vec<Duration>,
    /// RSS in KiB after the first round and after the last.
    pub rss_kib: (u64, u64),
    /// Open descriptors after the first round and after the last.
    pub fds: (usize, usize),
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let at = ((last as f64) * p).round() as usize;
    sorted
        .get(at.min(last))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (mut first, mut last) = (self.first.clone(), self.last.clone());
        first.sort();
        last.sort();
        write!(
            f,
            "soak seconds={} alg={} rounds={} sessions={} healthy_ms start p50={:.1} p99={:.1} end p50={:.1} p99={:.1} rss_kib start={} end={} fds start={} end={}",
            self.scenario.duration.as_secs(),
            self.scenario.alg,
            self.rounds,
            self.rounds * ROUND,
            percentile(&first, 0.5),
            percentile(&first, 0.99),
            percentile(&last, 0.5),
            percentile(&last, 0.99),
            self.rss_kib.0,
            self.rss_kib.1,
            self.fds.0,
            self.fds.1,
        )
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Runs the soak against the healthy receiver at `sink` (a `bench sink`).
pub async fn run(scenario: SoakScenario, sink: &str) -> anyhow::Result<SoakReport> {
    let dir = scratch()?;
    let store = format!("sqlite://{}/bench.db", dir.0.display());
    let settings = settings(&dir.0, store.clone());
    let now = chrono::Utc::now();
    crate::keys::generate(&settings.keys_dir, scenario.alg, None, now)?;
    let keys = Arc::new(KeyRing::load(&settings.keys_dir, now)?);
    let stores = crate::store::open(&store).await?;
    let tag = tag();
    let mut clients = vec![ClientId::new(format!("{tag}healthy"))];
    let url = url::Url::parse(&format!("{sink}/logout/healthy"))?;
    stores
        .clients
        .create_client(&client(clients[0].clone(), url, scenario.alg, false))
        .await?;
    for kind in Hostility::ALL {
        let base = hostile::start(kind).await?;
        let id = ClientId::new(format!("{tag}{}", kind.name()));
        let url = url::Url::parse(&format!("{base}/bc"))?;
        stores
            .clients
            .create_client(&client(id.clone(), url, scenario.alg, false))
            .await?;
        clients.push(id);
    }
    let server = super::in_process::InProcess::start(settings, stores, keys).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let result = rounds(
        &scenario,
        &http,
        &server.base,
        &server.token,
        sink,
        &tag,
        &clients,
    )
    .await;
    server.stop().await;
    result
}

async fn rounds(
    scenario: &SoakScenario,
    http: &reqwest::Client,
    base: &str,
    token: &str,
    sink: &str,
    tag: &str,
    clients: &[ClientId],
) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    let mut latencies: Vec<Vec<Duration>> = Vec::new();
    let mut start_sample = None;
    let mut n = 0usize;
    while latencies.is_empty() || started.elapsed() < scenario.duration {
        let mut round = Vec::with_capacity(ROUND);
        for _ in 0..ROUND {
            let id = format!("{tag}s-{n}");
            n += 1;
            let entries: Vec<serde_json::Value> = clients
                .iter()
                .map(|c| serde_json::json!({ "client_id": c }))
                .collect();
            let body = serde_json::json!({ "id": id, "user_id": format!("{tag}u"),
                "clients": entries, "session_metadata": { "k": "v" } });
            call(
                http.post(format!("{base}/api/v2/sessions"))
                    .bearer_auth(token)
                    .json(&body),
                201,
            )
            .await?;
            call(
                http.get(format!("{base}/api/v2/sessions/{id}"))
                    .bearer_auth(token),
                200,
            )
            .await?;
            let before = distinct(http, sink).await?;
            let end = Instant::now();
            let body = serde_json::json!({ "session_id": id, "initiator": "rp-logout" });
            call(
                http.post(format!("{base}/api/v2/logout-events"))
                    .bearer_auth(token)
                    .json(&body),
                202,
            )
            .await?;
            loop {
                if distinct(http, sink).await? > before {
                    break;
                }
                anyhow::ensure!(
                    end.elapsed() < RECEIPT_LIMIT,
                    "no healthy receipt within {RECEIPT_LIMIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            round.push(end.elapsed());
        }
        latencies.push(round);
        if start_sample.is_none() {
            start_sample = Some((rss_kib(), open_fds()));
        }
    }
    let (rss0, fds0) = start_sample.unwrap_or_default();
    let quarter = latencies.len().div_ceil(4);
    let first = latencies.iter().take(quarter).flatten().copied().collect();
    let last = latencies
        .iter()
        .rev()
        .take(quarter)
        .flatten()
        .copied()
        .collect();
    Ok(SoakReport {
        scenario: scenario.clone(),
        rounds: latencies.len(),
        first,
        last,
        rss_kib: (rss0, rss_kib()),
        fds: (fds0, open_fds()),
    })
}

async fn call(request: reqwest::RequestBuilder, want: u16) -> anyhow::Result<()> {
    let status = request.send().await?.status();
    anyhow::ensure!(
        status.as_u16() == want,
        "the API answered {status}, not {want}"
    );
    Ok(())
}
