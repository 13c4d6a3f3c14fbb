//! `/api/v2/clients`: relying-party registration in Auth0's `oidc_logout` shape.

use super::extract::{JsonBody, PathParams, QueryParams};
use super::{ApiError, Shared, page_size};
use crate::alg::{SigningAlg, TokenTyp};
use crate::clients::{InitiatorMode, LogoutInitiators, MetadataOptIn, RelyingParty};
use crate::ids::ClientId;
use crate::initiator::Initiator;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

/// Longest accepted identifier or name, in characters.
pub const MAX_ID_CHARS: usize = 255;

/// A create or PATCH body. Absent fields keep their current (or default) value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    client_id: Option<String>,
    name: Option<String>,
    oidc_logout: Option<OidcLogoutBody>,
    backchannel_logout_session_required: Option<bool>,
    logout_token_typ: Option<TokenTyp>,
    id_token_signed_response_alg: Option<SigningAlg>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcLogoutBody {
    backchannel_logout_urls: Option<Vec<String>>,
    backchannel_logout_initiators: Option<InitiatorsBody>,
    backchannel_logout_session_metadata: Option<MetadataOptInBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitiatorsBody {
    mode: InitiatorMode,
    #[serde(default)]
    selected_initiators: Vec<Initiator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataOptInBody {
    include: bool,
}

/// Checks an identifier taken from a caller: 1-255 characters, no control characters.
pub fn validate_id(field: &str, value: &str) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len == 0 || len > MAX_ID_CHARS || value.chars().any(char::is_control) {
        return Err(ApiError::invalid_body(format!(
            "{field} must be 1-{MAX_ID_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

impl ClientBody {
    /// The registration that results from applying this body to `base`.
    fn apply(
        self,
        mut client: RelyingParty,
        net: crate::net_policy::NetPolicy,
    ) -> Result<RelyingParty, ApiError> {
        if let Some(name) = self.name {
            validate_id("name", &name)?;
            client.name = name;
        }
        if let Some(logout) = self.oidc_logout {
            apply_logout(&mut client, logout, net)?;
        }
        if let Some(required) = self.backchannel_logout_session_required {
            client.backchannel_logout_session_required = required;
        }
        if let Some(typ) = self.logout_token_typ {
            client.logout_token_typ = typ;
        }
        if let Some(alg) = self.id_token_signed_response_alg {
            client.id_token_signed_response_alg = alg;
        }
        Ok(client)
    }
}

fn apply_logout(
    client: &mut RelyingParty,
    body: OidcLogoutBody,
    net: crate::net_policy::NetPolicy,
) -> Result<(), ApiError> {
    let target = &mut client.oidc_logout;
    if let Some(urls) = body.backchannel_logout_urls {
        if urls.len() > 1 {
            return Err(ApiError::invalid_body(
                "backchannel_logout_urls accepts at most one URL",
            ));
        }
        target.backchannel_logout_urls = urls
            .iter()
            .map(|raw| net.validate_url(raw))
            .collect::<Result<_, _>>()
            .map_err(|err| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_uri", err.to_string())
            })?;
    }
    if let Some(initiators) = body.backchannel_logout_initiators {
        let mut selected = initiators.selected_initiators;
        selected.sort();
        selected.dedup();
        target.backchannel_logout_initiators = LogoutInitiators {
            mode: initiators.mode,
            selected_initiators: selected,
        };
    }
    if let Some(opt_in) = body.backchannel_logout_session_metadata {
        target.backchannel_logout_session_metadata = MetadataOptIn {
            include: opt_in.include,
        };
    }
    Ok(())
}

fn blank(client_id: ClientId, now: DateTime<Utc>) -> RelyingParty {
    RelyingParty {
        client_id,
        name: String::new(),
        oidc_logout: Default::default(),
        backchannel_logout_session_required: false,
        logout_token_typ: TokenTyp::default(),
        id_token_signed_response_alg: SigningAlg::default(),
        paused: false,
        created_at: now,
        updated_at: now,
    }
}

/// `POST /api/v2/clients`.
pub async fn create(
    State(state): State<Shared>,
    JsonBody(mut body): JsonBody<ClientBody>,
) -> Result<Response, ApiError> {
    let client_id = match body.client_id.take() {
        Some(id) => ClientId::parse(&id).map_err(|e| ApiError::invalid_body(e.to_string()))?,
        None => ClientId::generate(),
    };
    if body.name.is_none() {
        return Err(ApiError::invalid_body("name is required"));
    }
    let client = body.apply(blank(client_id, state.now()), state.net)?;
    state
        .stores
        .clients
        .create_client(&client)
        .await
        .map_err(|e| ApiError::from_store(e, "client"))?;
    tracing::info!(client_id = %client.client_id, "client registered");
    Ok((StatusCode::CREATED, Json(client)).into_response())
}

/// Paging parameters of a listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Cursor: the last id of the previous page.
    pub from: Option<String>,
    /// Page size.
    pub take: Option<usize>,
}

/// `GET /api/v2/clients`.
pub async fn list(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Response, ApiError> {
    let take = page_size(query.take)?;
    let page = state
        .stores
        .clients
        .list_clients(query.from.as_deref(), take)
        .await?;
    Ok(Json(json!({ "clients": page.items, "next": page.next })).into_response())
}

async fn load(state: &Shared, id: &str) -> Result<RelyingParty, ApiError> {
    state
        .stores
        .clients
        .get_client(&ClientId::from(id))
        .await?
        .ok_or_else(|| ApiError::not_found("client"))
}

/// `GET /api/v2/clients/{client_id}`.
pub async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<RelyingParty>, ApiError> {
    load(&state, &id).await.map(Json)
}

/// `PATCH /api/v2/clients/{client_id}`.
pub async fn update(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
    JsonBody(mut body): JsonBody<ClientBody>,
) -> Result<Json<RelyingParty>, ApiError> {
    if body.client_id.take().is_some_and(|given| given != id) {
        return Err(ApiError::invalid_body("client_id cannot be changed"));
    }
    let current = load(&state, &id).await?;
    let mut next = body.apply(current, state.net)?;
    next.updated_at = state.now();
    save(&state, &next).await?;
    Ok(Json(next))
}

async fn save(state: &Shared, client: &RelyingParty) -> Result<(), ApiError> {
    let cancelled = state
        .stores
        .clients
        .update_client(client, client.updated_at)
        .await
        .map_err(|e| ApiError::from_store(e, "client"))?;
    tracing::info!(client_id = %client.client_id, cancelled, "client updated");
    Ok(())
}

/// `DELETE /api/v2/clients/{client_id}`: cancels its pending deliveries.
pub async fn delete(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let cancelled = state
        .stores
        .clients
        .delete_client(&ClientId::from(id.as_str()), state.now())
        .await
        .map_err(|e| ApiError::from_store(e, "client"))?;
    tracing::info!(client_id = %id, cancelled, "client deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    state: Shared,
    id: String,
    paused: bool,
) -> Result<Json<RelyingParty>, ApiError> {
    let mut client = load(&state, &id).await?;
    client.paused = paused;
    client.updated_at = state.now();
    save(&state, &client).await?;
    if !paused {
        state.stores.outbox.wakeup().notify_one();
    }
    Ok(Json(client))
}

/// `POST /api/v2/clients/{client_id}/pause`: holds its deliveries.
pub async fn pause(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<RelyingParty>, ApiError> {
    set_paused(state, id, true).await
}

/// `POST /api/v2/clients/{client_id}/resume`: releases its held deliveries.
pub async fn resume(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<RelyingParty>, ApiError> {
    set_paused(state, id, false).await
}
