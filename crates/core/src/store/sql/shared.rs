//! The statements both SQL databases run alike, written once: generic over the database,
//! with `$n` parameters (SQLite reads `$n` as the n-th bound value, as PostgreSQL does).
//! Statements whose shape differs between the two (batched claims and results, the
//! termination, anything that names an index or a JSON function) stay in each backend.

use super::rows::{
    ATTEMPTS, AttemptRow, ClientRow, DeliveryRow, ProgressRow, client_columns, delivery_columns,
    detail,
};
use super::{Dialect, by_id, db, ms, overfetch};
use crate::clients::{RateLimit, RelyingParty};
use crate::clock::Clock;
use crate::health::PausedBy;
use crate::ids::{ClientId, DeliveryId, EventId, SessionId};
use crate::metadata::SessionMetadata;
use crate::outbox::{Delivery, DeliveryDetail, DeliveryFilter, DeliveryProgress};
use crate::pacing::{Pace, PaceState};
use crate::session::{Device, Session};
use crate::store::{Page, StoreError};
use crate::terminate::EndTarget;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Type};

/// The statements both databases run alike, for `DB::insert_client(conn, ...)` on either.
///
/// A trait with one blanket implementation, rather than generic functions: the bounds that
/// let a database bind and decode these values are written once, on the implementation, and
/// code generic over the database (the shared transaction) asks only for `DB: Shared`.
#[async_trait]
pub(in crate::store) trait Shared: Dialect {
    /// Registers a client; false if the client_id exists.
    async fn insert_client(
        conn: &mut Self::Connection,
        client: &RelyingParty,
    ) -> Result<bool, StoreError>;

    /// Replaces a client's settings, keeping `created_at`; false if it does not exist.
    async fn update_client(
        conn: &mut Self::Connection,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes a client; false if it does not exist.
    async fn delete_client(conn: &mut Self::Connection, id: &ClientId) -> Result<bool, StoreError>;

    /// Cancels the client's pending and in-flight rows; returns how many.
    async fn cancel_rows(
        conn: &mut Self::Connection,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// One client, as last committed.
    async fn get_client(
        from: &Pool<Self>,
        id: &ClientId,
    ) -> Result<Option<RelyingParty>, StoreError>;

    /// Writes a new session row (not its client list); false if the id exists.
    async fn insert_session(conn: &mut Self::Connection, s: &Session) -> Result<bool, StoreError>;

    /// Bumps a session's `updated_at`.
    async fn touch(
        conn: &mut Self::Connection,
        id: &SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Replaces the session's metadata and sets `updated_at`.
    async fn set_metadata(
        conn: &mut Self::Connection,
        id: &SessionId,
        metadata: &SessionMetadata,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Takes places for `rows` rows of `client` (see [`crate::store::Queue::pace`]): reads
    /// its pacing state, locked until commit, and writes the new one. Run inside a write
    /// transaction.
    async fn pace(
        conn: &mut Self::Connection,
        client: &ClientId,
        limit: &RateLimit,
        clock: &dyn Clock,
        horizon: std::time::Duration,
        rows: usize,
    ) -> Result<Pace, StoreError>;

    /// Puts a row back in the queue: pending, due at `now`, attempts 0, the age budget
    /// counted from `now`, no lease.
    async fn requeue(
        conn: &mut Self::Connection,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Rows matching `filter`, ordered by id, after cursor `from`. Only the set filters
    /// become conditions, so the database can use the index of the most selective one.
    async fn list_deliveries(
        from_db: &Pool<Self>,
        filter: &DeliveryFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Delivery>, StoreError>;

    /// One row with its attempt history, oldest first, both read on `conn`.
    async fn delivery_detail(
        conn: &mut Self::Connection,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryDetail>, StoreError>;

    /// The rows of the end `event` of `target`, in id order: a range of `deliveries_session`
    /// or `deliveries_user` (session or user, then id), keeping the event's rows. A session
    /// has rows of one end only, and a user those of the few ends within the retention, so
    /// the range is the event's rows or little more, and no index on `event_id` is needed.
    async fn event_progress(
        from_db: &Pool<Self>,
        target: &EndTarget,
        event: &EventId,
    ) -> Result<Vec<DeliveryProgress>, StoreError>;
}

#[async_trait]
impl<DB> Shared for DB
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t RelyingParty>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t Device>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t SessionMetadata>: Encode<'t, DB> + Type<DB>,
    for<'r> ClientRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> DeliveryRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> AttemptRow: FromRow<'r, DB::Row>,
    for<'r> ProgressRow: FromRow<'r, DB::Row>,
    for<'r> (i64, i64, i64, i64): FromRow<'r, DB::Row>,
{
    async fn insert_client(
        conn: &mut DB::Connection,
        client: &RelyingParty,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "INSERT INTO clients (client_id, settings, paused, has_url, created_at, updated_at, \
             paused_by, paused_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(client.client_id.as_str())
        .bind(Json(client))
        .bind(client.paused)
        .bind(client.logout_url().is_some())
        .bind(ms(client.created_at))
        .bind(ms(client.updated_at))
        .bind(client.paused_by.map(PausedBy::as_str))
        .bind(client.paused_at.map(ms))
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn update_client(
        conn: &mut DB::Connection,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE clients SET settings = $1, paused = $2, has_url = $3, updated_at = $4, \
             paused_by = $6, paused_at = $7 WHERE client_id = $5",
        )
        .bind(Json(client))
        .bind(client.paused)
        .bind(client.logout_url().is_some())
        .bind(ms(now))
        .bind(client.client_id.as_str())
        .bind(client.paused_by.map(PausedBy::as_str))
        .bind(client.paused_at.map(ms))
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn delete_client(conn: &mut DB::Connection, id: &ClientId) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>("DELETE FROM clients WHERE client_id = $1")
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        // Its pacing state goes with it: a client registered again under the same id starts
        // with a full burst.
        // So do its endpoint-health statistics.
        for table in [
            "DELETE FROM client_pacing WHERE client_id = $1",
            "DELETE FROM client_health WHERE client_id = $1",
            "DELETE FROM client_health_buckets WHERE client_id = $1",
        ] {
            sqlx::query::<DB>(table)
                .bind(id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        Ok(DB::affected(&done) > 0)
    }

    async fn cancel_rows(
        conn: &mut DB::Connection,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE deliveries SET state = 'cancelled', next_attempt_at = NULL, \
             lease_id = NULL, lease_until = NULL, updated_at = $1 \
             WHERE client_id = $2 AND state IN ('pending', 'in_flight')",
        )
        .bind(ms(now))
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done))
    }

    async fn get_client(
        from: &Pool<DB>,
        id: &ClientId,
    ) -> Result<Option<RelyingParty>, StoreError> {
        let row: Option<ClientRow<DB::Json>> = sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE client_id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(from)
        .await
        .map_err(db)?;
        row.map(ClientRow::into_client).transpose()
    }

    async fn insert_session(conn: &mut DB::Connection, s: &Session) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "INSERT INTO sessions (id, user_id, created_at, updated_at, authenticated_at, \
             idle_expires_at, expires_at, last_interacted_at, device, metadata, ended_at, \
             end_initiator) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(s.id.as_str())
        .bind(s.user_id.as_str())
        .bind(ms(s.created_at))
        .bind(ms(s.updated_at))
        .bind(s.authenticated_at.map(ms))
        .bind(s.idle_expires_at.map(ms))
        .bind(s.expires_at.map(ms))
        .bind(s.last_interacted_at.map(ms))
        .bind(Json(&s.device))
        .bind(Json(&s.session_metadata))
        .bind(s.ended_at.map(ms))
        .bind(s.end_initiator.map(|i| i.as_str()))
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn touch(
        conn: &mut DB::Connection,
        id: &SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query::<DB>("UPDATE sessions SET updated_at = $1 WHERE id = $2")
            .bind(ms(now))
            .bind(id.as_str())
            .execute(conn)
            .await
            .map_err(db)
            .map(|_| ())
    }

    async fn set_metadata(
        conn: &mut DB::Connection,
        id: &SessionId,
        metadata: &SessionMetadata,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query::<DB>("UPDATE sessions SET metadata = $1, updated_at = $2 WHERE id = $3")
            .bind(Json(metadata))
            .bind(ms(now))
            .bind(id.as_str())
            .execute(conn)
            .await
            .map_err(db)
            .map(|_| ())
    }

    async fn pace(
        conn: &mut DB::Connection,
        client: &ClientId,
        limit: &RateLimit,
        clock: &dyn Clock,
        horizon: std::time::Duration,
        rows: usize,
    ) -> Result<Pace, StoreError> {
        // The row exists before it is read, so that two nodes pacing a client for the first
        // time at once meet on its lock (PostgreSQL) or the database lock (SQLite).
        sqlx::query::<DB>(
            "INSERT INTO client_pacing (client_id, interval_us, burst, tat_us, queued_until_us) \
             VALUES ($1, 0, 0, 0, 0) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(client.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        let select = format!(
            "SELECT interval_us, burst, tat_us, queued_until_us FROM client_pacing \
             WHERE client_id = $1{}",
            DB::FOR_UPDATE
        );
        let stored: Option<(i64, i64, i64, i64)> =
            sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(select))
                .bind(client.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        let stored = stored.map(|(interval_us, burst, tat_us, queued_until_us)| PaceState {
            interval_us,
            burst,
            tat_us,
            queued_until_us,
        });
        // The time once the state is ours: places are counted from when they are taken.
        let now = clock.now();
        let (next, pace) = crate::pacing::plan(stored, limit, now, horizon, rows);
        sqlx::query::<DB>(
            "UPDATE client_pacing SET interval_us = $2, burst = $3, tat_us = $4, \
             queued_until_us = $5 WHERE client_id = $1",
        )
        .bind(client.as_str())
        .bind(next.interval_us)
        .bind(next.burst)
        .bind(next.tat_us)
        .bind(next.queued_until_us)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        Ok(pace)
    }

    async fn requeue(
        conn: &mut DB::Connection,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query::<DB>(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, attempts = 0, \
             budget_started_at = $1, lease_id = NULL, lease_until = NULL, updated_at = $1 \
             WHERE id = $2",
        )
        .bind(ms(now))
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)
        .map(|_| ())
    }

    async fn list_deliveries(
        from_db: &Pool<DB>,
        filter: &DeliveryFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Delivery>, StoreError> {
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE 1 = 1"
        ));
        let conditions = [
            ("state", filter.state.map(|s| s.as_str().to_owned())),
            (
                "client_id",
                filter.client_id.as_ref().map(|c| c.to_string()),
            ),
            (
                "session_id",
                filter.session_id.as_ref().map(|s| s.to_string()),
            ),
            ("user_id", filter.user_id.as_ref().map(|u| u.to_string())),
            ("initiator", filter.initiator.map(|i| i.as_str().to_owned())),
        ];
        for (column, value) in conditions {
            if let Some(value) = value {
                sql.push(format_args!(" AND {column} = ")).push_bind(value);
            }
        }
        if let Some(since) = filter.created_since {
            sql.push(" AND created_at >= ").push_bind(ms(since));
        }
        if let Some(before) = filter.created_before {
            sql.push(" AND created_at < ").push_bind(ms(before));
        }
        by_id(&mut sql, from, overfetch(take), "");
        let rows: Vec<DeliveryRow<DB::Json>> =
            sql.build_query_as().fetch_all(from_db).await.map_err(db)?;
        let items = rows
            .into_iter()
            .map(DeliveryRow::into_delivery)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, take, |d: &Delivery| {
            d.id.to_string()
        }))
    }

    async fn delivery_detail(
        conn: &mut DB::Connection,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryDetail>, StoreError> {
        let row: Option<DeliveryRow<DB::Json>> = sqlx::query_as(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let attempts: Vec<AttemptRow> = sqlx::query_as(ATTEMPTS)
            .bind(id.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        detail(row, attempts).map(Some)
    }

    async fn event_progress(
        from_db: &Pool<DB>,
        target: &EndTarget,
        event: &EventId,
    ) -> Result<Vec<DeliveryProgress>, StoreError> {
        let (sql, key) = match target {
            EndTarget::Session(id) => (
                "SELECT id, client_id, state, attempts, last_status FROM deliveries \
                 WHERE session_id = $1 AND event_id = $2 ORDER BY id",
                id.as_str(),
            ),
            EndTarget::User(user) => (
                "SELECT id, client_id, state, attempts, last_status FROM deliveries \
                 WHERE user_id = $1 AND event_id = $2 ORDER BY id",
                user.as_str(),
            ),
        };
        let rows: Vec<ProgressRow> = sqlx::query_as(sql)
            .bind(key)
            .bind(event.as_str())
            .fetch_all(from_db)
            .await
            .map_err(db)?;
        rows.into_iter().map(ProgressRow::into_progress).collect()
    }
}
