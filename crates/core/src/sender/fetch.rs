//! GETs of a client's key document (`jwks_uri`) through the same client, SSRF guard, timeout
//! and no-redirect policy as the logout POSTs.

use super::{Sender, precheck, response};
use crate::retry::Outcome;
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use url::Url;

/// A document fetched from a client's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    /// The body, at most the cap asked for.
    pub body: Vec<u8>,
    /// `Cache-Control: max-age`, when given; zero for `no-store` and `no-cache`.
    pub max_age: Option<Duration>,
}

impl Sender {
    /// GETs `url` as JSON: a 200 whose body fits in `max_bytes`, within the attempt timeout.
    /// The error text names the cause (status, refusal, transport) and never a body.
    pub(crate) async fn get_json(&self, url: &Url, max_bytes: usize) -> Result<Fetched, String> {
        if let Some(refusal) = precheck(self.inner.config.policy, url) {
            return Err(describe(refusal));
        }
        let deadline = Instant::now() + self.inner.config.timeout;
        let request = self
            .inner
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json");
        let host = url.host_str().unwrap_or_default();
        let mut response = match timeout_at(deadline, request.send()).await {
            Err(_elapsed) => return Err("timeout".into()),
            Ok(Err(err)) => return Err(describe(response::from_error(err, host))),
            Ok(Ok(response)) => response,
        };
        if response.status().as_u16() != 200 {
            return Err(format!("HTTP status {}", response.status().as_u16()));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        loop {
            match timeout_at(deadline, response.chunk()).await {
                Err(_elapsed) => return Err("timeout reading the body".into()),
                Ok(Err(_)) => return Err("the connection failed while reading the body".into()),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) if body.len() + chunk.len() > max_bytes => {
                    return Err(format!("the body is larger than {max_bytes} bytes"));
                }
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            }
        }
        Ok(Fetched { body, max_age })
    }
}

/// The freshness a `Cache-Control` value gives: `max-age`, or zero for `no-store`/`no-cache`.
pub(crate) fn max_age(value: &str) -> Option<Duration> {
    let mut found = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            found = secs
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    found
}

fn describe(outcome: Outcome) -> String {
    match outcome {
        Outcome::Timeout => "timeout".into(),
        Outcome::Connect(e) => format!("connect: {e}"),
        Outcome::Tls(e) => format!("tls: {e}"),
        Outcome::Reset(e) => format!("reset: {e}"),
        Outcome::Refused(e) => format!("refused: {e}"),
        Outcome::Other(e) => e.to_string(),
        Outcome::Status { code, .. } => format!("HTTP status {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_gives_the_freshness() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
