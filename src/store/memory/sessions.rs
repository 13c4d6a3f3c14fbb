//! The session store over the in-memory state, including termination.

use super::{MemoryStore, Row, State};
use crate::ids::{EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::MetadataOp;
use crate::outbox::{Delivery, DeliveryState, NewDelivery};
use crate::session::{EndReport, EndTarget, Session, SessionClient, SessionStore, joined_once};
use crate::store::{Page, StoreError};
use crate::terminate::{self, ClientNotes};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.sessions.contains_key(&session.id) {
            return Err(StoreError::Conflict(format!("session {}", session.id)));
        }
        if let Some(unknown) = session
            .clients
            .iter()
            .find(|c| !state.clients.contains_key(&c.client_id))
        {
            return Err(StoreError::UnknownClient(unknown.client_id.to_string()));
        }
        let mut stored = session.clone();
        stored.clients = joined_once(&session.clients);
        state
            .by_user
            .entry(session.user_id.clone())
            .or_default()
            .insert(session.id.clone());
        state.sessions.insert(session.id.clone(), stored);
        drop(state);
        if session.expires_at.is_some() || session.idle_expires_at.is_some() {
            super::wake(&self.expiry);
        }
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.lock().sessions.get(id).cloned())
    }

    async fn list_user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Session>, StoreError> {
        let state = self.lock();
        let items = state
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter(|id| from.is_none_or(|cursor| id.as_str() > cursor))
            .filter_map(|id| state.sessions.get(id))
            .filter(|s| !s.is_ended())
            .take(take.saturating_add(1))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, take, |s: &Session| {
            s.id.to_string()
        }))
    }

    async fn add_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError> {
        let mut state = self.lock();
        let known = state.clients.contains_key(&client.client_id);
        let session = active_session(&mut state, id)?;
        if !known {
            return Err(StoreError::UnknownClient(client.client_id.to_string()));
        }
        session.join(client.clone());
        session.updated_at = now;
        Ok(session.clone())
    }

    async fn update_metadata(
        &self,
        id: &SessionId,
        op: &MetadataOp,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError> {
        let mut state = self.lock();
        let session = active_session(&mut state, id)?;
        session.session_metadata = session.session_metadata.apply(op)?;
        session.updated_at = now;
        Ok(session.clone())
    }

    async fn end_sessions(
        &self,
        target: &EndTarget,
        initiator: Initiator,
        event_id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<EndReport, StoreError> {
        let report = {
            let mut state = self.lock();
            let ids = target_sessions(&state, target)?;
            let mut report = EndReport::nothing(event_id);
            for id in ids {
                report.deliveries +=
                    end_one(&mut state, &id, initiator, event_id, now, &mut report.notes);
                report.sessions_ended += 1;
            }
            report
        };
        if report.deliveries > 0 {
            self.notify();
        }
        Ok(report)
    }

    async fn end_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        event_id: &EventId,
    ) -> Result<EndReport, StoreError> {
        let report = {
            let mut state = self.lock();
            let ids: Vec<SessionId> = state
                .sessions
                .values()
                .filter(|s| !s.is_ended() && expiry(s).is_some_and(|at| at <= now))
                .take(limit)
                .map(|s| s.id.clone())
                .collect();
            let mut report = EndReport::nothing(event_id);
            report.sessions_ended = ids.len();
            for id in ids {
                let (expired, notes) = (Initiator::SessionExpired, &mut report.notes);
                report.deliveries += end_one(&mut state, &id, expired, event_id, now, notes);
            }
            report
        };
        if report.deliveries > 0 {
            self.notify();
        }
        Ok(report)
    }

    async fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.lock();
        Ok(state
            .sessions
            .values()
            .filter(|s| !s.is_ended())
            .filter_map(expiry)
            .min())
    }

    async fn prune_sessions(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        Ok(self.lock().prune_sessions(before, limit))
    }

    fn expiry_wakeup(&self) -> Arc<Notify> {
        self.expiry.clone()
    }
}

/// When a session expires: the earlier of its absolute and idle expiry.
fn expiry(session: &Session) -> Option<DateTime<Utc>> {
    match (session.expires_at, session.idle_expires_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The session `id`, refusing unknown and ended ones.
fn active_session<'a>(state: &'a mut State, id: &SessionId) -> Result<&'a mut Session, StoreError> {
    let session = state.sessions.get_mut(id).ok_or(StoreError::NotFound)?;
    if session.is_ended() {
        return Err(StoreError::Ended);
    }
    Ok(session)
}

/// The active sessions a termination covers; `NotFound` for an unknown single session.
fn target_sessions(state: &State, target: &EndTarget) -> Result<Vec<SessionId>, StoreError> {
    let active = |id: &SessionId| state.sessions.get(id).is_some_and(|s| !s.is_ended());
    match target {
        EndTarget::Session(id) if !state.sessions.contains_key(id) => Err(StoreError::NotFound),
        EndTarget::Session(id) => Ok(active(id).then(|| id.clone()).into_iter().collect()),
        EndTarget::User(user) => Ok(state
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter(|id| active(id))
            .cloned()
            .collect()),
    }
}

/// Ends one active session and writes its rows, noting the clients it skips or holds;
/// returns how many rows.
fn end_one(
    state: &mut State,
    id: &SessionId,
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
    notes: &mut ClientNotes,
) -> usize {
    let Some(session) = state.sessions.get_mut(id) else {
        return 0;
    };
    session.ended_at = Some(now);
    session.end_initiator = Some(initiator);
    session.updated_at = now;
    let session = session.clone();
    let clients: Vec<_> = session
        .clients
        .iter()
        .filter_map(|c| state.clients.get(&c.client_id).cloned())
        .collect();
    let rows = terminate::plan(&session, &clients, initiator, event_id, now, notes);
    let count = rows.len();
    for row in rows {
        insert_row(state, row);
    }
    count
}

/// Stores a planned row as pending, due at its creation time.
fn insert_row(state: &mut State, new: NewDelivery) {
    let delivery = Delivery {
        id: new.id.clone(),
        event_id: new.event_id,
        session_id: new.session_id,
        sid: new.sid,
        user_id: new.user_id,
        client_id: new.client_id,
        initiator: new.initiator,
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: Some(new.created_at),
        last_status: None,
        last_error: None,
        created_at: new.created_at,
        delivered_at: None,
    };
    state.due.insert((new.created_at, new.id.clone()));
    let row = Row {
        delivery,
        metadata: new.session_metadata,
        lease: None,
        budget_started_at: new.created_at,
        history: Vec::new(),
        updated_at: new.created_at,
    };
    state.rows.insert(new.id, row);
}
