//! [`KeyRing`]: the hot-reloadable [`KeySet`] a running server signs with.
//!
//! `logoutd keys rotate` rewrites the manifest; the server calls [`KeyRing::reload`]
//! periodically and swaps in a new set only when the manifest bytes changed.

use super::{KeyError, KeySet, store};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The loaded set plus the manifest bytes it came from.
#[derive(Debug)]
struct Loaded {
    set: Arc<KeySet>,
    manifest: Option<Vec<u8>>,
}

/// A shared, swappable `Arc<KeySet>`. Readers take the lock only to clone the `Arc`.
#[derive(Debug)]
pub struct KeyRing {
    loaded: RwLock<Loaded>,
}

impl KeyRing {
    /// Loads `dir` once.
    pub fn load(dir: &Path, now: DateTime<Utc>) -> Result<Self, KeyError> {
        let manifest = store::read_manifest_bytes(dir)?;
        let set = Self::parse(dir, manifest.as_deref(), now)?;
        Ok(Self {
            loaded: RwLock::new(Loaded {
                set: Arc::new(set),
                manifest,
            }),
        })
    }

    /// Wraps an already loaded set; the first [`KeyRing::reload`] then reads the directory.
    pub fn from_set(set: KeySet) -> Self {
        Self {
            loaded: RwLock::new(Loaded {
                set: Arc::new(set),
                manifest: None,
            }),
        }
    }

    fn parse(dir: &Path, bytes: Option<&[u8]>, now: DateTime<Utc>) -> Result<KeySet, KeyError> {
        let manifest = match bytes {
            Some(bytes) => store::parse_manifest(dir, bytes)?,
            None => store::Manifest::default(),
        };
        KeySet::from_manifest(dir, &manifest, now)
    }

    /// The current set.
    pub fn current(&self) -> Arc<KeySet> {
        match self.loaded.read() {
            Ok(loaded) => Arc::clone(&loaded.set),
            Err(poisoned) => Arc::clone(&poisoned.into_inner().set),
        }
    }

    /// Reloads `dir` if its manifest changed since the last load. Returns true when a new
    /// set was swapped in. On error the current set stays in use.
    pub fn reload(&self, dir: &Path, now: DateTime<Utc>) -> Result<bool, KeyError> {
        let bytes = store::read_manifest_bytes(dir)?;
        let unchanged = match self.loaded.read() {
            Ok(loaded) => loaded.manifest == bytes,
            Err(poisoned) => poisoned.into_inner().manifest == bytes,
        };
        if unchanged {
            return Ok(false);
        }
        let set = Arc::new(Self::parse(dir, bytes.as_deref(), now)?);
        let mut loaded = match self.loaded.write() {
            Ok(loaded) => loaded,
            Err(poisoned) => poisoned.into_inner(),
        };
        *loaded = Loaded {
            set,
            manifest: bytes,
        };
        Ok(true)
    }
}
