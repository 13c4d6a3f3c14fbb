//! `Harness`: the API and a running dispatcher over one store, with a manual clock and an
//! outbox wrapper that signals every recorded result, so tests wait on events, not time.

use super::app::{ISSUER, TestApp, start_time};
use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, Utc};
use logoutd_core::DispatchSettings;
use logoutd_core::Metrics;
use logoutd_core::NetPolicy;
use logoutd_core::{AttemptResult, ClaimedDelivery};
use logoutd_core::{ClientId, DeliveryId, Issuer, LeaseId, Pace, RateLimit};
use logoutd_core::{Clock, ManualClock};
use logoutd_core::{Dispatcher, DispatcherParts};
use logoutd_core::{Queue, StoreError, Stores};
use logoutd_core::{Sender, SenderConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Longest a test waits for an event before failing.
pub const EVENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Delegates to a real queue and counts recorded results, hand-backs and give-ups, and the
/// dispatcher's looks at the next due time (it takes one each time it goes idle).
pub struct ObservedOutbox {
    inner: Arc<dyn Queue>,
    recorded: AtomicUsize,
    /// Rows handed back unattempted.
    released: AtomicUsize,
    /// Rows failed unattempted (their age budget ran out while they waited).
    given_up: AtomicUsize,
    looked_ahead: AtomicUsize,
    changed: Notify,
}

impl ObservedOutbox {
    /// Waits until at least `n` results have been recorded in total.
    pub async fn wait_recorded(&self, n: usize) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.recorded.load(Ordering::Acquire) >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} results recorded"));
    }

    /// Waits until `count` (one of the counters) reaches `n`.
    async fn wait_count(&self, count: &AtomicUsize, n: usize, what: &str) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if count.load(Ordering::Acquire) >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} rows {what}"));
    }

    /// Waits until at least `n` rows have been handed back unattempted in total.
    pub async fn wait_released(&self, n: usize) {
        self.wait_count(&self.released, n, "handed back").await;
    }

    /// Waits until at least `n` rows have been failed unattempted in total.
    pub async fn wait_given_up(&self, n: usize) {
        self.wait_count(&self.given_up, n, "given up").await;
    }

    pub fn recorded(&self) -> usize {
        self.recorded.load(Ordering::Acquire)
    }

    /// Waits until the dispatcher has gone idle `n` times in total (it reads the next due time
    /// just before it waits for a wake-up or for that time).
    pub async fn wait_idle(&self, n: usize) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.looked_ahead.load(Ordering::Acquire) >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("the dispatcher went idle fewer than {n} times"));
    }

    /// How many rows are claimable right now (claims them with a zero lease, so they are due
    /// again at once).
    pub async fn claim_due_probe(&self) -> usize {
        let far = chrono::Utc::now() + Duration::days(3650);
        let rows = self
            .inner
            .claim_due(far, Duration::zero(), 1000)
            .await
            .unwrap();
        let leases: Vec<_> = rows
            .iter()
            .map(|r| (r.delivery.id.clone(), r.lease.clone()))
            .collect();
        self.inner
            .release(&leases, super::app::start_time())
            .await
            .unwrap();
        rows.len()
    }
}

#[async_trait]
impl Queue for ObservedOutbox {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.inner.claim_due(now, lease, limit).await
    }
    async fn record(&self, results: &[AttemptResult]) -> Result<u64, StoreError> {
        let applied = self.inner.record(results).await?;
        self.recorded.fetch_add(results.len(), Ordering::AcqRel);
        self.changed.notify_waiters();
        Ok(applied)
    }
    async fn release(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let released = self.inner.release(leases, now).await?;
        self.released.fetch_add(leases.len(), Ordering::AcqRel);
        self.changed.notify_waiters();
        Ok(released)
    }
    async fn defer(
        &self,
        rows: &[(DeliveryId, LeaseId, DateTime<Utc>)],
    ) -> Result<u64, StoreError> {
        let deferred = self.inner.defer(rows).await?;
        self.released.fetch_add(rows.len(), Ordering::AcqRel);
        self.changed.notify_waiters();
        Ok(deferred)
    }
    async fn pace(
        &self,
        client: &ClientId,
        limit: &RateLimit,
        clock: &dyn Clock,
        horizon: std::time::Duration,
        rows: usize,
    ) -> Result<Pace, StoreError> {
        self.inner.pace(client, limit, clock, horizon, rows).await
    }
    async fn give_up(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let failed = self.inner.give_up(leases, reason, now).await?;
        self.given_up.fetch_add(leases.len(), Ordering::AcqRel);
        self.changed.notify_waiters();
        Ok(failed)
    }
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due = self.inner.next_due_at().await;
        self.looked_ahead.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        due
    }
    fn wakeup(&self) -> Arc<Notify> {
        self.inner.wakeup()
    }
}

/// The API plus a running dispatcher.
pub struct Harness {
    pub app: TestApp,
    pub outbox: Arc<ObservedOutbox>,
    pub clock: Arc<ManualClock>,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The attempt timeout of the harness: far above any loopback answer, so that a slow moment
/// of a busy machine never turns an answer into a timeout and changes an attempt count; and
/// below [`EVENT_TIMEOUT`], so that a hung attempt is recorded before a test gives up. A test
/// of timeouts runs on paused time (`start_paused`), where it passes at once when nothing
/// else is left to do.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Default dispatch settings, the insecure URL policy (loopback RPs) and [`ATTEMPT_TIMEOUT`].
pub fn test_settings() -> (DispatchSettings, SenderConfig) {
    let settings = DispatchSettings::default();
    let sender = SenderConfig {
        timeout: ATTEMPT_TIMEOUT,
        policy: NetPolicy {
            allow_insecure: true,
        },
        ..SenderConfig::default()
    };
    (settings, sender)
}

impl Harness {
    pub async fn memory() -> Self {
        let stores = logoutd_core::open_store("memory://").await.unwrap();
        Self::over(stores, test_settings()).await
    }

    pub async fn over(stores: Stores, settings: (DispatchSettings, SenderConfig)) -> Self {
        Self::with_max_idle(stores, settings, None).await
    }

    /// Like [`Harness::over`], with the dispatcher's fallback look at the outbox (5 s when
    /// idle) set to `max_idle` when given: with a long one, only a wake-up starts a delivery.
    pub async fn with_max_idle(
        stores: Stores,
        (settings, sender): (DispatchSettings, SenderConfig),
        max_idle: Option<std::time::Duration>,
    ) -> Self {
        let outbox = Arc::new(ObservedOutbox {
            inner: stores.queue.clone(),
            recorded: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            given_up: AtomicUsize::new(0),
            looked_ahead: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        let stores = Stores {
            queue: outbox.clone(),
            ..stores
        };
        let clock = Arc::new(ManualClock::new(start_time()));
        let metrics = Arc::new(Metrics::new());
        let app = TestApp::with_parts(stores.clone(), true, clock.clone(), metrics.clone());
        let shutdown = CancellationToken::new();
        let mut dispatcher = Dispatcher::new(
            DispatcherParts {
                outbox: outbox.clone(),
                keys: app.keys.clone(),
                sender: Sender::with_clock(sender, clock.clone()).unwrap(),
                clock: clock.clone(),
                issuer: Issuer::new(ISSUER),
                settings,
                metrics: metrics.clone(),
            },
            shutdown.clone(),
        );
        if let Some(max_idle) = max_idle {
            dispatcher = dispatcher.max_idle(max_idle);
        }
        let task = Some(tokio::spawn(dispatcher.run()));
        Self {
            app,
            outbox,
            clock,
            metrics,
            shutdown,
            task,
        }
    }

    /// Registers a client whose back-channel URL is `url`; `extra` is merged at top level.
    pub async fn client(&self, id: &str, url: &str, extra: Value) -> Value {
        let mut body = json!({ "client_id": id, "name": id, "id_token_signed_response_alg": "ES256",
            "oidc_logout": { "backchannel_logout_urls": [url] } });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let (status, reply) = self
            .app
            .call(Method::POST, "/api/v2/clients", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        reply
    }

    pub async fn session(&self, id: &str, user: &str, clients: &[&str], meta: Value) {
        let clients: Vec<Value> = clients.iter().map(|c| json!({ "client_id": c })).collect();
        let body =
            json!({ "id": id, "user_id": user, "clients": clients, "session_metadata": meta });
        let (status, reply) = self
            .app
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }

    /// Ends with `initiator` via `POST /logout-events`; returns the number of deliveries.
    pub async fn end(&self, target: Value, initiator: &str) -> u64 {
        let mut body = target;
        body["initiator"] = json!(initiator);
        let (status, reply) = self
            .app
            .call(Method::POST, "/api/v2/logout-events", Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        reply["deliveries"].as_u64().unwrap()
    }

    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let (status, reply) = self
            .app
            .call(
                Method::GET,
                &format!("/api/v2/logout-deliveries?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        reply["deliveries"].as_array().unwrap().clone()
    }

    pub async fn detail(&self, id: &str) -> Value {
        let (status, reply) = self
            .app
            .call(
                Method::GET,
                &format!("/api/v2/logout-deliveries/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        reply
    }

    /// Moves the clock to the delivery's `next_attempt_at` and wakes the dispatcher.
    pub fn advance_to(&self, delivery: &Value) {
        let due: DateTime<Utc> =
            serde_json::from_value(delivery["next_attempt_at"].clone()).unwrap();
        if due > self.clock.now_utc() {
            self.clock.set(due);
        }
        self.outbox.wakeup().notify_one();
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// `ManualClock::now` through the trait, for readability.
pub trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        logoutd_core::Clock::now(self)
    }
}
