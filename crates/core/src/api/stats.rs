//! `GET /api/v2/delivery-stats`: the outbox at a glance, for the console's overview: rows per
//! state, the dead-letter count, the oldest due row's age, and per minute over the last hour
//! the rows delivered and the rows that failed. The console polls it every few seconds, so
//! the answer is kept for [`STATS_TTL`] and shared by every caller in that window.

use super::openapi::InternalError;
use super::{ApiError, Shared};
use crate::outbox::{MinuteCounts, StateCounts, minute_of};
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
    /// waits.
    #[schema(required = true)]
    oldest_due_at: Option<DateTime<Utc>>,
    /// How long that row has waited, in milliseconds; `null` when nothing waits.
    #[schema(required = true)]
    oldest_due_age_ms: Option<u64>,
    /// The last 60 minutes, oldest first, the current (partial) minute last: the rows that
    /// became `delivered` and `failed` in each, by their last change.
    per_minute: Vec<MinuteCounts>,
}

/// `GET /api/v2/delivery-stats`.
#[utoipa::path(
    get,
    path = "/delivery-stats",
    tag = "deliveries",
    operation_id = "get_delivery_stats",
    summary = "The outbox at a glance: counts by state and the last hour per minute",
    description = "Rows per state, the dead-letter count, the oldest due row's age, and per \
        minute over the last 60 minutes the rows delivered and the rows failed (by their last \
        change; rows retention has pruned are not counted). The answer is computed at most \
        every two seconds and shared by callers in between.",
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
    let current = minute_of(now);
    let first = current - Duration::minutes(STATS_MINUTES as i64 - 1);
    let stats = state.stores.deliveries.delivery_stats(now, first).await?;
    let body = Arc::new(DeliveryStatsBody {
        as_of: now,
        counts: stats.counts,
        dead_letters: stats.counts.failed,
        oldest_due_at: stats.oldest_due_at,
        oldest_due_age_ms: stats
            .oldest_due_at
            .map(|at| (now - at).num_milliseconds().unsigned_abs()),
        per_minute: series(first, &stats.minutes),
    });
    *last = Some((Instant::now(), body.clone()));
    Ok(Json(body))
}

/// [`STATS_MINUTES`] minutes from `first`, each with its counts from `minutes` or zeros.
fn series(first: DateTime<Utc>, minutes: &[MinuteCounts]) -> Vec<MinuteCounts> {
    (0..STATS_MINUTES as i64)
        .map(|i| {
            let minute = first + Duration::minutes(i);
            minutes
                .iter()
                .find(|m| m.minute == minute)
                .copied()
                .unwrap_or(MinuteCounts {
                    minute,
                    delivered: 0,
                    failed: 0,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_has_every_minute_with_zeros_between() {
        let first = DateTime::from_timestamp(1_799_999_940, 0).unwrap();
        let hit = MinuteCounts {
            minute: first + Duration::minutes(3),
            delivered: 5,
            failed: 1,
        };
        let s = series(first, &[hit]);
        assert_eq!(s.len(), STATS_MINUTES);
        assert_eq!(s[0].minute, first);
        assert_eq!(s[3], hit);
        assert_eq!(s[59].minute, first + Duration::minutes(59));
        assert_eq!(s.iter().map(|m| m.delivered).sum::<u64>(), 5);
    }
}
