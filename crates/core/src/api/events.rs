//! Ending sessions: `DELETE /sessions/{id}`, `POST /sessions/{id}/revoke`,
//! `DELETE /users/{user_id}/sessions` and `POST /logout-events`. Each answers 202 as soon as
//! the end and its outbox rows are committed, without waiting for any RP, unless it asks to
//! wait a bounded time for them with `wait_ms` (see [`super::wait`]).

use super::extract::{JsonBody, PathParams, QueryParams};
use super::openapi::{BadRequest, InternalError, NotFound, PayloadTooLarge};
use super::wait::{self, DeliveryResult, WaitFor, WaitQuery, WaitReport};
use super::{ApiError, Shared};
use crate::ids::{ClientId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metrics::InitiatorLabels;
use crate::ssf::InitiatingEntity;
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
    /// With `wait_ms` only: `true` when every delivery of this end, held ones aside, was
    /// delivered, failed, cancelled or attempted at least once before the time was up;
    /// `false` when the time ran out first, or when the server was already holding as many
    /// waiting requests as it allows (then `results` is absent: it answered at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_complete: Option<bool>,
    /// With `wait_ms` only: every delivery of this end (held ones included) in id order, as
    /// read when the wait ended, at most 1000; the ones not final go on in the background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<DeliveryResult>>,
    /// With `results` only: how many deliveries were left out of it (past the first 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_omitted: Option<usize>,
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
            wait_complete: None,
            results: None,
            results_omitted: None,
        }
    }

    /// Adds what a wait found.
    fn with_wait(mut self, waited: WaitReport) -> Self {
        self.wait_complete = Some(waited.complete);
        self.results_omitted = waited.results.is_some().then_some(waited.omitted);
        self.results = waited.results;
        self
    }
}

/// Ends the target's sessions in one transaction with their outbox rows, then, when asked,
/// waits up to `wait` for the RPs (the rows are committed first, whatever the wait finds).
async fn end(
    state: &Shared,
    target: EndTarget,
    initiator: Initiator,
    entity: Option<InitiatingEntity>,
    wait: WaitFor,
) -> Result<Response, ApiError> {
    let event_id = EventId::generate();
    let report = state
        .stores
        .sessions
        .end_sessions_as(&target, initiator, entity, &event_id, state.now())
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
    let Some(wait) = wait else {
        let body = EndResponse::new(report, &target);
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    };
    let held: Vec<ClientId> = report
        .notes
        .held
        .iter()
        .map(|note| note.client_id.clone())
        .collect();
    let (event_id, written) = (report.event_id.clone(), report.deliveries);
    let body = EndResponse::new(report, &target);
    let waited = wait::wait_for_rps(
        &state.waits,
        state.stores.deliveries.as_ref(),
        &target,
        &event_id,
        written,
        &held,
        wait,
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(body.with_wait(waited))).into_response())
}

/// `DELETE /api/v2/sessions/{id}`: ends it with `session-revoked`, as
/// [`revoke_session`] does.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "logout",
    operation_id = "delete_session",
    summary = "End a session with `session-revoked`",
    params(("id" = String, Path, description = "The session id"), WaitQuery),
    responses(
        (status = 202, description = "Ended, or had already ended; deliveries are queued \
            (with `wait_ms`, after waiting for them up to that long)", body = EndResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn delete_session(
    state: State<Shared>,
    id: PathParams<String>,
    query: QueryParams<WaitQuery>,
) -> Result<Response, ApiError> {
    revoke_session(state, id, query).await
}

/// `POST /api/v2/sessions/{id}/revoke`: ends it with `session-revoked`.
#[utoipa::path(
    post,
    path = "/sessions/{id}/revoke",
    tag = "logout",
    operation_id = "revoke_session",
    summary = "End a session with `session-revoked`",
    params(("id" = String, Path, description = "The session id"), WaitQuery),
    responses(
        (status = 202, description = "Ended, or had already ended; deliveries are queued \
            (with `wait_ms`, after waiting for them up to that long)", body = EndResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn revoke_session(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<WaitQuery>,
) -> Result<Response, ApiError> {
    let wait = query.wait()?;
    end(
        &state,
        EndTarget::Session(SessionId::new(id)),
        Initiator::SessionRevoked,
        None,
        wait,
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
    params(("user_id" = String, Path, description = "The user"), WaitQuery),
    responses(
        (status = 202, description = "Every active session ended (none is not an error); \
            deliveries are queued (with `wait_ms`, after waiting for them up to that long)",
            body = EndResponse),
        (status = 400, response = BadRequest),
        (status = 500, response = InternalError),
    )
)]
pub(super) async fn delete_user_sessions(
    State(state): State<Shared>,
    PathParams(user_id): PathParams<String>,
    QueryParams(query): QueryParams<WaitQuery>,
) -> Result<Response, ApiError> {
    let wait = query.wait()?;
    end(
        &state,
        EndTarget::User(UserId::new(user_id)),
        Initiator::SessionRevoked,
        None,
        wait,
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
    /// The CAEP `initiating_entity` of this end's SSF SETs (`admin`, `user`, `policy` or
    /// `system`); absent: the one `initiator` maps to (`rp-logout` is `user`, `idp-logout`
    /// `system`, `session-revoked`, `account-deleted` and `account-deactivated` `admin`, the
    /// others `policy`). Logout tokens are the same either way.
    initiating_entity: Option<InitiatingEntity>,
    /// Wait up to this many milliseconds (0 to 10000) for every delivery of this end to be
    /// delivered, failed, cancelled or attempted once, and list them in `results`. Absent or
    /// 0: answer as soon as the end is committed.
    #[schema(minimum = 0, maximum = 10000)]
    wait_ms: Option<u64>,
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
        (status = 202, description = "Ended, or had already ended; deliveries are queued \
            (with `wait_ms`, after waiting for them up to that long)", body = EndResponse),
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
    let wait = wait::from_body(body.wait_ms)?;
    let target = match (body.session_id, body.user_id) {
        (Some(id), None) => EndTarget::Session(SessionId::parse(&id)?),
        (None, Some(user)) => EndTarget::User(UserId::parse(&user)?),
        _ => {
            return Err(ApiError::invalid_body(
                "exactly one of session_id or user_id is required",
            ));
        }
    };
    end(&state, target, body.initiator, body.initiating_entity, wait).await
}
