//! The two secrets among the settings: the API token and the store URL's password.

use serde::{Deserialize, Serialize};
use std::fmt;

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

/// The store URL (`sqlite://PATH`, `postgres://USER:PASSWORD@HOST/DB` or `memory://`). A
/// PostgreSQL URL carries the database password, so `Debug` and `Display` show the URL with
/// the password replaced (see [`StoreUrl::redacted`]); only [`StoreUrl::expose`], for the one
/// place that opens the store, gives the URL itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(String);

/// What a password is shown as.
const REDACTED: &str = "redacted";

impl StoreUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for opening the store.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its secrets, for logs and error messages: the password in the user
    /// part and any `password` query parameter become `redacted`. A URL that does not parse
    /// but may carry credentials (it has an `@`) shows only its scheme.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.0) else {
            if !self.0.contains('@') {
                return self.0.clone();
            }
            let scheme = self.0.split_once(':').map_or("", |(scheme, _)| scheme);
            return format!("{scheme}://[{REDACTED}]");
        };
        if url.password().is_some() {
            // Fails only for URLs that cannot carry credentials, which have no password.
            let _ = url.set_password(Some(REDACTED));
        }
        if url.query_pairs().any(|(key, _)| is_password(&key)) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if is_password(&key) {
                        REDACTED.into()
                    } else {
                        value
                    };
                    (key.into_owned(), value.into_owned())
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

/// Whether a query parameter holds a password (`password`, `sslpassword`, ...).
fn is_password(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

impl From<String> for StoreUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for StoreUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.redacted()).finish()
    }
}
