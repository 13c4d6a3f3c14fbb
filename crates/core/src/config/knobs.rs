//! The raw settings of `logoutd serve`: one struct for the flags, the variables and the file,
//! and the merge of those three layers.

use super::validate::millis_of;
use super::*;
use crate::retry;
use clap::{Arg, Args};
use figment::Figment;
use figment::providers::Serialized;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Every setting of `logoutd serve` as given, before [`Settings::from_knobs`] checks it. A
/// field is a key of `logoutd.toml`, the flag of the same name in kebab case, and the
/// variable [`Environment::name_of`] names; a field with `arg(skip)` is a file-only key. An
/// unset knob is `None` (a switch: `false`) and is left out when its layer is merged, so it
/// hides nothing below it.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    /// Listen address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Issuer identifier, the `iss` of every token.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Store URL: sqlite://PATH, postgres://... or memory://.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreUrl>,
    /// Signing keys directory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_dir: Option<PathBuf>,
    /// Allow http and loopback/private RP URLs (tests and demos only).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_off")]
    pub allow_insecure_rp_urls: bool,
    /// Use a keys directory or key files that other users can read (refused by default).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_off")]
    pub allow_loose_key_permissions: bool,
    /// File holding the API bearer token (instead of LOGOUTD_API_TOKEN).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token_file: Option<PathBuf>,
    /// File of scoped API tokens managed by `logoutd tokens`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_tokens_file: Option<PathBuf>,
    /// Cap on request bodies, in bytes (file only).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    /// Claim lease in seconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Per-attempt timeout in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
    /// Attempts in flight across all RPs.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Attempts in flight per RP origin.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_origin: Option<usize>,
    /// Attempts before a delivery is failed.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Age budget of a delivery in seconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// First retry delay ceiling in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_base_ms: Option<u64>,
    /// Largest retry delay in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_cap_ms: Option<u64>,
    /// Logout token lifetime in seconds, 1-120.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_lifetime_seconds: Option<u64>,
    /// Days delivered/cancelled deliveries and ended sessions are kept.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u64>,
    /// Whether sessions past their expiry are ended with `session-expired`.
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_sweep: Option<bool>,
    /// How much nicer (0-19) the delivery threads run than the API's.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_nice: Option<i32>,
    /// Time a client has to send a request's headers, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_ms: Option<u64>,
    /// Time a kept-alive API connection may wait for its next request, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Time a client has to send a request's body, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_read_timeout_ms: Option<u64>,
    /// API connections open at once; past it a connection is answered 503 and closed.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Time API connections get to finish after SIGTERM, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_ms: Option<u64>,
    /// End requests waiting for their RPs (`wait_ms`) at once; 0 turns waiting off.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_waiting_requests: Option<usize>,
    /// Whether this node delivers; false serves the API only, leaving the deliveries to the
    /// other nodes on the same PostgreSQL database.
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<bool>,
    /// Turns the health pause policy on: a client is paused after this many failures since
    /// its last success or resume, once it has also had no success for
    /// `health_pause_after_seconds`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_pause_min_failures: Option<u64>,
    /// How long without a success, in seconds, before the health policy pauses a failing
    /// client (only with `health_pause_min_failures`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_pause_after_seconds: Option<u64>,
    /// URL the operator events are POSTed to (Standard Webhooks); none sends nothing.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_webhook_url: Option<String>,
    /// File holding the operator webhook's signing secret, `whsec_` and base64 (instead of
    /// LOGOUTD_OPERATOR_WEBHOOK_SECRET).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_webhook_secret_file: Option<PathBuf>,
    /// Whether the Shared Signals (SSF 1.0) transmitter is on: its metadata at
    /// `/.well-known/ssf-configuration` and its receiver routes under `/ssf/`. Needs an https
    /// issuer unless `--dev` or `allow_insecure_rp_urls`.
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssf: Option<bool>,
    /// Whether logout tokens also carry `txn`, the session end's event id, which every SSF
    /// SET of the same end carries too (RFC 8417 §2.2). Off keeps the claim set of OIDC
    /// Back-Channel Logout 1.0 §2.4 exactly.
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logout_token_txn: Option<bool>,
    /// How long a SET handed out by an SSF poll waits for its acknowledgement, in seconds,
    /// before a later poll hands it out again (1-86400).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssf_poll_lease_seconds: Option<u64>,
}

/// A switch that is off says nothing, so a layer above cannot turn off what one below turned
/// on: `--allow-insecure-rp-urls` has no "false" form, and a file or variable that sets one
/// to `true` keeps it on.
fn is_off(switch: &bool) -> bool {
    !switch
}

impl Knobs {
    /// The keys of the config file at `path`; a missing file has none unless it was named
    /// explicitly. Unknown keys are refused. An error gives the line and column but not the
    /// line itself, which may hold the store's password.
    pub fn from_file(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let error = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| error(toml_error(&text, &e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(e) => Err(error(e.to_string())),
        }
    }

    /// The knobs that `LOGOUTD_*` variables in `env` set (one per flag, none for file-only
    /// keys), each read as its knob's type: a number for a count, `true` or `false` (also
    /// `yes`/`no`, `on`/`off`, `1`/`0`) for a switch, the text itself for an address, URL or
    /// path.
    pub fn from_env(env: &Environment) -> Result<Self, ConfigError> {
        let mut vars = figment::value::Dict::new();
        for id in flag_ids() {
            if let Some(value) = env.get(&Environment::name_of(&id))? {
                vars.insert(id, value.into());
            }
        }
        Figment::from(Serialized::defaults(vars))
            .extract_lossy()
            .map_err(|e| unreadable(e, Environment::name_of))
    }

    /// `flags` over `env` over `file`: each knob takes its value from the highest layer that
    /// sets it, and a switch is on if any layer turns it on.
    pub fn merge(file: Self, env: Self, flags: Self) -> Result<Self, ConfigError> {
        Figment::from(Serialized::defaults(file))
            .merge(Serialized::defaults(env))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| unreadable(e, str::to_owned))
    }

    /// The default of every knob that has a fixed one, from the named constants: what
    /// [`Settings::from_knobs`] puts in for an unset knob (a test holds the two together) and
    /// what `--help` shows. `issuer` and `max_connections` are computed at start;
    /// `api_token_file` has none.
    pub fn defaults() -> Self {
        Self {
            listen: Some(DEFAULT_LISTEN.to_owned()),
            issuer: None,
            store: Some(StoreUrl::from(DEFAULT_STORE)),
            keys_dir: Some(PathBuf::from(DEFAULT_KEYS_DIR)),
            allow_insecure_rp_urls: false,
            allow_loose_key_permissions: false,
            api_token_file: None,
            api_tokens_file: Some(PathBuf::from(crate::tokens::DEFAULT_TOKENS_FILE)),
            body_limit_bytes: Some(crate::api::DEFAULT_BODY_LIMIT),
            lease_seconds: Some(DEFAULT_LEASE.as_secs()),
            attempt_timeout_ms: Some(millis_of(crate::sender::DEFAULT_TIMEOUT)),
            max_in_flight: Some(DEFAULT_MAX_IN_FLIGHT),
            max_per_origin: Some(DEFAULT_MAX_PER_ORIGIN),
            max_attempts: Some(retry::DEFAULT_MAX_ATTEMPTS),
            max_age_seconds: Some(retry::DEFAULT_MAX_AGE.as_secs()),
            retry_base_ms: Some(millis_of(retry::DEFAULT_BASE)),
            retry_cap_ms: Some(millis_of(retry::DEFAULT_CAP)),
            token_lifetime_seconds: Some(crate::token::DEFAULT_LIFETIME_SECS.unsigned_abs()),
            retention_days: Some(DEFAULT_RETENTION_DAYS),
            expiry_sweep: Some(DEFAULT_EXPIRY_SWEEP),
            delivery_nice: Some(DEFAULT_DELIVERY_NICE),
            header_read_timeout_ms: Some(millis_of(DEFAULT_HEADER_READ_TIMEOUT)),
            idle_timeout_ms: Some(millis_of(DEFAULT_IDLE_TIMEOUT)),
            body_read_timeout_ms: Some(millis_of(DEFAULT_BODY_READ_TIMEOUT)),
            max_connections: None,
            shutdown_grace_ms: Some(millis_of(DEFAULT_SHUTDOWN_GRACE)),
            max_waiting_requests: Some(DEFAULT_MAX_WAITING_REQUESTS),
            dispatch: Some(DEFAULT_DISPATCH),
            health_pause_min_failures: None,
            health_pause_after_seconds: Some(DEFAULT_HEALTH_PAUSE_AFTER.as_secs()),
            operator_webhook_url: None,
            operator_webhook_secret_file: None,
            ssf: Some(DEFAULT_SSF),
            logout_token_txn: Some(DEFAULT_LOGOUT_TOKEN_TXN),
            ssf_poll_lease_seconds: Some(crate::api::DEFAULT_POLL_LEASE.as_secs()),
        }
    }
}

/// The clap ids of the knobs that have a flag, which are also their keys in the file.
pub(super) fn flag_ids() -> Vec<String> {
    Knobs::augment_args(clap::Command::new("knobs"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect()
}

/// Completes the help of `serve`'s flags with each one's default, rendered from
/// [`Knobs::defaults`], and the variable that also sets it. It is applied as
/// `#[command(mut_args = config::describe_flags())]` to the flags that flatten [`Knobs`]:
/// `--config` gets [`DEFAULT_CONFIG_FILE`] and `LOGOUTD_CONFIG`; other flags (`--dev`) are
/// left as they are.
pub fn describe_flags() -> impl FnMut(Arg) -> Arg {
    let defaults = default_texts();
    let mut ids = flag_ids();
    ids.push(Environment::CONFIG_FLAG.to_owned());
    move |arg| {
        let id = arg.get_id().to_string();
        if !ids.contains(&id) {
            return arg;
        }
        let mut help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        if let Some(default) = defaults.get(&id) {
            help.push_str(&format!(" [default: {default}]"));
        }
        help.push_str(&format!(" [env: {}]", Environment::name_of(&id)));
        arg.help(help)
    }
}

/// Each flag's default as `--help` shows it.
fn default_texts() -> BTreeMap<String, String> {
    let mut texts = BTreeMap::new();
    if let Ok(serde_json::Value::Object(defaults)) = serde_json::to_value(Knobs::defaults()) {
        for (id, value) in defaults {
            let text = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            texts.insert(id, text);
        }
    }
    let computed = [
        (Environment::CONFIG_FLAG, DEFAULT_CONFIG_FILE.to_owned()),
        ("issuer", "http://LISTEN".to_owned()),
        (
            "max_connections",
            format!(
                "half the descriptor limit, {MAX_CONNECTIONS_FLOOR} to {MAX_CONNECTIONS_CEILING}"
            ),
        ),
    ];
    texts.extend(computed.map(|(id, text)| (id.to_owned(), text)));
    texts
}

/// A merge or type error as a setting error, naming the knob through `name`.
fn unreadable(error: figment::Error, name: impl Fn(&str) -> String) -> ConfigError {
    let key = error.path.first().map_or_else(String::new, |key| name(key));
    ConfigError::Unreadable {
        name: key,
        reason: error.kind.to_string(),
    }
}

/// A TOML error's message with its line and column.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return error.message().to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {}", error.message())
}
