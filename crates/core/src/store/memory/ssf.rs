//! The SSF transmitter over the in-memory state: receivers and streams, and the store's
//! SSF seam over them and the SET outbox ([`super::sets`]).

use super::MemoryStore;
use super::sets::SetRow;
use crate::ids::LeaseId;
use crate::outbox::OutboxStats;
use crate::ssf::{
    ClaimedSet, FanoutStream, NewSet, PollBatch, PollRequest, PushRoom, SetFilter, SetRedrive,
    SetResult, SsfReceiver, SsfStream, StoredSet, StreamStatus, VerifyOutcome,
};
use crate::store::{Page, SsfStore, StoreError, millis, wake};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::ops::Bound;

/// The transmitter's part of the state.
#[derive(Default)]
pub(super) struct SsfState {
    pub(super) receivers: BTreeMap<String, SsfReceiver>,
    pub(super) streams: BTreeMap<String, SsfStream>,
    pub(super) sets: BTreeMap<String, SetRow>,
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

    /// Deletes the stream and cancels its rows; whether it existed.
    fn delete_stream(&mut self, stream_id: &str, now: DateTime<Utc>) -> bool {
        let existed = self.streams.remove(stream_id).is_some();
        if existed {
            self.cancel_stream_rows(stream_id, None, now);
        }
        existed
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
        room: &PushRoom,
    ) -> Result<Vec<ClaimedSet>, StoreError> {
        Ok(self.lock().await.ssf.claim_push(now, lease, limit, room))
    }

    async fn record_set(&self, result: &SetResult) -> Result<bool, StoreError> {
        Ok(self.lock().await.ssf.record(result))
    }

    async fn release_sets(
        &self,
        leases: &[(String, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let released = self.lock().await.ssf.release(leases, millis(now));
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
        Ok(self.lock().await.ssf.list(filter, from, take))
    }

    async fn get_set(&self, id: &str) -> Result<Option<StoredSet>, StoreError> {
        Ok(self.lock().await.ssf.get(id))
    }

    async fn redrive_set(&self, id: &str, now: DateTime<Utc>) -> Result<SetRedrive, StoreError> {
        let outcome = self.lock().await.ssf.redrive(id, millis(now));
        if outcome == SetRedrive::Requeued {
            self.wake_set_workers();
        }
        Ok(outcome)
    }

    async fn set_stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
        Ok(self.lock().await.ssf.stats(now))
    }

    async fn prune_sets(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        Ok(self.lock().await.ssf.prune(millis(before), limit))
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
