//! The SET outbox as both SQL databases store it, written once (see [`SetStatements`]):
//! rows are written pending, pushed under a lease or handed to a poll, and settled by the
//! push's result or the poll's acks and errors. Claims and polls select their rows `FOR
//! UPDATE SKIP LOCKED`, so two PostgreSQL nodes never hold a current lease on one row.

use super::ssf_rows::{PushStream, SetRow, set_columns};
use super::{Dialect, by_id, db, limit, ms, overfetch};
use crate::ids::LeaseId;
use crate::retry::Decision;
use crate::ssf::{
    ClaimedSet, NewSet, PollBatch, PollRequest, PushRoom, SetFilter, SetResult, SetState,
    StoredSet, StreamStatus,
};
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

/// Most rows one multi-row statement writes or updates.
const CHUNK: usize = 64;

/// Why a stream's waiting rows were cancelled.
const CANCELLED: &str = "the stream was disabled or deleted";

/// The SET outbox statements both databases run alike.
#[async_trait]
pub(in crate::store) trait SetStatements: Dialect {
    /// Inserts rows pending, due at their creation, their budget counted from then.
    async fn insert_sets(conn: &mut Self::Connection, rows: &[NewSet]) -> Result<(), StoreError>;

    /// Claims up to `take` due push rows, at most `room` of each stream, under `lease` until
    /// `until`.
    async fn claim_push(
        conn: &mut Self::Connection,
        now: DateTime<Utc>,
        lease: &LeaseId,
        until: DateTime<Utc>,
        take: usize,
        room: &PushRoom,
    ) -> Result<Vec<ClaimedSet>, StoreError>;

    /// [`crate::store::SsfStore::record_set`].
    async fn record_set(
        conn: &mut Self::Connection,
        result: &SetResult,
    ) -> Result<bool, StoreError>;

    /// Gives one claimed row back, due at `now`.
    async fn release_set(
        conn: &mut Self::Connection,
        id: &str,
        lease: &LeaseId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// [`crate::store::SsfStore::poll`].
    async fn poll(
        conn: &mut Self::Connection,
        request: &PollRequest,
    ) -> Result<PollBatch, StoreError>;

    /// [`crate::store::SsfStore::list_sets`].
    async fn list_sets(
        conn: &mut Self::Connection,
        filter: &SetFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<StoredSet>, StoreError>;

    /// One row.
    async fn get_set(
        conn: &mut Self::Connection,
        id: &str,
    ) -> Result<Option<StoredSet>, StoreError>;

    /// Requeues a `failed` row with a fresh budget; `false` when it is not failed.
    async fn requeue_failed_set(
        conn: &mut Self::Connection,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes up to `take` delivered, failed and cancelled rows last changed before `before`.
    async fn prune_sets(
        conn: &mut Self::Connection,
        before: DateTime<Utc>,
        take: usize,
    ) -> Result<u64, StoreError>;

    /// Cancels the stream's pending and in-flight rows, except row `keep`.
    async fn cancel_stream_rows(
        conn: &mut Self::Connection,
        stream_id: &str,
        keep: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Makes the stream's held (pending) rows due at `now` with a fresh budget: attempts 0,
    /// the age budget counted from `now`.
    async fn release_stream_rows(
        conn: &mut Self::Connection,
        stream_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Puts rows `ids` in flight under `lease` until `until`; with `count`, counting an
    /// attempt (a poll's hand-out).
    async fn lease_sets(
        conn: &mut Self::Connection,
        ids: &[&str],
        lease: &LeaseId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        count: bool,
    ) -> Result<(), StoreError>;

    /// Moves the waiting row with `jti` of the poll's (receiver, stream) to `state`
    /// (`delivered` or `failed`, with `error`); an unknown `jti` changes nothing.
    async fn settle_polled(
        conn: &mut Self::Connection,
        request: &PollRequest,
        jti: &str,
        state: &'static str,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
}

/// The statement that reads one push stream's oldest due rows, at most `room`, along
/// `ssf_sets_stream`. A stream that is not enabled still hears that its status changed
/// (`stream_updated` rows), and nothing else.
pub(in crate::store) fn stream_claim<DB: Dialect>(
    stream_id: &str,
    enabled: bool,
    now: DateTime<Utc>,
    room: usize,
) -> QueryBuilder<DB>
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut sql: QueryBuilder<DB> = QueryBuilder::new(concat!(
        "SELECT ",
        set_columns!(),
        " FROM ssf_sets WHERE stream_id = "
    ));
    sql.push_bind(stream_id.to_owned())
        .push(" AND state IN ('pending', 'in_flight') AND next_attempt_at <= ")
        .push_bind(ms(now));
    if !enabled {
        sql.push(" AND kind = 'stream_updated'");
    }
    by_id(&mut sql, None, limit(room), DB::SKIP_LOCKED);
    sql
}

#[async_trait]
impl<DB> SetStatements for DB
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i32>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<Value>: Encode<'t, DB> + Type<DB>,
    for<'r> SetRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> PushStream: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    async fn insert_sets(conn: &mut DB::Connection, rows: &[NewSet]) -> Result<(), StoreError> {
        for chunk in rows.chunks(CHUNK) {
            let mut sql: QueryBuilder<DB> = QueryBuilder::new(
                "INSERT INTO ssf_sets (id, stream_id, receiver_id, kind, jti, txn, payload, \
                 created_at, state, attempts, next_attempt_at, budget_started_at, updated_at) ",
            );
            sql.push_values(chunk, |mut b, row| {
                let at = ms(row.created_at);
                b.push_bind(row.id.clone())
                    .push_bind(row.stream_id.clone())
                    .push_bind(row.receiver_id.clone())
                    .push_bind(row.kind.as_str().to_owned())
                    .push_bind(row.jti.clone())
                    .push_bind(row.txn.clone())
                    .push_bind(Json(row.payload.clone()))
                    .push_bind(at)
                    .push("'pending'")
                    .push("0")
                    .push_bind(at)
                    .push_bind(at)
                    .push_bind(at);
            });
            sql.push(" ON CONFLICT (id) DO NOTHING");
            sql.build().execute(&mut *conn).await.map_err(db)?;
        }
        Ok(())
    }

    async fn claim_push(
        conn: &mut DB::Connection,
        now: DateTime<Utc>,
        lease: &LeaseId,
        until: DateTime<Utc>,
        take: usize,
        room: &PushRoom,
    ) -> Result<Vec<ClaimedSet>, StoreError> {
        // Each push stream's oldest due rows, read along `ssf_sets_stream` one stream at a
        // time: a claim's cost follows what it takes, not the backlog of a mass logout.
        let streams: Vec<PushStream> = sqlx::query_as::<DB, _>(
            "SELECT t.stream_id, t.status, r.aud, t.endpoint_url, t.authorization_header \
             FROM ssf_streams t JOIN ssf_receivers r ON r.id = t.receiver_id \
             WHERE t.delivery_method = 'push' ORDER BY t.stream_id",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut claims: Vec<ClaimedSet> = Vec::new();
        for stream in streams {
            let room = room.of(&stream.stream_id).min(take);
            let Some(endpoint_url) = stream.endpoint_url else {
                continue;
            };
            if room == 0 {
                continue;
            }
            let enabled = stream.status == StreamStatus::Enabled.as_str();
            let mut sql = stream_claim::<DB>(&stream.stream_id, enabled, now, room);
            let rows: Vec<SetRow<DB::Json>> = sql
                .build_query_as()
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
            for row in rows {
                let mut row = row.into_set()?;
                row.state = SetState::InFlight;
                row.next_attempt_at = Some(until);
                row.updated_at = now;
                claims.push(ClaimedSet {
                    row,
                    lease: lease.clone(),
                    aud: stream.aud.clone(),
                    endpoint_url: endpoint_url.clone(),
                    authorization_header: stream.authorization_header.clone(),
                });
            }
        }
        // The oldest first across streams, as one queue would hand them out.
        claims.sort_unstable_by(|a, b| a.row.set.id.cmp(&b.row.set.id));
        claims.truncate(take);
        let ids: Vec<&str> = claims.iter().map(|c| c.row.set.id.as_str()).collect();
        DB::lease_sets(conn, &ids, lease, until, now, false).await?;
        Ok(claims)
    }

    async fn record_set(conn: &mut DB::Connection, result: &SetResult) -> Result<bool, StoreError> {
        let at = ms(result.at);
        let (state, next, delivered) = match &result.decision {
            Decision::Delivered => ("delivered", None, Some(at)),
            Decision::RetryAt(t) => ("pending", Some(ms(*t)), None),
            Decision::GiveUp(_) => ("failed", None, None),
        };
        let done = sqlx::query::<DB>(
            "UPDATE ssf_sets SET state = $1, next_attempt_at = $2, delivered_at = $3, \
             last_status = $4, last_error = $5, attempts = attempts + 1, lease_id = NULL, \
             lease_until = NULL, updated_at = $6 \
             WHERE id = $7 AND lease_id = $8 AND state = 'in_flight'",
        )
        .bind(state)
        .bind(next)
        .bind(delivered)
        .bind(result.status.map(i32::from))
        .bind(result.error.as_deref())
        .bind(at)
        .bind(result.id.as_str())
        .bind(result.lease.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn release_set(
        conn: &mut DB::Connection,
        id: &str,
        lease: &LeaseId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE ssf_sets SET state = 'pending', next_attempt_at = $1, lease_id = NULL, \
             lease_until = NULL, updated_at = $1 \
             WHERE id = $2 AND lease_id = $3 AND state = 'in_flight'",
        )
        .bind(ms(now))
        .bind(id)
        .bind(lease.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn poll(
        conn: &mut DB::Connection,
        request: &PollRequest,
    ) -> Result<PollBatch, StoreError> {
        let now = request.now;
        for jti in &request.ack {
            DB::settle_polled(&mut *conn, request, jti, "delivered", None).await?;
        }
        for (jti, error) in &request.set_errs {
            let text = format!("{}: {}", error.err, error.description);
            DB::settle_polled(&mut *conn, request, jti, "failed", Some(&text)).await?;
        }
        let status: Option<(String,)> = sqlx::query_as::<DB, _>(
            "SELECT status FROM ssf_streams WHERE stream_id = $1 AND receiver_id = $2",
        )
        .bind(request.stream_id.as_str())
        .bind(request.receiver_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        let Some((status,)) = status else {
            return Ok(PollBatch::default());
        };
        let kinds = if status == StreamStatus::Enabled.as_str() {
            ""
        } else {
            " AND kind = 'stream_updated'"
        };
        let sql = format!(
            concat!(
                "SELECT ",
                set_columns!(),
                " FROM ssf_sets WHERE stream_id = $1 AND receiver_id = $2 \
                 AND (state = 'pending' OR (state = 'in_flight' AND next_attempt_at <= $3)){} \
                 ORDER BY id {}$4{}"
            ),
            kinds,
            DB::LIMIT,
            DB::SKIP_LOCKED
        );
        let rows: Vec<SetRow<DB::Json>> = sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql))
            .bind(request.stream_id.as_str())
            .bind(request.receiver_id.as_str())
            .bind(ms(now))
            .bind(overfetch(request.max_events))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let more_available = rows.len() > request.max_events;
        let lease = LeaseId::generate();
        let until = now + request.lease;
        let mut handed = Vec::with_capacity(rows.len().min(request.max_events));
        for row in rows.into_iter().take(request.max_events) {
            let mut row = row.into_set()?;
            row.state = SetState::InFlight;
            row.next_attempt_at = Some(until);
            row.attempts = row.attempts.saturating_add(1);
            row.updated_at = now;
            handed.push(row);
        }
        let ids: Vec<&str> = handed.iter().map(|r| r.set.id.as_str()).collect();
        DB::lease_sets(conn, &ids, &lease, until, now, true).await?;
        Ok(PollBatch {
            rows: handed,
            more_available,
        })
    }

    async fn list_sets(
        conn: &mut DB::Connection,
        filter: &SetFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<StoredSet>, StoreError> {
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(concat!(
            "SELECT ",
            set_columns!(),
            " FROM ssf_sets WHERE 1 = 1"
        ));
        if let Some(stream) = &filter.stream_id {
            sql.push(" AND stream_id = ").push_bind(stream.clone());
        }
        if let Some(receiver) = &filter.receiver_id {
            sql.push(" AND receiver_id = ").push_bind(receiver.clone());
        }
        if let Some(state) = filter.state {
            sql.push(" AND state = ")
                .push_bind(state.as_str().to_owned());
        }
        if let Some(kind) = filter.kind {
            sql.push(" AND kind = ").push_bind(kind.as_str().to_owned());
        }
        by_id(&mut sql, from, overfetch(take), "");
        let rows: Vec<SetRow<DB::Json>> = sql.build_query_as().fetch_all(conn).await.map_err(db)?;
        let items = rows
            .into_iter()
            .map(SetRow::into_set)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, take, |r: &StoredSet| {
            r.set.id.clone()
        }))
    }

    async fn get_set(conn: &mut DB::Connection, id: &str) -> Result<Option<StoredSet>, StoreError> {
        let row: Option<SetRow<DB::Json>> = sqlx::query_as::<DB, _>(concat!(
            "SELECT ",
            set_columns!(),
            " FROM ssf_sets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
        row.map(SetRow::into_set).transpose()
    }

    async fn requeue_failed_set(
        conn: &mut DB::Connection,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE ssf_sets SET state = 'pending', next_attempt_at = $1, attempts = 0, \
             budget_started_at = $1, lease_id = NULL, lease_until = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'failed'",
        )
        .bind(ms(now))
        .bind(id)
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn prune_sets(
        conn: &mut DB::Connection,
        before: DateTime<Utc>,
        take: usize,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM ssf_sets WHERE id IN (SELECT id FROM ssf_sets \
             WHERE state IN ('delivered', 'failed', 'cancelled') AND updated_at < $1 \
             ORDER BY id {}$2)",
            DB::LIMIT
        );
        let done = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(ms(before))
            .bind(limit(take))
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(DB::affected(&done))
    }

    async fn cancel_stream_rows(
        conn: &mut DB::Connection,
        stream_id: &str,
        keep: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query::<DB>(
            "UPDATE ssf_sets SET state = 'cancelled', next_attempt_at = NULL, lease_id = NULL, \
             lease_until = NULL, last_error = $1, updated_at = $2 \
             WHERE stream_id = $3 AND state IN ('pending', 'in_flight') \
             AND ($4 IS NULL OR id <> $4)",
        )
        .bind(CANCELLED)
        .bind(ms(now))
        .bind(stream_id)
        .bind(keep)
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn release_stream_rows(
        conn: &mut DB::Connection,
        stream_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query::<DB>(
            "UPDATE ssf_sets SET next_attempt_at = $1, attempts = 0, budget_started_at = $1, \
             updated_at = $1 WHERE stream_id = $2 AND state = 'pending'",
        )
        .bind(ms(now))
        .bind(stream_id)
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn lease_sets(
        conn: &mut DB::Connection,
        ids: &[&str],
        lease: &LeaseId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        count: bool,
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(CHUNK) {
            let mut sql: QueryBuilder<DB> =
                QueryBuilder::new("UPDATE ssf_sets SET state = 'in_flight', lease_id = ");
            sql.push_bind(lease.as_str().to_owned())
                .push(", lease_until = ")
                .push_bind(ms(until))
                .push(", next_attempt_at = ")
                .push_bind(ms(until))
                .push(", updated_at = ")
                .push_bind(ms(now));
            if count {
                sql.push(", attempts = attempts + 1");
            }
            sql.push(" WHERE id IN (");
            let mut list = sql.separated(", ");
            for id in chunk {
                list.push_bind((*id).to_owned());
            }
            sql.push(")");
            sql.build().execute(&mut *conn).await.map_err(db)?;
        }
        Ok(())
    }

    async fn settle_polled(
        conn: &mut DB::Connection,
        request: &PollRequest,
        jti: &str,
        state: &'static str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = ms(request.now);
        let delivered = (state == "delivered").then_some(now);
        sqlx::query::<DB>(
            "UPDATE ssf_sets SET state = $1, delivered_at = $2, last_error = COALESCE($3, \
             last_error), next_attempt_at = NULL, lease_id = NULL, lease_until = NULL, \
             updated_at = $4 WHERE jti = $5 AND stream_id = $6 AND receiver_id = $7 \
             AND state IN ('pending', 'in_flight')",
        )
        .bind(state)
        .bind(delivered)
        .bind(error)
        .bind(now)
        .bind(jti)
        .bind(request.stream_id.as_str())
        .bind(request.receiver_id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(())
    }
}
