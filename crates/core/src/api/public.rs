//! Public routes: discovery, JWKS, health, readiness, metrics, and the JSON 404/405.

use super::openapi::JwkSet;
use super::{ApiError, Shared};
use crate::alg::SigningAlg;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The discovery document: the members an RP needs for back-channel logout (OpenID Connect
/// Back-Channel Logout 1.0 §2.1).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Discovery {
    /// The `iss` of every logout token.
    issuer: String,
    /// Where the signing keys are published.
    jwks_uri: String,
    /// Always `true`.
    backchannel_logout_supported: bool,
    /// Always `true`: logout tokens carry `sid`.
    backchannel_logout_session_supported: bool,
    /// The algorithms of the active signing keys.
    id_token_signing_alg_values_supported: Vec<SigningAlg>,
}

/// `GET /.well-known/openid-configuration`: the back-channel logout discovery members.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "public",
    operation_id = "get_openid_configuration",
    summary = "OpenID Provider metadata for back-channel logout",
    responses(
        (status = 200, description = "The discovery document; cacheable for 60 s",
            body = Discovery),
    )
)]
pub(super) async fn discovery(State(state): State<Shared>) -> Response {
    let issuer = state.issuer.as_str();
    let body = Discovery {
        issuer: issuer.to_owned(),
        jwks_uri: format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        id_token_signing_alg_values_supported: state.keys.current().active_algs(),
    };
    cacheable(Json(body).into_response())
}

/// `GET /.well-known/jwks.json`: public keys only, including retired keys still in use.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "public",
    operation_id = "get_jwks",
    summary = "The public signing keys",
    responses(
        (status = 200, description = "The JWK Set; cacheable for 60 s",
            content_type = "application/jwk-set+json", body = JwkSet),
    )
)]
pub(super) async fn jwks(State(state): State<Shared>) -> Response {
    let body = state.keys.current().jwks(state.clock.now());
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/jwk-set+json"),
    );
    cacheable(response)
}

fn cacheable(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=60"),
    );
    response
}

/// The body of the health and readiness checks.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    #[schema(examples("ok", "ready"))]
    status: &'static str,
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "public",
    operation_id = "get_healthz",
    summary = "Liveness",
    responses((status = 200, description = "The process is alive: `ok`", body = Health))
)]
pub(super) async fn healthz() -> Response {
    Json(Health { status: "ok" }).into_response()
}

/// `GET /readyz`: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "public",
    operation_id = "get_readyz",
    summary = "Readiness: the store answers",
    responses(
        (status = 200, description = "The store answers: `ready`", body = Health),
        (status = 503, description = "The store does not answer (`store_unavailable`)",
            body = super::error::ErrorBody),
    )
)]
pub(super) async fn readyz(State(state): State<Shared>) -> Response {
    match state.stores.health.ping().await {
        Ok(()) => Json(Health { status: "ready" }).into_response(),
        Err(err) => {
            tracing::warn!(error = %crate::error::chain(&err), "readiness check failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store does not answer",
            )
            .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text. The outbox gauges (and the SET outbox's, when SSF is on)
/// are read from the store at scrape time; if the store does not answer they keep their last
/// values.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "public",
    operation_id = "get_metrics",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "The metrics in the OpenMetrics text format",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body = String),
    )
)]
pub(super) async fn metrics(State(state): State<Shared>) -> Response {
    let now = state.clock.now();
    match state.stores.deliveries.stats(now).await {
        Ok(stats) => state.metrics.set_outbox(&stats, now),
        Err(err) => {
            tracing::warn!(error = %crate::error::chain(&err), "reading outbox statistics failed")
        }
    }
    if state.ssf.is_some() {
        match state.stores.ssf.set_stats(now).await {
            Ok(stats) => state.metrics.set_ssf_outbox(&stats, now),
            Err(err) => {
                tracing::warn!(error = %crate::error::chain(&err), "reading SET outbox statistics failed")
            }
        }
    }
    match all_client_health(&state, now).await {
        Ok(health) => state
            .metrics
            .set_client_health(&health, state.stores.client_health.auto_pauses()),
        Err(err) => {
            tracing::warn!(error = %crate::error::chain(&err), "reading client health failed")
        }
    }
    match state.stores.operator_events.pending_events().await {
        Ok(pending) => state
            .metrics
            .set_operator_events(&state.stores.event_tally.snapshot(), pending),
        Err(err) => {
            tracing::warn!(error = %crate::error::chain(&err), "reading operator event statistics failed")
        }
    }
    let body = state.metrics.encode();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}

/// Every client's health, read a page at a time.
async fn all_client_health(
    state: &Shared,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<crate::health::ClientHealth>, crate::store::StoreError> {
    const PAGE: usize = 500;
    let mut all = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let page = state
            .stores
            .client_health
            .list_client_health(from.as_deref(), PAGE, now)
            .await?;
        all.extend(page.items);
        match page.next {
            Some(next) => from = Some(next),
            None => return Ok(all),
        }
    }
}

/// Unknown route.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Known route, wrong method.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
