//! The client registry over the in-memory state; removing a client's URL cancels its rows.

use super::MemoryStore;
use crate::clients::{ClientRegistry, RelyingParty};
use crate::ids::ClientId;
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::ops::Bound;

#[async_trait]
impl ClientRegistry for MemoryStore {
    async fn create_client(&self, client: &RelyingParty) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.clients.contains_key(&client.client_id) {
            return Err(StoreError::Conflict(format!("client {}", client.client_id)));
        }
        state
            .clients
            .insert(client.client_id.clone(), client.clone());
        Ok(())
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError> {
        Ok(self.lock().clients.get(id).cloned())
    }

    async fn list_clients(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<RelyingParty>, StoreError> {
        let state = self.lock();
        let start = from.map_or(Bound::Unbounded, |c| Bound::Excluded(ClientId::from(c)));
        let items = state
            .clients
            .range((start, Bound::Unbounded))
            .take(take.saturating_add(1))
            .map(|(_, c)| c.clone())
            .collect();
        Ok(Page::from_overfetch(items, take, |c: &RelyingParty| {
            c.client_id.to_string()
        }))
    }

    async fn update_client(
        &self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let cancelled = {
            let mut state = self.lock();
            let stored = state
                .clients
                .get_mut(&client.client_id)
                .ok_or(StoreError::NotFound)?;
            let created_at = stored.created_at;
            *stored = RelyingParty {
                created_at,
                updated_at: now,
                ..client.clone()
            };
            if client.logout_url().is_none() {
                state.cancel_client_rows(&client.client_id, now)
            } else {
                0
            }
        };
        if !client.paused && client.logout_url().is_some() {
            // Resuming a paused client makes its rows claimable again.
            self.notify();
        }
        Ok(cancelled)
    }

    async fn delete_client(&self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.lock();
        state.clients.remove(id).ok_or(StoreError::NotFound)?;
        Ok(state.cancel_client_rows(id, now))
    }
}
