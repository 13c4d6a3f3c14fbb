//! The checks a receiver makes of one SET, strictly (RFC 8417; RFC 8935 §2.3-§2.4; SSF 1.0
//! §4 and §8.1.4-§8.1.5; CAEP 1.0 §3.1; RFC 9493 for `sub_id`), answered with the RFC 8935
//! `err` code that fits. Pure: the signature is checked by the caller's keys.

use crate::ssf::{SESSION_REVOKED, STREAM_UPDATED, VERIFICATION};
use crate::verify::{SignedParts, VerifyError};
use serde_json::{Map, Value};

/// Allowed clock skew for `iat`, in seconds.
pub(super) const IAT_SKEW_SECS: i64 = 60;

/// Why a SET was refused: an RFC 8935 §2.4 `err` code and a description that names claims,
/// never their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The `err` code.
    pub(crate) err: &'static str,
    /// What was wrong.
    pub(crate) description: String,
}

impl Rejection {
    pub(super) fn new(err: &'static str, description: impl Into<String>) -> Self {
        Self {
            err,
            description: description.into(),
        }
    }

    fn request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }
}

/// What the SET must match: the stream it came on.
#[derive(Debug, Clone)]
pub(super) struct Expected<'a> {
    /// The transmitter's issuer, byte for byte.
    pub(super) issuer: &'a str,
    /// The stream's `aud` values.
    pub(super) aud: &'a [String],
    /// The stream's id: the subject of verification and stream-updated events.
    pub(super) stream_id: &'a str,
    /// The time now, in seconds.
    pub(super) now: i64,
}

/// Maps a signature-check failure to its `err`: a token that cannot be parsed is an
/// `invalid_request`; a wrong alg, kid or signature is an `invalid_key`.
pub(super) fn signature_rejection(error: &VerifyError) -> Rejection {
    match error {
        VerifyError::Malformed(_) | VerifyError::DuplicateMember { .. } => {
            Rejection::request(error.to_string())
        }
        _ => Rejection::new("invalid_key", error.to_string()),
    }
}

/// Checks a SET whose RS256 signature verified; returns its one event type.
pub(super) fn check(parts: &SignedParts, expected: &Expected<'_>) -> Result<String, Rejection> {
    if parts.header.get("typ").and_then(Value::as_str) != Some("secevent+jwt") {
        return Err(Rejection::request("typ must be secevent+jwt"));
    }
    let claims = &parts.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(Rejection::new(
            "invalid_issuer",
            "iss is not the transmitter's issuer",
        ));
    }
    if !aud_matches(claims.get("aud"), expected.aud) {
        return Err(Rejection::new(
            "invalid_audience",
            "aud is not the stream's aud",
        ));
    }
    check_common(claims, expected.now)?;
    let subject = claims
        .get("sub_id")
        .ok_or_else(|| Rejection::request("sub_id is missing"))?;
    check_subject(subject, true).map_err(|why| Rejection::request(format!("sub_id {why}")))?;
    let (event_type, event) = one_event(claims)?;
    check_event(event_type, event, subject, expected.stream_id)?;
    Ok(event_type.to_owned())
}

fn aud_matches(aud: Option<&Value>, expected: &[String]) -> bool {
    match aud {
        Some(Value::String(aud)) => expected.iter().any(|e| e == aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| expected.iter().any(|e| e == aud)),
        _ => false,
    }
}

/// `iat`, `jti`, and the claims a SET must not have (SSF §4.1.2, §4.1.7).
fn check_common(claims: &Map<String, Value>, now: i64) -> Result<(), Rejection> {
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| Rejection::request("iat is missing or not a whole number"))?;
    if iat > now + IAT_SKEW_SECS {
        return Err(Rejection::request("iat is in the future"));
    }
    match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() => {}
        _ => return Err(Rejection::request("jti is missing")),
    }
    for forbidden in ["sub", "exp"] {
        if claims.contains_key(forbidden) {
            return Err(Rejection::request(format!(
                "{forbidden} must not be present"
            )));
        }
    }
    Ok(())
}

/// The members each simple subject format requires (RFC 9493 §3.2).
fn required_members(format: &str) -> Option<&'static [&'static str]> {
    Some(match format {
        "account" | "uri" => &["uri"],
        "email" => &["email"],
        "iss_sub" => &["iss", "sub"],
        "opaque" => &["id"],
        "phone_number" => &["phone_number"],
        "did" => &["url"],
        _ => return None,
    })
}

/// The members of a complex subject (SSF 1.0 §3.3).
const COMPLEX_MEMBERS: [&str; 7] = [
    "user",
    "device",
    "session",
    "application",
    "tenant",
    "org_unit",
    "group",
];

/// Checks a subject identifier; `complex_allowed` is false inside a complex subject.
fn check_subject(subject: &Value, complex_allowed: bool) -> Result<(), String> {
    let Some(object) = subject.as_object() else {
        return Err("must be an object".into());
    };
    let format = object
        .get("format")
        .and_then(Value::as_str)
        .ok_or("has no format")?;
    if format == "complex" && complex_allowed {
        let mut members = 0;
        for (name, value) in object.iter().filter(|(name, _)| *name != "format") {
            if !COMPLEX_MEMBERS.contains(&name.as_str()) {
                return Err(format!("has an unknown complex member {name:?}"));
            }
            check_subject(value, false).map_err(|why| format!("member {name} {why}"))?;
            members += 1;
        }
        return if members == 0 {
            Err("is a complex subject with no member".into())
        } else {
            Ok(())
        };
    }
    if format == "aliases" && complex_allowed {
        let identifiers = object
            .get("identifiers")
            .and_then(Value::as_array)
            .filter(|ids| !ids.is_empty())
            .ok_or("has no identifiers")?;
        return identifiers
            .iter()
            .try_for_each(|id| check_subject(id, false));
    }
    let required = required_members(format).ok_or("has an unknown format")?;
    for member in required {
        match object.get(*member).and_then(Value::as_str) {
            Some(value) if !value.is_empty() => {}
            _ => return Err(format!("({format}) has no {member}")),
        }
    }
    Ok(())
}

fn one_event(claims: &Map<String, Value>) -> Result<(&str, &Map<String, Value>), Rejection> {
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .ok_or_else(|| Rejection::request("events is missing or not an object"))?;
    let mut iter = events.iter();
    match (iter.next(), iter.next()) {
        (Some((name, Value::Object(event))), None) => Ok((name.as_str(), event)),
        (Some(_), None) => Err(Rejection::request("the event is not an object")),
        _ => Err(Rejection::request("events must have exactly one member")),
    }
}

fn check_event(
    event_type: &str,
    event: &Map<String, Value>,
    subject: &Value,
    stream_id: &str,
) -> Result<(), Rejection> {
    match event_type {
        SESSION_REVOKED => check_session_revoked(event),
        VERIFICATION | STREAM_UPDATED => {
            let own = serde_json::json!({"format": "opaque", "id": stream_id});
            if subject != &own {
                return Err(Rejection::request("sub_id must be the stream's opaque id"));
            }
            if event_type == VERIFICATION {
                optional_string(event, "state")
            } else {
                check_stream_updated(event)
            }
        }
        _ => Err(Rejection::request(
            "the event type is not one this receiver knows",
        )),
    }
}

/// CAEP 1.0 §2 and §3.1, with the interoperability profile's non-empty `reason_admin`.
fn check_session_revoked(event: &Map<String, Value>) -> Result<(), Rejection> {
    match event.get("initiating_entity").and_then(Value::as_str) {
        Some("admin" | "user" | "policy" | "system") => {}
        _ => {
            return Err(Rejection::request(
                "initiating_entity must be admin, user, policy or system",
            ));
        }
    }
    match event.get("reason_admin") {
        Some(reason) if is_reason(reason) => {}
        _ => {
            return Err(Rejection::request(
                "reason_admin must be a non-empty object of strings",
            ));
        }
    }
    if event.get("reason_user").is_some_and(|r| !is_reason(r)) {
        return Err(Rejection::request(
            "reason_user must be a non-empty object of strings",
        ));
    }
    if !event.get("event_timestamp").is_some_and(Value::is_number) {
        return Err(Rejection::request("event_timestamp must be a number"));
    }
    Ok(())
}

fn is_reason(reason: &Value) -> bool {
    reason
        .as_object()
        .is_some_and(|map| !map.is_empty() && map.values().all(Value::is_string))
}

fn check_stream_updated(event: &Map<String, Value>) -> Result<(), Rejection> {
    match event.get("status").and_then(Value::as_str) {
        Some("enabled" | "paused" | "disabled") => optional_string(event, "reason"),
        _ => Err(Rejection::request(
            "status must be enabled, paused or disabled",
        )),
    }
}

fn optional_string(event: &Map<String, Value>, name: &str) -> Result<(), Rejection> {
    if event.get(name).is_some_and(|v| !v.is_string()) {
        return Err(Rejection::request(format!("{name} must be a string")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc9493_subjects_are_checked_by_format() {
        let good = [
            json!({"format": "email", "email": "a@example.com"}),
            json!({"format": "iss_sub", "iss": "https://i", "sub": "u"}),
            json!({"format": "opaque", "id": "x"}),
            json!({"format": "phone_number", "phone_number": "+12065550100"}),
            json!({"format": "account", "uri": "acct:a@example.com"}),
            json!({"format": "aliases", "identifiers": [{"format": "opaque", "id": "x"}]}),
            json!({"format": "complex", "user": {"format": "opaque", "id": "u"},
                   "session": {"format": "opaque", "id": "s"}}),
        ];
        for subject in good {
            assert_eq!(check_subject(&subject, true), Ok(()), "{subject}");
        }
        let bad = [
            json!("opaque"),
            json!({"id": "x"}),
            json!({"format": "phone", "phone_number": "+1"}),
            json!({"format": "iss_sub", "iss": "https://i"}),
            json!({"format": "opaque", "id": ""}),
            json!({"format": "complex"}),
            json!({"format": "complex", "person": {"format": "opaque", "id": "u"}}),
            json!({"format": "complex", "user": {"format": "complex",
                   "user": {"format": "opaque", "id": "u"}}}),
            json!({"format": "aliases", "identifiers": []}),
        ];
        for subject in bad {
            assert!(check_subject(&subject, true).is_err(), "{subject}");
        }
    }

    #[test]
    fn ssf_events_must_name_the_stream_and_carry_valid_members() {
        let own = json!({"format": "opaque", "id": "sst_1"});
        let other = json!({"format": "opaque", "id": "sst_2"});
        let event = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert!(check_event(VERIFICATION, &event(json!({"state": "s"})), &own, "sst_1").is_ok());
        assert!(check_event(VERIFICATION, &event(json!({})), &other, "sst_1").is_err());
        assert!(check_event(VERIFICATION, &event(json!({"state": 1})), &own, "sst_1").is_err());
        let paused = event(json!({"status": "paused", "reason": "r"}));
        assert!(check_event(STREAM_UPDATED, &paused, &own, "sst_1").is_ok());
        let unknown = event(json!({"status": "stopped"}));
        assert!(check_event(STREAM_UPDATED, &unknown, &own, "sst_1").is_err());
        assert!(check_event("https://example.com/x", &event(json!({})), &own, "sst_1").is_err());
    }

    #[test]
    fn session_revoked_needs_the_caep_members() {
        let ok = json!({"initiating_entity": "policy", "reason_admin": {"en": "x"},
                        "reason_user": {"en": "y"}, "event_timestamp": 1});
        let check = |v: &Value| check_session_revoked(v.as_object().unwrap());
        assert!(check(&ok).is_ok());
        for (member, value) in [
            ("initiating_entity", json!("robot")),
            ("reason_admin", json!({"en": 1})),
            ("reason_user", json!({})),
            ("event_timestamp", json!("1")),
        ] {
            let mut bad = ok.clone();
            bad[member] = value;
            assert!(check(&bad).is_err(), "{member}");
        }
    }
}
