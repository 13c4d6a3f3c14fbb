//! The endpoint-health statements both SQL databases run alike: adding a recorded batch to
//! the per-client statistics with atomic increments (several nodes may record for one
//! client at once), the pause policy, the release of a resumed client's held rows, and the
//! reads. Like [`super::shared`], a trait with one blanket implementation.

use super::{Dialect, db, ms, opt_from_ms, overfetch, unsigned};
use crate::health::batch::BatchHealth;
use crate::health::{ClientHealth, HealthPolicy, PausedBy, StoredHealth, window_start};
use crate::ids::ClientId;
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Type};
use std::collections::HashMap;

/// Which clients a health read covers.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) enum Which<'a> {
    /// One client.
    One(&'a ClientId),
    /// A page of clients in client_id order, after a cursor.
    After(Option<&'a str>, usize),
}

/// A client with its streak row, if it has one.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct HealthRow {
    client_id: String,
    paused: bool,
    paused_by: Option<String>,
    paused_at: Option<i64>,
    last_success_at: Option<i64>,
    last_failure_at: Option<i64>,
    failures_since_success: Option<i64>,
    failing_since: Option<i64>,
}

impl HealthRow {
    fn into_stored(self) -> Result<StoredHealth, StoreError> {
        Ok(StoredHealth {
            client_id: self.client_id,
            paused: self.paused,
            paused_by: self.paused_by.as_deref().and_then(PausedBy::parse),
            paused_at: opt_from_ms(self.paused_at)?,
            last_success_at: opt_from_ms(self.last_success_at)?,
            last_failure_at: opt_from_ms(self.last_failure_at)?,
            failures_since_success: unsigned(
                self.failures_since_success.unwrap_or(0),
                "failures_since_success",
            )?,
            failing_since: opt_from_ms(self.failing_since)?,
            buckets: Vec::new(),
        })
    }
}

/// The statements of endpoint health, for `DB::add_health(conn, ...)` on either database.
#[async_trait]
pub(in crate::store) trait HealthStatements: Dialect {
    /// Adds a recorded batch to the statistics of its clients.
    async fn add_health(conn: &mut Self::Connection, batch: &BatchHealth)
    -> Result<(), StoreError>;

    /// Pauses the clients of `batch` that failed in it and now meet `policy`, unless they
    /// are paused already; returns the ids it paused. This is where a paused client is
    /// known, in the transaction that records the batch.
    async fn pause_failing_clients(
        conn: &mut Self::Connection,
        batch: &BatchHealth,
        policy: &HealthPolicy,
    ) -> Result<Vec<ClientId>, StoreError>;

    /// Adds `batch` and applies `policy` to it, in the caller's transaction (the one that
    /// records the batch); returns the clients [`Self::pause_failing_clients`] paused.
    async fn record_health(
        conn: &mut Self::Connection,
        batch: &BatchHealth,
        policy: Option<HealthPolicy>,
    ) -> Result<Vec<ClientId>, StoreError>;

    /// Makes the client's pending rows due at `now` with a fresh budget and restarts its
    /// failure streak (a resume); returns how many rows.
    async fn release_held(
        conn: &mut Self::Connection,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Deletes hourly buckets that began before `before`; returns how many.
    async fn prune_health(
        conn: &mut Self::Connection,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The health of `which` clients as of `now`, in client_id order (a page overfetches
    /// one).
    async fn read_health(
        from_db: &Pool<Self>,
        which: Which<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredHealth>, StoreError>;
}

/// Adds each bucket's counts to the stored ones.
const ADD_BUCKETS: &str = "INSERT INTO client_health_buckets \
    (client_id, hour, latency_bucket, successes, failures) ";
const ADD_BUCKETS_CONFLICT: &str = " ON CONFLICT (client_id, hour, latency_bucket) DO UPDATE \
    SET successes = client_health_buckets.successes + excluded.successes, \
    failures = client_health_buckets.failures + excluded.failures";

/// Carries each client's streak on: a batch with a success restarts it, one without adds
/// to it; the last times only move forward.
const ADD_STREAKS: &str = "INSERT INTO client_health \
    (client_id, last_success_at, last_failure_at, failures_since_success, failing_since) ";
const ADD_STREAKS_CONFLICT: &str = " ON CONFLICT (client_id) DO UPDATE SET \
    failures_since_success = CASE WHEN excluded.last_success_at IS NULL \
    THEN client_health.failures_since_success + excluded.failures_since_success \
    ELSE excluded.failures_since_success END, \
    failing_since = CASE WHEN excluded.last_success_at IS NULL \
    THEN COALESCE(client_health.failing_since, excluded.failing_since) \
    ELSE excluded.failing_since END, \
    last_success_at = CASE WHEN client_health.last_success_at IS NULL \
    OR excluded.last_success_at > client_health.last_success_at \
    THEN COALESCE(excluded.last_success_at, client_health.last_success_at) \
    ELSE client_health.last_success_at END, \
    last_failure_at = CASE WHEN client_health.last_failure_at IS NULL \
    OR excluded.last_failure_at > client_health.last_failure_at \
    THEN COALESCE(excluded.last_failure_at, client_health.last_failure_at) \
    ELSE client_health.last_failure_at END";

/// The columns of [`HealthRow`].
const HEALTH_ROWS: &str = "SELECT c.client_id, c.paused, c.paused_by, c.paused_at, \
    h.last_success_at, h.last_failure_at, h.failures_since_success, h.failing_since \
    FROM clients c LEFT JOIN client_health h ON h.client_id = c.client_id WHERE ";

#[async_trait]
impl<DB> HealthStatements for DB
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'e> &'e Pool<DB>: Executor<'e, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'r> HealthRow: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (String, i64, i64, i64): FromRow<'r, DB::Row>,
{
    async fn add_health(conn: &mut DB::Connection, batch: &BatchHealth) -> Result<(), StoreError> {
        if batch.buckets.is_empty() {
            return Ok(());
        }
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(ADD_BUCKETS);
        sql.push_values(&batch.buckets, |mut row, b| {
            row.push_bind(b.client_id.as_str())
                .push_bind(b.hour)
                .push_bind(b.latency_bucket)
                .push_bind(b.successes)
                .push_bind(b.failures);
        });
        sql.push(ADD_BUCKETS_CONFLICT);
        sql.build().execute(&mut *conn).await.map_err(db)?;
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(ADD_STREAKS);
        sql.push_values(&batch.clients, |mut row, c| {
            row.push_bind(c.client_id.as_str())
                .push_bind(c.last_success_at)
                .push_bind(c.last_failure_at)
                .push_bind(c.streak)
                .push_bind(c.streak_start);
        });
        sql.push(ADD_STREAKS_CONFLICT);
        sql.build().execute(conn).await.map_err(db)?;
        Ok(())
    }

    async fn record_health(
        conn: &mut DB::Connection,
        batch: &BatchHealth,
        policy: Option<HealthPolicy>,
    ) -> Result<Vec<ClientId>, StoreError> {
        DB::add_health(&mut *conn, batch).await?;
        match policy {
            Some(policy) => DB::pause_failing_clients(conn, batch, &policy).await,
            None => Ok(Vec::new()),
        }
    }

    async fn pause_failing_clients(
        conn: &mut DB::Connection,
        batch: &BatchHealth,
        policy: &HealthPolicy,
    ) -> Result<Vec<ClientId>, StoreError> {
        let (failing, Some(now)) = (batch.failing(), batch.now) else {
            return Ok(Vec::new());
        };
        if failing.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql: QueryBuilder<DB> = QueryBuilder::new("UPDATE clients SET paused = ");
        sql.push_bind(true)
            .push(", paused_by = ")
            .push_bind(PausedBy::HealthPolicy.as_str())
            .push(", paused_at = ")
            .push_bind(ms(now))
            .push(", updated_at = ")
            .push_bind(ms(now))
            .push(" WHERE paused = ")
            .push_bind(false)
            .push(" AND client_id IN (SELECT client_id FROM client_health WHERE client_id IN (");
        let mut ids = sql.separated(", ");
        for id in failing {
            ids.push_bind(id);
        }
        sql.push(") AND failures_since_success >= ")
            .push_bind(policy.min_failures())
            .push(" AND COALESCE(last_success_at, failing_since) <= ")
            .push_bind(policy.quiet_before(now))
            .push(") RETURNING client_id");
        let paused: Vec<(String,)> = sql.build_query_as().fetch_all(conn).await.map_err(db)?;
        Ok(paused
            .into_iter()
            .map(|(id,)| ClientId::from(id.as_str()))
            .collect())
    }

    async fn release_held(
        conn: &mut DB::Connection,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE deliveries SET next_attempt_at = $1, attempts = 0, budget_started_at = $1, \
             updated_at = $1 WHERE client_id = $2 AND state = 'pending'",
        )
        .bind(ms(now))
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        sqlx::query::<DB>(
            "UPDATE client_health SET failures_since_success = 0, failing_since = NULL \
             WHERE client_id = $1",
        )
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done))
    }

    async fn prune_health(
        conn: &mut DB::Connection,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query::<DB>("DELETE FROM client_health_buckets WHERE hour < $1")
            .bind(ms(before))
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(DB::affected(&done))
    }

    async fn read_health(
        from_db: &Pool<DB>,
        which: Which<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredHealth>, StoreError> {
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(HEALTH_ROWS);
        match which {
            Which::One(id) => {
                sql.push("c.client_id = ").push_bind(id.as_str());
            }
            Which::After(from, take) => {
                sql.push("c.client_id > ")
                    .push_bind(from.unwrap_or("").to_owned());
                sql.push(" ORDER BY c.client_id LIMIT ")
                    .push_bind(overfetch(take));
            }
        }
        let rows: Vec<HealthRow> = sql.build_query_as().fetch_all(from_db).await.map_err(db)?;
        let mut health: Vec<StoredHealth> = rows
            .into_iter()
            .map(HealthRow::into_stored)
            .collect::<Result<_, _>>()?;
        let (Some(first), Some(last)) = (health.first(), health.last()) else {
            return Ok(health);
        };
        let buckets: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT client_id, latency_bucket, CAST(SUM(successes) AS BIGINT), \
             CAST(SUM(failures) AS BIGINT) FROM client_health_buckets \
             WHERE client_id >= $1 AND client_id <= $2 AND hour >= $3 \
             GROUP BY client_id, latency_bucket",
        )
        .bind(first.client_id.clone())
        .bind(last.client_id.clone())
        .bind(window_start(now))
        .fetch_all(from_db)
        .await
        .map_err(db)?;
        attach(&mut health, buckets)?;
        Ok(health)
    }
}

/// Hands each client its window's buckets.
fn attach(
    health: &mut [StoredHealth],
    buckets: Vec<(String, i64, i64, i64)>,
) -> Result<(), StoreError> {
    let index: HashMap<String, usize> = health
        .iter()
        .enumerate()
        .map(|(i, h)| (h.client_id.clone(), i))
        .collect();
    for (client, bucket, successes, failures) in buckets {
        if let Some(h) = index.get(&client).and_then(|&i| health.get_mut(i)) {
            h.buckets.push((
                bucket,
                unsigned(successes, "successes")?,
                unsigned(failures, "failures")?,
            ));
        }
    }
    Ok(())
}

/// A page of client health read from `pool` as of `now`.
pub(in crate::store) async fn health_page<DB: HealthStatements>(
    pool: &Pool<DB>,
    from: Option<&str>,
    take: usize,
    now: DateTime<Utc>,
) -> Result<Page<ClientHealth>, StoreError> {
    let rows = DB::read_health(pool, Which::After(from, take), now).await?;
    let health = rows.into_iter().map(StoredHealth::into_health).collect();
    Ok(Page::from_overfetch(health, take, |h: &ClientHealth| {
        h.client_id.to_string()
    }))
}

/// One client's health read from `pool` as of `now`.
pub(in crate::store) async fn one_health<DB: HealthStatements>(
    pool: &Pool<DB>,
    id: &ClientId,
    now: DateTime<Utc>,
) -> Result<Option<ClientHealth>, StoreError> {
    let rows = DB::read_health(pool, Which::One(id), now).await?;
    Ok(rows.into_iter().next().map(StoredHealth::into_health))
}
