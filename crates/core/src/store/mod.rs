//! The store: sessions, registered clients and the outbox of deliveries, in one database.
//!
//! # One database
//!
//! Sessions and the outbox share one database, and must: ending a session and writing the
//! delivery rows it owes commit in one transaction, so a crash at any moment leaves either
//! the session active with no rows, or the session ended with every row written. A session
//! store apart from the outbox would need a distributed transaction, or a window in which a
//! logout is lost. A backend therefore supplies all of it, over one database.
//!
//! # Layout
//!
//! - The rules, written once: [`Sessions`] (create, join, change, end) and [`Clients`]
//!   (register, change, delete), over a [`Backend`]; the termination walk is in
//!   [`crate::terminate`]; [`Redrives`] re-drives dead letters, one or in bulk.
//! - What a backend supplies: [`Backend`] (reads, and a write transaction [`Tx`] of small
//!   primitives), and the queries with no rule above them, cut by who uses them: [`Queue`]
//!   (the dispatcher), [`Deliveries`] (the operator), [`Housekeeping`] (retention and expiry)
//!   and [`Health`] (readiness).
//! - Operator events: [`emit`] writes them inside the transaction of their cause (a rule's,
//!   or a backend's own dead-letter write, through the same statement); [`OperatorEvents`]
//!   is the webhook worker's queue and the operator's views.
//! - The SSF transmitter: a session end's SET rows are written by the termination walk in its
//!   own transaction ([`Tx::fanout_streams`], [`Tx::insert_sets`]); [`SsfStore`] keeps the
//!   receivers and streams, and is the SET outbox's push queue, poll and views.
//! - The backends: [`memory`] (the smallest: see how little it needs), `sqlite` (the
//!   embedded default) and `postgres` (several nodes on one database). The two SQL backends
//!   share their rows, their write transaction and the statements both databases run alike
//!   (`sql`); each supplies only what its database words its own way.
//! - Times are kept in whole milliseconds ([`millis`]): the rules hand the backends times at
//!   that precision, so callers need not round what they store.

pub(crate) mod backend;
mod clients;
mod error;
pub(crate) mod memory;
mod operator_events;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod redrive;
mod sessions;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod ssf;
mod terminate;
mod traits;

pub use backend::{Backend, Ending, EndingSet, Lane, Tx};
pub use clients::Clients;
pub use error::{Page, StoreError};
pub use operator_events::{OperatorEvents, emit};
pub use redrive::Redrives;
pub use sessions::Sessions;
pub use ssf::SsfStore;
pub use traits::{ClientHealthStats, Deliveries, Health, Housekeeping, Queue};

use crate::metadata::SessionMetadata;
use crate::operator_events::EventTally;
use chrono::{DateTime, Utc};
use std::borrow::Borrow;
use std::sync::Arc;
use tokio::sync::Notify;

/// The metadata snapshot of the last run of claimed rows, parsed once per run. A session's
/// rows are written together and so lie next to each other in due order; each run of rows
/// with the same stored snapshot (`K` is how a backend returns it) shares one parsed map.
pub(crate) struct SnapshotRuns<K: ?Sized + ToOwned> {
    last: Option<(K::Owned, SessionMetadata)>,
}

impl<K: ?Sized + ToOwned + PartialEq> SnapshotRuns<K> {
    pub(crate) fn new() -> Self {
        Self { last: None }
    }

    /// The map of `stored`: the last one when `stored` is the same, else `parse(stored)`.
    pub(crate) fn get(
        &mut self,
        stored: &K,
        parse: impl FnOnce(&K) -> Result<SessionMetadata, StoreError>,
    ) -> Result<SessionMetadata, StoreError> {
        if let Some((text, metadata)) = &self.last
            && text.borrow() == stored
        {
            return Ok(metadata.clone());
        }
        let metadata = parse(stored)?;
        self.last = Some((stored.to_owned(), metadata.clone()));
        Ok(metadata)
    }
}

/// The seams of one backend, each for the code that uses it, sharing one database.
#[derive(Clone)]
pub struct Stores {
    /// Sessions and their termination (the API, the expiry sweeper).
    pub sessions: Sessions,
    /// Registered clients (the API).
    pub clients: Clients,
    /// The re-drive of dead letters, one or in bulk (the operator).
    pub redrives: Redrives,
    /// The delivery queue (the dispatcher).
    pub queue: Arc<dyn Queue>,
    /// The operator's views of the deliveries.
    pub deliveries: Arc<dyn Deliveries>,
    /// Retention and the expiry schedule.
    pub housekeeping: Arc<dyn Housekeeping>,
    /// Checks the database answers (readiness).
    pub health: Arc<dyn Health>,
    /// Per-client endpoint health and the pause policy.
    pub client_health: Arc<dyn ClientHealthStats>,
    /// Operator events: the webhook worker's queue and the operator's views.
    pub operator_events: Arc<dyn OperatorEvents>,
    /// How many operator events this process wrote, per type.
    pub event_tally: Arc<EventTally>,
    /// The SSF transmitter: receivers, streams and the SET outbox.
    pub ssf: Arc<dyn SsfStore>,
    /// Signalled when SET rows became due (this process's writes, and other nodes' where the
    /// backend can tell): the SET worker and long polls wait on it.
    pub ssf_wake: Arc<Notify>,
}

impl Stores {
    /// Every seam over one backend.
    pub fn over<B>(backend: Arc<B>) -> Self
    where
        B: Backend
            + Queue
            + Deliveries
            + Housekeeping
            + Health
            + ClientHealthStats
            + OperatorEvents
            + SsfStore
            + 'static,
    {
        Self {
            event_tally: backend.event_tally(),
            ssf_wake: backend.sets_wakeup(),
            ssf: backend.clone(),
            operator_events: backend.clone(),
            sessions: Sessions::new(backend.clone()),
            clients: Clients::new(backend.clone()),
            redrives: Redrives::new(backend.clone()),
            queue: backend.clone(),
            deliveries: backend.clone(),
            housekeeping: backend.clone(),
            health: backend.clone(),
            client_health: backend,
        }
    }
}

/// `t` at the precision every store keeps, whole milliseconds: the SQL backends store
/// INTEGER milliseconds, and the memory backend truncates what it is given to match. The
/// rules hand the backends times at this precision, so what they return is what is stored;
/// a caller that shows a time it also stores (the API's responses), or compares one it gave
/// the store with one the store returned, rounds it here.
pub fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Wakes every waiter of `notify`, and leaves a permit for one that is about to wait.
pub(crate) fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

/// Opens the backend named by `url` (`memory://`, `sqlite://PATH`, `postgres://...`),
/// creating and migrating the database as needed.
pub async fn open(url: &str) -> Result<Stores, StoreError> {
    if url == "memory://" || url == "memory" {
        return Ok(memory::MemoryStore::new().into_stores());
    }
    #[cfg(feature = "sqlite")]
    if url.starts_with("sqlite:") {
        return Ok(sqlite::SqliteStore::open(url).await?.into_stores());
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(postgres::PostgresStore::open(url).await?.into_stores());
    }
    Err(StoreError::UnsupportedUrl(redact_url(url)))
}

/// The URL without its password, for error messages ([`crate::config::StoreUrl`]'s redactor).
fn redact_url(url: &str) -> String {
    crate::config::StoreUrl::from(url).redacted()
}
