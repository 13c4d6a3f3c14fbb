//! Where a verifier gets the OP's JWKS: a file, or a `jwks_uri` fetched over HTTPS (plain
//! HTTP only on loopback), refetched when a token names an unknown `kid` (spec §2.6 step 2
//! lets an RP refresh keys on rotation).
//!
//! Refetches are single flight and rate-limited: at most one runs at a time, and one starts
//! at most once per refetch interval ([`DEFAULT_REFETCH_INTERVAL`]) counted from the start of
//! the previous attempt, whether it succeeded or not, so a failing or hanging JWKS server is
//! not hammered. Each fetch is bounded by a timeout ([`DEFAULT_FETCH_TIMEOUT`]). The keys in
//! use sit behind a lock that is never held across a fetch: tokens signed with a known key
//! are verified at once while a refetch is in flight.

use super::{VerifiedToken, VerifyError, VerifyOptions, verify};
use crate::keys::Jwks;
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use url::{Host, Url};

/// The shortest time between the starts of two fetches triggered by unknown kids.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest one JWKS fetch may take, from connect to the last body byte.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted, in bytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A JWKS that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The document is not a JWKS.
    #[error("invalid JWKS: {0}")]
    Parse(String),
    /// The URI is not https, or plain http to a non-loopback host.
    #[error("refusing JWKS URI {0}: use https (plain http is allowed only for loopback hosts)")]
    Insecure(String),
    /// The fetch failed.
    #[error("fetching the JWKS from {url} failed: {reason}")]
    Http {
        /// The `jwks_uri`.
        url: String,
        /// What went wrong, with its causes.
        reason: String,
    },
}

enum Origin {
    Fixed,
    File(PathBuf),
    Uri { url: Url, client: reqwest::Client },
}

/// The keys in use, and how many loads replaced them.
struct Loaded {
    jwks: Arc<Jwks>,
    generation: u64,
}

/// A JWKS with its origin and refetch policy.
pub struct JwksSource {
    origin: Origin,
    /// Held only to copy or replace the `Arc`, never across an `.await`.
    keys: RwLock<Loaded>,
    /// Taken for the whole of a refetch, so that refetches are single flight; holds when the
    /// last load was started.
    refetch: tokio::sync::Mutex<Instant>,
    refetch_interval: Duration,
    fetch_timeout: Duration,
    fetches: AtomicU64,
    attempts: AtomicU64,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = match &self.origin {
            Origin::Fixed => "fixed".to_owned(),
            Origin::File(path) => path.display().to_string(),
            Origin::Uri { url, .. } => url.to_string(),
        };
        write!(f, "JwksSource({origin})")
    }
}

/// True for `https`, and for `http` to `localhost` or a loopback address.
pub(super) fn uri_allowed(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn parse_jwks(bytes: &[u8]) -> Result<Jwks, JwksError> {
    serde_json::from_slice(bytes).map_err(|e| JwksError::Parse(e.to_string()))
}

fn read_file(path: &Path) -> Result<Jwks, JwksError> {
    let bytes = std::fs::read(path).map_err(|source| JwksError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_jwks(&bytes)
}

async fn fetch(client: &reqwest::Client, url: &Url, limit: Duration) -> Result<Jwks, JwksError> {
    let failed = |reason: String| JwksError::Http {
        url: url.to_string(),
        reason,
    };
    match tokio::time::timeout(limit, fetch_body(client, url)).await {
        Ok(Ok(body)) => parse_jwks(&body),
        Ok(Err(reason)) => Err(failed(reason)),
        Err(_elapsed) => Err(failed(format!("no complete answer within {limit:?}"))),
    }
}

async fn fetch_body(client: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
    let http = |e: reqwest::Error| crate::error::chain(&e.without_url()).to_string();
    let mut response = client.get(url.clone()).send().await.map_err(http)?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("body larger than {MAX_JWKS_BYTES} bytes"));
        }
    }
    Ok(body)
}

impl JwksSource {
    fn new(origin: Origin, jwks: Jwks) -> Self {
        Self {
            origin,
            keys: RwLock::new(Loaded {
                jwks: Arc::new(jwks),
                generation: 0,
            }),
            refetch: tokio::sync::Mutex::new(Instant::now()),
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            fetches: AtomicU64::new(1),
            attempts: AtomicU64::new(1),
        }
    }

    /// A fixed JWKS that never changes.
    pub fn fixed(jwks: Jwks) -> Self {
        Self::new(Origin::Fixed, jwks)
    }

    /// Loads a JWKS file; [`JwksSource::refresh`] re-reads it.
    pub fn from_file(path: &Path) -> Result<Self, JwksError> {
        Ok(Self::new(Origin::File(path.to_owned()), read_file(path)?))
    }

    /// Fetches `uri` once (within [`DEFAULT_FETCH_TIMEOUT`]); later refreshes fetch it again.
    pub async fn from_uri(uri: &str) -> Result<Self, JwksError> {
        let url = Url::parse(uri).map_err(|_| JwksError::Insecure(uri.to_owned()))?;
        if !uri_allowed(&url) {
            return Err(JwksError::Insecure(uri.to_owned()));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| JwksError::Http {
                url: uri.to_owned(),
                reason: e.to_string(),
            })?;
        let jwks = fetch(&client, &url, DEFAULT_FETCH_TIMEOUT).await?;
        Ok(Self::new(Origin::Uri { url, client }, jwks))
    }

    /// Sets the shortest time between the starts of two refetches (default
    /// [`DEFAULT_REFETCH_INTERVAL`]).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Sets the longest time one refetch may take (default [`DEFAULT_FETCH_TIMEOUT`]).
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// How many times the JWKS has been loaded, the first load included.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// How many loads were started, the first one and failed ones included.
    pub fn fetch_attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The current JWKS.
    pub fn current(&self) -> Arc<Jwks> {
        self.snapshot().0
    }

    /// The current JWKS and its generation.
    fn snapshot(&self) -> (Arc<Jwks>, u64) {
        let keys = match self.keys.read() {
            Ok(keys) => keys,
            Err(poisoned) => poisoned.into_inner(),
        };
        (Arc::clone(&keys.jwks), keys.generation)
    }

    fn replace(&self, jwks: Jwks) {
        let mut keys = match self.keys.write() {
            Ok(keys) => keys,
            Err(poisoned) => poisoned.into_inner(),
        };
        keys.jwks = Arc::new(jwks);
        keys.generation += 1;
    }

    /// Reloads the JWKS unless the last load started less than the refetch interval ago.
    /// Returns true when newer keys are in use.
    pub async fn refresh(&self) -> Result<bool, JwksError> {
        let (_, generation) = self.snapshot();
        self.refresh_after(generation).await
    }

    /// Reloads the keys that were at `seen`, unless another caller replaced them meanwhile
    /// (then returns true at once) or the interval has not passed since the last attempt.
    async fn refresh_after(&self, seen: u64) -> Result<bool, JwksError> {
        let mut last_start = self.refetch.lock().await;
        if self.snapshot().1 != seen {
            return Ok(true);
        }
        if matches!(self.origin, Origin::Fixed) || last_start.elapsed() < self.refetch_interval {
            return Ok(false);
        }
        // Counted before the load, so that a failed or hanging fetch also waits out the
        // interval before the next one.
        *last_start = Instant::now();
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let jwks = match &self.origin {
            Origin::Fixed => return Ok(false),
            Origin::File(path) => read_file(path)?,
            Origin::Uri { url, client } => fetch(client, url, self.fetch_timeout).await?,
        };
        self.replace(jwks);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// [`verify`] against the current JWKS; on an unknown `kid`, refreshes (rate-limited)
    /// and tries once more.
    pub async fn verify(
        &self,
        token: &str,
        opts: &VerifyOptions,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, Vec<VerifyError>> {
        let (jwks, generation) = self.snapshot();
        let first = verify(token, &jwks, opts, now);
        let unknown_kid = |errors: &[VerifyError]| {
            errors
                .iter()
                .any(|e| matches!(e, VerifyError::UnknownKid(_)))
        };
        match first {
            Err(errors) if unknown_kid(&errors) => match self.refresh_after(generation).await {
                Ok(true) => verify(token, &self.current(), opts, now),
                Ok(false) => Err(errors),
                Err(err) => {
                    tracing::warn!(error = %err, "JWKS refresh after an unknown kid failed");
                    Err(errors)
                }
            },
            other => other,
        }
    }
}
