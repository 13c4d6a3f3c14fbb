//! `/api/v2/logout-deliveries`: the delivery status API, operator re-drive and the explicit
//! dead-letter cleanup.

use super::extract::{PathParams, QueryParams};
use super::{ApiError, Shared, page_size};
use crate::ids::{ClientId, DeliveryId, SessionId, UserId};
use crate::outbox::{DeliveryDetail, DeliveryFilter, DeliveryState, Redrive};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// Filters and paging of `GET /api/v2/logout-deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    client_id: Option<String>,
    session_id: Option<String>,
    user_id: Option<String>,
    from: Option<String>,
    take: Option<usize>,
}

/// `GET /api/v2/logout-deliveries`: `{deliveries, next}`.
pub async fn list(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
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
    };
    let page = state
        .stores
        .outbox
        .list_deliveries(&filter, query.from.as_deref(), take)
        .await?;
    Ok(Json(json!({ "deliveries": page.items, "next": page.next })).into_response())
}

/// `GET /api/v2/logout-deliveries/{id}`: the row with its attempt history.
pub async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    state
        .stores
        .outbox
        .get_delivery(&DeliveryId::new(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("delivery"))
}

/// `POST /api/v2/logout-deliveries/{id}/retry`: re-drives a failed delivery.
pub async fn retry(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let delivery_id = DeliveryId::new(id);
    let outcome = state
        .stores
        .outbox
        .redrive(&delivery_id, state.now())
        .await
        .map_err(|e| ApiError::from_store(e, "delivery"))?;
    match outcome {
        Redrive::Requeued => {
            tracing::info!(delivery_id = %delivery_id, "delivery re-driven");
            let body = json!({ "id": delivery_id, "state": DeliveryState::Pending });
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneFailedQuery {
    older_than_days: u32,
}

/// The largest `older_than_days` accepted: a century, far past any retention anyone keeps,
/// and far from the date arithmetic's limits.
pub const MAX_PRUNE_DAYS: u32 = 36_500;

/// `POST /api/v2/logout-deliveries/prune-failed?older_than_days=N`: deletes failed deliveries
/// (and their attempt history) whose last change is more than N days old; `N = 0` removes
/// every failed delivery. Answers `{"deleted": n}`.
pub async fn prune_failed(
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
    let deleted = crate::retention::prune_failed(state.stores.outbox.as_ref(), before).await?;
    tracing::info!(
        deleted,
        older_than_days = query.older_than_days,
        "failed deliveries pruned"
    );
    Ok(Json(json!({ "deleted": deleted })).into_response())
}
