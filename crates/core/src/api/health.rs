//! `/api/v2/clients/{client_id}/health` and `/api/v2/client-health`: each client's endpoint
//! health (success rate, latency percentiles, failure streak, who paused it).

use super::clients::PageQuery;
use super::extract::{PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound};
use super::{ApiError, Shared, page_size};
use crate::health::ClientHealth;
use crate::ids::ClientId;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// A page of `GET /api/v2/client-health`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClientHealthPage {
    /// Each client's health, in `client_id` order.
    clients: Vec<ClientHealth>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `GET /api/v2/clients/{client_id}/health`.
#[utoipa::path(
    get,
    path = "/clients/{client_id}/health",
    tag = "clients",
    operation_id = "get_client_health",
    summary = "A relying party's endpoint health",
    description = "Success rate and p50/p99 latency over the last 24 hours (latency within \
        10 %), the last success and failure, the current failure streak, and whether and by \
        whom the client is paused.",
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 200, description = "The client's health", body = ClientHealth),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<ClientHealth>, ApiError> {
    state
        .stores
        .client_health
        .client_health(&ClientId::from(id.as_str()), state.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("client"))
}

/// `GET /api/v2/client-health`.
#[utoipa::path(
    get,
    path = "/client-health",
    tag = "clients",
    operation_id = "list_client_health",
    summary = "Every relying party's endpoint health, a page at a time",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of client health", body = ClientHealthPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<ClientHealthPage>, ApiError> {
    let take = page_size(query.take)?;
    let page = state
        .stores
        .client_health
        .list_client_health(query.from.as_deref(), take, state.now())
        .await?;
    Ok(Json(ClientHealthPage {
        clients: page.items,
        next: page.next,
    }))
}
