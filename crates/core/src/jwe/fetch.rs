//! The keys logout tokens are encrypted to: a client's inline `jwks`, or its `jwks_uri`
//! fetched through the sender (SSRF guard, no redirects, timeout, 64 KiB cap) and cached.
//!
//! A fetched JWK Set is kept for its `Cache-Control: max-age`, clamped to
//! [`MIN_JWKS_TTL`]..[`MAX_JWKS_TTL`] ([`DEFAULT_JWKS_TTL`] without one). One fetch per URI
//! runs at a time; the callers that wait for it share its result. When a fetch fails the
//! cached copy, even past its time, keeps being used. A URI is fetched again early, when it
//! holds no usable key, at most once per [`REFETCH_INTERVAL`]; failed fetches are bound by
//! the same interval, so an unreachable `jwks_uri` is asked at most twice a minute per node.

use super::jwk::choose_key;
use super::{KeyAlg, RecipientKey};
use crate::clients::RelyingParty;
use crate::clock::SharedClock;
use crate::sender::Sender;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// The largest JWK Set read from a `jwks_uri`: 64 KiB.
pub const JWKS_MAX_BYTES: usize = 64 * 1024;
/// How long a fetched JWK Set is used when its response has no `max-age`: 5 minutes.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(300);
/// The shortest time a fetched JWK Set is used, whatever its `max-age`: 60 s.
pub const MIN_JWKS_TTL: Duration = Duration::from_secs(60);
/// The longest time a fetched JWK Set is used, whatever its `max-age`: 24 hours.
pub const MAX_JWKS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The least time between two fetches of one `jwks_uri` outside its normal expiry (after a
/// failure, or when it held no usable key): 30 s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// What is known of one `jwks_uri`.
#[derive(Default)]
struct Entry {
    jwks: Option<Arc<Value>>,
    expires_at: Option<DateTime<Utc>>,
    fetched_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    chosen: HashMap<KeyAlg, RecipientKey>,
}

impl Entry {
    fn key(&mut self, alg: KeyAlg) -> Result<RecipientKey, String> {
        if let Some(key) = self.chosen.get(&alg) {
            return Ok(key.clone());
        }
        let jwks = self.jwks.as_ref().ok_or_else(|| {
            self.last_error
                .clone()
                .unwrap_or_else(|| "not fetched".into())
        })?;
        let key = choose_key(jwks, alg)?;
        self.chosen.insert(alg, key.clone());
        Ok(key)
    }

    fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now < at)
    }

    fn may_fetch(&self, now: DateTime<Utc>) -> bool {
        let interval = chrono::Duration::from_std(REFETCH_INTERVAL).unwrap_or_default();
        self.fetched_at.is_none_or(|at| now - at >= interval)
    }
}

/// The encryption keys of clients: cheap to clone, shared by every attempt of a node.
#[derive(Clone)]
pub struct ClientKeys {
    sender: Sender,
    clock: SharedClock,
    entries: Arc<Mutex<HashMap<Url, Arc<tokio::sync::Mutex<Entry>>>>>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys").finish_non_exhaustive()
    }
}

impl ClientKeys {
    /// Fetches through `sender`, reading time from `clock`.
    pub fn new(sender: Sender, clock: SharedClock) -> Self {
        Self {
            sender,
            clock,
            entries: Arc::default(),
        }
    }

    /// The key to encrypt `client`'s tokens to with `alg`, or why there is none (the text
    /// is meant for the delivery's `last_error`).
    pub async fn recipient(
        &self,
        client: &RelyingParty,
        alg: KeyAlg,
    ) -> Result<RecipientKey, String> {
        if let Some(jwks) = &client.encryption.jwks {
            return choose_key(jwks, alg).map_err(|why| {
                format!("no usable encryption key for {alg} in the registered jwks: {why}")
            });
        }
        let Some(uri) = &client.encryption.jwks_uri else {
            return Err(format!(
                "no usable encryption key for {alg}: the client has no jwks_uri or jwks"
            ));
        };
        self.fetched_key(uri, alg)
            .await
            .map_err(|why| format!("no usable encryption key for {alg} at {uri}: {why}"))
    }

    fn entry(&self, uri: &Url) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.entry(uri.clone()).or_default().clone()
    }

    async fn fetched_key(&self, uri: &Url, alg: KeyAlg) -> Result<RecipientKey, String> {
        let entry = self.entry(uri);
        // Held across the fetch: concurrent attempts for this URI wait and share its result.
        let mut entry = entry.lock().await;
        let now = self.clock.now();
        if entry.fresh(now)
            && let Ok(key) = entry.key(alg)
        {
            return Ok(key);
        }
        if entry.may_fetch(now) {
            self.refresh(&mut entry, uri, now).await;
        }
        entry.key(alg)
    }

    async fn refresh(&self, entry: &mut Entry, uri: &Url, now: DateTime<Utc>) {
        entry.fetched_at = Some(now);
        let fetched = self.sender.get_json(uri, JWKS_MAX_BYTES).await;
        let parsed = fetched.and_then(|doc| {
            let jwks: Value = serde_json::from_slice(&doc.body)
                .map_err(|_| "the response is not JSON".to_owned())?;
            if !jwks.get("keys").is_some_and(Value::is_array) {
                return Err("the response is not a JWK Set".to_owned());
            }
            Ok((jwks, doc.max_age))
        });
        match parsed {
            Ok((jwks, max_age)) => {
                let ttl = max_age
                    .unwrap_or(DEFAULT_JWKS_TTL)
                    .clamp(MIN_JWKS_TTL, MAX_JWKS_TTL);
                entry.jwks = Some(Arc::new(jwks));
                entry.expires_at = Some(now + chrono::Duration::from_std(ttl).unwrap_or_default());
                entry.last_error = None;
                entry.chosen.clear();
            }
            Err(why) => {
                // The cached copy, if any, keeps being used.
                entry.last_error = Some(why);
            }
        }
    }
}
