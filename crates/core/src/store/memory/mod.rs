//! In-memory backend: one state behind an async mutex. A write transaction holds the mutex
//! until it commits, so every rule above it is atomic; it writes at once and has no rollback,
//! which is why the rules check everything before they write. For tests and embedding;
//! nothing survives a restart.
//!
//! What a backend needs, at its smallest: [`super::Backend`] (begin a transaction, four reads,
//! three wake-ups), the transaction primitives of [`tx`], and the queries of [`super::Queue`],
//! [`super::Deliveries`], [`super::Housekeeping`], [`super::ClientHealthStats`] and
//! [`super::Health`],
//! [`super::OperatorEvents`] and [`super::SsfStore`].

mod clients;
mod events;
mod health;
mod outbox;
mod retention;
mod sessions;
mod sets;
mod ssf;
mod tx;

use super::backend::{Backend, Lane, Tx};
use super::{Health, StoreError, Stores, millis};
use crate::clients::RelyingParty;
use crate::ids::{ClientId, DeliveryId, LeaseId, SessionId, UserId};
use crate::metadata::SessionMetadata;
use crate::outbox::{AttemptRecord, Delivery, DeliveryState, StoredKey};
use crate::session::Session;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard, Notify};

/// In-memory store; [`MemoryStore::into_stores`] shares one instance between the traits.
#[derive(Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    tally: Arc<crate::operator_events::EventTally>,
    wakeup: Arc<Notify>,
    expiry: Arc<Notify>,
    sets_wakeup: Arc<Notify>,
    policy: Arc<crate::health::PolicyCell>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store's seams, sharing this store.
    pub fn into_stores(self) -> Stores {
        Stores::over(Arc::new(self))
    }

    /// The state, once every transaction before this call has committed.
    async fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().await
    }

    /// Wakes every waiting worker, and leaves a permit for one that is about to wait.
    fn notify(&self) {
        wake(&self.wakeup);
    }
}

use super::wake;

/// When a session expires: the earlier of its absolute and idle expiry.
fn expiry(session: &Session) -> Option<DateTime<Utc>> {
    match (session.expires_at, session.idle_expires_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[async_trait]
impl Backend for MemoryStore {
    async fn begin(&self, _lane: Lane) -> Result<Box<dyn Tx + '_>, StoreError> {
        Ok(Box::new(tx::MemoryTx {
            state: self.state.clone().lock_owned().await,
        }))
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.lock().await.sessions.get(id).cloned())
    }

    async fn user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<Session>, StoreError> {
        Ok(sessions::of_user(&*self.lock().await, user, from, take))
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError> {
        Ok(self.lock().await.clients.get(id).cloned())
    }

    async fn clients(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<RelyingParty>, StoreError> {
        Ok(clients::list(&*self.lock().await, from, take))
    }

    fn wake_workers(&self) {
        self.notify();
    }

    fn wake_expiry(&self) {
        wake(&self.expiry);
    }

    fn wake_sets(&self) {
        self.wake_set_workers();
    }

    fn sets_wakeup(&self) -> Arc<Notify> {
        self.sets_wakeup.clone()
    }

    fn event_tally(&self) -> Arc<crate::operator_events::EventTally> {
        self.tally.clone()
    }
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
    /// The idempotency keys of bulk re-drives, with when each expires.
    keys: HashMap<String, (StoredKey, DateTime<Utc>)>,
    /// Each rate-limited client's pacing state.
    pacing: HashMap<ClientId, crate::pacing::PaceState>,
    /// Each client's endpoint-health statistics.
    health: HashMap<ClientId, health::MemHealth>,
    /// The operator events.
    events: BTreeMap<crate::ids::OperatorEventId, events::EventRow>,
    /// The SSF transmitter's receivers, streams and SET rows.
    ssf: ssf::SsfState,
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
    /// Moves row `id` to `state` with `next` as its due time at `now` (both kept in whole
    /// milliseconds), keeping the due index in step. Leaving the in-flight state drops the
    /// lease.
    fn schedule(
        &mut self,
        id: &DeliveryId,
        state: DeliveryState,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let (next, now) = (next.map(millis), millis(now));
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
