//! The write transaction of both SQL backends, written once: each backend supplies the few
//! primitives its database words differently ([`SqlTx`]), and the rest are [`Shared`]
//! statements.

use super::events::EventStatements;
use super::health::HealthStatements;
use super::parse;
use super::redrive::RedriveStatements;
use super::sets::SetStatements;
use super::shared::Shared;
use super::ssf::SsfStatements;
use crate::clients::RelyingParty;
use crate::health::PauseState;
use crate::ids::{ClientId, DeliveryId, SessionId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::operator_events::NewOperatorEvent;
use crate::outbox::{DeliveryState, FailedFilter, IdempotentRequest, NewDelivery, StoredKey};
use crate::session::{Session, SessionClient, joined_once};
use crate::ssf::{FailedSetFilter, FanoutStream, NewSet};
use crate::store::StoreError;
use crate::store::backend::{Ending, EndingSet, Tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// What a SQL backend's transaction words in its own database's terms.
#[async_trait]
pub(in crate::store) trait SqlTx: Send {
    /// The database.
    type Db: Shared + RedriveStatements + HealthStatements + EventStatements + SsfStatements;

    /// The transaction's connection.
    fn conn(&mut self) -> &mut <Self::Db as sqlx::Database>::Connection;

    /// The session with its clients; with `lock`, locked first as [`Tx::lock_session`] says.
    async fn read_session(
        &mut self,
        id: &SessionId,
        lock: bool,
    ) -> Result<Option<Session>, StoreError>;

    /// Those of `wanted` (not empty) that are registered clients.
    async fn known_clients(&mut self, wanted: &[&str]) -> Result<Vec<String>, StoreError>;

    /// Appends clients (not none) to a session's list as [`Tx::join`] says.
    async fn append_clients(
        &mut self,
        id: &SessionId,
        clients: &[SessionClient],
    ) -> Result<(), StoreError>;

    /// [`Tx::ending`].
    async fn read_ending(&mut self, which: Ending<'_>) -> Result<EndingSet, StoreError>;

    /// [`Tx::end`].
    async fn write_end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The stored state of delivery row `id`, locked until commit.
    async fn row_state(&mut self, id: &DeliveryId) -> Result<Option<String>, StoreError>;

    /// [`Tx::announce`].
    async fn tell_nodes(&mut self) -> Result<(), StoreError>;

    /// Tells other nodes, at commit, that SET rows were written.
    async fn tell_set_workers(&mut self) -> Result<(), StoreError>;

    /// [`Tx::commit`].
    async fn finish(self: Box<Self>) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: SqlTx> Tx for T {
    async fn session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.read_session(id, false).await
    }

    async fn lock_session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.read_session(id, true).await
    }

    async fn first_unknown_client<'a>(
        &mut self,
        wanted: &[&'a ClientId],
    ) -> Result<Option<&'a ClientId>, StoreError> {
        if wanted.is_empty() {
            return Ok(None);
        }
        let ids: Vec<&str> = wanted.iter().map(|c| c.as_str()).collect();
        let known = self.known_clients(&ids).await?;
        let known: HashSet<&str> = known.iter().map(String::as_str).collect();
        Ok(wanted.iter().find(|c| !known.contains(c.as_str())).copied())
    }

    async fn insert_session(&mut self, session: &Session) -> Result<bool, StoreError> {
        if !T::Db::insert_session(self.conn(), session).await? {
            return Ok(false);
        }
        let clients = joined_once(&session.clients);
        if !clients.is_empty() {
            self.append_clients(&session.id, &clients).await?;
        }
        Ok(true)
    }

    async fn join(
        &mut self,
        id: &SessionId,
        clients: &[SessionClient],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !clients.is_empty() {
            self.append_clients(id, clients).await?;
        }
        T::Db::touch(self.conn(), id, now).await
    }

    async fn set_metadata(
        &mut self,
        id: &SessionId,
        metadata: &SessionMetadata,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        T::Db::set_metadata(self.conn(), id, metadata, now).await
    }

    async fn ending(&mut self, which: Ending<'_>) -> Result<EndingSet, StoreError> {
        self.read_ending(which).await
    }

    async fn end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_end(sessions, rows, initiator, now).await
    }

    async fn insert_client(&mut self, client: &RelyingParty) -> Result<bool, StoreError> {
        T::Db::insert_client(self.conn(), client).await
    }

    async fn update_client(
        &mut self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        T::Db::update_client(self.conn(), client, now).await
    }

    async fn client_pause(&mut self, id: &ClientId) -> Result<Option<PauseState>, StoreError> {
        T::Db::client_pause(self.conn(), id.as_str()).await
    }

    async fn insert_operator_events(
        &mut self,
        events: &[NewOperatorEvent],
    ) -> Result<(), StoreError> {
        T::Db::insert_events(self.conn(), events).await
    }

    async fn delete_client(&mut self, id: &ClientId) -> Result<bool, StoreError> {
        T::Db::delete_client(self.conn(), id).await
    }

    async fn cancel_rows(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        T::Db::cancel_rows(self.conn(), id, now).await
    }

    async fn delivery_state(
        &mut self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryState>, StoreError> {
        let state = self.row_state(id).await?;
        state.map(|s| parse(&s, "state")).transpose()
    }

    async fn requeue(&mut self, id: &DeliveryId, now: DateTime<Utc>) -> Result<(), StoreError> {
        T::Db::requeue(self.conn(), id, now).await
    }

    async fn release_held(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        T::Db::release_held(self.conn(), id, now).await
    }

    async fn failed_rows(
        &mut self,
        filter: &FailedFilter,
        after: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        T::Db::failed_rows(self.conn(), filter, after, limit).await
    }

    async fn insert_key(
        &mut self,
        key: &IdempotentRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        T::Db::insert_key(self.conn(), key, now).await
    }

    async fn lock_key(&mut self, key: &str) -> Result<Option<StoredKey>, StoreError> {
        T::Db::lock_key(self.conn(), key).await
    }

    async fn update_key(
        &mut self,
        key: &str,
        redriven: u64,
        done: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        T::Db::update_key(self.conn(), key, redriven, done, now).await
    }

    async fn fanout_streams(&mut self) -> Result<Vec<FanoutStream>, StoreError> {
        T::Db::fanout_streams(self.conn()).await
    }

    async fn insert_sets(&mut self, rows: &[NewSet]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        T::Db::insert_sets(self.conn(), rows).await?;
        self.tell_set_workers().await
    }

    async fn failed_sets(
        &mut self,
        filter: &FailedSetFilter,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        T::Db::failed_sets(self.conn(), filter, after, limit).await
    }

    async fn requeue_sets(&mut self, ids: &[String], now: DateTime<Utc>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        T::Db::requeue_sets(self.conn(), ids, now).await?;
        self.tell_set_workers().await
    }

    async fn announce(&mut self) -> Result<(), StoreError> {
        self.tell_nodes().await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.finish().await
    }
}
