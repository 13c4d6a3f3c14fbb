//! Operator events in the store: [`emit`], the one way an event is written (inside the
//! transaction of its cause), and [`OperatorEvents`], the queue the webhook worker claims
//! from and the operator's views.

use super::backend::Tx;
use super::{Page, StoreError};
use crate::ids::{LeaseId, OperatorEventId};
use crate::operator_events::{
    ClaimedOperatorEvent, EventRedrive, NewOperatorEvent, OperatorEvent, OperatorEventFilter,
    OperatorEventResult,
};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

/// Writes `events` in `tx`, the transaction of their cause, pending and due at once: they
/// commit or roll back with it. Whoever commits counts them afterwards with
/// [`crate::operator_events::EventTally::count`].
pub async fn emit(tx: &mut dyn Tx, events: &[NewOperatorEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    tx.insert_operator_events(events).await
}

/// The queue of operator events for the webhook worker, and the operator's views of them.
/// Every method is atomic.
#[async_trait]
pub trait OperatorEvents: Send + Sync {
    /// Claims up to `limit` due events (pending with `next_attempt_at <= now`, or in flight
    /// with an expired lease), oldest first. Each becomes `in_flight` under a new lease ending
    /// at `now + lease`; on PostgreSQL an event another node is claiming is skipped.
    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedOperatorEvent>, StoreError>;

    /// Records one attempt's result if its lease is current (its `error` becomes the event's
    /// `last_error` as it is); `false` when it is not (another worker owns the event now).
    async fn record_event(&self, result: &OperatorEventResult) -> Result<bool, StoreError>;

    /// Gives claimed events back, due at `now`, without counting an attempt (shutdown).
    async fn release_events(
        &self,
        leases: &[(OperatorEventId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Events matching `filter`, ordered by id, after cursor `from`.
    async fn list_events(
        &self,
        filter: &OperatorEventFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<OperatorEvent>, StoreError>;

    /// One event.
    async fn get_event(&self, id: &OperatorEventId) -> Result<Option<OperatorEvent>, StoreError>;

    /// Puts a `failed` event back in the queue: pending, due at `now`, attempts 0, its age
    /// budget counted from `now`. Any other event is left alone.
    async fn redrive_event(
        &self,
        id: &OperatorEventId,
        now: DateTime<Utc>,
    ) -> Result<EventRedrive, StoreError>;

    /// How many events are waiting to be delivered (pending or in flight).
    async fn pending_events(&self) -> Result<u64, StoreError>;

    /// Deletes up to `limit` `delivered` and `failed` events whose last change was before
    /// `before`. Returns how many.
    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}

/// What a re-drive did, from whether the failed event was requeued and the event as it now
/// stands.
pub(in crate::store) fn redrive_outcome(
    requeued: bool,
    current: Option<OperatorEvent>,
) -> EventRedrive {
    match (requeued, current) {
        (true, _) => EventRedrive::Requeued,
        (false, Some(event)) => EventRedrive::NotFailed(event.state),
        (false, None) => EventRedrive::NotFound,
    }
}
