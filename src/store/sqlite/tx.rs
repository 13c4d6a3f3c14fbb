//! The write transaction primitives over SQLite: one `BEGIN IMMEDIATE` transaction holding the
//! database write lock, so nothing it reads changes before it commits, and no read needs a
//! lock of its own.

use super::{WriteTx, db, json_list, reads, terminate};
use crate::clients::RelyingParty;
use crate::ids::{ClientId, DeliveryId, SessionId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::outbox::{DeliveryState, NewDelivery};
use crate::session::{Session, SessionClient, joined_once};
use crate::store::StoreError;
use crate::store::backend::{Ending, EndingSet, Tx};
use crate::store::sql::{parse, shared};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use std::collections::HashSet;

/// The statements SQLite shares with PostgreSQL.
type Sql = shared::Sql<Sqlite>;

/// A write transaction with the size of a user-wide end's step at its start.
pub(super) struct SqliteTx {
    pub(super) tx: WriteTx,
    /// Sessions one step of a user-wide end takes (fewer while API writes are arriving).
    pub(super) end_chunk: usize,
}

#[async_trait]
impl Tx for SqliteTx {
    async fn session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        reads::read(&mut self.tx, id).await
    }

    async fn lock_session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        reads::read(&mut self.tx, id).await
    }

    async fn first_unknown_client<'a>(
        &mut self,
        wanted: &[&'a ClientId],
    ) -> Result<Option<&'a ClientId>, StoreError> {
        if wanted.is_empty() {
            return Ok(None);
        }
        let known: Vec<String> = sqlx::query_scalar(
            "SELECT client_id FROM clients WHERE client_id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(wanted.iter().map(|c| c.as_str()))?)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db)?;
        let known: HashSet<&str> = known.iter().map(String::as_str).collect();
        Ok(wanted.iter().find(|c| !known.contains(c.as_str())).copied())
    }

    async fn insert_session(&mut self, session: &Session) -> Result<bool, StoreError> {
        if !Sql::insert_session(&mut self.tx, session).await? {
            return Ok(false);
        }
        insert_clients(&mut self.tx, &session.id, &joined_once(&session.clients)).await?;
        Ok(true)
    }

    async fn join(
        &mut self,
        id: &SessionId,
        clients: &[SessionClient],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        insert_clients(&mut self.tx, id, clients).await?;
        Sql::touch(&mut self.tx, id, now).await
    }

    async fn set_metadata(
        &mut self,
        id: &SessionId,
        metadata: &SessionMetadata,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Sql::set_metadata(&mut self.tx, id, metadata, now).await
    }

    async fn ending(&mut self, which: Ending<'_>) -> Result<EndingSet, StoreError> {
        terminate::ending(&mut self.tx, which, self.end_chunk).await
    }

    async fn end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        terminate::write_ends(&mut self.tx, sessions, initiator, now, rows).await
    }

    async fn insert_client(&mut self, client: &RelyingParty) -> Result<bool, StoreError> {
        Sql::insert_client(&mut self.tx, client).await
    }

    async fn update_client(
        &mut self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Sql::update_client(&mut self.tx, client, now).await
    }

    async fn delete_client(&mut self, id: &ClientId) -> Result<bool, StoreError> {
        Sql::delete_client(&mut self.tx, id).await
    }

    async fn cancel_rows(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Sql::cancel_rows(&mut self.tx, id, now).await
    }

    async fn delivery_state(
        &mut self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryState>, StoreError> {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        state.map(|s| parse(&s, "state")).transpose()
    }

    async fn requeue(&mut self, id: &DeliveryId, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::requeue(&mut self.tx, id, now).await
    }

    async fn announce(&mut self) -> Result<(), StoreError> {
        // One process writes the file; its workers are woken after the commit.
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db)
    }
}

/// Appends clients to the end of a session's list in one statement. A client already listed
/// keeps its place, and takes the new sid when one is given (see [`Session::join`]).
async fn insert_clients(
    tx: &mut WriteTx,
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
    .execute(&mut **tx)
    .await
    .map_err(db)
    .map(|_| ())
}
