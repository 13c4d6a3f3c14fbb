//! The receiver's side of set-up: the transmitter's metadata (SSF 1.0 §7.2), and its stream
//! (§8.1.1), created, or read and updated when the transmitter already holds one (409).

use super::MockSsfError;
use crate::ssf::{POLL_METHOD, PUSH_METHOD};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Value, json};
use std::time::Duration;
use url::Url;

/// Longest one set-up request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read of a set-up answer.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// The transmitter metadata the receiver uses.
#[derive(Debug, Clone)]
pub(super) struct Metadata {
    pub(super) jwks_uri: String,
    pub(super) configuration_endpoint: String,
}

/// The stream as the receiver keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Its id.
    pub stream_id: String,
    /// Its `aud` values (a string or an array on the wire).
    pub aud: Vec<String>,
    /// The poll URL (poll), or this receiver's push URL (push).
    pub endpoint_url: Option<String>,
    /// The `Authorization` value pushes must carry. A secret: never logged.
    pub authorization_header: Option<String>,
}

/// `{issuer}/.well-known/ssf-configuration`, the issuer's path inserted after the
/// well-known string (SSF §7.2.1): `https://h/t1` gives `https://h/.well-known/
/// ssf-configuration/t1`.
pub fn well_known_url(issuer: &str) -> Result<Url, MockSsfError> {
    let mut url = Url::parse(issuer).map_err(|e| MockSsfError::Setup(format!("issuer: {e}")))?;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("/.well-known/ssf-configuration{path}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

pub(super) fn client() -> Result<reqwest::Client, MockSsfError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| MockSsfError::Setup(format!("HTTP client: {e}")))
}

async fn read_json(response: reqwest::Response, what: &str) -> Result<Value, MockSsfError> {
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| MockSsfError::Setup(format!("{what}: {}", e.without_url())))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY_BYTES {
            return Err(MockSsfError::Setup(format!("{what}: answer too large")));
        }
    }
    serde_json::from_slice(&body).map_err(|e| MockSsfError::Setup(format!("{what}: {e}")))
}

async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<(StatusCode, Value), MockSsfError> {
    let response = request
        .header(ACCEPT, "application/json")
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| MockSsfError::Setup(format!("{what}: {}", e.without_url())))?;
    let status = response.status();
    if status == StatusCode::NO_CONTENT || status == StatusCode::CONFLICT {
        return Ok((status, Value::Null));
    }
    if !status.is_success() {
        return Err(MockSsfError::Setup(format!("{what}: HTTP status {status}")));
    }
    Ok((status, read_json(response, what).await?))
}

/// Fetches the metadata; its `issuer` must equal `issuer` byte for byte (§7.2.4).
pub(super) async fn metadata(
    client: &reqwest::Client,
    issuer: &str,
) -> Result<Metadata, MockSsfError> {
    let url = well_known_url(issuer)?;
    let (_, doc) = send(client.get(url), "the SSF configuration").await?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(MockSsfError::Setup(
            "the SSF configuration's issuer is not the transmitter URL given".into(),
        ));
    }
    let field = |name: &str| {
        doc.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| MockSsfError::Setup(format!("the SSF configuration has no {name}")))
    };
    Ok(Metadata {
        jwks_uri: field("jwks_uri")?,
        configuration_endpoint: field("configuration_endpoint")?,
    })
}

/// What stream the receiver asks for.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    /// `delivery` for push; `None` for poll (the transmitter's default).
    pub(super) delivery: Option<Value>,
    /// `events_requested`, when given.
    pub(super) events: Option<Vec<String>>,
}

impl Wanted {
    pub(super) fn push(endpoint_url: &str, authorization: &str) -> Value {
        json!({"method": PUSH_METHOD, "endpoint_url": endpoint_url,
               "authorization_header": authorization})
    }
}

fn parse_stream(stream: &Value) -> Result<StreamInfo, MockSsfError> {
    let missing = |name: &str| MockSsfError::Setup(format!("the stream has no {name}"));
    let stream_id = stream
        .get("stream_id")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("stream_id"))?;
    let aud = match stream.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return Err(missing("aud")),
    };
    let delivery = stream.get("delivery");
    let member = |name: &str| {
        delivery
            .and_then(|d| d.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(StreamInfo {
        stream_id: stream_id.to_owned(),
        aud,
        endpoint_url: member("endpoint_url"),
        authorization_header: member("authorization_header"),
    })
}

/// Creates the stream; on 409, reads the receiver's stream and updates its delivery to the
/// one wanted when it differs.
pub(super) async fn stream(
    client: &reqwest::Client,
    endpoint: &str,
    token: &str,
    wanted: &Wanted,
) -> Result<StreamInfo, MockSsfError> {
    let bearer = format!("Bearer {token}");
    let mut body = json!({"description": "logoutd mock-ssf"});
    if let Some(delivery) = &wanted.delivery {
        body["delivery"] = delivery.clone();
    }
    if let Some(events) = &wanted.events {
        body["events_requested"] = json!(events);
    }
    let create = client
        .post(endpoint)
        .header(AUTHORIZATION, &bearer)
        .json(&body);
    let (status, created) = send(create, "creating the stream").await?;
    if status != StatusCode::CONFLICT {
        return with_delivery(parse_stream(&created)?, wanted);
    }
    let read = client.get(endpoint).header(AUTHORIZATION, &bearer);
    let (_, listed) = send(read, "reading the stream").await?;
    let existing = listed
        .as_array()
        .and_then(|streams| streams.first())
        .ok_or_else(|| MockSsfError::Setup("409, but no stream is listed".into()))?;
    let current = parse_stream(existing)?;
    let delivery = wanted
        .delivery
        .clone()
        .unwrap_or_else(|| json!({"method": POLL_METHOD}));
    if existing.get("delivery") == Some(&delivery) {
        return Ok(current);
    }
    let patch = json!({"stream_id": current.stream_id, "delivery": delivery});
    let update = client
        .patch(endpoint)
        .header(AUTHORIZATION, &bearer)
        .json(&patch);
    let (_, updated) = send(update, "updating the stream's delivery").await?;
    with_delivery(parse_stream(&updated)?, wanted)
}

/// For push, the URL and header are the ones the receiver asked for, whatever was echoed.
fn with_delivery(mut info: StreamInfo, wanted: &Wanted) -> Result<StreamInfo, MockSsfError> {
    if let Some(delivery) = &wanted.delivery {
        let member = |name: &str| {
            delivery
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        info.endpoint_url = member("endpoint_url");
        info.authorization_header = member("authorization_header");
    } else if info.endpoint_url.is_none() {
        return Err(MockSsfError::Setup(
            "the poll stream has no delivery.endpoint_url".into(),
        ));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_issuer_path_follows_the_well_known_string() {
        let url = |issuer| well_known_url(issuer).unwrap().to_string();
        assert_eq!(
            url("https://h/t1"),
            "https://h/.well-known/ssf-configuration/t1"
        );
        assert_eq!(url("https://h"), "https://h/.well-known/ssf-configuration");
        assert_eq!(url("https://h/"), "https://h/.well-known/ssf-configuration");
        assert_eq!(
            url("http://127.0.0.1:8080/a/b/"),
            "http://127.0.0.1:8080/.well-known/ssf-configuration/a/b"
        );
    }
}
