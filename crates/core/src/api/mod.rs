//! The HTTP API (axum): public discovery and health routes, and the Auth0-shaped management
//! API under `/api/v2`, guarded by a bearer token compared in constant time. Every route is
//! registered with its OpenAPI operation ([`openapi`]).

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
use chrono::{DateTime, Utc};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod auth;
mod client_encryption;
mod clients;
mod console;
mod deliveries;
pub(crate) mod error;
mod events;
pub(crate) mod extract;
mod health;
mod json_error;
mod json_keys;
pub(crate) mod openapi;
mod operator_events;
mod public;
mod redrive;
mod sessions;
pub(crate) mod ssf;
mod ssf_receivers;
mod ssf_streams;
mod stats;
mod token_info;
mod wait;

pub use auth::Credentials;
pub use console::CONSOLE_CSP;
pub(crate) use error::ApiError;
pub use ssf::{
    DEFAULT_LONG_POLL, DEFAULT_POLL_LEASE, DEFAULT_POLL_RECHECK, MAX_EXCLUDED_SUBJECTS,
    MAX_POLL_EVENTS, MintError, MintSet, SsfApi,
};
pub use stats::{STATS_BUCKETS, STATS_MINUTES, STATS_TTL, StatsCache};
pub use wait::{MAX_LISTED_RESULTS, MAX_WAIT_MS, RECHECK_INTERVAL, Waits};

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
    /// The bound on end requests waiting for their RPs, and the signal that wakes them.
    pub waits: Waits,
    /// The SSF transmitter's routes, when `ssf` is on; `None` leaves them unmounted (404).
    pub ssf: Option<SsfApi>,
    /// The last answer of `GET /api/v2/delivery-stats`, shared for a moment.
    pub delivery_stats: StatsCache,
}

/// Shared handler state.
pub(crate) type Shared = Arc<AppState>;

impl AppState {
    /// Now, truncated to the store's millisecond precision.
    pub fn now(&self) -> DateTime<Utc> {
        crate::store::millis(self.clock.now())
    }
}

/// The whole router.
pub fn router(state: Shared) -> Router {
    let (mut routes, _) = api_routes(management_routes()).split_for_parts();
    if state.ssf.is_some() {
        routes = routes.merge(ssf::routes());
    }
    routes = routes.merge(console::routes());
    routes
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
        // Around routing's own answers, so that an unknown route or method under /api/v2 is a
        // 401 too without credentials, never a 404 or 405 that maps the API for a stranger.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

/// The management API (mounted at `/api/v2`), each route with its OpenAPI operation. Paths
/// and methods are in each handler's `#[utoipa::path]`; one `routes!` groups a path's methods.
fn management_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(clients::create, clients::list))
        .routes(routes!(clients::get, clients::update, clients::delete))
        .routes(routes!(clients::pause))
        .routes(routes!(clients::resume))
        .routes(routes!(health::get))
        .routes(routes!(health::list))
        .routes(routes!(sessions::create))
        .routes(routes!(
            sessions::get,
            sessions::patch,
            events::delete_session
        ))
        .routes(routes!(events::revoke_session))
        .routes(routes!(sessions::add_client))
        .routes(routes!(sessions::evict_metadata))
        .routes(routes!(sessions::set_metadata, sessions::delete_metadata))
        .routes(routes!(
            sessions::list_for_user,
            events::delete_user_sessions
        ))
        .routes(routes!(events::create))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::prune_failed))
        .routes(routes!(redrive::retry_failed))
        .routes(routes!(deliveries::get))
        .routes(routes!(deliveries::retry))
        .routes(routes!(stats::get))
        .routes(routes!(operator_events::list))
        .routes(routes!(operator_events::get))
        .routes(routes!(operator_events::retry))
        .routes(routes!(ssf_receivers::create, ssf_receivers::list))
        .routes(routes!(ssf_receivers::get, ssf_receivers::delete))
        .routes(routes!(ssf_receivers::rotate_token))
        .routes(routes!(ssf_streams::list_streams))
        .routes(routes!(ssf_streams::set_status))
        .routes(routes!(ssf_streams::list_sets))
        .routes(routes!(redrive::retry_failed_sets))
        .routes(routes!(ssf_streams::get_set))
        .routes(routes!(ssf_streams::retry_set))
        .routes(routes!(token_info::get))
}

/// Every route: the public ones, the OpenAPI document, and `management` (the management
/// routes, guarded or not) under `/api/v2`, whose operations all need the bearer token.
fn api_routes(mut management: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    openapi::require_bearer(management.get_openapi_mut());
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(public::discovery))
        .routes(routes!(public::jwks))
        .routes(routes!(public::healthz))
        .routes(routes!(public::readyz))
        .routes(routes!(public::metrics))
        .routes(routes!(openapi::serve))
        .nest("/api/v2", management)
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
pub(crate) fn page_size(take: Option<usize>) -> Result<usize, ApiError> {
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
