//! End-to-end delivery benchmark: N sessions × M RPs ended through the API, delivered by the
//! dispatcher into a fast loopback receiver running in another process, with logoutd's CPU
//! per delivery set next to the raw signature cost measured in the same run.

use super::proc_stats;
use crate::alg::SigningAlg;
use crate::clients::{OidcLogout, RelyingParty};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{ApiToken, DispatchSettings, HousekeepingSettings, Settings};
use crate::ids::{ClientId, Issuer, SessionId, UserId};
use crate::keys::KeyRing;
use crate::net_policy::NetPolicy;
use crate::sender::SenderConfig;
use crate::session::{Device, Session, SessionClient};
use crate::store::Stores;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One benchmark scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Signing algorithm of every client.
    pub alg: SigningAlg,
    /// Sessions ended.
    pub sessions: usize,
    /// RPs per session.
    pub rps: usize,
    /// Sessions per user; each user is ended with one call.
    pub sessions_per_user: usize,
    /// Single-session ends timed while the mass logout runs.
    pub probes: usize,
    /// Store URL; a fresh SQLite file when `None`.
    pub store: Option<String>,
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// Deliveries received by the sink.
    pub deliveries: u64,
    /// From the first end call to the last receipt.
    pub wall: Duration,
    /// logoutd's CPU time over the same span.
    pub cpu: Duration,
    /// Raw signatures per second on one core, same alg, same run.
    pub raw_sig_per_sec: f64,
    /// Peak RSS of the logoutd process, KiB.
    pub peak_rss_kib: u64,
    /// End-session API latencies (ms) measured during the run: p50, p99.
    pub end_latency_ms: Option<(f64, f64)>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.scenario;
        let per = self.cpu.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64;
        let raw_us = 1e6 / self.raw_sig_per_sec.max(1.0);
        write!(
            f,
            "deliver {} sessions={} rps={} deliveries={} wall={:.2}s deliveries/s={:.0} cpu/delivery={:.0}us raw_sig={:.0}us ratio={:.2} peak_rss={}MiB",
            s.alg,
            s.sessions,
            s.rps,
            self.deliveries,
            self.wall.as_secs_f64(),
            self.deliveries as f64 / self.wall.as_secs_f64().max(1e-9),
            per,
            raw_us,
            per / raw_us,
            self.peak_rss_kib / 1024,
        )?;
        if let Some((p50, p99)) = self.end_latency_ms {
            write!(f, " end_api_p50={p50:.2}ms end_api_p99={p99:.2}ms")?;
        }
        Ok(())
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> anyhow::Result<Scratch> {
    let dir = std::env::temp_dir().join(format!("logoutd-bench-{}", crate::ids::random_token()));
    std::fs::create_dir_all(&dir)?;
    Ok(Scratch(dir))
}

/// Server settings for a benchmark run: loopback, insecure RP URLs allowed, a random token.
pub fn settings(dir: &Path, store: String) -> Settings {
    Settings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        issuer: Issuer::new("https://logoutd.bench"),
        store,
        keys_dir: dir.join("keys"),
        net: NetPolicy {
            allow_insecure: true,
        },
        body_limit: crate::api::DEFAULT_BODY_LIMIT,
        api_token: ApiToken::new(crate::ids::random_token()),
        dev: false,
        dispatch: DispatchSettings::default(),
        housekeeping: HousekeepingSettings::default(),
        sender: SenderConfig {
            policy: NetPolicy {
                allow_insecure: true,
            },
            pool_idle_per_host: crate::config::DEFAULT_MAX_PER_ORIGIN,
            ..SenderConfig::default()
        },
    }
}

fn rp(i: usize, sink: &str, alg: SigningAlg) -> anyhow::Result<RelyingParty> {
    let now = crate::clock::to_millis(chrono::Utc::now());
    Ok(RelyingParty {
        client_id: ClientId::new(format!("rp-{i}")),
        name: format!("bench rp {i}"),
        oidc_logout: OidcLogout {
            backchannel_logout_urls: vec![url::Url::parse(&format!("{sink}/logout/{i}"))?],
            ..OidcLogout::default()
        },
        backchannel_logout_session_required: false,
        logout_token_typ: crate::alg::TokenTyp::LogoutJwt,
        id_token_signed_response_alg: alg,
        paused: false,
        created_at: now,
        updated_at: now,
    })
}

fn session(id: String, user: String, rps: usize) -> Session {
    let now = crate::clock::to_millis(chrono::Utc::now());
    Session {
        id: SessionId::new(id),
        user_id: UserId::new(user),
        created_at: now,
        updated_at: now,
        authenticated_at: None,
        idle_expires_at: None,
        expires_at: None,
        last_interacted_at: None,
        device: Device::default(),
        clients: (0..rps)
            .map(|i| SessionClient {
                client_id: ClientId::new(format!("rp-{i}")),
            })
            .collect(),
        session_metadata: Default::default(),
        ended_at: None,
        end_initiator: None,
    }
}

/// Registers the RPs and writes the sessions straight into the store (not measured).
async fn populate(stores: &Stores, s: &Scenario, sinks: &[String]) -> anyhow::Result<()> {
    for i in 0..s.rps {
        let sink = sinks
            .get(i % sinks.len().max(1))
            .context("no sink address")?;
        stores.clients.create_client(&rp(i, sink, s.alg)?).await?;
    }
    let per_user = s.sessions_per_user.max(1);
    for n in 0..s.sessions {
        let user = format!("user-{}", n / per_user);
        stores
            .sessions
            .create_session(&session(format!("s-{n}"), user, s.rps))
            .await?;
    }
    for n in 0..s.probes {
        let probe = session(format!("probe-{n}"), format!("probe-{n}"), s.rps);
        stores.sessions.create_session(&probe).await?;
    }
    Ok(())
}

/// Runs one scenario against the sink at `sinks` (counting at `count_url`).
pub async fn run(scenario: Scenario, sinks: &[String], count_url: &str) -> anyhow::Result<Report> {
    let dir = scratch()?;
    let store = scenario
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.0.display()));
    let settings = settings(&dir.0, store.clone());
    let now = chrono::Utc::now();
    crate::keys::generate(&settings.keys_dir, scenario.alg, None, now)?;
    let keys = Arc::new(KeyRing::load(&settings.keys_dir, now)?);
    let stores = crate::store::open(&store).await?;
    populate(&stores, &scenario, sinks).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let token = settings.api_token.expose().to_owned();
    let shutdown = CancellationToken::new();
    let clock: SharedClock = Arc::new(SystemClock);
    let parts = crate::server::ServerParts {
        settings,
        stores,
        keys,
        clock,
    };
    let server = tokio::spawn(crate::server::run(listener, parts, shutdown.clone()));
    let http = reqwest::Client::builder().no_proxy().build()?;
    let measured = drive(&http, &base, &token, &scenario, count_url).await;
    shutdown.cancel();
    let _ = server.await;
    let (deliveries, wall, cpu, latencies) = measured?;
    let alg = scenario.alg;
    let raw =
        tokio::task::spawn_blocking(move || super::sign::measure(alg, Duration::from_secs(1)))
            .await??;
    Ok(Report {
        scenario,
        deliveries,
        wall,
        cpu,
        raw_sig_per_sec: raw.raw_per_sec,
        peak_rss_kib: proc_stats::peak_rss_kib().unwrap_or(0),
        end_latency_ms: percentiles(latencies),
    })
}

type Measured = (u64, Duration, Duration, Vec<f64>);

/// Ends every user's sessions (8 calls at a time) while timing single-session ends, then
/// waits for the sink to have seen every delivery.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    s: &Scenario,
    count_url: &str,
) -> anyhow::Result<Measured> {
    let before = sink_count(http, count_url).await?;
    let expected = ((s.sessions + s.probes) * s.rps) as u64;
    let cpu0 = proc_stats::cpu_time().unwrap_or_default();
    let start = Instant::now();
    let users = s.sessions.div_ceil(s.sessions_per_user.max(1));
    let ends = end_users(http, base, token, users);
    let probes = probe_ends(http, base, token, s.probes);
    let (ends, latencies) = tokio::join!(ends, probes);
    ends?;
    let latencies = latencies?;
    loop {
        let seen = sink_count(http, count_url).await? - before;
        if seen >= expected {
            break;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("only {seen} of {expected} deliveries arrived within an hour");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = start.elapsed();
    let cpu = proc_stats::cpu_time()
        .unwrap_or_default()
        .saturating_sub(cpu0);
    Ok((expected, wall, cpu, latencies))
}

async fn end_users(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    users: usize,
) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let calls = futures_util::stream::iter(0..users).map(|u| {
        let body = serde_json::json!({ "user_id": format!("user-{u}"), "initiator": "rp-logout" });
        http.post(format!("{base}/api/v2/logout-events"))
            .bearer_auth(token)
            .json(&body)
            .send()
    });
    let mut calls = calls.buffer_unordered(8);
    while let Some(result) = calls.next().await {
        let response = result?;
        anyhow::ensure!(
            response.status().as_u16() == 202,
            "end call answered {}",
            response.status()
        );
    }
    Ok(())
}

/// Ends the probe sessions one at a time, returning each call's latency in ms.
async fn probe_ends(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    probes: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(probes);
    for n in 0..probes {
        let started = Instant::now();
        let body =
            serde_json::json!({ "session_id": format!("probe-{n}"), "initiator": "rp-logout" });
        let response = http
            .post(format!("{base}/api/v2/logout-events"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().as_u16() == 202,
            "probe end answered {}",
            response.status()
        );
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

async fn sink_count(http: &reqwest::Client, count_url: &str) -> anyhow::Result<u64> {
    let text = http.get(count_url).send().await?.text().await?;
    Ok(text.trim().parse()?)
}

/// p50 and p99 of `samples` (nearest rank).
pub fn percentiles(mut samples: Vec<f64>) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Some((rank(0.50), rank(0.99)))
}
