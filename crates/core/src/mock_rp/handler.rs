//! One HTTP request to the mock RP: `GET /receipts`, or a logout POST that is validated,
//! possibly faulted, recorded, and answered (spec §2.8: 200 with `Cache-Control: no-store`,
//! or 400 `invalid_request`).

use super::Shared;
use super::faults::Fault;
use super::inspect::{Inspection, inspect};
use super::log::ReceiptLog;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The path that lists receipts instead of receiving tokens.
pub(crate) const RECEIPTS_PATH: &str = "/receipts";

/// A refusal to answer: hyper closes the connection without writing a response.
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the drop fault")
    }
}

impl std::error::Error for Dropped {}

/// Routes one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == RECEIPTS_PATH {
        return Ok(receipts(&shared.log, &parts).await);
    }
    if parts.method != Method::POST {
        return Ok(method_not_allowed("POST"));
    }
    logout_request(&shared, &parts, body).await
}

/// Validates, faults, records and answers one logout POST, in that order.
async fn logout_request(
    shared: &Shared,
    parts: &Parts,
    body: Incoming,
) -> Result<Response<Body>, Dropped> {
    let now = shared.config.clock.now();
    let number = shared.posts.fetch_add(1, Ordering::SeqCst) + 1;
    let faults = &shared.config.faults;
    let fault = faults.pick(number);
    let accept = matches!(fault, None | Some(Fault::Delay));
    let inspection = inspect(shared, &parts.headers, body, now, accept).await;
    let reply = reply_for(shared, fault, &inspection);
    if let Some(delay) = faults.delay {
        tokio::time::sleep(delay).await;
    }
    let status = reply.as_ref().map(|r| r.status().as_u16());
    let receipt = shared.receipt(parts, now, inspection, status, fault);
    tracing::info!(
        path = %receipt.path,
        status = ?receipt.status,
        valid = receipt.valid,
        errors = receipt.errors.len(),
        replay = receipt.replay,
        attempt = ?receipt.attempt,
        fault = ?receipt.fault,
        "logout request"
    );
    shared.log.record(&receipt).await;
    reply.ok_or(Dropped)
}

/// The reply for `fault`, or the validation result; `None` drops the connection.
fn reply_for(
    shared: &Shared,
    fault: Option<Fault>,
    inspection: &Inspection,
) -> Option<Response<Body>> {
    let faults = &shared.config.faults;
    match fault {
        Some(Fault::Drop) => None,
        Some(Fault::FailStatus) => {
            let mut reply = respond(faults.fail_status, Body::empty());
            if let Some(secs) = faults.retry_after {
                reply
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Some(reply)
        }
        Some(Fault::Redirect) => Some(redirect(faults.redirect_to.as_ref())),
        None | Some(Fault::Delay) if inspection.valid() => {
            Some(respond(StatusCode::OK, Body::empty()))
        }
        None | Some(Fault::Delay) => Some(invalid_request(inspection)),
    }
}

/// A reply with `Cache-Control: no-store`.
pub(crate) fn respond(status: StatusCode, body: Body) -> Response<Body> {
    let mut reply = Response::new(body);
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn with_header(mut reply: Response<Body>, name: HeaderName, value: HeaderValue) -> Response<Body> {
    reply.headers_mut().insert(name, value);
    reply
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let reply = respond(status, Body::from(value.to_string()));
    let kind = HeaderValue::from_static("application/json");
    with_header(reply, header::CONTENT_TYPE, kind)
}

/// 400 (or 413) with `{"error":"invalid_request","error_description":...}` listing reasons.
fn invalid_request(inspection: &Inspection) -> Response<Body> {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": inspection.errors.join("; "),
    });
    json(inspection.status, &body)
}

fn redirect(to: Option<&url::Url>) -> Response<Body> {
    let location = to.and_then(|url| HeaderValue::from_str(url.as_str()).ok());
    match location {
        Some(location) => with_header(
            respond(StatusCode::TEMPORARY_REDIRECT, Body::empty()),
            header::LOCATION,
            location,
        ),
        None => respond(StatusCode::INTERNAL_SERVER_ERROR, Body::empty()),
    }
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    with_header(
        respond(StatusCode::METHOD_NOT_ALLOWED, Body::empty()),
        header::ALLOW,
        HeaderValue::from_static(allow),
    )
}

/// Longest `GET /receipts?min=N&wait_ms=T` holds the request.
const MAX_RECEIPTS_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET /receipts`: JSON lines, or a JSON array with `?format=json`. With `min=N` (and
/// optionally `wait_ms=T`, default and cap 60 s) it first waits until N receipts have been
/// recorded since start, so scripts and tests wait for deliveries instead of sleeping.
pub(crate) async fn receipts(log: &ReceiptLog, parts: &Parts) -> Response<Body> {
    if parts.method != Method::GET {
        return method_not_allowed("GET");
    }
    let query = parts.uri.query().unwrap_or_default();
    let param = |key: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == key)
            .and_then(|(_, value)| value.parse::<u64>().ok())
    };
    if let Some(min) = param("min") {
        let wait = param("wait_ms")
            .map_or(MAX_RECEIPTS_WAIT, std::time::Duration::from_millis)
            .min(MAX_RECEIPTS_WAIT);
        log.wait_for(min, wait).await;
    }
    let as_array = url::form_urlencoded::parse(query.as_bytes())
        .any(|(name, value)| name == "format" && value == "json");
    let (body, kind) = if as_array {
        (log.json_array(), "application/json")
    } else {
        (log.ndjson(), "application/x-ndjson")
    };
    let reply = respond(StatusCode::OK, Body::from(body));
    with_header(reply, header::CONTENT_TYPE, HeaderValue::from_static(kind))
}
