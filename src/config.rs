//! Validated settings for `logoutd serve`, merged from `logoutd.toml`, `LOGOUTD_*` variables
//! and flags (in increasing precedence). Parsed once at start and passed down.

use crate::ids::Issuer;
use crate::net_policy::NetPolicy;
use crate::retry::{self, RetryPolicy};
use crate::sender::SenderConfig;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default store: the embedded SQLite database.
pub const DEFAULT_STORE: &str = "sqlite://data/logoutd.db";
/// Default keys directory.
pub const DEFAULT_KEYS_DIR: &str = "keys";
/// Default config file, read when present.
pub const DEFAULT_CONFIG_FILE: &str = "logoutd.toml";
/// Default claim lease: a crashed worker's rows come back after this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default cap on attempts in flight across all RPs.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default cap on attempts in flight to one RP origin (scheme, host, port).
pub const DEFAULT_MAX_PER_ORIGIN: usize = 64;
/// How much nicer the delivery threads (signing and POSTs) run than the API and the store's
/// threads: 10. Signing is the bulk of the CPU during a mass logout; at a lower priority it
/// gives way to API requests at once, and still uses every core they leave idle.
pub const DEFAULT_DELIVERY_NICE: i32 = 10;
/// Default logout token lifetime in seconds (also the maximum, spec errata).
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 120;
/// Default time a client has to send a request's headers: from its connection to the end of
/// its first request's headers, and on a kept-alive connection from a request's first byte to
/// the end of its headers. Well under the 10 s in which the API must answer again after a
/// flood of connections that stall in their headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a kept-alive API connection may wait for its next request; a response the
/// client does not read for this long also closes the connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default time a request's body has to arrive, counted from the end of its headers (bodies
/// are at most 64 KiB by default).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most API connections open at once by default, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS_CEILING: usize = 4096;
/// Fewest API connections by default, however low the descriptor limit.
pub const MAX_CONNECTIONS_FLOOR: usize = 16;
/// Largest connection cap accepted from the configuration.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;
/// Default time `serve` waits for API connections to finish after SIGTERM before it closes
/// the rest; delivery attempts in flight are finished or handed back regardless.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default age after which delivered and cancelled rows and ended sessions are pruned.
pub const DEFAULT_RETENTION_DAYS: u64 = 7;
/// How often the pruner runs.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The optional `logoutd.toml`; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--issuer`.
    pub issuer: Option<String>,
    /// `--store`.
    pub store: Option<String>,
    /// `--keys-dir`.
    pub keys_dir: Option<PathBuf>,
    /// `--allow-insecure-rp-urls`.
    pub allow_insecure_rp_urls: Option<bool>,
    /// `--allow-loose-key-permissions`.
    pub allow_loose_key_permissions: Option<bool>,
    /// A file holding the API bearer token.
    pub api_token_file: Option<PathBuf>,
    /// `--api-tokens-file`: the scoped tokens (hashes) that `logoutd tokens` manages.
    pub api_tokens_file: Option<PathBuf>,
    /// Request body cap.
    pub body_limit_bytes: Option<usize>,
    /// Claim lease.
    pub lease_seconds: Option<u64>,
    /// Per-attempt timeout.
    pub attempt_timeout_ms: Option<u64>,
    /// Global in-flight cap.
    pub max_in_flight: Option<usize>,
    /// Per-origin in-flight cap.
    pub max_per_origin: Option<usize>,
    /// Retry: attempts before the dead letter.
    pub max_attempts: Option<u32>,
    /// Retry: age budget.
    pub max_age_seconds: Option<u64>,
    /// Retry: first delay ceiling.
    pub retry_base_ms: Option<u64>,
    /// Retry: largest delay.
    pub retry_cap_ms: Option<u64>,
    /// Logout token lifetime.
    pub token_lifetime_seconds: Option<u64>,
    /// Days delivered/cancelled rows and ended sessions are kept.
    pub retention_days: Option<u64>,
    /// Whether expired sessions are ended by the sweeper (default true).
    pub expiry_sweep: Option<bool>,
    /// How much nicer the delivery threads run than the API's.
    pub delivery_nice: Option<i32>,
    /// Time to send a request's headers, in milliseconds.
    pub header_read_timeout_ms: Option<u64>,
    /// Time a kept-alive connection may wait for its next request, in milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// Time to send a request's body, in milliseconds.
    pub body_read_timeout_ms: Option<u64>,
    /// Most API connections open at once.
    pub max_connections: Option<usize>,
    /// Time API connections get to finish after SIGTERM, in milliseconds.
    pub shutdown_grace_ms: Option<u64>,
}

impl FileConfig {
    /// Reads `path`; a missing default file is an empty config, a missing explicit one an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(e) => Err(ConfigError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file is unreadable or invalid.
    #[error("config file {path:?}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No API token and no `--dev`.
    #[error(
        "no API token: set LOGOUTD_API_TOKEN (or api_token_file), add one with `logoutd tokens add`, or pass --dev for a generated one"
    )]
    NoApiToken,
    /// The configured API token is too weak to guard the API.
    #[error("{0}")]
    WeakApiToken(String),
    /// The scoped token file cannot be used.
    #[error(transparent)]
    Tokens(#[from] crate::tokens::TokenFileError),
}

/// The management API bearer token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([redacted])")
    }
}

impl Drop for ApiToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Dispatcher tuning.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Claim lease.
    pub lease: Duration,
    /// Global in-flight cap.
    pub max_in_flight: usize,
    /// Per-origin in-flight cap.
    pub max_per_origin: usize,
    /// Logout token lifetime (1..=120 s).
    pub token_lifetime: Duration,
    /// The retry schedule and budgets.
    pub retry: RetryPolicy,
    /// How much nicer (0-19) the delivery threads run than the rest of the process.
    pub delivery_nice: i32,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            lease: DEFAULT_LEASE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_per_origin: DEFAULT_MAX_PER_ORIGIN,
            token_lifetime: Duration::from_secs(DEFAULT_TOKEN_LIFETIME_SECS),
            retry: RetryPolicy::default(),
            delivery_nice: DEFAULT_DELIVERY_NICE,
        }
    }
}

/// How the API treats its connections (see `server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// [`DEFAULT_BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// Connections past this many are answered 503 and closed ([`default_max_connections`]).
    pub max_connections: usize,
    /// [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: default_max_connections(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// The default cap on API connections: half the process's soft descriptor limit
/// (`RLIMIT_NOFILE`), so that connections can never take the descriptors that the store, the
/// key reloads and the deliveries need, within [`MAX_CONNECTIONS_FLOOR`] and
/// [`MAX_CONNECTIONS_CEILING`].
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    connections_for_descriptors(soft)
}

/// Half of `soft` descriptors (no limit: the ceiling), within the floor and the ceiling.
fn connections_for_descriptors(soft: Option<u64>) -> usize {
    let half = soft.map_or(MAX_CONNECTIONS_CEILING, |n| {
        usize::try_from(n / 2).unwrap_or(MAX_CONNECTIONS_CEILING)
    });
    half.clamp(MAX_CONNECTIONS_FLOOR, MAX_CONNECTIONS_CEILING)
}

/// Background housekeeping: the expiry sweeper and the pruner.
#[derive(Debug, Clone)]
pub struct HousekeepingSettings {
    /// End sessions when their `expires_at` or `idle_expires_at` passes.
    pub expiry_sweep: bool,
    /// Age after which delivered and cancelled rows and ended sessions are pruned.
    pub retention: Duration,
    /// How often the pruner runs.
    pub prune_interval: Duration,
}

impl Default for HousekeepingSettings {
    fn default() -> Self {
        Self {
            expiry_sweep: true,
            retention: retention(None).unwrap_or(Duration::from_secs(7 * 86_400)),
            prune_interval: DEFAULT_PRUNE_INTERVAL,
        }
    }
}

/// Checks a delivery niceness: 0 (the API's priority) to 19 (the lowest).
pub fn delivery_nice(value: Option<i32>) -> Result<i32, ConfigError> {
    let nice = value.unwrap_or(DEFAULT_DELIVERY_NICE);
    if !(0..=19).contains(&nice) {
        return Err(invalid("delivery_nice", "must be between 0 and 19"));
    }
    Ok(nice)
}

/// Checks a retention age in days: at least one.
pub fn retention(days: Option<u64>) -> Result<Duration, ConfigError> {
    let days = days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if days == 0 {
        return Err(invalid("retention_days", "must be at least 1"));
    }
    days.checked_mul(86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| invalid("retention_days", "is too large"))
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Issuer identifier (`iss`).
    pub issuer: Issuer,
    /// Store URL.
    pub store: String,
    /// Keys directory.
    pub keys_dir: PathBuf,
    /// Whether a keys directory or key file open to other users is used anyway.
    pub allow_loose_key_permissions: bool,
    /// URL and connect policy.
    pub net: NetPolicy,
    /// Request body cap.
    pub body_limit: usize,
    /// The single configured API token (admin scope), if any.
    pub api_token: Option<ApiToken>,
    /// The scoped API tokens' file, read at start and whenever it changes.
    pub api_tokens_file: PathBuf,
    /// Whether the token was generated by `--dev`.
    pub dev: bool,
    /// Dispatcher tuning.
    pub dispatch: DispatchSettings,
    /// Sender settings.
    pub sender: SenderConfig,
    /// Expiry sweeper and pruner.
    pub housekeeping: HousekeepingSettings,
    /// API connection limits and the shutdown grace.
    pub http: HttpSettings,
}

fn invalid(name: &'static str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

/// Parses a listen address.
pub fn parse_listen(raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.parse()
        .map_err(|_| invalid("listen", format!("{raw:?} is not an IP:port address")))
}

/// Checks an issuer: an absolute http(s) URL without query or fragment (OIDC Discovery §3).
pub fn parse_issuer(raw: &str) -> Result<Issuer, ConfigError> {
    let url = url::Url::parse(raw).map_err(|e| invalid("issuer", e))?;
    if !matches!(url.scheme(), "https" | "http")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid(
            "issuer",
            "must be an http(s) URL without query or fragment",
        ));
    }
    Ok(Issuer::new(raw))
}

/// Builds the retry policy from optional overrides.
pub fn retry_policy(
    base_ms: Option<u64>,
    cap_ms: Option<u64>,
    max_attempts: Option<u32>,
    max_age_secs: Option<u64>,
) -> Result<RetryPolicy, ConfigError> {
    RetryPolicy::new(
        base_ms.map_or(retry::DEFAULT_BASE, Duration::from_millis),
        retry::DEFAULT_FACTOR,
        cap_ms.map_or(retry::DEFAULT_CAP, Duration::from_millis),
        max_attempts.unwrap_or(retry::DEFAULT_MAX_ATTEMPTS),
        max_age_secs.map_or(retry::DEFAULT_MAX_AGE, Duration::from_secs),
    )
    .map_err(|e| invalid("retry", e))
}

/// Checks a token lifetime: 1..=120 s.
pub fn token_lifetime(secs: Option<u64>) -> Result<Duration, ConfigError> {
    let secs = secs.unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS);
    if !(1..=DEFAULT_TOKEN_LIFETIME_SECS).contains(&secs) {
        return Err(invalid(
            "token_lifetime_seconds",
            "must be between 1 and 120",
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// A duration in milliseconds that must be at least 1 ms: `value`, else `default`.
pub fn millis(
    name: &'static str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(invalid(name, "must be at least 1")),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// Checks a count that must be at least one.
pub fn positive(name: &'static str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(name, "must be at least 1"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_is_half_the_descriptor_limit_within_bounds() {
        assert_eq!(connections_for_descriptors(Some(256)), 128);
        assert_eq!(connections_for_descriptors(Some(1024)), 512);
        assert_eq!(connections_for_descriptors(Some(10)), MAX_CONNECTIONS_FLOOR);
        assert_eq!(
            connections_for_descriptors(Some(1 << 20)),
            MAX_CONNECTIONS_CEILING
        );
        assert_eq!(connections_for_descriptors(None), MAX_CONNECTIONS_CEILING);
    }

    #[test]
    fn millis_refuses_zero_and_defaults_when_unset() {
        let default = Duration::from_secs(5);
        assert_eq!(millis("x", None, default).unwrap(), default);
        assert_eq!(
            millis("x", Some(200), default).unwrap(),
            Duration::from_millis(200)
        );
        assert!(millis("x", Some(0), default).is_err());
    }

    #[test]
    fn delivery_nice_defaults_to_ten_and_stays_within_0_to_19() {
        assert_eq!(delivery_nice(None).unwrap(), DEFAULT_DELIVERY_NICE);
        assert_eq!(delivery_nice(Some(0)).unwrap(), 0);
        assert_eq!(delivery_nice(Some(19)).unwrap(), 19);
        assert!(delivery_nice(Some(-1)).is_err());
        assert!(delivery_nice(Some(20)).is_err());
    }
}
