//! The outbox over SQLite: leased claims and batched results, each call one write transaction,
//! and the operator's views of the rows.

use super::rows::{ClientRow, DeliveryRow};
use super::{SqliteStore, db, json_list, ms, opt_from_ms, values};
use crate::clients::RateLimit;
use crate::clients::RelyingParty;
use crate::clock::Clock;
use crate::ids::{ClientId, DeliveryId, EventId, LeaseId};
use crate::operator_events::NewOperatorEvent;
use crate::outbox::{
    AttemptResult, ClaimedDelivery, Delivery, DeliveryDetail, DeliveryFilter, DeliveryProgress,
    DeliveryState, DeliveryStats, OutboxStats, STATS_BUCKET_MS,
};
use crate::pacing::Pace;
use crate::store::sql::events::EventStatements;
use crate::store::sql::health::HealthStatements;
use crate::store::sql::results::{ResultRow, applied_health, dead_letters, give_ups, given_up};
use crate::store::sql::rows::{
    BucketRow, StateCountRow, StatsRow, delivery_columns, delivery_stats, stats,
};
use crate::store::sql::shared::Shared;
use crate::store::sql::{json, limit as bound};
use crate::store::{Deliveries, Page, Queue, SnapshotRuns, StoreError};
use crate::terminate::EndTarget;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::{Row, Sqlite, SqliteConnection};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use tokio::sync::Notify;

#[async_trait]
impl Queue for SqliteStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let limit = limit.min(self.batch_sizes().claim);
        let rows = due_rows(&mut tx, now, limit).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let lease_id = LeaseId::generate();
        let until = now + lease;
        let clients = take_lease(&mut tx, &rows, &lease_id, until, now).await?;
        tx.commit().await.map_err(db)?;
        let mut snapshots = SnapshotRuns::<String>::new();
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(client) = clients.get(row.client_id.as_str()).cloned() else {
                continue;
            };
            let metadata = snapshots.get(&row.metadata, DeliveryRow::parse_metadata)?;
            let reclaimed = row.state == DeliveryState::InFlight.as_str();
            let mut claim = row.into_claim(client, metadata, &lease_id, reclaimed)?;
            // The row was read before the lease was taken.
            claim.delivery.state = DeliveryState::InFlight;
            claim.delivery.next_attempt_at = Some(until);
            claims.push(claim);
        }
        Ok(claims)
    }

    /// Per chunk of up to 256 results, two statements in one round trip: append the attempts
    /// of rows whose lease matches, then update those rows. The unary `+` on `state` makes
    /// SQLite look rows up by id.
    ///
    /// The results go in one transaction, or, while API writes are arriving, in transactions
    /// of [`super::BatchSizes::API_ACTIVE`] results each. Each result stands alone (its row's
    /// lease guards it), so if a later transaction fails, writing the whole batch again
    /// applies only what is missing.
    async fn record(&self, results: &[AttemptResult]) -> Result<u64, StoreError> {
        let mut rows = &ResultRow::first_of_each(results)[..];
        let policy = self.health.get();
        let mut applied = 0;
        while !rows.is_empty() {
            let mut tx = self.begin_background_write().await?;
            let (these, rest) = rows.split_at(rows.len().min(self.batch_sizes().results));
            // The rows these results turn into dead letters, read before they change.
            let failing = Sqlite::leased_rows(&mut tx, &give_ups(these)).await?;
            let mut done = Vec::with_capacity(these.len());
            for chunk in these.chunks(values::MAX_ROWS) {
                done.extend(record_chunk(&mut tx, chunk).await?);
            }
            applied += done.len() as u64;
            // The statistics of exactly the results applied, the clients the policy pauses
            // and the operator events of both commit with them.
            let health = applied_health(these, &done);
            let paused = Sqlite::record_health(&mut tx, &health, policy).await?;
            let mut events = dead_letters(these, failing);
            events.extend(NewOperatorEvent::auto_paused(&paused, health.now));
            Sqlite::insert_events(&mut tx, &events).await?;
            tx.commit().await.map_err(db)?;
            self.health.count_pauses(&paused);
            self.tally.count(&events);
            rows = rest;
        }
        Ok(applied)
    }

    async fn release(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_background_write().await?;
        let released = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?1, lease_id = NULL, \
             lease_until = NULL, updated_at = ?1 FROM json_each(?2) AS r \
             WHERE deliveries.id = r.value ->> 0 AND deliveries.lease_id = r.value ->> 1 \
             AND +deliveries.state = 'in_flight'",
        )
        .bind(ms(now))
        .bind(lease_batch(leases))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        if released > 0 {
            self.notify();
        }
        Ok(released)
    }

    async fn defer(
        &self,
        rows: &[(DeliveryId, LeaseId, DateTime<Utc>)],
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let batch: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, lease, due)| json!([id.as_str(), lease.as_str(), ms(*due)]))
            .collect();
        let mut tx = self.begin_background_write().await?;
        let deferred = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = r.value ->> 2, \
             lease_id = NULL, lease_until = NULL, updated_at = r.value ->> 2 \
             FROM json_each(?1) AS r \
             WHERE deliveries.id = r.value ->> 0 AND deliveries.lease_id = r.value ->> 1 \
             AND +deliveries.state = 'in_flight'",
        )
        .bind(serde_json::Value::Array(batch).to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        if deferred > 0 {
            self.notify();
        }
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
        let mut tx = self.begin_background_write().await?;
        let pace = sqlx::Sqlite::pace(&mut tx, client, limit, clock, horizon, rows).await?;
        tx.commit().await.map_err(db)?;
        Ok(pace)
    }

    async fn give_up(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_background_write().await?;
        let pairs: Vec<(&str, &str)> = leases
            .iter()
            .map(|(id, lease)| (id.as_str(), lease.as_str()))
            .collect();
        let failing = Sqlite::leased_rows(&mut tx, &pairs).await?;
        let failed = sqlx::query(
            "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, lease_id = NULL, \
             lease_until = NULL, last_error = ?1, updated_at = ?2 FROM json_each(?3) AS r \
             WHERE deliveries.id = r.value ->> 0 AND deliveries.lease_id = r.value ->> 1 \
             AND +deliveries.state = 'in_flight'",
        )
        .bind(reason)
        .bind(ms(now))
        .bind(lease_batch(leases))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let events = given_up(failing, reason, now);
        Sqlite::insert_events(&mut tx, &events).await?;
        tx.commit().await.map_err(db)?;
        self.tally.count(&events);
        Ok(failed)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Rows of paused clients are left out: they are due but cannot be claimed, and a
        // dispatcher sleeping until a past time would spin.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_attempt_at FROM deliveries INDEXED BY deliveries_due \
             WHERE state IN ('pending', 'in_flight') \
             AND client_id IN (SELECT client_id FROM clients WHERE paused = 0 AND has_url = 1) \
             ORDER BY next_attempt_at LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        opt_from_ms(next)
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }
}

#[async_trait]
impl Deliveries for SqliteStore {
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Delivery>, StoreError> {
        sqlx::Sqlite::list_deliveries(&self.reader, filter, from, take).await
    }

    async fn event_progress(
        &self,
        target: &EndTarget,
        event: &EventId,
    ) -> Result<Vec<DeliveryProgress>, StoreError> {
        sqlx::Sqlite::event_progress(&self.reader, target, event).await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryDetail>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        sqlx::Sqlite::delivery_detail(&mut conn, id).await
    }

    /// Counts per live and dead-letter state (index-only over `deliveries_state`) and the oldest
    /// due row (first entry of `deliveries_due`).
    async fn stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
        self.queue_stats("deliveries", now).await
    }

    /// Counts per state (index-only over `deliveries_state`), the oldest due row (first entry
    /// of `deliveries_due`), and the recent outcomes per bucket: two ranges of the partial
    /// `deliveries_finished_age` index, whose condition the query repeats so that it applies.
    async fn delivery_stats(
        &self,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<DeliveryStats, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let counts: Vec<StateCountRow> = sqlx::query_as(STATE_COUNTS)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM deliveries INDEXED BY deliveries_due \
             WHERE state IN ('pending', 'in_flight') AND next_attempt_at <= ?",
        )
        .bind(ms(now))
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
        let buckets: Vec<BucketRow> = sqlx::query_as(OUTCOMES_PER_BUCKET)
            .bind(ms(since))
            .bind(STATS_BUCKET_MS)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        delivery_stats(counts, oldest, buckets)
    }
}

/// Rows per state: index-only over `deliveries_state`.
impl SqliteStore {
    /// The gauges of one queue table (`deliveries` or `ssf_sets`): counts per waiting and
    /// dead-letter state (index-only over its `_state` index) and the oldest due row (first
    /// entry of its `_due` index).
    pub(super) async fn queue_stats(
        &self,
        table: &'static str,
        now: DateTime<Utc>,
    ) -> Result<OutboxStats, StoreError> {
        let counts: StatsRow = sqlx::query_as(sqlx::AssertSqlSafe(queue_stats_sql(table)))
            .bind(ms(now))
            .fetch_one(&self.reader)
            .await
            .map_err(db)?;
        stats(counts)
    }
}

/// The gauges' query over one queue table. `INDEXED BY` its `_due` index keeps the planner
/// from reading every waiting row through the `_state` index instead.
pub(super) fn queue_stats_sql(table: &str) -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM {table} WHERE state = 'pending'), \
         (SELECT COUNT(*) FROM {table} WHERE state = 'in_flight'), \
         (SELECT COUNT(*) FROM {table} WHERE state = 'failed'), \
         (SELECT MIN(next_attempt_at) FROM {table} INDEXED BY {table}_due \
         WHERE state IN ('pending', 'in_flight') AND next_attempt_at <= ?)"
    )
}

const STATE_COUNTS: &str =
    "SELECT state, COUNT(*) FROM deliveries INDEXED BY deliveries_state GROUP BY state";

/// Delivered and failed rows per bucket of `?2` milliseconds of their last change since `?1`:
/// a range per state of the partial `deliveries_finished_age`, whose condition the query
/// repeats so that the index applies.
const OUTCOMES_PER_BUCKET: &str = "SELECT state, updated_at / ?2 AS bucket, COUNT(*) \
     FROM deliveries INDEXED BY deliveries_finished_age \
     WHERE state NOT IN ('pending', 'in_flight') AND state IN ('delivered', 'failed') \
     AND updated_at >= ?1 GROUP BY bucket, state ORDER BY bucket, state";

/// Up to `limit` claimable rows, oldest due first (rows due at one instant in id order, the
/// order they were written). In-flight rows carry their lease end in
/// `next_attempt_at`, so one ordered range over the partial `deliveries_due` index finds both
/// kinds; `INDEXED BY` keeps the planner from preferring `deliveries_state` and sorting.
///
/// The rows come back as one value, a JSON array holding each row's columns as an array: the
/// driver hands every result row from its database thread to this one as a message of its
/// own, and a claim of a hundred rows would otherwise wake this thread up to a hundred times.
async fn due_rows(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let rows: String = sqlx::query_scalar(concat!(
        "SELECT json_group_array(json_array(",
        delivery_columns!(),
        ") ORDER BY next_attempt_at, id) FROM (SELECT ",
        delivery_columns!(),
        " FROM deliveries INDEXED BY deliveries_due",
        " WHERE state IN ('pending', 'in_flight') AND next_attempt_at <= ?1",
        " AND client_id IN (SELECT client_id FROM clients WHERE paused = 0 AND has_url = 1)",
        " ORDER BY next_attempt_at, id LIMIT +?2)"
    ))
    .bind(ms(now))
    .bind(bound(limit))
    .fetch_one(conn)
    .await
    .map_err(db)?;
    json(&rows, "claimed rows")
}

/// Puts the rows in flight under `lease` until `until` and reads the current registrations
/// of their clients, in one round trip. Each registration is parsed once and shared by every
/// row of the claim that goes to that client.
async fn take_lease(
    conn: &mut SqliteConnection,
    rows: &[DeliveryRow],
    lease: &LeaseId,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Arc<RelyingParty>>, StoreError> {
    let ids: HashSet<&str> = rows.iter().map(|r| r.client_id.as_str()).collect();
    let clients: Vec<ClientRow> = sqlx::query_as(
        "UPDATE deliveries SET state = 'in_flight', lease_id = ?1, lease_until = ?2, \
         next_attempt_at = ?2, updated_at = ?3 WHERE id IN (SELECT value FROM json_each(?4)); \
         SELECT settings, paused, created_at, updated_at FROM clients \
         WHERE client_id IN (SELECT value FROM json_each(?5))",
    )
    .bind(lease.as_str())
    .bind(ms(until))
    .bind(ms(now))
    .bind(json_list(rows.iter().map(|r| r.id.as_str()))?)
    .bind(json_list(ids)?)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    clients
        .into_iter()
        .map(|row| {
            let client = row.into_client()?;
            Ok((client.client_id.to_string(), Arc::new(client)))
        })
        .collect()
}

/// Appends the attempts of result rows whose lease still holds.
static INSERT_ATTEMPTS: LazyLock<values::Statement> = LazyLock::new(|| {
    values::Statement::new(7, |rows| {
        format!(
            "WITH r (id, lease, at, status, error, latency_ms, jti) AS (VALUES {rows}) \
             INSERT INTO delivery_attempts (delivery_id, at, status, error, latency_ms, jti) \
             SELECT d.id, r.at, r.status, r.error, r.latency_ms, r.jti FROM r \
             JOIN deliveries AS d ON d.id = r.id AND d.lease_id = r.lease \
             AND +d.state = 'in_flight' WHERE r.id IS NOT NULL"
        )
    })
});

/// Updates the result rows whose lease still holds.
static UPDATE_RESULTS: LazyLock<values::Statement> = LazyLock::new(|| {
    values::Statement::new(8, |rows| {
        format!(
            "WITH r (id, lease, state, next_attempt_at, delivered_at, last_status, last_error, \
             at) AS (VALUES {rows}) \
             UPDATE deliveries SET state = r.state, next_attempt_at = r.next_attempt_at, \
             delivered_at = r.delivered_at, last_status = r.last_status, \
             last_error = r.last_error, attempts = attempts + 1, lease_id = NULL, \
             lease_until = NULL, updated_at = r.at FROM r \
             WHERE r.id IS NOT NULL AND deliveries.id = r.id AND deliveries.lease_id = r.lease \
             AND +deliveries.state = 'in_flight' \
             RETURNING deliveries.id, deliveries.client_id"
        )
    })
});

/// Appending the attempts, then updating the rows, in one round trip.
static RECORD: LazyLock<values::Sequence> =
    LazyLock::new(|| values::Sequence::new(&[&INSERT_ATTEMPTS, &UPDATE_RESULTS]));

/// Writes one chunk of results (see [`values`]); returns the rows updated, each with its
/// client.
async fn record_chunk(
    conn: &mut SqliteConnection,
    chunk: &[ResultRow<'_>],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut query = sqlx::query(RECORD.sql(chunk.len()));
    for row in chunk {
        let a = row.attempt;
        query = query
            .bind(row.id)
            .bind(row.lease)
            .bind(ms(a.at))
            .bind(a.status)
            .bind(a.error.as_deref())
            .bind(i64::try_from(a.latency_ms).unwrap_or(i64::MAX))
            .bind(a.jti.as_str());
    }
    query = INSERT_ATTEMPTS.pad(query, chunk.len());
    for row in chunk {
        query = query
            .bind(row.id)
            .bind(row.lease)
            .bind(row.state)
            .bind(row.next_attempt_at)
            .bind(row.delivered_at)
            .bind(row.attempt.status)
            .bind(row.last_error.as_deref())
            .bind(ms(row.attempt.at));
    }
    // Both statements match the same rows (id, lease and state in flight), one attempt and
    // one update each; the update returns them.
    let rows = UPDATE_RESULTS
        .pad(query, chunk.len())
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| Ok((row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?)))
        .collect()
}

/// Leases as one parameter, a JSON array of `[id, lease]` pairs (read with `json_each`).
fn lease_batch(leases: &[(DeliveryId, LeaseId)]) -> String {
    let pairs = leases
        .iter()
        .map(|(id, lease)| json!([id.as_str(), lease.as_str()]))
        .collect();
    serde_json::Value::Array(pairs).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::query_plan;
    use super::*;

    #[tokio::test]
    async fn the_overview_statistics_read_indexes_not_the_table() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let counts = query_plan(&store, STATE_COUNTS, &[], &[0]).await;
        assert!(
            counts
                .iter()
                .any(|s| s.contains("USING COVERING INDEX deliveries_state")),
            "{counts:?}"
        );
        let buckets = query_plan(&store, OUTCOMES_PER_BUCKET, &[], &[0]).await;
        assert!(
            buckets.iter().any(|s| s.starts_with("SEARCH deliveries")
                && s.contains("INDEX deliveries_finished_age (state=? AND updated_at>?)")),
            "{buckets:?}"
        );
        assert!(
            !buckets.iter().any(|s| s.starts_with("SCAN deliveries")),
            "{buckets:?}"
        );
    }
}
