//! Claim rules of spec §2.6 steps 3-6 (and §2.4 for the claim shapes).

use super::{VerifyError, VerifyOptions};
use crate::metadata::SessionMetadata;
use crate::token::BACKCHANNEL_LOGOUT_EVENT;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Applies every claim rule; returns one error per broken rule.
pub(super) fn check(
    claims: &Map<String, Value>,
    opts: &VerifyOptions,
    now: DateTime<Utc>,
) -> Vec<VerifyError> {
    let results = [
        check_iss(claims, opts),
        check_aud(claims, opts),
        check_times(claims, opts, now),
        required_string(claims, "jti"),
        check_events(claims),
        check_subject(claims),
        check_nonce(claims),
        check_metadata(claims),
    ];
    results
        .into_iter()
        .flat_map(|r| r.err().unwrap_or_default())
        .collect()
}

type Checked = Result<(), Vec<VerifyError>>;

fn one(err: VerifyError) -> Checked {
    Err(vec![err])
}

fn check_iss(claims: &Map<String, Value>, opts: &VerifyOptions) -> Checked {
    match claims.get("iss") {
        None => one(VerifyError::MissingClaim("iss")),
        Some(Value::String(iss)) if iss == opts.issuer.as_str() => Ok(()),
        Some(Value::String(_)) => one(VerifyError::WrongIssuer),
        Some(_) => one(VerifyError::ClaimType {
            claim: "iss",
            expected: "a string",
        }),
    }
}

fn check_aud(claims: &Map<String, Value>, opts: &VerifyOptions) -> Checked {
    let client = opts.client_id.as_str();
    match claims.get("aud") {
        None => one(VerifyError::MissingClaim("aud")),
        Some(Value::String(aud)) if aud == client => Ok(()),
        Some(Value::Array(auds)) if auds.iter().any(|a| a.as_str() == Some(client)) => Ok(()),
        Some(Value::String(_) | Value::Array(_)) => one(VerifyError::WrongAudience),
        Some(_) => one(VerifyError::ClaimType {
            claim: "aud",
            expected: "a string or an array of strings",
        }),
    }
}

fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<f64, VerifyError> {
    match claims.get(name) {
        None => Err(VerifyError::MissingClaim(name)),
        Some(value) => value.as_f64().ok_or(VerifyError::ClaimType {
            claim: name,
            expected: "a number",
        }),
    }
}

fn check_times(claims: &Map<String, Value>, opts: &VerifyOptions, now: DateTime<Utc>) -> Checked {
    let now = now.timestamp() as f64;
    let leeway = opts.leeway_secs as f64;
    let mut errors = Vec::new();
    let iat = numeric(claims, "iat");
    let exp = numeric(claims, "exp");
    match &iat {
        Ok(iat) if *iat > now + leeway => errors.push(VerifyError::IssuedInFuture),
        Ok(_) => {}
        Err(err) => errors.push(err.clone()),
    }
    match &exp {
        Ok(exp) if *exp + leeway <= now => errors.push(VerifyError::Expired),
        Ok(_) => {}
        Err(err) => errors.push(err.clone()),
    }
    if claims.contains_key("nbf") {
        match numeric(claims, "nbf") {
            Ok(nbf) if nbf > now + leeway => errors.push(VerifyError::NotYetValid),
            Ok(_) => {}
            Err(err) => errors.push(err),
        }
    }
    if let (Ok(iat), Ok(exp), Some(max)) = (iat, exp, opts.max_lifetime_secs) {
        let lifetime = exp - iat;
        if lifetime <= 0.0 || lifetime > max as f64 {
            errors.push(VerifyError::Lifetime(max));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn required_string(claims: &Map<String, Value>, name: &'static str) -> Checked {
    match claims.get(name) {
        None => one(VerifyError::MissingClaim(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(_) => one(VerifyError::ClaimType {
            claim: name,
            expected: "a non-empty string",
        }),
    }
}

fn check_events(claims: &Map<String, Value>) -> Checked {
    let events = match claims.get("events") {
        None => return one(VerifyError::MissingClaim("events")),
        Some(Value::Object(events)) => events,
        Some(_) => return one(VerifyError::Events("must be a JSON object")),
    };
    let Some(member) = events.get(BACKCHANNEL_LOGOUT_EVENT) else {
        return one(VerifyError::Events("lacks the back-channel logout event"));
    };
    let mut errors = Vec::new();
    if events.len() != 1 {
        errors.push(VerifyError::Events("must have exactly one member"));
    }
    match member {
        Value::Object(value) if value.is_empty() => {}
        Value::Object(_) => errors.push(VerifyError::Events("member value must be {}")),
        _ => errors.push(VerifyError::Events("member value must be a JSON object")),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_subject(claims: &Map<String, Value>) -> Checked {
    let sub = claims.get("sub");
    let sid = claims.get("sid");
    if sub.is_none() && sid.is_none() {
        return one(VerifyError::NoSubject);
    }
    let mut errors = Vec::new();
    for (name, value) in [("sub", sub), ("sid", sid)] {
        if value.is_some()
            && let Err(mut err) = required_string(claims, name)
        {
            errors.append(&mut err);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_nonce(claims: &Map<String, Value>) -> Checked {
    if claims.contains_key("nonce") {
        return one(VerifyError::Nonce);
    }
    Ok(())
}

fn check_metadata(claims: &Map<String, Value>) -> Checked {
    match claims.get("session_metadata") {
        None => Ok(()),
        Some(value @ Value::Object(_)) => SessionMetadata::from_json(value)
            .map(|_| ())
            .map_err(|err| vec![VerifyError::Metadata(err)]),
        Some(_) => one(VerifyError::ClaimType {
            claim: "session_metadata",
            expected: "a JSON object of strings",
        }),
    }
}
