//! The [`Backend`] over SQLite: its write transactions, and the backend, which use the read
//! pool; a session's client list is a second statement, for every session read at once.

use super::rows::{ClientRow, SessionRow};
use super::tx::SqliteTx;
use super::writer::gate::Lane;
use super::{SqliteStore, db, json_list};
use crate::clients::RelyingParty;
use crate::ids::{ClientId, SessionId, UserId};
use crate::session::{Session, SessionClient};
use crate::store::backend::Backend;
use crate::store::sql::overfetch as limit;
use crate::store::sql::rows::{client_columns, session_columns};
use crate::store::sql::shared::Shared;
use crate::store::{StoreError, wake};
use async_trait::async_trait;
use sqlx::SqliteConnection;
use std::collections::HashMap;

#[async_trait]
impl Backend for SqliteStore {
    async fn begin(
        &self,
        lane: crate::store::Lane,
    ) -> Result<Box<dyn crate::store::Tx + '_>, StoreError> {
        let tx = self
            .begin_in(match lane {
                crate::store::Lane::Interactive => Lane::Interactive,
                crate::store::Lane::Bulk => Lane::Bulk,
            })
            .await?;
        let end_chunk = self.batch_sizes().end_sessions;
        Ok(Box::new(SqliteTx { tx, end_chunk }))
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        read(&mut conn, id).await
    }

    /// The user's active sessions after cursor `from`, one more than `take` at most.
    async fn user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<Session>, StoreError> {
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
        hydrate(&mut conn, rows).await
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError> {
        sqlx::Sqlite::get_client(&self.reader, id).await
    }

    /// Clients after cursor `from`, one more than `take` at most.
    async fn clients(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<RelyingParty>, StoreError> {
        let rows: Vec<ClientRow> = sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE (?1 IS NULL OR client_id > ?1) ORDER BY client_id LIMIT +?2"
        ))
        .bind(from)
        .bind(limit(take))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.into_iter().map(ClientRow::into_client).collect()
    }

    fn wake_workers(&self) {
        self.notify();
    }

    fn wake_expiry(&self) {
        wake(&self.expiry);
    }

    fn wake_sets(&self) {
        wake(&self.sets_wakeup);
    }

    fn sets_wakeup(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.sets_wakeup.clone()
    }

    fn event_tally(&self) -> std::sync::Arc<crate::operator_events::EventTally> {
        self.tally.clone()
    }
}

/// Session `id` with its clients.
pub(super) async fn read(
    conn: &mut SqliteConnection,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    let rows = fetch_row(conn, id).await?.into_iter().collect();
    Ok(hydrate(conn, rows).await?.pop())
}

/// The stored row of session `id`.
async fn fetch_row(
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
async fn hydrate(
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
