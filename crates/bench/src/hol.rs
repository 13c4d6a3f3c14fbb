//! `bench hol`: head-of-line blocking across origins. Every session took part in one healthy
//! RP (the fast loopback [`super::sink`]) and in hostile ones ([`super::hostile`], each on an
//! origin of its own). The figure is the healthy RP's time from the first end call to its last
//! receipt, measured twice on fresh stores in one run: with the hostile clients paused (their
//! rows wait, nothing is sent to them) and with them live.

use super::deliver::{client, scratch, session_of, settings, tag};
use super::hostile::{self, Hostility};
use futures_util::StreamExt as _;
use logoutd_core::ClientId;
use logoutd_core::KeyRing;
use logoutd_core::SessionMetadata;
use logoutd_core::SigningAlg;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for the healthy RP's deliveries.
const LIMIT: Duration = Duration::from_secs(600);
/// How often the sink is asked how far it got.
const POLL: Duration = Duration::from_millis(10);
/// Sessions ended per API call.
const SESSIONS_PER_USER: usize = 100;

/// One `bench hol` run.
#[derive(Debug, Clone)]
pub struct HolScenario {
    /// Sessions ended; each took part in every RP.
    pub sessions: usize,
    /// Hostile origins of each kind.
    pub each: usize,
    /// Signing alg of every client.
    pub alg: SigningAlg,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct HolReport {
    /// The scenario.
    pub scenario: HolScenario,
    /// The healthy RP's time to its last receipt with the hostile clients paused.
    pub without: Duration,
    /// The same with the hostile clients live.
    pub with: Duration,
}

impl std::fmt::Display for HolReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.scenario;
        write!(
            f,
            "hol sessions={} hostile_origins={} ({} each of {}) alg={} healthy_last_receipt without={:.2}s with={:.2}s ratio={:.2}",
            s.sessions,
            s.each * Hostility::ALL.len(),
            s.each,
            Hostility::ALL.map(Hostility::name).join("/"),
            s.alg,
            self.without.as_secs_f64(),
            self.with.as_secs_f64(),
            self.with.as_secs_f64() / self.without.as_secs_f64().max(1e-9),
        )
    }
}

/// Starts the hostile receivers, then measures without and with them against the healthy
/// receiver at `sink` (a `bench sink`).
pub async fn run(scenario: HolScenario, sink: &str) -> anyhow::Result<HolReport> {
    let mut hostile = Vec::new();
    for kind in Hostility::ALL {
        for n in 0..scenario.each {
            let base = hostile::start(kind).await?;
            hostile.push((format!("{}-{n}", kind.name()), base));
        }
    }
    let without = healthy_time(&scenario, sink, &hostile, true).await?;
    let with = healthy_time(&scenario, sink, &hostile, false).await?;
    Ok(HolReport {
        scenario,
        without,
        with,
    })
}

/// One measurement on a fresh SQLite store; the hostile clients are paused when `paused`.
async fn healthy_time(
    s: &HolScenario,
    sink: &str,
    hostile: &[(String, String)],
    paused: bool,
) -> anyhow::Result<Duration> {
    let dir = scratch()?;
    let store = format!("sqlite://{}/bench.db", dir.0.display());
    let settings = settings(&dir.0, store.clone());
    let now = chrono::Utc::now();
    logoutd_core::generate_key(&settings.keys_dir, s.alg, None, now)?;
    let keys = Arc::new(KeyRing::load(&settings.keys_dir, now)?);
    let stores = logoutd_core::open_store(&store).await?;
    let tag = tag();
    let healthy = ClientId::new(format!("{tag}healthy"));
    let mut clients = vec![healthy.clone()];
    let url = url::Url::parse(&format!("{sink}/logout/healthy"))?;
    stores
        .clients
        .create_client(&client(healthy, url, s.alg, false))
        .await?;
    for (name, base) in hostile {
        let id = ClientId::new(format!("{tag}{name}"));
        let mut rp = client(
            id.clone(),
            url::Url::parse(&format!("{base}/bc"))?,
            s.alg,
            false,
        );
        rp.paused = paused;
        stores.clients.create_client(&rp).await?;
        clients.push(id);
    }
    let none = SessionMetadata::default();
    for n in 0..s.sessions {
        let user = format!("{tag}user-{}", n / SESSIONS_PER_USER);
        let session = session_of(format!("{tag}s-{n}"), user, &clients, &none);
        stores.sessions.create_session(&session).await?;
    }
    let server = super::in_process::InProcess::start(settings, stores, keys).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let before = distinct(&http, sink).await?;
    let started = Instant::now();
    let ended = end_users(&http, &server.base, &server.token, &tag, s.sessions).await;
    let arrived = match ended {
        Ok(()) => wait_for(&http, sink, before + s.sessions as u64, started).await,
        Err(err) => Err(err),
    };
    server.stop().await;
    arrived
}

/// Ends every user's sessions through the API, a few calls at a time.
async fn end_users(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    tag: &str,
    sessions: usize,
) -> anyhow::Result<()> {
    let users = sessions.div_ceil(SESSIONS_PER_USER);
    let calls = futures_util::stream::iter(0..users).map(|u| {
        let body =
            serde_json::json!({ "user_id": format!("{tag}user-{u}"), "initiator": "rp-logout" });
        let request = http
            .post(format!("{base}/api/v2/logout-events"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let status = request.send().await?.status();
            anyhow::ensure!(status.as_u16() == 202, "end call answered {status}");
            Ok(())
        }
    });
    let mut calls = calls.buffer_unordered(4);
    while let Some(result) = calls.next().await {
        result?;
    }
    Ok(())
}

/// Polls the sink until it has seen `target` distinct pairs; the time since `started`.
async fn wait_for(
    http: &reqwest::Client,
    sink: &str,
    target: u64,
    started: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let seen = distinct(http, sink).await?;
        if seen >= target {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < LIMIT,
            "the healthy RP got {seen} of {target} within {LIMIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub(super) async fn distinct(http: &reqwest::Client, sink: &str) -> anyhow::Result<u64> {
    let text = http
        .get(format!("{sink}/distinct"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text.trim().parse()?)
}
