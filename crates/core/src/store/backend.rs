//! What a backend supplies for the rules above it: reads, and one write transaction made of
//! small primitives.
//!
//! The rules (an ended session refuses changes, an unknown client is refused, a client left
//! without a URL cancels its pending rows, the termination walk, only a dead letter is
//! re-driven) are written once, in [`super::Sessions`], [`super::Clients`],
//! [`crate::terminate`] and the store's `redrive`, over these primitives.
//! A backend does not decide anything: it reads and writes what it is told, inside the
//! transaction it opened, and takes the locks its concurrency needs (see each method).

use super::StoreError;
use crate::clients::RelyingParty;
use crate::health::PauseState;
use crate::ids::{ClientId, DeliveryId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::operator_events::{EventTally, NewOperatorEvent};
use crate::outbox::{DeliveryState, FailedFilter, IdempotentRequest, NewDelivery, StoredKey};
use crate::session::{Session, SessionClient};
use crate::ssf::{FailedSetFilter, FanoutStream, NewSet};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

/// Whom a write transaction serves, for a backend that orders its writers (SQLite's single
/// writer lets an API write in ahead of queued batch work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// An API request is waiting for it.
    Interactive,
    /// Batch work: a user-wide end, the expiry sweep.
    Bulk,
}

/// The reads and the write transactions of one database.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Starts a write transaction. Dropping it without [`Tx::commit`] rolls it back, except on
    /// a backend that writes at once (the memory backend); the rules therefore check
    /// everything before they write.
    async fn begin(&self, lane: Lane) -> Result<Box<dyn Tx + '_>, StoreError>;

    /// The session, ended or not, as last committed.
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError>;

    /// The user's active sessions ordered by id, after cursor `from`, at most `take` + 1 (the
    /// extra one only says that more remain, see [`super::Page::from_overfetch`]).
    async fn user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<Session>, StoreError>;

    /// One client.
    async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError>;

    /// Clients ordered by client_id, after cursor `from`, at most `take` + 1.
    async fn clients(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<RelyingParty>, StoreError>;

    /// Wakes this process's delivery workers after committed rows became due.
    fn wake_workers(&self);

    /// Wakes the expiry sweeper after a session with an expiry was committed.
    fn wake_expiry(&self);

    /// Wakes this process's SET workers and long polls after committed SET rows became due
    /// (other nodes learn of them from the backend's own announcement, where it has one).
    fn wake_sets(&self);

    /// The signal [`Backend::wake_sets`] gives, also given when another node announces SET
    /// rows (where the backend can tell): what the SET worker and long polls wait on.
    fn sets_wakeup(&self) -> Arc<Notify>;

    /// The count of operator events this process wrote, per type.
    fn event_tally(&self) -> Arc<EventTally>;
}

/// Which sessions one step of a termination ends.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    /// One session.
    Session(&'a SessionId),
    /// The next of a user's active sessions after cursor `after`, in id order: as many as the
    /// backend ends in one transaction.
    User {
        /// The user.
        user: &'a UserId,
        /// The last session id of the previous step (empty at the start).
        after: &'a str,
    },
    /// Up to `limit` active sessions whose absolute or idle expiry is at or before `now`,
    /// those that expired first.
    Expired {
        /// The sweep's time.
        now: DateTime<Utc>,
        /// Most sessions.
        limit: usize,
    },
}

/// The sessions one step of a termination ends, read inside its transaction.
#[derive(Debug, Default)]
pub struct EndingSet {
    /// The sessions that are still active, locked until commit, in id order.
    pub sessions: Vec<Session>,
    /// The current registrations of their clients (deleted ones are absent), locked against
    /// change or deletion until commit.
    pub clients: Vec<RelyingParty>,
    /// For [`Ending::Session`]: whether the session exists at all (ended or not).
    pub found: bool,
    /// For [`Ending::User`]: the cursor of the next step, when this one was full.
    pub next: Option<String>,
}

/// One write transaction: the primitives the rules are written with.
#[async_trait]
pub trait Tx: Send {
    /// The session with its clients, as this transaction sees it, without a lock.
    async fn session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError>;

    /// The session with its clients, locked against every other writer until commit; a
    /// change that waited for the lock sees what the holder committed.
    async fn lock_session(&mut self, id: &SessionId) -> Result<Option<Session>, StoreError>;

    /// The first of `wanted` that is not a registered client.
    async fn first_unknown_client<'a>(
        &mut self,
        wanted: &[&'a ClientId],
    ) -> Result<Option<&'a ClientId>, StoreError>;

    /// Inserts a new session with its client list; `false`, writing nothing, when the id
    /// exists (a concurrent create won).
    async fn insert_session(&mut self, session: &Session) -> Result<bool, StoreError>;

    /// Appends `clients` to the session's list as [`Session::join`] does (a client already
    /// listed keeps its place and takes a new sid when one is given), and sets `updated_at`.
    async fn join(
        &mut self,
        id: &SessionId,
        clients: &[SessionClient],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Replaces the session's metadata and sets `updated_at`.
    async fn set_metadata(
        &mut self,
        id: &SessionId,
        metadata: &SessionMetadata,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Reads and locks the sessions of one termination step, with their clients'
    /// registrations. Two transactions never both see one session active.
    async fn ending(&mut self, which: Ending<'_>) -> Result<EndingSet, StoreError>;

    /// Marks `sessions` ended by `initiator` at `now`, and inserts `rows` pending and due at
    /// their creation time, announcing them to other nodes when there are any. A row whose id
    /// exists (a `user` row an earlier step of the same user-wide end wrote) only has its
    /// `sessions` added to the stored count, in the same statement as the inserts.
    async fn end(
        &mut self,
        sessions: &[Session],
        rows: &[NewDelivery],
        initiator: Initiator,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Registers a client; `false`, writing nothing, when the client_id exists.
    async fn insert_client(&mut self, client: &RelyingParty) -> Result<bool, StoreError>;

    /// Replaces a client's settings, keeping `created_at`; `false` when it does not exist.
    async fn update_client(
        &mut self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The client's pause, locked against every other writer until commit; `None` when it
    /// does not exist.
    async fn client_pause(&mut self, id: &ClientId) -> Result<Option<PauseState>, StoreError>;

    /// Deletes a client; `false` when it does not exist.
    async fn delete_client(&mut self, id: &ClientId) -> Result<bool, StoreError>;

    /// Cancels the client's pending and in-flight rows; returns how many.
    async fn cancel_rows(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The state of delivery row `id`, locked against every other writer until commit.
    async fn delivery_state(
        &mut self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryState>, StoreError>;

    /// Puts delivery row `id` back in the queue: pending, due at `now`, attempts 0, the age
    /// budget counted from `now`, no lease.
    async fn requeue(&mut self, id: &DeliveryId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// The ids of up to `limit` `failed` rows matching `filter` whose id sorts after `after`,
    /// in id order, locked against every other writer until commit.
    async fn failed_rows(
        &mut self,
        filter: &FailedFilter,
        after: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError>;

    /// Stores a new idempotency key, its count 0 and not done; `true` when stored, which
    /// replaces a key that expired by `now`, and `false`, writing nothing, when the key is in
    /// use.
    async fn insert_key(
        &mut self,
        key: &IdempotentRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// What idempotency key `key` holds, locked against every other writer until commit.
    async fn lock_key(&mut self, key: &str) -> Result<Option<StoredKey>, StoreError>;

    /// Records under idempotency key `key` the rows its request has re-driven so far, and
    /// whether it finished.
    async fn update_key(
        &mut self,
        key: &str,
        redriven: u64,
        done: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Makes the client's pending rows due at `now` with a fresh budget (attempts 0, the age
    /// budget counted from `now`), and restarts its failure streak: what resuming a paused
    /// client does. Returns how many rows.
    async fn release_held(&mut self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Inserts operator events, pending and due at their creation time, their age budget
    /// counted from then (see [`super::emit`]).
    async fn insert_operator_events(
        &mut self,
        events: &[NewOperatorEvent],
    ) -> Result<(), StoreError>;

    /// The enabled and paused SSF streams with their receivers' scope, client and metadata
    /// opt-in, and whether `session-revoked` is among their `events_delivered` (read for the
    /// fan-out of a session end), kept from a status change or deletion until commit.
    async fn fanout_streams(&mut self) -> Result<Vec<FanoutStream>, StoreError>;

    /// Inserts SET rows, pending and due at their creation time, their age budget counted
    /// from then, announcing them to other nodes at commit.
    async fn insert_sets(&mut self, rows: &[NewSet]) -> Result<(), StoreError>;

    /// The ids of up to `limit` `failed` SET rows matching `filter` whose id sorts after
    /// `after`, in id order, locked against every other writer until commit.
    async fn failed_sets(
        &mut self,
        filter: &FailedSetFilter,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Puts failed SET rows `ids` back in the queue: pending, due at `now`, attempts 0, the
    /// age budget counted from `now`, no lease, their `jti` kept; announces them to other
    /// nodes at commit when there are any.
    async fn requeue_sets(&mut self, ids: &[String], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Tells other nodes, at commit, that rows may have become claimable (a client resumed).
    async fn announce(&mut self) -> Result<(), StoreError>;

    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
