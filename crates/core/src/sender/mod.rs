//! The only code that touches the HTTP client: one back-channel logout POST per attempt.
//!
//! Implements OIDC Back-Channel Logout 1.0 §2.5: `POST` to the registered URL (query string
//! kept), `Content-Type: application/x-www-form-urlencoded`, body `logout_token=<jwt>` and
//! nothing else. Each attempt has a timeout and a cap on the response body read; redirects
//! are never followed; the SSRF guard refuses non-public addresses at connect time unless the
//! operator allowed insecure RP URLs. What happened is returned as a [`retry::Outcome`] for
//! [`retry::decide`]. The sender logs nothing: tracing is the dispatcher's job.
//!
//! The operator webhook and SET pushes (RFC 8935, `push`) go through the same client, under
//! the same timeout, body cap, redirect rule and guard.

mod fetch;
mod push;
mod resolve;
mod response;

pub(crate) use resolve::RefusedAddress;

use crate::clock::{SharedClock, SystemClock};
use crate::net_policy::NetPolicy;
use crate::retry::{OtherFailure, Outcome};
use crate::token::LogoutToken;
use reqwest::header::CONTENT_TYPE;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use url::{Host, Url};

/// Per-attempt timeout, covering connect, request and response headers: 5 s (design §3).
/// The body read shares the same deadline; a body still arriving then is cut off, and the
/// status already received stands.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most response-body bytes read per attempt: 16 KiB, plenty for an error JSON.
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// Idle keep-alive connections kept per RP host.
pub(crate) const DEFAULT_POOL_IDLE_PER_HOST: usize = 16;
/// The `User-Agent` sent to RPs.
pub(crate) const DEFAULT_USER_AGENT: &str = concat!("logoutd/", env!("CARGO_PKG_VERSION"));

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// How the sender talks to RPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Per-attempt timeout ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Most response-body bytes read ([`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub max_response_bytes: usize,
    /// Which addresses may be connected to.
    pub policy: NetPolicy,
    /// The `User-Agent` header ([`DEFAULT_USER_AGENT`]).
    pub user_agent: String,
    /// Idle keep-alive connections kept per host ([`DEFAULT_POOL_IDLE_PER_HOST`]).
    pub pool_idle_per_host: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            policy: NetPolicy::default(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            pool_idle_per_host: DEFAULT_POOL_IDLE_PER_HOST,
        }
    }
}

/// Why a [`Sender`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The timeout is zero.
    #[error("sender timeout must be greater than zero")]
    ZeroTimeout,
    /// The user agent is not a valid header value.
    #[error("sender user agent is not a valid HTTP header value")]
    BadUserAgent,
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("building the HTTP client failed")]
    Client(#[source] reqwest::Error),
}

/// What one attempt produced, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The outcome, for [`retry::decide`].
    pub outcome: Outcome,
    /// Wall time from the start of the attempt to its outcome.
    pub latency: Duration,
}

/// Posts logout tokens. Cheap to clone: every clone shares one HTTP client and its pool.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    config: SenderConfig,
    clock: SharedClock,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Builds the one HTTP client every attempt goes through.
    pub fn new(config: SenderConfig) -> Result<Self, SenderError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`Sender::new`], reading "now" (for HTTP-date `Retry-After`) from `clock`.
    pub fn with_clock(config: SenderConfig, clock: SharedClock) -> Result<Self, SenderError> {
        if config.timeout.is_zero() {
            return Err(SenderError::ZeroTimeout);
        }
        if reqwest::header::HeaderValue::from_str(&config.user_agent).is_err() {
            return Err(SenderError::BadUserAgent);
        }
        let client = build_client(&config).map_err(SenderError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                clock,
            }),
        })
    }

    /// The configuration this sender was built with.
    pub fn config(&self) -> &SenderConfig {
        &self.inner.config
    }

    /// Makes one attempt: POSTs `logout_token` to `url` exactly as registered.
    pub async fn send(&self, url: &Url, logout_token: &LogoutToken) -> SendResult {
        let started = Instant::now();
        let deadline = started + self.inner.config.timeout;
        let outcome = self.attempt(url, logout_token, deadline).await;
        SendResult {
            outcome,
            latency: started.elapsed(),
        }
    }

    async fn attempt(&self, url: &Url, token: &LogoutToken, deadline: Instant) -> Outcome {
        // 1. Refuse what the guard refuses before any socket is opened.
        if let Some(refusal) = precheck(self.inner.config.policy, url) {
            return refusal;
        }
        // 2. Send the form; the deadline covers connect, request and response headers.
        let request = self
            .inner
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form_body(token.expose()));
        let host = url.host_str().unwrap_or_default();
        let response = match timeout_at(deadline, request.send()).await {
            Err(_elapsed) => return Outcome::Timeout,
            Ok(Err(err)) => return response::from_error(err, host),
            Ok(Ok(response)) => response,
        };
        // 3. Classify status, Retry-After and the RP's error body.
        let limits = response::ReadLimits {
            deadline,
            max_bytes: self.inner.config.max_response_bytes,
            token,
            now: self.inner.clock.now(),
        };
        response::outcome(response, limits).await
    }
}

impl Sender {
    /// Makes one attempt at the operator webhook: POSTs `body` as `application/json` with
    /// `headers` (the Standard Webhooks headers), under the same timeout, redirect rule and
    /// address guard as a logout token.
    pub async fn send_webhook(
        &self,
        url: &Url,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> SendResult {
        let started = Instant::now();
        let deadline = started + self.inner.config.timeout;
        let outcome = self.webhook_attempt(url, body, headers, deadline).await;
        SendResult {
            outcome,
            latency: started.elapsed(),
        }
    }

    async fn webhook_attempt(
        &self,
        url: &Url,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
        deadline: Instant,
    ) -> Outcome {
        if let Some(refusal) = precheck(self.inner.config.policy, url) {
            return refusal;
        }
        let mut request = self
            .inner
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let host = url.host_str().unwrap_or_default();
        let response = match timeout_at(deadline, request.send()).await {
            Err(_elapsed) => return Outcome::Timeout,
            Ok(Err(err)) => return response::from_error(err, host),
            Ok(Ok(response)) => response,
        };
        let max = self.inner.config.max_response_bytes;
        response::status_only(response, deadline, max, self.inner.clock.now()).await
    }
}

fn build_client(config: &SenderConfig) -> Result<reqwest::Client, reqwest::Error> {
    let resolver = resolve::GuardedResolver {
        policy: config.policy,
    };
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Every POST is one recorded attempt with a token of its own, so the client never
        // sends a request again by itself. With no retries allowed it also skips copying
        // every request's headers in case one were needed.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .connect_timeout(config.timeout)
        .pool_max_idle_per_host(config.pool_idle_per_host)
        .user_agent(config.user_agent.as_str())
        .https_only(!config.policy.allow_insecure)
        .dns_resolver(resolver)
        .build()
}

/// The request body: exactly one form parameter (spec §2.5). A compact JWS is base64url and
/// dots, which form encoding leaves as they are, so the usual token is copied in one go.
pub(crate) fn form_body(logout_token: &str) -> String {
    const NAME: &str = "logout_token=";
    let unchanged = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*');
    if logout_token.bytes().all(unchanged) {
        let mut body = String::with_capacity(NAME.len() + logout_token.len());
        body.push_str(NAME);
        body.push_str(logout_token);
        return body;
    }
    let mut body = String::from(NAME);
    body.extend(url::form_urlencoded::byte_serialize(
        logout_token.as_bytes(),
    ));
    body
}

/// Checks what can be checked without DNS: an IP-literal host and the scheme.
fn precheck(policy: NetPolicy, url: &Url) -> Option<Outcome> {
    let ip = match url.host() {
        None => return Some(Outcome::Other(OtherFailure::NoHost)),
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(Host::Domain(_)) => None,
    };
    if let Some(ip) = ip.filter(|ip| !policy.may_connect(*ip)) {
        let host = url.host_str().unwrap_or_default();
        return Some(Outcome::Refused(
            RefusedAddress::new(host, [ip]).to_string(),
        ));
    }
    match url.scheme() {
        "https" => None,
        "http" if policy.allow_insecure => None,
        "http" => Some(Outcome::Refused(
            "scheme http is not allowed: use https, or run serve with --allow-insecure-rp-urls"
                .to_owned(),
        )),
        other => Some(Outcome::Refused(format!(
            "scheme {other} is not allowed: use https"
        ))),
    }
}

#[cfg(test)]
mod tests;
