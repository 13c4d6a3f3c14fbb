//! One batch of recorded attempts, summed per client: what a backend adds to the stored
//! health in the transaction that records the batch.

use super::latency::bucket_of;
use crate::outbox::AttemptRecord;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// An hour in milliseconds: the width of a health bucket.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Attempts of one client in one hour and latency bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BucketDelta {
    /// The client.
    pub client_id: String,
    /// The start of the hour, in milliseconds.
    pub hour: i64,
    /// The latency bucket ([`super::latency::bucket_of`]).
    pub latency_bucket: i64,
    /// Attempts delivered.
    pub successes: i64,
    /// Attempts not delivered.
    pub failures: i64,
}

/// What one batch says of one client's streak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientDelta {
    /// The client.
    pub client_id: String,
    /// Its latest success in the batch, in milliseconds.
    pub last_success_at: Option<i64>,
    /// Its latest failure in the batch, in milliseconds.
    pub last_failure_at: Option<i64>,
    /// Its failures after its latest success in the batch (all of them without one).
    pub streak: i64,
    /// The first of those failures.
    pub streak_start: Option<i64>,
}

/// One batch summed per client.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BatchHealth {
    /// Counts to add, per client, hour and latency bucket.
    pub buckets: Vec<BucketDelta>,
    /// Per client, the streak and last times.
    pub clients: Vec<ClientDelta>,
    /// The latest attempt time of the batch: the policy's "now".
    pub now: Option<DateTime<Utc>>,
}

impl BatchHealth {
    /// Sums `applied` attempts, each with its row's client and whether it delivered the row,
    /// in attempt-time order. Every attempt counts, whatever ended it: a success is one
    /// delivered (200 or 204), anything else a failure, with its measured latency (up to the
    /// response, the error or the timeout).
    pub(crate) fn of<'a>(
        applied: impl IntoIterator<Item = (&'a str, &'a AttemptRecord, bool)>,
    ) -> Self {
        let mut attempts: Vec<(&str, &AttemptRecord, bool)> = applied.into_iter().collect();
        attempts.sort_by_key(|(_, a, _)| a.at);
        let mut buckets: BTreeMap<(&str, i64, i64), (i64, i64)> = BTreeMap::new();
        let mut clients: BTreeMap<&str, ClientDelta> = BTreeMap::new();
        let mut now = None;
        for (client, attempt, success) in attempts {
            let at = attempt.at.timestamp_millis();
            let key = (
                client,
                at - at.rem_euclid(HOUR_MS),
                bucket_of(attempt.latency_ms),
            );
            let counts = buckets.entry(key).or_default();
            let delta = clients.entry(client).or_insert_with(|| ClientDelta {
                client_id: client.to_owned(),
                last_success_at: None,
                last_failure_at: None,
                streak: 0,
                streak_start: None,
            });
            if success {
                counts.0 += 1;
                delta.last_success_at = Some(at);
                delta.streak = 0;
                delta.streak_start = None;
            } else {
                counts.1 += 1;
                delta.last_failure_at = Some(at);
                delta.streak += 1;
                delta.streak_start.get_or_insert(at);
            }
            now = now.max(Some(attempt.at));
        }
        let buckets = buckets
            .into_iter()
            .map(
                |((client, hour, latency_bucket), (successes, failures))| BucketDelta {
                    client_id: client.to_owned(),
                    hour,
                    latency_bucket,
                    successes,
                    failures,
                },
            )
            .collect();
        Self {
            buckets,
            clients: clients.into_values().collect(),
            now,
        }
    }

    /// The clients that failed in this batch: the only ones the pause policy looks at.
    pub(crate) fn failing(&self) -> Vec<&str> {
        self.clients
            .iter()
            .filter(|c| c.streak > 0)
            .map(|c| c.client_id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Jti;

    fn attempt(ms: i64, latency_ms: u64) -> AttemptRecord {
        AttemptRecord {
            at: DateTime::from_timestamp_millis(ms).unwrap_or_default(),
            status: None,
            error: None,
            latency_ms,
            jti: Jti::generate(),
        }
    }

    #[test]
    fn a_batch_sums_per_client_and_the_streak_follows_the_last_success() {
        let (a, b, c, d) = (
            attempt(HOUR_MS + 3, 10),
            attempt(HOUR_MS + 1, 10),
            attempt(HOUR_MS + 2, 10),
            attempt(5, 900),
        );
        // In attempt-time order: x fails at 5, fails at +1, succeeds at +2, fails at +3.
        let batch = BatchHealth::of([
            ("x", &a, false),
            ("x", &b, false),
            ("x", &c, true),
            ("x", &d, false),
            ("y", &c, true),
        ]);
        let x = &batch.clients[0];
        assert_eq!(x.client_id, "x");
        assert_eq!(x.last_success_at, Some(HOUR_MS + 2));
        assert_eq!(x.last_failure_at, Some(HOUR_MS + 3));
        assert_eq!((x.streak, x.streak_start), (1, Some(HOUR_MS + 3)));
        let y = &batch.clients[1];
        assert_eq!((y.streak, y.streak_start), (0, None));
        // x: hour 0 one slow failure; hour 1 two failures and a success in one latency bucket.
        let xs: Vec<(i64, i64, i64)> = batch
            .buckets
            .iter()
            .filter(|b| b.client_id == "x")
            .map(|b| (b.hour, b.successes, b.failures))
            .collect();
        assert_eq!(xs, [(0, 0, 1), (HOUR_MS, 1, 2)]);
        assert_eq!(batch.failing(), ["x"]);
        assert_eq!(batch.now, DateTime::from_timestamp_millis(HOUR_MS + 3));
    }
}
