//! `/api/v2/sessions` and `/api/v2/users/{user_id}/sessions`: registering sessions, the RPs
//! that join them, and their metadata (Auth0 Session Metadata).

use super::clients::{PageQuery, validate_id};
use super::extract::{JsonBody, PathParams, QueryParams};
use super::{ApiError, Shared, page_size};
use crate::ids::{ClientId, SessionId, UserId};
use crate::metadata::{self, MetadataOp, SessionMetadata};
use crate::session::{Device, Session, SessionClient, joined_once};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

/// Longest accepted device field (IP or user agent), in characters.
pub const MAX_DEVICE_FIELD_CHARS: usize = 1024;

/// `POST /api/v2/sessions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    id: Option<String>,
    user_id: String,
    #[serde(default)]
    clients: Vec<ClientRef>,
    #[serde(default)]
    session_metadata: serde_json::Value,
    expires_at: Option<DateTime<Utc>>,
    idle_expires_at: Option<DateTime<Utc>>,
    authenticated_at: Option<DateTime<Utc>>,
    last_interacted_at: Option<DateTime<Utc>>,
    device: Option<Device>,
}

/// `{"client_id", "sid"?}`: an RP that joined, with the `sid` of its ID token when the IdP
/// gives each RP its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRef {
    client_id: String,
    sid: Option<String>,
}

impl ClientRef {
    /// The validated entry.
    fn into_client(self) -> Result<SessionClient, ApiError> {
        validate_id("client_id", &self.client_id)?;
        if let Some(sid) = &self.sid {
            validate_id("sid", sid)?;
        }
        Ok(SessionClient::with_sid(
            ClientId::new(self.client_id),
            self.sid.map(SessionId::new),
        ))
    }
}

fn ms(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(crate::clock::to_millis)
}

fn validate_device(device: &Device) -> Result<(), ApiError> {
    let fields = [
        &device.initial_ip,
        &device.initial_user_agent,
        &device.last_ip,
        &device.last_user_agent,
    ];
    if fields
        .iter()
        .filter_map(|f| f.as_deref())
        .any(|v| v.chars().count() > MAX_DEVICE_FIELD_CHARS)
    {
        return Err(ApiError::invalid_body(format!(
            "device fields are at most {MAX_DEVICE_FIELD_CHARS} characters"
        )));
    }
    Ok(())
}

impl CreateBody {
    fn into_session(self, now: DateTime<Utc>) -> Result<Session, ApiError> {
        let id = match self.id {
            Some(id) => {
                validate_id("id", &id)?;
                SessionId::new(id)
            }
            None => SessionId::generate(),
        };
        validate_id("user_id", &self.user_id)?;
        let clients = self
            .clients
            .into_iter()
            .map(ClientRef::into_client)
            .collect::<Result<Vec<_>, _>>()?;
        let device = self.device.unwrap_or_default();
        validate_device(&device)?;
        Ok(Session {
            id,
            user_id: UserId::new(self.user_id),
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
pub async fn create(
    State(state): State<Shared>,
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
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

/// `GET /api/v2/sessions/{id}`.
pub async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Session>, ApiError> {
    state
        .stores
        .sessions
        .get_session(&SessionId::new(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("session"))
}

/// `POST /api/v2/sessions/{id}/clients`: an RP joined the session. Joining again keeps its
/// place; a `sid` given then replaces the one it had.
pub async fn add_client(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<ClientRef>,
) -> Result<Json<Session>, ApiError> {
    let client = body.into_client()?;
    state
        .stores
        .sessions
        .add_client(&SessionId::new(id), &client, state.now())
        .await
        .map(Json)
        .map_err(|e| ApiError::from_store(e, "session"))
}

async fn change_metadata(
    state: &Shared,
    id: String,
    op: MetadataOp,
) -> Result<Json<Session>, ApiError> {
    state
        .stores
        .sessions
        .update_metadata(&SessionId::new(id), &op, state.now())
        .await
        .map(Json)
        .map_err(|e| ApiError::from_store(e, "session"))
}

/// `PATCH /api/v2/sessions/{id}` with `{"session_metadata": {...} | null}`: replaces it.
pub async fn patch(
    State(state): State<Shared>,
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
    change_metadata(&state, id, MetadataOp::Replace(next)).await
}

/// `PUT /api/v2/sessions/{id}/metadata/{key}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueBody {
    value: String,
}

/// `PUT /api/v2/sessions/{id}/metadata/{key}` with `{"value"}`: sets one key.
pub async fn set_metadata(
    State(state): State<Shared>,
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
    change_metadata(&state, id, op).await
}

/// `DELETE /api/v2/sessions/{id}/metadata/{key}`: deletes one key.
pub async fn delete_metadata(
    State(state): State<Shared>,
    PathParams((id, key)): PathParams<(String, String)>,
) -> Result<Json<Session>, ApiError> {
    metadata::validate_key(&key).map_err(|e| ApiError::invalid_path(e.to_string()))?;
    change_metadata(&state, id, MetadataOp::Delete { key }).await
}

/// `DELETE /api/v2/sessions/{id}/metadata`: removes every key.
pub async fn evict_metadata(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Session>, ApiError> {
    change_metadata(&state, id, MetadataOp::Evict).await
}

/// `GET /api/v2/users/{user_id}/sessions?from=&take=`: `{sessions, next}`.
pub async fn list_for_user(
    State(state): State<Shared>,
    PathParams(user_id): PathParams<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Response, ApiError> {
    let take = page_size(query.take)?;
    let page = state
        .stores
        .sessions
        .list_user_sessions(&UserId::new(user_id), query.from.as_deref(), take)
        .await?;
    Ok(Json(json!({ "sessions": page.items, "next": page.next })).into_response())
}
