//! Housekeeping over SQLite: the next session expiry, and pruning of finished rows and old
//! ended sessions in bounded batches.

use super::{SqliteStore, WriteTx, db, json_list, ms, opt_from_ms};
use crate::health::window_start;
use crate::store::sql::from_ms;
use crate::store::sql::health::HealthStatements;
use crate::store::sql::limit as bound;
use crate::store::sql::redrive::RedriveStatements;
use crate::store::{Housekeeping, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

#[async_trait]
impl Housekeeping for SqliteStore {
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        prune_rows(self, &["delivered", "cancelled"], before, limit).await
    }

    async fn prune_failed(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        prune_rows(self, &["failed"], before, limit).await
    }

    async fn prune_keys(&self, now: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let n = <sqlx::Sqlite as RedriveStatements>::prune_keys(&mut tx, now, limit).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn prune_sessions(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        prune_sessions(self, before, limit).await
    }

    async fn prune_health(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = from_ms(window_start(now))?;
        let mut tx = self.begin_background_write().await?;
        let n = <sqlx::Sqlite as HealthStatements>::prune_health(&mut tx, before).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    /// Each branch reads one partial index.
    async fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM (\
             SELECT MIN(expires_at) AS t FROM sessions \
             WHERE ended_at IS NULL AND expires_at IS NOT NULL \
             UNION ALL SELECT MIN(idle_expires_at) FROM sessions \
             WHERE ended_at IS NULL AND idle_expires_at IS NOT NULL)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(db)?;
        opt_from_ms(next)
    }

    fn expiry_wakeup(&self) -> Arc<Notify> {
        self.expiry.clone()
    }
}

/// Deletes up to `limit` rows in one of `states` last changed before `before`, with their
/// attempt history, in one short write transaction.
async fn prune_rows(
    store: &SqliteStore,
    states: &[&str],
    before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    let mut tx = store.begin_background_write().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM deliveries INDEXED BY deliveries_finished_age \
         WHERE state NOT IN ('pending', 'in_flight') \
         AND state IN (SELECT value FROM json_each(?1)) AND updated_at < ?2 LIMIT +?3",
    )
    .bind(json_list(states.iter().copied())?)
    .bind(ms(before))
    .bind(bound(limit))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    delete(
        tx,
        &ids,
        [
            "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?))",
        ],
    )
    .await
}

/// Deletes up to `limit` sessions ended before `before` that no outbox row refers to, with
/// their client lists, in one short write transaction.
async fn prune_sessions(
    store: &SqliteStore,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    let mut tx = store.begin_background_write().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM sessions AS s WHERE ended_at IS NOT NULL AND ended_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.session_id = s.id) LIMIT +?2",
    )
    .bind(ms(before))
    .bind(bound(limit))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    delete(
        tx,
        &ids,
        [
            "DELETE FROM session_clients WHERE session_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM sessions WHERE id IN (SELECT value FROM json_each(?))",
        ],
    )
    .await
}

/// Runs `statements` in order with `ids` as their one parameter (a JSON list), then commits;
/// returns how many ids there were. Nothing is written when there are none.
async fn delete(
    mut tx: WriteTx,
    ids: &[String],
    statements: [&'static str; 2],
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let list = json_list(ids.iter().map(String::as_str))?;
    for sql in statements {
        sqlx::query(sql)
            .bind(&list)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(ids.len() as u64)
}
