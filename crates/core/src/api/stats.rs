//! `GET /api/v2/delivery-stats`: the outbox at a glance, for the console's overview: rows per
//! state, the dead-letter count, how late the oldest due row is, and over the last hour the
//! rows delivered and the rows that failed, per ten seconds and per minute. The console polls
//! it every few seconds, so the answer is kept for [`STATS_TTL`] and shared by every caller in
//! that window.

use super::openapi::InternalError;
use super::{ApiError, Shared};
use crate::outbox::{
    BucketCounts, MinuteCounts, STATS_BUCKET_MS, StateCounts, bucket_of, minute_of,
};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;
use utoipa::ToSchema;

/// How long one answer is served again: counting every row is not free on a large outbox.
pub const STATS_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Minutes of the per-minute series, the current one last.
pub const STATS_MINUTES: usize = 60;
/// Buckets of [`STATS_BUCKET_MS`] in the finer series: the same hour, the current (partial)
/// bucket last.
pub const STATS_BUCKETS: usize = 360;

/// The last answer of `GET /api/v2/delivery-stats` and when it was computed.
#[derive(Debug, Default)]
pub struct StatsCache {
    last: Mutex<Option<(Instant, Arc<DeliveryStatsBody>)>>,
}

/// The body of `GET /api/v2/delivery-stats`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryStatsBody {
    /// When these figures were taken (they may be up to two seconds old).
    as_of: DateTime<Utc>,
    /// Rows per state. Delivered and cancelled rows count until retention prunes them.
    counts: StateCounts,
    /// Rows in the dead letter (state `failed`).
    dead_letters: u64,
    /// The earliest due time of a pending or in-flight row that is due; `null` when nothing
    /// waits. This is the oldest *due* row, not the oldest pending one: a row waiting for a
    /// later retry is not due, and a row is counted from when it became due, not from its
    /// creation.
    #[schema(required = true)]
    oldest_due_at: Option<DateTime<Utc>>,
    /// How late that row is (now minus its due time), in milliseconds; `null` when nothing
    /// waits.
    #[schema(required = true)]
    oldest_due_age_ms: Option<u64>,
    /// The last 60 minutes, oldest first, the current (partial) minute last: the rows that
    /// became `delivered` and `failed` in each, by their last change.
    per_minute: Vec<MinuteCounts>,
    /// The width of a bucket of `per_bucket`, in seconds (10).
    bucket_seconds: u64,
    /// The same hour in 360 buckets of `bucket_seconds`, oldest first, the current (partial)
    /// bucket last: the rows that became `delivered` and `failed` in each, by their last
    /// change. A bucket's count divided by `bucket_seconds` is its rate per second.
    per_bucket: Vec<BucketCounts>,
}

/// `GET /api/v2/delivery-stats`.
#[utoipa::path(
    get,
    path = "/delivery-stats",
    tag = "deliveries",
    operation_id = "get_delivery_stats",
    summary = "The outbox at a glance: counts by state and the last hour per 10 s and per minute",
    description = "Rows per state, the dead-letter count, how late the oldest due row is, and \
        over the last hour the rows delivered and the rows failed (by their last change; rows \
        retention has pruned are not counted), in 360 buckets of 10 seconds (`per_bucket`) \
        and in 60 minutes (`per_minute`). The answer is computed at most every two seconds \
        and shared by callers in between.",
    responses(
        (status = 200, description = "The figures", body = DeliveryStatsBody),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get(
    State(state): State<Shared>,
) -> Result<Json<Arc<DeliveryStatsBody>>, ApiError> {
    let mut last = state.delivery_stats.last.lock().await;
    if let Some((at, body)) = last.as_ref()
        && at.elapsed() < STATS_TTL
    {
        return Ok(Json(body.clone()));
    }
    let now = state.now();
    let first_minute = minute_of(now) - Duration::minutes(STATS_MINUTES as i64 - 1);
    let first_bucket = bucket_of(now) - bucket_width() * (STATS_BUCKETS as i32 - 1);
    let since = first_minute.min(first_bucket);
    let stats = state.stores.deliveries.delivery_stats(now, since).await?;
    let body = Arc::new(DeliveryStatsBody {
        as_of: now,
        counts: stats.counts,
        dead_letters: stats.counts.failed,
        oldest_due_at: stats.oldest_due_at,
        oldest_due_age_ms: stats
            .oldest_due_at
            .map(|at| (now - at).num_milliseconds().unsigned_abs()),
        per_minute: per_minute(first_minute, &stats.buckets),
        bucket_seconds: (STATS_BUCKET_MS / 1000).unsigned_abs(),
        per_bucket: per_bucket(first_bucket, &stats.buckets),
    });
    *last = Some((Instant::now(), body.clone()));
    Ok(Json(body))
}

/// The width of a bucket.
fn bucket_width() -> Duration {
    Duration::milliseconds(STATS_BUCKET_MS)
}

/// [`STATS_BUCKETS`] buckets from `first`, each with its counts from `buckets` or zeros.
fn per_bucket(first: DateTime<Utc>, buckets: &[BucketCounts]) -> Vec<BucketCounts> {
    let mut out: Vec<BucketCounts> = (0..STATS_BUCKETS as i32)
        .map(|i| BucketCounts {
            start: first + bucket_width() * i,
            delivered: 0,
            failed: 0,
        })
        .collect();
    for b in buckets {
        if let Some(slot) = slot(first, b.start, bucket_width(), &mut out) {
            slot.delivered += b.delivered;
            slot.failed += b.failed;
        }
    }
    out
}

/// [`STATS_MINUTES`] minutes from `first`, each the sum of its buckets in `buckets`, or zeros.
fn per_minute(first: DateTime<Utc>, buckets: &[BucketCounts]) -> Vec<MinuteCounts> {
    let mut out: Vec<MinuteCounts> = (0..STATS_MINUTES as i64)
        .map(|i| MinuteCounts {
            minute: first + Duration::minutes(i),
            delivered: 0,
            failed: 0,
        })
        .collect();
    for b in buckets {
        if let Some(slot) = slot(first, b.start, Duration::minutes(1), &mut out) {
            slot.delivered += b.delivered;
            slot.failed += b.failed;
        }
    }
    out
}

/// The entry of `series` (consecutive periods of `width` from `first`) that `at` falls in.
fn slot<T>(
    first: DateTime<Utc>,
    at: DateTime<Utc>,
    width: Duration,
    series: &mut [T],
) -> Option<&mut T> {
    let offset = u64::try_from((at - first).num_milliseconds()).ok()?;
    let width = u64::try_from(width.num_milliseconds()).ok()?;
    let index = usize::try_from(offset.checked_div(width)?).ok()?;
    series.get_mut(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(first: DateTime<Utc>, seconds: i64, delivered: u64, failed: u64) -> BucketCounts {
        BucketCounts {
            start: first + Duration::seconds(seconds),
            delivered,
            failed,
        }
    }

    #[test]
    fn the_series_have_every_bucket_and_minute_with_zeros_between() {
        let first = DateTime::from_timestamp(1_799_999_940, 0).unwrap();
        let hits = [
            bucket(first, -10, 7, 7),
            bucket(first, 180, 2, 1),
            bucket(first, 190, 3, 0),
            bucket(first, 3590, 0, 4),
            bucket(first, 3600, 9, 9),
        ];
        let b = per_bucket(first, &hits);
        assert_eq!(b.len(), STATS_BUCKETS);
        assert_eq!(b[0], bucket(first, 0, 0, 0));
        assert_eq!((b[18], b[19]), (hits[1], hits[2]));
        assert_eq!(b[359], hits[3]);
        assert_eq!(b.iter().map(|b| b.delivered).sum::<u64>(), 5);
        let m = per_minute(first, &hits);
        assert_eq!(m.len(), STATS_MINUTES);
        assert_eq!(m[0].minute, first);
        let third = MinuteCounts {
            minute: first + Duration::minutes(3),
            delivered: 5,
            failed: 1,
        };
        assert_eq!(m[3], third);
        assert_eq!(
            (m[59].minute, m[59].failed),
            (first + Duration::minutes(59), 4)
        );
        assert_eq!(m.iter().map(|m| m.delivered).sum::<u64>(), 5);
    }
}
