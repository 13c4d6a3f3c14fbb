//! Fan-out of a session end into outbox rows: which clients are told, as a pure function.
//!
//! Backends call [`plan`] inside the transaction that marks the session ended, so the end and
//! its rows commit together or not at all.

use crate::clients::RelyingParty;
use crate::ids::{DeliveryId, EventId};
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::Session;
use chrono::{DateTime, Utc};

/// The outbox rows for ending `session` with `initiator`: one per participating client that
/// is still registered, has a back-channel URL and subscribes to the initiator. `clients` are
/// the registrations of the session's clients that exist (unknown ones are simply absent).
pub fn plan(
    session: &Session,
    clients: &[RelyingParty],
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Vec<NewDelivery> {
    session
        .clients
        .iter()
        .filter_map(|joined| clients.iter().find(|c| c.client_id == joined.client_id))
        .filter(|client| client.wants(initiator))
        .map(|client| NewDelivery {
            id: DeliveryId::generate_at(now),
            event_id: event_id.clone(),
            session_id: session.id.clone(),
            user_id: session.user_id.clone(),
            client_id: client.client_id.clone(),
            initiator,
            session_metadata: session.session_metadata.clone(),
            created_at: now,
        })
        .collect()
}
