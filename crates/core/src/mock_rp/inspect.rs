//! Validation of one logout request (spec §2.5 and §2.6): content type, form, token and
//! `jti` replay. The outcome lists every problem found; nothing here panics on any input.

use super::Shared;
use super::form::{self, ReadBody};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use serde_json::Value;

/// The form parameter that carries the token (spec §2.5).
const TOKEN_PARAM: &str = "logout_token";

/// What validation found.
#[derive(Debug)]
pub(super) struct Inspection {
    /// 200 when valid, 413 for an oversized body, else 400.
    pub status: StatusCode,
    /// Every reason the request is refused.
    pub errors: Vec<String>,
    /// Remarks that do not refuse it.
    pub notes: Vec<String>,
    /// The token's decoded claims.
    pub claims: Option<Value>,
    /// True when the token's `jti` was accepted before.
    pub replay: bool,
}

impl Inspection {
    fn new() -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            errors: Vec::new(),
            notes: Vec::new(),
            claims: None,
            replay: false,
        }
    }

    /// True when nothing was wrong.
    pub(super) fn valid(&self) -> bool {
        self.status == StatusCode::OK
    }

    /// The string claim `name`, if present.
    pub(super) fn claim(&self, name: &str) -> Option<String> {
        let value = self.claims.as_ref()?.get(name)?.as_str()?;
        Some(value.to_owned())
    }
}

/// Validates a POST. When `accept` is true and the token is valid, its `jti` enters the
/// replay cache (a faulted reply does not count as having processed the token).
pub(super) async fn inspect(
    shared: &Shared,
    headers: &HeaderMap,
    body: Incoming,
    now: DateTime<Utc>,
    accept: bool,
) -> Inspection {
    let mut out = Inspection::new();
    if let Err(problem) = form::check_content_type(headers) {
        out.errors.push(problem);
    }
    let body = match form::read_capped(body, shared.config.body_limit).await {
        ReadBody::Complete(body) => body,
        ReadBody::TooLarge => {
            let limit = shared.config.body_limit;
            out.errors
                .push(format!("request body exceeds {limit} bytes"));
            out.status = StatusCode::PAYLOAD_TOO_LARGE;
            return out;
        }
        ReadBody::Broken => {
            out.errors.push("request body could not be read".into());
            return out;
        }
    };
    let token = match form::parse_form(&body) {
        Ok(pairs) => single_token(pairs, &mut out),
        Err(problem) => {
            out.errors.push(problem);
            None
        }
    };
    if let Some(token) = token {
        check_token(shared, &token, now, accept, &mut out).await;
    }
    if out.errors.is_empty() {
        out.status = StatusCode::OK;
    }
    out
}

/// Picks the one `logout_token`; records a missing or repeated one as an error and any
/// other parameter as a note.
fn single_token(pairs: Vec<form::Pair>, out: &mut Inspection) -> Option<String> {
    let mut tokens = Vec::new();
    for (name, value) in pairs {
        if name == TOKEN_PARAM {
            tokens.push(value);
        } else {
            out.notes.push(format!(
                "extra form parameter {} (spec §2.5 sends only logout_token)",
                form::shorten(&name)
            ));
        }
    }
    match tokens.len() {
        1 => tokens.pop(),
        0 => {
            out.errors.push("logout_token is missing".into());
            None
        }
        n => {
            out.errors.push(format!("logout_token appears {n} times"));
            None
        }
    }
}

async fn check_token(
    shared: &Shared,
    token: &str,
    now: DateTime<Utc>,
    accept: bool,
    out: &mut Inspection,
) {
    let opts = &shared.config.verify;
    let key = shared.config.decryption_key.as_deref();
    let token = match crate::verify::decrypt_token(token, key, &opts.issuer) {
        Ok(token) => token,
        Err(error) => {
            out.errors.push(error.to_string());
            return;
        }
    };
    out.claims = decode_claims(&token);
    let verified = match shared.config.jwks.verify(&token, opts, now).await {
        Ok(verified) => verified,
        Err(errors) => {
            out.errors.extend(errors.iter().map(ToString::to_string));
            return;
        }
    };
    let expiry = expiry(out.claims.as_ref(), opts.leeway_secs);
    let accept = accept && out.errors.is_empty();
    out.replay = shared.check_replay(verified.jti.as_str(), expiry, now, accept);
    if out.replay && shared.config.replay_as_error {
        out.errors.push("jti was already received (replay)".into());
    }
}

/// `exp` plus leeway, in Unix seconds.
fn expiry(claims: Option<&Value>, leeway: i64) -> i64 {
    let exp = claims
        .and_then(|c| c.get("exp"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    (exp as i64).saturating_add(leeway)
}

/// The claims of a compact JWS, decoded without any check, for the receipt.
fn decode_claims(token: &str) -> Option<Value> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        value @ Value::Object(_) => Some(value),
        _ => None,
    }
}
