//! `/api/v2/clients`: relying-party registration in Auth0's `oidc_logout` shape.

use super::client_encryption::EncryptionBody;
use super::error::ErrorBody;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound, PayloadTooLarge};
use super::{ApiError, Shared, page_size};
use crate::alg::{SigningAlg, TokenTyp};
use crate::clients::{
    InitiatorMode, LogoutInitiators, MetadataOptIn, RateLimit, RelyingParty, UserWide,
};
use crate::ids::{ClientId, check_caller_text};
use crate::initiator::Initiator;
use crate::jwe::{ContentEnc, KeyAlg};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A create or PATCH body. Absent fields keep their current (or default) value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientBody {
    /// The client_id (1-255 characters); generated when absent on create, and cannot change.
    client_id: Option<String>,
    /// Display name (1-255 characters); required on create.
    name: Option<String>,
    /// Back-channel logout settings; absent members keep their value.
    oidc_logout: Option<OidcLogoutBody>,
    /// The RP requires `sid` in its logout tokens.
    backchannel_logout_session_required: Option<bool>,
    /// The `typ` header of its logout tokens.
    logout_token_typ: Option<TokenTyp>,
    /// The alg its logout tokens are signed with.
    id_token_signed_response_alg: Option<SigningAlg>,
    /// Encrypt the client's logout tokens to its key with this alg (`RSA-OAEP-256` or
    /// `ECDH-ES`): they are signed, then encrypted (a nested JWT). `null` turns encryption
    /// off (and clears the enc unless one is given).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<KeyAlg>, nullable)]
    id_token_encrypted_response_alg: Option<Option<KeyAlg>>,
    /// The content encryption: `A128CBC-HS256` (the default when only the alg is given) or
    /// `A256GCM`; needs the alg.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ContentEnc>, nullable)]
    id_token_encrypted_response_enc: Option<Option<ContentEnc>>,
    /// Where the client publishes its public keys (a JWK Set): https with a public host, under
    /// the same rules as `backchannel_logout_urls`. Give this or `jwks` with encryption.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Uri, nullable)]
    jwks_uri: Option<Option<String>>,
    /// The client's public keys inline: a JWK Set with no private members.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable)]
    jwks: Option<Option<serde_json::Value>>,
}

/// Auth0's `oidc_logout` object in a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OidcLogoutBody {
    /// Zero or one URL; an empty list cancels the client's pending deliveries.
    #[schema(max_items = 1)]
    backchannel_logout_urls: Option<Vec<String>>,
    /// Which initiators the client receives.
    backchannel_logout_initiators: Option<InitiatorsBody>,
    /// Whether its tokens carry the session metadata.
    backchannel_logout_session_metadata: Option<MetadataOptInBody>,
    /// What a user-wide end sends: `per_session` (the default), one token per ended session
    /// with its `sid`, or `per_user`, one token with `sub` alone (no `sid`, no
    /// `session_metadata`) for all of them. `per_user` is refused for a client with
    /// `backchannel_logout_session_required`.
    backchannel_logout_user_wide: Option<UserWide>,
    /// The most deliveries per second the client receives; `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimitBody>, nullable)]
    backchannel_logout_rate_limit: Option<Option<RateLimitBody>>,
}

/// `backchannel_logout_rate_limit` in a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RateLimitBody {
    /// Deliveries per second on average, from 0.001 to 1000; fractions are allowed (0.5 is
    /// one every 2 s).
    #[schema(minimum = 0.001, maximum = 1000, examples(20, 0.5))]
    per_second: f64,
    /// The most deliveries sent back to back, from 1 to 1000; `max(1, ceil(per_second))`
    /// when absent.
    #[schema(minimum = 1, maximum = 1000, examples(5))]
    burst: Option<u32>,
}

/// A member that may be given as `null`: absent is `None`, `null` is `Some(None)`.
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Auth0's `backchannel_logout_initiators` in a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct InitiatorsBody {
    /// `all`, or `custom`: `rp-logout`, `idp-logout` and the selected ones.
    mode: InitiatorMode,
    /// The initiators chosen in `custom` mode.
    #[serde(default)]
    selected_initiators: Vec<Initiator>,
}

/// Auth0's `backchannel_logout_session_metadata` in a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MetadataOptInBody {
    /// Include `session_metadata` in the client's logout tokens.
    include: bool,
}

impl ClientBody {
    /// The registration that results from applying this body to `base`.
    fn apply(
        self,
        mut client: RelyingParty,
        net: crate::net_policy::NetPolicy,
    ) -> Result<RelyingParty, ApiError> {
        if let Some(name) = self.name {
            check_caller_text("name", &name)?;
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
        let encryption = EncryptionBody {
            alg: self.id_token_encrypted_response_alg,
            enc: self.id_token_encrypted_response_enc,
            jwks_uri: self.jwks_uri,
            jwks: self.jwks,
        };
        encryption.apply(&mut client.encryption, net)?;
        check_user_wide(&client)?;
        Ok(client)
    }
}

/// Refuses `per_user` for a client that requires `sid`: its user-wide tokens would carry
/// none. Checked on the registration a create or PATCH results in, so setting either field
/// into the conflict is refused.
fn check_user_wide(client: &RelyingParty) -> Result<(), ApiError> {
    if client.per_user() && client.backchannel_logout_session_required {
        return Err(ApiError::invalid_body(
            "oidc_logout.backchannel_logout_user_wide `per_user` sends tokens without `sid`, \
             so it cannot be combined with backchannel_logout_session_required `true`; use \
             `per_session` or set backchannel_logout_session_required to false",
        ));
    }
    Ok(())
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
    if let Some(limit) = body.backchannel_logout_rate_limit {
        target.backchannel_logout_rate_limit = limit
            .map(|limit| RateLimit::new(limit.per_second, limit.burst))
            .transpose()
            .map_err(ApiError::invalid_body)?;
    }
    if let Some(user_wide) = body.backchannel_logout_user_wide {
        target.backchannel_logout_user_wide = user_wide;
    }
    Ok(())
}

/// Refuses an alg that no active key signs with: every delivery to such a client would fail
/// to sign, so the mistake is reported to whoever registers it rather than found in the
/// dead letters.
fn require_signing_key(state: &Shared, alg: SigningAlg) -> Result<(), ApiError> {
    let keys = state.keys.current();
    if keys.active_key(alg).is_some() {
        return Ok(());
    }
    let active: Vec<&str> = keys
        .active_algs()
        .into_iter()
        .map(SigningAlg::as_str)
        .collect();
    let choice = match active.as_slice() {
        [] => String::new(),
        algs => format!(", or choose an alg that has one ({})", algs.join(", ")),
    };
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "no_signing_key",
        format!(
            "no active {alg} signing key for id_token_signed_response_alg {alg}; run \
             `logoutd keys generate --alg {alg}` (or import your IdP's key with `logoutd keys \
             import --alg {alg} FILE`) on the server and retry once it has loaded the key \
             (within a few seconds){choice}"
        ),
    ))
}

fn blank(client_id: ClientId, now: DateTime<Utc>) -> RelyingParty {
    RelyingParty {
        client_id,
        name: String::new(),
        oidc_logout: Default::default(),
        backchannel_logout_session_required: false,
        logout_token_typ: TokenTyp::default(),
        id_token_signed_response_alg: SigningAlg::default(),
        encryption: Default::default(),
        paused: false,
        paused_by: None,
        paused_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// `POST /api/v2/clients`.
#[utoipa::path(
    post,
    path = "/clients",
    tag = "clients",
    operation_id = "create_client",
    summary = "Register a relying party",
    request_body(content = ClientBody, description = "`name` is required."),
    responses(
        (status = 201, description = "The client as registered", body = RelyingParty),
        (status = 400, response = BadRequest),
        (status = 409, description = "A client with that `client_id` exists (`already_exists`)",
            body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn create(
    State(state): State<Shared>,
    JsonBody(mut body): JsonBody<ClientBody>,
) -> Result<Response, ApiError> {
    let client_id = match body.client_id.take() {
        Some(id) => ClientId::parse(&id)?,
        None => ClientId::generate(),
    };
    if body.name.is_none() {
        return Err(ApiError::invalid_body("name is required"));
    }
    let client = body.apply(blank(client_id, state.now()), state.net)?;
    require_signing_key(&state, client.id_token_signed_response_alg)?;
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Cursor: the `next` of the previous page; omit it for the first page.
    pub from: Option<String>,
    /// Page size: 1 to 100, 50 when omitted.
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub take: Option<usize>,
}

/// A page of `GET /api/v2/clients`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClientPage {
    /// Clients in `client_id` order.
    clients: Vec<RelyingParty>,
    /// Cursor of the next page, to pass as `from`; `null` on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// `GET /api/v2/clients`.
#[utoipa::path(
    get,
    path = "/clients",
    tag = "clients",
    operation_id = "list_clients",
    summary = "List relying parties, a page at a time",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of clients", body = ClientPage),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn list(
    State(state): State<Shared>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<ClientPage>, ApiError> {
    let take = page_size(query.take)?;
    let page = state
        .stores
        .clients
        .list_clients(query.from.as_deref(), take)
        .await?;
    Ok(Json(ClientPage {
        clients: page.items,
        next: page.next,
    }))
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
#[utoipa::path(
    get,
    path = "/clients/{client_id}",
    tag = "clients",
    operation_id = "get_client",
    summary = "Read a relying party",
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 200, description = "The client", body = RelyingParty),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn get(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<RelyingParty>, ApiError> {
    load(&state, &id).await.map(Json)
}

/// `PATCH /api/v2/clients/{client_id}`.
#[utoipa::path(
    patch,
    path = "/clients/{client_id}",
    tag = "clients",
    operation_id = "update_client",
    summary = "Change a relying party",
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    request_body(content = ClientBody,
        description = "Absent members keep their value; `client_id`, if given, must be the same."),
    responses(
        (status = 200, description = "The client as changed", body = RelyingParty),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn update(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
    JsonBody(mut body): JsonBody<ClientBody>,
) -> Result<Json<RelyingParty>, ApiError> {
    if body.client_id.take().is_some_and(|given| given != id) {
        return Err(ApiError::invalid_body("client_id cannot be changed"));
    }
    let current = load(&state, &id).await?;
    // Only a PATCH that sets the alg is checked: one that renames a client or moves its URL
    // must not fail because of the key directory.
    let sets_alg = body.id_token_signed_response_alg.is_some();
    let mut next = body.apply(current, state.net)?;
    if sets_alg {
        require_signing_key(&state, next.id_token_signed_response_alg)?;
    }
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
#[utoipa::path(
    delete,
    path = "/clients/{client_id}",
    tag = "clients",
    operation_id = "delete_client",
    summary = "Delete a relying party and cancel its pending deliveries",
    params(("client_id" = String, Path, description = "The client's `client_id`")),
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
    let client = state
        .stores
        .clients
        .set_paused(&ClientId::from(id.as_str()), paused, state.now())
        .await
        .map_err(|e| ApiError::from_store(e, "client"))?;
    if !paused {
        state.stores.queue.wakeup().notify_one();
    }
    Ok(Json(client))
}

/// `POST /api/v2/clients/{client_id}/pause`: holds its deliveries.
#[utoipa::path(
    post,
    path = "/clients/{client_id}/pause",
    tag = "clients",
    operation_id = "pause_client",
    summary = "Hold a relying party's deliveries",
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 200, description = "The client, paused", body = RelyingParty),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn pause(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<RelyingParty>, ApiError> {
    set_paused(state, id, true).await
}

/// `POST /api/v2/clients/{client_id}/resume`: releases its held deliveries.
#[utoipa::path(
    post,
    path = "/clients/{client_id}/resume",
    tag = "clients",
    operation_id = "resume_client",
    summary = "Release a relying party's held deliveries",
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 200, description = "The client, resumed", body = RelyingParty),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn resume(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Json<RelyingParty>, ApiError> {
    set_paused(state, id, false).await
}
