//! `/api/v2/sessions` and `/api/v2/users/{user_id}/sessions`: registering sessions, the RPs
//! that join them, and their metadata (Auth0 Session Metadata). Every session these routes
//! answer with passes through [`shown`]: a token without the metadata grant sees the
//! metadata's keys, each value replaced by [`REDACTED`].

use super::auth::Caller;
use super::clients::PageQuery;
use super::error::ErrorBody;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound, PayloadTooLarge, SessionEnded};
use super::{ApiError, Shared, page_size};
use crate::ids::{ClientId, SessionId, UserId};
use crate::metadata::{self, MetadataOp, SessionMetadata};
use crate::session::{Device, Session, SessionClient, joined_once};
use crate::tokens::REDACTED;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest accepted device field (IP or user agent), in characters.
pub(super) const MAX_DEVICE_FIELD_CHARS: usize = 1024;

/// `POST /api/v2/sessions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    /// The session id (1-255 characters); generated with 128 random bits when absent.
    id: Option<String>,
    /// The user (1-255 characters).
    user_id: String,
    /// RPs that took part; each must be registered. Repeats are kept once.
    #[serde(default)]
    clients: Vec<ClientRef>,
    /// The session's metadata; `null` or absent is none.
    #[serde(default)]
    #[schema(value_type = Option<SessionMetadata>)]
    session_metadata: serde_json::Value,
    /// Absolute expiry.
    expires_at: Option<DateTime<Utc>>,
    /// Idle expiry.
    idle_expires_at: Option<DateTime<Utc>>,
    /// When the user authenticated.
    authenticated_at: Option<DateTime<Utc>>,
    /// Last user interaction.
    last_interacted_at: Option<DateTime<Utc>>,
    /// Device information; each field at most 1024 characters.
    device: Option<Device>,
}

/// `{"client_id", "sid"?}`: an RP that joined, with the `sid` of its ID token when the IdP
/// gives each RP its own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientRef {
    /// A registered client's `client_id`.
    client_id: String,
    /// The `sid` of this RP's ID token, when the IdP gives each RP its own; its logout
    /// token then carries it. Omitted: the session's id.
    sid: Option<String>,
}

impl ClientRef {
    /// The validated entry.
    fn into_client(self) -> Result<SessionClient, ApiError> {
        let client_id = ClientId::parse_reference(&self.client_id)?;
        let sid = match self.sid.as_deref() {
            Some(sid) => Some(SessionId::parse(sid).map_err(|e| e.for_field("sid"))?),
            None => None,
        };
        Ok(SessionClient::with_sid(client_id, sid))
    }
}

/// The session as `caller` may read it: as stored with the metadata grant; without it, the
/// metadata keeps its keys and every value reads [`REDACTED`]. Nothing else changes.
fn shown(mut session: Session, Caller(caller): Caller) -> Session {
    if !caller.metadata {
        session.session_metadata = session.session_metadata.redacted(REDACTED);
    }
    session
}

fn ms(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(crate::store::millis)
}

fn validate_device(device: &Device) -> Result<(), ApiError> {
    let fields = [
        &device.initial_ip,
        &device.initial_user_agent,
        &device.last_ip,
        &device.last_user_agent,
    ];
    let present = || fields.iter().filter_map(|f| f.as_deref());
    if present().any(|v| v.chars().count() > MAX_DEVICE_FIELD_CHARS) {
        return Err(ApiError::invalid_body(format!(
            "device fields are at most {MAX_DEVICE_FIELD_CHARS} characters"
        )));
    }
    // A user agent or address never holds control characters; NUL in particular cannot be
    // stored by PostgreSQL, so every backend refuses them alike.
    if present().any(|v| v.chars().any(char::is_control)) {
        return Err(ApiError::invalid_body(
            "device fields must not contain control characters",
        ));
    }
    Ok(())
}

impl CreateBody {
    fn into_session(self, now: DateTime<Utc>) -> Result<Session, ApiError> {
        let id = match self.id {
            Some(id) => SessionId::parse(&id).map_err(|e| e.for_field("id"))?,
            None => SessionId::generate(),
        };
        let user_id = UserId::parse(&self.user_id)?;
        let clients = self
            .clients
            .into_iter()
            .map(ClientRef::into_client)
            .collect::<Result<Vec<_>, _>>()?;
        let device = self.device.unwrap_or_default();
        validate_device(&device)?;
        Ok(Session {
            id,
            user_id,
            created_at: now,
            updated_at: now,
            authenticated_at: ms(self.authenticated_at),
            idle_expires_at: ms(self.idle_expires_at),
            expires_at: ms(self.expires_at),
            last_interacted_at: ms(self.last_interacted_at),
            device,
            clients: joined_once(&clients),
            session_metadata: SessionMetadata::from_json(&self.session_metadata)
                .map_err(|e| ApiError::invalid_body(e.to_string()))?,
            ended_at: None,
            end_initiator: None,
        })
    }
}

/// `POST /api/v2/sessions`: 201 with the session.
#[utoipa::path(
    post,
    path = "/sessions",
    tag = "sessions",
    operation_id = "create_session",
    summary = "Register a session",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The session as registered", body = Session),
        (status = 400, response = BadRequest),
        (status = 409, description = "A session with that id exists (`already_exists`)",
            body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn create(
    State(state): State<Shared>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let session = body.into_session(state.now())?;
    state
        .stores
        .sessions
        .create_session(&session)
        .await
        .map_err(|e| ApiError::from_store(e, "session"))?;
    tracing::info!(session_id = %session.id, clients = session.clients.len(), "session registered");
    Ok((StatusCode::CREATED, Json(shown(session, caller))).into_response())
}

/// `GET /api/v2/sessions/{id}`.
#[utoipa::path(
    get,
    path = "/sessions/{id}",
    tag = "sessions",
    operation_id = "get_session",
    summary = "Read a session",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session; to a token without the metadata grant \
            every `session_metadata` value reads `[redacted]`", body = Session),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Session>, ApiError> {
    state
        .stores
        .sessions
        .get_session(&SessionId::new(id))
        .await?
        .map(|session| Json(shown(session, caller)))
        .ok_or_else(|| ApiError::not_found("session"))
}

/// `POST /api/v2/sessions/{id}/clients`: an RP joined the session. Joining again keeps its
/// place; a `sid` given then replaces the one it had.
#[utoipa::path(
    post,
    path = "/sessions/{id}/clients",
    tag = "sessions",
    operation_id = "add_session_client",
    summary = "Record that an RP joined a session",
    params(("id" = String, Path, description = "The session id")),
    request_body = ClientRef,
    responses(
        (status = 200, description = "The session with the client", body = Session),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = SessionEnded),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn add_client(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<ClientRef>,
) -> Result<Json<Session>, ApiError> {
    let client = body.into_client()?;
    state
        .stores
        .sessions
        .add_client(&SessionId::new(id), &client, state.now())
        .await
        .map(|session| Json(shown(session, caller)))
        .map_err(|e| ApiError::from_store(e, "session"))
}

/// Applies `op` to the session's metadata; the answer is the session as `caller` may read
/// it (the change itself does not depend on the metadata grant).
async fn change_metadata(
    state: &Shared,
    caller: Caller,
    id: String,
    op: MetadataOp,
) -> Result<Json<Session>, ApiError> {
    state
        .stores
        .sessions
        .update_metadata(&SessionId::new(id), &op, state.now())
        .await
        .map(|session| Json(shown(session, caller)))
        .map_err(|e| ApiError::from_store(e, "session"))
}

/// `PATCH /api/v2/sessions/{id}` body: `session_metadata` and nothing else.
// `patch` reads the body as a JSON object rather than as this type, so that its refusals can
// name the field at fault; this type only describes the body.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "only describes the body; it is never built")]
pub(super) struct MetadataPatch {
    /// The new metadata, replacing all of it; `null` or `{}` clears it.
    #[schema(required = true)]
    session_metadata: Option<SessionMetadata>,
}

/// `PATCH /api/v2/sessions/{id}` with `{"session_metadata": {...} | null}`: replaces it.
#[utoipa::path(
    patch,
    path = "/sessions/{id}",
    tag = "sessions",
    operation_id = "replace_session_metadata",
    summary = "Replace a session's metadata",
    params(("id" = String, Path, description = "The session id")),
    request_body = MetadataPatch,
    responses(
        (status = 200, description = "The session with its new metadata", body = Session),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = SessionEnded),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn patch(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Session>, ApiError> {
    if let Some(extra) = body.keys().find(|k| k.as_str() != "session_metadata") {
        return Err(ApiError::invalid_body(format!(
            "unknown field {}; only session_metadata can be changed",
            super::error::shorten(extra)
        )));
    }
    let Some(value) = body.get("session_metadata") else {
        return Err(ApiError::invalid_body("session_metadata is required"));
    };
    let next =
        SessionMetadata::from_json(value).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    change_metadata(&state, caller, id, MetadataOp::Replace(next)).await
}

/// `PUT /api/v2/sessions/{id}/metadata/{key}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ValueBody {
    /// The value: at most 255 Unicode scalar values.
    #[schema(max_length = 255)]
    value: String,
}

/// `PUT /api/v2/sessions/{id}/metadata/{key}` with `{"value"}`: sets one key.
#[utoipa::path(
    put,
    path = "/sessions/{id}/metadata/{key}",
    tag = "sessions",
    operation_id = "set_session_metadata",
    summary = "Set one metadata key",
    params(
        ("id" = String, Path, description = "The session id"),
        ("key" = String, Path, description = "The key, matching `[A-Za-z0-9_-]{1,255}`"),
    ),
    request_body = ValueBody,
    responses(
        (status = 200, description = "The session with the key set", body = Session),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = SessionEnded),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn set_metadata(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<ValueBody>,
) -> Result<Json<Session>, ApiError> {
    metadata::validate_key(&key).map_err(|e| ApiError::invalid_path(e.to_string()))?;
    metadata::validate_value(&key, &body.value)
        .map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let op = MetadataOp::Set {
        key,
        value: body.value,
    };
    change_metadata(&state, caller, id, op).await
}

/// `DELETE /api/v2/sessions/{id}/metadata/{key}`: deletes one key.
#[utoipa::path(
    delete,
    path = "/sessions/{id}/metadata/{key}",
    tag = "sessions",
    operation_id = "delete_session_metadata",
    summary = "Delete one metadata key",
    params(
        ("id" = String, Path, description = "The session id"),
        ("key" = String, Path, description = "The key; deleting an absent key changes nothing"),
    ),
    responses(
        (status = 200, description = "The session without the key", body = Session),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = SessionEnded),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn delete_metadata(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
) -> Result<Json<Session>, ApiError> {
    metadata::validate_key(&key).map_err(|e| ApiError::invalid_path(e.to_string()))?;
    change_metadata(&state, caller, id, MetadataOp::Delete { key }).await
}

/// `DELETE /api/v2/sessions/{id}/metadata`: removes every key.
#[utoipa::path(
    delete,
    path = "/sessions/{id}/metadata",
    tag = "sessions",
    operation_id = "evict_session_metadata",
    summary = "Remove every metadata key",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session without metadata", body = Session),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = SessionEnded),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn evict_metadata(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Session>, ApiError> {
    change_metadata(&state, caller, id, MetadataOp::Evict).await
}

/// A page of `GET /api/v2/users/{user_id}/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionPage {
    /// The user's active sessions, in session id order.
    sessions: Vec<Session>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `GET /api/v2/users/{user_id}/sessions?from=&take=`: `{sessions, next}`.
#[utoipa::path(
    get,
    path = "/users/{user_id}/sessions",
    tag = "sessions",
    operation_id = "list_user_sessions",
    summary = "List a user's sessions, a page at a time",
    params(("user_id" = String, Path, description = "The user"), PageQuery),
    responses(
        (status = 200, description = "One page of the user's sessions; to a token without the \
            metadata grant every `session_metadata` value reads `[redacted]`", body = SessionPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list_for_user(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(user_id): PathParams<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let take = page_size(query.take)?;
    let page = state
        .stores
        .sessions
        .list_user_sessions(&UserId::new(user_id), query.from.as_deref(), take)
        .await?;
    Ok(Json(SessionPage {
        sessions: page
            .items
            .into_iter()
            .map(|session| shown(session, caller))
            .collect(),
        next: page.next,
    }))
}
