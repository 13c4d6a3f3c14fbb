//! `POST /api/v2/logout-deliveries/retry`: the bulk re-drive of dead letters, filtered, paged
//! inside the store, and idempotent under an `Idempotency-Key`.

use super::error::ErrorBody;
use super::extract::JsonBody;
use super::openapi::{BadRequest, InternalError};
use super::{ApiError, Shared};
use crate::ids::ClientId;
use crate::initiator::Initiator;
use crate::outbox::{BulkRedrive, FailedFilter, IdempotentRequest};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The request header that makes a bulk re-drive idempotent.
pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header of an answer replayed for a repeated key.
pub(super) const REPLAYED: &str = "idempotent-replayed";
/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 255;
/// How long a key is remembered; retention forgets it after that.
const KEY_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The filters of a bulk re-drive; each given one narrows the set of failed deliveries.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFilters {
    /// Only deliveries to this client.
    client_id: Option<String>,
    /// Only deliveries that failed at or after this time (RFC 3339), their last change.
    #[schema(value_type = Option<String>, format = DateTime)]
    failed_since: Option<String>,
    /// Only deliveries that failed before this time (RFC 3339), their last change.
    #[schema(value_type = Option<String>, format = DateTime)]
    failed_before: Option<String>,
    /// Only deliveries of sessions ended by this initiator.
    initiator: Option<Initiator>,
}

/// The body of a bulk re-drive.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BulkRedriven {
    /// Failed deliveries put back in the queue, due at once with a fresh attempt budget.
    redriven: u64,
}

/// `POST /api/v2/logout-deliveries/retry`: re-drives every failed delivery matching the
/// filters, as the single re-drive does each; answers `{"redriven": n}`.
#[utoipa::path(
    post,
    path = "/logout-deliveries/retry",
    tag = "deliveries",
    operation_id = "retry_failed_deliveries",
    summary = "Re-drive every failed delivery matching the filters",
    description = "Each matching `failed` delivery goes back in the queue exactly as \
        `POST /logout-deliveries/{id}/retry` puts one: pending, due now, attempts 0, a fresh age \
        budget. The server works in batches of 500 by delivery id, each its own transaction, \
        so a delivery that fails again meanwhile is not re-driven twice by one request. With \
        an `Idempotency-Key`, a repeat of the same request within 24 hours answers the first \
        one's count with `Idempotent-Replayed: true` and re-drives nothing more.",
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "Printable ASCII, 1 to 255 characters; makes a repeat a replay"),
    ),
    request_body = RetryFilters,
    responses(
        (status = 200, description = "How many were re-driven", body = BulkRedriven,
            headers(("Idempotent-Replayed" = String,
                description = "`true` when this answers an earlier request with the same key"))),
        (status = 400, response = BadRequest),
        (status = 409, description = "The key's first request is still running \
            (`idempotency_key_in_progress`)", body = ErrorBody),
        (status = 422, description = "The key was used with a different request body \
            (`idempotency_key_reused`)", body = ErrorBody),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn retry_failed(
    State(state): State<Shared>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RetryFilters>,
) -> Result<Response, ApiError> {
    let filter = filter(body)?;
    let now = state.now();
    let key = idempotency_key(&headers)?.map(|key| IdempotentRequest {
        key,
        request_hash: request_hash(&filter),
        expires_at: now
            .checked_add_signed(KEY_LIFETIME)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    });
    let outcome = state
        .stores
        .redrives
        .redrive_failed(&filter, key.as_ref(), now)
        .await?;
    answer(outcome)
}

/// The response to a bulk re-drive's outcome.
fn answer(outcome: BulkRedrive) -> Result<Response, ApiError> {
    match outcome {
        BulkRedrive::Redriven(redriven) => {
            tracing::info!(redriven, "failed deliveries re-driven in bulk");
            Ok(Json(BulkRedriven { redriven }).into_response())
        }
        BulkRedrive::Replayed(redriven) => {
            let mut res = Json(BulkRedriven { redriven }).into_response();
            res.headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            Ok(res)
        }
        BulkRedrive::KeyReused => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body; use a new key",
        )),
        BulkRedrive::KeyInProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            "the first request with this Idempotency-Key has not finished; repeat it later \
             (a request that stopped is taken over after 10 minutes without progress)",
        )),
    }
}

/// The store's filter from the body, refusing an empty client id and an empty time window.
fn filter(body: RetryFilters) -> Result<FailedFilter, ApiError> {
    if body.client_id.as_deref() == Some("") {
        return Err(ApiError::invalid_body("client_id must not be empty"));
    }
    let since = time(body.failed_since.as_deref(), "failed_since")?;
    let before = time(body.failed_before.as_deref(), "failed_before")?;
    if let (Some(since), Some(before)) = (since, before)
        && since >= before
    {
        return Err(ApiError::invalid_body(
            "failed_since must be before failed_before",
        ));
    }
    Ok(FailedFilter {
        client_id: body.client_id.map(ClientId::new),
        initiator: body.initiator,
        failed_since: since.map(crate::store::millis),
        failed_before: before.map(crate::store::millis),
    })
}

/// An RFC 3339 time of field `name`, if given.
fn time(value: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid_body(format!(
                        "{name} must be an RFC 3339 time such as 2026-01-02T03:04:05Z"
                    ))
                })
        })
        .transpose()
}

/// The `Idempotency-Key` header, if sent: one value of printable ASCII, 1 to 255 characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let refuse = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", why);
    if values.next().is_some() {
        return Err(refuse("send one Idempotency-Key header, not several"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
        return Err(refuse(
            "the Idempotency-Key must be 1 to 255 characters long",
        ));
    }
    if !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(refuse("the Idempotency-Key must be printable ASCII"));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// A SHA-256 of the operation and its normalized filters, hex: two bodies that select the
/// same deliveries hash alike, whatever their spacing, key order or time zone.
fn request_hash(filter: &FailedFilter) -> String {
    let canonical = serde_json::json!([
        "retry_failed_deliveries",
        filter.client_id.as_ref().map(ClientId::as_str),
        filter.initiator.map(Initiator::as_str),
        filter.failed_since.map(|t| t.timestamp_millis()),
        filter.failed_before.map(|t| t.timestamp_millis()),
    ]);
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
