//! The checks that turn the merged [`Knobs`] into [`Settings`]: each names the setting it
//! refuses, and puts in the setting's default when it is unset.

use super::*;
use crate::retry;
use crate::token;
use std::fmt;
use std::path::Path;

impl Settings {
    /// Checks `knobs` once into settings; the API token comes from `env`
    /// (`LOGOUTD_API_TOKEN`), else `api_token_file`, else `--dev` (`dev`) generates one.
    pub fn from_knobs(knobs: Knobs, dev: bool, env: &Environment) -> Result<Self, ConfigError> {
        let listen = parse_listen(knobs.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let issuer = match &knobs.issuer {
            Some(raw) => parse_issuer(raw)?,
            None => parse_issuer(&format!("http://{listen}"))?,
        };
        let net = NetPolicy {
            allow_insecure: knobs.allow_insecure_rp_urls,
        };
        let ssf = ssf(knobs.ssf, &issuer, dev || net.allow_insecure)?;
        let (api_token, dev) = api_token(knobs.api_token_file.as_deref(), dev, env)?;
        let api_tokens_file = knobs
            .api_tokens_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::tokens::DEFAULT_TOKENS_FILE));
        require_a_token(api_token.as_ref(), &api_tokens_file)?;
        let dispatch = DispatchSettings::from_knobs(&knobs)?;
        let sender = sender(&knobs, net, dispatch.max_per_origin)?;
        let operator_webhook = operator_webhook(&knobs, net, env)?;
        Ok(Self {
            operator_webhook,
            ssf,
            ssf_poll_lease: ssf_poll_lease(knobs.ssf_poll_lease_seconds)?,
            listen,
            issuer,
            http: HttpSettings::from_knobs(&knobs)?,
            body_limit: positive(
                "body_limit_bytes",
                knobs
                    .body_limit_bytes
                    .unwrap_or(crate::api::DEFAULT_BODY_LIMIT),
            )?,
            housekeeping: HousekeepingSettings::from_knobs(&knobs)?,
            store: knobs.store.unwrap_or_else(|| StoreUrl::from(DEFAULT_STORE)),
            keys_dir: knobs
                .keys_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_KEYS_DIR)),
            net,
            allow_loose_key_permissions: knobs.allow_loose_key_permissions,
            api_token,
            api_tokens_file,
            dev,
            dispatch,
            sender,
        })
    }
}

impl DispatchSettings {
    fn from_knobs(knobs: &Knobs) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: knobs.dispatch.unwrap_or(DEFAULT_DISPATCH),
            max_per_origin: positive(
                "max_per_origin",
                knobs.max_per_origin.unwrap_or(DEFAULT_MAX_PER_ORIGIN),
            )?,
            lease: Duration::from_secs(positive_u64(
                "lease_seconds",
                knobs.lease_seconds,
                DEFAULT_LEASE.as_secs(),
            )?),
            max_in_flight: positive(
                "max_in_flight",
                knobs.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            )?,
            token_lifetime: token_lifetime(knobs.token_lifetime_seconds)?,
            logout_token_txn: knobs.logout_token_txn.unwrap_or(DEFAULT_LOGOUT_TOKEN_TXN),
            retry: retry_policy(
                knobs.retry_base_ms,
                knobs.retry_cap_ms,
                knobs.max_attempts,
                knobs.max_age_seconds,
            )?,
            delivery_nice: delivery_nice(knobs.delivery_nice)?,
            health_policy: health_policy(
                knobs.health_pause_min_failures,
                knobs.health_pause_after_seconds,
            )?,
        })
    }
}

impl HttpSettings {
    fn from_knobs(knobs: &Knobs) -> Result<Self, ConfigError> {
        Ok(Self {
            header_read_timeout: millis(
                "header_read_timeout_ms",
                knobs.header_read_timeout_ms,
                DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            idle_timeout: millis(
                "idle_timeout_ms",
                knobs.idle_timeout_ms,
                DEFAULT_IDLE_TIMEOUT,
            )?,
            body_read_timeout: millis(
                "body_read_timeout_ms",
                knobs.body_read_timeout_ms,
                DEFAULT_BODY_READ_TIMEOUT,
            )?,
            max_connections: connection_cap(knobs.max_connections)?,
            shutdown_grace: millis(
                "shutdown_grace_ms",
                knobs.shutdown_grace_ms,
                DEFAULT_SHUTDOWN_GRACE,
            )?,
            max_waiting_requests: knobs
                .max_waiting_requests
                .unwrap_or(DEFAULT_MAX_WAITING_REQUESTS),
        })
    }
}

impl HousekeepingSettings {
    fn from_knobs(knobs: &Knobs) -> Result<Self, ConfigError> {
        Ok(Self {
            expiry_sweep: knobs.expiry_sweep.unwrap_or(DEFAULT_EXPIRY_SWEEP),
            retention: retention(knobs.retention_days)?,
            prune_interval: DEFAULT_PRUNE_INTERVAL,
        })
    }
}

/// How the dispatcher talks to RPs: the attempt timeout, the URL policy, and as many idle
/// connections kept per RP as attempts may run at once to one.
fn sender(
    knobs: &Knobs,
    policy: NetPolicy,
    max_per_origin: usize,
) -> Result<SenderConfig, ConfigError> {
    let timeout = positive_u64(
        "attempt_timeout_ms",
        knobs.attempt_timeout_ms,
        millis_of(crate::sender::DEFAULT_TIMEOUT),
    )?;
    Ok(SenderConfig {
        timeout: Duration::from_millis(timeout),
        policy,
        pool_idle_per_host: max_per_origin,
        ..SenderConfig::default()
    })
}

/// Refuses to start with neither the single API token nor a scoped one in `tokens_file`:
/// nobody could call the API.
fn require_a_token(token: Option<&ApiToken>, tokens_file: &Path) -> Result<(), ConfigError> {
    if token.is_none()
        && crate::tokens::TokenFile::load(tokens_file)?
            .tokens
            .is_empty()
    {
        return Err(ConfigError::NoApiToken);
    }
    Ok(())
}

/// The single API token: `LOGOUTD_API_TOKEN`, else the token file, else (with `--dev`) a new
/// one, else none (the scoped token file may still hold some). Outside `--dev` a configured
/// token must be strong ([`crate::tokens::check_strength`]). The flag says whether the token
/// was generated.
fn api_token(
    file: Option<&Path>,
    dev: bool,
    env: &Environment,
) -> Result<(Option<ApiToken>, bool), ConfigError> {
    let strong = |token: &str| -> Result<Option<ApiToken>, ConfigError> {
        if !dev {
            crate::tokens::check_strength(token).map_err(ConfigError::WeakApiToken)?;
        }
        Ok(Some(ApiToken::new(token)))
    };
    if let Some(token) = env.api_token()? {
        return Ok((strong(token)?, false));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
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

/// The operator webhook: its URL under the RP URL policy `net`, and its secret from
/// `LOGOUTD_OPERATOR_WEBHOOK_SECRET`, else `operator_webhook_secret_file`; a URL without a
/// secret, or a secret without a URL, is refused.
fn operator_webhook(
    knobs: &Knobs,
    net: NetPolicy,
    env: &Environment,
) -> Result<Option<OperatorWebhook>, ConfigError> {
    const URL: &str = "operator_webhook_url";
    const SECRET: &str = "operator_webhook_secret";
    let secret = match (
        env.operator_webhook_secret()?,
        &knobs.operator_webhook_secret_file,
    ) {
        (Some(secret), _) => Some(secret.to_owned()),
        (None, Some(path)) => {
            Some(
                std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            )
        }
        (None, None) => None,
    };
    let (raw, secret) = match (&knobs.operator_webhook_url, secret) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err(invalid(SECRET, "is set but operator_webhook_url is not")),
        (Some(_), None) => {
            return Err(invalid(
                URL,
                "needs a secret: set LOGOUTD_OPERATOR_WEBHOOK_SECRET or operator_webhook_secret_file",
            ));
        }
        (Some(raw), Some(secret)) => (raw, secret),
    };
    let url = net.validate_url(raw).map_err(|e| {
        let reason = e
            .to_string()
            .replace("backchannel_logout_urls entries", "the URL");
        invalid(URL, reason)
    })?;
    let secret = crate::operator_events::WebhookSecret::parse(&secret)
        .map_err(|e| invalid(SECRET, e.to_string()))?;
    Ok(Some(OperatorWebhook { url, secret }))
}

/// Whether the SSF transmitter is on: `value`, else [`DEFAULT_SSF`]. Its metadata and every
/// SET carry the issuer, and SSF 1.0 §7.1 wants every endpoint https, so an http issuer is
/// refused unless `insecure_ok` (`--dev` or `allow_insecure_rp_urls`).
pub(super) fn ssf(
    value: Option<bool>,
    issuer: &Issuer,
    insecure_ok: bool,
) -> Result<bool, ConfigError> {
    let on = value.unwrap_or(DEFAULT_SSF);
    let https = url::Url::parse(issuer.as_str()).is_ok_and(|url| url.scheme() == "https");
    if on && !insecure_ok && !https {
        return Err(invalid(
            "ssf",
            "needs an https issuer (SSF 1.0 §7.1: every transmitter endpoint is https); set \
             --issuer to an https URL, or pass --dev or --allow-insecure-rp-urls for tests and \
             demos",
        ));
    }
    Ok(on)
}

/// Checks the lease of a SET handed out by a poll: 1 s to [`MAX_SSF_POLL_LEASE`], by default
/// [`crate::api::DEFAULT_POLL_LEASE`]. A lease shorter than a receiver takes to process a batch
/// and poll again only makes it receive the batch twice.
pub(super) fn ssf_poll_lease(secs: Option<u64>) -> Result<Duration, ConfigError> {
    let max = MAX_SSF_POLL_LEASE.as_secs();
    let secs = secs.unwrap_or(crate::api::DEFAULT_POLL_LEASE.as_secs());
    if !(1..=max).contains(&secs) {
        return Err(invalid(
            "ssf_poll_lease_seconds",
            format!("must be between 1 and {max}"),
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// Checks a delivery niceness: 0 (the API's priority) to 19 (the lowest).
pub(super) fn delivery_nice(value: Option<i32>) -> Result<i32, ConfigError> {
    let nice = value.unwrap_or(DEFAULT_DELIVERY_NICE);
    if !(0..=19).contains(&nice) {
        return Err(invalid("delivery_nice", "must be between 0 and 19"));
    }
    Ok(nice)
}

/// The health pause policy: on when `min_failures` is set (at least 1), with `after_secs`
/// (default [`DEFAULT_HEALTH_PAUSE_AFTER`]; 0 pauses on the failures alone).
pub(super) fn health_policy(
    min_failures: Option<u64>,
    after_secs: Option<u64>,
) -> Result<Option<HealthPolicy>, ConfigError> {
    let Some(min_failures) = min_failures else {
        return Ok(None);
    };
    if min_failures == 0 {
        return Err(invalid("health_pause_min_failures", "must be at least 1"));
    }
    let after = after_secs.map_or(DEFAULT_HEALTH_PAUSE_AFTER, Duration::from_secs);
    let pause_after = chrono::Duration::from_std(after)
        .ok()
        .filter(|d| *d <= chrono::Duration::days(3650))
        .ok_or_else(|| invalid("health_pause_after_seconds", "is too large"))?;
    Ok(Some(HealthPolicy {
        pause_after,
        min_failures,
    }))
}

/// Checks a retention age in days: at least one.
pub(super) fn retention(days: Option<u64>) -> Result<Duration, ConfigError> {
    let days = days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if days == 0 {
        return Err(invalid("retention_days", "must be at least 1"));
    }
    days.checked_mul(86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| invalid("retention_days", "is too large"))
}

fn invalid(name: &'static str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

/// Parses a listen address.
pub(super) fn parse_listen(raw: &str) -> Result<SocketAddr, ConfigError> {
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
pub(super) fn retry_policy(
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

/// Checks a token lifetime: 1 s to [`token::MAX_LIFETIME_SECS`], by default
/// [`token::DEFAULT_LIFETIME_SECS`].
pub(super) fn token_lifetime(secs: Option<u64>) -> Result<Duration, ConfigError> {
    const MAX: u64 = token::MAX_LIFETIME_SECS.unsigned_abs();
    let secs = secs.unwrap_or(token::DEFAULT_LIFETIME_SECS.unsigned_abs());
    if !(1..=MAX).contains(&secs) {
        return Err(invalid(
            "token_lifetime_seconds",
            format!("must be between 1 and {MAX}"),
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// A duration in milliseconds that must be at least 1 ms: `value`, else `default`.
pub(super) fn millis(
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
pub(super) fn positive(name: &'static str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(name, "must be at least 1"));
    }
    Ok(value)
}

/// The API connection cap: at least one, at most [`MAX_CONNECTIONS_LIMIT`], by default
/// [`default_max_connections`].
fn connection_cap(value: Option<usize>) -> Result<usize, ConfigError> {
    let cap = positive(
        "max_connections",
        value.unwrap_or_else(default_max_connections),
    )?;
    if cap > MAX_CONNECTIONS_LIMIT {
        return Err(invalid(
            "max_connections",
            format!("must be at most {MAX_CONNECTIONS_LIMIT}"),
        ));
    }
    Ok(cap)
}

/// A number that must be at least one: `value`, else `default`.
fn positive_u64(name: &'static str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if value == 0 {
        return Err(invalid(name, "must be at least 1"));
    }
    Ok(value)
}

/// A duration in whole milliseconds, as the `*_ms` knobs count it.
pub(super) fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
pub(super) fn connections_for_descriptors(soft: Option<u64>) -> usize {
    let half = soft.map_or(MAX_CONNECTIONS_CEILING, |n| {
        usize::try_from(n / 2).unwrap_or(MAX_CONNECTIONS_CEILING)
    });
    half.clamp(MAX_CONNECTIONS_FLOOR, MAX_CONNECTIONS_CEILING)
}
