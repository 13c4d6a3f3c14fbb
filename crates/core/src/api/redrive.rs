//! `POST /api/v2/logout-deliveries/retry` and `POST /api/v2/ssf-deliveries/retry`: the bulk
//! re-drive of dead letters, logout deliveries or SETs, filtered, paged inside the store, and
//! idempotent under an `Idempotency-Key`; both take their keys, time window and answers from
//! here. A re-drive of logout deliveries may name its rows by id instead of filtering them
//! (the console's "re-drive selected").

use super::error::ErrorBody;
use super::extract::JsonBody;
use super::openapi::{BadRequest, InternalError};
use super::{ApiError, Shared};
use crate::ids::{ClientId, DeliveryId};
use crate::initiator::Initiator;
use crate::outbox::{BulkRedrive, FailedFilter, IdempotentRequest, MAX_REDRIVE_IDS};
use crate::ssf::{FailedSetFilter, SetKind};
use crate::store::{Redrives, StoreError};
use async_trait::async_trait;
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

/// The filters of a bulk re-drive; each given one narrows the set of failed deliveries. Or
/// `ids` alone: the deliveries named.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFilters {
    /// Instead of the filters: these deliveries, 1 to 100 ids; those of them that are dead
    /// letters are re-driven, the others (unknown ids, rows in another state) passed over.
    /// Refused together with any filter.
    #[schema(min_items = 1, max_items = 100)]
    ids: Option<Vec<String>>,
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
    summary = "Re-drive every failed delivery matching the filters, or those named by id",
    description = "Each matching `failed` delivery goes back in the queue exactly as \
        `POST /logout-deliveries/{id}/retry` puts one: pending, due now, attempts 0, a fresh age \
        budget. With `ids` (1 to 100 delivery ids, and no filter), the deliveries named that \
        are `failed` are re-driven and the others (unknown, or in another state) passed over; \
        the count says how many were re-driven. The server works in batches of 500 by \
        delivery id, each its own transaction, so a delivery that fails again meanwhile is \
        not re-driven twice by one request. With an `Idempotency-Key`, a repeat of the same \
        request within 24 hours (the same filters, or the same ids in any order) answers the \
        first one's count with `Idempotent-Replayed: true` and re-drives nothing more.",
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
    bulk_redrive(&state, &headers, filter(body)?).await
}

/// The filters of a bulk re-drive of SETs; each given one narrows the set of failed SETs.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetRetryFilters {
    /// Only SETs of this stream.
    stream_id: Option<String>,
    /// Only SETs of this receiver.
    receiver_id: Option<String>,
    /// Only SETs of this kind.
    kind: Option<SetKind>,
    /// Only SETs that failed at or after this time (RFC 3339), their last change.
    #[schema(value_type = Option<String>, format = DateTime)]
    failed_since: Option<String>,
    /// Only SETs that failed before this time (RFC 3339), their last change.
    #[schema(value_type = Option<String>, format = DateTime)]
    failed_before: Option<String>,
}

/// `POST /api/v2/ssf-deliveries/retry`: re-drives every failed SET matching the filters, as
/// the single re-drive does each; answers `{"redriven": n}`.
#[utoipa::path(
    post,
    path = "/ssf-deliveries/retry",
    tag = "ssf",
    operation_id = "retry_failed_ssf_deliveries",
    summary = "Re-drive every failed SET delivery matching the filters",
    description = "Each matching `failed` SET goes back in the queue exactly as \
        `POST /ssf-deliveries/{id}/retry` puts one: pending, due now, attempts 0, a fresh age \
        budget, the same `jti`. A paused stream holds its re-driven SETs until it is enabled; \
        a poll stream's SETs wait for the receiver's next poll. The server works in batches of \
        500 by row id, each its own transaction, so a SET that fails again meanwhile is not \
        re-driven twice by one request. With an `Idempotency-Key`, a repeat of the same \
        request within 24 hours answers the first one's count with `Idempotent-Replayed: \
        true` and re-drives nothing more; the keys are shared with \
        `POST /logout-deliveries/retry`, so a key used there is refused here.",
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "Printable ASCII, 1 to 255 characters; makes a repeat a replay"),
    ),
    request_body = SetRetryFilters,
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
pub(super) async fn retry_failed_sets(
    State(state): State<Shared>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SetRetryFilters>,
) -> Result<Response, ApiError> {
    bulk_redrive(&state, &headers, set_filter(body)?).await
}

/// The selection of a bulk re-drive, of either dead-letter queue: what identifies the request
/// under an idempotency key, and the store's re-drive of it.
#[async_trait]
trait BulkSelection: Send + Sync {
    /// Logged when the request re-drove rows.
    const WHAT: &'static str;

    /// The operation's name and its normalized selection: two bodies that select the same
    /// rows are the same request, and the same selection of the other operation is not.
    fn canonical(&self) -> serde_json::Value;

    /// Re-drives the selected dead letters under `key`.
    async fn redrive(
        &self,
        redrives: &Redrives,
        key: Option<&IdempotentRequest>,
        now: DateTime<Utc>,
    ) -> Result<BulkRedrive, StoreError>;
}

#[async_trait]
impl BulkSelection for FailedFilter {
    const WHAT: &'static str = "failed deliveries re-driven in bulk";

    fn canonical(&self) -> serde_json::Value {
        let mut canonical = serde_json::json!([
            "retry_failed_deliveries",
            self.client_id.as_ref().map(ClientId::as_str),
            self.initiator.map(Initiator::as_str),
            self.failed_since.map(|t| t.timestamp_millis()),
            self.failed_before.map(|t| t.timestamp_millis()),
        ]);
        // Only a request by id carries a sixth element, so that the keys of filtered requests
        // made before ids existed still match their repeats.
        if let (Some(ids), Some(list)) = (&self.ids, canonical.as_array_mut()) {
            list.push(ids.iter().map(DeliveryId::as_str).collect());
        }
        canonical
    }

    async fn redrive(
        &self,
        redrives: &Redrives,
        key: Option<&IdempotentRequest>,
        now: DateTime<Utc>,
    ) -> Result<BulkRedrive, StoreError> {
        redrives.redrive_failed(self, key, now).await
    }
}

#[async_trait]
impl BulkSelection for FailedSetFilter {
    const WHAT: &'static str = "failed SET deliveries re-driven in bulk";

    fn canonical(&self) -> serde_json::Value {
        serde_json::json!([
            "retry_failed_ssf_deliveries",
            self.stream_id,
            self.receiver_id,
            self.kind.map(SetKind::as_str),
            self.failed_since.map(|t| t.timestamp_millis()),
            self.failed_before.map(|t| t.timestamp_millis()),
        ])
    }

    async fn redrive(
        &self,
        redrives: &Redrives,
        key: Option<&IdempotentRequest>,
        now: DateTime<Utc>,
    ) -> Result<BulkRedrive, StoreError> {
        redrives.redrive_failed_sets(self, key, now).await
    }
}

/// A bulk re-drive of `selection`, under the request's idempotency key if it sent one.
async fn bulk_redrive<S: BulkSelection>(
    state: &Shared,
    headers: &HeaderMap,
    selection: S,
) -> Result<Response, ApiError> {
    let now = state.now();
    let key = idempotent_request(headers, &selection.canonical(), now)?;
    let outcome = selection
        .redrive(&state.stores.redrives, key.as_ref(), now)
        .await?;
    answer(outcome, S::WHAT)
}

/// The response to a bulk re-drive's outcome; `what` is logged when it re-drove.
fn answer(outcome: BulkRedrive, what: &'static str) -> Result<Response, ApiError> {
    match outcome {
        BulkRedrive::Redriven(redriven) => {
            tracing::info!(redriven, "{what}");
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

/// The store's filter from the body, refusing an empty client id, an empty time window, and
/// ids that are not 1 to [`MAX_REDRIVE_IDS`] non-empty ids or come with a filter.
fn filter(body: RetryFilters) -> Result<FailedFilter, ApiError> {
    not_empty("client_id", body.client_id.as_deref())?;
    let (since, before) = window(body.failed_since.as_deref(), body.failed_before.as_deref())?;
    let filtered =
        body.client_id.is_some() || body.initiator.is_some() || since.is_some() || before.is_some();
    let ids = body
        .ids
        .map(|ids| delivery_ids(ids, filtered))
        .transpose()?;
    Ok(FailedFilter {
        client_id: body.client_id.map(ClientId::new),
        initiator: body.initiator,
        failed_since: since,
        failed_before: before,
        ids,
    })
}

/// The delivery ids of a re-drive by id, sorted and without repeats; refused when there are
/// none or more than [`MAX_REDRIVE_IDS`], when one is empty, or when the body also `filtered`.
fn delivery_ids(mut ids: Vec<String>, filtered: bool) -> Result<Vec<DeliveryId>, ApiError> {
    if filtered {
        return Err(ApiError::invalid_body(
            "ids cannot be combined with client_id, initiator, failed_since or failed_before",
        ));
    }
    if ids.is_empty() || ids.len() > MAX_REDRIVE_IDS {
        return Err(ApiError::invalid_body(format!(
            "ids must hold 1 to {MAX_REDRIVE_IDS} delivery ids"
        )));
    }
    if ids.iter().any(String::is_empty) {
        return Err(ApiError::invalid_body("ids must not hold an empty id"));
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids.into_iter().map(DeliveryId::new).collect())
}

/// The store's SET filter from the body, refusing empty ids and an empty time window.
fn set_filter(body: SetRetryFilters) -> Result<FailedSetFilter, ApiError> {
    not_empty("stream_id", body.stream_id.as_deref())?;
    not_empty("receiver_id", body.receiver_id.as_deref())?;
    let (since, before) = window(body.failed_since.as_deref(), body.failed_before.as_deref())?;
    Ok(FailedSetFilter {
        stream_id: body.stream_id,
        receiver_id: body.receiver_id,
        kind: body.kind,
        failed_since: since,
        failed_before: before,
    })
}

/// Refuses an id filter given as the empty string.
fn not_empty(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some("") => Err(ApiError::invalid_body(format!("{name} must not be empty"))),
        _ => Ok(()),
    }
}

/// A failure window: its `failed_since` and `failed_before`, each if given.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The failure window `[failed_since, failed_before)`, at the store's precision; refused when
/// a bound is not an RFC 3339 time or the window is empty.
fn window(since: Option<&str>, before: Option<&str>) -> Result<Window, ApiError> {
    let since = time(since, "failed_since")?;
    let before = time(before, "failed_before")?;
    if let (Some(since), Some(before)) = (since, before)
        && since >= before
    {
        return Err(ApiError::invalid_body(
            "failed_since must be before failed_before",
        ));
    }
    Ok((
        since.map(crate::store::millis),
        before.map(crate::store::millis),
    ))
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

/// The request's idempotency key, if it sent one, bound to `canonical`: the operation's name
/// and its normalized filters, so that two bodies that select the same rows (whatever their
/// spacing, key order or time zone) are the same request, and the same filters of the other
/// operation are not.
fn idempotent_request(
    headers: &HeaderMap,
    canonical: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Option<IdempotentRequest>, ApiError> {
    Ok(idempotency_key(headers)?.map(|key| IdempotentRequest {
        key,
        request_hash: request_hash(canonical),
        expires_at: now
            .checked_add_signed(KEY_LIFETIME)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }))
}

/// A SHA-256 of `canonical`'s text, hex.
fn request_hash(canonical: &serde_json::Value) -> String {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
