//! Sessions (Auth0's session object), and what ending them reports.

use crate::ids::{ClientId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
    /// The session's metadata. The management API shows its values only to a token with
    /// the metadata grant (and to admin tokens); to others every value reads `[redacted]`.
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
pub(crate) fn joined_once(clients: &[SessionClient]) -> Vec<SessionClient> {
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
