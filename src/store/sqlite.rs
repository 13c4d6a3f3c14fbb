//! (stub) SQLite backend.
use super::{StoreError, Stores};

/// SQLite store.
pub struct SqliteStore;

impl SqliteStore {
    /// Opens and migrates.
    pub async fn open(_url: &str) -> Result<Self, StoreError> {
        todo!()
    }

    /// The three trait objects.
    pub fn into_stores(self) -> Stores {
        todo!()
    }
}
