//! What the store returns besides its data: a page of a listing, and why an operation failed.

use crate::metadata::MetadataError;
use serde::Serialize;

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
