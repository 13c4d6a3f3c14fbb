//! Ending sessions: `DELETE /sessions/{id}`, `POST /sessions/{id}/revoke`,
//! `DELETE /users/{user_id}/sessions` and `POST /logout-events`. Each answers 202 as soon as
//! the end and its outbox rows are committed, without waiting for any RP.

use super::extract::{JsonBody, PathParams};
use super::openapi::{BadRequest, InternalError, NotFound, PayloadTooLarge};
use super::{ApiError, Shared};
use crate::ids::{ClientId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metrics::InitiatorLabels;
use crate::terminate::{ClientNote, SkipReason};
use crate::terminate::{EndReport, EndTarget};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The 202 answer of every end route.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EndResponse {
    /// The termination event; every delivery it wrote carries it.
    pub event_id: EventId,
    /// Deliveries written (held ones included).
    pub deliveries: usize,
    /// Participating clients told nothing, and why.
    pub skipped: Vec<ClientOutcome>,
    /// Paused clients whose deliveries were written and wait until they are resumed.
    pub held: Vec<ClientOutcome>,
}

/// A client an end skipped or holds. A user-wide end lists each (client, reason) once, with
/// the first session it happened in and in how many.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClientOutcome {
    /// The client.
    pub client_id: ClientId,
    /// `not_subscribed`, `no_url`, `unknown_client`, or `paused` (held).
    pub reason: SkipReason,
    /// User-wide ends only: the first session (in id order) it happened in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// User-wide ends only: in how many of the ended sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
}

impl EndResponse {
    /// The answer to ending `target`, from the store's report.
    fn new(report: EndReport, target: &EndTarget) -> Self {
        let per_user = matches!(target, EndTarget::User(_));
        let outcome = |note: ClientNote| ClientOutcome {
            client_id: note.client_id,
            reason: note.reason,
            session_id: per_user.then_some(note.session_id),
            sessions: per_user.then_some(note.sessions),
        };
        Self {
            event_id: report.event_id,
            deliveries: report.deliveries,
            skipped: report.notes.skipped.into_iter().map(outcome).collect(),
            held: report.notes.held.into_iter().map(outcome).collect(),
        }
    }
}

/// Ends the target's sessions in one transaction with their outbox rows.
async fn end(
    state: &Shared,
    target: EndTarget,
    initiator: Initiator,
) -> Result<Response, ApiError> {
    let event_id = EventId::generate();
    let report = state
        .stores
        .sessions
        .end_sessions(&target, initiator, &event_id, state.now())
        .await
        .map_err(|e| ApiError::from_store(e, "session"))?;
    state
        .metrics
        .sessions_ended
        .get_or_create(&InitiatorLabels {
            initiator: initiator.as_str(),
        })
        .inc_by(report.sessions_ended as u64);
    state
        .metrics
        .deliveries_enqueued
        .inc_by(report.deliveries as u64);
    state
        .metrics
        .user_wide_deliveries
        .inc_by(report.user_wide_deliveries as u64);
    state
        .metrics
        .user_wide_sessions
        .inc_by(report.user_wide_sessions as u64);
    tracing::info!(
        event_id = %report.event_id,
        initiator = %initiator,
        sessions_ended = report.sessions_ended,
        deliveries = report.deliveries,
        skipped = report.notes.skipped.len(),
        held = report.notes.held.len(),
        "sessions ended"
    );
    let body = EndResponse::new(report, &target);
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `DELETE /api/v2/sessions/{id}`: ends it with `session-revoked`, as
/// [`revoke_session`] does.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "logout",
    operation_id = "delete_session",
    summary = "End a session with `session-revoked`",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 202, description = "Ended, or had already ended; deliveries are queued",
            body = EndResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn delete_session(
    state: State<Shared>,
    id: PathParams<String>,
) -> Result<Response, ApiError> {
    revoke_session(state, id).await
}

/// `POST /api/v2/sessions/{id}/revoke`: ends it with `session-revoked`.
#[utoipa::path(
    post,
    path = "/sessions/{id}/revoke",
    tag = "logout",
    operation_id = "revoke_session",
    summary = "End a session with `session-revoked`",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 202, description = "Ended, or had already ended; deliveries are queued",
            body = EndResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn revoke_session(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    end(
        &state,
        EndTarget::Session(SessionId::new(id)),
        Initiator::SessionRevoked,
    )
    .await
}

/// `DELETE /api/v2/users/{user_id}/sessions`: ends every session of the user with
/// `session-revoked`.
#[utoipa::path(
    delete,
    path = "/users/{user_id}/sessions",
    tag = "logout",
    operation_id = "delete_user_sessions",
    summary = "End every session of a user with `session-revoked`",
    params(("user_id" = String, Path, description = "The user")),
    responses(
        (status = 202, description = "Every active session ended (none is not an error); \
            deliveries are queued", body = EndResponse),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn delete_user_sessions(
    State(state): State<Shared>,
    PathParams(user_id): PathParams<String>,
) -> Result<Response, ApiError> {
    end(
        &state,
        EndTarget::User(UserId::new(user_id)),
        Initiator::SessionRevoked,
    )
    .await
}

/// `POST /api/v2/logout-events` body: one of `session_id` or `user_id`, and an initiator.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EventBody {
    /// End this session; give it or `user_id`, not both.
    session_id: Option<String>,
    /// End every active session of this user; give it or `session_id`, not both.
    user_id: Option<String>,
    /// Why the sessions end.
    initiator: Initiator,
}

/// `POST /api/v2/logout-events`: ends one session or all of a user's with any initiator.
#[utoipa::path(
    post,
    path = "/logout-events",
    tag = "logout",
    operation_id = "create_logout_event",
    summary = "End one session, or every session of a user, with any initiator",
    request_body = EventBody,
    responses(
        (status = 202, description = "Ended, or had already ended; deliveries are queued",
            body = EndResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn create(
    State(state): State<Shared>,
    JsonBody(body): JsonBody<EventBody>,
) -> Result<Response, ApiError> {
    let target = match (body.session_id, body.user_id) {
        (Some(id), None) => EndTarget::Session(SessionId::parse(&id)?),
        (None, Some(user)) => EndTarget::User(UserId::parse(&user)?),
        _ => {
            return Err(ApiError::invalid_body(
                "exactly one of session_id or user_id is required",
            ));
        }
    };
    end(&state, target, body.initiator).await
}
