//! The expiry sweeper: ends sessions whose `expires_at` or `idle_expires_at` has passed, with
//! initiator `session-expired`, through the same transactional path as every other end.
//!
//! It sleeps until the next expiry the store reports, so a session ends right after it
//! expires, and wakes early when the store signals a new session with an expiry
//! ([`Housekeeping::expiry_wakeup`]). Sessions created on another node are picked up within
//! [`MAX_SLEEP`].

use crate::clock::SharedClock;
use crate::ids::EventId;
use crate::initiator::Initiator;
use crate::metrics::{InitiatorLabels, Metrics};
use crate::store::{Housekeeping, Sessions, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most sessions ended in one transaction.
pub(crate) const SWEEP_BATCH: usize = 500;
/// Longest sleep between looks at the store, the bound on lateness when a wake-up is missed.
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Wait after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Ends expired sessions until shutdown.
pub struct ExpirySweeper {
    sessions: Sessions,
    housekeeping: Arc<dyn Housekeeping>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl ExpirySweeper {
    /// A sweeper that stops when `shutdown` is cancelled.
    pub fn new(
        stores: &crate::store::Stores,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            sessions: stores.sessions.clone(),
            housekeeping: stores.housekeeping.clone(),
            clock,
            metrics,
            shutdown,
        }
    }

    /// Runs until shutdown: sweep, then sleep until the next expiry or a wake-up.
    pub async fn run(self) {
        let wakeup = self.housekeeping.expiry_wakeup();
        loop {
            let notified = wakeup.notified();
            let wait = match self.sweep().await {
                Ok(_) => self.until_next_expiry().await,
                Err(err) => {
                    tracing::error!(error = %crate::error::chain(&err), "ending expired sessions failed");
                    ERROR_BACKOFF
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Ends every session expired as of now, one batch per transaction; returns how many.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let now = self.clock.now();
            let event_id = EventId::generate();
            let report = self
                .sessions
                .end_expired(now, SWEEP_BATCH, &event_id)
                .await?;
            if report.sessions_ended > 0 {
                self.observe(&event_id, report.sessions_ended, report.deliveries);
            }
            total += report.sessions_ended;
            if report.sessions_ended < SWEEP_BATCH || self.shutdown.is_cancelled() {
                return Ok(total);
            }
        }
    }

    /// How long to sleep: until just after the next expiry, at most [`MAX_SLEEP`].
    async fn until_next_expiry(&self) -> Duration {
        match self.housekeeping.next_expiry().await {
            Ok(Some(at)) => {
                let left = at - self.clock.now() + chrono::Duration::milliseconds(1);
                left.to_std().unwrap_or(ERROR_BACKOFF).min(MAX_SLEEP)
            }
            Ok(None) => MAX_SLEEP,
            Err(_) => ERROR_BACKOFF,
        }
    }

    /// Counts and logs one batch.
    fn observe(&self, event_id: &EventId, sessions: usize, deliveries: usize) {
        let initiator = Initiator::SessionExpired;
        self.metrics
            .sessions_ended
            .get_or_create(&InitiatorLabels {
                initiator: initiator.as_str(),
            })
            .inc_by(sessions as u64);
        self.metrics.deliveries_enqueued.inc_by(deliveries as u64);
        tracing::info!(
            event_id = %event_id,
            initiator = %initiator,
            sessions_ended = sessions,
            deliveries,
            "expired sessions ended"
        );
    }
}
