//! `logoutd serve`: flags and environment, resolved into [`Settings`], then the server.

use crate::clock::{SharedClock, SystemClock};
use crate::config::{
    self, ApiToken, ConfigError, DispatchSettings, FileConfig, HousekeepingSettings, HttpSettings,
    Settings, positive,
};
use crate::keys::{KeyRing, KeySet};
use crate::net_policy::NetPolicy;
use crate::sender::SenderConfig;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Flags of `logoutd serve`. Each overrides its `LOGOUTD_*` variable, which overrides
/// `logoutd.toml`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (TOML; unknown keys are refused). Read when present.
    #[arg(long, env = "LOGOUTD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "LOGOUTD_LISTEN")]
    pub listen: Option<String>,
    /// Issuer identifier, the `iss` of every token [default: http://LISTEN].
    #[arg(long, env = "LOGOUTD_ISSUER")]
    pub issuer: Option<String>,
    /// Store URL: sqlite://PATH, postgres://... or memory:// [default: sqlite://data/logoutd.db].
    #[arg(long, env = "LOGOUTD_STORE")]
    pub store: Option<String>,
    /// Signing keys directory [default: keys].
    #[arg(long, env = "LOGOUTD_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Allow http and loopback/private RP URLs (tests and demos only).
    #[arg(long, env = "LOGOUTD_ALLOW_INSECURE_RP_URLS")]
    pub allow_insecure_rp_urls: bool,
    /// Use a keys directory or key files that other users can read (refused by default).
    #[arg(long, env = "LOGOUTD_ALLOW_LOOSE_KEY_PERMISSIONS")]
    pub allow_loose_key_permissions: bool,
    /// Development mode: generate an API token and print it once.
    #[arg(long)]
    pub dev: bool,
    /// File holding the API bearer token (instead of LOGOUTD_API_TOKEN).
    #[arg(long, env = "LOGOUTD_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// File of scoped API tokens managed by `logoutd tokens` [default: data/api-tokens.json].
    #[arg(long, env = "LOGOUTD_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Claim lease in seconds [default: 30].
    #[arg(long, env = "LOGOUTD_LEASE_SECONDS")]
    pub lease_seconds: Option<u64>,
    /// Per-attempt timeout in milliseconds [default: 5000].
    #[arg(long, env = "LOGOUTD_ATTEMPT_TIMEOUT_MS")]
    pub attempt_timeout_ms: Option<u64>,
    /// Attempts in flight across all RPs [default: 256].
    #[arg(long, env = "LOGOUTD_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Attempts in flight per RP origin [default: 64].
    #[arg(long, env = "LOGOUTD_MAX_PER_ORIGIN")]
    pub max_per_origin: Option<usize>,
    /// Attempts before a delivery is failed [default: 12].
    #[arg(long, env = "LOGOUTD_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// Age budget of a delivery in seconds [default: 86400].
    #[arg(long, env = "LOGOUTD_MAX_AGE_SECONDS")]
    pub max_age_seconds: Option<u64>,
    /// First retry delay ceiling in milliseconds [default: 1000].
    #[arg(long, env = "LOGOUTD_RETRY_BASE_MS")]
    pub retry_base_ms: Option<u64>,
    /// Largest retry delay in milliseconds [default: 300000].
    #[arg(long, env = "LOGOUTD_RETRY_CAP_MS")]
    pub retry_cap_ms: Option<u64>,
    /// Logout token lifetime in seconds, 1-120 [default: 120].
    #[arg(long, env = "LOGOUTD_TOKEN_LIFETIME_SECONDS")]
    pub token_lifetime_seconds: Option<u64>,
    /// Days delivered/cancelled deliveries and ended sessions are kept [default: 7].
    #[arg(long, env = "LOGOUTD_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Whether sessions past their expiry are ended with `session-expired` [default: true].
    #[arg(long, env = "LOGOUTD_EXPIRY_SWEEP", value_name = "BOOL")]
    pub expiry_sweep: Option<bool>,
    /// How much nicer (0-19) the delivery threads run than the API's [default: 10].
    #[arg(long, env = "LOGOUTD_DELIVERY_NICE")]
    pub delivery_nice: Option<i32>,
    /// Time a client has to send a request's headers, in milliseconds [default: 5000].
    #[arg(long, env = "LOGOUTD_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Time a kept-alive API connection may wait for its next request, in milliseconds
    /// [default: 15000].
    #[arg(long, env = "LOGOUTD_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Time a client has to send a request's body, in milliseconds [default: 10000].
    #[arg(long, env = "LOGOUTD_BODY_READ_TIMEOUT_MS")]
    pub body_read_timeout_ms: Option<u64>,
    /// API connections open at once; past it a connection is answered 503 and closed
    /// [default: half the descriptor limit, 16 to 4096].
    #[arg(long, env = "LOGOUTD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time API connections get to finish after SIGTERM, in milliseconds [default: 10000].
    #[arg(long, env = "LOGOUTD_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
}

impl ServeArgs {
    /// Merges flags, environment and the config file into validated settings.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let explicit = self.config.is_some();
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_FILE));
        let file = FileConfig::load(&path, explicit)?;
        let listen = config::parse_listen(
            self.listen
                .as_deref()
                .or(file.listen.as_deref())
                .unwrap_or(config::DEFAULT_LISTEN),
        )?;
        let issuer = match self.issuer.or(file.issuer) {
            Some(raw) => config::parse_issuer(&raw)?,
            None => config::parse_issuer(&format!("http://{listen}"))?,
        };
        let net = NetPolicy {
            allow_insecure: self.allow_insecure_rp_urls
                || file.allow_insecure_rp_urls.unwrap_or(false),
        };
        let token_file = self.api_token_file.or(file.api_token_file);
        let (api_token, dev) = api_token(token_file, self.dev)?;
        let api_tokens_file = self
            .api_tokens_file
            .or(file.api_tokens_file)
            .unwrap_or_else(|| PathBuf::from(crate::tokens::DEFAULT_TOKENS_FILE));
        if api_token.is_none()
            && crate::tokens::TokenFile::load(&api_tokens_file)?
                .tokens
                .is_empty()
        {
            return Err(ConfigError::NoApiToken);
        }
        let max_per_origin = positive(
            "max_per_origin",
            self.max_per_origin
                .or(file.max_per_origin)
                .unwrap_or(config::DEFAULT_MAX_PER_ORIGIN),
        )?;
        let dispatch = DispatchSettings {
            lease: Duration::from_secs(positive_u64(
                "lease_seconds",
                self.lease_seconds.or(file.lease_seconds),
                config::DEFAULT_LEASE.as_secs(),
            )?),
            max_in_flight: positive(
                "max_in_flight",
                self.max_in_flight
                    .or(file.max_in_flight)
                    .unwrap_or(config::DEFAULT_MAX_IN_FLIGHT),
            )?,
            max_per_origin,
            token_lifetime: config::token_lifetime(
                self.token_lifetime_seconds.or(file.token_lifetime_seconds),
            )?,
            retry: config::retry_policy(
                self.retry_base_ms.or(file.retry_base_ms),
                self.retry_cap_ms.or(file.retry_cap_ms),
                self.max_attempts.or(file.max_attempts),
                self.max_age_seconds.or(file.max_age_seconds),
            )?,
            delivery_nice: config::delivery_nice(self.delivery_nice.or(file.delivery_nice))?,
        };
        let sender = SenderConfig {
            timeout: Duration::from_millis(positive_u64(
                "attempt_timeout_ms",
                self.attempt_timeout_ms.or(file.attempt_timeout_ms),
                crate::sender::DEFAULT_TIMEOUT.as_millis() as u64,
            )?),
            policy: net,
            pool_idle_per_host: max_per_origin,
            ..SenderConfig::default()
        };
        let http = HttpSettings {
            header_read_timeout: config::millis(
                "header_read_timeout_ms",
                self.header_read_timeout_ms.or(file.header_read_timeout_ms),
                config::DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            idle_timeout: config::millis(
                "idle_timeout_ms",
                self.idle_timeout_ms.or(file.idle_timeout_ms),
                config::DEFAULT_IDLE_TIMEOUT,
            )?,
            body_read_timeout: config::millis(
                "body_read_timeout_ms",
                self.body_read_timeout_ms.or(file.body_read_timeout_ms),
                config::DEFAULT_BODY_READ_TIMEOUT,
            )?,
            max_connections: connection_cap(self.max_connections.or(file.max_connections))?,
            shutdown_grace: config::millis(
                "shutdown_grace_ms",
                self.shutdown_grace_ms.or(file.shutdown_grace_ms),
                config::DEFAULT_SHUTDOWN_GRACE,
            )?,
        };
        Ok(Settings {
            listen,
            issuer,
            store: self
                .store
                .or(file.store)
                .unwrap_or_else(|| config::DEFAULT_STORE.to_owned()),
            keys_dir: self
                .keys_dir
                .or(file.keys_dir)
                .unwrap_or_else(|| PathBuf::from(config::DEFAULT_KEYS_DIR)),
            net,
            allow_loose_key_permissions: self.allow_loose_key_permissions
                || file.allow_loose_key_permissions.unwrap_or(false),
            body_limit: positive(
                "body_limit_bytes",
                file.body_limit_bytes
                    .unwrap_or(crate::api::DEFAULT_BODY_LIMIT),
            )?,
            api_token,
            api_tokens_file,
            dev,
            dispatch,
            sender,
            housekeeping: HousekeepingSettings {
                expiry_sweep: self.expiry_sweep.or(file.expiry_sweep).unwrap_or(true),
                retention: config::retention(self.retention_days.or(file.retention_days))?,
                prune_interval: config::DEFAULT_PRUNE_INTERVAL,
            },
            http,
        })
    }
}

/// The API connection cap: at least one, at most [`config::MAX_CONNECTIONS_LIMIT`].
fn connection_cap(value: Option<usize>) -> Result<usize, ConfigError> {
    let cap = positive(
        "max_connections",
        value.unwrap_or_else(config::default_max_connections),
    )?;
    if cap > config::MAX_CONNECTIONS_LIMIT {
        return Err(ConfigError::Invalid {
            name: "max_connections",
            reason: format!("must be at most {}", config::MAX_CONNECTIONS_LIMIT),
        });
    }
    Ok(cap)
}

fn positive_u64(name: &'static str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if value == 0 {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(value)
}

/// The single API token: LOGOUTD_API_TOKEN, else the token file, else (with `--dev`) a new
/// one, else none (the scoped token file may still hold some). Outside `--dev` a configured
/// token must be strong ([`crate::tokens::check_strength`]).
fn api_token(file: Option<PathBuf>, dev: bool) -> Result<(Option<ApiToken>, bool), ConfigError> {
    let strong = |token: &str| -> Result<Option<ApiToken>, ConfigError> {
        if !dev {
            crate::tokens::check_strength(token).map_err(ConfigError::WeakApiToken)?;
        }
        Ok(Some(ApiToken::new(token)))
    };
    if let Ok(token) = std::env::var("LOGOUTD_API_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok((strong(token.trim())?, false));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if text.trim().is_empty() {
            return Err(ConfigError::NoApiToken);
        }
        return Ok((strong(text.trim())?, false));
    }
    if dev {
        return Ok((Some(ApiToken::new(crate::ids::random_secret())), true));
    }
    Ok((None, false))
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.resolve()?;
    let clock: SharedClock = Arc::new(SystemClock);
    if !settings.allow_loose_key_permissions {
        crate::keys::store::check_permissions(&settings.keys_dir)?;
    }
    let (_, created) = KeySet::load_or_create_default(&settings.keys_dir, clock.now())?;
    if created {
        tracing::warn!(dir = %settings.keys_dir.display(), "no signing key found; generated an RS256 key");
    }
    // Loaded through the ring so it remembers the manifest it read and reloads only on change.
    let keys = Arc::new(KeyRing::load(&settings.keys_dir, clock.now())?);
    let stores = crate::store::open(&settings.store).await?;
    let mut settings = settings;
    let listener = bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    if settings.issuer.as_str() == format!("http://{}", settings.listen) {
        // The default issuer names the address actually bound (port 0 picks one).
        settings.issuer = config::parse_issuer(&format!("http://{addr}"))?;
    }
    if settings.dev
        && let Some(token) = &settings.api_token
    {
        tracing::warn!("development mode: a generated API token is printed once on stdout");
        crate::outln!("LOGOUTD_API_TOKEN={}", token.expose());
    }
    tracing::info!(%addr, issuer = %settings.issuer, store = %redact_store(&settings.store), "logoutd listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let delivery = crate::server::delivery_runtime(settings.dispatch.delivery_nice)?;
    let parts = crate::server::ServerParts {
        settings,
        stores,
        keys,
        clock,
        delivery: Some(delivery.handle().clone()),
    };
    let served = crate::server::run(listener, parts, shutdown).await;
    delivery.shutdown_background();
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Binds the API listener; a failure names the address, and when it is taken, how to pick
/// another.
async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
            " (another process is listening there; stop it or choose another address with \
             --listen or LOGOUTD_LISTEN)"
        } else {
            ""
        };
        anyhow::Error::new(err).context(format!("cannot listen on {addr}{hint}"))
    })
}

/// The store URL without its password.
fn redact_store(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    match super::stop_signal().await {
        Ok(()) => shutdown.cancel(),
        Err(err) => tracing::error!(error = %err, "cannot install signal handlers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn resolve(file: &str, flags: &[&str]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logoutd.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec![
            "logoutd",
            "serve",
            "--dev",
            "--config",
            path.to_str().unwrap(),
        ];
        argv.extend_from_slice(flags);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Serve(args) => args.resolve(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn connection_settings_come_from_the_file_and_flags_override_it() {
        let file = "header_read_timeout_ms = 1500\nidle_timeout_ms = 2500\n\
                    body_read_timeout_ms = 3500\nmax_connections = 7\nshutdown_grace_ms = 4500\n";
        let http = resolve(
            file,
            &["--max-connections", "9", "--idle-timeout-ms", "600"],
        )
        .unwrap()
        .http;
        assert_eq!(
            http,
            HttpSettings {
                header_read_timeout: Duration::from_millis(1500),
                idle_timeout: Duration::from_millis(600),
                body_read_timeout: Duration::from_millis(3500),
                max_connections: 9,
                shutdown_grace: Duration::from_millis(4500),
            }
        );
    }

    #[test]
    fn connection_settings_default_to_the_named_constants() {
        let http = resolve("", &[]).unwrap().http;
        assert_eq!(http, HttpSettings::default());
        assert_eq!(
            http.header_read_timeout,
            config::DEFAULT_HEADER_READ_TIMEOUT
        );
        assert_eq!(http.max_connections, config::default_max_connections());
    }

    #[test]
    fn zero_timeouts_and_caps_are_refused() {
        for flag in [
            "--header-read-timeout-ms",
            "--idle-timeout-ms",
            "--body-read-timeout-ms",
            "--shutdown-grace-ms",
            "--max-connections",
        ] {
            assert!(resolve("", &[flag, "0"]).is_err(), "{flag} 0 accepted");
        }
        assert!(resolve("", &["--max-connections", "2000000"]).is_err());
    }
}
