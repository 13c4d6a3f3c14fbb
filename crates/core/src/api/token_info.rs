//! `GET /api/v2/token-info`: what the calling token may do, so that a client such as the
//! console can adapt to it without probing routes.

use super::auth::Caller;
use crate::tokens::Scope;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The calling token's rights.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TokenInfo {
    /// Its scope: `read` (every `GET` route), `operate` (also re-drive, pause, resume and
    /// prune) or `admin` (everything).
    scope: Scope,
    /// Whether it may read session metadata values: true for admin tokens and for tokens
    /// added with `--metadata`; otherwise every metadata value it is shown reads
    /// `[redacted]` (the keys stay visible).
    metadata: bool,
}

/// `GET /api/v2/token-info`: `{"scope", "metadata"}` of the token that calls it.
#[utoipa::path(
    get,
    path = "/token-info",
    tag = "tokens",
    operation_id = "get_token_info",
    summary = "What the calling token may do",
    responses(
        (status = 200, description = "The calling token's scope and metadata grant", body = TokenInfo),
    )
)]
pub(super) async fn get(Caller(caller): Caller) -> Json<TokenInfo> {
    Json(TokenInfo {
        scope: caller.scope,
        metadata: caller.metadata,
    })
}
