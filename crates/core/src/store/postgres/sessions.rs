//! Sessions over PostgreSQL: the reads, and the write primitives of [`super::tx`].
//!
//! A change to a session first locks its row (`FOR UPDATE`) and only then reads it, in a new
//! statement: under READ COMMITTED that statement sees everything committed before the lock
//! was granted, so concurrent changes and terminations never lose an update.

use super::rows::{SessionRow, session_columns};
use super::{PostgresStore, db, ms, overfetch, to_json};
use crate::ids::{ClientId, SessionId, UserId};
use crate::metadata::SessionMetadata;
use crate::session::{Session, SessionClient, joined_once};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::HashSet;

/// The session, ended or not, as last committed.
pub(super) async fn get(
    store: &PostgresStore,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    let mut conn = store.pool.acquire().await.map_err(db)?;
    fetch(&mut conn, id).await
}

/// The user's active sessions after cursor `from`, one more than `take` at most.
pub(super) async fn of_user(
    store: &PostgresStore,
    user: &UserId,
    from: Option<&str>,
    take: usize,
) -> Result<Vec<Session>, StoreError> {
    let rows: Vec<SessionRow> = sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE user_id = $1 AND ended_at IS NULL",
        " AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(user.as_str())
    .bind(from)
    .bind(overfetch(take))
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    rows.into_iter().map(SessionRow::into_session).collect()
}

/// Locks session `id` (see [`lock`]) and reads it in a new statement, so the read sees what
/// a transaction that held the lock before committed.
pub(super) async fn locked(
    conn: &mut PgConnection,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    if lock(conn, &[id.as_str()]).await?.is_empty() {
        return Ok(None);
    }
    fetch(conn, id).await
}

/// Replaces the session's metadata.
pub(super) async fn set_metadata(
    conn: &mut PgConnection,
    id: &SessionId,
    metadata: &SessionMetadata,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET metadata = $1, updated_at = $2 WHERE id = $3")
        .bind(to_json(metadata)?)
        .bind(ms(now))
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)
        .map(|_| ())
}

/// Bumps a session's `updated_at`.
pub(super) async fn touch(
    conn: &mut PgConnection,
    id: &SessionId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET updated_at = $1 WHERE id = $2")
        .bind(ms(now))
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)
        .map(|_| ())
}

/// The session `id` with its clients, ended or not.
pub(super) async fn fetch(
    conn: &mut PgConnection,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    let row: Option<SessionRow> = sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    row.map(SessionRow::into_session).transpose()
}

/// Locks the rows of the sessions `ids` until the transaction ends, in id order (so two
/// transactions locking overlapping sets cannot deadlock); returns the ids that exist.
pub(super) async fn lock(conn: &mut PgConnection, ids: &[&str]) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT id FROM sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(db)
}

/// The first of `wanted` that is not a registered client.
pub(super) async fn first_unknown_client<'a>(
    conn: &mut PgConnection,
    wanted: &[&'a ClientId],
) -> Result<Option<&'a ClientId>, StoreError> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let ids: Vec<&str> = wanted.iter().map(|c| c.as_str()).collect();
    let known: Vec<String> =
        sqlx::query_scalar("SELECT client_id FROM clients WHERE client_id = ANY($1)")
            .bind(&ids)
            .fetch_all(conn)
            .await
            .map_err(db)?;
    let known: HashSet<&str> = known.iter().map(String::as_str).collect();
    Ok(wanted.iter().find(|c| !known.contains(c.as_str())).copied())
}

/// Writes a new session row and its client list; false if the id exists (a concurrent
/// create won).
pub(super) async fn insert_session(
    conn: &mut PgConnection,
    s: &Session,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, updated_at, authenticated_at, \
         idle_expires_at, expires_at, last_interacted_at, device, metadata, ended_at, \
         end_initiator) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
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
    .bind(to_json(&s.device)?)
    .bind(to_json(&s.session_metadata)?)
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
    conn: &mut PgConnection,
    id: &SessionId,
    clients: &[SessionClient],
) -> Result<(), StoreError> {
    if clients.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    let sids: Vec<Option<&str>> = clients
        .iter()
        .map(|c| c.sid.as_ref().map(SessionId::as_str))
        .collect();
    sqlx::query(
        "INSERT INTO session_clients (session_id, client_id, sid, position) \
         SELECT $1, c.client_id, c.sid, CAST(c.ord - 1 + (SELECT COALESCE(MAX(position) + 1, 0) \
         FROM session_clients WHERE session_id = $1) AS integer) \
         FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS c (client_id, sid, ord) \
         ON CONFLICT (session_id, client_id) \
         DO UPDATE SET sid = COALESCE(excluded.sid, session_clients.sid)",
    )
    .bind(id.as_str())
    .bind(&ids)
    .bind(&sids)
    .execute(conn)
    .await
    .map_err(db)
    .map(|_| ())
}
