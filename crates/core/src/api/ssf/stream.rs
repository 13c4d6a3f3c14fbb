//! `/ssf/stream`: a receiver creates, reads, updates, replaces and deletes its stream (SSF
//! §8.1.1). One stream per receiver: a second create is 409.
//!
//! The stream object mixes what the receiver chooses (`events_requested`, `delivery`,
//! `description`) with what the transmitter sets (`stream_id`, `iss`, `aud`,
//! `events_supported`, `events_delivered`, `min_verification_interval`). An update or a
//! replacement may carry the transmitter's fields, but they must match (§8.1.1.3; #55:
//! `events_delivered` as it was before the update), or the answer is 400.

use super::{SsfError, authenticate, issuer_url, own_stream, parse_body, parse_query, store};
use crate::api::Shared;
use crate::net_policy::NetPolicy;
use crate::ssf::{
    EVENTS_SUPPORTED, MIN_VERIFICATION_INTERVAL_SECS, POLL_METHOD, PUSH_METHOD, SsfReceiver,
    SsfStream, StreamDelivery, StreamStatus,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `description`, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Longest `authorization_header`, in bytes.
const MAX_AUTHORIZATION_HEADER: usize = 4096;
/// Most `events_requested` values kept.
const MAX_EVENTS_REQUESTED: usize = 64;

/// A fresh stream id: `sst_` and 128 random bits, never reused.
pub(crate) fn stream_id() -> String {
    format!("sst_{}", crate::ids::random_token())
}

/// The stream object as its receiver sees it (SSF §8.1.1), `authorization_header` included:
/// only the stream's own receiver is ever shown this.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct StreamConfig {
    stream_id: String,
    iss: String,
    aud: String,
    events_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events_requested: Option<Vec<String>>,
    events_delivered: Vec<&'static str>,
    delivery: DeliveryConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    min_verification_interval: i64,
}

#[derive(Debug, Serialize, PartialEq)]
struct DeliveryConfig {
    method: &'static str,
    endpoint_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_header: Option<String>,
}

/// The stream object of `stream` for its receiver.
pub(super) fn config(state: &Shared, receiver: &SsfReceiver, stream: &SsfStream) -> StreamConfig {
    let delivery = match &stream.delivery {
        StreamDelivery::Push {
            endpoint_url,
            authorization_header,
        } => DeliveryConfig {
            method: PUSH_METHOD,
            endpoint_url: endpoint_url.clone(),
            authorization_header: authorization_header.clone(),
        },
        StreamDelivery::Poll => DeliveryConfig {
            method: POLL_METHOD,
            endpoint_url: issuer_url(state, &format!("/ssf/poll/{}", stream.stream_id)),
            authorization_header: None,
        },
    };
    StreamConfig {
        stream_id: stream.stream_id.clone(),
        iss: state.issuer.as_str().to_owned(),
        aud: receiver.aud.clone(),
        events_supported: EVENTS_SUPPORTED.to_vec(),
        events_requested: stream.events_requested.clone(),
        events_delivered: stream.events_delivered(),
        delivery,
        description: stream.description.clone(),
        min_verification_interval: MIN_VERIFICATION_INTERVAL_SECS,
    }
}

/// A stream object as a receiver sends it. Unknown members are ignored; `null` is absent.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamBody {
    stream_id: Option<String>,
    iss: Option<String>,
    aud: Option<Value>,
    events_supported: Option<Vec<String>>,
    events_delivered: Option<Vec<String>>,
    min_verification_interval: Option<Value>,
    events_requested: Option<Vec<String>>,
    delivery: Option<DeliveryBody>,
    description: Option<String>,
}

/// `delivery` as a receiver sends it.
#[derive(Debug, Deserialize)]
struct DeliveryBody {
    method: String,
    endpoint_url: Option<String>,
    authorization_header: Option<String>,
}

/// What a body asks of the receiver-supplied members, checked.
#[derive(Debug, PartialEq)]
pub(super) struct Wanted {
    events_requested: Option<Vec<String>>,
    delivery: Option<StreamDelivery>,
    description: Option<String>,
}

impl StreamBody {
    /// The receiver-supplied members, checked: `delivery` against the URL policy `net`.
    pub(super) fn wanted(&self, net: NetPolicy) -> Result<Wanted, SsfError> {
        if let Some(description) = &self.description
            && description.chars().count() > MAX_DESCRIPTION_CHARS
        {
            return Err(SsfError::bad_request(format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        if self
            .events_requested
            .as_ref()
            .is_some_and(|e| e.len() > MAX_EVENTS_REQUESTED)
        {
            return Err(SsfError::bad_request(format!(
                "events_requested may hold at most {MAX_EVENTS_REQUESTED} values"
            )));
        }
        Ok(Wanted {
            events_requested: self.events_requested.clone(),
            delivery: self.delivery.as_ref().map(|d| d.check(net)).transpose()?,
            description: self.description.clone(),
        })
    }

    /// The `stream_id` an update, a replacement or a control request names; 400 without one.
    pub(super) fn stream_id(&self) -> Result<&str, SsfError> {
        self.stream_id
            .as_deref()
            .ok_or_else(|| SsfError::bad_request("stream_id is required"))
    }

    /// Checks that every transmitter-supplied member present matches `current`.
    pub(super) fn check_transmitter_fields(&self, current: &StreamConfig) -> Result<(), SsfError> {
        let mismatch = |name: &str| {
            SsfError::bad_request(format!(
                "{name} is set by the transmitter and cannot change"
            ))
        };
        if self.iss.as_ref().is_some_and(|iss| *iss != current.iss) {
            return Err(mismatch("iss"));
        }
        if let Some(aud) = &self.aud {
            let same = match aud {
                Value::String(aud) => *aud == current.aud,
                Value::Array(auds) => auds.len() == 1 && auds[0].as_str() == Some(&current.aud),
                _ => false,
            };
            if !same {
                return Err(mismatch("aud"));
            }
        }
        if let Some(supported) = &self.events_supported
            && !same_set(supported, &current.events_supported)
        {
            return Err(mismatch("events_supported"));
        }
        if let Some(delivered) = &self.events_delivered
            && !same_set(delivered, &current.events_delivered)
        {
            return Err(mismatch("events_delivered"));
        }
        if let Some(interval) = &self.min_verification_interval
            && interval.as_i64() != Some(current.min_verification_interval)
        {
            return Err(mismatch("min_verification_interval"));
        }
        Ok(())
    }
}

/// Whether `given` and `expected` hold the same values, in any order.
fn same_set(given: &[String], expected: &[&str]) -> bool {
    given.iter().all(|g| expected.contains(&g.as_str()))
        && expected.iter().all(|e| given.iter().any(|g| g == e))
}

impl DeliveryBody {
    /// The delivery asked for: push to a URL the policy accepts, or poll (whose
    /// `endpoint_url` the transmitter sets, ignoring any sent).
    fn check(&self, net: NetPolicy) -> Result<StreamDelivery, SsfError> {
        match self.method.as_str() {
            POLL_METHOD => Ok(StreamDelivery::Poll),
            PUSH_METHOD => {
                let raw = self.endpoint_url.as_deref().ok_or_else(|| {
                    SsfError::bad_request("delivery.endpoint_url is required for push delivery")
                })?;
                let url = net.validate_url(raw).map_err(|e| {
                    SsfError::bad_request(
                        e.to_string()
                            .replace("backchannel_logout_urls entries", "delivery.endpoint_url"),
                    )
                })?;
                if let Some(header) = &self.authorization_header
                    && (header.len() > MAX_AUTHORIZATION_HEADER
                        || HeaderValue::from_str(header).is_err())
                {
                    return Err(SsfError::bad_request(format!(
                        "delivery.authorization_header must be a header value of at most \
                         {MAX_AUTHORIZATION_HEADER} visible characters"
                    )));
                }
                Ok(StreamDelivery::Push {
                    endpoint_url: url.as_str().to_owned(),
                    authorization_header: self.authorization_header.clone(),
                })
            }
            _ => Err(SsfError::bad_request(format!(
                "delivery.method must be {PUSH_METHOD} (push) or {POLL_METHOD} (poll)"
            ))),
        }
    }
}

/// A new enabled stream of `receiver_id`, as `wanted` asks (poll when it names no delivery).
pub(super) fn new_stream(receiver_id: &str, wanted: Wanted, now: DateTime<Utc>) -> SsfStream {
    SsfStream {
        stream_id: stream_id(),
        receiver_id: receiver_id.to_owned(),
        status: StreamStatus::Enabled,
        status_reason: None,
        events_requested: wanted.events_requested,
        delivery: wanted.delivery.unwrap_or(StreamDelivery::Poll),
        description: wanted.description,
        excluded_subjects: Vec::new(),
        last_verification_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// PATCH (§8.1.1.3): the members present replace the stored ones; the others stay.
pub(super) fn patched(mut stream: SsfStream, wanted: Wanted, now: DateTime<Utc>) -> SsfStream {
    if wanted.events_requested.is_some() {
        stream.events_requested = wanted.events_requested;
    }
    if let Some(delivery) = wanted.delivery {
        stream.delivery = delivery;
    }
    if wanted.description.is_some() {
        stream.description = wanted.description;
    }
    stream.updated_at = now;
    stream
}

/// PUT (§8.1.1.4): the members absent are deleted, which brings back the defaults (every
/// supported event, poll delivery, no description).
pub(super) fn replaced(mut stream: SsfStream, wanted: Wanted, now: DateTime<Utc>) -> SsfStream {
    stream.events_requested = wanted.events_requested;
    stream.delivery = wanted.delivery.unwrap_or(StreamDelivery::Poll);
    stream.description = wanted.description;
    stream.updated_at = now;
    stream
}

/// `POST /ssf/stream` (§8.1.1.1): 201 and the stream; 409 when the receiver has one.
pub(super) async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let body: StreamBody = parse_body(body)?;
    let wanted = body.wanted(state.net)?;
    let stream = new_stream(&receiver.id, wanted, state.now());
    let inserted = match store(&state).insert_stream(&stream).await {
        // The receiver was deleted since it authenticated: its token is no longer valid.
        Err(crate::store::StoreError::NotFound) => return Err(SsfError::unauthorized()),
        other => other?,
    };
    if !inserted {
        return Err(SsfError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this receiver already has a stream; update, replace or delete it",
        ));
    }
    tracing::info!(stream_id = %stream.stream_id, receiver_id = %receiver.id, "ssf stream created");
    let config = config(&state, &receiver, &stream);
    Ok((StatusCode::CREATED, Json(config)).into_response())
}

/// The `stream_id` query parameter of a read, a delete or a status read.
#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    pub(super) stream_id: Option<String>,
}

/// `GET /ssf/stream[?stream_id=]` (§8.1.1.2): the stream, or without an id every stream of
/// the receiver as an array (`[]` when it has none).
pub(super) async fn read(
    State(state): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let query: StreamQuery = parse_query(&uri)?;
    match query.stream_id {
        Some(id) => {
            let stream = own_stream(&state, &receiver, &id).await?;
            Ok(Json(config(&state, &receiver, &stream)).into_response())
        }
        None => {
            let streams = store(&state).receiver_streams(&receiver.id).await?;
            let all: Vec<StreamConfig> = streams
                .iter()
                .map(|s| config(&state, &receiver, s))
                .collect();
            Ok(Json(all).into_response())
        }
    }
}

/// `PATCH /ssf/stream` (§8.1.1.3).
pub(super) async fn update(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    change(state, headers, body, patched).await
}

/// `PUT /ssf/stream` (§8.1.1.4).
pub(super) async fn replace(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SsfError> {
    change(state, headers, body, replaced).await
}

/// An update or a replacement: token, body, stream, the transmitter's members, then the
/// change `apply` makes; 200 and the whole stream.
async fn change(
    state: Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    apply: fn(SsfStream, Wanted, DateTime<Utc>) -> SsfStream,
) -> Result<Response, SsfError> {
    let receiver = authenticate(&state, &headers).await?;
    let body: StreamBody = parse_body(body)?;
    let stream_id = body.stream_id()?;
    let wanted = body.wanted(state.net)?;
    let stream = own_stream(&state, &receiver, stream_id).await?;
    body.check_transmitter_fields(&config(&state, &receiver, &stream))?;
    let stream = apply(stream, wanted, state.now());
    if !store(&state).update_stream(&stream).await? {
        return Err(SsfError::no_stream());
    }
    tracing::info!(stream_id = %stream.stream_id, receiver_id = %receiver.id, "ssf stream changed");
    Ok(Json(config(&state, &receiver, &stream)).into_response())
}

/// `DELETE /ssf/stream?stream_id=` (§8.1.1.5): 204; the stream's waiting SETs are
/// cancelled.
pub(super) async fn delete(
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
    if !store(&state)
        .delete_stream(&stream.stream_id, state.now())
        .await?
    {
        return Err(SsfError::no_stream());
    }
    tracing::info!(stream_id = %stream.stream_id, receiver_id = %receiver.id, "ssf stream deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
