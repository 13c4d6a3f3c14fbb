//! Operator events over the in-memory state: inserts, leased claims, results, views.

use super::{MemoryStore, State};
use crate::ids::{LeaseId, OperatorEventId};
use crate::operator_events::{
    ClaimedOperatorEvent, EventRedrive, NewOperatorEvent, OperatorEvent, OperatorEventFilter,
    OperatorEventResult, OperatorEventState,
};
use crate::outbox::Delivery;
use crate::retry::Decision;
use crate::store::{OperatorEvents, Page, StoreError, millis};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::ops::Bound;

/// One stored event with what the API does not show.
pub(super) struct EventRow {
    event: OperatorEvent,
    lease: Option<LeaseId>,
    budget_started_at: DateTime<Utc>,
}

impl State {
    /// Inserts events, pending and due at their creation.
    pub(super) fn insert_events(&mut self, events: &[NewOperatorEvent]) {
        for new in events {
            let at = millis(new.created_at);
            let event = OperatorEvent {
                id: new.id.clone(),
                kind: new.kind,
                data: new.data.clone(),
                created_at: at,
                state: OperatorEventState::Pending,
                attempts: 0,
                next_attempt_at: Some(at),
                last_status: None,
                last_error: None,
                delivered_at: None,
                updated_at: at,
            };
            let row = EventRow {
                event,
                lease: None,
                budget_started_at: at,
            };
            self.events.entry(new.id.clone()).or_insert(row);
        }
    }

    /// Writes `delivery.failed` for each of `failed`, rows that just became dead letters
    /// (each with when it failed); returns how many.
    pub(super) fn dead_letters(&mut self, failed: &[(Delivery, DateTime<Utc>)]) -> u64 {
        let events: Vec<NewOperatorEvent> = failed
            .iter()
            .map(|(d, at)| NewOperatorEvent::delivery_failed(d, *at))
            .collect();
        self.insert_events(&events);
        events.len() as u64
    }
}

/// Whether `row` may be claimed at `now`.
fn due(row: &EventRow, now: DateTime<Utc>) -> bool {
    matches!(
        row.event.state,
        OperatorEventState::Pending | OperatorEventState::InFlight
    ) && row.event.next_attempt_at.is_some_and(|at| at <= now)
}

#[async_trait]
impl OperatorEvents for MemoryStore {
    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedOperatorEvent>, StoreError> {
        let mut state = self.lock().await;
        let lease_id = LeaseId::generate();
        let until = millis(now + lease);
        let mut claims = Vec::new();
        for row in state.events.values_mut() {
            if claims.len() >= limit {
                break;
            }
            if !due(row, now) {
                continue;
            }
            row.event.state = OperatorEventState::InFlight;
            row.event.next_attempt_at = Some(until);
            row.event.updated_at = millis(now);
            row.lease = Some(lease_id.clone());
            claims.push(ClaimedOperatorEvent {
                event: row.event.clone(),
                lease: lease_id.clone(),
                budget_started_at: row.budget_started_at,
            });
        }
        Ok(claims)
    }

    async fn record_event(&self, result: &OperatorEventResult) -> Result<bool, StoreError> {
        let mut state = self.lock().await;
        let Some(row) = state.events.get_mut(&result.id) else {
            return Ok(false);
        };
        if row.event.state != OperatorEventState::InFlight
            || row.lease.as_ref() != Some(&result.lease)
        {
            return Ok(false);
        }
        let at = millis(result.at);
        let e = &mut row.event;
        e.attempts = e.attempts.saturating_add(1);
        e.last_status = result.status;
        e.last_error = result.error.clone();
        e.updated_at = at;
        row.lease = None;
        match &result.decision {
            Decision::Delivered => {
                e.state = OperatorEventState::Delivered;
                e.next_attempt_at = None;
                e.delivered_at = Some(at);
            }
            Decision::RetryAt(next) => {
                e.state = OperatorEventState::Pending;
                e.next_attempt_at = Some(millis(*next));
            }
            Decision::GiveUp(_) => {
                e.state = OperatorEventState::Failed;
                e.next_attempt_at = None;
            }
        }
        Ok(true)
    }

    async fn release_events(
        &self,
        leases: &[(OperatorEventId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock().await;
        let mut released = 0;
        for (id, lease) in leases {
            if let Some(row) = state.events.get_mut(id)
                && row.event.state == OperatorEventState::InFlight
                && row.lease.as_ref() == Some(lease)
            {
                row.event.state = OperatorEventState::Pending;
                row.event.next_attempt_at = Some(millis(now));
                row.event.updated_at = millis(now);
                row.lease = None;
                released += 1;
            }
        }
        Ok(released)
    }

    async fn list_events(
        &self,
        filter: &OperatorEventFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<OperatorEvent>, StoreError> {
        let state = self.lock().await;
        let start = match from {
            Some(cursor) => Bound::Excluded(OperatorEventId::from(cursor)),
            None => Bound::Unbounded,
        };
        let items: Vec<OperatorEvent> = state
            .events
            .range((start, Bound::Unbounded))
            .map(|(_, row)| &row.event)
            .filter(|e| filter.kind.is_none_or(|k| k == e.kind))
            .filter(|e| filter.state.is_none_or(|s| s == e.state))
            .take(take.saturating_add(1))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, take, |e: &OperatorEvent| {
            e.id.to_string()
        }))
    }

    async fn get_event(&self, id: &OperatorEventId) -> Result<Option<OperatorEvent>, StoreError> {
        Ok(self.lock().await.events.get(id).map(|r| r.event.clone()))
    }

    async fn redrive_event(
        &self,
        id: &OperatorEventId,
        now: DateTime<Utc>,
    ) -> Result<EventRedrive, StoreError> {
        let mut state = self.lock().await;
        let Some(row) = state.events.get_mut(id) else {
            return Ok(EventRedrive::NotFound);
        };
        if row.event.state != OperatorEventState::Failed {
            return Ok(EventRedrive::NotFailed(row.event.state));
        }
        let now = millis(now);
        row.event.state = OperatorEventState::Pending;
        row.event.next_attempt_at = Some(now);
        row.event.attempts = 0;
        row.event.updated_at = now;
        row.budget_started_at = now;
        Ok(EventRedrive::Requeued)
    }

    async fn pending_events(&self) -> Result<u64, StoreError> {
        let state = self.lock().await;
        let live = state.events.values().filter(|r| {
            matches!(
                r.event.state,
                OperatorEventState::Pending | OperatorEventState::InFlight
            )
        });
        Ok(live.count() as u64)
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut state = self.lock().await;
        let old: Vec<OperatorEventId> = state
            .events
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.event.state,
                    OperatorEventState::Delivered | OperatorEventState::Failed
                ) && r.event.updated_at < before
            })
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        for id in &old {
            state.events.remove(id);
        }
        Ok(old.len() as u64)
    }
}
