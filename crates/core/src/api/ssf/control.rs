//! `/ssf/status`, `/ssf/subjects/{add,remove}` and `/ssf/verify`: what a receiver controls of
//! its stream besides its configuration (SSF §8.1.2–§8.1.4).
//!
//! - A status the receiver sets writes no `stream-updated` event (§8.1.5 sends one only when
//!   the transmitter changes it).
//! - Under `default_subjects: ALL`, removing a subject puts it on the stream's exclusion list
//!   and adding takes it off. Unknown subjects get the same answer as known ones, so a
//!   receiver cannot probe for users (§9.1).
//! - A verification request writes one verification SET and wakes the SET worker; the
//!   minimum interval is kept by the store across nodes.

use super::stream::StreamQuery;
use super::{
    MAX_EXCLUDED_SUBJECTS, SsfError, authenticate, own_stream, parse_body, parse_query, store, wake,
};
use crate::api::Shared;
use crate::ssf::{MIN_VERIFICATION_INTERVAL_SECS, NewSet, StreamStatus, VerifyOutcome};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `reason` or verification `state`, in characters.
const MAX_TEXT_CHARS: usize = 1024;

/// A stream's status as `/ssf/status` shows it (§8.1.2.1).
#[derive(Debug, Serialize)]
struct StatusBody {
    stream_id: String,
    status: StreamStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /ssf/status?stream_id=` (§8.1.2.1).
pub(super) async fn read_status(
    State(state): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let query: StreamQuery = parse_query(&uri)?;
    let id = query
        .stream_id
        .ok_or_else(|| SsfError::bad_request("stream_id is required"))?;
    let stream = own_stream(&state, &receiver, &id).await?;
    Ok(Json(StatusBody {
        stream_id: stream.stream_id,
        status: stream.status,
        reason: stream.status_reason,
    })
    .into_response())
}

/// The body of `POST /ssf/status`.
#[derive(Debug, Deserialize)]
struct StatusRequest {
    stream_id: String,
    status: String,
    reason: Option<String>,
}

/// `POST /ssf/status` (§8.1.2.2): 200, echoing the stream id, the status and the reason.
pub(super) async fn set_status(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let body: StatusRequest = parse_body(body)?;
    let status: StreamStatus = body.status.parse().map_err(|_| {
        SsfError::bad_request("status must be \"enabled\", \"paused\" or \"disabled\"")
    })?;
    check_text("reason", body.reason.as_deref())?;
    let stream = own_stream(&state, &receiver, &body.stream_id).await?;
    let changed = store(&state)
        .set_stream_status(
            &stream.stream_id,
            status,
            body.reason.as_deref(),
            None,
            state.now(),
        )
        .await?
        .ok_or_else(SsfError::no_stream)?;
    // Enabling a paused stream makes its held SETs due at once.
    wake(&state);
    tracing::info!(stream_id = %changed.stream_id, status = changed.status.as_str(), "ssf stream status set by its receiver");
    Ok(Json(StatusBody {
        stream_id: changed.stream_id,
        status: changed.status,
        reason: changed.status_reason,
    })
    .into_response())
}

/// The body of `/ssf/subjects/add` and `/ssf/subjects/remove` (§8.1.3.2–§8.1.3.3).
#[derive(Debug, Deserialize)]
struct SubjectRequest {
    stream_id: String,
    subject: Value,
    /// Checked for its type, then unused: every subject is treated alike.
    #[serde(default, rename = "verified")]
    _verified: Option<bool>,
}

impl SubjectRequest {
    /// Checks the subject: a JSON object whose `format` is a string (RFC 9493 §3).
    fn check(&self) -> Result<(), SsfError> {
        let format = self.subject.as_object().and_then(|s| s.get("format"));
        if !format.is_some_and(Value::is_string) {
            return Err(SsfError::bad_request(
                "subject must be a JSON object with a string format (RFC 9493)",
            ));
        }
        Ok(())
    }

    /// Whether the subject names a user of another issuer (an `iss_sub`, alone or as the
    /// `user` of a `complex` subject, whose `iss` is not `issuer`): no session here is
    /// about it, so removing it changes nothing.
    fn names_another_issuer(&self, issuer: &str) -> bool {
        let user = match self.subject.get("format").and_then(Value::as_str) {
            Some("iss_sub") => &self.subject,
            Some("complex") => match self.subject.get("user") {
                Some(user) if user.get("format").and_then(Value::as_str) == Some("iss_sub") => user,
                _ => return false,
            },
            _ => return false,
        };
        user.get("iss")
            .and_then(Value::as_str)
            .is_some_and(|iss| iss.trim_end_matches('/') != issuer.trim_end_matches('/'))
    }

    /// Whether the subject is the stream's own (`opaque` with the stream id), which cannot
    /// be removed (§8.1.4.1: verification events are about it).
    fn is_the_stream(&self) -> bool {
        self.subject.get("format").and_then(Value::as_str) == Some("opaque")
            && self.subject.get("id").and_then(Value::as_str) == Some(self.stream_id.as_str())
    }
}

/// `POST /ssf/subjects/add`: 200 with no body, whether or not the subject was removed
/// before.
pub(super) async fn add_subject(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let body: SubjectRequest = parse_body(body)?;
    body.check()?;
    let mut stream = own_stream(&state, &receiver, &body.stream_id).await?;
    let before = stream.excluded_subjects.len();
    stream.excluded_subjects.retain(|s| *s != body.subject);
    if stream.excluded_subjects.len() != before {
        stream.updated_at = state.now();
        if !store(&state).update_stream(&stream).await? {
            return Err(SsfError::no_stream());
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// `POST /ssf/subjects/remove`: 204, whether or not the subject is known.
pub(super) async fn remove_subject(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let body: SubjectRequest = parse_body(body)?;
    body.check()?;
    if body.is_the_stream() {
        return Err(SsfError::bad_request(
            "the stream's own subject cannot be removed",
        ));
    }
    let mut stream = own_stream(&state, &receiver, &body.stream_id).await?;
    if body.names_another_issuer(state.issuer.as_str()) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if !stream.excluded_subjects.contains(&body.subject) {
        if stream.excluded_subjects.len() >= MAX_EXCLUDED_SUBJECTS {
            return Err(SsfError::bad_request(format!(
                "a stream may remove at most {MAX_EXCLUDED_SUBJECTS} subjects; add some back first"
            )));
        }
        stream.excluded_subjects.push(body.subject);
        stream.updated_at = state.now();
        if !store(&state).update_stream(&stream).await? {
            return Err(SsfError::no_stream());
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The body of `POST /ssf/verify` (§8.1.4.2).
#[derive(Debug, Deserialize)]
struct VerifyRequest {
    stream_id: String,
    state: Option<String>,
}

/// `POST /ssf/verify`: 204 once the verification SET is written; 429 with `Retry-After`
/// under the minimum interval; 400 when the stream is not enabled.
pub(super) async fn verify(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let body: VerifyRequest = parse_body(body)?;
    check_text("state", body.state.as_deref())?;
    let now = state.now();
    let event = NewSet::verification(&body.stream_id, &receiver.id, body.state.as_deref(), now);
    let outcome = store(&state)
        .request_verification(
            &receiver.id,
            &body.stream_id,
            &event,
            chrono::Duration::seconds(MIN_VERIFICATION_INTERVAL_SECS),
            now,
        )
        .await?;
    match outcome {
        VerifyOutcome::Accepted => {
            wake(&state);
            tracing::info!(stream_id = %body.stream_id, set_id = %event.id, "ssf verification requested");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        VerifyOutcome::TooSoon { retry_after_secs } => {
            Err(SsfError::too_soon(retry_after_secs.max(1)))
        }
        VerifyOutcome::NotEnabled => Err(SsfError::bad_request(
            "the stream is not enabled; enable it before asking for a verification",
        )),
        VerifyOutcome::NotFound => Err(SsfError::no_stream()),
    }
}

/// Refuses a text member longer than [`MAX_TEXT_CHARS`].
fn check_text(name: &str, text: Option<&str>) -> Result<(), SsfError> {
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Err(SsfError::bad_request(format!(
            "{name} must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}
