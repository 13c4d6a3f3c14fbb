//! In-memory backend: one mutex-protected state behind all three store traits, so every
//! operation (termination included) is atomic. For tests and embedding; nothing survives a
//! restart.

mod clients;
mod outbox;
mod retention;
mod sessions;

use super::{Health, StoreError, Stores};
use crate::clients::RelyingParty;
use crate::ids::{ClientId, DeliveryId, LeaseId, SessionId, UserId};
use crate::metadata::SessionMetadata;
use crate::outbox::{AttemptRecord, Delivery, DeliveryState};
use crate::session::Session;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// In-memory store; [`MemoryStore::into_stores`] shares one instance between the traits.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    wakeup: Arc<Notify>,
    expiry: Arc<Notify>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The three trait objects (and the health probe), sharing this store.
    pub fn into_stores(self) -> Stores {
        let shared = Arc::new(self);
        Stores {
            sessions: shared.clone(),
            clients: shared.clone(),
            outbox: shared.clone(),
            health: shared,
        }
    }

    /// The state; a poisoned lock is recovered because no operation panics half-way.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiting worker, and leaves a permit for one that is about to wait.
    fn notify(&self) {
        wake(&self.wakeup);
    }
}

/// Wakes every waiter of `notify`, and leaves a permit for one that is about to wait.
fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Everything the store holds.
#[derive(Default)]
struct State {
    clients: BTreeMap<ClientId, RelyingParty>,
    sessions: BTreeMap<SessionId, Session>,
    /// Every session id of a user, ended or not.
    by_user: HashMap<UserId, BTreeSet<SessionId>>,
    rows: BTreeMap<DeliveryId, Row>,
    /// `(next_attempt_at, id)` of every pending or in-flight row: the claim order.
    due: BTreeSet<(DateTime<Utc>, DeliveryId)>,
}

/// One outbox row with what the status view does not show.
struct Row {
    delivery: Delivery,
    metadata: SessionMetadata,
    lease: Option<LeaseId>,
    budget_started_at: DateTime<Utc>,
    history: Vec<AttemptRecord>,
    /// Last state change, the age retention counts from.
    updated_at: DateTime<Utc>,
}

/// Whether rows in `state` are in the due index.
fn is_live(state: DeliveryState) -> bool {
    matches!(state, DeliveryState::Pending | DeliveryState::InFlight)
}

impl State {
    /// Moves row `id` to `state` with `next` as its due time at `now`, keeping the due index
    /// in step. Leaving the in-flight state drops the lease.
    fn schedule(
        &mut self,
        id: &DeliveryId,
        state: DeliveryState,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let Some(row) = self.rows.get_mut(id) else {
            return;
        };
        row.updated_at = now;
        let d = &mut row.delivery;
        if let (true, Some(at)) = (is_live(d.state), d.next_attempt_at) {
            self.due.remove(&(at, id.clone()));
        }
        d.state = state;
        d.next_attempt_at = next;
        if let (true, Some(at)) = (is_live(state), next) {
            self.due.insert((at, id.clone()));
        }
        if state != DeliveryState::InFlight {
            row.lease = None;
        }
    }

    /// Cancels every pending or in-flight row of `client`; returns how many.
    fn cancel_client_rows(&mut self, client: &ClientId, now: DateTime<Utc>) -> u64 {
        let ids: Vec<DeliveryId> = self
            .due
            .iter()
            .filter(|(_, id)| {
                self.rows
                    .get(id)
                    .is_some_and(|r| &r.delivery.client_id == client)
            })
            .map(|(_, id)| id.clone())
            .collect();
        for id in &ids {
            self.schedule(id, DeliveryState::Cancelled, None, now);
        }
        ids.len() as u64
    }

    /// The registration of `client` if rows for it may be claimed now.
    fn claimable_client(&self, client: &ClientId) -> Option<&RelyingParty> {
        self.clients
            .get(client)
            .filter(|c| !c.paused && c.logout_url().is_some())
    }
}
