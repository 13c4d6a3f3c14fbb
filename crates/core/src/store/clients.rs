//! Registered clients: the rules of registering, changing and deleting them, written once
//! over a [`Backend`].

use super::backend::{Backend, Lane};
use super::{Page, StoreError, millis};
use crate::clients::RelyingParty;
use crate::ids::ClientId;
use crate::operator_events::{NewOperatorEvent, PausedBy};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The client registry: the rules, over one backend. Every method is atomic.
#[derive(Clone)]
pub struct Clients {
    backend: Arc<dyn Backend>,
}

impl Clients {
    /// The client rules over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// Registers a client; `Conflict` if the client_id exists.
    pub async fn create_client(&self, client: &RelyingParty) -> Result<(), StoreError> {
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        if !tx.insert_client(client).await? {
            return Err(StoreError::Conflict(format!("client {}", client.client_id)));
        }
        tx.commit().await
    }

    /// One client.
    pub async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError> {
        self.backend.get_client(id).await
    }

    /// Clients ordered by client_id, starting after cursor `from`.
    pub async fn list_clients(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<RelyingParty>, StoreError> {
        let clients = self.backend.clients(from, take).await?;
        Ok(Page::from_overfetch(clients, take, |c: &RelyingParty| {
            c.client_id.to_string()
        }))
    }

    /// Replaces a client's settings, as the operator asks (see [`Clients::update_client_by`]).
    pub async fn update_client(
        &self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.update_client_by(client, now, PausedBy::Operator).await
    }

    /// Replaces a client's settings. When it no longer has a URL, its pending deliveries are
    /// cancelled in the same transaction; when `paused` changes, a `client.paused` or
    /// `client.resumed` operator event naming `by` is written in the same transaction; when
    /// it may be delivered to (a URL and not paused), every node's workers are told, since
    /// resuming makes its rows claimable again. Returns how many rows were cancelled;
    /// `NotFound` if absent.
    pub async fn update_client_by(
        &self,
        client: &RelyingParty,
        now: DateTime<Utc>,
        by: PausedBy,
    ) -> Result<u64, StoreError> {
        let now = millis(now);
        let claimable = !client.paused && client.logout_url().is_some();
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        let Some(was_paused) = tx.client_paused(&client.client_id).await? else {
            return Err(StoreError::NotFound);
        };
        if !tx.update_client(client, now).await? {
            return Err(StoreError::NotFound);
        }
        let cancelled = match client.logout_url() {
            None => tx.cancel_rows(&client.client_id, now).await?,
            Some(_) => 0,
        };
        let events: Vec<NewOperatorEvent> = (was_paused != client.paused)
            .then(|| NewOperatorEvent::client_paused(&client.client_id, client.paused, by, now))
            .into_iter()
            .collect();
        super::emit(&mut *tx, &events).await?;
        if claimable {
            tx.announce().await?;
        }
        tx.commit().await?;
        self.backend.event_tally().count(&events);
        if claimable {
            self.backend.wake_workers();
        }
        Ok(cancelled)
    }

    /// Deletes a client and cancels its pending deliveries in the same transaction. Returns
    /// how many were cancelled; `NotFound` if absent.
    pub async fn delete_client(
        &self,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        if !tx.delete_client(id).await? {
            return Err(StoreError::NotFound);
        }
        let cancelled = tx.cancel_rows(id, millis(now)).await?;
        tx.commit().await?;
        Ok(cancelled)
    }
}
