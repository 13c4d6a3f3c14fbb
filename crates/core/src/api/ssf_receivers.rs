//! `/api/v2/ssf-receivers`: the operator registers the SSF receivers, each with its own `aud`
//! and bearer token. The token is shown once, when it is made (at registration or on
//! rotation); the store keeps only its SHA-256.

use super::clients::PageQuery;
use super::error::ErrorBody;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound, PayloadTooLarge};
use super::{ApiError, Shared, page_size};
use crate::ids::{ClientId, check_caller_text};
use crate::ssf::{ReceiverScope, SsfReceiver};
use crate::store::Page;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v2/ssf-receivers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SsfReceiverBody {
    /// A name for operators.
    name: String,
    /// The `aud` of its SETs, unique among receivers; the receiver's id when omitted.
    aud: Option<String>,
    /// The client it stands for: with scope `participating`, it hears of the sessions that
    /// client took part in.
    client_id: Option<String>,
    /// Which session ends it hears of: `participating` (the default with a `client_id`) or
    /// `all` (the default without).
    scope: Option<ReceiverScope>,
    /// Whether its `session-revoked` SETs carry the session's metadata; `false` when omitted.
    include_session_metadata: Option<bool>,
}

/// A receiver with its bearer token: the only answer that ever shows the token.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfReceiverWithToken {
    /// The receiver.
    #[serde(flatten)]
    receiver: SsfReceiver,
    /// Its bearer token for the `/ssf/` routes. Shown only here; keep it now.
    token: String,
}

/// A page of `GET /api/v2/ssf-receivers`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SsfReceiverPage {
    /// Receivers in id order.
    receivers: Vec<SsfReceiver>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `POST /api/v2/ssf-receivers`.
#[utoipa::path(
    post,
    path = "/ssf-receivers",
    tag = "ssf",
    operation_id = "create_ssf_receiver",
    summary = "Register an SSF receiver; its bearer token is shown once",
    request_body(content = SsfReceiverBody, description = "`name` is required."),
    responses(
        (status = 201, description = "The receiver, with its token", body = SsfReceiverWithToken),
        (status = 400, response = BadRequest),
        (status = 409, description = "A receiver with that `aud` exists (`already_exists`)",
            body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn create(
    State(state): State<Shared>,
    JsonBody(body): JsonBody<SsfReceiverBody>,
) -> Result<Response, ApiError> {
    check_caller_text("name", &body.name)?;
    let id = format!("ssr_{}", crate::ids::random_token());
    let aud = body.aud.clone().unwrap_or_else(|| id.clone());
    check_caller_text("aud", &aud)?;
    let client_id = match &body.client_id {
        Some(raw) => Some(known_client(&state, raw).await?),
        None => None,
    };
    let scope = match (body.scope, &client_id) {
        (Some(ReceiverScope::Participating), None) => {
            return Err(ApiError::invalid_body(
                "scope participating needs a client_id: the sessions that client took part in",
            ));
        }
        (Some(scope), _) => scope,
        (None, Some(_)) => ReceiverScope::Participating,
        (None, None) => ReceiverScope::All,
    };
    let token = crate::ids::random_secret();
    let now = state.now();
    let receiver = SsfReceiver {
        id,
        name: body.name,
        aud,
        client_id,
        scope,
        include_session_metadata: body.include_session_metadata.unwrap_or(false),
        token_hash: super::ssf::token_hash(&token),
        created_at: now,
        updated_at: now,
    };
    if !state.stores.ssf.insert_receiver(&receiver).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            "a receiver with that aud already exists",
        ));
    }
    tracing::info!(receiver_id = %receiver.id, "ssf receiver registered");
    let body = SsfReceiverWithToken { receiver, token };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The registered client `raw` names; 400 when there is none.
async fn known_client(state: &Shared, raw: &str) -> Result<ClientId, ApiError> {
    let id = ClientId::parse_reference(raw)?;
    if state.stores.clients.get_client(&id).await?.is_none() {
        return Err(ApiError::invalid_body(format!(
            "unknown client_id {}",
            super::error::shorten(raw)
        )));
    }
    Ok(id)
}

/// `GET /api/v2/ssf-receivers`: `{receivers, next}`.
#[utoipa::path(
    get,
    path = "/ssf-receivers",
    tag = "ssf",
    operation_id = "list_ssf_receivers",
    summary = "List SSF receivers, a page at a time",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of receivers", body = SsfReceiverPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<SsfReceiverPage>, ApiError> {
    let take = page_size(query.take)?;
    let rows = state
        .stores
        .ssf
        .receivers(query.from.as_deref(), take)
        .await?;
    let page = Page::from_overfetch(rows, take, |r| r.id.clone());
    Ok(Json(SsfReceiverPage {
        receivers: page.items,
        next: page.next,
    }))
}

async fn load(state: &Shared, id: &str) -> Result<SsfReceiver, ApiError> {
    state
        .stores
        .ssf
        .get_receiver(id)
        .await?
        .ok_or_else(|| ApiError::not_found("receiver"))
}

/// `GET /api/v2/ssf-receivers/{id}`.
#[utoipa::path(
    get,
    path = "/ssf-receivers/{id}",
    tag = "ssf",
    operation_id = "get_ssf_receiver",
    summary = "Read an SSF receiver",
    params(("id" = String, Path, description = "The receiver id")),
    responses(
        (status = 200, description = "The receiver", body = SsfReceiver),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<SsfReceiver>, ApiError> {
    load(&state, &id).await.map(Json)
}

/// `DELETE /api/v2/ssf-receivers/{id}`: the receiver and its stream go; the stream's
/// waiting SETs are cancelled.
#[utoipa::path(
    delete,
    path = "/ssf-receivers/{id}",
    tag = "ssf",
    operation_id = "delete_ssf_receiver",
    summary = "Delete an SSF receiver and its stream",
    params(("id" = String, Path, description = "The receiver id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn delete(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    if !state.stores.ssf.delete_receiver(&id, state.now()).await? {
        return Err(ApiError::not_found("receiver"));
    }
    tracing::info!(receiver_id = %id, "ssf receiver deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v2/ssf-receivers/{id}/rotate-token`: a new token, shown once; the old one
/// stops working at once.
#[utoipa::path(
    post,
    path = "/ssf-receivers/{id}/rotate-token",
    tag = "ssf",
    operation_id = "rotate_ssf_receiver_token",
    summary = "Give an SSF receiver a new bearer token, shown once",
    params(("id" = String, Path, description = "The receiver id")),
    responses(
        (status = 200, description = "The receiver, with its new token", body = SsfReceiverWithToken),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn rotate_token(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<SsfReceiverWithToken>, ApiError> {
    let mut receiver = load(&state, &id).await?;
    let token = crate::ids::random_secret();
    receiver.token_hash = super::ssf::token_hash(&token);
    receiver.updated_at = state.now();
    if !state.stores.ssf.update_receiver(&receiver).await? {
        return Err(ApiError::not_found("receiver"));
    }
    tracing::info!(receiver_id = %receiver.id, "ssf receiver token rotated");
    Ok(Json(SsfReceiverWithToken { receiver, token }))
}
