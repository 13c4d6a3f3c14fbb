//! `/api/v2/ssf-streams` and `/api/v2/ssf-deliveries`: the operator's view of the SSF
//! streams and their SETs, the status a transmitter sets (announced to the receiver by a
//! `stream-updated` SET, SSF §8.1.5), and the re-drive of a failed SET.
//!
//! Never shown here: a push stream's `authorization_header` (a secret of the receiver's;
//! `authorization_header_set` says whether there is one), the removed subjects themselves
//! (only how many), and a SET's payload (it holds the session's metadata).

use super::error::ErrorBody;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound, PayloadTooLarge};
use super::{ApiError, Shared, page_size};
use crate::ssf::{
    NewSet, POLL_METHOD, PUSH_METHOD, SetFilter, SetKind, SetRedrive, SetState, SsfStream,
    StoredSet, StreamDelivery, StreamStatus,
};
use crate::store::Page;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A stream as the operator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfStreamView {
    /// Its id.
    stream_id: String,
    /// Its receiver.
    receiver_id: String,
    /// Its status.
    status: StreamStatus,
    /// Why, when the status was set with a reason.
    #[schema(required = true)]
    status_reason: Option<String>,
    /// The receiver's `events_requested`; `null` when it asked for every supported event.
    #[schema(required = true)]
    events_requested: Option<Vec<String>>,
    /// The events it receives.
    events_delivered: Vec<&'static str>,
    /// How its SETs are delivered.
    delivery: SsfDeliveryView,
    /// The receiver's description.
    #[schema(required = true)]
    description: Option<String>,
    /// How many subjects the receiver removed from it.
    excluded_subjects: usize,
    /// When a verification was last accepted.
    #[schema(required = true)]
    last_verification_at: Option<DateTime<Utc>>,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// Last change.
    updated_at: DateTime<Utc>,
}

/// A stream's delivery, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfDeliveryView {
    /// `urn:ietf:rfc:8935` (push) or `urn:ietf:rfc:8936` (poll).
    method: &'static str,
    /// Push: the receiver's URL. Poll: the URL the receiver polls.
    endpoint_url: String,
    /// Whether push requests carry the receiver's `Authorization` header (never shown).
    authorization_header_set: bool,
}

fn stream_view(state: &Shared, stream: SsfStream) -> SsfStreamView {
    let delivery = match &stream.delivery {
        StreamDelivery::Push {
            endpoint_url,
            authorization_header,
        } => SsfDeliveryView {
            method: PUSH_METHOD,
            endpoint_url: endpoint_url.clone(),
            authorization_header_set: authorization_header.is_some(),
        },
        StreamDelivery::Poll => SsfDeliveryView {
            method: POLL_METHOD,
            endpoint_url: format!(
                "{}/ssf/poll/{}",
                state.issuer.as_str().trim_end_matches('/'),
                stream.stream_id
            ),
            authorization_header_set: false,
        },
    };
    SsfStreamView {
        events_delivered: stream.events_delivered(),
        excluded_subjects: stream.excluded_subjects.len(),
        stream_id: stream.stream_id,
        receiver_id: stream.receiver_id,
        status: stream.status,
        status_reason: stream.status_reason,
        events_requested: stream.events_requested,
        delivery,
        description: stream.description,
        last_verification_at: stream.last_verification_at,
        created_at: stream.created_at,
        updated_at: stream.updated_at,
    }
}

/// A page of `GET /api/v2/ssf-streams`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfStreamPage {
    /// Streams in id order.
    streams: Vec<SsfStreamView>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `GET /api/v2/ssf-streams`: `{streams, next}`.
#[utoipa::path(
    get,
    path = "/ssf-streams",
    tag = "ssf",
    operation_id = "list_ssf_streams",
    summary = "List SSF streams, a page at a time",
    params(super::clients::PageQuery),
    responses(
        (status = 200, description = "One page of streams", body = SsfStreamPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list_streams(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<super::clients::PageQuery>,
) -> Result<Json<SsfStreamPage>, ApiError> {
    let take = page_size(query.take)?;
    let rows = state
        .stores
        .ssf
        .streams(query.from.as_deref(), take)
        .await?;
    let page = Page::from_overfetch(rows, take, |s| s.stream_id.clone());
    Ok(Json(SsfStreamPage {
        streams: page
            .items
            .into_iter()
            .map(|s| stream_view(&state, s))
            .collect(),
        next: page.next,
    }))
}

/// The body of `POST /api/v2/ssf-streams/{stream_id}/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SsfStatusBody {
    /// The new status.
    status: StreamStatus,
    /// Why; sent to the receiver in the `stream-updated` SET.
    reason: Option<String>,
}

/// `POST /api/v2/ssf-streams/{stream_id}/status`: sets the status and tells the receiver
/// with a `stream-updated` SET, written in the same transaction (before a pause or a
/// disable takes effect, so it is still delivered). Setting the status it already has
/// sends nothing.
#[utoipa::path(
    post,
    path = "/ssf-streams/{stream_id}/status",
    tag = "ssf",
    operation_id = "set_ssf_stream_status",
    summary = "Enable, pause or disable an SSF stream, telling its receiver",
    params(("stream_id" = String, Path, description = "The stream id")),
    request_body(content = SsfStatusBody),
    responses(
        (status = 200, description = "The stream as it now stands", body = SsfStreamView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn set_status(
    State(state): State<Shared>,
    PathParams(stream_id): PathParams<String>,
    JsonBody(body): JsonBody<SsfStatusBody>,
) -> Result<Json<SsfStreamView>, ApiError> {
    if let Some(reason) = &body.reason {
        crate::ids::check_caller_text("reason", reason)?;
    }
    let stream = state
        .stores
        .ssf
        .get_stream(&stream_id)
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    let now = state.now();
    let event = (stream.status != body.status).then(|| {
        NewSet::stream_updated(
            &stream.stream_id,
            &stream.receiver_id,
            body.status,
            body.reason.as_deref(),
            now,
        )
    });
    let changed = state
        .stores
        .ssf
        .set_stream_status(
            &stream.stream_id,
            body.status,
            body.reason.as_deref(),
            event.as_ref(),
            now,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("stream"))?;
    crate::store::wake(&state.stores.ssf_wake);
    tracing::info!(stream_id = %changed.stream_id, status = changed.status.as_str(), "ssf stream status set by the operator");
    Ok(Json(stream_view(&state, changed)))
}

/// A SET row as the operator sees it: where its delivery stands, never its payload.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfSetView {
    /// Its row id.
    id: String,
    /// What it carries.
    kind: SetKind,
    /// Its stream.
    stream_id: String,
    /// The stream's receiver.
    receiver_id: String,
    /// Its `jti`, the same on every attempt.
    jti: String,
    /// Its `txn`: the session end's event id (the `event_id` of its logout deliveries).
    #[schema(required = true)]
    txn: Option<String>,
    /// A `session_revoked` SET's session (its `sub_id.session.id`); `null` for other kinds.
    #[schema(required = true)]
    session_id: Option<String>,
    /// A `session_revoked` SET's user (its `sub_id.user.sub`); `null` for other kinds.
    #[schema(required = true)]
    user_id: Option<String>,
    /// Where its delivery stands.
    state: SetState,
    /// Push attempts made, or times handed to a poll.
    attempts: u32,
    /// Pending: when due. In flight: when the lease ends.
    #[schema(required = true)]
    next_attempt_at: Option<DateTime<Utc>>,
    /// The last push attempt's HTTP status.
    #[schema(required = true)]
    last_status: Option<u16>,
    /// The last error.
    #[schema(required = true)]
    last_error: Option<String>,
    /// When it was delivered or acknowledged.
    #[schema(required = true)]
    delivered_at: Option<DateTime<Utc>>,
    /// When it was written; its `iat`.
    created_at: DateTime<Utc>,
}

impl From<StoredSet> for SsfSetView {
    fn from(row: StoredSet) -> Self {
        // Only the subject's ids, never the rest of the payload (its metadata).
        let subject = |key: &str| match row.set.kind {
            SetKind::SessionRevoked => row.set.payload[key].as_str().map(str::to_owned),
            SetKind::Verification | SetKind::StreamUpdated => None,
        };
        Self {
            session_id: subject("sid"),
            user_id: subject("sub"),
            id: row.set.id,
            kind: row.set.kind,
            stream_id: row.set.stream_id,
            receiver_id: row.set.receiver_id,
            jti: row.set.jti,
            txn: row.set.txn,
            state: row.state,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_status: row.last_status,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
            created_at: row.set.created_at,
        }
    }
}

/// Filters and paging of `GET /api/v2/ssf-deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SsfSetQuery {
    /// Only SETs of this stream.
    stream_id: Option<String>,
    /// Only SETs of this receiver.
    receiver_id: Option<String>,
    /// Only SETs in this state.
    #[param(value_type = Option<SetState>)]
    state: Option<String>,
    /// Only SETs of this kind.
    #[param(value_type = Option<SetKind>)]
    kind: Option<String>,
    /// Cursor: the `next` of the previous page; omit it for the first page.
    from: Option<String>,
    /// Page size: 1 to 100, 50 when omitted.
    #[param(minimum = 1, maximum = 100, default = 50)]
    take: Option<usize>,
}

/// A page of `GET /api/v2/ssf-deliveries`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfSetPage {
    /// Matching SETs in id order, which is the order they were written in.
    deliveries: Vec<SsfSetView>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `GET /api/v2/ssf-deliveries`: `{deliveries, next}`.
#[utoipa::path(
    get,
    path = "/ssf-deliveries",
    tag = "ssf",
    operation_id = "list_ssf_deliveries",
    summary = "List SET deliveries, filtered, a page at a time",
    params(SsfSetQuery),
    responses(
        (status = 200, description = "One page of SET deliveries", body = SsfSetPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list_sets(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<SsfSetQuery>,
) -> Result<Json<SsfSetPage>, ApiError> {
    let take = page_size(query.take)?;
    let filter = SetFilter {
        stream_id: query.stream_id,
        receiver_id: query.receiver_id,
        state: query
            .state
            .as_deref()
            .map(str::parse::<SetState>)
            .transpose()
            .map_err(ApiError::invalid_query)?,
        kind: query
            .kind
            .as_deref()
            .map(str::parse::<SetKind>)
            .transpose()
            .map_err(ApiError::invalid_query)?,
    };
    let page = state
        .stores
        .ssf
        .list_sets(&filter, query.from.as_deref(), take)
        .await?;
    Ok(Json(SsfSetPage {
        deliveries: page.items.into_iter().map(SsfSetView::from).collect(),
        next: page.next,
    }))
}

/// `GET /api/v2/ssf-deliveries/{id}`.
#[utoipa::path(
    get,
    path = "/ssf-deliveries/{id}",
    tag = "ssf",
    operation_id = "get_ssf_delivery",
    summary = "Read a SET delivery",
    params(("id" = String, Path, description = "The SET row id")),
    responses(
        (status = 200, description = "The SET delivery", body = SsfSetView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get_set(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<SsfSetView>, ApiError> {
    state
        .stores
        .ssf
        .get_set(&id)
        .await?
        .map(|row| Json(SsfSetView::from(row)))
        .ok_or_else(|| ApiError::not_found("SET delivery"))
}

/// The 202 body of a re-drive.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfRedriven {
    /// The SET row.
    id: String,
    /// Its new state: `pending`, due at once.
    state: SetState,
}

/// `POST /api/v2/ssf-deliveries/{id}/retry`: re-drives a failed SET with a fresh budget
/// and the same `jti`.
#[utoipa::path(
    post,
    path = "/ssf-deliveries/{id}/retry",
    tag = "ssf",
    operation_id = "retry_ssf_delivery",
    summary = "Re-drive a failed SET delivery",
    params(("id" = String, Path, description = "The SET row id")),
    responses(
        (status = 202, description = "Queued again with a fresh attempt budget", body = SsfRedriven),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, description = "The SET is not `failed` (`not_failed`)", body = ErrorBody),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn retry_set(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    match state.stores.ssf.redrive_set(&id, state.now()).await? {
        SetRedrive::Requeued => {
            crate::store::wake(&state.stores.ssf_wake);
            tracing::info!(set_id = %id, "SET delivery re-driven");
            let body = SsfRedriven {
                id,
                state: SetState::Pending,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        SetRedrive::NotFailed(current) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            format!(
                "only failed SET deliveries can be re-driven; this one is {}",
                current.as_str()
            ),
        )),
        SetRedrive::NotFound => Err(ApiError::not_found("SET delivery")),
    }
}
