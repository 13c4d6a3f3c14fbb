//! The HTTP API (axum): public discovery and health routes, and the Auth0-shaped management
//! API under `/api/v2`, guarded by a bearer token compared in constant time.

use crate::clock::SharedClock;
use crate::ids::Issuer;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::net_policy::NetPolicy;
use crate::store::Stores;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use std::sync::Arc;

mod auth;
mod clients;
mod deliveries;
pub mod error;
mod events;
pub mod extract;
mod json_keys;
mod public;
mod sessions;

pub use auth::{Credentials, required_scope};
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
    /// The bearer tokens the management API accepts, and their scopes.
    pub credentials: Arc<auth::Credentials>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Request body cap in bytes.
    pub body_limit: usize,
}

/// Shared handler state.
pub type Shared = Arc<AppState>;

impl AppState {
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
        // After routing's own answers, so that an unknown route or method is a 401 too
        // without credentials, never a 404 or 405 that maps the API for a stranger.
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
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
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

/// A handler that panicked answers 500 in Auth0's shape instead of dropping the connection,
/// and the panic is logged once, here. Input must never reach a panic; this is the net
/// under that rule, not a way to handle input.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    use axum::response::IntoResponse as _;
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    tracing::error!(panic = %what, "a request handler panicked");
    ApiError::internal().into_response()
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

#[cfg(test)]
mod tests {
    use super::panic_response;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt as _;

    /// A panicking handler answers 500 in Auth0's shape; the connection is not dropped.
    #[tokio::test]
    async fn a_handler_panic_answers_500_in_auth0_shape() {
        #[allow(clippy::panic)]
        async fn boom() -> &'static str {
            panic!("overflowed")
        }
        let router = Router::new().route("/boom", get(boom)).layer(
            tower_http::catch_panic::CatchPanicLayer::custom(panic_response),
        );
        let req = Request::builder().uri("/boom").body(Body::empty()).unwrap();
        let res = router.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["statusCode"], 500);
        assert_eq!(body["errorCode"], "internal_error");
        assert!(!body.to_string().contains("overflowed"), "{body}");
    }
}
