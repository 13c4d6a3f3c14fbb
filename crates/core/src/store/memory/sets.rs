//! The SET outbox over the in-memory state: rows written pending, pushed under a lease or
//! handed to a poll, settled by the push's result or the poll's acks and errors.

use super::ssf::SsfState;
use crate::ids::LeaseId;
use crate::outbox::OutboxStats;
use crate::retry::Decision;
use crate::ssf::{
    ClaimedSet, FailedSetFilter, NewSet, PollBatch, PollRequest, PushRoom, SetFilter, SetKind,
    SetRedrive, SetResult, SetState, SsfReceiver, SsfStream, StoredSet, StreamDelivery,
    StreamStatus,
};
use crate::store::{Page, millis};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::ops::Bound;

/// Why a stream's waiting rows were cancelled.
const CANCELLED: &str = "the stream was disabled or deleted";

/// One SET row with its lease.
pub(super) struct SetRow {
    row: StoredSet,
    lease: Option<LeaseId>,
}

impl SetRow {
    fn live(&self) -> bool {
        matches!(self.row.state, SetState::Pending | SetState::InFlight)
    }

    /// Pending and due, or in flight with an expired lease, at `now`.
    fn due(&self, now: DateTime<Utc>) -> bool {
        self.live() && self.row.next_attempt_at.is_some_and(|at| at <= now)
    }

    /// Pending, or in flight with an expired lease (what a poll hands out).
    fn pollable(&self, now: DateTime<Utc>) -> bool {
        match self.row.state {
            SetState::Pending => true,
            SetState::InFlight => self.row.next_attempt_at.is_some_and(|at| at <= now),
            _ => false,
        }
    }

    /// Moves the row to `state`, due at `next`, dropping its lease.
    fn settle(&mut self, state: SetState, next: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        self.row.state = state;
        self.row.next_attempt_at = next;
        self.row.updated_at = now;
        self.lease = None;
    }
}

impl SsfState {
    /// Inserts rows pending, due at their creation, their budget counted from then; a row
    /// whose id is stored is skipped.
    pub(super) fn insert_sets(&mut self, rows: &[NewSet]) {
        for new in rows {
            if self.sets.contains_key(&new.id) {
                continue;
            }
            let at = millis(new.created_at);
            let row = StoredSet {
                set: NewSet {
                    created_at: at,
                    ..new.clone()
                },
                state: SetState::Pending,
                attempts: 0,
                next_attempt_at: Some(at),
                budget_started_at: at,
                last_status: None,
                last_error: None,
                delivered_at: None,
                updated_at: at,
            };
            self.sets
                .insert(new.id.clone(), SetRow { row, lease: None });
        }
    }

    /// Cancels the stream's pending and in-flight rows other than `keep`.
    pub(super) fn cancel_stream_rows(
        &mut self,
        stream_id: &str,
        keep: Option<&str>,
        now: DateTime<Utc>,
    ) {
        for (id, row) in &mut self.sets {
            if row.row.set.stream_id == stream_id && row.live() && Some(id.as_str()) != keep {
                row.settle(SetState::Cancelled, None, now);
                row.row.last_error = Some(CANCELLED.to_owned());
            }
        }
    }

    /// Makes the stream's held (pending) rows due at `now` with a fresh budget.
    pub(super) fn release_stream_rows(&mut self, stream_id: &str, now: DateTime<Utc>) {
        for row in self.sets.values_mut() {
            if row.row.set.stream_id == stream_id && row.row.state == SetState::Pending {
                row.row.next_attempt_at = Some(now);
                row.row.attempts = 0;
                row.row.budget_started_at = now;
                row.row.updated_at = now;
            }
        }
    }

    /// Whether `row` may be pushed: its stream pushes and is enabled, or it is a
    /// `stream_updated` row of a push stream.
    fn pushable(&self, row: &SetRow) -> Option<(&SsfStream, &SsfReceiver)> {
        let stream = self.streams.get(&row.row.set.stream_id)?;
        if !matches!(stream.delivery, StreamDelivery::Push { .. }) {
            return None;
        }
        if stream.status != StreamStatus::Enabled && row.row.set.kind != SetKind::StreamUpdated {
            return None;
        }
        let receiver = self.receivers.get(&stream.receiver_id)?;
        Some((stream, receiver))
    }

    /// The row with `jti` of (receiver, stream), if it is pending or in flight.
    fn live_row_mut(&mut self, request: &PollRequest, jti: &str) -> Option<&mut SetRow> {
        self.sets.values_mut().find(|r| {
            r.row.set.jti == jti
                && r.row.set.stream_id == request.stream_id
                && r.row.set.receiver_id == request.receiver_id
                && r.live()
        })
    }

    /// One poll: acks, then errors, then the oldest waiting rows (see
    /// [`crate::store::SsfStore::poll`]).
    pub(super) fn poll(&mut self, request: &PollRequest) -> PollBatch {
        let now = millis(request.now);
        for jti in &request.ack {
            if let Some(row) = self.live_row_mut(request, jti) {
                row.settle(SetState::Delivered, None, now);
                row.row.delivered_at = Some(now);
            }
        }
        for (jti, error) in &request.set_errs {
            if let Some(row) = self.live_row_mut(request, jti) {
                row.settle(SetState::Failed, None, now);
                row.row.last_error = Some(format!("{}: {}", error.err, error.description));
            }
        }
        let Some(stream) = self
            .streams
            .get(&request.stream_id)
            .filter(|s| s.receiver_id == request.receiver_id)
        else {
            return PollBatch::default();
        };
        let enabled = stream.status == StreamStatus::Enabled;
        let ready: Vec<String> = self
            .sets
            .iter()
            .filter(|(_, r)| {
                r.row.set.stream_id == request.stream_id
                    && r.row.set.receiver_id == request.receiver_id
                    && (enabled || r.row.set.kind == SetKind::StreamUpdated)
                    && r.pollable(now)
            })
            .map(|(id, _)| id.clone())
            .take(request.max_events.saturating_add(1))
            .collect();
        let more_available = ready.len() > request.max_events;
        let lease = LeaseId::generate();
        let until = millis(now + request.lease);
        let mut rows = Vec::new();
        for id in ready.iter().take(request.max_events) {
            if let Some(row) = self.sets.get_mut(id) {
                row.settle(SetState::InFlight, Some(until), now);
                row.lease = Some(lease.clone());
                row.row.attempts = row.row.attempts.saturating_add(1);
                rows.push(row.row.clone());
            }
        }
        PollBatch {
            rows,
            more_available,
        }
    }

    /// Claims up to `limit` due push rows, oldest first and at most `room` of each stream,
    /// under one new lease.
    pub(super) fn claim_push(
        &mut self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
        room: &PushRoom,
    ) -> Vec<ClaimedSet> {
        let lease_id = LeaseId::generate();
        let until = millis(now + lease);
        let mut picked = Vec::new();
        let mut taken: HashMap<&str, usize> = HashMap::new();
        for (id, row) in &self.sets {
            if picked.len() >= limit {
                break;
            }
            let stream_id = row.row.set.stream_id.as_str();
            if !row.due(now) || taken.get(stream_id).copied().unwrap_or(0) >= room.of(stream_id) {
                continue;
            }
            if let Some((stream, receiver)) = self.pushable(row)
                && let StreamDelivery::Push {
                    endpoint_url,
                    authorization_header,
                } = &stream.delivery
            {
                let target = (receiver.aud.clone(), endpoint_url.clone());
                picked.push((id.clone(), target, authorization_header.clone()));
                *taken.entry(stream_id).or_default() += 1;
            }
        }
        let mut claims = Vec::with_capacity(picked.len());
        for (id, (aud, endpoint_url), authorization_header) in picked {
            if let Some(row) = self.sets.get_mut(&id) {
                row.settle(SetState::InFlight, Some(until), millis(now));
                row.lease = Some(lease_id.clone());
                claims.push(ClaimedSet {
                    row: row.row.clone(),
                    lease: lease_id.clone(),
                    aud,
                    endpoint_url,
                    authorization_header,
                });
            }
        }
        claims
    }

    /// Records one push result if its lease is current.
    pub(super) fn record(&mut self, result: &SetResult) -> bool {
        let Some(row) = self.sets.get_mut(&result.id) else {
            return false;
        };
        if row.row.state != SetState::InFlight || row.lease.as_ref() != Some(&result.lease) {
            return false;
        }
        let at = millis(result.at);
        match &result.decision {
            Decision::Delivered => {
                row.settle(SetState::Delivered, None, at);
                row.row.delivered_at = Some(at);
            }
            Decision::RetryAt(next) => row.settle(SetState::Pending, Some(millis(*next)), at),
            Decision::GiveUp(_) => row.settle(SetState::Failed, None, at),
        }
        row.row.attempts = row.row.attempts.saturating_add(1);
        row.row.last_status = result.status;
        row.row.last_error = result.error.clone();
        true
    }

    /// Gives claimed rows back, due at `now`; returns how many were still held.
    pub(super) fn release(&mut self, leases: &[(String, LeaseId)], now: DateTime<Utc>) -> u64 {
        let mut released = 0;
        for (id, lease) in leases {
            if let Some(row) = self.sets.get_mut(id)
                && row.row.state == SetState::InFlight
                && row.lease.as_ref() == Some(lease)
            {
                row.settle(SetState::Pending, Some(now), now);
                released += 1;
            }
        }
        released
    }

    /// Rows matching `filter` after `from`, in id order.
    pub(super) fn list(
        &self,
        filter: &SetFilter,
        from: Option<&str>,
        take: usize,
    ) -> Page<StoredSet> {
        let start = from.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
        let items: Vec<StoredSet> = self
            .sets
            .range((start, Bound::Unbounded))
            .map(|(_, r)| &r.row)
            .filter(|r| of(r, &filter.stream_id, &filter.receiver_id, filter.kind))
            .filter(|r| filter.state.is_none_or(|s| s == r.state))
            .take(take.saturating_add(1))
            .cloned()
            .collect();
        Page::from_overfetch(items, take, |r: &StoredSet| r.set.id.clone())
    }

    /// One row.
    pub(super) fn get(&self, id: &str) -> Option<StoredSet> {
        self.sets.get(id).map(|r| r.row.clone())
    }

    /// Puts a failed row back in the queue with a fresh budget, its `jti` kept.
    pub(super) fn redrive(&mut self, id: &str, now: DateTime<Utc>) -> SetRedrive {
        let Some(row) = self.sets.get_mut(id) else {
            return SetRedrive::NotFound;
        };
        if row.row.state != SetState::Failed {
            return SetRedrive::NotFailed(row.row.state);
        }
        row.settle(SetState::Pending, Some(now), now);
        row.row.attempts = 0;
        row.row.budget_started_at = now;
        SetRedrive::Requeued
    }

    /// The ids of up to `limit` failed rows matching `filter` after `after`, in id order.
    pub(super) fn failed_sets(
        &self,
        filter: &FailedSetFilter,
        after: &str,
        limit: usize,
    ) -> Vec<String> {
        let since = filter.failed_since.map(millis);
        let before = filter.failed_before.map(millis);
        self.sets
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, r)| &r.row)
            .filter(|r| r.state == SetState::Failed)
            .filter(|r| of(r, &filter.stream_id, &filter.receiver_id, filter.kind))
            .filter(|r| since.is_none_or(|at| r.updated_at >= at))
            .filter(|r| before.is_none_or(|at| r.updated_at < at))
            .take(limit)
            .map(|r| r.set.id.clone())
            .collect()
    }

    /// Counts of waiting and dead-letter rows, and the oldest due row, as of `now`.
    pub(super) fn stats(&self, now: DateTime<Utc>) -> OutboxStats {
        let mut stats = OutboxStats::default();
        for row in self.sets.values() {
            match row.row.state {
                SetState::Pending => stats.pending += 1,
                SetState::InFlight => stats.in_flight += 1,
                SetState::Failed => stats.failed += 1,
                SetState::Delivered | SetState::Cancelled => continue,
            }
            if let Some(due) = row
                .row
                .next_attempt_at
                .filter(|at| row.live() && *at <= now)
            {
                stats.oldest_due_at = Some(stats.oldest_due_at.map_or(due, |old| old.min(due)));
            }
        }
        stats
    }

    /// Deletes up to `limit` finished rows last changed before `before`.
    pub(super) fn prune(&mut self, before: DateTime<Utc>, limit: usize) -> u64 {
        let old: Vec<String> = self
            .sets
            .iter()
            .filter(|(_, r)| !r.live() && r.row.updated_at < before)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        for id in &old {
            self.sets.remove(id);
        }
        old.len() as u64
    }
}

/// Whether `row` is of the stream, receiver and kind given (each absent one matches all).
fn of(
    row: &StoredSet,
    stream_id: &Option<String>,
    receiver_id: &Option<String>,
    kind: Option<SetKind>,
) -> bool {
    stream_id.as_ref().is_none_or(|s| *s == row.set.stream_id)
        && receiver_id
            .as_ref()
            .is_none_or(|r| *r == row.set.receiver_id)
        && kind.is_none_or(|k| k == row.set.kind)
}
