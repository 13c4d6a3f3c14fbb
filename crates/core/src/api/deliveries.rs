//! `/api/v2/logout-deliveries`: the delivery status API, operator re-drive and the explicit
//! dead-letter cleanup.

use super::error::ErrorBody;
use super::extract::{PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound};
use super::{ApiError, Shared, page_size};
use crate::ids::{ClientId, DeliveryId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::outbox::{Delivery, DeliveryDetail, DeliveryFilter, DeliveryState, Redrive};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Filters and paging of `GET /api/v2/logout-deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only deliveries in this state.
    #[param(value_type = Option<DeliveryState>)]
    state: Option<String>,
    /// Only deliveries to this client.
    client_id: Option<String>,
    /// Only deliveries for this session.
    session_id: Option<String>,
    /// Only deliveries for this user's sessions.
    user_id: Option<String>,
    /// Only deliveries of ends with this initiator (one of Auth0's nine names).
    #[param(value_type = Option<Initiator>)]
    initiator: Option<String>,
    /// Only deliveries written (the session end) at or after this time (RFC 3339).
    created_since: Option<DateTime<Utc>>,
    /// Only deliveries written before this time (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// Cursor: the `next` of the previous page; omit it for the first page.
    from: Option<String>,
    /// Page size: 1 to 100, 50 when omitted.
    #[param(minimum = 1, maximum = 100, default = 50)]
    take: Option<usize>,
}

/// A page of `GET /api/v2/logout-deliveries`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryPage {
    /// Matching deliveries in id order, which is the order they were created in.
    deliveries: Vec<Delivery>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `GET /api/v2/logout-deliveries`: `{deliveries, next}`.
#[utoipa::path(
    get,
    path = "/logout-deliveries",
    tag = "deliveries",
    operation_id = "list_deliveries",
    summary = "List deliveries, filtered, a page at a time",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of deliveries", body = DeliveryPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let take = page_size(query.take)?;
    let filter = DeliveryFilter {
        state: query
            .state
            .as_deref()
            .map(str::parse::<DeliveryState>)
            .transpose()
            .map_err(ApiError::invalid_query)?,
        client_id: query.client_id.map(ClientId::new),
        session_id: query.session_id.map(SessionId::new),
        user_id: query.user_id.map(UserId::new),
        initiator: query
            .initiator
            .as_deref()
            .map(str::parse::<Initiator>)
            .transpose()
            .map_err(ApiError::invalid_query)?,
        created_since: query.created_since.map(crate::store::millis),
        created_before: query.created_before.map(crate::store::millis),
    };
    let page = state
        .stores
        .deliveries
        .list_deliveries(&filter, query.from.as_deref(), take)
        .await?;
    Ok(Json(DeliveryPage {
        deliveries: page.items,
        next: page.next,
    }))
}

/// `GET /api/v2/logout-deliveries/{id}`: the row with its attempt history.
#[utoipa::path(
    get,
    path = "/logout-deliveries/{id}",
    tag = "deliveries",
    operation_id = "get_delivery",
    summary = "Read a delivery and its attempt history",
    params(("id" = String, Path, description = "The delivery id")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    state
        .stores
        .deliveries
        .get_delivery(&DeliveryId::new(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("delivery"))
}

/// The 202 body of a re-drive.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Redriven {
    /// The delivery.
    id: DeliveryId,
    /// Its new state: `pending`, due at once.
    state: DeliveryState,
}

/// `POST /api/v2/logout-deliveries/{id}/retry`: re-drives a failed delivery.
#[utoipa::path(
    post,
    path = "/logout-deliveries/{id}/retry",
    tag = "deliveries",
    operation_id = "retry_delivery",
    summary = "Re-drive a failed delivery",
    params(("id" = String, Path, description = "The delivery id")),
    responses(
        (status = 202, description = "Queued again with a fresh attempt budget", body = Redriven),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, description = "The delivery is not `failed` (`not_failed`)",
            body = ErrorBody),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn retry(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let delivery_id = DeliveryId::new(id);
    let outcome = state
        .stores
        .redrives
        .redrive(&delivery_id, state.now())
        .await
        .map_err(|e| ApiError::from_store(e, "delivery"))?;
    match outcome {
        Redrive::Requeued => {
            tracing::info!(delivery_id = %delivery_id, "delivery re-driven");
            let body = Redriven {
                id: delivery_id,
                state: DeliveryState::Pending,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Redrive::NotFailed(current) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            format!(
                "only failed deliveries can be re-driven; this one is {}",
                current.as_str()
            ),
        )),
    }
}

/// Query of `POST /api/v2/logout-deliveries/prune-failed`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PruneFailedQuery {
    /// Delete failed deliveries whose last change is more than this many days old; 0 deletes
    /// every failed delivery.
    older_than_days: u32,
}

/// The largest `older_than_days` accepted: a century, far past any retention anyone keeps,
/// and far from the date arithmetic's limits.
pub(super) const MAX_PRUNE_DAYS: u32 = 36_500;
/// The body of a prune.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Pruned {
    /// Failed deliveries deleted, with their attempt history.
    deleted: u64,
}

/// `POST /api/v2/logout-deliveries/prune-failed?older_than_days=N`: deletes failed deliveries
/// (and their attempt history) whose last change is more than N days old; `N = 0` removes
/// every failed delivery. Answers `{"deleted": n}`.
#[utoipa::path(
    post,
    path = "/logout-deliveries/prune-failed",
    tag = "deliveries",
    operation_id = "prune_failed_deliveries",
    summary = "Delete old dead letters",
    params(PruneFailedQuery),
    responses(
        (status = 200, description = "How many were deleted", body = Pruned),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn prune_failed(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<PruneFailedQuery>,
) -> Result<Response, ApiError> {
    if query.older_than_days > MAX_PRUNE_DAYS {
        return Err(ApiError::invalid_query(format!(
            "older_than_days must be between 0 and {MAX_PRUNE_DAYS}"
        )));
    }
    let age = chrono::Duration::days(i64::from(query.older_than_days));
    let before = state
        .now()
        .checked_sub_signed(age)
        .ok_or_else(|| ApiError::invalid_query("older_than_days reaches before the calendar"))?;
    let deleted =
        crate::retention::prune_failed(state.stores.housekeeping.as_ref(), before).await?;
    tracing::info!(
        deleted,
        older_than_days = query.older_than_days,
        "failed deliveries pruned"
    );
    Ok(Json(Pruned { deleted }).into_response())
}
