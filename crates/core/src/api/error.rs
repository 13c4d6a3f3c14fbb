//! The one place where errors become HTTP responses, in Auth0's error shape:
//! `{"statusCode", "error", "message", "errorCode"}`.

use crate::ids::IdError;
use crate::store::StoreError;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: a status, a stable machine code and a message safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable `errorCode`.
    pub code: &'static str,
    /// Human message; never contains secrets or metadata values.
    pub message: String,
}

/// Every error response body, in Auth0's shape.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// The HTTP status, repeated.
    #[serde(rename = "statusCode")]
    #[schema(minimum = 400, maximum = 599, examples(400))]
    status_code: u16,
    /// The status's reason phrase, such as `Bad Request`.
    #[schema(examples("Bad Request"))]
    error: &'a str,
    /// What went wrong, for people; it never echoes secrets or metadata values.
    #[schema(examples("name is required"))]
    message: &'a str,
    /// A stable machine code: `invalid_body`, `invalid_query_string`, `invalid_path`,
    /// `invalid_uri`, `invalid_token`, `not_found`, `already_exists`, `session_ended`,
    /// `not_failed`, `method_not_allowed`, `payload_too_large`, `store_unavailable` or
    /// `internal_error`.
    #[serde(rename = "errorCode")]
    #[schema(examples("invalid_body"))]
    error_code: &'a str,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 for a body that breaks a rule.
    pub(crate) fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    /// 400 for a query string that breaks a rule.
    pub(crate) fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query_string", message)
    }

    /// 400 for a path parameter that breaks a rule.
    pub(crate) fn invalid_path(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_path", message)
    }

    /// 404 for an unknown object.
    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the {what} does not exist"),
        )
    }

    /// 401 for a missing or wrong bearer token.
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a valid bearer token is required",
        )
    }

    /// 500 with a generic message; the cause is logged, not returned.
    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    }

    /// The body in Auth0's shape, as JSON bytes. Also written as is by the connection layer
    /// for the answers it gives before a request reaches the router (431, 503).
    pub(crate) fn body_json(&self) -> Vec<u8> {
        let body = ErrorBody {
            status_code: self.status.as_u16(),
            error: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
            error_code: self.code,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Maps a store error for the object named `what` ("session", "client", "delivery").
    pub(crate) fn from_store(err: StoreError, what: &str) -> Self {
        match err {
            StoreError::NotFound => Self::not_found(what),
            StoreError::Ended => Self::new(
                StatusCode::CONFLICT,
                "session_ended",
                "the session has ended and can no longer change",
            ),
            StoreError::Conflict(what) => Self::new(
                StatusCode::CONFLICT,
                "already_exists",
                format!("a {what} with that id already exists"),
            ),
            StoreError::UnknownClient(id) => {
                Self::invalid_body(format!("unknown client_id {}", shorten(&id)))
            }
            StoreError::Metadata(err) => Self::invalid_body(err.to_string()),
            err @ (StoreError::UnsupportedUrl(_) | StoreError::Backend(_)) => {
                tracing::error!(error = %crate::error::chain(&err), "store failure");
                Self::internal()
            }
        }
    }
}

/// Shortens caller-supplied text before it is echoed in a message.
pub(crate) fn shorten(text: &str) -> String {
    let short: String = text.chars().take(64).collect();
    format!("{short:?}")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let json = self.body_json();
        let mut response = (self.status, json).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A refused identifier from a request body: 400 `invalid_body` with the rule it broke.
impl From<IdError> for ApiError {
    fn from(err: IdError) -> Self {
        Self::invalid_body(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::from_store(err, "object")
    }
}
