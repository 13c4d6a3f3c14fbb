//! `/api/v2/operator-events`: the operator events (`client.paused`, `client.resumed`,
//! `delivery.failed`) with the state of their webhook delivery, and the re-drive of a failed
//! one.

use super::error::ErrorBody;
use super::extract::{PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound};
use super::{ApiError, Shared, page_size};
use crate::ids::OperatorEventId;
use crate::operator_events::{
    EventRedrive, OperatorEvent, OperatorEventFilter, OperatorEventState, OperatorEventType,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Filters and paging of `GET /api/v2/operator-events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<OperatorEventType>)]
    kind: Option<String>,
    /// Only events in this state.
    #[param(value_type = Option<OperatorEventState>)]
    state: Option<String>,
    /// Cursor: the `next` of the previous page; omit it for the first page.
    from: Option<String>,
    /// Page size: 1 to 100, 50 when omitted.
    #[param(minimum = 1, maximum = 100, default = 50)]
    take: Option<usize>,
}

/// A page of `GET /api/v2/operator-events`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OperatorEventPage {
    /// Matching events in id order, which is the order they happened in.
    events: Vec<OperatorEvent>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `GET /api/v2/operator-events`: `{events, next}`.
#[utoipa::path(
    get,
    path = "/operator-events",
    tag = "operator-events",
    operation_id = "list_operator_events",
    summary = "List operator events, filtered, a page at a time",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of operator events", body = OperatorEventPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<OperatorEventPage>, ApiError> {
    let take = page_size(query.take)?;
    let filter = OperatorEventFilter {
        kind: query
            .kind
            .as_deref()
            .map(str::parse::<OperatorEventType>)
            .transpose()
            .map_err(ApiError::invalid_query)?,
        state: query
            .state
            .as_deref()
            .map(str::parse::<OperatorEventState>)
            .transpose()
            .map_err(ApiError::invalid_query)?,
    };
    let page = state
        .stores
        .operator_events
        .list_events(&filter, query.from.as_deref(), take)
        .await?;
    Ok(Json(OperatorEventPage {
        events: page.items,
        next: page.next,
    }))
}

/// `GET /api/v2/operator-events/{id}`: the event with its webhook attempts.
#[utoipa::path(
    get,
    path = "/operator-events/{id}",
    tag = "operator-events",
    operation_id = "get_operator_event",
    summary = "Read an operator event and where its webhook delivery stands",
    params(("id" = String, Path, description = "The operator event id")),
    responses(
        (status = 200, description = "The event", body = OperatorEvent),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<OperatorEvent>, ApiError> {
    state
        .stores
        .operator_events
        .get_event(&OperatorEventId::new(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("operator event"))
}

/// The 202 body of a re-drive.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Redriven {
    /// The event.
    id: OperatorEventId,
    /// Its new state: `pending`, due at once.
    state: OperatorEventState,
}

/// `POST /api/v2/operator-events/{id}/retry`: re-drives a failed event.
#[utoipa::path(
    post,
    path = "/operator-events/{id}/retry",
    tag = "operator-events",
    operation_id = "retry_operator_event",
    summary = "Re-drive a failed operator event",
    params(("id" = String, Path, description = "The operator event id")),
    responses(
        (status = 202, description = "Queued again with a fresh attempt budget", body = Redriven),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, description = "The event is not `failed` (`not_failed`)",
            body = ErrorBody),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn retry(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let id = OperatorEventId::new(id);
    let outcome = state
        .stores
        .operator_events
        .redrive_event(&id, state.now())
        .await?;
    match outcome {
        EventRedrive::Requeued => {
            tracing::info!(operator_event_id = %id, "operator event re-driven");
            let body = Redriven {
                id,
                state: OperatorEventState::Pending,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        EventRedrive::NotFailed(current) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            format!(
                "only failed operator events can be re-driven; this one is {}",
                current.as_str()
            ),
        )),
        EventRedrive::NotFound => Err(ApiError::not_found("operator event")),
    }
}
