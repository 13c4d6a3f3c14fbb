//! The statements of a bulk re-drive both SQL databases run alike: the selection of dead
//! letters (deliveries and SETs), the requeue of failed SETs, and the idempotency keys. Like [`super::shared`], a trait with one blanket
//! implementation, so the bounds that bind and decode these values are written once.

use super::{Dialect, by_id, db, from_ms, limit, ms, unsigned};
use crate::ids::DeliveryId;
use crate::outbox::{FailedFilter, IdempotentRequest, StoredKey};
use crate::ssf::FailedSetFilter;
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

/// Most SET rows one statement of a bulk re-drive puts back.
const REQUEUE_CHUNK: usize = 100;

/// A row of `idempotency_keys`.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct KeyRow {
    request_hash: String,
    redriven: i64,
    done: bool,
    updated_at: i64,
}

/// The `SELECT` of the ids of `table`'s failed rows a bulk re-drive takes next: after
/// `after` in id order, at most `take`, locked until commit; only those whose columns hold the
/// `equal` values that are given, and that failed (last changed) within the `window`, from its
/// first time (inclusive) to its second (exclusive); with `ids`, only rows among them.
fn select_failed<DB>(
    table: &str,
    after: &str,
    equal: &[(&str, Option<String>)],
    ids: Option<&[String]>,
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    take: usize,
) -> QueryBuilder<DB>
where
    DB: Dialect,
    DB::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut sql: QueryBuilder<DB> = QueryBuilder::new(format!(
        "SELECT id FROM {table} WHERE state = 'failed' AND id > "
    ));
    sql.push_bind(after.to_owned());
    for (column, value) in equal {
        if let Some(value) = value {
            sql.push(format_args!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(since) = window.0 {
        sql.push(" AND updated_at >= ").push_bind(ms(since));
    }
    if let Some(before) = window.1 {
        sql.push(" AND updated_at < ").push_bind(ms(before));
    }
    if let Some(ids) = ids {
        sql.push(" AND id IN (");
        let mut list = sql.separated(", ");
        for id in ids {
            list.push_bind(id.clone());
        }
        sql.push(")");
    }
    by_id(&mut sql, None, limit(take), DB::FOR_UPDATE);
    sql
}

/// The statements of a bulk re-drive, for `DB::failed_rows(conn, ...)` on either database.
#[async_trait]
pub(in crate::store) trait RedriveStatements: Dialect {
    /// [`crate::store::Tx::failed_rows`].
    async fn failed_rows(
        conn: &mut Self::Connection,
        filter: &FailedFilter,
        after: &str,
        take: usize,
    ) -> Result<Vec<DeliveryId>, StoreError>;

    /// [`crate::store::Tx::failed_sets`].
    async fn failed_sets(
        conn: &mut Self::Connection,
        filter: &FailedSetFilter,
        after: &str,
        take: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// [`crate::store::Tx::requeue_sets`], without the announcement.
    async fn requeue_sets(
        conn: &mut Self::Connection,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// [`crate::store::Tx::insert_key`].
    async fn insert_key(
        conn: &mut Self::Connection,
        key: &IdempotentRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// [`crate::store::Tx::lock_key`].
    async fn lock_key(
        conn: &mut Self::Connection,
        key: &str,
    ) -> Result<Option<StoredKey>, StoreError>;

    /// [`crate::store::Tx::update_key`].
    async fn update_key(
        conn: &mut Self::Connection,
        key: &str,
        redriven: u64,
        done: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// [`crate::store::Housekeeping::prune_keys`], on its own connection.
    async fn prune_keys(
        conn: &mut Self::Connection,
        now: DateTime<Utc>,
        take: usize,
    ) -> Result<u64, StoreError>;
}

#[async_trait]
impl<DB> RedriveStatements for DB
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'r> KeyRow: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
{
    async fn failed_rows(
        conn: &mut DB::Connection,
        filter: &FailedFilter,
        after: &str,
        take: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        let equal = [
            (
                "client_id",
                filter.client_id.as_ref().map(ToString::to_string),
            ),
            ("initiator", filter.initiator.map(|i| i.as_str().to_owned())),
        ];
        let window = (filter.failed_since, filter.failed_before);
        let ids: Option<Vec<String>> = filter
            .ids
            .as_ref()
            .map(|ids| ids.iter().map(ToString::to_string).collect());
        if ids.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let mut sql =
            select_failed::<DB>("deliveries", after, &equal, ids.as_deref(), window, take);
        let rows: Vec<(String,)> = sql.build_query_as().fetch_all(conn).await.map_err(db)?;
        Ok(rows.into_iter().map(|(id,)| DeliveryId::new(id)).collect())
    }

    async fn failed_sets(
        conn: &mut DB::Connection,
        filter: &FailedSetFilter,
        after: &str,
        take: usize,
    ) -> Result<Vec<String>, StoreError> {
        let equal = [
            ("stream_id", filter.stream_id.clone()),
            ("receiver_id", filter.receiver_id.clone()),
            ("kind", filter.kind.map(|k| k.as_str().to_owned())),
        ];
        let window = (filter.failed_since, filter.failed_before);
        let mut sql = select_failed::<DB>("ssf_sets", after, &equal, None, window, take);
        let rows: Vec<(String,)> = sql.build_query_as().fetch_all(conn).await.map_err(db)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn requeue_sets(
        conn: &mut DB::Connection,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(REQUEUE_CHUNK) {
            let mut sql: QueryBuilder<DB> = QueryBuilder::new(
                "UPDATE ssf_sets SET state = 'pending', attempts = 0, lease_id = NULL, \
                 lease_until = NULL, next_attempt_at = ",
            );
            sql.push_bind(ms(now))
                .push(", budget_started_at = ")
                .push_bind(ms(now))
                .push(", updated_at = ")
                .push_bind(ms(now))
                .push(" WHERE state = 'failed' AND id IN (");
            let mut list = sql.separated(", ");
            for id in chunk {
                list.push_bind(id.clone());
            }
            sql.push(")");
            sql.build().execute(&mut *conn).await.map_err(db)?;
        }
        Ok(())
    }

    async fn insert_key(
        conn: &mut DB::Connection,
        key: &IdempotentRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "INSERT INTO idempotency_keys (key, request_hash, redriven, done, created_at, \
             updated_at, expires_at) VALUES ($1, $2, 0, $3, $4, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, \
             redriven = 0, done = excluded.done, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, expires_at = excluded.expires_at \
             WHERE idempotency_keys.expires_at <= $4",
        )
        .bind(key.key.as_str())
        .bind(key.request_hash.as_str())
        .bind(false)
        .bind(ms(now))
        .bind(ms(key.expires_at))
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn lock_key(
        conn: &mut DB::Connection,
        key: &str,
    ) -> Result<Option<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT request_hash, redriven, done, updated_at FROM idempotency_keys \
             WHERE key = $1{}",
            DB::FOR_UPDATE
        );
        let row: Option<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(conn)
            .await
            .map_err(db)?;
        row.map(|row| {
            Ok(StoredKey {
                request_hash: row.request_hash,
                redriven: unsigned(row.redriven, "redriven")?,
                done: row.done,
                updated_at: from_ms(row.updated_at)?,
            })
        })
        .transpose()
    }

    async fn update_key(
        conn: &mut DB::Connection,
        key: &str,
        redriven: u64,
        done: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query::<DB>(
            "UPDATE idempotency_keys SET redriven = $1, done = $2, updated_at = $3 \
             WHERE key = $4",
        )
        .bind(i64::try_from(redriven).unwrap_or(i64::MAX))
        .bind(done)
        .bind(ms(now))
        .bind(key)
        .execute(conn)
        .await
        .map_err(db)
        .map(|_| ())
    }

    async fn prune_keys(
        conn: &mut DB::Connection,
        now: DateTime<Utc>,
        take: usize,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query::<DB>(
            "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
             WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)",
        )
        .bind(ms(now))
        .bind(limit(take))
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done))
    }
}
