//! Sessions over SQLite: the reads, and the write primitives of [`super::tx`].

use super::rows::{SessionRow, session_columns};
use super::{SqliteStore, db, json_list, ms};
use crate::ids::{ClientId, SessionId, UserId};
use crate::metadata::SessionMetadata;
use crate::session::{Session, SessionClient, joined_once};
use crate::store::StoreError;
use crate::store::sql::overfetch as limit;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::collections::{HashMap, HashSet};

/// The session, ended or not, as last committed.
pub(super) async fn get(
    store: &SqliteStore,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    read(&mut conn, id).await
}

/// The user's active sessions after cursor `from`, one more than `take` at most.
pub(super) async fn of_user(
    store: &SqliteStore,
    user: &UserId,
    from: Option<&str>,
    take: usize,
) -> Result<Vec<Session>, StoreError> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    let rows: Vec<SessionRow> = sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE user_id = ?1 AND ended_at IS NULL",
        " AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT +?3"
    ))
    .bind(user.as_str())
    .bind(from)
    .bind(limit(take))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    hydrate(&mut conn, rows).await
}

/// Session `id` with its clients.
pub(super) async fn read(
    conn: &mut SqliteConnection,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    let rows = fetch_row(conn, id).await?.into_iter().collect();
    Ok(hydrate(conn, rows).await?.pop())
}

/// Replaces the session's metadata.
pub(super) async fn set_metadata(
    conn: &mut SqliteConnection,
    id: &SessionId,
    metadata: &SessionMetadata,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let metadata = serde_json::to_string(metadata).map_err(StoreError::backend)?;
    sqlx::query("UPDATE sessions SET metadata = ?, updated_at = ? WHERE id = ?")
        .bind(metadata)
        .bind(ms(now))
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)
        .map(|_| ())
}

/// The stored row of session `id`.
pub(super) async fn fetch_row(
    conn: &mut SqliteConnection,
    id: &SessionId,
) -> Result<Option<SessionRow>, StoreError> {
    sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE id = ?"
    ))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await
    .map_err(db)
}

/// Sessions from their rows, each with its clients in joining order (one query for all).
pub(super) async fn hydrate(
    conn: &mut SqliteConnection,
    rows: Vec<SessionRow>,
) -> Result<Vec<Session>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = json_list(rows.iter().map(|r| r.id.as_str()))?;
    let links: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT session_id, client_id, sid FROM session_clients \
         WHERE session_id IN (SELECT value FROM json_each(?)) ORDER BY session_id, position",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    let mut clients: HashMap<String, Vec<SessionClient>> = HashMap::new();
    for (session, client, sid) in links {
        clients
            .entry(session)
            .or_default()
            .push(SessionClient::with_sid(client.into(), sid.map(Into::into)));
    }
    rows.into_iter()
        .map(|row| {
            let joined = clients.remove(&row.id).unwrap_or_default();
            row.into_session(joined)
        })
        .collect()
}

/// The first of `wanted` that is not a registered client.
pub(super) async fn first_unknown_client<'a>(
    conn: &mut SqliteConnection,
    wanted: &[&'a ClientId],
) -> Result<Option<&'a ClientId>, StoreError> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let known: Vec<(String,)> = sqlx::query_as(
        "SELECT client_id FROM clients WHERE client_id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(wanted.iter().map(|c| c.as_str()))?)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    let known: HashSet<&str> = known.iter().map(|(c,)| c.as_str()).collect();
    Ok(wanted.iter().find(|c| !known.contains(c.as_str())).copied())
}

/// Writes a new session row and its client list; false if the id exists.
pub(super) async fn insert_session(
    conn: &mut SqliteConnection,
    s: &Session,
) -> Result<bool, StoreError> {
    let device = serde_json::to_string(&s.device).map_err(StoreError::backend)?;
    let metadata = serde_json::to_string(&s.session_metadata).map_err(StoreError::backend)?;
    let inserted = sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, updated_at, authenticated_at, \
         idle_expires_at, expires_at, last_interacted_at, device, metadata, ended_at, \
         end_initiator) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(s.id.as_str())
    .bind(s.user_id.as_str())
    .bind(ms(s.created_at))
    .bind(ms(s.updated_at))
    .bind(s.authenticated_at.map(ms))
    .bind(s.idle_expires_at.map(ms))
    .bind(s.expires_at.map(ms))
    .bind(s.last_interacted_at.map(ms))
    .bind(device)
    .bind(metadata)
    .bind(s.ended_at.map(ms))
    .bind(s.end_initiator.map(|i| i.as_str()))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    insert_clients(conn, &s.id, &joined_once(&s.clients)).await?;
    Ok(true)
}

/// Appends clients to the end of a session's list in one statement. A client already listed
/// keeps its place, and takes the new sid when one is given (see [`Session::join`]).
pub(super) async fn insert_clients(
    conn: &mut SqliteConnection,
    id: &SessionId,
    clients: &[SessionClient],
) -> Result<(), StoreError> {
    if clients.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(&str, Option<&str>)> = clients
        .iter()
        .map(|c| (c.client_id.as_str(), c.sid.as_ref().map(SessionId::as_str)))
        .collect();
    // `WHERE true` lets SQLite parse the upsert clause after INSERT ... SELECT.
    sqlx::query(
        "INSERT INTO session_clients (session_id, client_id, sid, position) \
         SELECT ?1, value ->> 0, value ->> 1, key + (SELECT COALESCE(MAX(position) + 1, 0) \
         FROM session_clients WHERE session_id = ?1) \
         FROM json_each(?2) WHERE true ON CONFLICT (session_id, client_id) \
         DO UPDATE SET sid = COALESCE(excluded.sid, session_clients.sid)",
    )
    .bind(id.as_str())
    .bind(serde_json::to_string(&pairs).map_err(StoreError::backend)?)
    .execute(conn)
    .await
    .map_err(db)
    .map(|_| ())
}

/// Bumps a session's `updated_at`.
pub(super) async fn touch(
    conn: &mut SqliteConnection,
    id: &SessionId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET updated_at = ? WHERE id = ?")
        .bind(ms(now))
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)
        .map(|_| ())
}
