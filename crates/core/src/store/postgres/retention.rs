//! Expiry lookups, retention and statistics over PostgreSQL: the next session expiry, pruning
//! of finished rows and old ended sessions in bounded batches (rows another transaction holds
//! are skipped), and the counts behind the gauges.

use super::{PostgresStore, db, ms, opt_from_ms};
use crate::outbox::OutboxStats;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The earliest expiry of an active session; each branch reads one partial index.
pub(super) async fn next_expiry(pool: &PgPool) -> Result<Option<DateTime<Utc>>, StoreError> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT LEAST(\
         (SELECT MIN(expires_at) FROM sessions \
         WHERE ended_at IS NULL AND expires_at IS NOT NULL), \
         (SELECT MIN(idle_expires_at) FROM sessions \
         WHERE ended_at IS NULL AND idle_expires_at IS NOT NULL))",
    )
    .fetch_one(pool)
    .await
    .map_err(db)?;
    opt_from_ms(next)
}

/// Counts per live and dead-letter state (over `deliveries_state`) and the oldest due row
/// (first entry of `deliveries_due`).
pub(super) async fn stats(pool: &PgPool, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
    let (pending, in_flight, failed, oldest): (i64, i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deliveries WHERE state = 'pending'), \
         (SELECT count(*) FROM deliveries WHERE state = 'in_flight'), \
         (SELECT count(*) FROM deliveries WHERE state = 'failed'), \
         (SELECT MIN(next_attempt_at) FROM deliveries \
         WHERE state IN ('pending', 'in_flight') AND next_attempt_at <= $1)",
    )
    .bind(ms(now))
    .fetch_one(pool)
    .await
    .map_err(db)?;
    Ok(OutboxStats {
        pending: pending.unsigned_abs(),
        in_flight: in_flight.unsigned_abs(),
        failed: failed.unsigned_abs(),
        oldest_due_at: opt_from_ms(oldest)?,
    })
}

/// Deletes up to `limit` rows in one of `states` last changed before `before`, with their
/// attempt history, in one statement.
pub(super) async fn prune_rows(
    store: &PostgresStore,
    states: &[&str],
    before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    let deleted: i64 = sqlx::query_scalar(
        "WITH doomed AS (SELECT id FROM deliveries WHERE state = ANY($1) AND updated_at < $2 \
         LIMIT $3 FOR UPDATE SKIP LOCKED), \
         history AS (DELETE FROM delivery_attempts a USING doomed \
         WHERE a.delivery_id = doomed.id), \
         gone AS (DELETE FROM deliveries d USING doomed WHERE d.id = doomed.id RETURNING d.id) \
         SELECT count(*) FROM gone",
    )
    .bind(states)
    .bind(ms(before))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_one(&store.pool)
    .await
    .map_err(db)?;
    Ok(deleted.unsigned_abs())
}

/// Deletes up to `limit` sessions ended before `before` that no outbox row refers to, with
/// their client lists, in one statement.
pub(super) async fn prune_sessions(
    store: &PostgresStore,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    let deleted: i64 = sqlx::query_scalar(
        "WITH doomed AS (SELECT id FROM sessions s WHERE ended_at IS NOT NULL \
         AND ended_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.session_id = s.id) \
         LIMIT $2 FOR UPDATE SKIP LOCKED), \
         links AS (DELETE FROM session_clients c USING doomed WHERE c.session_id = doomed.id), \
         gone AS (DELETE FROM sessions s USING doomed WHERE s.id = doomed.id RETURNING s.id) \
         SELECT count(*) FROM gone",
    )
    .bind(ms(before))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_one(&store.pool)
    .await
    .map_err(db)?;
    Ok(deleted.unsigned_abs())
}
