//! Retention: prunes delivered and cancelled rows (with their attempt history) and ended
//! sessions older than the retention age, and expired idempotency keys of bulk re-drives, in
//! small batches so no prune holds a lock for long; and endpoint-health buckets older than the
//! health window.
//!
//! Operator events that were delivered to the webhook or failed are pruned at the same age:
//! they are a notice, and a failed one has already been retried to its budget. So are SET
//! rows that were delivered, failed or cancelled: a receiver's `setErrs` and the push budget
//! already decided a failed one, and a SET is a notice like the event.
//!
//! Failed rows, the dead letter, are never pruned here: they stay until an operator re-drives
//! them or removes them with `POST /api/v2/logout-deliveries/prune-failed`. An ended session
//! stays while any of its rows does, so a session with pending, in-flight or failed deliveries
//! is always kept.

use crate::clock::SharedClock;
use crate::store::Housekeeping;
use crate::store::{StoreError, Stores};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most rows or sessions deleted in one transaction.
pub(crate) const PRUNE_BATCH: usize = 500;

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Delivery rows deleted (with their attempt history).
    pub deliveries: u64,
    /// Ended sessions deleted (with their client lists).
    pub sessions: u64,
    /// Delivered and failed operator events deleted.
    pub operator_events: u64,
    /// Delivered, failed and cancelled SET rows deleted.
    pub sets: u64,
}

/// Deletes delivered and cancelled rows last changed before `before`, then ended sessions
/// that ended before it and have no rows left, then delivered and failed operator events last
/// changed before it, then finished (delivered, failed or cancelled) SET rows last changed
/// before it; batch by batch.
pub async fn prune(stores: &Stores, before: DateTime<Utc>) -> Result<PruneReport, StoreError> {
    let mut report = PruneReport::default();
    loop {
        let n = stores
            .housekeeping
            .prune_finished(before, PRUNE_BATCH)
            .await?;
        report.deliveries += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let n = stores
            .housekeeping
            .prune_sessions(before, PRUNE_BATCH)
            .await?;
        report.sessions += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let n = stores
            .operator_events
            .prune_events(before, PRUNE_BATCH)
            .await?;
        report.operator_events += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let n = stores.ssf.prune_sets(before, PRUNE_BATCH).await?;
        report.sets += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(report)
}

/// Deletes the idempotency keys of bulk re-drives that expired at or before `now`, batch by
/// batch; returns how many.
pub async fn prune_keys(stores: &Stores, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = stores.housekeeping.prune_keys(now, PRUNE_BATCH).await?;
        total += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Deletes failed rows last changed before `before`, batch by batch; returns how many.
pub(crate) async fn prune_failed(
    outbox: &dyn Housekeeping,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = outbox.prune_failed(before, PRUNE_BATCH).await?;
        total += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Prunes at start and then every `interval`, keeping `retention` of history, until shutdown.
pub(crate) async fn run(
    stores: Stores,
    clock: SharedClock,
    retention: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let age = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    loop {
        let before = clock
            .now()
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match prune(&stores, before).await {
            Ok(report)
                if report.deliveries + report.sessions + report.operator_events + report.sets
                    > 0 =>
            {
                tracing::info!(
                    deliveries = report.deliveries,
                    sessions = report.sessions,
                    operator_events = report.operator_events,
                    sets = report.sets,
                    "pruned old deliveries, sessions, operator events and SET rows"
                )
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %crate::error::chain(&err), "pruning failed")
            }
        }
        match prune_keys(&stores, clock.now()).await {
            Ok(n) if n > 0 => tracing::info!(keys = n, "pruned expired idempotency keys"),
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %crate::error::chain(&err), "pruning keys failed")
            }
        }
        match stores.housekeeping.prune_health(clock.now()).await {
            Ok(n) if n > 0 => tracing::debug!(buckets = n, "pruned old endpoint-health buckets"),
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %crate::error::chain(&err), "pruning health failed")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
