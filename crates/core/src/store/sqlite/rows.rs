//! The rows SQLite returns: the shared rows with JSON as TEXT, and the sessions of a
//! termination step read as one JSON value.

use crate::clients::RelyingParty;
use crate::session::{Session, SessionClient};
use crate::store::StoreError;
use crate::store::sql::json;
use crate::store::sql::rows;

/// A row of `sessions`.
pub(super) type SessionRow = rows::SessionRow<String>;
/// A row of `clients`.
pub(super) type ClientRow = rows::ClientRow<String>;
/// A row of `deliveries`.
pub(super) type DeliveryRow = rows::DeliveryRow<String>;

/// The select that reads sessions about to end together with every client each joined and
/// that client's registration, if it still exists: one entry per (session, client) pair in
/// session and joining order, and one with null client columns for a session that joined
/// none. `$sessions` is a query for the sessions' `session_columns!`, named `s`.
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
                paused_by: None,
                paused_at: None,
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
