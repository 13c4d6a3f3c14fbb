//! What the two SQL backends share: errors, the stored form of timestamps and JSON, the
//! decoding of stored scalars (each naming only the column when a value does not decode),
//! the stored rows ([`rows`]) and the statements both databases run alike ([`shared`], and
//! [`redrive`] for a bulk re-drive).
//!
//! Nothing here asks which database it runs on: what differs is a [`Dialect`] type.

pub(super) mod events;
pub(super) mod health;
pub(super) mod redrive;
pub(super) mod results;
pub(super) mod rows;
pub(super) mod sets;
pub(super) mod shared;
pub(super) mod ssf;
pub(super) mod ssf_rows;
pub(super) mod tx;

use super::StoreError;
use crate::metadata::SessionMetadata;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::{Encode, QueryBuilder, Type};
use std::str::FromStr;

/// What the shared code needs to know of one SQL database.
pub(super) trait Dialect: sqlx::Database {
    /// A JSON column as the driver returns it: TEXT in SQLite, JSONB in PostgreSQL.
    type Json: StoredJson;
    /// `LIMIT` followed by a bound value (SQLite writes `LIMIT +?` to keep its plan cached).
    const LIMIT: &'static str;
    /// What ends a `SELECT` that locks the rows it reads until commit: ` FOR UPDATE` in
    /// PostgreSQL, nothing in SQLite, whose write transaction holds the database lock.
    const FOR_UPDATE: &'static str;
    /// What ends a `SELECT` that claims rows for a worker: ` FOR UPDATE SKIP LOCKED` in
    /// PostgreSQL (rows another node is claiming are passed over), nothing in SQLite.
    const SKIP_LOCKED: &'static str;
    /// What ends a `SELECT` that keeps the rows it reads from changing until commit while
    /// other readers may do the same: ` FOR SHARE` in PostgreSQL, nothing in SQLite.
    const FOR_SHARE: &'static str;
    /// How many rows a statement changed.
    fn affected(done: &Self::QueryResult) -> u64;
}

/// A stored JSON value, decoded naming only its column on failure.
pub(super) trait StoredJson: Clone + PartialEq + Send + Sync + Unpin + 'static {
    /// The value as `T`.
    fn decode<T: DeserializeOwned>(&self, column: &'static str) -> Result<T, StoreError>;
    /// The value as session metadata, validated.
    fn metadata(&self, column: &'static str) -> Result<SessionMetadata, StoreError>;
}

impl StoredJson for String {
    fn decode<T: DeserializeOwned>(&self, column: &'static str) -> Result<T, StoreError> {
        json(self, column)
    }

    fn metadata(&self, column: &'static str) -> Result<SessionMetadata, StoreError> {
        SessionMetadata::from_stored(self).map_err(|_| corrupt(column))
    }
}

impl StoredJson for serde_json::Value {
    fn decode<T: DeserializeOwned>(&self, column: &'static str) -> Result<T, StoreError> {
        T::deserialize(self).map_err(|_| corrupt(column))
    }

    fn metadata(&self, column: &'static str) -> Result<SessionMetadata, StoreError> {
        SessionMetadata::from_json(self).map_err(|_| corrupt(column))
    }
}

/// Parses JSON text read from the database (a column, or rows built into one value).
pub(super) fn json<T: DeserializeOwned>(text: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt(what))
}

/// Maps a database error.
pub(super) fn db(err: sqlx::Error) -> StoreError {
    StoreError::backend(err)
}

/// A stored value that does not decode; names the column, never the value.
#[derive(Debug, thiserror::Error)]
#[error("stored {0} is invalid")]
pub(super) struct Corrupt(pub(super) &'static str);

/// A corrupt value of `column`.
pub(super) fn corrupt(column: &'static str) -> StoreError {
    StoreError::backend(Corrupt(column))
}

/// The stored form of a timestamp: INTEGER milliseconds since the epoch.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A timestamp from its stored form.
pub(super) fn from_ms(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(value).ok_or_else(|| corrupt("timestamp"))
}

/// An optional timestamp from its stored form.
pub(super) fn opt_from_ms(value: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    value.map(from_ms).transpose()
}

/// A `LIMIT` that fetches one row more than `take`, so the page knows whether more remain.
pub(super) fn overfetch(take: usize) -> i64 {
    i64::try_from(take)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1)
}

/// A bound `LIMIT` of `limit` rows.
pub(super) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Ends the statement `sql` builds the way every page and claim walks a table: the rows whose
/// id sorts after `after` (when given), in id order, at most `n` of them, then `lock` (`""` or
/// one of [`Dialect`]'s lock clauses).
pub(super) fn by_id<DB>(sql: &mut QueryBuilder<DB>, after: Option<&str>, n: i64, lock: &str)
where
    DB: Dialect,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    if let Some(cursor) = after {
        sql.push(" AND id > ").push_bind(cursor.to_owned());
    }
    sql.push(" ORDER BY id ")
        .push(DB::LIMIT)
        .push_bind(n)
        .push(lock);
}

/// Parses a stored enum or id-like value.
pub(super) fn parse<T: FromStr>(value: &str, column: &'static str) -> Result<T, StoreError> {
    value.parse().map_err(|_| corrupt(column))
}

/// A stored INTEGER as an unsigned number.
pub(super) fn unsigned<T: TryFrom<i64>>(
    value: impl Into<i64>,
    column: &'static str,
) -> Result<T, StoreError> {
    T::try_from(value.into()).map_err(|_| corrupt(column))
}
