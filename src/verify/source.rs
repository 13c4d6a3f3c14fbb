//! Where a verifier gets the OP's JWKS: a file, or a `jwks_uri` fetched over HTTPS (plain
//! HTTP only on loopback), refetched when a token names an unknown `kid`, at most once per
//! [`DEFAULT_REFETCH_INTERVAL`] (spec §2.6 step 2 lets an RP refresh keys on rotation).

use super::{VerifiedToken, VerifyError, VerifyOptions, verify};
use crate::keys::Jwks;
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::{Host, Url};

/// The shortest time between two fetches triggered by unknown kids.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Timeout of one JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
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

struct State {
    jwks: Arc<Jwks>,
    fetched_at: Instant,
}

/// A JWKS with its origin and refetch policy.
pub struct JwksSource {
    origin: Origin,
    state: Mutex<State>,
    refetch_interval: Duration,
    fetches: AtomicU64,
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
pub fn uri_allowed(url: &Url) -> bool {
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

async fn fetch(client: &reqwest::Client, url: &Url) -> Result<Jwks, JwksError> {
    let failed = |reason: String| JwksError::Http {
        url: url.to_string(),
        reason,
    };
    let http = |e: reqwest::Error| failed(crate::api::error::chain(&e.without_url()));
    let mut response = client.get(url.clone()).send().await.map_err(http)?;
    if !response.status().is_success() {
        return Err(failed(format!("status {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JWKS_BYTES {
            return Err(failed(format!("body larger than {MAX_JWKS_BYTES} bytes")));
        }
    }
    parse_jwks(&body)
}

impl JwksSource {
    fn new(origin: Origin, jwks: Jwks) -> Self {
        Self {
            origin,
            state: Mutex::new(State {
                jwks: Arc::new(jwks),
                fetched_at: Instant::now(),
            }),
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            fetches: AtomicU64::new(1),
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

    /// Fetches `uri` once; later refreshes fetch it again.
    pub async fn from_uri(uri: &str) -> Result<Self, JwksError> {
        let url = Url::parse(uri).map_err(|_| JwksError::Insecure(uri.to_owned()))?;
        if !uri_allowed(&url) {
            return Err(JwksError::Insecure(uri.to_owned()));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Http {
                url: uri.to_owned(),
                reason: e.to_string(),
            })?;
        let jwks = fetch(&client, &url).await?;
        Ok(Self::new(Origin::Uri { url, client }, jwks))
    }

    /// Sets the shortest time between refetches (default [`DEFAULT_REFETCH_INTERVAL`]).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How many times the JWKS has been loaded, the first load included.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current JWKS.
    pub async fn current(&self) -> Arc<Jwks> {
        Arc::clone(&self.state.lock().await.jwks)
    }

    /// Reloads the JWKS unless the last load was less than the refetch interval ago.
    /// Returns true when it reloaded.
    pub async fn refresh(&self) -> Result<bool, JwksError> {
        let mut state = self.state.lock().await;
        if state.fetched_at.elapsed() < self.refetch_interval {
            return Ok(false);
        }
        let jwks = match &self.origin {
            Origin::Fixed => return Ok(false),
            Origin::File(path) => read_file(path)?,
            Origin::Uri { url, client } => fetch(client, url).await?,
        };
        *state = State {
            jwks: Arc::new(jwks),
            fetched_at: Instant::now(),
        };
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
        let first = verify(token, &*self.current().await, opts, now);
        let unknown_kid = |errors: &[VerifyError]| {
            errors
                .iter()
                .any(|e| matches!(e, VerifyError::UnknownKid(_)))
        };
        match first {
            Err(errors) if unknown_kid(&errors) => match self.refresh().await {
                Ok(true) => verify(token, &*self.current().await, opts, now),
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
