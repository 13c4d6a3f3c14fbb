//! `bench soak`: API load and deliveries to a healthy RP and to hostile ones together, for a
//! bounded time, so that a leak shows. Each round registers sessions through the API (each
//! with the healthy RP and every hostile one), reads them back, and ends them one by one; the
//! healthy RP's latency is the time from an end call to its receipt. The run is reported in
//! quarters: the healthy latencies of each, and the process's RSS, open descriptors and outbox
//! counts at its end. The hostile RPs' rows retry until their age budget (`--max-age-seconds`)
//! is spent, so a run longer than the budget shows whether the figures level off once rows
//! fail as fast as they arrive (steady state) or keep growing (a leak). The server, the
//! hostile receivers and the load run in this process, so the descriptors include the hostile
//! receivers' connections; the healthy RP is the `bench sink` child.

use super::deliver::{client, scratch, settings, tag};
use super::hol::distinct;
use super::hostile::{self, Hostility};
use super::proc_stats;
use logoutd_core::ClientId;
use logoutd_core::KeyRing;
use logoutd_core::SigningAlg;
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
    /// The age budget of a delivery: a hostile RP's rows fail once it is spent, so a run
    /// longer than it reaches the steady state where rows fail as fast as new ones arrive.
    pub max_age: Duration,
}

/// What one quarter of the rounds saw: the healthy RP's latencies, and the process and the
/// outbox at its end.
#[derive(Debug, Clone, Default)]
pub struct Quarter {
    /// The healthy RP's latencies.
    pub latencies: Vec<Duration>,
    /// Resident set size in KiB.
    pub rss_kib: u64,
    /// Open descriptors.
    pub fds: usize,
    /// Outbox rows pending or in flight (the hostile RPs' retries).
    pub queued: u64,
    /// Outbox rows failed (budget spent).
    pub failed: u64,
}

/// The run, quarter by quarter.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The scenario.
    pub scenario: SoakScenario,
    /// Rounds completed.
    pub rounds: usize,
    /// The four quarters of the rounds, in order.
    pub quarters: Vec<Quarter>,
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
        writeln!(
            f,
            "soak seconds={} alg={} max_age_s={} rounds={} sessions={}",
            self.scenario.duration.as_secs(),
            self.scenario.alg,
            self.scenario.max_age.as_secs(),
            self.rounds,
            self.rounds * ROUND,
        )?;
        for (i, q) in self.quarters.iter().enumerate() {
            let mut sorted = q.latencies.clone();
            sorted.sort();
            writeln!(
                f,
                "quarter={} healthy_ms p50={:.1} p99={:.1} rss_kib={} fds={} outbox queued={} failed={}",
                i + 1,
                percentile(&sorted, 0.5),
                percentile(&sorted, 0.99),
                q.rss_kib,
                q.fds,
                q.queued,
                q.failed,
            )?;
        }
        Ok(())
    }
}

/// Runs the soak against the healthy receiver at `sink` (a `bench sink`).
pub async fn run(scenario: SoakScenario, sink: &str) -> anyhow::Result<SoakReport> {
    let dir = scratch()?;
    let store = format!("sqlite://{}/bench.db", dir.0.display());
    let mut settings = settings(&dir.0, store.clone());
    let retry = &settings.dispatch.retry;
    settings.dispatch.retry = logoutd_core::RetryPolicy::new(
        retry.base(),
        retry.factor(),
        retry.cap(),
        retry.max_attempts(),
        scenario.max_age,
    )?;
    let now = chrono::Utc::now();
    logoutd_core::generate_key(&settings.keys_dir, scenario.alg, None, now)?;
    let keys = Arc::new(KeyRing::load(&settings.keys_dir, now)?);
    let stores = logoutd_core::open_store(&store).await?;
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
    let server = super::in_process::InProcess::start(settings, stores.clone(), keys).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let load = Load {
        http: &http,
        base: &server.base,
        token: &server.token,
        sink,
        tag: &tag,
        clients: &clients,
    };
    let result = rounds(&scenario, &stores, &load).await;
    server.stop().await;
    result
}

/// What each round's API calls go to.
struct Load<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
    sink: &'a str,
    tag: &'a str,
    clients: &'a [ClientId],
}

async fn rounds(
    scenario: &SoakScenario,
    stores: &logoutd_core::Stores,
    load: &Load<'_>,
) -> anyhow::Result<SoakReport> {
    let tag = load.tag;
    let started = Instant::now();
    let mut quarters = vec![Quarter::default(); 4];
    let (mut n, mut done) = (0usize, 0usize);
    while done == 0 || started.elapsed() < scenario.duration {
        let part = started.elapsed().as_secs_f64() / scenario.duration.as_secs_f64();
        let index = ((part * 4.0) as usize).min(3);
        let mut latencies = Vec::with_capacity(ROUND);
        for _ in 0..ROUND {
            let id = format!("{tag}s-{n}");
            n += 1;
            latencies.push(one_session(load, &id).await?);
        }
        done += 1;
        let stats = stores.deliveries.stats(chrono::Utc::now()).await?;
        if let Some(quarter) = quarters.get_mut(index) {
            quarter.latencies.extend(latencies);
            // Overwritten by each later round of the quarter: the sample of its last round.
            quarter.rss_kib = proc_stats::rss_kib().unwrap_or(0);
            quarter.fds = proc_stats::open_fds().unwrap_or(0);
            quarter.queued = stats.pending + stats.in_flight;
            quarter.failed = stats.failed;
        }
    }
    quarters.retain(|q| !q.latencies.is_empty());
    Ok(SoakReport {
        scenario: scenario.clone(),
        rounds: done,
        quarters,
    })
}

/// Registers session `id` with every client through the API, reads it back and ends it;
/// returns the time from the end call to the healthy RP's receipt.
async fn one_session(load: &Load<'_>, id: &str) -> anyhow::Result<Duration> {
    let Load {
        http,
        base,
        token,
        sink,
        tag,
        clients,
    } = *load;
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
            return Ok(end.elapsed());
        }
        anyhow::ensure!(
            end.elapsed() < RECEIPT_LIMIT,
            "no healthy receipt within {RECEIPT_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn call(request: reqwest::RequestBuilder, want: u16) -> anyhow::Result<()> {
    let status = request.send().await?.status();
    anyhow::ensure!(
        status.as_u16() == want,
        "the API answered {status}, not {want}"
    );
    Ok(())
}
