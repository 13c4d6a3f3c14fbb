//! Fan-out of a session end into outbox rows: which clients are told, as a pure function, and
//! which are not and why; and what a termination reports.
//!
//! The store's termination walk ([`crate::store::Sessions::end_sessions`]) calls [`plan_all`]
//! inside the transaction that marks the sessions ended, so the end and its rows commit
//! together or not at all.

use crate::clients::RelyingParty;
use crate::ids::{ClientId, DeliveryId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::outbox::{DeliveryScope, NewDelivery};
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
    /// Of those, `user` rows: one per `per_user` client of a user-wide end.
    pub user_wide_deliveries: usize,
    /// The ended sessions the `user` rows cover.
    pub user_wide_sessions: usize,
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
            user_wide_deliveries: 0,
            user_wide_sessions: 0,
            notes: ClientNotes::default(),
        }
    }

    /// Adds what one part of the same termination (a chunk of sessions) did.
    pub fn absorb(&mut self, part: EndReport) {
        self.sessions_ended += part.sessions_ended;
        self.deliveries += part.deliveries;
        self.user_wide_deliveries += part.user_wide_deliveries;
        self.user_wide_sessions += part.user_wide_sessions;
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

/// The `user` rows a user-wide end has written so far, one per `per_user` client, carried
/// from each step of the walk to the next: a later step that ends more sessions of such a
/// client adds them to its row (same id) instead of writing another.
#[derive(Debug, Default)]
pub(crate) struct UserRows {
    written: Vec<UserRow>,
}

/// One client's `user` row of a user-wide end.
#[derive(Debug)]
struct UserRow {
    client_id: ClientId,
    id: DeliveryId,
    /// The first session it covers (sessions end in id order).
    session_id: SessionId,
    /// Its place among the current step's planned rows, once the step covers it.
    in_step: Option<usize>,
}

impl UserRows {
    /// Covers `session` for `client` in the current step: a new `user` row the first time,
    /// then one more session on the step's row for the client (a new step's first one
    /// repeats the row's id, so the store adds to it).
    fn cover(
        &mut self,
        client: &ClientId,
        session: &Session,
        initiator: Initiator,
        event_id: &EventId,
        now: DateTime<Utc>,
        rows: &mut Vec<NewDelivery>,
    ) {
        if !self.written.iter().any(|w| &w.client_id == client) {
            self.written.push(UserRow {
                client_id: client.clone(),
                id: DeliveryId::generate_at(now),
                session_id: session.id.clone(),
                in_step: None,
            });
        }
        let Some(entry) = self.written.iter_mut().find(|w| &w.client_id == client) else {
            return;
        };
        if let Some(row) = entry.in_step.and_then(|at| rows.get_mut(at)) {
            row.sessions = row.sessions.saturating_add(1);
            return;
        }
        entry.in_step = Some(rows.len());
        rows.push(NewDelivery {
            id: entry.id.clone(),
            event_id: event_id.clone(),
            session_id: entry.session_id.clone(),
            sid: None,
            user_id: session.user_id.clone(),
            client_id: client.clone(),
            initiator,
            session_metadata: SessionMetadata::new(),
            scope: DeliveryScope::User,
            sessions: 1,
            created_at: now,
        });
    }

    /// Starts a step: no row of it is planned yet.
    fn new_step(&mut self) {
        for entry in &mut self.written {
            entry.in_step = None;
        }
    }
}

/// What one step of a termination writes.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The rows to write; a `user` row an earlier step wrote appears again with its id and
    /// the sessions this step adds to it.
    pub(crate) rows: Vec<NewDelivery>,
    /// Of `rows`, how many are new deliveries (not additions to an earlier step's row).
    pub(crate) new_rows: usize,
    /// The participating clients told nothing, or whose rows wait.
    pub(crate) notes: ClientNotes,
}

/// The outbox rows for ending `session` with `initiator`, appended to `rows`: one per
/// participating client that is still registered, has a back-channel URL and subscribes to
/// the initiator, carrying the client's own `sid` when it joined with one. In a user-wide end
/// (`user` given), a `per_user` client gets instead one `user` row for all the sessions of
/// the end it took part in (see [`UserRows`]). Every other participating client is noted in
/// `notes` with the reason, and so is a paused client whose row waits. `clients` are the
/// registrations of the session's clients that exist (deleted ones are simply absent).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    session: &Session,
    clients: &[RelyingParty],
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
    notes: &mut ClientNotes,
    mut user: Option<&mut UserRows>,
    rows: &mut Vec<NewDelivery>,
) {
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
        if client.per_user()
            && let Some(user) = user.as_deref_mut()
        {
            user.cover(&client.client_id, session, initiator, event_id, now, rows);
            continue;
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
            scope: DeliveryScope::Session,
            sessions: 1,
            created_at: now,
        });
    }
}

/// [`plan`] for each of `sessions` in order: the rows and notes of one step. `user` is the
/// walk's state in a user-wide end, `None` for any other end (each session's rows its own).
pub(crate) fn plan_all(
    sessions: &[Session],
    clients: &[RelyingParty],
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
    mut user: Option<&mut UserRows>,
) -> Plan {
    let mut notes = ClientNotes::default();
    let mut rows = Vec::with_capacity(sessions.iter().map(|s| s.clients.len()).sum());
    let before = user.as_deref().map_or(0, |u| u.written.len());
    if let Some(user) = user.as_deref_mut() {
        user.new_step();
    }
    for session in sessions {
        plan(
            session,
            clients,
            initiator,
            event_id,
            now,
            &mut notes,
            user.as_deref_mut(),
            &mut rows,
        );
    }
    // The `user` rows of earlier steps are the first `before` entries; each appears in this
    // step at most once.
    let continued = user.as_deref().map_or(0, |u| {
        u.written
            .iter()
            .take(before)
            .filter(|w| w.in_step.is_some())
            .count()
    });
    Plan {
        new_rows: rows.len().saturating_sub(continued),
        rows,
        notes,
    }
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
            encryption: Default::default(),
            paused,
            paused_by: None,
            paused_at: None,
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
        let mut rows = Vec::new();
        plan(
            &s,
            &registrations(),
            Initiator::SessionRevoked,
            &EventId::generate(),
            Utc::now(),
            &mut notes,
            None,
            &mut rows,
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
        let Plan {
            rows, mut notes, ..
        } = plan_all(
            &sessions[..2],
            &clients,
            Initiator::PasswordChanged,
            &event,
            Utc::now(),
            None,
        );
        assert!(rows.is_empty());
        let later = plan_all(
            &sessions[2..],
            &clients,
            Initiator::PasswordChanged,
            &event,
            Utc::now(),
            None,
        );
        notes.absorb(later.notes);
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

    fn per_user(id: &str) -> RelyingParty {
        let mut c = client(id, InitiatorMode::All, true, false);
        c.oidc_logout.backchannel_logout_user_wide = crate::clients::UserWide::PerUser;
        c.oidc_logout.backchannel_logout_session_metadata.include = true;
        c
    }

    fn with_metadata(mut s: Session) -> Session {
        s.session_metadata =
            SessionMetadata::from_json(&serde_json::json!({ "tenant": "acme" })).unwrap();
        s
    }

    /// (client, scope, first session, sid, sessions, has metadata) of each planned row.
    type Summary<'a> = (&'a str, DeliveryScope, &'a str, Option<&'a str>, u32, bool);

    fn summary(rows: &[NewDelivery]) -> Vec<Summary<'_>> {
        rows.iter()
            .map(|r| {
                (
                    r.client_id.as_str(),
                    r.scope,
                    r.session_id.as_str(),
                    r.sid.as_ref().map(SessionId::as_str),
                    r.sessions,
                    !r.session_metadata.is_empty(),
                )
            })
            .collect()
    }

    #[test]
    fn a_user_wide_end_gives_a_per_user_client_one_row_for_all_its_sessions() {
        let sessions: Vec<Session> = ["s1", "s2", "s3"]
            .into_iter()
            .map(|id| with_metadata(session(id, &[("all", None), ("pu", Some("own"))])))
            .collect();
        let clients = vec![
            client("all", InitiatorMode::All, true, false),
            per_user("pu"),
        ];
        let mut user = UserRows::default();
        let plan = plan_all(
            &sessions,
            &clients,
            Initiator::PasswordChanged,
            &EventId::generate(),
            Utc::now(),
            Some(&mut user),
        );
        use DeliveryScope::{Session as One, User};
        assert_eq!(
            summary(&plan.rows),
            [
                ("all", One, "s1", None, 1, true),
                ("pu", User, "s1", None, 3, false),
                ("all", One, "s2", None, 1, true),
                ("all", One, "s3", None, 1, true),
            ]
        );
        assert_eq!(plan.new_rows, 4);
        assert_eq!(plan.rows[1].user_id.as_str(), "u1");
    }

    #[test]
    fn a_single_session_end_or_an_expiry_keeps_per_session_rows_for_a_per_user_client() {
        let sessions: Vec<Session> = ["s1", "s2"]
            .into_iter()
            .map(|id| with_metadata(session(id, &[("pu", Some("own"))])))
            .collect();
        let plan = plan_all(
            &sessions,
            &[per_user("pu")],
            Initiator::SessionExpired,
            &EventId::generate(),
            Utc::now(),
            None,
        );
        use DeliveryScope::Session as One;
        assert_eq!(
            summary(&plan.rows),
            [
                ("pu", One, "s1", Some("own"), 1, true),
                ("pu", One, "s2", Some("own"), 1, true),
            ]
        );
    }

    #[test]
    fn later_steps_of_a_user_wide_end_add_their_sessions_to_the_first_step_s_row() {
        let sessions: Vec<Session> = (1..=5)
            .map(|n| session(&format!("s{n}"), &[("pu", None)]))
            .chain([session("s6", &[("all", None)])])
            .collect();
        let clients = vec![
            client("all", InitiatorMode::All, true, false),
            per_user("pu"),
        ];
        let event = EventId::generate();
        let mut user = UserRows::default();
        let mut step = |range: std::ops::Range<usize>| {
            plan_all(
                &sessions[range],
                &clients,
                Initiator::PasswordChanged,
                &event,
                Utc::now(),
                Some(&mut user),
            )
        };
        let first = step(0..2);
        let second = step(2..5);
        let third = step(5..6);
        use DeliveryScope::{Session as One, User};
        assert_eq!(summary(&first.rows), [("pu", User, "s1", None, 2, false)]);
        assert_eq!(first.new_rows, 1);
        assert_eq!(summary(&second.rows), [("pu", User, "s1", None, 3, false)]);
        assert_eq!(second.rows[0].id, first.rows[0].id, "the same row, widened");
        assert_eq!(second.new_rows, 0);
        assert_eq!(summary(&third.rows), [("all", One, "s6", None, 1, false)]);
        assert_eq!(third.new_rows, 1);
    }

    #[test]
    fn a_paused_or_unsubscribed_per_user_client_is_noted_once_per_session_as_before() {
        let mut paused = per_user("paused");
        paused.paused = true;
        let mut custom = per_user("custom");
        custom.oidc_logout.backchannel_logout_initiators.mode = InitiatorMode::Custom;
        let sessions: Vec<Session> = ["s1", "s2"]
            .into_iter()
            .map(|id| session(id, &[("paused", None), ("custom", None)]))
            .collect();
        let mut user = UserRows::default();
        let plan = plan_all(
            &sessions,
            &[paused, custom],
            Initiator::PasswordChanged,
            &EventId::generate(),
            Utc::now(),
            Some(&mut user),
        );
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].sessions, 2);
        assert_eq!(plan.notes.held[0].sessions, 2);
        assert_eq!(plan.notes.skipped[0].reason, SkipReason::NotSubscribed);
        assert_eq!(plan.notes.skipped[0].sessions, 2);
    }
}
