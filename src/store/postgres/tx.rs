//! The write transaction primitives over PostgreSQL: one READ COMMITTED transaction whose
//! statements take the row locks they need.
//!
//! A change to a session first locks its row (`FOR UPDATE`) and only then reads it, in a new
//! statement: under READ COMMITTED that statement sees everything committed before the lock
//! was granted, so concurrent changes and terminations never lose an update.

use super::{announce, db, reads, terminate};
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
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::HashSet;

/// The statements PostgreSQL shares with SQLite.
type Sql = shared::Sql<Postgres>;

/// A transaction on one pooled connection.
pub(super) struct PgTx {
    pub(super) tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl Tx for PgTx {
    async fn session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        reads::fetch(&mut self.tx, id).await
    }

    async fn lock_session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        if reads::lock(&mut self.tx, &[id.as_str()]).await?.is_empty() {
            return Ok(None);
        }
        reads::fetch(&mut self.tx, id).await
    }

    async fn first_unknown_client<'a>(
        &mut self,
        wanted: &[&'a ClientId],
    ) -> Result<Option<&'a ClientId>, StoreError> {
        if wanted.is_empty() {
            return Ok(None);
        }
        let ids: Vec<&str> = wanted.iter().map(|c| c.as_str()).collect();
        let known: Vec<String> =
            sqlx::query_scalar("SELECT client_id FROM clients WHERE client_id = ANY($1)")
                .bind(&ids)
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
        terminate::ending(&mut self.tx, which).await
    }

    async fn end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        terminate::write_end(&mut self.tx, sessions, rows, initiator, now).await
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

    /// Terminations read clients `FOR SHARE`, so a termination that saw this client has
    /// committed its rows before the caller's change to the client row went through, and
    /// this statement sees them.
    async fn cancel_rows(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Sql::cancel_rows(&mut self.tx, id, now).await
    }

    async fn delivery_state(
        &mut self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryState>, StoreError> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM deliveries WHERE id = $1 FOR UPDATE")
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
        announce(&mut self.tx).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
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
