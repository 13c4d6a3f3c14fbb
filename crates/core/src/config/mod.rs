//! Validated settings for `logoutd serve`, parsed once at start and passed down.
//!
//! Every setting is one field of [`Knobs`], the raw layer: clap fills it from the flags, the
//! optional `logoutd.toml` from its keys and [`Environment`] from the `LOGOUTD_*` variables.
//! [`load`] merges the three (flag over variable over file), and [`Settings::from_knobs`]
//! checks the result once, putting in the defaults below where a knob is unset. The defaults
//! of knobs that other modules own stay there: [`crate::retry`]'s schedule,
//! [`crate::sender::DEFAULT_TIMEOUT`], [`crate::api::DEFAULT_BODY_LIMIT`],
//! [`crate::token::DEFAULT_LIFETIME_SECS`] and [`crate::tokens::DEFAULT_TOKENS_FILE`].

mod env;
mod knobs;
mod secrets;
mod validate;

pub use env::Environment;
pub use knobs::{Knobs, describe_flags};
pub use secrets::ApiToken;
pub(crate) use secrets::StoreUrl;
pub use validate::{default_max_connections, parse_issuer};

use crate::health::HealthPolicy;
use crate::ids::Issuer;
use crate::net_policy::NetPolicy;
use crate::retry::RetryPolicy;
use crate::sender::SenderConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default store: the embedded SQLite database.
pub(crate) const DEFAULT_STORE: &str = "sqlite://data/logoutd.db";
/// Default keys directory.
pub(crate) const DEFAULT_KEYS_DIR: &str = "keys";
/// Default config file, read when present.
pub const DEFAULT_CONFIG_FILE: &str = "logoutd.toml";
/// Default claim lease: a crashed worker's rows come back after this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default cap on attempts in flight across all RPs.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default cap on attempts in flight to one RP origin (scheme, host, port).
pub const DEFAULT_MAX_PER_ORIGIN: usize = 64;
/// How much nicer the delivery threads (signing and POSTs) run than the API and the store's
/// threads: 10. Signing is the bulk of the CPU during a mass logout; at a lower priority it
/// gives way to API requests at once, and still uses every core they leave idle.
pub(crate) const DEFAULT_DELIVERY_NICE: i32 = 10;
/// Default time a client has to send a request's headers: from its connection to the end of
/// its first request's headers, and on a kept-alive connection from a request's first byte to
/// the end of its headers. Well under the 10 s in which the API must answer again after a
/// flood of connections that stall in their headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a kept-alive API connection may wait for its next request; a response the
/// client does not read for this long also closes the connection.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default time a request's body has to arrive, counted from the end of its headers (bodies
/// are at most 64 KiB by default).
pub(crate) const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most API connections open at once by default, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS_CEILING: usize = 4096;
/// Fewest API connections by default, however low the descriptor limit.
pub const MAX_CONNECTIONS_FLOOR: usize = 16;
/// Largest connection cap accepted from the configuration.
pub(crate) const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;
/// Default time `serve` waits for API connections to finish after SIGTERM before it closes
/// the rest; delivery attempts in flight are finished or handed back regardless.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default cap on requests waiting for their RPs at once (`wait_ms`, see
/// [`crate::api::MAX_WAIT_MS`]); a request that finds none free answers without waiting.
pub const DEFAULT_MAX_WAITING_REQUESTS: usize = 256;
/// Whether `serve` runs the dispatcher by default. A node with it off serves the API only and
/// leaves the deliveries to the other nodes on its PostgreSQL database.
pub(crate) const DEFAULT_DISPATCH: bool = true;
/// Default age after which delivered and cancelled rows and ended sessions are pruned.
pub(crate) const DEFAULT_RETENTION_DAYS: u64 = 7;
/// Whether sessions past their `expires_at` or `idle_expires_at` are ended by default (with
/// `session-expired`).
pub(crate) const DEFAULT_EXPIRY_SWEEP: bool = true;
/// Whether the SSF transmitter is on by default: off.
pub(crate) const DEFAULT_SSF: bool = false;
/// Logout tokens carry no `txn` unless the operator asks for it.
pub(crate) const DEFAULT_LOGOUT_TOKEN_TXN: bool = false;
/// Longest lease of a SET handed out by a poll: a day.
pub(crate) const MAX_SSF_POLL_LEASE: Duration = Duration::from_secs(86_400);
/// How long a failing client goes without a success before the health policy, when on,
/// pauses it: 6 hours.
pub(crate) const DEFAULT_HEALTH_PAUSE_AFTER: Duration = Duration::from_secs(6 * 3600);
/// How often the pruner runs.
pub(crate) const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

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
    /// A `LOGOUTD_*` variable (or a merged value) does not read as its setting's type.
    #[error("invalid setting {name}: {reason}")]
    Unreadable {
        /// The variable, or the key.
        name: String,
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

/// Dispatcher tuning.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Whether this process delivers at all ([`DEFAULT_DISPATCH`]).
    pub enabled: bool,
    /// Claim lease.
    pub lease: Duration,
    /// Global in-flight cap.
    pub max_in_flight: usize,
    /// Per-origin in-flight cap.
    pub max_per_origin: usize,
    /// Logout token lifetime (1..=120 s).
    pub token_lifetime: Duration,
    /// Whether logout tokens carry the session end's `txn` ([`DEFAULT_LOGOUT_TOKEN_TXN`]).
    pub logout_token_txn: bool,
    /// The retry schedule and budgets.
    pub retry: RetryPolicy,
    /// How much nicer (0-19) the delivery threads run than the rest of the process.
    pub delivery_nice: i32,
    /// The health pause policy; `None` (the default) leaves failing clients unpaused.
    pub health_policy: Option<HealthPolicy>,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_DISPATCH,
            lease: DEFAULT_LEASE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_per_origin: DEFAULT_MAX_PER_ORIGIN,
            token_lifetime: Duration::from_secs(crate::token::DEFAULT_LIFETIME_SECS.unsigned_abs()),
            logout_token_txn: DEFAULT_LOGOUT_TOKEN_TXN,
            retry: RetryPolicy::default(),
            delivery_nice: DEFAULT_DELIVERY_NICE,
            health_policy: None,
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
    /// End requests waiting for their RPs at once ([`DEFAULT_MAX_WAITING_REQUESTS`]); 0 turns
    /// waiting off.
    pub max_waiting_requests: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: default_max_connections(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_waiting_requests: DEFAULT_MAX_WAITING_REQUESTS,
        }
    }
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
            expiry_sweep: DEFAULT_EXPIRY_SWEEP,
            retention: Duration::from_secs(DEFAULT_RETENTION_DAYS * 86_400),
            prune_interval: DEFAULT_PRUNE_INTERVAL,
        }
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Issuer identifier (`iss`).
    pub issuer: Issuer,
    /// Store URL; its password shows only through [`StoreUrl::expose`].
    pub store: StoreUrl,
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
    /// Where operator events are sent, if anywhere.
    pub operator_webhook: Option<OperatorWebhook>,
    /// Whether the SSF transmitter's routes are served ([`DEFAULT_SSF`]).
    pub ssf: bool,
    /// How long a SET handed out by a poll waits for its ack before a later poll hands it
    /// out again ([`crate::api::DEFAULT_POLL_LEASE`], at most [`MAX_SSF_POLL_LEASE`]).
    pub ssf_poll_lease: Duration,
}

/// The operator webhook: its URL (checked with the RP URL policy) and signing secret.
#[derive(Debug, Clone)]
pub struct OperatorWebhook {
    /// Where events are POSTed.
    pub url: url::Url,
    /// The Standard Webhooks signing secret; `Debug` shows `[redacted]`.
    pub secret: crate::operator_events::WebhookSecret,
}

/// Reads `logoutd serve`'s settings: `flags` over the `LOGOUTD_*` variables in `env` over the
/// config file (`config`, else `LOGOUTD_CONFIG`, else [`DEFAULT_CONFIG_FILE`] when present),
/// merged once into [`Knobs`] and checked once into [`Settings`].
pub fn load(
    flags: Knobs,
    config: Option<PathBuf>,
    dev: bool,
    env: &Environment,
) -> Result<Settings, ConfigError> {
    let (path, explicit) = match config.or_else(|| env.config_file()) {
        Some(path) => (path, true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let file = Knobs::from_file(&path, explicit)?;
    let knobs = Knobs::merge(file, Knobs::from_env(env)?, flags)?;
    Settings::from_knobs(knobs, dev, env)
}

#[cfg(test)]
mod tests;
