//! The write transaction over SQLite: one `BEGIN IMMEDIATE` transaction holding the database
//! write lock, so nothing it reads changes before it commits, and no read needs a lock of its
//! own. The primitives SQLite words its own way; the rest are shared (see [`SqlTx`]).

use super::{WriteTx, backend, db, json_list, terminate};
use crate::ids::{DeliveryId, SessionId};
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::{Session, SessionClient};
use crate::store::StoreError;
use crate::store::backend::{Ending, EndingSet};
use crate::store::sql::tx::SqlTx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqliteConnection};

/// A write transaction with the size of a user-wide end's step at its start.
pub(super) struct SqliteTx {
    pub(super) tx: WriteTx,
    /// Sessions one step of a user-wide end takes (fewer while API writes are arriving).
    pub(super) end_chunk: usize,
}

#[async_trait]
impl SqlTx for SqliteTx {
    type Db = Sqlite;

    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    async fn read_session(
        &mut self,
        id: &SessionId,
        _lock: bool,
    ) -> Result<Option<Session>, StoreError> {
        // The transaction already holds the write lock.
        backend::read(&mut self.tx, id).await
    }

    async fn known_clients(&mut self, wanted: &[&str]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT client_id FROM clients WHERE client_id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(wanted.iter().copied())?)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db)
    }

    async fn append_clients(
        &mut self,
        id: &SessionId,
        clients: &[SessionClient],
    ) -> Result<(), StoreError> {
        insert_clients(&mut self.tx, id, clients).await
    }

    async fn read_ending(&mut self, which: Ending<'_>) -> Result<EndingSet, StoreError> {
        terminate::ending(&mut self.tx, which, self.end_chunk).await
    }

    async fn write_end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        terminate::write_ends(&mut self.tx, sessions, initiator, now, rows).await
    }

    async fn row_state(&mut self, id: &DeliveryId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT state FROM deliveries WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)
    }

    async fn tell_nodes(&mut self) -> Result<(), StoreError> {
        // One process writes the file; its workers are woken after the commit.
        Ok(())
    }

    async fn tell_set_workers(&mut self) -> Result<(), StoreError> {
        // One process writes a SQLite database's SET rows and sends them.
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db)
    }
}

/// Appends clients to the end of a session's list in one statement. A client already listed
/// keeps its place, and takes the new sid when one is given (see [`Session::join`]).
async fn insert_clients(
    conn: &mut SqliteConnection,
    id: &SessionId,
    clients: &[SessionClient],
) -> Result<(), StoreError> {
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
