//! End-to-end delivery benchmark: N sessions × M RPs ended through the API, delivered by the
//! dispatcher into a fast loopback receiver running in another process, with logoutd's CPU
//! per delivery set next to the raw signature cost measured in the same run.
//!
//! With a SQLite (or no) store, logoutd runs inside the bench process (for profiling), or with
//! `--serve` as one `logoutd serve` child process set up over its API ([`super::served`]).
//! With a PostgreSQL server, each scenario gets a throwaway database and `--nodes` `logoutd
//! serve` child processes (see [`super::cluster`]), whose CPU time is summed.

use super::drive::{Measured, Target, drive, percentiles};
use super::proc_stats::{self, CpuSplit};
use anyhow::Context as _;
use logoutd_core::KeyRing;
use logoutd_core::NetPolicy;
use logoutd_core::SenderConfig;
use logoutd_core::SessionMetadata;
use logoutd_core::SigningAlg;
use logoutd_core::Stores;
use logoutd_core::{ApiToken, DispatchSettings, HousekeepingSettings, Settings};
use logoutd_core::{ClientId, Issuer, SessionId, UserId};
use logoutd_core::{Device, Session, SessionClient};
use logoutd_core::{MetadataOptIn, OidcLogout, RelyingParty};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// `session_metadata` pairs on every session; above 0, every RP opts in to them.
    pub metadata_pairs: usize,
    /// Store URL; a fresh SQLite file when `None`. A `postgres://` URL names a server on
    /// which a throwaway database is created for the scenario.
    pub store: Option<String>,
    /// `logoutd serve` processes sharing the work (PostgreSQL only; 1 otherwise).
    pub nodes: usize,
    /// Run logoutd as `logoutd serve` child processes rather than in this process (always so
    /// over PostgreSQL).
    pub serve: bool,
    /// SSF push streams (receivers of scope `all`) into the sink, each sent one SET per ended
    /// session; above 0, the nodes run with `--ssf true` (`serve` only).
    pub ssf_streams: usize,
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// Distinct (session, RP) pairs received by the sink.
    pub deliveries: u64,
    /// POSTs beyond the first of each (session, RP) pair.
    pub duplicates: u64,
    /// Distinct SETs received by the sink.
    pub sets: u64,
    /// SET POSTs beyond the first of each `jti`.
    pub set_duplicates: u64,
    /// From the first end call to the last receipt.
    pub wall: Duration,
    /// logoutd's CPU time over the same span, summed over its processes.
    pub cpu: Duration,
    /// The same by kind of thread, when logoutd ran in this process.
    pub split: Option<CpuSplit>,
    /// Raw signatures per second on one core, same alg, measured just before and just after
    /// the run; how far apart they are shows how much the machine's speed moved during it.
    pub raw_sig_before_after: (f64, f64),
    /// Peak RSS of the logoutd process (the largest node), KiB.
    pub peak_rss_kib: u64,
    /// End-session API latencies (ms) measured during the run: p50, p99.
    pub end_latency_ms: Option<(f64, f64)>,
    /// The slowest end-session call of the run and when it began (ms after the start of the
    /// mass logout): where in the run the tail is.
    pub end_latency_max: Option<(f64, f64)>,
    /// The receiver's CPU time over the same span, when it reports it.
    pub sink_cpu: Option<Duration>,
    /// Cores on this machine.
    pub cores: usize,
}

impl Report {
    /// The mean of the raw rates before and after the run: what `ratio=` and `ceiling=`
    /// divide by.
    pub fn raw_sig_per_sec(&self) -> f64 {
        let (before, after) = self.raw_sig_before_after;
        (before + after) / 2.0
    }

    /// Deliveries per second as a share of what the cores the receiver leaves can sign at the
    /// raw rate: `deliveries/s ÷ ((cores − receiver's cores in use) × raw signatures/s)`.
    pub fn ceiling_share(&self) -> Option<f64> {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let sink_cores = self.sink_cpu?.as_secs_f64() / wall;
        let ceiling = (self.cores as f64 - sink_cores) * self.raw_sig_per_sec();
        (ceiling > 0.0).then(|| self.deliveries as f64 / wall / ceiling)
    }

    /// The receiver's CPU time over the run as a share of one core (1.0 = a whole core).
    pub fn sink_core_share(&self) -> Option<f64> {
        Some(self.sink_cpu?.as_secs_f64() / self.wall.as_secs_f64().max(1e-9))
    }

    /// Where logoutd ran: `serve` (child processes) or `in-process`.
    pub fn process(&self) -> &'static str {
        let s = &self.scenario;
        let postgres = s
            .store
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        if s.serve || postgres {
            "serve"
        } else {
            "in-process"
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.scenario;
        let per = self.cpu.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64;
        let raw_us = 1e6 / self.raw_sig_per_sec().max(1.0);
        write!(
            f,
            "deliver {} sessions={} rps={} deliveries={} wall={:.2}s deliveries/s={:.0} cpu/delivery={:.0}us raw_sig={:.0}us raw_sig_before/after={:.0}/{:.0}us ratio={:.2} peak_rss={}MiB",
            s.alg,
            s.sessions,
            s.rps,
            self.deliveries,
            self.wall.as_secs_f64(),
            self.deliveries as f64 / self.wall.as_secs_f64().max(1e-9),
            per,
            raw_us,
            1e6 / self.raw_sig_before_after.0.max(1.0),
            1e6 / self.raw_sig_before_after.1.max(1.0),
            per / raw_us,
            self.peak_rss_kib / 1024,
        )?;
        if let Some(split) = &self.split {
            let us = |d: Duration| d.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64;
            write!(
                f,
                " split_us=delivery:{:.0},sqlite:{:.0},runtime:{:.0}",
                us(split.delivery),
                us(split.sqlite),
                us(split.runtime)
            )?;
        }
        if let (Some(sink), Some(share)) = (self.sink_cpu, self.ceiling_share()) {
            let us = sink.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64;
            write!(
                f,
                " sink_cpu/delivery={us:.0}us sink_core={:.0}% ceiling={:.0}%",
                self.sink_core_share().unwrap_or_default() * 100.0,
                share * 100.0
            )?;
        }
        if let Some((p50, p99)) = self.end_latency_ms {
            write!(f, " end_api_p50={p50:.2}ms end_api_p99={p99:.2}ms")?;
        }
        if let Some((max, at)) = self.end_latency_max {
            write!(f, " end_api_max={max:.2}ms@{at:.0}ms")?;
        }
        if s.metadata_pairs > 0 {
            write!(f, " metadata_pairs={}", s.metadata_pairs)?;
        }
        if s.ssf_streams > 0 {
            write!(
                f,
                " ssf_streams={} sets={} set_duplicates={}",
                s.ssf_streams, self.sets, self.set_duplicates
            )?;
        }
        write!(
            f,
            " process={} nodes={} duplicates={}",
            self.process(),
            s.nodes,
            self.duplicates
        )
    }
}

/// A scratch directory removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory under the system temporary directory.
pub(super) fn scratch() -> anyhow::Result<Scratch> {
    let dir = std::env::temp_dir().join(format!("logoutd-bench-{}", logoutd_core::random_token()));
    std::fs::create_dir_all(&dir)?;
    Ok(Scratch(dir))
}

/// Server settings for a benchmark run: loopback, insecure RP URLs allowed, a random token.
pub fn settings(dir: &Path, store: String) -> Settings {
    Settings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        issuer: Issuer::new("https://logoutd.bench"),
        store: store.into(),
        keys_dir: dir.join("keys"),
        allow_loose_key_permissions: false,
        net: NetPolicy {
            allow_insecure: true,
        },
        body_limit: logoutd_core::DEFAULT_BODY_LIMIT,
        api_token: Some(ApiToken::new(logoutd_core::random_secret())),
        api_tokens_file: dir.join("api-tokens.json"),
        dev: false,
        dispatch: DispatchSettings::default(),
        housekeeping: HousekeepingSettings::default(),
        http: logoutd_core::HttpSettings::default(),
        operator_webhook: None,
        ssf: false,
        ssf_poll_lease: logoutd_core::DEFAULT_POLL_LEASE,
        sender: SenderConfig {
            policy: NetPolicy {
                allow_insecure: true,
            },
            pool_idle_per_host: logoutd_core::DEFAULT_MAX_PER_ORIGIN,
            ..SenderConfig::default()
        },
    }
}

fn rp(i: usize, sink: &str, s: &Scenario) -> anyhow::Result<RelyingParty> {
    let url = url::Url::parse(&format!("{sink}/logout/{i}"))?;
    Ok(client(
        ClientId::new(format!("rp-{i}")),
        url,
        s.alg,
        s.metadata_pairs > 0,
    ))
}

/// A client in `custom` mode posting to `url`, signed with `alg`.
pub(super) fn client(
    id: ClientId,
    url: url::Url,
    alg: SigningAlg,
    include_metadata: bool,
) -> RelyingParty {
    let now = chrono::Utc::now();
    RelyingParty {
        name: format!("bench {id}"),
        client_id: id,
        oidc_logout: OidcLogout {
            backchannel_logout_urls: vec![url],
            backchannel_logout_session_metadata: MetadataOptIn {
                include: include_metadata,
            },
            ..OidcLogout::default()
        },
        backchannel_logout_session_required: false,
        logout_token_typ: logoutd_core::TokenTyp::LogoutJwt,
        id_token_signed_response_alg: alg,
        encryption: Default::default(),
        paused: false,
        paused_by: None,
        paused_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// `pairs` metadata pairs of 40-character values, the same on every session.
fn metadata(pairs: usize) -> anyhow::Result<SessionMetadata> {
    Ok(SessionMetadata::try_from_map(metadata_pairs(pairs))?)
}

/// The keys and values of [`metadata`].
pub(super) fn metadata_pairs(pairs: usize) -> std::collections::BTreeMap<String, String> {
    (0..pairs)
        .map(|i| (format!("key_{i:02}"), format!("{i:02}-{}", "v".repeat(37))))
        .collect()
}

fn session(id: String, user: String, rps: usize, metadata: &SessionMetadata) -> Session {
    let clients: Vec<ClientId> = (0..rps).map(|i| ClientId::new(format!("rp-{i}"))).collect();
    session_of(id, user, &clients, metadata)
}

/// A session of `user` in which `clients` took part.
pub(super) fn session_of(
    id: String,
    user: String,
    clients: &[ClientId],
    metadata: &SessionMetadata,
) -> Session {
    let now = chrono::Utc::now();
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
        clients: clients
            .iter()
            .map(|client_id| SessionClient::new(client_id.clone()))
            .collect(),
        session_metadata: metadata.clone(),
        ended_at: None,
        end_initiator: None,
    }
}

/// Registers the RPs and writes the sessions straight into the store (not measured). User and
/// session ids start with `tag`, so that the sink tells scenarios apart.
pub(super) async fn populate(
    stores: &Stores,
    s: &Scenario,
    sinks: &[String],
    tag: &str,
) -> anyhow::Result<()> {
    for i in 0..s.rps {
        let sink = sinks
            .get(i % sinks.len().max(1))
            .context("no sink address")?;
        stores.clients.create_client(&rp(i, sink, s)?).await?;
    }
    let metadata = metadata(s.metadata_pairs)?;
    let per_user = s.sessions_per_user.max(1);
    for n in 0..s.sessions {
        let user = format!("{tag}user-{}", n / per_user);
        stores
            .sessions
            .create_session(&session(format!("{tag}s-{n}"), user, s.rps, &metadata))
            .await?;
    }
    for n in 0..s.probes {
        let id = format!("{tag}probe-{n}");
        let probe = session(id.clone(), id, s.rps, &metadata);
        stores.sessions.create_session(&probe).await?;
    }
    Ok(())
}

/// Runs one scenario against the sink listening at `sinks` (figures at `sinks[0]`).
pub async fn run(scenario: Scenario, sinks: &[String]) -> anyhow::Result<Report> {
    let postgres = scenario
        .store
        .as_deref()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"));
    if postgres {
        return super::cluster::run(scenario, sinks).await;
    }
    anyhow::ensure!(
        scenario.nodes <= 1,
        "--nodes above 1 needs a postgres:// --store"
    );
    if scenario.serve {
        return super::served::run(scenario, sinks).await;
    }
    anyhow::ensure!(
        scenario.ssf_streams == 0,
        "SSF streams need logoutd as `logoutd serve` (--serve)"
    );
    in_process(scenario, sinks).await
}

/// A short prefix that keeps one scenario's ids apart from another's.
pub(super) fn tag() -> String {
    let token = logoutd_core::random_token();
    format!("{}-", token.get(..6).unwrap_or(&token))
}

/// Runs logoutd inside this process over a SQLite (or the given) store.
async fn in_process(scenario: Scenario, sinks: &[String]) -> anyhow::Result<Report> {
    let dir = scratch()?;
    let store = scenario
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.0.display()));
    let settings = settings(&dir.0, store.clone());
    let now = chrono::Utc::now();
    logoutd_core::generate_key(&settings.keys_dir, scenario.alg, None, now)?;
    let keys = Arc::new(KeyRing::load(&settings.keys_dir, now)?);
    let stores = logoutd_core::open_store(&store).await?;
    let tag = tag();
    populate(&stores, &scenario, sinks, &tag).await?;
    let server = super::in_process::InProcess::start(settings, stores, keys).await?;
    let bases = [server.base.clone()];
    let token = server.token.clone();
    let cpu = || proc_stats::cpu_time().unwrap_or_default();
    let target = Target {
        bases: &bases,
        token: &token,
        sink: sinks.first().map_or("", String::as_str),
        tag: &tag,
        cpu: &cpu,
        in_process: true,
    };
    let http = reqwest::Client::builder().no_proxy().build()?;
    let raw_before = raw_rate(scenario.alg).await?;
    let measured = drive(&http, &target, &scenario).await;
    server.stop().await;
    let rss = proc_stats::peak_rss_kib().unwrap_or(0);
    report(scenario, measured?, rss, raw_before).await
}

/// Raw signatures per second on one core for `alg`, measured for one second now.
pub(super) async fn raw_rate(alg: SigningAlg) -> anyhow::Result<f64> {
    let raw =
        tokio::task::spawn_blocking(move || super::sign::measure(alg, Duration::from_secs(1)))
            .await??;
    Ok(raw.raw_per_sec)
}

/// The report of a measured run, with the raw signature rate measured now and `raw_before`,
/// the one measured just before the run.
pub(super) async fn report(
    scenario: Scenario,
    measured: Measured,
    peak_rss_kib: u64,
    raw_before: f64,
) -> anyhow::Result<Report> {
    let raw_after = raw_rate(scenario.alg).await?;
    Ok(Report {
        scenario,
        deliveries: measured.delivered,
        duplicates: measured.duplicates,
        sets: measured.sets,
        set_duplicates: measured.set_duplicates,
        wall: measured.wall,
        cpu: measured.cpu,
        split: measured.split,
        raw_sig_before_after: (raw_before, raw_after),
        peak_rss_kib,
        end_latency_ms: percentiles(measured.latencies),
        end_latency_max: measured.slowest,
        sink_cpu: measured.sink_cpu,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    })
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
