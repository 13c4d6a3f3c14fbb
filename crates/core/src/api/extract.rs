//! Request extractors whose every rejection is an [`ApiError`] in Auth0's shape, never axum's
//! default 415/422 or plain text.

use super::error::ApiError;
use super::json_error;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;

/// A JSON body parsed with the body-size cap; malformed JSON, wrong types and unknown fields
/// are all 400 `invalid_body`, and an oversized body is 413.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(kind) = req.headers().get(header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = kind.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::invalid_body(
                    "the request body must be application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        if let Some(key) = super::json_keys::first_duplicate_key(&bytes) {
            return Err(ApiError::invalid_body(format!(
                "the key {} appears twice in one object",
                super::error::shorten(&key)
            )));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON document into `T`, mapping errors to 400 `invalid_body` whose message names
/// the offending field and what it should be, never a Rust type (see [`super::json_error`]).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_body(
            "the request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end().map_err(|err| refusal::<T>(".", &err))?;
            Ok(value)
        }
        Err(err) if err.inner().classify() == serde_json::error::Category::Data => {
            Err(refusal::<T>(&err.path().to_string(), err.inner()))
        }
        Err(err) => reparse(bytes)
            .unwrap_or_else(|| Err(refusal::<T>(&err.path().to_string(), err.inner()))),
    }
}

/// serde_json reports a few wrong types as syntax errors ("expected value" for a number
/// where an enum's string belongs). When the body is well-formed JSON after all, reading `T`
/// from its parsed form gives the data error, with its path, instead. `None` when the body
/// is not JSON. Only refused bodies pay for the second parse.
fn reparse<T: DeserializeOwned>(bytes: &[u8]) -> Option<Result<T, ApiError>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(
        serde_path_to_error::deserialize(value)
            .map_err(|err| refusal::<T>(&err.path().to_string(), err.inner())),
    )
}

/// The 400 for a body that is not JSON (`malformed JSON`) or does not fit `T`.
fn refusal<T: DeserializeOwned>(path: &str, err: &serde_json::Error) -> ApiError {
    let message = match err.classify() {
        serde_json::error::Category::Data => format!(
            "invalid request body: {}",
            json_error::describe_data::<T>(path, err)
        ),
        _ => format!("malformed JSON: {}", json_error::describe_syntax(err)),
    };
    ApiError::invalid_body(message)
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::invalid_body("the request body could not be read")
    }
}

/// Path parameters; a rejection is 400 `invalid_path`.
pub(crate) struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|err: PathRejection| ApiError::invalid_path(err.body_text()))
    }
}

/// Query parameters (unknown ones refused by `T`); a rejection is 400 `invalid_query_string`.
pub(crate) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| QueryParams(value))
            .map_err(|err: QueryRejection| ApiError::invalid_query(err.body_text()))
    }
}
