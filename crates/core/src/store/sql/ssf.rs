//! The SSF receivers and streams as both SQL databases store them, written once (see
//! [`SsfStatements`]); the SET rows are [`super::sets`].
//!
//! Locks, where PostgreSQL needs them (SQLite's write transaction holds the database lock):
//! the fan-out reads its streams `FOR SHARE`, and a change of a stream's status, its deletion
//! and a verification lock the stream row first, so a change that cancels a stream's rows
//! waits for a session end that saw the stream, and then sees the rows it wrote; two
//! verifications of one stream are decided one after the other.

use super::sets::SetStatements;
use super::ssf_rows::{
    FanoutRow, ReceiverRow, StreamRow, delivery_columns, receiver_columns, stream_columns,
};
use super::{by_id, db, ms, overfetch};
use crate::ssf::{FanoutStream, NewSet, SsfReceiver, SsfStream, StreamStatus, VerifyOutcome};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

/// The receiver and stream statements both databases run alike.
#[async_trait]
pub(in crate::store) trait SsfStatements: SetStatements {
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
    DB: SetStatements,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t Value>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Json<&'t Value>>: Encode<'t, DB> + Type<DB>,
    for<'r> ReceiverRow: FromRow<'r, DB::Row>,
    for<'r> StreamRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> FanoutRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
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
        by_id(&mut sql, from, overfetch(take), "");
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
                DB::release_stream_rows(conn, stream_id, now).await?;
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
}
