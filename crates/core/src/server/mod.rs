//! `logoutd serve` as a library function: the API, the dispatcher, the expiry sweeper and the
//! pruner on an already-bound listener, until a shutdown token is cancelled.
//!
//! The API's connections are served by [`serve_api`]: header, idle and body timeouts, a cap
//! on open connections, and a shutdown bounded by a grace period (see
//! [`HttpSettings`](crate::config::HttpSettings)).

use crate::alg::SigningAlg;
use crate::api::{self, AppState};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::dispatcher::{Dispatcher, DispatcherParts};
use crate::expiry::ExpirySweeper;
use crate::ids::Issuer;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::operator_events::{EventWorker, EventWorkerParts};
use crate::retention;
use crate::sender::Sender;
use crate::ssf::{SetWorker, SetWorkerParts};
use crate::store::Stores;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod exchange;
mod guard;
mod http;

pub use guard::{MAX_HEAD_BYTES, MAX_HEADERS};
pub use http::serve as serve_api;

/// How often the keys directory is checked for rotations made by `logoutd keys rotate`.
pub(crate) const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// What a server runs on.
pub struct ServerParts {
    /// Validated settings.
    pub settings: Settings,
    /// The backend.
    pub stores: Stores,
    /// Signing keys.
    pub keys: Arc<KeyRing>,
    /// Time.
    pub clock: SharedClock,
    /// Where delivery attempts run (see [`delivery_runtime`]); the caller's runtime if `None`.
    pub delivery: Option<tokio::runtime::Handle>,
}

/// The runtime for delivery attempts: minting, signing and the POST to each RP. It is kept
/// apart from the runtime that serves the API and drives the store, and its threads run `nice`
/// steps nicer ([`crate::config::DEFAULT_DELIVERY_NICE`]), so that during a mass logout an API
/// request or a store transaction is neither queued behind signing tasks nor waiting for a core.
pub fn delivery_runtime(nice: i32) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("logoutd-delivery")
        .on_thread_start(move || lower_priority(nice))
        .build()
}

/// Lowers the calling thread's priority by `by` steps (Linux; elsewhere a no-op).
fn lower_priority(by: i32) {
    #[cfg(target_os = "linux")]
    if by > 0 {
        let thread = Some(rustix::thread::gettid());
        let nice = rustix::process::getpriority_process(thread)
            .unwrap_or(0)
            .saturating_add(by)
            .min(19);
        if let Err(err) = rustix::process::setpriority_process(thread, nice) {
            tracing::debug!(error = %err, "cannot lower the delivery thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

/// Serves the API on `listener` and runs the dispatcher until `shutdown` is cancelled, then
/// stops accepting requests, gives open API connections at most the shutdown grace, lets the
/// dispatcher finish or hand back its rows, and returns.
pub async fn run(
    listener: TcpListener,
    parts: ServerParts,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ServerParts {
        settings,
        stores,
        keys,
        clock,
        delivery,
    } = parts;
    let metrics = Arc::new(Metrics::new());
    stores
        .client_health
        .set_health_policy(settings.dispatch.health_policy);
    let sender = Sender::with_clock(settings.sender.clone(), clock.clone())?;
    let webhook = spawn_event_worker(&settings, &stores, &sender, &clock, &metrics, &shutdown);
    let set_worker = spawn_set_worker(
        &settings, &stores, &sender, &keys, &clock, &metrics, &shutdown,
    );
    let mut dispatcher = Dispatcher::new(
        DispatcherParts {
            outbox: stores.queue.clone(),
            keys: keys.clone(),
            sender,
            clock: clock.clone(),
            issuer: settings.issuer.clone(),
            settings: settings.dispatch.clone(),
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    );
    let waits = api::Waits::new(settings.http.max_waiting_requests);
    dispatcher = dispatcher.signal_recorded(waits.recorded());
    if let Some(runtime) = delivery {
        dispatcher = dispatcher.run_attempts_on(runtime);
    }
    let credentials = Arc::new(api::Credentials::new(
        settings.api_token.as_ref().map(|t| t.expose()),
        Some(settings.api_tokens_file.clone()),
    )?);
    let state = Arc::new(AppState {
        stores,
        keys: keys.clone(),
        issuer: settings.issuer.clone(),
        net: settings.net,
        clock: clock.clone(),
        credentials: credentials.clone(),
        metrics,
        body_limit: settings.body_limit,
        waits,
        ssf: settings.ssf.then(|| api::SsfApi {
            poll_lease: settings.ssf_poll_lease,
            ..api::SsfApi::new(ssf_mint(keys.clone(), settings.issuer.clone()))
        }),
        delivery_stats: api::StatsCache::default(),
    });
    let housekeeping = spawn_housekeeping(&settings, &state, clock.clone(), &shutdown);
    let dispatcher = settings
        .dispatch
        .enabled
        .then(|| tokio::spawn(dispatcher.run()));
    if dispatcher.is_none() {
        tracing::info!("dispatch is off: this node serves the API and delivers nothing");
    }
    let reloader = tokio::spawn(reload_keys(
        keys,
        settings.keys_dir.clone(),
        clock,
        credentials,
        shutdown.clone(),
    ));
    let router = api::router(state);
    serve_api(listener, router, &settings.http, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(dispatcher) = dispatcher
        && dispatcher.await.is_err()
    {
        tracing::error!("dispatcher task failed");
    }
    if let Some(worker) = webhook
        && worker.await.is_err()
    {
        tracing::error!("operator webhook worker failed");
    }
    if let Some(worker) = set_worker
        && worker.await.is_err()
    {
        tracing::error!("SET push worker failed");
    }
    reloader.abort();
    for task in housekeeping {
        if task.await.is_err() {
            tracing::error!("housekeeping task failed");
        }
    }
    Ok(())
}

/// How a poll answer signs its SETs: with the active RS256 key of the current key set, the
/// claims fixed by the row.
fn ssf_mint(keys: Arc<KeyRing>, issuer: Issuer) -> api::MintSet {
    Arc::new(move |row, aud| {
        let set = keys.current();
        let key = set
            .active_key(SigningAlg::RS256)
            .ok_or_else(|| api::MintError("no active RS256 key".to_owned()))?;
        crate::ssf::mint(row, aud, issuer.as_str(), key).map_err(|e| api::MintError(e.to_string()))
    })
}

/// Starts the SET push worker when SSF is on and this node delivers; it stops on
/// `shutdown`.
fn spawn_set_worker(
    settings: &Settings,
    stores: &Stores,
    sender: &Sender,
    keys: &Arc<KeyRing>,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Option<JoinHandle<()>> {
    if !settings.ssf || !settings.dispatch.enabled {
        return None;
    }
    let worker = SetWorker::new(
        SetWorkerParts {
            store: stores.ssf.clone(),
            wake: stores.ssf_wake.clone(),
            sender: sender.clone(),
            keys: keys.clone(),
            issuer: settings.issuer.clone(),
            clock: clock.clone(),
            retry: settings.dispatch.retry,
            lease: settings.dispatch.lease,
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    );
    Some(tokio::spawn(worker.run()))
}

/// Starts the operator webhook worker when a webhook is configured and this node delivers;
/// it stops on `shutdown`. Without a webhook, events stay pending (and visible in the API)
/// until a node with one starts.
fn spawn_event_worker(
    settings: &Settings,
    stores: &Stores,
    sender: &Sender,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Option<JoinHandle<()>> {
    let webhook = settings.operator_webhook.as_ref()?;
    if !settings.dispatch.enabled {
        return None;
    }
    let worker = EventWorker::new(
        EventWorkerParts {
            events: stores.operator_events.clone(),
            sender: sender.clone(),
            clock: clock.clone(),
            url: webhook.url.clone(),
            secret: webhook.secret.clone(),
            retry: settings.dispatch.retry,
            lease: settings.dispatch.lease,
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    );
    tracing::info!(url = %webhook.url.origin().ascii_serialization(), "operator webhook worker started");
    Some(tokio::spawn(worker.run()))
}

/// Starts the expiry sweeper (unless turned off) and the pruner; both stop on `shutdown`.
fn spawn_housekeeping(
    settings: &Settings,
    state: &AppState,
    clock: SharedClock,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let config = &settings.housekeeping;
    let mut tasks = Vec::new();
    if config.expiry_sweep {
        let sweeper = ExpirySweeper::new(
            &state.stores,
            clock.clone(),
            state.metrics.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(sweeper.run()));
    }
    tasks.push(tokio::spawn(retention::run(
        state.stores.clone(),
        clock,
        config.retention,
        config.prune_interval,
        shutdown.clone(),
    )));
    tasks
}

async fn reload_keys(
    keys: Arc<KeyRing>,
    dir: std::path::PathBuf,
    clock: SharedClock,
    credentials: Arc<api::Credentials>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(KEY_RELOAD_INTERVAL) => {}
        }
        match keys.reload(&dir, clock.now()) {
            Ok(true) => tracing::info!("signing keys reloaded"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "reloading signing keys failed; keeping the current set")
            }
        }
        match credentials.reload() {
            Ok(true) => tracing::info!("API tokens reloaded"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "reloading API tokens failed; keeping the current set")
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn delivery_threads_run_nicer_than_the_caller() {
        let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let runtime = super::delivery_runtime(5).unwrap();
        let theirs = runtime.block_on(async {
            tokio::spawn(async {
                rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
            })
            .await
            .unwrap()
        });
        assert_eq!(theirs, (own + 5).min(19));
    }
}
