//! One SET push (RFC 8935 §2): `POST` of the compact SET to the receiver's `endpoint_url`.
//!
//! `Content-Type: application/secevent+jwt` and `Accept: application/json` (both MUST,
//! §2.1), the SET as the whole body, and `Authorization` exactly as the stream holds it, or
//! none (SSF 1.0 §6.1.1). The timeout, body cap, redirect rule and SSRF guard are the logout
//! token's. A 400's `{"err","description"}` (§2.3) is read into [`RpError`], cleaned like an
//! RP's text and scrubbed of any echo of the SET.

use super::{SendResult, Sender, precheck, response};
use crate::retry::{self, OtherFailure, Outcome, RpError};
use crate::token::LogoutToken;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::time::{Instant, timeout_at};
use url::Url;

/// The media type of a SET (RFC 8417 §2.3).
pub(crate) const SET_CONTENT_TYPE: &str = "application/secevent+jwt";

impl Sender {
    /// Makes one push attempt: POSTs the compact `set` to `url`, with `authorization` as the
    /// `Authorization` header when given. A 400's `err` and `description` are returned in
    /// the outcome's [`RpError`] (as `error` and `error_description`).
    pub async fn push_set(&self, url: &Url, set: &str, authorization: Option<&str>) -> SendResult {
        let started = Instant::now();
        let deadline = started + self.inner.config.timeout;
        let outcome = self.push_attempt(url, set, authorization, deadline).await;
        SendResult {
            outcome,
            latency: started.elapsed(),
        }
    }

    async fn push_attempt(
        &self,
        url: &Url,
        set: &str,
        authorization: Option<&str>,
        deadline: Instant,
    ) -> Outcome {
        if let Some(refusal) = precheck(self.inner.config.policy, url) {
            return refusal;
        }
        let mut request = self
            .inner
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, SET_CONTENT_TYPE)
            .header(ACCEPT, "application/json")
            .body(set.to_owned());
        if let Some(value) = authorization {
            let Ok(mut value) = HeaderValue::from_str(value) else {
                return Outcome::Other(OtherFailure::Transport(
                    "the stream's authorization_header is not a valid HTTP header value".into(),
                ));
            };
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let host = url.host_str().unwrap_or_default();
        let response = match timeout_at(deadline, request.send()).await {
            Err(_elapsed) => return Outcome::Timeout,
            Ok(Err(err)) => return response::from_error(err, host),
            Ok(Ok(response)) => response,
        };
        let code = response.status().as_u16();
        let retry_after = response::retry_after(&response, self.inner.clock.now());
        let max = self.inner.config.max_response_bytes;
        let body = timeout_at(deadline, response::read_capped(response, max))
            .await
            .unwrap_or_default();
        let error = (code == 400).then(|| parse_set_error(&body, set)).flatten();
        Outcome::Status {
            code,
            retry_after,
            error,
        }
    }
}

#[derive(serde::Deserialize)]
struct SetErrorBody {
    err: Option<String>,
    description: Option<String>,
}

/// Parses RFC 8935 §2.3's `{"err","description"}`, cleaned as an RP's text is, with any echo
/// of the SET sent redacted.
pub(super) fn parse_set_error(body: &[u8], set: &str) -> Option<RpError> {
    let parsed: SetErrorBody = serde_json::from_slice(body).ok()?;
    let sent = LogoutToken::new(set.to_owned());
    let clean = |s: String| retry::clean_rp_text(&s, Some(&sent));
    let error = RpError {
        error: parsed.err.map(clean),
        error_description: parsed.description.map(clean),
    };
    (error != RpError::default()).then_some(error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::header::HeaderMap;

    #[test]
    fn the_receivers_err_and_description_are_read_and_cleaned() {
        let set = "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJhYmMifQ.c2lnbmF0dXJlLWJ5dGVz";
        let body = format!(r#"{{"err":"invalid_key","description":"bad\nkey {set}"}}"#);
        let error = parse_set_error(body.as_bytes(), set).unwrap();
        assert_eq!(error.error.as_deref(), Some("invalid_key"));
        let description = error.error_description.unwrap();
        assert!(!description.contains('\n') && !description.contains("eyJ"));
        assert_eq!(parse_set_error(b"{}", set), None);
        assert_eq!(parse_set_error(b"not json", set), None);
    }

    /// A receiver that records each request's headers and body, and answers `status`.
    async fn recorder(
        status: u16,
    ) -> (
        Url,
        std::sync::Arc<std::sync::Mutex<Vec<(HeaderMap, String)>>>,
    ) {
        use axum::http::StatusCode;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: String| async move {
                record.lock().unwrap().push((headers, body));
                let code = StatusCode::from_u16(status).unwrap();
                let mut response = axum::response::IntoResponse::into_response(code);
                if status == 307 {
                    let location = HeaderValue::from_static("http://127.0.0.1:1/elsewhere");
                    response.headers_mut().insert("location", location);
                }
                response
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/events", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn sender() -> Sender {
        let policy = crate::net_policy::NetPolicy {
            allow_insecure: true,
        };
        Sender::new(super::super::SenderConfig {
            policy,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_push_carries_the_set_media_types_and_the_header_as_given() {
        let (url, seen) = recorder(202).await;
        let result = sender().push_set(&url, "a.b.c", Some("Bearer xyz")).await;
        assert_eq!(result.outcome, Outcome::status(202));
        let result = sender().push_set(&url, "d.e.f", None).await;
        assert_eq!(result.outcome, Outcome::status(202));
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(headers[CONTENT_TYPE], SET_CONTENT_TYPE);
        assert_eq!(headers[ACCEPT], "application/json");
        assert_eq!(headers[AUTHORIZATION], "Bearer xyz");
        assert_eq!(body, "a.b.c");
        assert!(
            seen[1].0.get(AUTHORIZATION).is_none(),
            "no header unless configured"
        );
    }

    #[tokio::test]
    async fn a_push_never_follows_a_redirect() {
        let (url, seen) = recorder(307).await;
        let result = sender().push_set(&url, "a.b.c", None).await;
        assert_eq!(result.outcome, Outcome::status(307));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
