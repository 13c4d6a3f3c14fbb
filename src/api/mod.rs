//! The HTTP API (axum): public discovery and health routes, and the Auth0-shaped management
//! API under `/api/v2`, guarded by a bearer token compared in constant time.

use crate::clock::SharedClock;
use crate::ids::Issuer;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::net_policy::NetPolicy;
use crate::store::Stores;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use std::sync::Arc;

mod clients;
mod deliveries;
pub mod error;
mod events;
pub mod extract;
mod json_error;
mod public;
mod sessions;

pub use error::ApiError;

/// Default cap on request bodies (64 KiB).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Default page size of listings.
pub const DEFAULT_TAKE: usize = 50;
/// Largest page size of listings.
pub const MAX_TAKE: usize = 100;

/// Everything the handlers share.
pub struct AppState {
    /// The backend.
    pub stores: Stores,
    /// Signing keys, for discovery and JWKS.
    pub keys: Arc<KeyRing>,
    /// The issuer identifier.
    pub issuer: Issuer,
    /// Which RP URLs may be registered.
    pub net: NetPolicy,
    /// Time.
    pub clock: SharedClock,
    /// SHA-256 of the API bearer token.
    pub api_token_digest: [u8; 32],
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Request body cap in bytes.
    pub body_limit: usize,
}

/// Shared handler state.
pub type Shared = Arc<AppState>;

impl AppState {
    /// The digest stored for a bearer token.
    pub fn token_digest(token: &str) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// Now, truncated to the store's millisecond precision.
    pub fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis(self.clock.now())
    }
}

/// The whole router.
pub fn router(state: Shared) -> Router {
    let management = Router::new()
        .route("/clients", post(clients::create).get(clients::list))
        .route(
            "/clients/{client_id}",
            get(clients::get)
                .patch(clients::update)
                .delete(clients::delete),
        )
        .route("/clients/{client_id}/pause", post(clients::pause))
        .route("/clients/{client_id}/resume", post(clients::resume))
        .route("/sessions", post(sessions::create))
        .route(
            "/sessions/{id}",
            get(sessions::get)
                .patch(sessions::patch)
                .delete(events::revoke_session),
        )
        .route("/sessions/{id}/revoke", post(events::revoke_session))
        .route("/sessions/{id}/clients", post(sessions::add_client))
        .route(
            "/sessions/{id}/metadata",
            axum::routing::delete(sessions::evict_metadata),
        )
        .route(
            "/sessions/{id}/metadata/{key}",
            put(sessions::set_metadata).delete(sessions::delete_metadata),
        )
        .route(
            "/users/{user_id}/sessions",
            get(sessions::list_for_user).delete(events::delete_user_sessions),
        )
        .route("/logout-events", post(events::create))
        .route("/logout-deliveries", get(deliveries::list))
        .route(
            "/logout-deliveries/prune-failed",
            post(deliveries::prune_failed),
        )
        .route("/logout-deliveries/{id}", get(deliveries::get))
        .route("/logout-deliveries/{id}/retry", post(deliveries::retry))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/.well-known/openid-configuration", get(public::discovery))
        .route("/.well-known/jwks.json", get(public::jwks))
        .route("/healthz", get(public::healthz))
        .route("/readyz", get(public::readyz))
        .route("/metrics", get(public::metrics))
        .nest("/api/v2", management)
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .with_state(state)
}

/// Rejects requests without the right `Authorization: Bearer` token, in constant time.
async fn require_token(State(state): State<Shared>, req: Request, next: Next) -> Response {
    use axum::response::IntoResponse as _;
    use subtle::ConstantTimeEq as _;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = presented else {
        return ApiError::unauthorized().into_response();
    };
    let digest = AppState::token_digest(token);
    if bool::from(digest.ct_eq(&state.api_token_digest)) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Validates a `take` query parameter.
pub fn page_size(take: Option<usize>) -> Result<usize, ApiError> {
    match take {
        None => Ok(DEFAULT_TAKE),
        Some(n) if (1..=MAX_TAKE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_query(format!(
            "take must be between 1 and {MAX_TAKE}"
        ))),
    }
}
