//! The outbox over PostgreSQL: claims with `FOR UPDATE SKIP LOCKED` under a lease, and batched
//! results and releases fenced by that lease, each one statement; and the operator's views.

use super::rows::{ClaimRow, DeliveryRow};
use super::{PostgresStore, db, ms, opt_from_ms};
use crate::clients::RateLimit;
use crate::clock::Clock;
use crate::ids::{ClientId, DeliveryId, EventId, LeaseId};
use crate::operator_events::NewOperatorEvent;
use crate::outbox::{
    AttemptResult, ClaimedDelivery, Delivery, DeliveryDetail, DeliveryFilter, DeliveryProgress,
    DeliveryStats, OutboxStats, STATS_BUCKET_MS,
};
use crate::pacing::Pace;
use crate::store::sql::events::EventStatements;
use crate::store::sql::health::HealthStatements;
use crate::store::sql::results::{ResultRow, applied_health, dead_letters, give_ups, given_up};
use crate::store::sql::rows::{BucketRow, StateCountRow, delivery_columns, delivery_stats};
use crate::store::sql::{limit as bound, shared::Shared};
use crate::store::{Deliveries, Page, Queue, SnapshotRuns, StoreError};
use crate::terminate::EndTarget;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sqlx::Postgres;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Claims due rows in one statement. `due` locks up to `$2` claimable rows in due order,
/// skipping rows another transaction holds (a concurrent claim); a row that a concurrent claim
/// committed meanwhile is re-checked on its new version and dropped, as its lease is not yet
/// expired. `claimed` puts them in flight under lease `$3` until `$4`; the outer query joins
/// each with its client's registration and restores the due order.
const CLAIM: &str = concat!(
    "WITH due AS (SELECT d.id AS due_id, d.next_attempt_at AS due_at,",
    " d.state = 'in_flight' AS reclaimed FROM deliveries d",
    " WHERE d.state IN ('pending', 'in_flight') AND d.next_attempt_at <= $1",
    " AND d.client_id IN (SELECT client_id FROM clients WHERE NOT paused AND has_url)",
    " ORDER BY d.next_attempt_at, d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED),",
    " claimed AS (UPDATE deliveries SET state = 'in_flight', lease_id = $3, lease_until = $4,",
    " next_attempt_at = $4, updated_at = $1 FROM due WHERE id = due.due_id",
    " RETURNING due.due_at, due.reclaimed, ",
    delivery_columns!(),
    ") SELECT claimed.*, c.settings AS client_settings, c.paused AS client_paused,",
    " c.created_at AS client_created_at, c.updated_at AS client_updated_at",
    " FROM claimed JOIN clients c ON c.client_id = claimed.client_id",
    " ORDER BY claimed.due_at, claimed.id"
);

/// Starts a claim's transaction with the plan of [`CLAIM`] pinned to its one cheap shape: read
/// `deliveries_due` in order and stop after `$2` rows. Left to the planner, a table whose
/// statistics predate its backlog (a new database, or the first minute of a mass logout, before
/// autovacuum analyzes it; a test table of 40,000 due rows that had never been analyzed was
/// estimated at 41) is read whole with a bitmap scan and sorted, and in the benchmark every
/// claim then cost 50-100 ms of the server's CPU instead of under 1 ms. With sorting disabled
/// only that ordered scan is left; JIT stays off because the disabled sort's cost would
/// otherwise set it off (300 ms of compiling per claim, measured).
const CLAIM_PLAN: &str = "BEGIN; SET LOCAL enable_sort = off; SET LOCAL jit = off";

/// Records a batch of results in one statement: `done` applies each result whose lease is
/// current (a row locked by a concurrent claim is re-checked after it commits, and then no
/// longer matches the old lease), `history` appends the attempts of exactly those rows.
///
/// The state check is written `d.state || '' = 'in_flight'` so that no index can serve it:
/// each result then finds its row by primary key whatever the statistics say. With a usable
/// `state` predicate the planner read every in-flight row through the `state` index for each
/// batch and hash-joined them (20,000 in flight: 10 ms per batch against 3 ms).
///
/// It returns the applied rows with their clients, for the endpoint-health statistics added
/// in the same transaction.
const RECORD: &str = "WITH r AS (SELECT * FROM jsonb_to_recordset($1) AS r (id text, \
    lease text, state text, next_at bigint, delivered_at bigint, last_status integer, \
    last_error text, at bigint, status integer, error text, latency_ms bigint, jti text)), \
    done AS (UPDATE deliveries d SET state = r.state, next_attempt_at = r.next_at, \
    delivered_at = r.delivered_at, last_status = r.last_status, last_error = r.last_error, \
    attempts = d.attempts + 1, lease_id = NULL, lease_until = NULL, updated_at = r.at \
    FROM r WHERE d.id = r.id AND d.lease_id = r.lease AND d.state || '' = 'in_flight' \
    RETURNING d.id, d.client_id), \
    history AS (INSERT INTO delivery_attempts (delivery_id, at, status, error, latency_ms, jti) \
    SELECT r.id, r.at, r.status, r.error, r.latency_ms, r.jti FROM r JOIN done ON done.id = r.id) \
    SELECT id, client_id FROM done";

#[async_trait]
impl Queue for PostgresStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let lease_id = LeaseId::generate();
        let until = now + lease;
        let mut tx = self.pool.begin_with(CLAIM_PLAN).await.map_err(db)?;
        let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM)
            .bind(ms(now))
            .bind(bound(limit))
            .bind(lease_id.as_str())
            .bind(ms(until))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut registrations = HashMap::new();
        let mut snapshots = SnapshotRuns::<Value>::new();
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let (row, client, reclaimed) = row.into_parts(&mut registrations)?;
            let metadata = snapshots.get(&row.metadata, DeliveryRow::parse_metadata)?;
            claims.push(row.into_claim(client, metadata, &lease_id, reclaimed)?);
        }
        Ok(claims)
    }

    async fn record(&self, results: &[AttemptResult]) -> Result<u64, StoreError> {
        if results.is_empty() {
            return Ok(0);
        }
        let rows = ResultRow::first_of_each(results);
        let failing = give_ups(&rows);
        let mut tx = self.begin().await?;
        // The rows these results may turn into dead letters, read and locked before they
        // change (none is read for a batch without a give-up).
        let failing = match failing.is_empty() {
            true => Vec::new(),
            false => Postgres::leased_rows(&mut tx, &failing).await?,
        };
        let done: Vec<(String, String)> = sqlx::query_as(RECORD)
            .bind(result_batch(&rows))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        // The statistics of exactly the results applied, the clients the policy pauses and
        // the operator events of both commit with them.
        let health = applied_health(&rows, &done);
        let paused = Postgres::record_health(&mut tx, &health, self.health.get()).await?;
        let mut events = dead_letters(&rows, failing);
        events.extend(NewOperatorEvent::auto_paused(&paused, health.now));
        Postgres::insert_events(&mut tx, &events).await?;
        tx.commit().await.map_err(db)?;
        self.health.count_pauses(&paused);
        self.tally.count(&events);
        Ok(done.len() as u64)
    }

    async fn release(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let released = sqlx::query(
            "UPDATE deliveries d SET state = 'pending', next_attempt_at = $1, lease_id = NULL, \
             lease_until = NULL, updated_at = $1 \
             FROM jsonb_to_recordset($2) AS r (id text, lease text) \
             WHERE d.id = r.id AND d.lease_id = r.lease AND d.state || '' = 'in_flight'",
        )
        .bind(ms(now))
        .bind(lease_batch(leases))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        self.commit_due(tx, released > 0).await?;
        Ok(released)
    }

    async fn defer(
        &self,
        rows: &[(DeliveryId, LeaseId, DateTime<Utc>)],
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let batch: Value = rows
            .iter()
            .map(|(id, lease, due)| json!({"id": id.as_str(), "lease": lease.as_str(), "due": ms(*due)}))
            .collect();
        let mut tx = self.begin().await?;
        let deferred = sqlx::query(
            "UPDATE deliveries d SET state = 'pending', next_attempt_at = r.due, lease_id = NULL, \
             lease_until = NULL, updated_at = r.due \
             FROM jsonb_to_recordset($1) AS r (id text, lease text, due bigint) \
             WHERE d.id = r.id AND d.lease_id = r.lease AND d.state || '' = 'in_flight'",
        )
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        self.commit_due(tx, deferred > 0).await?;
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
        let mut tx = self.begin().await?;
        let pace = sqlx::Postgres::pace(&mut tx, client, limit, clock, horizon, rows).await?;
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
        let mut tx = self.begin().await?;
        let pairs: Vec<(&str, &str)> = leases
            .iter()
            .map(|(id, lease)| (id.as_str(), lease.as_str()))
            .collect();
        let failing = Postgres::leased_rows(&mut tx, &pairs).await?;
        let failed = sqlx::query(
            "UPDATE deliveries d SET state = 'failed', next_attempt_at = NULL, lease_id = NULL, \
             lease_until = NULL, last_error = $1, updated_at = $2 \
             FROM jsonb_to_recordset($3) AS r (id text, lease text) \
             WHERE d.id = r.id AND d.lease_id = r.lease AND d.state || '' = 'in_flight'",
        )
        .bind(reason)
        .bind(ms(now))
        .bind(lease_batch(leases))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let events = given_up(failing, reason, now);
        Postgres::insert_events(&mut tx, &events).await?;
        tx.commit().await.map_err(db)?;
        self.tally.count(&events);
        Ok(failed)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Rows of paused clients are left out: they are due but cannot be claimed, and a
        // dispatcher sleeping until a past time would spin.
        let next: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT next_attempt_at FROM deliveries WHERE state IN ('pending', 'in_flight') \
             AND client_id IN (SELECT client_id FROM clients WHERE NOT paused AND has_url) \
             ORDER BY next_attempt_at, id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        opt_from_ms(next.flatten())
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }
}

#[async_trait]
impl Deliveries for PostgresStore {
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Delivery>, StoreError> {
        sqlx::Postgres::list_deliveries(&self.pool, filter, from, take).await
    }

    async fn event_progress(
        &self,
        target: &EndTarget,
        event: &EventId,
    ) -> Result<Vec<DeliveryProgress>, StoreError> {
        sqlx::Postgres::event_progress(&self.pool, target, event).await
    }

    /// The row and its history are read in one transaction, so both belong to one moment.
    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryDetail>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db)?;
        let detail = sqlx::Postgres::delivery_detail(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(detail)
    }

    /// Counts per live and dead-letter state (over `deliveries_state`) and the oldest due row
    /// (first entry of `deliveries_due`).
    async fn stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
        self.queue_stats("deliveries", now).await
    }

    /// Counts per state (over `deliveries_state`), the oldest due row (first entry of
    /// `deliveries_due`), and the recent outcomes per bucket (two ranges of
    /// `deliveries_state_age`), in one read-only snapshot.
    async fn delivery_stats(
        &self,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<DeliveryStats, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db)?;
        let counts: Vec<StateCountRow> =
            sqlx::query_as("SELECT state, count(*) FROM deliveries GROUP BY state")
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM deliveries \
             WHERE state IN ('pending', 'in_flight') AND next_attempt_at <= $1",
        )
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let buckets: Vec<BucketRow> = sqlx::query_as(
            "SELECT state, updated_at / $2 AS bucket, count(*) FROM deliveries \
             WHERE state IN ('delivered', 'failed') AND updated_at >= $1 \
             GROUP BY bucket, state ORDER BY bucket, state",
        )
        .bind(ms(since))
        .bind(STATS_BUCKET_MS)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        delivery_stats(counts, oldest, buckets)
    }
}

/// The results as one JSON parameter for [`RECORD`], the first result per row only.
fn result_batch(rows: &[ResultRow<'_>]) -> Value {
    let batch = rows
        .iter()
        .map(|r| {
            let a = r.attempt;
            json!({
                "id": r.id,
                "lease": r.lease,
                "state": r.state,
                "next_at": r.next_attempt_at,
                "delivered_at": r.delivered_at,
                "last_status": a.status,
                "last_error": r.last_error,
                "at": ms(a.at),
                "status": a.status,
                "error": a.error,
                "latency_ms": a.latency_ms,
                "jti": a.jti.as_str(),
            })
        })
        .collect();
    Value::Array(batch)
}

/// Leases as one JSONB parameter, read with `jsonb_to_recordset` as `(id text, lease text)`.
fn lease_batch(leases: &[(DeliveryId, LeaseId)]) -> Value {
    leases
        .iter()
        .map(|(id, lease)| json!({"id": id.as_str(), "lease": lease.as_str()}))
        .collect()
}
