//! The delivery loop: claim due outbox rows under a lease, mint a fresh token per attempt,
//! send, classify and record. Caps attempts in flight globally and per RP origin, wakes on new
//! rows without polling, and on shutdown finishes or hands back what it holds.

mod attempt;
mod origin;
mod recorder;

pub use attempt::{describe, mint};
pub use origin::{OriginLimits, origin_of};

use crate::clock::SharedClock;
use crate::config::DispatchSettings;
use crate::ids::Issuer;
use crate::keys::KeyRing;
use crate::metrics::{LabelText, Metrics, OutcomeLabels};
use crate::outbox::{AttemptRecord, ClaimedDelivery, Outbox};
use crate::retry::{Decision, RetryPolicy};
use crate::sender::Sender;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most rows claimed in one round trip.
pub const CLAIM_BATCH: usize = 128;

/// Free slots worth a claim while attempts are in flight: a quarter of the in-flight cap.
fn claim_step(max_in_flight: usize) -> u32 {
    u32::try_from((max_in_flight / 4).clamp(1, CLAIM_BATCH)).unwrap_or(1)
}

/// Longest idle wait before looking at the outbox again, in case a wake-up was missed.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Idle wait when rows are due but none could be claimed (e.g. their client is paused).
const BLOCKED_IDLE: Duration = Duration::from_secs(1);

/// What the dispatcher is built from.
pub struct DispatcherParts {
    /// The outbox.
    pub outbox: Arc<dyn Outbox>,
    /// Signing keys (hot-reloadable).
    pub keys: Arc<KeyRing>,
    /// The HTTP sender.
    pub sender: Sender,
    /// Time.
    pub clock: SharedClock,
    /// The `iss` of every token.
    pub issuer: Issuer,
    /// Tuning.
    pub settings: DispatchSettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// State shared by the loop and its attempt tasks.
pub struct Inner {
    outbox: Arc<dyn Outbox>,
    keys: Arc<KeyRing>,
    sender: Sender,
    clock: SharedClock,
    issuer: Issuer,
    lease: chrono::Duration,
    token_lifetime: chrono::Duration,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    origins: OriginLimits,
    shutdown: CancellationToken,
}

/// The dispatcher. Several may run against one store; leases keep them apart.
pub struct Dispatcher {
    inner: Arc<Inner>,
    attempts: Option<tokio::runtime::Handle>,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Dispatcher {
    /// A dispatcher that stops claiming when `shutdown` is cancelled.
    pub fn new(parts: DispatcherParts, shutdown: CancellationToken) -> Self {
        let settings = parts.settings;
        Self {
            inner: Arc::new(Inner {
                outbox: parts.outbox,
                keys: parts.keys,
                sender: parts.sender,
                clock: parts.clock,
                issuer: parts.issuer,
                lease: chrono_duration(settings.lease),
                token_lifetime: chrono_duration(settings.token_lifetime),
                retry: settings.retry,
                metrics: parts.metrics,
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                max_in_flight: settings.max_in_flight.max(1),
                origins: OriginLimits::new(settings.max_per_origin),
                shutdown,
            }),
            attempts: None,
        }
    }

    /// Runs the attempts (minting, signing and the POST) on `runtime` rather than on the
    /// caller's. Claims, results and the API then stay on a runtime whose queue is short, so a
    /// store transaction or an API request is not polled behind hundreds of signing tasks.
    pub fn run_attempts_on(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.attempts = Some(runtime);
        self
    }

    /// Runs until shutdown, then waits for attempts in flight, hands back rows it could not
    /// start, and writes every result before returning.
    pub async fn run(self) {
        let (tx, rx) = tokio::sync::mpsc::channel(recorder::CHANNEL);
        let recorder = tokio::spawn(recorder::run(self.inner.outbox.clone(), rx));
        let mut tasks = JoinSet::new();
        while let Some(slots) = self.free_slots().await {
            while tasks.try_join_next().is_some() {}
            let claimed = self.claim(slots.len()).await;
            if claimed.is_empty() {
                drop(slots);
                self.idle().await;
                continue;
            }
            for (row, slot) in claimed.into_iter().zip(slots) {
                let attempt = attempt::run(self.inner.clone(), row, slot, tx.clone());
                match &self.attempts {
                    Some(runtime) => tasks.spawn_on(attempt, runtime),
                    None => tasks.spawn(attempt),
                };
            }
        }
        while tasks.join_next().await.is_some() {}
        drop(tx);
        if recorder.await.is_err() {
            tracing::error!("result recorder stopped abnormally");
        }
        tracing::info!("dispatcher stopped");
    }

    /// Waits for free in-flight slots and takes up to a batch; `None` on shutdown. While
    /// attempts are in flight it waits for [`claim_step`] free slots rather than one, so that
    /// claims (one write transaction each) come in batches instead of one row per finished
    /// attempt, while at least three quarters of the slots stay busy.
    async fn free_slots(&self) -> Option<Vec<OwnedSemaphorePermit>> {
        let in_flight = &self.inner.in_flight;
        let step = claim_step(self.inner.max_in_flight);
        let mut first = tokio::select! {
            biased;
            _ = self.inner.shutdown.cancelled() => return None,
            permits = in_flight.clone().acquire_many_owned(step) => permits.ok()?,
        };
        let mut slots = Vec::with_capacity(CLAIM_BATCH);
        while first.num_permits() > 1 {
            slots.extend(first.split(1));
        }
        slots.push(first);
        while slots.len() < CLAIM_BATCH {
            match in_flight.clone().try_acquire_owned() {
                Ok(permit) => slots.push(permit),
                Err(_) => break,
            }
        }
        Some(slots)
    }

    async fn claim(&self, limit: usize) -> Vec<ClaimedDelivery> {
        let inner = &self.inner;
        match inner
            .outbox
            .claim_due(inner.clock.now(), inner.lease, limit)
            .await
        {
            Ok(rows) => {
                let reclaimed = rows.iter().filter(|r| r.reclaimed).count();
                inner.metrics.lease_reclaims.inc_by(reclaimed as u64);
                rows
            }
            Err(err) => {
                tracing::error!(error = %crate::api::error::chain(&err), "claiming due deliveries failed");
                tokio::select! {
                    _ = inner.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(BLOCKED_IDLE) => {}
                }
                Vec::new()
            }
        }
    }

    /// Sleeps until the next row is due, new rows are signalled, or shutdown.
    async fn idle(&self) {
        let inner = &self.inner;
        let wakeup = inner.outbox.wakeup();
        let wait = match inner.outbox.next_due_at().await {
            Ok(Some(due)) => {
                let now = inner.clock.now();
                if due > now {
                    (due - now).to_std().unwrap_or(MAX_IDLE).min(MAX_IDLE)
                } else {
                    BLOCKED_IDLE
                }
            }
            Ok(None) => MAX_IDLE,
            Err(_) => BLOCKED_IDLE,
        };
        tokio::select! {
            _ = inner.shutdown.cancelled() => {}
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Inner {
    /// Returns a claimed row unattempted, due at `due`.
    async fn hand_back(&self, row: &ClaimedDelivery, due: DateTime<Utc>) {
        let lease = [(row.delivery.id.clone(), row.lease.clone())];
        if let Err(err) = self
            .outbox
            .release(&lease, crate::clock::to_millis(due))
            .await
        {
            tracing::warn!(
                delivery_id = %row.delivery.id,
                error = %crate::api::error::chain(&err),
                "could not hand a row back; it returns when its lease expires"
            );
        }
    }

    /// Logs and counts one attempt. Never logs the token or metadata.
    fn observe(
        &self,
        row: &ClaimedDelivery,
        attempt: u32,
        record: &AttemptRecord,
        decision: &Decision,
        latency: Duration,
    ) {
        let outcome = attempt::outcome_label(decision);
        self.metrics
            .attempts
            .get_or_create(&OutcomeLabels {
                outcome,
                client_id: LabelText::from(row.client.client_id.as_str()),
            })
            .inc();
        self.metrics.attempt_seconds.observe(latency.as_secs_f64());
        tracing::info!(
            delivery_id = %row.delivery.id,
            client_id = %row.client.client_id,
            session_id = %row.delivery.session_id,
            initiator = %row.delivery.initiator,
            attempt,
            status = record.status,
            error = record.error.as_deref(),
            latency_ms = record.latency_ms,
            jti = %record.jti,
            outcome,
            "delivery attempt"
        );
    }
}
