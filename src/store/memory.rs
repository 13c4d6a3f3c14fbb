//! (stub) In-memory backend.
use super::Stores;

/// In-memory store.
#[derive(Default)]
pub struct MemoryStore;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self
    }

    /// The three trait objects.
    pub fn into_stores(self) -> Stores {
        todo!()
    }
}
