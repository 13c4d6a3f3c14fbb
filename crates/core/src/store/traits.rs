//! The seams of the store that are backend queries with no rule above them, cut by who
//! uses them: the dispatcher's [`Queue`], the operator's [`Deliveries`] views, the
//! background [`Housekeeping`], the endpoint statistics [`ClientHealthStats`], and the
//! readiness [`Health`] probe.

use super::{Page, StoreError};
use crate::clients::RateLimit;
use crate::clock::Clock;
use crate::health::{ClientHealth, HealthPolicy};
use crate::ids::{ClientId, DeliveryId, EventId, LeaseId};
use crate::outbox::{
    AttemptResult, ClaimedDelivery, Delivery, DeliveryDetail, DeliveryFilter, DeliveryProgress,
    DeliveryStats, OutboxStats,
};
use crate::pacing::Pace;
use crate::terminate::EndTarget;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

/// The dispatcher's queue of delivery rows. Every method is atomic.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Claims up to `limit` due rows (pending with `next_attempt_at <= now`, or in-flight with
    /// an expired lease) of unpaused clients that still have a URL, oldest due first. Each
    /// becomes `in_flight` with a new lease ending at `now + lease`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records attempt results. A result whose lease is no longer current is ignored (another
    /// worker owns the row now); returns how many were applied.
    async fn record(&self, results: &[AttemptResult]) -> Result<u64, StoreError>;

    /// Gives claimed rows back, due at `now`, without counting an attempt (shutdown).
    async fn release(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Gives claimed rows back, each due at its own time, without counting an attempt and
    /// leaving `attempts` and `last_error` as they are (rows held back by their client's
    /// rate limit). A row whose lease is no longer current is left alone; returns how many
    /// were given back.
    async fn defer(&self, rows: &[(DeliveryId, LeaseId, DateTime<Utc>)])
    -> Result<u64, StoreError>;

    /// Takes places for `rows` claimed rows of `client`, limited to `limit`: reads the
    /// client's pacing state, applies the pacing rule with `horizon` at the time `clock` tells
    /// once the state is held (not before: a wait for another node's hold would otherwise
    /// make the places late), and stores the result, atomically against every other node.
    async fn pace(
        &self,
        client: &ClientId,
        limit: &RateLimit,
        clock: &dyn Clock,
        horizon: std::time::Duration,
        rows: usize,
    ) -> Result<Pace, StoreError>;

    /// Fails claimed rows without an attempt, `reason` as their last error: rows whose age
    /// budget ran out while they waited for room at their RP's origin. A row whose lease is no
    /// longer current is left alone; returns how many were failed.
    async fn give_up(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The earliest time a row becomes claimable (a pending row's `next_attempt_at` or an
    /// in-flight row's lease end), if any.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Signalled after new due rows are committed (by this process, or by another node when
    /// the backend can tell), so workers wake without polling.
    fn wakeup(&self) -> Arc<Notify>;
}

/// The operator's views of the delivery rows (their re-drive is [`super::Redrives`]).
#[async_trait]
pub trait Deliveries: Send + Sync {
    /// Rows matching `filter`, ordered by id, after cursor `from`.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Delivery>, StoreError>;

    /// One row with its attempt history.
    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryDetail>, StoreError>;

    /// The rows the end `event` of `target` wrote, in id order, as last committed: read over
    /// the session's or the user's rows (their index), keeping those of `event`.
    async fn event_progress(
        &self,
        target: &EndTarget,
        event: &EventId,
    ) -> Result<Vec<DeliveryProgress>, StoreError>;

    /// Live and dead-letter counts, and the oldest due row, as of `now`.
    async fn stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError>;

    /// Rows per state, the oldest due row as of `now`, and per ten-second bucket
    /// ([`crate::outbox::STATS_BUCKET_MS`]) the rows whose last change, at or after `since`,
    /// made them `delivered` or `failed`.
    async fn delivery_stats(
        &self,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<DeliveryStats, StoreError>;
}

/// Background housekeeping: retention and the expiry sweeper's schedule.
#[async_trait]
pub trait Housekeeping: Send + Sync {
    /// Deletes up to `limit` `delivered` and `cancelled` rows (with their attempt history)
    /// whose last change was before `before`. Returns how many.
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;

    /// Deletes up to `limit` `failed` rows (with their history) whose last change was before
    /// `before`: the operator's explicit dead-letter cleanup. Returns how many.
    async fn prune_failed(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;

    /// Deletes up to `limit` idempotency keys that expired at or before `now`. Returns how
    /// many.
    async fn prune_keys(&self, now: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;

    /// Deletes up to `limit` sessions that ended before `before` and have no outbox rows left
    /// (their client lists go with them). Returns how many.
    async fn prune_sessions(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;

    /// Deletes the endpoint-health buckets older than the health window at `now`. Returns
    /// how many.
    async fn prune_health(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The earliest `expires_at` or `idle_expires_at` among active sessions, if any.
    async fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Signalled when a session with an expiry is created, so the expiry sweeper reschedules.
    fn expiry_wakeup(&self) -> Arc<Notify>;
}

/// Endpoint health: the per-client statistics the queue keeps as it records attempts, and
/// the pause policy it applies in the same transaction.
#[async_trait]
pub trait ClientHealthStats: Send + Sync {
    /// Sets the pause policy applied as results are recorded (`None`, the default: off).
    fn set_health_policy(&self, policy: Option<HealthPolicy>);

    /// How many clients the policy paused in this process.
    fn auto_pauses(&self) -> u64;

    /// One client's health as of `now`; `None` for an unknown client.
    async fn client_health(
        &self,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<Option<ClientHealth>, StoreError>;

    /// The health of every client as of `now`, ordered by client_id, after cursor `from`.
    async fn list_client_health(
        &self,
        from: Option<&str>,
        take: usize,
        now: DateTime<Utc>,
    ) -> Result<Page<ClientHealth>, StoreError>;
}

/// A readiness probe of the backend.
#[async_trait]
pub trait Health: Send + Sync {
    /// `Ok` when the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
}
