//! The write transaction over the in-memory state: the mutex, held until commit.

use super::{State, sessions};
use crate::clients::RelyingParty;
use crate::health::PauseState;
use crate::ids::{ClientId, DeliveryId, SessionId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::operator_events::NewOperatorEvent;
use crate::outbox::{DeliveryState, FailedFilter, IdempotentRequest, NewDelivery, StoredKey};
use crate::session::{Session, SessionClient, joined_once};
use crate::ssf::{FailedSetFilter, FanoutStream, NewSet};
use crate::store::backend::{Ending, EndingSet, Tx};
use crate::store::{StoreError, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::OwnedMutexGuard;

/// The state, locked for one transaction.
pub(super) struct MemoryTx {
    pub(super) state: OwnedMutexGuard<State>,
}

#[async_trait]
impl Tx for MemoryTx {
    async fn session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.state.sessions.get(id).cloned())
    }

    async fn lock_session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.state.sessions.get(id).cloned())
    }

    async fn first_unknown_client<'a>(
        &mut self,
        wanted: &[&'a ClientId],
    ) -> Result<Option<&'a ClientId>, StoreError> {
        Ok(wanted
            .iter()
            .find(|c| !self.state.clients.contains_key(c))
            .copied())
    }

    async fn insert_session(&mut self, session: &Session) -> Result<bool, StoreError> {
        let state = &mut *self.state;
        if state.sessions.contains_key(&session.id) {
            return Ok(false);
        }
        let mut stored = session.clone();
        stored.clients = joined_once(&session.clients);
        for at in [&mut stored.created_at, &mut stored.updated_at] {
            *at = millis(*at);
        }
        for at in [
            &mut stored.authenticated_at,
            &mut stored.idle_expires_at,
            &mut stored.expires_at,
            &mut stored.last_interacted_at,
            &mut stored.ended_at,
        ] {
            *at = at.map(millis);
        }
        state
            .by_user
            .entry(session.user_id.clone())
            .or_default()
            .insert(session.id.clone());
        state.sessions.insert(session.id.clone(), stored);
        Ok(true)
    }

    async fn join(
        &mut self,
        id: &SessionId,
        clients: &[SessionClient],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(session) = self.state.sessions.get_mut(id) {
            for client in clients {
                session.join(client.clone());
            }
            session.updated_at = now;
        }
        Ok(())
    }

    async fn set_metadata(
        &mut self,
        id: &SessionId,
        metadata: &SessionMetadata,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(session) = self.state.sessions.get_mut(id) {
            session.session_metadata = metadata.clone();
            session.updated_at = now;
        }
        Ok(())
    }

    async fn ending(&mut self, which: Ending<'_>) -> Result<EndingSet, StoreError> {
        Ok(sessions::ending(&self.state, which))
    }

    async fn end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sessions::end(&mut self.state, sessions, rows, initiator, now);
        Ok(())
    }

    async fn insert_client(&mut self, client: &RelyingParty) -> Result<bool, StoreError> {
        if self.state.clients.contains_key(&client.client_id) {
            return Ok(false);
        }
        let stored = RelyingParty {
            created_at: millis(client.created_at),
            updated_at: millis(client.updated_at),
            ..client.clone()
        };
        self.state.clients.insert(client.client_id.clone(), stored);
        Ok(true)
    }

    async fn update_client(
        &mut self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(stored) = self.state.clients.get_mut(&client.client_id) else {
            return Ok(false);
        };
        *stored = RelyingParty {
            created_at: stored.created_at,
            updated_at: now,
            ..client.clone()
        };
        Ok(true)
    }

    async fn client_pause(&mut self, id: &ClientId) -> Result<Option<PauseState>, StoreError> {
        Ok(self.state.clients.get(id).map(PauseState::of))
    }

    async fn insert_operator_events(
        &mut self,
        events: &[NewOperatorEvent],
    ) -> Result<(), StoreError> {
        self.state.insert_events(events);
        Ok(())
    }

    async fn delete_client(&mut self, id: &ClientId) -> Result<bool, StoreError> {
        self.state.pacing.remove(id);
        self.state.health.remove(id);
        Ok(self.state.clients.remove(id).is_some())
    }

    async fn release_held(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self.state.release_held(id, now))
    }

    async fn cancel_rows(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self.state.cancel_client_rows(id, now))
    }

    async fn delivery_state(
        &mut self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryState>, StoreError> {
        Ok(self.state.rows.get(id).map(|row| row.delivery.state))
    }

    async fn requeue(&mut self, id: &DeliveryId, now: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(row) = self.state.rows.get_mut(id) {
            row.delivery.attempts = 0;
            row.budget_started_at = now;
        }
        self.state
            .schedule(id, DeliveryState::Pending, Some(now), now);
        Ok(())
    }

    async fn failed_rows(
        &mut self,
        filter: &FailedFilter,
        after: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        Ok(self.state.failed_rows(filter, after, limit))
    }

    async fn insert_key(
        &mut self,
        key: &IdempotentRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let keys = &mut self.state.keys;
        if keys.get(&key.key).is_some_and(|(_, exp)| *exp > now) {
            return Ok(false);
        }
        let stored = StoredKey {
            request_hash: key.request_hash.clone(),
            redriven: 0,
            done: false,
            updated_at: millis(now),
        };
        keys.insert(key.key.clone(), (stored, millis(key.expires_at)));
        Ok(true)
    }

    async fn lock_key(&mut self, key: &str) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.state.keys.get(key).map(|(stored, _)| stored.clone()))
    }

    async fn update_key(
        &mut self,
        key: &str,
        redriven: u64,
        done: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some((stored, _)) = self.state.keys.get_mut(key) {
            stored.redriven = redriven;
            stored.done = done;
            stored.updated_at = millis(now);
        }
        Ok(())
    }

    async fn fanout_streams(&mut self) -> Result<Vec<FanoutStream>, StoreError> {
        Ok(self.state.ssf.fanout_streams())
    }

    async fn insert_sets(&mut self, rows: &[NewSet]) -> Result<(), StoreError> {
        self.state.ssf.insert_sets(rows);
        Ok(())
    }

    async fn failed_sets(
        &mut self,
        filter: &FailedSetFilter,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.state.ssf.failed_sets(filter, after, limit))
    }

    async fn requeue_sets(&mut self, ids: &[String], now: DateTime<Utc>) -> Result<(), StoreError> {
        for id in ids {
            self.state.ssf.redrive(id, millis(now));
        }
        Ok(())
    }

    async fn announce(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}
