//! One HTTP request to the mock SSF receiver: `GET /receipts`, or a push (RFC 8935 §2) that
//! is checked, possibly faulted, recorded, and answered 202 or 400 `{"err","description"}`.

use super::validate::{self, Expected, Rejection};
use super::{EVENTS_PATH, SetReceipt, Shared};
use crate::alg::SigningAlg;
use crate::mock_rp::{
    Dropped, Fault, RECEIPTS_PATH, ReadBody, json, method_not_allowed, read_capped, receipts,
    respond,
};
use crate::verify::{VerifyError, verify_signature};
use axum::body::Body;
use chrono::{DateTime, SecondsFormat, Utc};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Largest SET accepted, in bytes.
const MAX_SET_BYTES: usize = 64 * 1024;

/// Routes one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    match parts.uri.path() {
        RECEIPTS_PATH => Ok(receipts(&shared.log, &parts).await),
        EVENTS_PATH if parts.method == Method::POST => push(&shared, &parts.headers, body).await,
        EVENTS_PATH => Ok(method_not_allowed("POST")),
        _ => Ok(respond(StatusCode::NOT_FOUND, Body::empty())),
    }
}

/// The result of checking one SET.
pub(super) struct Checked {
    pub(super) result: Result<String, Rejection>,
    pub(super) jti: Option<String>,
    pub(super) claims: Option<Value>,
}

/// Checks one compact SET: the RS256 signature (refetching the JWKS once on an unknown
/// kid), then every rule of `validate`.
pub(super) async fn check_set(shared: &Shared, token: &str, now: DateTime<Utc>) -> Checked {
    let mut signed = verify_signature(token, &shared.jwks.current(), SigningAlg::RS256);
    if matches!(signed, Err(VerifyError::UnknownKid(_))) && shared.jwks.refresh().await.is_ok() {
        signed = verify_signature(token, &shared.jwks.current(), SigningAlg::RS256);
    }
    let parts = match signed {
        Ok(parts) => parts,
        Err(error) => {
            return Checked {
                result: Err(validate::signature_rejection(&error)),
                jti: None,
                claims: None,
            };
        }
    };
    let expected = Expected {
        issuer: &shared.config.transmitter,
        aud: &shared.stream.aud,
        stream_id: &shared.stream.stream_id,
        now: now.timestamp(),
    };
    Checked {
        result: validate::check(&parts, &expected),
        jti: parts
            .claims
            .get("jti")
            .and_then(Value::as_str)
            .map(str::to_owned),
        claims: Some(Value::Object(parts.claims)),
    }
}

/// The request-level rules of a push: the registered `Authorization`, and the SET media
/// type (RFC 8935 §2.1).
fn check_request(shared: &Shared, headers: &HeaderMap) -> Result<(), Rejection> {
    let expected = shared.stream.authorization_header.as_deref();
    let sent = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if expected.is_some() && sent != expected {
        return Err(Rejection::new(
            "authentication_failed",
            "the Authorization header is missing or not the one registered",
        ));
    }
    let kind = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !kind.is_some_and(|k| k.eq_ignore_ascii_case("application/secevent+jwt")) {
        return Err(Rejection::new(
            "invalid_request",
            "Content-Type must be application/secevent+jwt",
        ));
    }
    Ok(())
}

async fn read_set(body: Incoming) -> Result<String, Rejection> {
    match read_capped(body, MAX_SET_BYTES).await {
        ReadBody::Complete(bytes) => String::from_utf8(bytes.to_vec())
            .map(|s| s.trim().to_owned())
            .map_err(|_| Rejection::new("invalid_request", "the body is not UTF-8")),
        ReadBody::TooLarge => Err(Rejection::new("invalid_request", "the SET is too large")),
        ReadBody::Broken => Err(Rejection::new("invalid_request", "the body was cut off")),
    }
}

/// Checks, faults, records and answers one push.
async fn push(
    shared: &Shared,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, Dropped> {
    let now = shared.config.clock.now();
    let number = shared.posts.fetch_add(1, Ordering::SeqCst) + 1;
    let faults = &shared.config.faults;
    let fault = faults.pick(number).filter(|f| *f != Fault::Redirect);
    let checked = match (check_request(shared, headers), read_set(body).await) {
        (Err(rejection), _) | (Ok(()), Err(rejection)) => Checked {
            result: Err(rejection),
            jti: None,
            claims: None,
        },
        (Ok(()), Ok(token)) => check_set(shared, &token, now).await,
    };
    let reply = match fault {
        Some(Fault::Drop) => None,
        Some(Fault::FailStatus) => Some(respond(faults.fail_status, Body::empty())),
        _ => Some(answer(shared, &checked.result)),
    };
    if let Some(delay) = faults.delay {
        tokio::time::sleep(delay).await;
    }
    let status = reply.as_ref().map(|r| r.status().as_u16());
    let receipt = receipt(now, "push", status, checked, fault);
    record(shared, &receipt).await;
    reply.ok_or(Dropped)
}

fn answer(shared: &Shared, result: &Result<String, Rejection>) -> Response<Body> {
    match result {
        Ok(_) => respond(
            shared.config.status.unwrap_or(StatusCode::ACCEPTED),
            Body::empty(),
        ),
        Err(rejection) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"err": rejection.err, "description": rejection.description}),
        ),
    }
}

/// The receipt of one SET.
pub(super) fn receipt(
    now: DateTime<Utc>,
    delivery: &str,
    status: Option<u16>,
    checked: Checked,
    fault: Option<Fault>,
) -> SetReceipt {
    let (valid, err, description, event) = match checked.result {
        Ok(event) => (true, None, None, Some(event)),
        Err(r) => (false, Some(r.err.to_owned()), Some(r.description), None),
    };
    let event = event.or_else(|| {
        let events = checked.claims.as_ref()?.get("events")?.as_object()?;
        (events.len() == 1)
            .then(|| events.keys().next().cloned())
            .flatten()
    });
    SetReceipt {
        time: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        delivery: delivery.to_owned(),
        status,
        valid,
        err,
        description,
        jti: checked.jti,
        event,
        claims: checked.claims,
        fault: fault.map(|f| f.name().to_owned()),
    }
}

/// Logs one line (ids, event type, verdict; never a claim value beyond the `jti`) and
/// records the receipt.
pub(super) async fn record(shared: &Shared, receipt: &SetReceipt) {
    tracing::info!(
        delivery = %receipt.delivery,
        jti = ?receipt.jti,
        event = ?receipt.event,
        valid = receipt.valid,
        err = ?receipt.err,
        status = ?receipt.status,
        fault = ?receipt.fault,
        "SET received"
    );
    shared.log.record(receipt).await;
}
