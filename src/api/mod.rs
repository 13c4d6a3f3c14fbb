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
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod clients;
mod deliveries;
pub mod error;
mod events;
pub mod extract;
pub mod openapi;
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
    let guarded = management_routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let (routes, _) = api_routes(guarded).split_for_parts();
    routes
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
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
        .routes(routes!(deliveries::get))
        .routes(routes!(deliveries::retry))
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
