//! Storage backends behind the three store traits, and how a `--store` URL picks one.

use crate::clients::ClientRegistry;
use crate::metadata::{MetadataError, SessionMetadata};
use crate::outbox::Outbox;
use crate::session::SessionStore;
use serde::Serialize;
use std::borrow::Borrow;
use std::sync::Arc;

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

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

/// One page of a listing, with the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `from` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from a listing fetched with one row more than `take`: the extra row only
    /// says that more remain, and `next` is then the cursor (`key`) of the last item kept.
    pub fn from_overfetch(mut items: Vec<T>, take: usize, key: impl Fn(&T) -> String) -> Self {
        let more = items.len() > take;
        items.truncate(take);
        let next = if more { items.last().map(key) } else { None };
        Self { items, next }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed session, client or delivery does not exist.
    #[error("not found")]
    NotFound,
    /// The session has ended and can no longer change.
    #[error("the session has ended")]
    Ended,
    /// An object with that id already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// A client_id named in the request is not registered.
    #[error("unknown client_id {0:?}")]
    UnknownClient(String),
    /// The change would break a metadata rule.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The store URL is not understood.
    #[error("unsupported store URL {0:?}: use sqlite://PATH, postgres://... or memory://")]
    UnsupportedUrl(String),
    /// The database failed.
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(err))
    }
}

/// The three stores of one backend, sharing one database.
#[derive(Clone)]
pub struct Stores {
    /// Sessions (and termination).
    pub sessions: Arc<dyn SessionStore>,
    /// Registered clients.
    pub clients: Arc<dyn ClientRegistry>,
    /// Delivery rows.
    pub outbox: Arc<dyn Outbox>,
    /// Checks the database answers (readiness).
    pub health: Arc<dyn Health>,
}

/// A readiness probe of the backend.
#[async_trait::async_trait]
pub trait Health: Send + Sync {
    /// `Ok` when the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
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
