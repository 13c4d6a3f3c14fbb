//! The Security Event Token of a SET row (RFC 8417; SSF 1.0 §4; CAEP 1.0 §3.1), signed for
//! one attempt, and the rows the stream API writes (verification, stream-updated).
//!
//! A row keeps what to sign, not the signature: [`mint`] builds the claims from the row
//! (`jti`, `iat` and `txn` fixed for its life) and signs them with the current RS256 key on
//! every attempt.

use super::VERIFICATION;
use super::{NewSet, SESSION_REVOKED, STREAM_UPDATED, SetKind, StoredSet, StreamStatus};
use crate::alg::{SigningAlg, TokenTyp};
use crate::initiator::Initiator;
use crate::keys::{SignError, SigningKey};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Why a SET could not be minted. Messages name claims, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetMintError {
    /// SETs are signed with RS256 only (CAEP interoperability profile §2.6).
    #[error("SETs are signed with RS256, not {0}")]
    Alg(SigningAlg),
    /// The row's payload lacks a member its kind needs, or holds it with the wrong type.
    #[error("the SET row's payload has no valid {0}")]
    Payload(&'static str),
    /// The crypto library refused to sign.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// `reason_admin` of a `session-revoked` SET: names the logoutd initiator.
fn reason_admin(initiator: &str) -> Value {
    json!({ "en": format!("logoutd initiator: {initiator}") })
}

/// `reason_user` of a `session-revoked` SET: a plain sentence for the user.
fn reason_user(initiator: Initiator) -> Value {
    let text = match initiator {
        Initiator::RpLogout => "You signed out.",
        Initiator::IdpLogout => "Your identity provider ended your session.",
        Initiator::PasswordChanged => "Your password was changed, so you were signed out.",
        Initiator::SessionExpired => "Your session expired.",
        Initiator::SessionRevoked => "An administrator signed you out.",
        Initiator::AccountDeleted => "Your account was deleted.",
        Initiator::EmailIdentifierChanged => {
            "Your email address was changed, so you were signed out."
        }
        Initiator::MfaPhoneUnenrolled => {
            "A phone was removed from your sign-in methods, so you were signed out."
        }
        Initiator::AccountDeactivated => "Your account was deactivated.",
    };
    json!({ "en": text })
}

fn payload_str<'a>(payload: &'a Value, name: &'static str) -> Result<&'a str, SetMintError> {
    payload
        .get(name)
        .and_then(Value::as_str)
        .ok_or(SetMintError::Payload(name))
}

/// The stream's own subject (SSF §8.1.4.1): verification and stream-updated SETs.
fn stream_subject(stream_id: &str) -> Value {
    json!({ "format": "opaque", "id": stream_id })
}

/// `sub_id` and the event of a `session-revoked` SET (CAEP §3.1): a complex subject of the
/// user (`iss_sub`) and the session (`opaque`), never a bare user, which would mean all of
/// the user's sessions.
fn session_revoked(payload: &Value, issuer: &str) -> Result<(Value, Value), SetMintError> {
    let initiator = payload_str(payload, "initiator")?;
    let parsed: Initiator = initiator
        .parse()
        .map_err(|_| SetMintError::Payload("initiator"))?;
    let timestamp = payload
        .get("event_timestamp")
        .and_then(Value::as_i64)
        .ok_or(SetMintError::Payload("event_timestamp"))?;
    let subject = json!({
        "format": "complex",
        "user": {"format": "iss_sub", "iss": issuer, "sub": payload_str(payload, "sub")?},
        "session": {"format": "opaque", "id": payload_str(payload, "sid")?},
    });
    let mut event = json!({
        "initiating_entity": payload_str(payload, "initiating_entity")?,
        "reason_admin": reason_admin(initiator),
        "reason_user": reason_user(parsed),
        "event_timestamp": timestamp,
    });
    if let (Some(map), Some(metadata)) = (event.as_object_mut(), payload.get("session_metadata")) {
        map.insert("session_metadata".to_owned(), metadata.clone());
    }
    Ok((subject, event))
}

/// The `sub_id`, event type and event object of `row`.
fn subject_and_event(
    row: &NewSet,
    issuer: &str,
) -> Result<(Value, &'static str, Value), SetMintError> {
    match row.kind {
        SetKind::SessionRevoked => {
            let (subject, event) = session_revoked(&row.payload, issuer)?;
            Ok((subject, SESSION_REVOKED, event))
        }
        SetKind::Verification => {
            let mut event = Map::new();
            if let Some(state) = row.payload.get("state") {
                let state = state.as_str().ok_or(SetMintError::Payload("state"))?;
                event.insert("state".to_owned(), Value::from(state));
            }
            let subject = stream_subject(&row.stream_id);
            Ok((subject, VERIFICATION, Value::Object(event)))
        }
        SetKind::StreamUpdated => {
            let status = payload_str(&row.payload, "status")?;
            let mut event = Map::new();
            event.insert("status".to_owned(), Value::from(status));
            if let Some(reason) = row.payload.get("reason") {
                let reason = reason.as_str().ok_or(SetMintError::Payload("reason"))?;
                event.insert("reason".to_owned(), Value::from(reason));
            }
            let subject = stream_subject(&row.stream_id);
            Ok((subject, STREAM_UPDATED, Value::Object(event)))
        }
    }
}

/// The claims of `row`'s SET for the receiver `aud` (SSF §4.1; RFC 8417 §2.2): `iss`
/// (byte-identical to the issuer), `aud` (one string), `iat` (the row's creation, seconds),
/// `jti` (the row's), `txn` when the row has one, `sub_id`, and `events` with exactly one
/// member. Never `sub`, `exp` or `nonce`.
pub fn set_claims(row: &NewSet, aud: &str, issuer: &str) -> Result<Value, SetMintError> {
    let (subject, event_type, event) = subject_and_event(row, issuer)?;
    let mut claims = Map::new();
    claims.insert("iss".to_owned(), Value::from(issuer));
    claims.insert("aud".to_owned(), Value::from(aud));
    claims.insert("iat".to_owned(), Value::from(row.created_at.timestamp()));
    claims.insert("jti".to_owned(), Value::from(row.jti.as_str()));
    if let Some(txn) = &row.txn {
        claims.insert("txn".to_owned(), Value::from(txn.as_str()));
    }
    claims.insert("sub_id".to_owned(), subject);
    let mut events = Map::new();
    events.insert(event_type.to_owned(), event);
    claims.insert("events".to_owned(), Value::Object(events));
    Ok(Value::Object(claims))
}

/// Signs `row`'s SET for `aud` with `key` (RS256 only), header
/// `{"alg":"RS256","typ":"secevent+jwt","kid"}`. Each attempt mints again with the current
/// key; the claims are the same every time.
pub fn mint(
    row: &StoredSet,
    aud: &str,
    issuer: &str,
    key: &SigningKey,
) -> Result<String, SetMintError> {
    if key.alg() != SigningAlg::RS256 {
        return Err(SetMintError::Alg(key.alg()));
    }
    let claims = set_claims(&row.set, aud, issuer)?;
    let json = serde_json::to_vec(&claims).map_err(|_| SetMintError::Payload("claims"))?;
    Ok(key.sign_json(TokenTyp::SecEventJwt, &json)?)
}

impl NewSet {
    fn for_stream(
        stream_id: &str,
        receiver_id: &str,
        kind: SetKind,
        payload: Value,
        now: DateTime<Utc>,
    ) -> Self {
        let now = crate::store::millis(now);
        Self {
            id: crate::ids::SetId::generate_at(now).into_inner(),
            stream_id: stream_id.to_owned(),
            receiver_id: receiver_id.to_owned(),
            kind,
            jti: crate::ids::random_token(),
            txn: None,
            payload,
            created_at: now,
        }
    }

    /// The verification row of an accepted `/ssf/verify` (SSF §8.1.4.2): `state` is echoed
    /// verbatim when the receiver sent one (a transmitter-initiated one carries none).
    pub fn verification(
        stream_id: &str,
        receiver_id: &str,
        state: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        let payload = match state {
            Some(state) => json!({ "state": state }),
            None => json!({}),
        };
        Self::for_stream(stream_id, receiver_id, SetKind::Verification, payload, now)
    }

    /// The stream-updated row of a status change logoutd made itself (SSF §8.1.5).
    pub fn stream_updated(
        stream_id: &str,
        receiver_id: &str,
        status: StreamStatus,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut payload = json!({ "status": status.as_str() });
        if let (Some(map), Some(reason)) = (payload.as_object_mut(), reason) {
            map.insert("reason".to_owned(), Value::from(reason));
        }
        Self::for_stream(stream_id, receiver_id, SetKind::StreamUpdated, payload, now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::ssf::SetState;
    use crate::verify::verify_signature;

    const ISSUER: &str = "https://logout.example.com/t1";

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_767_225_605_123).unwrap()
    }

    fn stored(set: NewSet) -> StoredSet {
        StoredSet {
            budget_started_at: set.created_at,
            updated_at: set.created_at,
            set,
            state: SetState::Pending,
            attempts: 0,
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            delivered_at: None,
        }
    }

    fn revoked(metadata: bool) -> NewSet {
        let mut payload = json!({
            "sub": "auth0|64f1c2", "sid": "s_9Qh3", "initiator": "session-revoked",
            "initiating_entity": "admin", "event_timestamp": 1_767_225_600,
        });
        if metadata {
            payload["session_metadata"] = json!({"tenant": "acme"});
        }
        NewSet {
            id: "set_1".into(),
            stream_id: "sst_1".into(),
            receiver_id: "ssr_1".into(),
            kind: SetKind::SessionRevoked,
            jti: "jti-1".into(),
            txn: Some("evt_1".into()),
            payload,
            created_at: t0(),
        }
    }

    fn key() -> SigningKey {
        SigningKey::generate(SigningAlg::RS256, None).unwrap()
    }

    fn minted(row: NewSet) -> (Map<String, Value>, Map<String, Value>) {
        let key = key();
        let token = mint(&stored(row), "rp-crm", ISSUER, &key).unwrap();
        let jwks = crate::keys::Jwks {
            keys: vec![key.jwk().clone()],
        };
        let parts = verify_signature(&token, &jwks, SigningAlg::RS256).unwrap();
        (parts.header, parts.claims)
    }

    #[test]
    fn session_revoked_set_matches_the_spec_example() {
        let (header, claims) = minted(revoked(true));
        assert_eq!(header["typ"], "secevent+jwt");
        assert_eq!(header["alg"], "RS256");
        let expected = json!({
            "iss": ISSUER, "aud": "rp-crm", "iat": 1_767_225_605, "jti": "jti-1", "txn": "evt_1",
            "sub_id": {"format": "complex",
                "user": {"format": "iss_sub", "iss": ISSUER, "sub": "auth0|64f1c2"},
                "session": {"format": "opaque", "id": "s_9Qh3"}},
            "events": {SESSION_REVOKED: {
                "initiating_entity": "admin",
                "reason_admin": {"en": "logoutd initiator: session-revoked"},
                "reason_user": {"en": "An administrator signed you out."},
                "event_timestamp": 1_767_225_600,
                "session_metadata": {"tenant": "acme"}}},
        });
        assert_eq!(Value::Object(claims), expected);
    }

    #[test]
    fn set_has_no_sub_exp_or_nonce_and_metadata_only_when_opted_in() {
        let (_, claims) = minted(revoked(false));
        for absent in ["sub", "exp", "nonce"] {
            assert!(!claims.contains_key(absent), "{absent}");
        }
        let event = &claims["events"][SESSION_REVOKED];
        assert!(event.get("session_metadata").is_none());
    }

    #[test]
    fn every_initiator_has_a_user_reason() {
        for initiator in Initiator::ALL {
            let text = reason_user(initiator)["en"].as_str().unwrap().to_owned();
            assert!(text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn verification_echoes_state_with_the_stream_as_subject() {
        let row = NewSet::verification("sst_1", "ssr_1", Some("abc"), t0());
        assert!(row.id.starts_with("set_"));
        assert_eq!(row.created_at, crate::store::millis(t0()));
        let (_, claims) = minted(row);
        assert_eq!(claims["sub_id"], json!({"format": "opaque", "id": "sst_1"}));
        assert_eq!(claims["events"], json!({VERIFICATION: {"state": "abc"}}));
        assert!(!claims.contains_key("txn"));
        let (_, claims) = minted(NewSet::verification("sst_1", "ssr_1", None, t0()));
        assert_eq!(claims["events"], json!({VERIFICATION: {}}));
    }

    #[test]
    fn stream_updated_carries_status_and_reason() {
        let row = NewSet::stream_updated(
            "sst_1",
            "ssr_1",
            StreamStatus::Paused,
            Some("maintenance"),
            t0(),
        );
        let (_, claims) = minted(row);
        assert_eq!(claims["sub_id"], json!({"format": "opaque", "id": "sst_1"}));
        let event = json!({STREAM_UPDATED: {"status": "paused", "reason": "maintenance"}});
        assert_eq!(claims["events"], event);
        let row = NewSet::stream_updated("sst_1", "ssr_1", StreamStatus::Enabled, None, t0());
        let (_, claims) = minted(row);
        assert_eq!(
            claims["events"],
            json!({STREAM_UPDATED: {"status": "enabled"}})
        );
    }

    #[test]
    fn only_rs256_keys_sign_sets() {
        let es = SigningKey::generate(SigningAlg::ES256, None).unwrap();
        let err = mint(&stored(revoked(false)), "a", ISSUER, &es).unwrap_err();
        assert_eq!(err, SetMintError::Alg(SigningAlg::ES256));
    }

    #[test]
    fn a_payload_without_its_members_is_refused() {
        let mut row = revoked(false);
        row.payload = json!({"sub": "u"});
        let err = mint(&stored(row), "a", ISSUER, &key()).unwrap_err();
        assert_eq!(err, SetMintError::Payload("initiator"));
    }
}
