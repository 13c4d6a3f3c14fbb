//! Sessions over the in-memory state: the user listing, and the termination step's reads and
//! writes.

use super::{Row, State, expiry};
use crate::ids::{SessionId, UserId};
use crate::initiator::Initiator;
use crate::outbox::{Delivery, DeliveryState, NewDelivery};
use crate::session::Session;
use crate::store::backend::{Ending, EndingSet};
use chrono::{DateTime, Utc};

/// The user's active sessions after cursor `from`, one more than `take` at most.
pub(super) fn of_user(
    state: &State,
    user: &UserId,
    from: Option<&str>,
    take: usize,
) -> Vec<Session> {
    state
        .by_user
        .get(user)
        .into_iter()
        .flatten()
        .filter(|id| from.is_none_or(|cursor| id.as_str() > cursor))
        .filter_map(|id| state.sessions.get(id))
        .filter(|s| !s.is_ended())
        .take(take.saturating_add(1))
        .cloned()
        .collect()
}

/// The sessions of one termination step with their clients' registrations. A user-wide end
/// is one step: the mutex is held for the whole transaction anyway.
pub(super) fn ending(state: &State, which: Ending<'_>) -> EndingSet {
    let active = |id: &SessionId| state.sessions.get(id).filter(|s| !s.is_ended()).cloned();
    let (sessions, found): (Vec<Session>, bool) = match which {
        Ending::Session(id) => (
            active(id).into_iter().collect(),
            state.sessions.contains_key(id),
        ),
        Ending::User { user, after } => (
            state
                .by_user
                .get(user)
                .into_iter()
                .flatten()
                .filter(|id| id.as_str() > after)
                .filter_map(active)
                .collect(),
            true,
        ),
        Ending::Expired { now, limit } => (
            state
                .sessions
                .values()
                .filter(|s| !s.is_ended() && expiry(s).is_some_and(|at| at <= now))
                .take(limit)
                .cloned()
                .collect(),
            true,
        ),
    };
    let mut clients: Vec<_> = sessions
        .iter()
        .flat_map(|s| &s.clients)
        .filter_map(|c| state.clients.get(&c.client_id).cloned())
        .collect();
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    clients.dedup_by(|a, b| a.client_id == b.client_id);
    EndingSet {
        sessions,
        clients,
        found,
        next: None,
    }
}

/// Marks `sessions` ended and stores `rows` pending, due at their creation time; a row whose
/// id is stored only adds its sessions to the stored row's count.
pub(super) fn end(
    state: &mut State,
    sessions: &[Session],
    rows: &[NewDelivery],
    initiator: Initiator,
    now: DateTime<Utc>,
) {
    for ended in sessions {
        if let Some(session) = state.sessions.get_mut(&ended.id) {
            session.ended_at = Some(now);
            session.end_initiator = Some(initiator);
            session.updated_at = now;
        }
    }
    for row in rows {
        match state.rows.get_mut(&row.id) {
            // A `user` row an earlier step of the same user-wide end wrote.
            Some(written) => {
                written.delivery.sessions = written.delivery.sessions.saturating_add(row.sessions);
            }
            None => insert_row(state, row.clone()),
        }
    }
}

/// Stores a planned row as pending, due at its creation time.
fn insert_row(state: &mut State, new: NewDelivery) {
    let delivery = Delivery {
        id: new.id.clone(),
        event_id: new.event_id,
        session_id: new.session_id,
        sid: new.sid,
        scope: new.scope,
        sessions: new.sessions,
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
