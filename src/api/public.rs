//! Public routes: discovery, JWKS, health, readiness, metrics, and the JSON 404/405.

use super::{ApiError, Shared};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `GET /.well-known/openid-configuration`: the back-channel logout discovery members.
pub async fn discovery(State(state): State<Shared>) -> Response {
    let issuer = state.issuer.as_str();
    let algs: Vec<&str> = state
        .keys
        .current()
        .active_algs()
        .iter()
        .map(|a| a.as_str())
        .collect();
    let body = json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "id_token_signing_alg_values_supported": algs,
    });
    cacheable(Json(body).into_response())
}

/// `GET /.well-known/jwks.json`: public keys only, including retired keys still in use.
pub async fn jwks(State(state): State<Shared>) -> Response {
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

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: the store answers.
pub async fn readyz(State(state): State<Shared>) -> Response {
    match state.stores.health.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(err) => {
            tracing::warn!(error = %super::error::chain(&err), "readiness check failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store does not answer",
            )
            .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text. The outbox gauges are read from the store at scrape time;
/// if the store does not answer they keep their last values.
pub async fn metrics(State(state): State<Shared>) -> Response {
    let now = state.clock.now();
    match state.stores.outbox.stats(now).await {
        Ok(stats) => state.metrics.set_outbox(&stats, now),
        Err(err) => {
            tracing::warn!(error = %super::error::chain(&err), "reading outbox statistics failed")
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

/// Unknown route.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
