//! Registered clients: the rules of registering, changing and deleting them, written once
//! over a [`Backend`].

use super::backend::{Backend, Lane};
use super::{Page, StoreError, millis};
use crate::clients::RelyingParty;
use crate::health::{PauseState, PausedBy};
use crate::ids::ClientId;
use crate::operator_events::NewOperatorEvent;
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

    /// Replaces a client's settings. Its pause is not a setting: the stored one is kept,
    /// read under the row's lock, so a change that races a pause (the operator's or the
    /// health policy's) cannot undo it. When it no longer has a URL, its pending deliveries
    /// are cancelled in the same transaction; when it may be delivered to (a URL and not
    /// paused), every node's workers are told. Returns how many rows were cancelled;
    /// `NotFound` if absent.
    pub async fn update_client(
        &self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = millis(now);
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        let Some(pause) = tx.client_pause(&client.client_id).await? else {
            return Err(StoreError::NotFound);
        };
        let mut client = client.clone();
        pause.apply(&mut client);
        if !tx.update_client(&client, now).await? {
            return Err(StoreError::NotFound);
        }
        let cancelled = match client.logout_url() {
            None => tx.cancel_rows(&client.client_id, now).await?,
            Some(_) => 0,
        };
        let claimable = !client.paused && client.logout_url().is_some();
        if claimable {
            tx.announce().await?;
        }
        tx.commit().await?;
        if claimable {
            self.backend.wake_workers();
        }
        Ok(cancelled)
    }

    /// Pauses or resumes a client for the operator, deciding on the pause read under the
    /// row's lock. A change writes who paused it ([`PausedBy::Operator`]) and when, and a
    /// `client.paused` or `client.resumed` operator event, in the same transaction. Resuming
    /// a paused client, whoever paused it, also gives its pending rows a fresh budget, due
    /// at `now` (they are claimed in the order they were written), and restarts its failure
    /// streak, so a long pause neither dead-letters the rows at once nor lets the health
    /// policy pause it again before new failures. Pausing a paused client, or resuming a
    /// running one, changes nothing. Returns the client; `NotFound` if absent.
    pub async fn set_paused(
        &self,
        id: &ClientId,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<RelyingParty, StoreError> {
        let now = millis(now);
        let mut client = self.get_client(id).await?.ok_or(StoreError::NotFound)?;
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        let Some(stored) = tx.client_pause(id).await? else {
            return Err(StoreError::NotFound);
        };
        if stored.paused == paused {
            stored.apply(&mut client);
            return Ok(client);
        }
        let pause = match paused {
            true => PauseState {
                paused,
                by: Some(PausedBy::Operator),
                at: Some(now),
            },
            false => PauseState::default(),
        };
        pause.apply(&mut client);
        client.updated_at = now;
        if !tx.update_client(&client, now).await? {
            return Err(StoreError::NotFound);
        }
        if !paused {
            tx.release_held(id, now).await?;
        }
        let events = [NewOperatorEvent::client_paused(
            id,
            paused,
            PausedBy::Operator,
            now,
        )];
        super::emit(&mut *tx, &events).await?;
        let claimable = !paused && client.logout_url().is_some();
        if claimable {
            tx.announce().await?;
        }
        tx.commit().await?;
        self.backend.event_tally().count(&events);
        if claimable {
            self.backend.wake_workers();
        }
        Ok(client)
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
