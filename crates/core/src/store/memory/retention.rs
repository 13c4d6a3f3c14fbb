//! Retention and statistics over the in-memory state: pruning finished rows, old ended
//! sessions and expired idempotency keys, the selection of dead letters to re-drive, and the
//! counts behind the metrics gauges.

use super::{State, millis};
use crate::ids::{DeliveryId, SessionId};
use crate::outbox::{
    BucketCounts, DeliveryState, DeliveryStats, FailedFilter, OutboxStats, bucket_of,
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};

impl State {
    /// Live and dead-letter counts, and the oldest due row, as of `now`.
    pub(super) fn stats(&self, now: DateTime<Utc>) -> OutboxStats {
        let mut stats = OutboxStats {
            oldest_due_at: self.due.first().map(|(at, _)| *at).filter(|at| *at <= now),
            ..OutboxStats::default()
        };
        for row in self.rows.values() {
            match row.delivery.state {
                DeliveryState::Pending => stats.pending += 1,
                DeliveryState::InFlight => stats.in_flight += 1,
                DeliveryState::Failed => stats.failed += 1,
                DeliveryState::Delivered | DeliveryState::Cancelled => {}
            }
        }
        stats
    }

    /// Rows per state, the oldest due row, and the outcomes per bucket since `since`.
    pub(super) fn delivery_stats(&self, now: DateTime<Utc>, since: DateTime<Utc>) -> DeliveryStats {
        let since = millis(since);
        let mut stats = DeliveryStats {
            oldest_due_at: self.stats(now).oldest_due_at,
            ..DeliveryStats::default()
        };
        let mut buckets: BTreeMap<DateTime<Utc>, BucketCounts> = BTreeMap::new();
        for row in self.rows.values() {
            let state = row.delivery.state;
            stats.counts.add(state, 1);
            let outcome = matches!(state, DeliveryState::Delivered | DeliveryState::Failed);
            if outcome && row.updated_at >= since {
                let start = bucket_of(row.updated_at);
                let slot = buckets.entry(start).or_insert(BucketCounts {
                    start,
                    delivered: 0,
                    failed: 0,
                });
                if state == DeliveryState::Delivered {
                    slot.delivered += 1;
                } else {
                    slot.failed += 1;
                }
            }
        }
        stats.buckets = buckets.into_values().collect();
        stats
    }

    /// Deletes up to `limit` rows in one of `states` last changed before `before` (both
    /// compared in whole milliseconds, as stored).
    pub(super) fn prune_rows(
        &mut self,
        states: &[DeliveryState],
        before: DateTime<Utc>,
        limit: usize,
    ) -> u64 {
        let before = millis(before);
        let ids: Vec<DeliveryId> = self
            .rows
            .iter()
            .filter(|(_, row)| states.contains(&row.delivery.state) && row.updated_at < before)
            .take(limit)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.rows.remove(id);
        }
        ids.len() as u64
    }

    /// The ids of up to `limit` failed rows matching `filter` after id `after`, in id order
    /// (times compared in whole milliseconds, as stored).
    pub(super) fn failed_rows(
        &self,
        filter: &FailedFilter,
        after: &str,
        limit: usize,
    ) -> Vec<DeliveryId> {
        let (since, before) = (
            filter.failed_since.map(millis),
            filter.failed_before.map(millis),
        );
        self.rows
            .iter()
            .filter(|(id, _)| id.as_str() > after)
            .filter(|(id, _)| filter.ids.as_ref().is_none_or(|ids| ids.contains(id)))
            .filter(|(_, row)| {
                let d = &row.delivery;
                d.state == DeliveryState::Failed
                    && filter.client_id.as_ref().is_none_or(|c| c == &d.client_id)
                    && filter.initiator.is_none_or(|i| i == d.initiator)
                    && since.is_none_or(|t| row.updated_at >= t)
                    && before.is_none_or(|t| row.updated_at < t)
            })
            .take(limit)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Deletes up to `limit` idempotency keys that expired at or before `now`.
    pub(super) fn prune_keys(&mut self, now: DateTime<Utc>, limit: usize) -> u64 {
        let expired: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, (_, expires_at))| *expires_at <= now)
            .take(limit)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.keys.remove(key);
        }
        expired.len() as u64
    }

    /// Deletes up to `limit` sessions ended before `before` that no outbox row refers to.
    pub(super) fn prune_sessions(&mut self, before: DateTime<Utc>, limit: usize) -> u64 {
        let before = millis(before);
        let referenced: HashSet<&SessionId> =
            self.rows.values().map(|r| &r.delivery.session_id).collect();
        let ids: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| s.ended_at.is_some_and(|at| at < before))
            .filter(|s| !referenced.contains(&s.id))
            .take(limit)
            .map(|s| s.id.clone())
            .collect();
        for id in &ids {
            let Some(session) = self.sessions.remove(id) else {
                continue;
            };
            if let Some(set) = self.by_user.get_mut(&session.user_id) {
                set.remove(id);
                if set.is_empty() {
                    self.by_user.remove(&session.user_id);
                }
            }
        }
        ids.len() as u64
    }
}
