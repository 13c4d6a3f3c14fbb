//! The write transaction over PostgreSQL: one READ COMMITTED transaction whose statements
//! take the row locks they need. The primitives PostgreSQL words its own way; the rest are
//! shared (see [`SqlTx`]).
//!
//! A change to a session first locks its row (`FOR UPDATE`) and only then reads it, in a new
//! statement: under READ COMMITTED that statement sees everything committed before the lock
//! was granted, so concurrent changes and terminations never lose an update.
//!
//! Terminations read clients `FOR SHARE`, so a termination that saw a client has committed its
//! rows before a change to the client row goes through, and the change's cancellation of the
//! client's rows sees them.

use super::{announce, backend, db, terminate};
use crate::ids::{DeliveryId, SessionId};
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::{Session, SessionClient};
use crate::store::StoreError;
use crate::store::backend::{Ending, EndingSet};
use crate::store::sql::tx::SqlTx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Transaction};

/// A transaction on one pooled connection.
pub(super) struct PgTx {
    pub(super) tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl SqlTx for PgTx {
    type Db = Postgres;

    fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    async fn read_session(
        &mut self,
        id: &SessionId,
        lock: bool,
    ) -> Result<Option<Session>, StoreError> {
        if lock
            && backend::lock(&mut self.tx, &[id.as_str()])
                .await?
                .is_empty()
        {
            return Ok(None);
        }
        backend::fetch(&mut self.tx, id).await
    }

    async fn known_clients(&mut self, wanted: &[&str]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT client_id FROM clients WHERE client_id = ANY($1)")
            .bind(wanted)
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
        terminate::ending(&mut self.tx, which).await
    }

    async fn write_end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        terminate::write_end(&mut self.tx, sessions, rows, initiator, now).await
    }

    async fn row_state(&mut self, id: &DeliveryId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT state FROM deliveries WHERE id = $1 FOR UPDATE")
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)
    }

    async fn tell_nodes(&mut self) -> Result<(), StoreError> {
        announce(&mut self.tx).await
    }

    async fn tell_set_workers(&mut self) -> Result<(), StoreError> {
        super::announce_sets(&mut self.tx).await
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db)
    }
}

/// Appends clients to the end of a session's list in one statement. A client already listed
/// keeps its place, and takes the new sid when one is given (see [`Session::join`]).
async fn insert_clients(
    conn: &mut PgConnection,
    id: &SessionId,
    clients: &[SessionClient],
) -> Result<(), StoreError> {
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
