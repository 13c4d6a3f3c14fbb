//! The `LOGOUTD_*` environment variables of `logoutd serve`, read once.

use super::ConfigError;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// The process's `LOGOUTD_*` variables, taken once at start. It is the only place `serve`
/// reads its settings from the environment (its flags have no clap `env`), so a variable
/// cannot be read twice with two parsers, and tests build one instead of changing the
/// process's environment. `Debug` shows the names only: the values include the API token and
/// the store's password.
#[derive(Clone, Default)]
pub struct Environment(BTreeMap<String, OsString>);

impl Environment {
    /// The prefix of every variable.
    pub const PREFIX: &str = "LOGOUTD_";
    /// The single API token (admin scope).
    pub const API_TOKEN: &str = "LOGOUTD_API_TOKEN";
    /// The operator webhook's signing secret.
    pub const OPERATOR_WEBHOOK_SECRET: &str = "LOGOUTD_OPERATOR_WEBHOOK_SECRET";
    /// The clap id of `--config`, set also by `LOGOUTD_CONFIG`.
    pub const CONFIG_FLAG: &str = "config";

    /// The variables of this process.
    pub fn from_process() -> Self {
        Self::from_vars(
            std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value))),
        )
    }

    /// The `LOGOUTD_*` variables among `vars`; other names are left out.
    pub fn from_vars<N, V>(vars: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<OsString>,
    {
        Self(
            vars.into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .filter(|(name, _)| name.starts_with(Self::PREFIX))
                .collect(),
        )
    }

    /// The variable that sets the flag with clap id `id`: `max_in_flight` is set by
    /// `LOGOUTD_MAX_IN_FLIGHT`, as `--max-in-flight` sets it.
    pub fn name_of(id: &str) -> String {
        format!("{}{}", Self::PREFIX, id.to_ascii_uppercase())
    }

    /// The value of `name`, if set; a value that is not UTF-8 is an error naming it.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ConfigError> {
        self.0
            .get(name)
            .map(|value| {
                value.to_str().ok_or_else(|| ConfigError::Unreadable {
                    name: name.to_owned(),
                    reason: "is not valid UTF-8".to_owned(),
                })
            })
            .transpose()
    }

    /// `LOGOUTD_CONFIG`: the config file, for `--config`.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.0
            .get(&Self::name_of(Self::CONFIG_FLAG))
            .map(PathBuf::from)
    }

    /// `LOGOUTD_API_TOKEN`, trimmed, unless it is empty.
    pub fn api_token(&self) -> Result<Option<&str>, ConfigError> {
        Ok(self
            .get(Self::API_TOKEN)?
            .map(str::trim)
            .filter(|token| !token.is_empty()))
    }
}

impl Environment {
    /// `LOGOUTD_OPERATOR_WEBHOOK_SECRET`, trimmed, unless it is empty.
    pub fn operator_webhook_secret(&self) -> Result<Option<&str>, ConfigError> {
        Ok(self
            .get(Self::OPERATOR_WEBHOOK_SECRET)?
            .map(str::trim)
            .filter(|secret| !secret.is_empty()))
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Environment")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}
