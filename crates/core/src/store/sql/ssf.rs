//! The SSF transmitter as both SQL databases store it, written once (see [`SsfStatements`]).
//!
//! Locks, where PostgreSQL needs them (SQLite's write transaction holds the database lock):
//! the fan-out reads its streams `FOR SHARE`, and every change of a stream's status, its
//! deletion and a verification lock the stream row first, so a change that cancels a stream's
//! rows waits for a session end that saw the stream and then sees the rows it wrote. Claims
//! and polls select their rows `FOR UPDATE SKIP LOCKED`.

use super::ssf_rows::{
    FanoutRow, PushTarget, ReceiverRow, SetRow, StreamRow, delivery_columns, receiver_columns,
    set_columns, stream_columns,
};
use super::{Dialect, db, limit, ms, overfetch};
use crate::ids::LeaseId;
use crate::retry::Decision;
use crate::ssf::{
    ClaimedSet, FanoutStream, NewSet, PollBatch, PollRequest, SetFilter, SetResult, SsfReceiver,
    SsfStream, StoredSet, StreamStatus, VerifyOutcome,
};
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};
use std::collections::HashMap;

/// Most rows one multi-row statement writes.
const INSERT_CHUNK: usize = 64;

/// Why a stream's waiting rows were cancelled.
const CANCELLED: &str = "the stream was disabled or deleted";

/// The SSF statements both databases run alike.
#[async_trait]
pub(in crate::store) trait SsfStatements: Dialect {
    /// [`crate::store::SsfStore::insert_receiver`].
    async fn insert_receiver(
        conn: &mut Self::Connection,
        receiver: &SsfReceiver,
    ) -> Result<bool, StoreError>;

    /// One receiver, by `column` (`id` or `token_hash`) equal to `value`.
    async fn receiver_by(
        conn: &mut Self::Connection,
        column: ReceiverKey,
        value: &str,
    ) -> Result<Option<SsfReceiver>, StoreError>;

    /// Receivers after `from`, one more than `take` at most.
    async fn receivers(
        conn: &mut Self::Connection,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfReceiver>, StoreError>;

    /// [`crate::store::SsfStore::update_receiver`].
    async fn update_receiver(
        conn: &mut Self::Connection,
        receiver: &SsfReceiver,
    ) -> Result<bool, StoreError>;

    /// [`crate::store::SsfStore::delete_receiver`].
    async fn delete_receiver(
        conn: &mut Self::Connection,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// [`crate::store::SsfStore::insert_stream`]; `NotFound` when the receiver does not exist.
    async fn insert_stream(
        conn: &mut Self::Connection,
        stream: &SsfStream,
    ) -> Result<bool, StoreError>;

    /// One stream; with `lock`, locked until commit.
    async fn get_stream(
        conn: &mut Self::Connection,
        stream_id: &str,
        lock: bool,
    ) -> Result<Option<SsfStream>, StoreError>;

    /// Streams of `receiver_id` (all when `None`) after `from` in stream_id order, one more
    /// than `take` at most.
    async fn list_streams(
        conn: &mut Self::Connection,
        receiver_id: Option<&str>,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfStream>, StoreError>;

    /// [`crate::store::SsfStore::update_stream`].
    async fn update_stream(
        conn: &mut Self::Connection,
        stream: &SsfStream,
    ) -> Result<bool, StoreError>;

    /// [`crate::store::SsfStore::delete_stream`].
    async fn delete_stream(
        conn: &mut Self::Connection,
        stream_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// [`crate::store::SsfStore::set_stream_status`].
    async fn set_stream_status(
        conn: &mut Self::Connection,
        stream_id: &str,
        status: StreamStatus,
        reason: Option<&str>,
        event: Option<&NewSet>,
        now: DateTime<Utc>,
    ) -> Result<Option<SsfStream>, StoreError>;

    /// [`crate::store::SsfStore::request_verification`].
    async fn request_verification(
        conn: &mut Self::Connection,
        receiver_id: &str,
        stream_id: &str,
        event: &NewSet,
        min_interval: Duration,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError>;

    /// The enabled and paused streams with their receivers' settings, locked against a
    /// status change until commit.
    async fn fanout_streams(conn: &mut Self::Connection) -> Result<Vec<FanoutStream>, StoreError>;

    /// Inserts rows pending, due at their creation, their budget counted from then.
    async fn insert_sets(conn: &mut Self::Connection, rows: &[NewSet]) -> Result<(), StoreError>;

    /// Claims up to `take` due push rows under `lease` until `until`.
    async fn claim_push(
        conn: &mut Self::Connection,
        now: DateTime<Utc>,
        lease: &LeaseId,
        until: DateTime<Utc>,
        take: usize,
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

    /// Pending and in-flight rows.
    async fn pending_sets(conn: &mut Self::Connection) -> Result<u64, StoreError>;

    /// Cancels the stream's pending and in-flight rows, except row `keep`.
    async fn cancel_stream_rows(
        conn: &mut Self::Connection,
        stream_id: &str,
        keep: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Where a push stream's rows go now: its URL, header and receiver's `aud`.
    async fn push_target(
        conn: &mut Self::Connection,
        stream_id: &str,
    ) -> Result<Option<PushTarget>, StoreError>;

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

    /// Deletes up to `take` delivered, failed and cancelled rows last changed before `before`.
    async fn prune_sets(
        conn: &mut Self::Connection,
        before: DateTime<Utc>,
        take: usize,
    ) -> Result<u64, StoreError>;
}

/// How a receiver is looked up.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) enum ReceiverKey {
    /// By id.
    Id,
    /// By the hash of its token.
    TokenHash,
}

#[async_trait]
impl<DB> SsfStatements for DB
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i32>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t Value>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<Value>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Json<&'t Value>>: Encode<'t, DB> + Type<DB>,
    for<'r> ReceiverRow: FromRow<'r, DB::Row>,
    for<'r> StreamRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> FanoutRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> SetRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> PushTarget: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    async fn insert_receiver(
        conn: &mut DB::Connection,
        r: &SsfReceiver,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(concat!(
            "INSERT INTO ssf_receivers (",
            receiver_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        ))
        .bind(r.id.as_str())
        .bind(r.name.as_str())
        .bind(r.aud.as_str())
        .bind(r.client_id.as_ref().map(|c| c.as_str()))
        .bind(r.scope.as_str())
        .bind(r.include_session_metadata)
        .bind(r.token_hash.as_str())
        .bind(ms(r.created_at))
        .bind(ms(r.updated_at))
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn receiver_by(
        conn: &mut DB::Connection,
        key: ReceiverKey,
        value: &str,
    ) -> Result<Option<SsfReceiver>, StoreError> {
        let sql = match key {
            ReceiverKey::Id => concat!(
                "SELECT ",
                receiver_columns!(),
                " FROM ssf_receivers WHERE id = $1"
            ),
            ReceiverKey::TokenHash => concat!(
                "SELECT ",
                receiver_columns!(),
                " FROM ssf_receivers WHERE token_hash = $1"
            ),
        };
        let row: Option<ReceiverRow> = sqlx::query_as::<DB, _>(sql)
            .bind(value)
            .fetch_optional(conn)
            .await
            .map_err(db)?;
        row.map(ReceiverRow::into_receiver).transpose()
    }

    async fn receivers(
        conn: &mut DB::Connection,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfReceiver>, StoreError> {
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(concat!(
            "SELECT ",
            receiver_columns!(),
            " FROM ssf_receivers WHERE 1 = 1"
        ));
        if let Some(cursor) = from {
            sql.push(" AND id > ").push_bind(cursor.to_owned());
        }
        sql.push(" ORDER BY id ")
            .push(DB::LIMIT)
            .push_bind(overfetch(take));
        let rows: Vec<ReceiverRow> = sql.build_query_as().fetch_all(conn).await.map_err(db)?;
        rows.into_iter().map(ReceiverRow::into_receiver).collect()
    }

    async fn update_receiver(
        conn: &mut DB::Connection,
        r: &SsfReceiver,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE ssf_receivers SET name = $1, client_id = $2, scope = $3, \
             include_session_metadata = $4, token_hash = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(r.name.as_str())
        .bind(r.client_id.as_ref().map(|c| c.as_str()))
        .bind(r.scope.as_str())
        .bind(r.include_session_metadata)
        .bind(r.token_hash.as_str())
        .bind(ms(r.updated_at))
        .bind(r.id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn delete_receiver(
        conn: &mut DB::Connection,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let streams: Vec<(String,)> =
            sqlx::query_as::<DB, _>("SELECT stream_id FROM ssf_streams WHERE receiver_id = $1")
                .bind(id)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
        for (stream_id,) in &streams {
            DB::delete_stream(&mut *conn, stream_id, now).await?;
        }
        let done = sqlx::query::<DB>("DELETE FROM ssf_receivers WHERE id = $1")
            .bind(id)
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn insert_stream(conn: &mut DB::Connection, s: &SsfStream) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT id FROM ssf_receivers WHERE id = $1{}",
            DB::FOR_UPDATE
        );
        let receiver: Option<(String,)> = sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql))
            .bind(s.receiver_id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if receiver.is_none() {
            return Err(StoreError::NotFound);
        }
        let (method, url, header) = delivery_columns(&s.delivery);
        let requested = s.events_requested.as_ref().map(|e| Value::from(e.clone()));
        let excluded = Value::Array(s.excluded_subjects.clone());
        let done = sqlx::query::<DB>(concat!(
            "INSERT INTO ssf_streams (",
            stream_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(s.stream_id.as_str())
        .bind(s.receiver_id.as_str())
        .bind(s.status.as_str())
        .bind(s.status_reason.as_deref())
        .bind(requested.as_ref().map(Json))
        .bind(method)
        .bind(url)
        .bind(header)
        .bind(s.description.as_deref())
        .bind(Json(&excluded))
        .bind(s.last_verification_at.map(ms))
        .bind(ms(s.created_at))
        .bind(ms(s.updated_at))
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn get_stream(
        conn: &mut DB::Connection,
        stream_id: &str,
        lock: bool,
    ) -> Result<Option<SsfStream>, StoreError> {
        let sql = format!(
            concat!(
                "SELECT ",
                stream_columns!(),
                " FROM ssf_streams WHERE stream_id = $1{}"
            ),
            if lock { DB::FOR_UPDATE } else { "" }
        );
        let row: Option<StreamRow<DB::Json>> = sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql))
            .bind(stream_id)
            .fetch_optional(conn)
            .await
            .map_err(db)?;
        row.map(StreamRow::into_stream).transpose()
    }

    async fn list_streams(
        conn: &mut DB::Connection,
        receiver_id: Option<&str>,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfStream>, StoreError> {
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(concat!(
            "SELECT ",
            stream_columns!(),
            " FROM ssf_streams WHERE 1 = 1"
        ));
        if let Some(receiver) = receiver_id {
            sql.push(" AND receiver_id = ")
                .push_bind(receiver.to_owned());
        }
        if let Some(cursor) = from {
            sql.push(" AND stream_id > ").push_bind(cursor.to_owned());
        }
        // A receiver's streams oldest first; the operator's listing pages by stream_id.
        let order = if receiver_id.is_some() {
            " ORDER BY created_at, stream_id "
        } else {
            " ORDER BY stream_id "
        };
        sql.push(order).push(DB::LIMIT).push_bind(overfetch(take));
        let rows: Vec<StreamRow<DB::Json>> =
            sql.build_query_as().fetch_all(conn).await.map_err(db)?;
        rows.into_iter().map(StreamRow::into_stream).collect()
    }

    async fn update_stream(conn: &mut DB::Connection, s: &SsfStream) -> Result<bool, StoreError> {
        let (method, url, header) = delivery_columns(&s.delivery);
        let requested = s.events_requested.as_ref().map(|e| Value::from(e.clone()));
        let excluded = Value::Array(s.excluded_subjects.clone());
        let done = sqlx::query::<DB>(
            "UPDATE ssf_streams SET events_requested = $1, delivery_method = $2, \
             endpoint_url = $3, authorization_header = $4, description = $5, \
             excluded_subjects = $6, updated_at = $7 WHERE stream_id = $8",
        )
        .bind(requested.as_ref().map(Json))
        .bind(method)
        .bind(url)
        .bind(header)
        .bind(s.description.as_deref())
        .bind(Json(&excluded))
        .bind(ms(s.updated_at))
        .bind(s.stream_id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn delete_stream(
        conn: &mut DB::Connection,
        stream_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The delete takes the row lock first, so a session end that read the stream has
        // committed its rows before the cancellation below looks for them.
        let done = sqlx::query::<DB>("DELETE FROM ssf_streams WHERE stream_id = $1")
            .bind(stream_id)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        if DB::affected(&done) == 0 {
            return Ok(false);
        }
        DB::cancel_stream_rows(conn, stream_id, None, now).await?;
        Ok(true)
    }

    async fn set_stream_status(
        conn: &mut DB::Connection,
        stream_id: &str,
        status: StreamStatus,
        reason: Option<&str>,
        event: Option<&NewSet>,
        now: DateTime<Utc>,
    ) -> Result<Option<SsfStream>, StoreError> {
        let Some(mut stream) = DB::get_stream(&mut *conn, stream_id, true).await? else {
            return Ok(None);
        };
        sqlx::query::<DB>(
            "UPDATE ssf_streams SET status = $1, status_reason = $2, updated_at = $3 \
             WHERE stream_id = $4",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(ms(now))
        .bind(stream_id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        if let Some(event) = event {
            DB::insert_sets(&mut *conn, std::slice::from_ref(event)).await?;
        }
        match (stream.status, status) {
            (_, StreamStatus::Disabled) => {
                DB::cancel_stream_rows(conn, stream_id, event.map(|e| e.id.as_str()), now).await?;
            }
            (StreamStatus::Paused, StreamStatus::Enabled) => {
                sqlx::query::<DB>(
                    "UPDATE ssf_sets SET next_attempt_at = $1, attempts = 0, \
                     budget_started_at = $1, updated_at = $1 \
                     WHERE stream_id = $2 AND state = 'pending'",
                )
                .bind(ms(now))
                .bind(stream_id)
                .execute(conn)
                .await
                .map_err(db)?;
            }
            _ => {}
        }
        stream.status = status;
        stream.status_reason = reason.map(str::to_owned);
        stream.updated_at = now;
        Ok(Some(stream))
    }

    async fn request_verification(
        conn: &mut DB::Connection,
        receiver_id: &str,
        stream_id: &str,
        event: &NewSet,
        min_interval: Duration,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        let stream = DB::get_stream(&mut *conn, stream_id, true).await?;
        let Some(stream) = stream.filter(|s| s.receiver_id == receiver_id) else {
            return Ok(VerifyOutcome::NotFound);
        };
        let outcome = crate::store::ssf::verification(&stream, min_interval, now);
        if outcome == VerifyOutcome::Accepted {
            sqlx::query::<DB>(
                "UPDATE ssf_streams SET last_verification_at = $1 WHERE stream_id = $2",
            )
            .bind(ms(now))
            .bind(stream_id)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            DB::insert_sets(conn, std::slice::from_ref(event)).await?;
        }
        Ok(outcome)
    }

    async fn fanout_streams(conn: &mut DB::Connection) -> Result<Vec<FanoutStream>, StoreError> {
        let sql = format!(
            "SELECT t.stream_id, t.receiver_id, r.scope, r.client_id, \
             r.include_session_metadata, t.events_requested, t.excluded_subjects \
             FROM ssf_streams t JOIN ssf_receivers r ON r.id = t.receiver_id \
             WHERE t.status IN ('enabled', 'paused') ORDER BY t.stream_id{}",
            DB::FOR_SHARE
        );
        let rows: Vec<FanoutRow<DB::Json>> = sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql))
            .fetch_all(conn)
            .await
            .map_err(db)?;
        rows.into_iter().map(FanoutRow::into_fanout).collect()
    }

    async fn insert_sets(conn: &mut DB::Connection, rows: &[NewSet]) -> Result<(), StoreError> {
        for chunk in rows.chunks(INSERT_CHUNK) {
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
    ) -> Result<Vec<ClaimedSet>, StoreError> {
        let sql = format!(
            concat!(
                "SELECT ",
                set_columns!(),
                " FROM ssf_sets WHERE state IN ('pending', 'in_flight') \
                 AND next_attempt_at <= $1 AND (stream_id IN (SELECT stream_id FROM ssf_streams \
                 WHERE delivery_method = 'push' AND status = 'enabled') \
                 OR (kind = 'stream_updated' AND stream_id IN (SELECT stream_id FROM \
                 ssf_streams WHERE delivery_method = 'push'))) ORDER BY id {}$2{}"
            ),
            DB::LIMIT,
            DB::SKIP_LOCKED
        );
        let rows: Vec<SetRow<DB::Json>> = sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .bind(limit(take))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let mut targets: HashMap<String, Option<PushTarget>> = HashMap::new();
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let mut row = row.into_set()?;
            let stream_id = row.set.stream_id.clone();
            if !targets.contains_key(&stream_id) {
                let target = DB::push_target(&mut *conn, &stream_id).await?;
                targets.insert(stream_id.clone(), target);
            }
            let Some(Some(target)) = targets.get(&stream_id) else {
                continue;
            };
            let Some(endpoint_url) = target.endpoint_url.clone() else {
                continue;
            };
            row.state = crate::ssf::SetState::InFlight;
            row.next_attempt_at = Some(until);
            row.updated_at = now;
            claims.push(ClaimedSet {
                row,
                lease: lease.clone(),
                aud: target.aud.clone(),
                endpoint_url,
                authorization_header: target.authorization_header.clone(),
            });
        }
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
        let stream = DB::get_stream(&mut *conn, &request.stream_id, false).await?;
        let Some(stream) = stream.filter(|s| s.receiver_id == request.receiver_id) else {
            return Ok(PollBatch::default());
        };
        let kinds = if stream.status == StreamStatus::Enabled {
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
            row.state = crate::ssf::SetState::InFlight;
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
        if let Some(state) = filter.state {
            sql.push(" AND state = ")
                .push_bind(state.as_str().to_owned());
        }
        if let Some(kind) = filter.kind {
            sql.push(" AND kind = ").push_bind(kind.as_str().to_owned());
        }
        if let Some(cursor) = from {
            sql.push(" AND id > ").push_bind(cursor.to_owned());
        }
        sql.push(" ORDER BY id ")
            .push(DB::LIMIT)
            .push_bind(overfetch(take));
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

    async fn pending_sets(conn: &mut DB::Connection) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as::<DB, _>(
            "SELECT COUNT(*) FROM ssf_sets WHERE state IN ('pending', 'in_flight')",
        )
        .fetch_one(conn)
        .await
        .map_err(db)?;
        Ok(n.unsigned_abs())
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

    async fn push_target(
        conn: &mut DB::Connection,
        stream_id: &str,
    ) -> Result<Option<PushTarget>, StoreError> {
        sqlx::query_as::<DB, _>(
            "SELECT r.aud, t.endpoint_url, t.authorization_header \
             FROM ssf_streams t JOIN ssf_receivers r ON r.id = t.receiver_id \
             WHERE t.stream_id = $1 AND t.delivery_method = 'push'",
        )
        .bind(stream_id)
        .fetch_optional(conn)
        .await
        .map_err(db)
    }

    async fn lease_sets(
        conn: &mut DB::Connection,
        ids: &[&str],
        lease: &LeaseId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        count: bool,
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(INSERT_CHUNK) {
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
}
