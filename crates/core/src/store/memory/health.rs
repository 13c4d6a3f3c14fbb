//! Endpoint health over the in-memory state: the same statistics and pause policy the SQL
//! backends keep, applied under the state's mutex.

use super::{MemoryStore, State};
use crate::health::batch::BatchHealth;
use crate::health::{ClientHealth, HealthPolicy, PausedBy, StoredHealth, window_start};
use crate::ids::{ClientId, DeliveryId};
use crate::outbox::DeliveryState;
use crate::store::{ClientHealthStats, Page, StoreError, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// One client's statistics, as the SQL backends store them (times in milliseconds).
#[derive(Debug, Default)]
pub(super) struct MemHealth {
    last_success_at: Option<i64>,
    last_failure_at: Option<i64>,
    streak: i64,
    failing_since: Option<i64>,
    /// (hour, latency bucket) → (successes, failures).
    buckets: BTreeMap<(i64, i64), (i64, i64)>,
}

impl State {
    /// Adds a recorded batch to its clients' statistics.
    pub(super) fn add_health(&mut self, batch: &BatchHealth) {
        for b in &batch.buckets {
            let h = self
                .health
                .entry(ClientId::from(b.client_id.as_str()))
                .or_default();
            let counts = h.buckets.entry((b.hour, b.latency_bucket)).or_default();
            counts.0 += b.successes;
            counts.1 += b.failures;
        }
        for c in &batch.clients {
            let h = self
                .health
                .entry(ClientId::from(c.client_id.as_str()))
                .or_default();
            if c.last_success_at.is_some() {
                h.streak = c.streak;
                h.failing_since = c.streak_start;
            } else {
                h.streak += c.streak;
                h.failing_since = h.failing_since.or(c.streak_start);
            }
            h.last_success_at = h.last_success_at.max(c.last_success_at);
            h.last_failure_at = h.last_failure_at.max(c.last_failure_at);
        }
    }

    /// Pauses the clients that failed in `batch` and now meet `policy`; returns them.
    pub(super) fn pause_failing_clients(
        &mut self,
        batch: &BatchHealth,
        policy: &HealthPolicy,
    ) -> Vec<ClientId> {
        let Some(now) = batch.now.map(millis) else {
            return Vec::new();
        };
        let mut paused = Vec::new();
        for id in batch.failing() {
            let id = ClientId::from(id);
            let meets = self.health.get(&id).is_some_and(|h| {
                h.streak >= policy.min_failures()
                    && h.last_success_at
                        .or(h.failing_since)
                        .is_some_and(|t| t <= policy.quiet_before(now))
            });
            if let Some(client) = self.clients.get_mut(&id).filter(|c| meets && !c.paused) {
                client.paused = true;
                client.paused_by = Some(PausedBy::HealthPolicy);
                client.paused_at = Some(now);
                client.updated_at = now;
                paused.push(id);
            }
        }
        paused
    }

    /// A resume: the client's pending rows due at `now` with a fresh budget, and its streak
    /// restarted.
    pub(super) fn release_held(&mut self, client: &ClientId, now: DateTime<Utc>) -> u64 {
        let ids: Vec<DeliveryId> = self
            .rows
            .iter()
            .filter(|(_, r)| {
                &r.delivery.client_id == client && r.delivery.state == DeliveryState::Pending
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.schedule(id, DeliveryState::Pending, Some(now), now);
            if let Some(row) = self.rows.get_mut(id) {
                row.delivery.attempts = 0;
                row.budget_started_at = millis(now);
            }
        }
        if let Some(h) = self.health.get_mut(client) {
            h.streak = 0;
            h.failing_since = None;
        }
        ids.len() as u64
    }

    /// Drops the buckets that began before `before` (milliseconds); returns how many.
    pub(super) fn prune_health(&mut self, before: i64) -> u64 {
        let mut pruned = 0;
        for h in self.health.values_mut() {
            let kept = h.buckets.split_off(&(before, i64::MIN));
            pruned += h.buckets.len() as u64;
            h.buckets = kept;
        }
        pruned
    }

    /// One registered client's health as of `now`.
    fn stored_health(&self, id: &ClientId, now: DateTime<Utc>) -> Option<ClientHealth> {
        let client = self.clients.get(id)?;
        let at = |t: Option<i64>| t.and_then(DateTime::from_timestamp_millis);
        let since = window_start(now);
        let mut stored = StoredHealth {
            client_id: id.to_string(),
            paused: client.paused,
            paused_by: client.paused_by,
            paused_at: client.paused_at,
            ..StoredHealth::default()
        };
        if let Some(h) = self.health.get(id) {
            stored.last_success_at = at(h.last_success_at);
            stored.last_failure_at = at(h.last_failure_at);
            stored.failures_since_success = h.streak.unsigned_abs();
            stored.failing_since = at(h.failing_since);
            let mut buckets: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
            for ((hour, bucket), (s, f)) in &h.buckets {
                if *hour >= since {
                    let sum = buckets.entry(*bucket).or_default();
                    sum.0 += s.unsigned_abs();
                    sum.1 += f.unsigned_abs();
                }
            }
            stored.buckets = buckets.into_iter().map(|(b, (s, f))| (b, s, f)).collect();
        }
        Some(stored.into_health())
    }
}

#[async_trait]
impl ClientHealthStats for MemoryStore {
    fn set_health_policy(&self, policy: Option<HealthPolicy>) {
        self.policy.set(policy);
    }

    fn auto_pauses(&self) -> u64 {
        self.policy.pauses()
    }

    async fn client_health(
        &self,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<Option<ClientHealth>, StoreError> {
        Ok(self.lock().await.stored_health(id, now))
    }

    async fn list_client_health(
        &self,
        from: Option<&str>,
        take: usize,
        now: DateTime<Utc>,
    ) -> Result<Page<ClientHealth>, StoreError> {
        let state = self.lock().await;
        let health: Vec<ClientHealth> = state
            .clients
            .keys()
            .filter(|id| from.is_none_or(|from| id.as_str() > from))
            .take(take.saturating_add(1))
            .filter_map(|id| state.stored_health(id, now))
            .collect();
        Ok(Page::from_overfetch(health, take, |h: &ClientHealth| {
            h.client_id.to_string()
        }))
    }
}
