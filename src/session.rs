//! Sessions (Auth0's session object) and the session-store trait.

use crate::ids::{ClientId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::{MetadataOp, SessionMetadata};
use crate::store::{Page, StoreError};
use crate::terminate::ClientNotes;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Notify;
use utoipa::ToSchema;

/// Where a session came from, as Auth0 records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// IP address at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_ip: Option<String>,
    /// User agent at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_user_agent: Option<String>,
    /// Most recent IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ip: Option<String>,
    /// Most recent user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_user_agent: Option<String>,
}

/// One RP that took part in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionClient {
    /// The RP's client_id.
    pub client_id: ClientId,
    /// The `sid` this RP's ID token carried, when the IdP gives each RP its own (panva's
    /// oidc-provider does; Keycloak and Auth0 use the session id for every RP). This RP's
    /// logout token carries it; without it, the token carries the session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
}

impl SessionClient {
    /// A client that joined without a sid of its own.
    pub fn new(client_id: ClientId) -> Self {
        Self {
            client_id,
            sid: None,
        }
    }

    /// A client that joined with `sid` (or without one).
    pub fn with_sid(client_id: ClientId, sid: Option<SessionId>) -> Self {
        Self { client_id, sid }
    }
}

/// A login session, with Auth0's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// The session id; the `sid` of its logout tokens.
    pub id: SessionId,
    /// The user; the `sub` of its logout tokens.
    pub user_id: UserId,
    /// When the session was registered.
    pub created_at: DateTime<Utc>,
    /// Last change to the session record.
    pub updated_at: DateTime<Utc>,
    /// When the user authenticated.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// Idle expiry.
    pub idle_expires_at: Option<DateTime<Utc>>,
    /// Absolute expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last user interaction.
    pub last_interacted_at: Option<DateTime<Utc>>,
    /// Device information.
    pub device: Device,
    /// RPs that took part, in the order they joined.
    pub clients: Vec<SessionClient>,
    /// The session's metadata.
    pub session_metadata: SessionMetadata,
    /// When the session ended; absent while it is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_initiator: Option<Initiator>,
}

impl Session {
    /// True once the session has ended.
    pub fn is_ended(&self) -> bool {
        self.ended_at.is_some()
    }

    /// True when `client` took part.
    pub fn has_client(&self, client: &ClientId) -> bool {
        self.clients.iter().any(|c| &c.client_id == client)
    }

    /// Records that `client` joined: appended when new; when it is already listed it keeps
    /// its place, and takes the new `sid` if one is given (the RP's latest ID token carries
    /// it), else keeps the one it had.
    pub fn join(&mut self, client: SessionClient) {
        join(&mut self.clients, client);
    }
}

/// `clients` with each client listed once, in first-joining order, merged as
/// [`Session::join`] does.
pub fn joined_once(clients: &[SessionClient]) -> Vec<SessionClient> {
    let mut out = Vec::with_capacity(clients.len());
    for c in clients {
        join(&mut out, c.clone());
    }
    out
}

fn join(list: &mut Vec<SessionClient>, client: SessionClient) {
    match list.iter_mut().find(|c| c.client_id == client.client_id) {
        Some(listed) => {
            if client.sid.is_some() {
                listed.sid = client.sid;
            }
        }
        None => list.push(client),
    }
}

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

/// Storage of sessions. Every method is atomic, except that ending a user's sessions may commit
/// them in several transactions; each session's end still commits together with its rows.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session. `Conflict` if the id exists; `UnknownClient` if a listed client
    /// is not registered.
    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;

    /// The session, ended or not.
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError>;

    /// The user's active sessions ordered by id, starting after cursor `from`.
    async fn list_user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Session>, StoreError>;

    /// Records that `client` joined the session. Joining again keeps the client's place in
    /// the list; a `sid` given on the new join replaces the one stored, a join without one
    /// keeps it. `NotFound`, `Ended` or `UnknownClient` otherwise.
    async fn add_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError>;

    /// Applies a metadata change, validated with [`SessionMetadata::apply`] inside the same
    /// transaction. `NotFound`, `Ended` or `Metadata` otherwise; a refusal changes nothing.
    async fn update_metadata(
        &self,
        id: &SessionId,
        op: &MetadataOp,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError>;

    /// Ends the target's active sessions and, in the same transaction, writes the outbox rows
    /// that [`crate::terminate::plan`] derives for each, and reports the clients it noted.
    /// Sessions already ended are skipped and add no rows and no notes. `NotFound` when a
    /// single target session does not exist.
    async fn end_sessions(
        &self,
        target: &EndTarget,
        initiator: Initiator,
        event_id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<EndReport, StoreError>;

    /// Ends up to `limit` active sessions whose `expires_at` or `idle_expires_at` is at or
    /// before `now`, with initiator `session-expired`, exactly as [`Self::end_sessions`] does
    /// (same transaction, rows only for subscribed clients). A session another node ends
    /// meanwhile is skipped, never ended twice.
    async fn end_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        event_id: &EventId,
    ) -> Result<EndReport, StoreError>;

    /// The earliest `expires_at` or `idle_expires_at` among active sessions, if any.
    async fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Deletes up to `limit` sessions that ended before `before` and have no outbox rows left
    /// (their client lists go with them). Returns how many.
    async fn prune_sessions(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;

    /// Signalled when a session with an expiry is created, so the expiry sweeper reschedules.
    fn expiry_wakeup(&self) -> Arc<Notify>;
}
