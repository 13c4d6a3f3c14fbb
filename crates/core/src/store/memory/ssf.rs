//! The SSF transmitter over the in-memory state: receivers, streams and the SET outbox.

use super::MemoryStore;
use crate::ids::LeaseId;
use crate::retry::Decision;
use crate::ssf::{
    ClaimedSet, FanoutStream, NewSet, PollBatch, PollRequest, SetFilter, SetKind, SetRedrive,
    SetResult, SetState, SsfReceiver, SsfStream, StoredSet, StreamDelivery, StreamStatus,
    VerifyOutcome,
};
use crate::store::{Page, SsfStore, StoreError, millis, wake};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::ops::Bound;

/// The transmitter's part of the state.
#[derive(Default)]
pub(super) struct SsfState {
    receivers: BTreeMap<String, SsfReceiver>,
    streams: BTreeMap<String, SsfStream>,
    sets: BTreeMap<String, SetRow>,
}

/// One SET row with its lease.
struct SetRow {
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

fn stored_receiver(receiver: &SsfReceiver) -> SsfReceiver {
    SsfReceiver {
        created_at: millis(receiver.created_at),
        updated_at: millis(receiver.updated_at),
        ..receiver.clone()
    }
}

fn stored_stream(stream: &SsfStream) -> SsfStream {
    SsfStream {
        last_verification_at: stream.last_verification_at.map(millis),
        created_at: millis(stream.created_at),
        updated_at: millis(stream.updated_at),
        ..stream.clone()
    }
}

impl SsfState {
    /// The enabled and paused streams with their receivers' settings (the fan-out's read).
    pub(super) fn fanout_streams(&self) -> Vec<FanoutStream> {
        self.streams
            .values()
            .filter(|s| s.status != StreamStatus::Disabled)
            .filter_map(|s| {
                let receiver = self.receivers.get(&s.receiver_id)?;
                Some(FanoutStream {
                    stream_id: s.stream_id.clone(),
                    receiver_id: s.receiver_id.clone(),
                    scope: receiver.scope,
                    client_id: receiver.client_id.clone(),
                    include_session_metadata: receiver.include_session_metadata,
                    wants_session_revoked: s
                        .events_delivered()
                        .contains(&crate::ssf::SESSION_REVOKED),
                    excluded_subjects: s.excluded_subjects.clone(),
                })
            })
            .collect()
    }

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
    fn cancel_stream_rows(&mut self, stream_id: &str, keep: Option<&str>, now: DateTime<Utc>) {
        for (id, row) in &mut self.sets {
            if row.row.set.stream_id == stream_id && row.live() && Some(id.as_str()) != keep {
                row.settle(SetState::Cancelled, None, now);
                row.row.last_error = Some("stream disabled or deleted".to_owned());
            }
        }
    }

    /// Deletes the stream and cancels its rows; whether it existed.
    fn delete_stream(&mut self, stream_id: &str, now: DateTime<Utc>) -> bool {
        let existed = self.streams.remove(stream_id).is_some();
        if existed {
            self.cancel_stream_rows(stream_id, None, now);
        }
        existed
    }

    /// Makes the stream's held (pending) rows due at `now` with a fresh budget.
    fn release_stream_rows(&mut self, stream_id: &str, now: DateTime<Utc>) {
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

    fn poll(&mut self, request: &PollRequest) -> PollBatch {
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
}

impl MemoryStore {
    /// Wakes this process's SET workers and long polls.
    pub(super) fn wake_set_workers(&self) {
        wake(&self.sets_wakeup);
    }
}

#[async_trait]
impl SsfStore for MemoryStore {
    async fn insert_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError> {
        let ssf = &mut self.lock().await.ssf;
        let taken = ssf.receivers.contains_key(&receiver.id)
            || ssf
                .receivers
                .values()
                .any(|r| r.aud == receiver.aud || r.token_hash == receiver.token_hash);
        if taken {
            return Ok(false);
        }
        ssf.receivers
            .insert(receiver.id.clone(), stored_receiver(receiver));
        Ok(true)
    }

    async fn get_receiver(&self, id: &str) -> Result<Option<SsfReceiver>, StoreError> {
        Ok(self.lock().await.ssf.receivers.get(id).cloned())
    }

    async fn receiver_by_token(&self, token_hash: &str) -> Result<Option<SsfReceiver>, StoreError> {
        let state = self.lock().await;
        let found = state
            .ssf
            .receivers
            .values()
            .find(|r| r.token_hash == token_hash);
        Ok(found.cloned())
    }

    async fn receivers(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfReceiver>, StoreError> {
        let state = self.lock().await;
        Ok(after(&state.ssf.receivers, from, take))
    }

    async fn update_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError> {
        let ssf = &mut self.lock().await.ssf;
        let Some(stored) = ssf.receivers.get_mut(&receiver.id) else {
            return Ok(false);
        };
        *stored = SsfReceiver {
            id: stored.id.clone(),
            aud: stored.aud.clone(),
            created_at: stored.created_at,
            updated_at: millis(receiver.updated_at),
            ..receiver.clone()
        };
        Ok(true)
    }

    async fn delete_receiver(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let ssf = &mut self.lock().await.ssf;
        if ssf.receivers.remove(id).is_none() {
            return Ok(false);
        }
        let streams: Vec<String> = ssf
            .streams
            .values()
            .filter(|s| s.receiver_id == id)
            .map(|s| s.stream_id.clone())
            .collect();
        for stream_id in &streams {
            ssf.delete_stream(stream_id, millis(now));
        }
        Ok(true)
    }

    async fn insert_stream(&self, stream: &SsfStream) -> Result<bool, StoreError> {
        let ssf = &mut self.lock().await.ssf;
        if !ssf.receivers.contains_key(&stream.receiver_id) {
            return Err(StoreError::NotFound);
        }
        let taken = ssf.streams.contains_key(&stream.stream_id)
            || ssf
                .streams
                .values()
                .any(|s| s.receiver_id == stream.receiver_id);
        if taken {
            return Ok(false);
        }
        ssf.streams
            .insert(stream.stream_id.clone(), stored_stream(stream));
        Ok(true)
    }

    async fn get_stream(&self, stream_id: &str) -> Result<Option<SsfStream>, StoreError> {
        Ok(self.lock().await.ssf.streams.get(stream_id).cloned())
    }

    async fn receiver_streams(&self, receiver_id: &str) -> Result<Vec<SsfStream>, StoreError> {
        let state = self.lock().await;
        let mut streams: Vec<SsfStream> = state
            .ssf
            .streams
            .values()
            .filter(|s| s.receiver_id == receiver_id)
            .cloned()
            .collect();
        streams.sort_by(|a, b| (a.created_at, &a.stream_id).cmp(&(b.created_at, &b.stream_id)));
        Ok(streams)
    }

    async fn streams(&self, from: Option<&str>, take: usize) -> Result<Vec<SsfStream>, StoreError> {
        let state = self.lock().await;
        Ok(after(&state.ssf.streams, from, take))
    }

    async fn update_stream(&self, stream: &SsfStream) -> Result<bool, StoreError> {
        let ssf = &mut self.lock().await.ssf;
        let Some(stored) = ssf.streams.get_mut(&stream.stream_id) else {
            return Ok(false);
        };
        stored.events_requested = stream.events_requested.clone();
        stored.delivery = stream.delivery.clone();
        stored.description = stream.description.clone();
        stored.excluded_subjects = stream.excluded_subjects.clone();
        stored.updated_at = millis(stream.updated_at);
        Ok(true)
    }

    async fn delete_stream(&self, stream_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.lock().await.ssf.delete_stream(stream_id, millis(now)))
    }

    async fn set_stream_status(
        &self,
        stream_id: &str,
        status: StreamStatus,
        reason: Option<&str>,
        event: Option<&NewSet>,
        now: DateTime<Utc>,
    ) -> Result<Option<SsfStream>, StoreError> {
        let now = millis(now);
        let mut state = self.lock().await;
        let ssf = &mut state.ssf;
        let Some(stream) = ssf.streams.get_mut(stream_id) else {
            return Ok(None);
        };
        let before = stream.status;
        stream.status = status;
        stream.status_reason = reason.map(str::to_owned);
        stream.updated_at = now;
        let current = stream.clone();
        if let Some(event) = event {
            ssf.insert_sets(std::slice::from_ref(event));
        }
        match (before, status) {
            (_, StreamStatus::Disabled) => {
                ssf.cancel_stream_rows(stream_id, event.map(|e| e.id.as_str()), now);
            }
            (StreamStatus::Paused, StreamStatus::Enabled) => {
                ssf.release_stream_rows(stream_id, now);
            }
            _ => {}
        }
        drop(state);
        self.wake_set_workers();
        Ok(Some(current))
    }

    async fn request_verification(
        &self,
        receiver_id: &str,
        stream_id: &str,
        event: &NewSet,
        min_interval: Duration,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        let now = millis(now);
        let mut state = self.lock().await;
        let ssf = &mut state.ssf;
        let Some(stream) = ssf
            .streams
            .get_mut(stream_id)
            .filter(|s| s.receiver_id == receiver_id)
        else {
            return Ok(VerifyOutcome::NotFound);
        };
        let outcome = crate::store::ssf::verification(stream, min_interval, now);
        if outcome == VerifyOutcome::Accepted {
            stream.last_verification_at = Some(now);
            ssf.insert_sets(std::slice::from_ref(event));
            drop(state);
            self.wake_set_workers();
        }
        Ok(outcome)
    }

    async fn claim_push(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedSet>, StoreError> {
        let mut state = self.lock().await;
        let ssf = &mut state.ssf;
        let lease_id = LeaseId::generate();
        let until = millis(now + lease);
        let mut picked = Vec::new();
        for (id, row) in &ssf.sets {
            if picked.len() >= limit {
                break;
            }
            if !row.due(now) {
                continue;
            }
            if let Some((stream, receiver)) = ssf.pushable(row)
                && let StreamDelivery::Push {
                    endpoint_url,
                    authorization_header,
                } = &stream.delivery
            {
                picked.push((
                    id.clone(),
                    receiver.aud.clone(),
                    endpoint_url.clone(),
                    authorization_header.clone(),
                ));
            }
        }
        let mut claims = Vec::with_capacity(picked.len());
        for (id, aud, endpoint_url, authorization_header) in picked {
            if let Some(row) = ssf.sets.get_mut(&id) {
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
        Ok(claims)
    }

    async fn record_set(&self, result: &SetResult) -> Result<bool, StoreError> {
        let mut state = self.lock().await;
        let Some(row) = state.ssf.sets.get_mut(&result.id) else {
            return Ok(false);
        };
        if row.row.state != SetState::InFlight || row.lease.as_ref() != Some(&result.lease) {
            return Ok(false);
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
        Ok(true)
    }

    async fn release_sets(
        &self,
        leases: &[(String, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = millis(now);
        let mut state = self.lock().await;
        let mut released = 0;
        for (id, lease) in leases {
            if let Some(row) = state.ssf.sets.get_mut(id)
                && row.row.state == SetState::InFlight
                && row.lease.as_ref() == Some(lease)
            {
                row.settle(SetState::Pending, Some(now), now);
                released += 1;
            }
        }
        drop(state);
        if released > 0 {
            self.wake_set_workers();
        }
        Ok(released)
    }

    async fn poll(&self, request: &PollRequest) -> Result<PollBatch, StoreError> {
        Ok(self.lock().await.ssf.poll(request))
    }

    async fn list_sets(
        &self,
        filter: &SetFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<StoredSet>, StoreError> {
        let state = self.lock().await;
        let start = from.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
        let items: Vec<StoredSet> = state
            .ssf
            .sets
            .range((start, Bound::Unbounded))
            .map(|(_, r)| &r.row)
            .filter(|r| {
                filter
                    .stream_id
                    .as_ref()
                    .is_none_or(|s| *s == r.set.stream_id)
            })
            .filter(|r| filter.state.is_none_or(|s| s == r.state))
            .filter(|r| filter.kind.is_none_or(|k| k == r.set.kind))
            .take(take.saturating_add(1))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, take, |r: &StoredSet| {
            r.set.id.clone()
        }))
    }

    async fn get_set(&self, id: &str) -> Result<Option<StoredSet>, StoreError> {
        Ok(self.lock().await.ssf.sets.get(id).map(|r| r.row.clone()))
    }

    async fn redrive_set(&self, id: &str, now: DateTime<Utc>) -> Result<SetRedrive, StoreError> {
        let now = millis(now);
        let mut state = self.lock().await;
        let Some(row) = state.ssf.sets.get_mut(id) else {
            return Ok(SetRedrive::NotFound);
        };
        if row.row.state != SetState::Failed {
            return Ok(SetRedrive::NotFailed(row.row.state));
        }
        row.settle(SetState::Pending, Some(now), now);
        row.row.attempts = 0;
        row.row.budget_started_at = now;
        drop(state);
        self.wake_set_workers();
        Ok(SetRedrive::Requeued)
    }

    async fn pending_sets(&self) -> Result<u64, StoreError> {
        let state = self.lock().await;
        Ok(state.ssf.sets.values().filter(|r| r.live()).count() as u64)
    }

    async fn prune_sets(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let before = millis(before);
        let mut state = self.lock().await;
        let old: Vec<String> = state
            .ssf
            .sets
            .iter()
            .filter(|(_, r)| !r.live() && r.row.updated_at < before)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        for id in &old {
            state.ssf.sets.remove(id);
        }
        Ok(old.len() as u64)
    }
}

/// The values after key `from`, one more than `take` at most.
fn after<T: Clone>(map: &BTreeMap<String, T>, from: Option<&str>, take: usize) -> Vec<T> {
    let start = from.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
    map.range((start, Bound::Unbounded))
        .map(|(_, v)| v.clone())
        .take(take.saturating_add(1))
        .collect()
}
