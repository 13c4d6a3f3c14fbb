//! Stored rows and their conversion to the domain types.

use super::{Corrupt, from_ms, opt_from_ms};
use crate::clients::RelyingParty;
use crate::metadata::SessionMetadata;
use crate::outbox::{AttemptRecord, Delivery};
use crate::session::{Device, Session, SessionClient};
use crate::store::StoreError;
use crate::store::sql::parse;

/// The columns of [`SessionRow`], for `concat!`.
macro_rules! session_columns {
    () => {
        "id, user_id, created_at, updated_at, authenticated_at, idle_expires_at, expires_at, \
         last_interacted_at, device, metadata, ended_at, end_initiator"
    };
}
pub(super) use session_columns;

/// The columns of [`DeliveryRow`], for `concat!`.
macro_rules! delivery_columns {
    () => {
        "id, event_id, session_id, user_id, client_id, initiator, state, attempts, \
         next_attempt_at, last_status, last_error, created_at, delivered_at, metadata, \
         budget_started_at, sid"
    };
}
pub(super) use delivery_columns;

/// Parses JSON read from the database (a column, or rows built into one value), naming only
/// what it is on failure.
pub(super) fn json<T: serde::de::DeserializeOwned>(
    value: &str,
    column: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_str(value).map_err(|_| StoreError::backend(Corrupt(column)))
}

/// A row of `sessions`, read as a result row or as a JSON array of its columns in the order
/// of [`session_columns`].
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(super) struct SessionRow {
    pub id: String,
    user_id: String,
    created_at: i64,
    updated_at: i64,
    authenticated_at: Option<i64>,
    idle_expires_at: Option<i64>,
    expires_at: Option<i64>,
    last_interacted_at: Option<i64>,
    device: String,
    metadata: String,
    ended_at: Option<i64>,
    end_initiator: Option<String>,
}

impl SessionRow {
    /// The session, with its clients in joining order.
    pub fn into_session(self, clients: Vec<SessionClient>) -> Result<Session, StoreError> {
        Ok(Session {
            id: self.id.into(),
            user_id: self.user_id.into(),
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
            authenticated_at: opt_from_ms(self.authenticated_at)?,
            idle_expires_at: opt_from_ms(self.idle_expires_at)?,
            expires_at: opt_from_ms(self.expires_at)?,
            last_interacted_at: opt_from_ms(self.last_interacted_at)?,
            device: json::<Device>(&self.device, "device")?,
            clients,
            session_metadata: SessionMetadata::from_stored(&self.metadata)
                .map_err(|_| StoreError::backend(Corrupt("metadata")))?,
            ended_at: opt_from_ms(self.ended_at)?,
            end_initiator: self
                .end_initiator
                .map(|i| parse(&i, "end_initiator"))
                .transpose()?,
        })
    }
}

/// A row of `clients`.
#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    settings: String,
    paused: bool,
    created_at: i64,
    updated_at: i64,
}

impl ClientRow {
    /// The registration; the columns win over the copies inside `settings`.
    pub fn into_client(self) -> Result<RelyingParty, StoreError> {
        Ok(RelyingParty {
            paused: self.paused,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
            ..json::<RelyingParty>(&self.settings, "client settings")?
        })
    }
}

/// The select that reads sessions about to end together with every client each joined and
/// that client's registration, if it still exists: one entry per (session, client) pair in
/// session and joining order, and one with null client columns for a session that joined
/// none. `$sessions` is a query for the sessions' [`session_columns`], named `s`.
///
/// The entries come back as one value, a JSON array of [`EndingRow`]s, rather than as one
/// result row each: the driver hands every result row from its database thread to the async
/// side as a message of its own, and each can wake a thread.
macro_rules! ending_select {
    ($sessions:expr) => {
        concat!(
            "WITH s AS (",
            $sessions,
            ") SELECT json_group_array(json_array(json_array(s.id, s.user_id, s.created_at, \
             s.updated_at, s.authenticated_at, s.idle_expires_at, s.expires_at, \
             s.last_interacted_at, s.device, s.metadata, s.ended_at, s.end_initiator), \
             sc.client_id, sc.sid, c.settings, c.paused, c.created_at, c.updated_at) \
             ORDER BY s.id, sc.position) FROM s \
             LEFT JOIN session_clients AS sc ON sc.session_id = s.id \
             LEFT JOIN clients AS c ON c.client_id = sc.client_id"
        )
    };
}
pub(super) use ending_select;

/// An entry of [`ending_select`]: the session's columns as an array, then the client's.
#[derive(serde::Deserialize)]
struct EndingRow {
    session: SessionRow,
    joined: Option<String>,
    joined_sid: Option<String>,
    settings: Option<String>,
    paused: Option<i64>,
    registered_at: Option<i64>,
    changed_at: Option<i64>,
}

/// Sessions from the rows of [`ending_select`], each with its clients in joining order, and
/// the registrations of those clients that exist, each once.
pub(super) fn ending_sessions(
    selected: &str,
) -> Result<(Vec<Session>, Vec<RelyingParty>), StoreError> {
    let rows: Vec<EndingRow> = json(selected, "ending sessions")?;
    let mut sessions: Vec<(SessionRow, Vec<SessionClient>)> = Vec::new();
    let mut registrations: Vec<RelyingParty> = Vec::new();
    for row in rows {
        if sessions.last().is_none_or(|(s, _)| s.id != row.session.id) {
            sessions.push((row.session, Vec::new()));
        }
        let Some(joined) = row.joined else {
            continue;
        };
        let known = registrations.iter().any(|c| c.client_id.as_str() == joined);
        if let (false, Some(settings), Some(paused), Some(created_at), Some(updated_at)) = (
            known,
            row.settings,
            row.paused,
            row.registered_at,
            row.changed_at,
        ) {
            let client = ClientRow {
                settings,
                paused: paused != 0,
                created_at,
                updated_at,
            };
            registrations.push(client.into_client()?);
        }
        if let Some((_, clients)) = sessions.last_mut() {
            clients.push(SessionClient::with_sid(
                joined.into(),
                row.joined_sid.map(Into::into),
            ));
        }
    }
    let sessions = sessions
        .into_iter()
        .map(|(row, clients)| row.into_session(clients))
        .collect::<Result<_, _>>()?;
    Ok((sessions, registrations))
}

/// A row of `deliveries` (the columns of [`delivery_columns`]), read as a result row or as a
/// JSON array of those columns in that order (see [`super::outbox`]).
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(super) struct DeliveryRow {
    id: String,
    event_id: String,
    session_id: String,
    user_id: String,
    pub client_id: String,
    initiator: String,
    pub state: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
    metadata: String,
    budget_started_at: i64,
    sid: Option<String>,
}

impl DeliveryRow {
    /// The row id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The status view of the row, its strings moved rather than copied.
    pub fn into_delivery(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            initiator: parse(&self.initiator, "initiator")?,
            state: parse(&self.state, "state")?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| StoreError::backend(Corrupt("attempts")))?,
            next_attempt_at: opt_from_ms(self.next_attempt_at)?,
            last_status: self
                .last_status
                .map(|s| u16::try_from(s).map_err(|_| StoreError::backend(Corrupt("last_status"))))
                .transpose()?,
            created_at: from_ms(self.created_at)?,
            delivered_at: opt_from_ms(self.delivered_at)?,
            id: self.id.into(),
            event_id: self.event_id.into(),
            session_id: self.session_id.into(),
            sid: self.sid.map(Into::into),
            user_id: self.user_id.into(),
            client_id: self.client_id.into(),
            last_error: self.last_error,
        })
    }

    /// The metadata snapshot taken at termination, as stored (JSON).
    pub fn metadata_text(&self) -> &str {
        &self.metadata
    }

    /// Parses a metadata snapshot as stored.
    pub fn parse_metadata(text: &str) -> Result<SessionMetadata, StoreError> {
        SessionMetadata::from_stored(text)
            .map_err(|_| StoreError::backend(Corrupt("metadata snapshot")))
    }

    /// Start of the age budget.
    pub fn budget_started_at(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        from_ms(self.budget_started_at)
    }
}

/// A row of `delivery_attempts`.
#[derive(sqlx::FromRow)]
pub(super) struct AttemptRow {
    at: i64,
    status: Option<i64>,
    error: Option<String>,
    latency_ms: i64,
    jti: String,
}

impl AttemptRow {
    /// The history entry.
    pub fn into_record(self) -> Result<AttemptRecord, StoreError> {
        let corrupt = |c| StoreError::backend(Corrupt(c));
        Ok(AttemptRecord {
            at: from_ms(self.at)?,
            status: self
                .status
                .map(|s| u16::try_from(s).map_err(|_| corrupt("attempt status")))
                .transpose()?,
            error: self.error,
            latency_ms: u64::try_from(self.latency_ms).map_err(|_| corrupt("latency_ms"))?,
            jti: self.jti.into(),
        })
    }
}
