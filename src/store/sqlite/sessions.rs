//! The session store over SQLite; termination itself is in `terminate`.

use super::rows::{SessionRow, session_columns};
use super::{SqliteStore, db, json_list, ms};
use crate::ids::{ClientId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::MetadataOp;
use crate::session::{EndReport, EndTarget, Session, SessionClient, SessionStore, joined_once};
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if fetch_row(&mut tx, &session.id).await?.is_some() {
            return Err(StoreError::Conflict(format!("session {}", session.id)));
        }
        let wanted: Vec<&ClientId> = session.clients.iter().map(|c| &c.client_id).collect();
        if let Some(unknown) = first_unknown_client(&mut tx, &wanted).await? {
            return Err(StoreError::UnknownClient(unknown.to_string()));
        }
        insert_session(&mut tx, session).await?;
        tx.commit().await.map_err(db)?;
        if session.expires_at.is_some() || session.idle_expires_at.is_some() {
            super::wake(&self.expiry);
        }
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let rows = fetch_row(&mut conn, id).await?.into_iter().collect();
        Ok(hydrate(&mut conn, rows).await?.pop())
    }

    async fn list_user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Session>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
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
        let sessions = hydrate(&mut conn, rows).await?;
        Ok(Page::from_overfetch(sessions, take, |s: &Session| {
            s.id.to_string()
        }))
    }

    async fn add_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut session = active_session(&mut tx, id).await?;
        if first_unknown_client(&mut tx, &[&client.client_id])
            .await?
            .is_some()
        {
            return Err(StoreError::UnknownClient(client.client_id.to_string()));
        }
        if !session.has_client(&client.client_id) || client.sid.is_some() {
            insert_clients(&mut tx, id, std::slice::from_ref(client)).await?;
        }
        session.join(client.clone());
        touch(&mut tx, id, now).await?;
        tx.commit().await.map_err(db)?;
        session.updated_at = now;
        Ok(session)
    }

    async fn update_metadata(
        &self,
        id: &SessionId,
        op: &MetadataOp,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut session = active_session(&mut tx, id).await?;
        session.session_metadata = session.session_metadata.apply(op)?;
        session.updated_at = now;
        let metadata =
            serde_json::to_string(&session.session_metadata).map_err(StoreError::backend)?;
        sqlx::query("UPDATE sessions SET metadata = ?, updated_at = ? WHERE id = ?")
            .bind(metadata)
            .bind(ms(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(session)
    }

    async fn end_sessions(
        &self,
        target: &EndTarget,
        initiator: Initiator,
        event_id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<EndReport, StoreError> {
        super::terminate::end_sessions(self, target, initiator, event_id, now).await
    }

    async fn end_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        event_id: &EventId,
    ) -> Result<EndReport, StoreError> {
        super::terminate::end_expired(self, now, limit, event_id).await
    }

    async fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        super::retention::next_expiry(&self.reader).await
    }

    async fn prune_sessions(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        super::retention::prune_sessions(self, before, limit).await
    }

    fn expiry_wakeup(&self) -> Arc<Notify> {
        self.expiry.clone()
    }
}

/// A `LIMIT` that fetches one row more than `take`, so the page knows whether more remain.
pub(super) fn limit(take: usize) -> i64 {
    i64::try_from(take)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1)
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

/// The session `id`, refusing unknown (`NotFound`) and ended (`Ended`) ones.
async fn active_session(
    conn: &mut SqliteConnection,
    id: &SessionId,
) -> Result<Session, StoreError> {
    let row = fetch_row(conn, id).await?.ok_or(StoreError::NotFound)?;
    let session = hydrate(conn, vec![row])
        .await?
        .pop()
        .ok_or(StoreError::NotFound)?;
    if session.is_ended() {
        return Err(StoreError::Ended);
    }
    Ok(session)
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
async fn first_unknown_client<'a>(
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

/// Writes a new session row and its client list.
async fn insert_session(conn: &mut SqliteConnection, s: &Session) -> Result<(), StoreError> {
    let device = serde_json::to_string(&s.device).map_err(StoreError::backend)?;
    let metadata = serde_json::to_string(&s.session_metadata).map_err(StoreError::backend)?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, updated_at, authenticated_at, \
         idle_expires_at, expires_at, last_interacted_at, device, metadata, ended_at, \
         end_initiator) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    insert_clients(conn, &s.id, &joined_once(&s.clients)).await
}

/// Appends clients to the end of a session's list in one statement. A client already listed
/// keeps its place, and takes the new sid when one is given (see [`Session::join`]).
async fn insert_clients(
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
async fn touch(
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
