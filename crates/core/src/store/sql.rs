//! What the two SQL backends share: errors, the stored form of timestamps, and the decoding
//! of stored scalars, each naming only the column when a value does not decode.

use super::StoreError;
use chrono::{DateTime, Utc};
use std::str::FromStr;

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
