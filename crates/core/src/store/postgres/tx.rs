//! The write transaction primitives over PostgreSQL: one READ COMMITTED transaction whose
//! statements take the row locks they need.

use super::{announce, clients, db, sessions, terminate};
use crate::clients::RelyingParty;
use crate::ids::{ClientId, SessionId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::outbox::NewDelivery;
use crate::session::{Session, SessionClient};
use crate::store::StoreError;
use crate::store::backend::{Ending, EndingSet, Tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

/// A transaction on one pooled connection.
pub(super) struct PgTx {
    pub(super) tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl Tx for PgTx {
    async fn session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        sessions::fetch(&mut self.tx, id).await
    }

    async fn lock_session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        sessions::locked(&mut self.tx, id).await
    }

    async fn first_unknown_client<'a>(
        &mut self,
        wanted: &[&'a ClientId],
    ) -> Result<Option<&'a ClientId>, StoreError> {
        sessions::first_unknown_client(&mut self.tx, wanted).await
    }

    async fn insert_session(&mut self, session: &Session) -> Result<bool, StoreError> {
        sessions::insert_session(&mut self.tx, session).await
    }

    async fn join(
        &mut self,
        id: &SessionId,
        clients: &[SessionClient],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sessions::insert_clients(&mut self.tx, id, clients).await?;
        sessions::touch(&mut self.tx, id, now).await
    }

    async fn set_metadata(
        &mut self,
        id: &SessionId,
        metadata: &SessionMetadata,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sessions::set_metadata(&mut self.tx, id, metadata, now).await
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
        clients::insert(&mut self.tx, client).await
    }

    async fn update_client(
        &mut self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        clients::update(&mut self.tx, client, now).await
    }

    async fn delete_client(&mut self, id: &ClientId) -> Result<bool, StoreError> {
        clients::delete(&mut self.tx, id).await
    }

    async fn cancel_rows(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        clients::cancel_rows(&mut self.tx, id, now).await
    }

    async fn announce(&mut self) -> Result<(), StoreError> {
        announce(&mut self.tx).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db)
    }
}
