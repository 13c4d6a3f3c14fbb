//! Fan-out of a session end into outbox rows: which clients are told, as a pure function, and
//! which are not and why; and what a termination reports.
//!
//! The store's termination walk ([`crate::store::Sessions::end_sessions`]) calls [`plan_all`]
//! inside the transaction that marks the sessions ended, so the end and its rows commit
//! together or not at all.

use crate::clients::RelyingParty;
use crate::ids::{ClientId, DeliveryId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::Session;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which sessions a termination covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndTarget {
    /// One session.
    Session(SessionId),
    /// Every active session of a user.
    User(UserId),
}

/// What a termination did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndReport {
    /// The event the outbox rows share.
    pub event_id: EventId,
    /// Sessions that were active and are now ended.
    pub sessions_ended: usize,
    /// Outbox rows written.
    pub deliveries: usize,
    /// The participating clients that got no row, or a row held while they are paused.
    #[serde(flatten)]
    pub notes: ClientNotes,
}

impl EndReport {
    /// A termination under `event_id` that has ended nothing yet.
    pub fn nothing(event_id: &EventId) -> Self {
        Self {
            event_id: event_id.clone(),
            sessions_ended: 0,
            deliveries: 0,
            notes: ClientNotes::default(),
        }
    }

    /// Adds what one part of the same termination (a chunk of sessions) did.
    pub fn absorb(&mut self, part: EndReport) {
        self.sessions_ended += part.sessions_ended;
        self.deliveries += part.deliveries;
        self.notes.absorb(part.notes);
    }
}

/// Why a client that took part in an ending session gets no row, or a row that waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// It does not subscribe to the end's initiator (`custom` mode without it).
    NotSubscribed,
    /// It has no back-channel logout URL.
    NoUrl,
    /// It was deleted after it joined the session.
    UnknownClient,
    /// It is paused: its row was written, and waits until the client is resumed. Reported
    /// among the held clients, never among the skipped ones.
    Paused,
}

/// One client that a termination skipped (or whose rows it holds) for one reason, however
/// many of the ended sessions it took part in: a user-wide end of a thousand sessions reports
/// a deleted client once, not a thousand times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientNote {
    /// The client.
    pub client_id: ClientId,
    /// Why.
    pub reason: SkipReason,
    /// The first ended session it was noted for (sessions end in id order).
    pub session_id: SessionId,
    /// How many of the ended sessions it was noted for.
    pub sessions: usize,
}

/// The clients of a termination that got no row (`skipped`) or a row that waits (`held`),
/// each entry one (client, reason) in the order first met.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientNotes {
    /// Clients told nothing: not subscribed, no URL, or deleted.
    pub skipped: Vec<ClientNote>,
    /// Paused clients whose rows were written and wait for them to be resumed.
    pub held: Vec<ClientNote>,
}

impl ClientNotes {
    /// Notes `client` of `session` for `reason`: a new entry, or one more session on the
    /// entry of the same client and reason.
    pub fn note(&mut self, client: &ClientId, reason: SkipReason, session: &SessionId) {
        match self.entry(client, reason) {
            Some(entry) => entry.sessions += 1,
            None => self.list(reason).push(ClientNote {
                client_id: client.clone(),
                reason,
                session_id: session.clone(),
                sessions: 1,
            }),
        }
    }

    /// Adds the notes of a later part of the same termination (a later chunk of sessions).
    pub fn absorb(&mut self, later: ClientNotes) {
        for note in later.skipped.into_iter().chain(later.held) {
            match self.entry(&note.client_id, note.reason) {
                Some(entry) => entry.sessions += note.sessions,
                None => self.list(note.reason).push(note),
            }
        }
    }

    /// The list a note for `reason` goes in.
    fn list(&mut self, reason: SkipReason) -> &mut Vec<ClientNote> {
        match reason {
            SkipReason::Paused => &mut self.held,
            _ => &mut self.skipped,
        }
    }

    /// The entry of `client` for `reason`, if there is one.
    fn entry(&mut self, client: &ClientId, reason: SkipReason) -> Option<&mut ClientNote> {
        self.list(reason)
            .iter_mut()
            .find(|n| n.reason == reason && &n.client_id == client)
    }
}

/// The outbox rows for ending `session` with `initiator`: one per participating client that
/// is still registered, has a back-channel URL and subscribes to the initiator, carrying the
/// client's own `sid` when it joined with one. Every other participating client is noted in
/// `notes` with the reason, and so is a paused client whose row waits. `clients` are the
/// registrations of the session's clients that exist (deleted ones are simply absent).
pub(crate) fn plan(
    session: &Session,
    clients: &[RelyingParty],
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
    notes: &mut ClientNotes,
) -> Vec<NewDelivery> {
    let mut rows = Vec::with_capacity(session.clients.len());
    for joined in &session.clients {
        let Some(client) = clients.iter().find(|c| c.client_id == joined.client_id) else {
            notes.note(&joined.client_id, SkipReason::UnknownClient, &session.id);
            continue;
        };
        if let Some(reason) = skip_reason(client, initiator) {
            notes.note(&client.client_id, reason, &session.id);
            continue;
        }
        if client.paused {
            notes.note(&client.client_id, SkipReason::Paused, &session.id);
        }
        rows.push(NewDelivery {
            id: DeliveryId::generate_at(now),
            event_id: event_id.clone(),
            session_id: session.id.clone(),
            sid: joined.sid.clone(),
            user_id: session.user_id.clone(),
            client_id: client.client_id.clone(),
            initiator,
            session_metadata: session.session_metadata.clone(),
            created_at: now,
        });
    }
    rows
}

/// [`plan`] for each of `sessions` in order: all their rows, and the notes of all of them.
pub(crate) fn plan_all(
    sessions: &[Session],
    clients: &[RelyingParty],
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> (Vec<NewDelivery>, ClientNotes) {
    let mut notes = ClientNotes::default();
    let rows = sessions
        .iter()
        .flat_map(|s| plan(s, clients, initiator, event_id, now, &mut notes))
        .collect();
    (rows, notes)
}

/// Why a registered client gets no row for `initiator`, if it gets none. A client without a
/// URL is reported as such even when it does not subscribe either: adding a URL is the
/// first thing it needs.
fn skip_reason(client: &RelyingParty, initiator: Initiator) -> Option<SkipReason> {
    if client.logout_url().is_none() {
        Some(SkipReason::NoUrl)
    } else if !client.wants(initiator) {
        Some(SkipReason::NotSubscribed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{InitiatorMode, LogoutInitiators, OidcLogout};
    use crate::ids::UserId;
    use crate::session::{Device, SessionClient};

    fn client(id: &str, mode: InitiatorMode, url: bool, paused: bool) -> RelyingParty {
        let urls = if url {
            vec![url::Url::parse(&format!("https://{id}.example/bcl")).unwrap()]
        } else {
            Vec::new()
        };
        RelyingParty {
            client_id: ClientId::new(id),
            name: id.to_owned(),
            oidc_logout: OidcLogout {
                backchannel_logout_urls: urls,
                backchannel_logout_initiators: LogoutInitiators {
                    mode,
                    selected_initiators: Vec::new(),
                },
                ..OidcLogout::default()
            },
            backchannel_logout_session_required: false,
            logout_token_typ: Default::default(),
            id_token_signed_response_alg: Default::default(),
            paused,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn session(id: &str, clients: &[(&str, Option<&str>)]) -> Session {
        Session {
            id: SessionId::new(id),
            user_id: UserId::new("u1"),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            authenticated_at: None,
            idle_expires_at: None,
            expires_at: None,
            last_interacted_at: None,
            device: Device::default(),
            clients: clients
                .iter()
                .map(|(c, sid)| SessionClient::with_sid(ClientId::new(*c), sid.map(SessionId::new)))
                .collect(),
            session_metadata: Default::default(),
            ended_at: None,
            end_initiator: None,
        }
    }

    fn registrations() -> Vec<RelyingParty> {
        vec![
            client("all", InitiatorMode::All, true, false),
            client("custom", InitiatorMode::Custom, true, false),
            client("nourl", InitiatorMode::Custom, false, false),
            client("paused", InitiatorMode::All, true, true),
        ]
    }

    #[test]
    fn rows_carry_the_client_s_own_sid_and_others_are_noted_with_their_reason() {
        let s = session(
            "s1",
            &[
                ("all", Some("per-rp")),
                ("custom", None),
                ("nourl", None),
                ("gone", None),
                ("paused", None),
            ],
        );
        let mut notes = ClientNotes::default();
        let rows = plan(
            &s,
            &registrations(),
            Initiator::SessionRevoked,
            &EventId::generate(),
            Utc::now(),
            &mut notes,
        );
        let sent: Vec<(&str, Option<&str>)> = rows
            .iter()
            .map(|r| (r.client_id.as_str(), r.sid.as_ref().map(SessionId::as_str)))
            .collect();
        assert_eq!(sent, [("all", Some("per-rp")), ("paused", None)]);
        let skipped: Vec<(&str, SkipReason)> = notes
            .skipped
            .iter()
            .map(|n| (n.client_id.as_str(), n.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                ("custom", SkipReason::NotSubscribed),
                ("nourl", SkipReason::NoUrl),
                ("gone", SkipReason::UnknownClient),
            ]
        );
        assert_eq!(notes.held.len(), 1);
        assert_eq!(notes.held[0].client_id.as_str(), "paused");
        assert_eq!(notes.held[0].reason, SkipReason::Paused);
    }

    #[test]
    fn notes_of_many_sessions_keep_one_entry_per_client_and_reason() {
        let sessions: Vec<Session> = (0..5)
            .map(|n| session(&format!("s{n}"), &[("custom", None), ("gone", None)]))
            .collect();
        let clients = registrations();
        let event = EventId::generate();
        let (rows, mut notes) = plan_all(
            &sessions[..2],
            &clients,
            Initiator::PasswordChanged,
            &event,
            Utc::now(),
        );
        assert!(rows.is_empty());
        let (_, later) = plan_all(
            &sessions[2..],
            &clients,
            Initiator::PasswordChanged,
            &event,
            Utc::now(),
        );
        notes.absorb(later);
        let summary: Vec<(&str, SkipReason, &str, usize)> = notes
            .skipped
            .iter()
            .map(|n| {
                (
                    n.client_id.as_str(),
                    n.reason,
                    n.session_id.as_str(),
                    n.sessions,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("custom", SkipReason::NotSubscribed, "s0", 5),
                ("gone", SkipReason::UnknownClient, "s0", 5),
            ]
        );
        assert!(notes.held.is_empty());
    }
}
