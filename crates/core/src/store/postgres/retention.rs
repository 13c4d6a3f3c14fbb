//! Housekeeping over PostgreSQL: the next session expiry, and pruning of finished rows and old
//! ended sessions in bounded batches (rows another transaction holds are skipped).

use super::{PostgresStore, db, ms, opt_from_ms};
use crate::health::window_start;
use crate::store::sql::from_ms;
use crate::store::sql::health::HealthStatements;
use crate::store::sql::redrive::RedriveStatements;
use crate::store::{Housekeeping, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

#[async_trait]
impl Housekeeping for PostgresStore {
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        prune_rows(self, &["delivered", "cancelled"], before, limit).await
    }

    async fn prune_failed(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        prune_rows(self, &["failed"], before, limit).await
    }

    async fn prune_keys(&self, now: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        <sqlx::Postgres as RedriveStatements>::prune_keys(&mut conn, now, limit).await
    }

    async fn prune_sessions(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        prune_sessions(self, before, limit).await
    }

    async fn prune_health(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = from_ms(window_start(now))?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        <sqlx::Postgres as HealthStatements>::prune_health(&mut conn, before).await
    }

    /// Each branch reads one partial index.
    async fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT LEAST(\
             (SELECT MIN(expires_at) FROM sessions \
             WHERE ended_at IS NULL AND expires_at IS NOT NULL), \
             (SELECT MIN(idle_expires_at) FROM sessions \
             WHERE ended_at IS NULL AND idle_expires_at IS NOT NULL))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        opt_from_ms(next)
    }

    fn expiry_wakeup(&self) -> Arc<Notify> {
        self.expiry.clone()
    }
}

/// Deletes up to `limit` rows in one of `states` last changed before `before`, with their
/// attempt history, in one statement.
async fn prune_rows(
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
async fn prune_sessions(
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
