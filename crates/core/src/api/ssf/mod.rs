//! The SSF 1.0 transmitter's receiver-facing routes: the metadata at
//! `/.well-known/ssf-configuration` (SSF §7), the stream management API under `/ssf/` (§8)
//! and the poll endpoint (RFC 8936). They are mounted only when `ssf` is on.
//!
//! These routes are not the management API: a receiver authenticates with its own bearer
//! token (its SHA-256 is looked up in the store; the API tokens are refused), and errors are
//! SSF's `{"error", "error_description"}`, never Auth0's shape. Every answer carries
//! `Cache-Control: no-store`. The checks run in the order the conformance suite requires:
//! the token (401), then the body (400), then the stream (404).

use super::Shared;
use crate::ssf::{SsfReceiver, SsfStream, StoredSet};
use crate::store::SsfStore;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

mod control;
mod metadata;
mod poll;
mod stream;
#[cfg(test)]
mod tests;

/// How long a poll that finds nothing waits for a SET (RFC 8936 §2.4 long poll).
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(25);
/// How often a waiting poll reads the store again, for rows another node wrote.
pub const DEFAULT_POLL_RECHECK: Duration = Duration::from_secs(1);
/// How long a SET handed out by a poll waits for its ack before it is handed out again, by
/// default (RFC 8936 §2.4 "MAY redeliver"; `ssf_poll_lease_seconds` sets it).
pub const DEFAULT_POLL_LEASE: Duration = Duration::from_secs(60);
/// Most SETs one poll hands out, whatever `maxEvents` asks.
pub const MAX_POLL_EVENTS: usize = 100;
/// Most subjects a stream may have removed (SSF §8.1.3.3); past it a remove is refused.
pub const MAX_EXCLUDED_SUBJECTS: usize = 1000;

/// Why a SET could not be signed for a poll answer; the message is logged, never returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MintError(pub String);

/// Signs one SET row for the receiver whose `aud` is given, with the current key and the
/// configured issuer (the closure holds both): the compact JWS a poll answer carries.
pub type MintSet = Arc<dyn Fn(&StoredSet, &str) -> Result<String, MintError> + Send + Sync>;

/// What the SSF routes need beyond the shared state; present only when `ssf` is on.
#[derive(Clone)]
pub struct SsfApi {
    /// Signs the SETs a poll hands out.
    pub mint: MintSet,
    /// How long a poll that finds nothing waits ([`DEFAULT_LONG_POLL`]).
    pub long_poll: Duration,
    /// How often a waiting poll reads the store again ([`DEFAULT_POLL_RECHECK`]).
    pub poll_recheck: Duration,
    /// How long a SET a poll hands out stays in flight, waiting for its ack
    /// ([`DEFAULT_POLL_LEASE`]).
    pub poll_lease: Duration,
}

impl SsfApi {
    /// The routes' settings with the default waits, signing with `mint`.
    pub fn new(mint: MintSet) -> Self {
        Self {
            mint,
            long_poll: DEFAULT_LONG_POLL,
            poll_recheck: DEFAULT_POLL_RECHECK,
            poll_lease: DEFAULT_POLL_LEASE,
        }
    }
}

impl std::fmt::Debug for SsfApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsfApi")
            .field("long_poll", &self.long_poll)
            .field("poll_recheck", &self.poll_recheck)
            .field("poll_lease", &self.poll_lease)
            .finish_non_exhaustive()
    }
}

/// The SSF routes, each answer marked `Cache-Control: no-store`.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/.well-known/ssf-configuration", get(metadata::serve))
        .route(
            "/.well-known/ssf-configuration/{*path}",
            get(metadata::serve_path),
        )
        .route(
            "/ssf/stream",
            post(stream::create)
                .get(stream::read)
                .patch(stream::update)
                .put(stream::replace)
                .delete(stream::delete),
        )
        .route(
            "/ssf/status",
            get(control::read_status).post(control::set_status),
        )
        .route("/ssf/subjects/add", post(control::add_subject))
        .route("/ssf/subjects/remove", post(control::remove_subject))
        .route("/ssf/verify", post(control::verify))
        .route("/ssf/poll/{stream_id}", post(poll::poll))
        .layer(axum::middleware::map_response(no_store))
}

async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The store's SSF seam.
fn store(state: &Shared) -> &Arc<dyn SsfStore> {
    &state.stores.ssf
}

/// Wakes the SET worker (and waiting polls): a row was written.
fn wake(state: &Shared) {
    crate::store::wake(&state.stores.ssf_wake);
}

/// An SSF error answer: `{"error", "error_description"}` (SSF §8; RFC 6750 §3.1 for 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SsfError {
    status: StatusCode,
    code: &'static str,
    description: String,
    retry_after: Option<u64>,
}

impl SsfError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub(crate) fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 `invalid_token`.
    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a valid receiver bearer token is required",
        )
    }

    /// 404 `not_found` for a stream that does not exist or is another receiver's.
    fn no_stream() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such stream for this receiver",
        )
    }

    /// 429 with `Retry-After`.
    fn too_soon(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("try again in {retry_after_secs} s"),
            )
        }
    }

    /// 500 with a generic text; the cause is logged here.
    fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %crate::error::chain(err), "ssf request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }
}

impl From<crate::store::StoreError> for SsfError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::internal(&err)
    }
}

impl IntoResponse for SsfError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code,
            "error_description": self.description,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The receiver whose bearer token `headers` carry: `Authorization: Bearer <token>` only,
/// its SHA-256 (lowercase hex) looked up in the store. A management API token is refused
/// even if a receiver's token were equal to it.
async fn authenticate(state: &Shared, headers: &HeaderMap) -> Result<SsfReceiver, SsfError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(SsfError::unauthorized)?;
    if state.credentials.scope_of(token).is_some() {
        return Err(SsfError::unauthorized());
    }
    store(state)
        .receiver_by_token(&token_hash(token))
        .await?
        .ok_or_else(SsfError::unauthorized)
}

/// SHA-256 of a receiver token, lowercase hex: what the store keeps.
pub(crate) fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a request body with serde (never axum's `Json`, which answers 415 or 422): any
/// refusal is 400, as is a body over the size cap.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, SsfError> {
    let bytes = body.map_err(|_| SsfError::bad_request("the request body could not be read"))?;
    if let Some(key) = super::json_keys::first_duplicate_key(&bytes) {
        return Err(SsfError::bad_request(format!(
            "the key {} appears twice in one object",
            super::error::shorten(&key)
        )));
    }
    super::extract::parse_json(&bytes).map_err(|err| SsfError::bad_request(err.message))
}

/// The query string's parameters, parsed after authentication; a refusal is 400.
fn parse_query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, SsfError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|axum::extract::Query(value)| value)
        .map_err(|err| SsfError::bad_request(err.body_text()))
}

/// The receiver's stream `stream_id`; 404 when it does not exist or is another receiver's.
async fn own_stream(
    state: &Shared,
    receiver: &SsfReceiver,
    stream_id: &str,
) -> Result<SsfStream, SsfError> {
    match store(state).get_stream(stream_id).await? {
        Some(stream) if stream.receiver_id == receiver.id => Ok(stream),
        _ => Err(SsfError::no_stream()),
    }
}

/// `{issuer}{path}`, built from the configured issuer only, never from the request.
fn issuer_url(state: &Shared, path: &str) -> String {
    format!("{}{path}", state.issuer.as_str().trim_end_matches('/'))
}
