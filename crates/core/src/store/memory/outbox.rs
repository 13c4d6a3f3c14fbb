//! The outbox over the in-memory state: leased claims in due order, results, re-drives.

use super::{MemoryStore, Row, State};
use crate::clients::RateLimit;
use crate::clock::Clock;
use crate::health::batch::BatchHealth;
use crate::ids::{ClientId, DeliveryId, EventId, LeaseId};
use crate::operator_events::{NewOperatorEvent, OperatorEventType};
use crate::outbox::{
    AttemptRecord, AttemptResult, ClaimedDelivery, Delivery, DeliveryDetail, DeliveryFilter,
    DeliveryProgress, DeliveryState, DeliveryStats, OutboxStats,
};
use crate::pacing::Pace;
use crate::retry::Decision;
use crate::store::{Deliveries, Housekeeping, Page, Queue, StoreError, millis};
use crate::terminate::EndTarget;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::Notify;

#[async_trait]
impl Queue for MemoryStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut state = self.lock().await;
        let ids: Vec<DeliveryId> = state
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, id)| {
                state
                    .rows
                    .get(id)
                    .is_some_and(|r| state.claimable_client(&r.delivery.client_id).is_some())
            })
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect();
        let lease_id = LeaseId::generate();
        let until = now + lease;
        Ok(ids
            .iter()
            .filter_map(|id| claim_one(&mut state, id, &lease_id, until, now))
            .collect())
    }

    async fn record(&self, results: &[AttemptResult]) -> Result<u64, StoreError> {
        let mut state = self.lock().await;
        let mut applied: Vec<(ClientId, &AttemptResult)> = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for r in results {
            if !record_one(&mut state, r) {
                continue;
            }
            let Some(row) = state.rows.get(&r.id) else {
                continue;
            };
            if let Decision::GiveUp(_) = &r.decision {
                failed.push((row.delivery.clone(), r.attempt.at));
            }
            applied.push((row.delivery.client_id.clone(), r));
        }
        let health = BatchHealth::of(applied.iter().map(|(client, r)| {
            (
                client.as_str(),
                &r.attempt,
                r.decision == Decision::Delivered,
            )
        }));
        state.add_health(&health);
        let paused = match self.policy.get() {
            Some(policy) => state.pause_failing_clients(&health, &policy),
            None => Vec::new(),
        };
        let emitted = state.dead_letters(&failed);
        let pauses = NewOperatorEvent::auto_paused(&paused, health.now);
        state.insert_events(&pauses);
        drop(state);
        self.policy.count_pauses(&paused);
        self.tally
            .count_kind(OperatorEventType::DeliveryFailed, emitted);
        self.tally.count(&pauses);
        Ok(applied.len() as u64)
    }

    async fn release(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let released = {
            let mut state = self.lock().await;
            let mut released = 0;
            for (id, lease) in leases {
                if holds_lease(&state, id, lease) {
                    state.schedule(id, DeliveryState::Pending, Some(now), now);
                    released += 1;
                }
            }
            released
        };
        if released > 0 {
            self.notify();
        }
        Ok(released)
    }

    async fn defer(
        &self,
        rows: &[(DeliveryId, LeaseId, DateTime<Utc>)],
    ) -> Result<u64, StoreError> {
        let deferred = {
            let mut state = self.lock().await;
            let mut deferred = 0;
            for (id, lease, due) in rows {
                if holds_lease(&state, id, lease) {
                    state.schedule(id, DeliveryState::Pending, Some(millis(*due)), millis(*due));
                    deferred += 1;
                }
            }
            deferred
        };
        if deferred > 0 {
            self.notify();
        }
        Ok(deferred)
    }

    async fn pace(
        &self,
        client: &ClientId,
        limit: &RateLimit,
        clock: &dyn Clock,
        horizon: std::time::Duration,
        rows: usize,
    ) -> Result<Pace, StoreError> {
        let mut state = self.lock().await;
        let stored = state.pacing.get(client).copied();
        // The time once the state is ours: places are counted from when they are taken.
        let now = clock.now();
        let (next, pace) = crate::pacing::plan(stored, limit, now, horizon, rows);
        state.pacing.insert(client.clone(), next);
        Ok(pace)
    }

    async fn give_up(
        &self,
        leases: &[(DeliveryId, LeaseId)],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock().await;
        let mut failed = Vec::new();
        for (id, lease) in leases {
            if holds_lease(&state, id, lease) {
                state.schedule(id, DeliveryState::Failed, None, now);
                if let Some(row) = state.rows.get_mut(id) {
                    row.delivery.last_error = Some(reason.to_owned());
                    failed.push((row.delivery.clone(), now));
                }
            }
        }
        let emitted = state.dead_letters(&failed);
        drop(state);
        self.tally
            .count_kind(OperatorEventType::DeliveryFailed, emitted);
        Ok(emitted)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Rows of paused clients are left out: they are due but cannot be claimed.
        let state = self.lock().await;
        Ok(state
            .due
            .iter()
            .find(|(_, id)| {
                state
                    .rows
                    .get(id)
                    .is_some_and(|r| state.claimable_client(&r.delivery.client_id).is_some())
            })
            .map(|(at, _)| *at))
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }
}

#[async_trait]
impl Deliveries for MemoryStore {
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Delivery>, StoreError> {
        let state = self.lock().await;
        let start = from.map_or(Bound::Unbounded, |c| Bound::Excluded(DeliveryId::from(c)));
        let items = state
            .rows
            .range((start, Bound::Unbounded))
            .map(|(_, row)| &row.delivery)
            .filter(|d| matches(filter, d))
            .take(take.saturating_add(1))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, take, |d: &Delivery| {
            d.id.to_string()
        }))
    }

    async fn event_progress(
        &self,
        target: &EndTarget,
        event: &EventId,
    ) -> Result<Vec<DeliveryProgress>, StoreError> {
        let state = self.lock().await;
        Ok(state
            .rows
            .values()
            .map(|row| &row.delivery)
            .filter(|d| {
                d.event_id == *event
                    && match target {
                        EndTarget::Session(id) => d.session_id == *id,
                        EndTarget::User(user) => d.user_id == *user,
                    }
            })
            .map(|d| DeliveryProgress {
                id: d.id.clone(),
                client_id: d.client_id.clone(),
                state: d.state,
                attempts: d.attempts,
                last_status: d.last_status,
            })
            .collect())
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryDetail>, StoreError> {
        Ok(self.lock().await.rows.get(id).map(|row| DeliveryDetail {
            delivery: row.delivery.clone(),
            attempt_history: row.history.clone(),
        }))
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
        Ok(self.lock().await.stats(now))
    }

    async fn delivery_stats(
        &self,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<DeliveryStats, StoreError> {
        Ok(self.lock().await.delivery_stats(now, since))
    }
}

#[async_trait]
impl Housekeeping for MemoryStore {
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let finished = [DeliveryState::Delivered, DeliveryState::Cancelled];
        Ok(self.lock().await.prune_rows(&finished, before, limit))
    }

    async fn prune_failed(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .await
            .prune_rows(&[DeliveryState::Failed], before, limit))
    }

    async fn prune_keys(&self, now: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        Ok(self.lock().await.prune_keys(now, limit))
    }

    async fn prune_sessions(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        Ok(self.lock().await.prune_sessions(before, limit))
    }

    async fn prune_health(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = crate::health::window_start(now);
        Ok(self.lock().await.prune_health(before))
    }

    async fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.lock().await;
        Ok(state
            .sessions
            .values()
            .filter(|s| !s.is_ended())
            .filter_map(super::expiry)
            .min())
    }

    fn expiry_wakeup(&self) -> Arc<Notify> {
        self.expiry.clone()
    }
}

/// Puts row `id` in flight under `lease` until `until`, and returns the claim.
fn claim_one(
    state: &mut State,
    id: &DeliveryId,
    lease: &LeaseId,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<ClaimedDelivery> {
    let reclaimed = state
        .rows
        .get(id)
        .is_some_and(|row| row.delivery.state == DeliveryState::InFlight);
    state.schedule(id, DeliveryState::InFlight, Some(until), now);
    let row = state.rows.get_mut(id)?;
    row.lease = Some(lease.clone());
    let client = Arc::new(state.clients.get(&row.delivery.client_id)?.clone());
    Some(ClaimedDelivery {
        delivery: row.delivery.clone(),
        lease: lease.clone(),
        session_metadata: row.metadata.clone(),
        client,
        budget_started_at: row.budget_started_at,
        reclaimed,
    })
}

/// Whether row `id` is in flight under `lease`.
fn holds_lease(state: &State, id: &DeliveryId, lease: &LeaseId) -> bool {
    state.rows.get(id).is_some_and(|row| {
        row.delivery.state == DeliveryState::InFlight && row.lease.as_ref() == Some(lease)
    })
}

/// Applies one result if its lease is current; returns whether it was applied.
fn record_one(state: &mut State, result: &AttemptResult) -> bool {
    if !holds_lease(state, &result.id, &result.lease) {
        return false;
    }
    let (next_state, next_at) = match &result.decision {
        Decision::Delivered => (DeliveryState::Delivered, None),
        Decision::RetryAt(at) => (DeliveryState::Pending, Some(*at)),
        Decision::GiveUp(_) => (DeliveryState::Failed, None),
    };
    state.schedule(&result.id, next_state, next_at, result.attempt.at);
    let Some(row) = state.rows.get_mut(&result.id) else {
        return false;
    };
    apply_attempt(row, result);
    true
}

/// Counts the attempt, keeps it in the history and copies its outcome onto the row.
fn apply_attempt(row: &mut Row, result: &AttemptResult) {
    let attempt = AttemptRecord {
        at: millis(result.attempt.at),
        ..result.attempt.clone()
    };
    let d = &mut row.delivery;
    d.attempts = d.attempts.saturating_add(1);
    d.last_status = attempt.status;
    d.last_error = match &result.decision {
        Decision::GiveUp(reason) => Some(reason.to_string()),
        _ => attempt.error.clone(),
    };
    if result.decision == Decision::Delivered {
        d.delivered_at = Some(attempt.at);
    }
    row.history.push(attempt);
}

/// Whether `d` passes every set filter.
fn matches(filter: &DeliveryFilter, d: &Delivery) -> bool {
    filter.state.is_none_or(|s| s == d.state)
        && filter.client_id.as_ref().is_none_or(|c| c == &d.client_id)
        && filter
            .session_id
            .as_ref()
            .is_none_or(|s| s == &d.session_id)
        && filter.user_id.as_ref().is_none_or(|u| u == &d.user_id)
        && filter.initiator.is_none_or(|i| i == d.initiator)
        && filter.created_since.is_none_or(|t| d.created_at >= t)
        && filter.created_before.is_none_or(|t| d.created_at < t)
}
