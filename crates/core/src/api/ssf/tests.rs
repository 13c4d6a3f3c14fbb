//! Unit tests of the SSF routes' pure parts: the stream object's merge rules, the checks of
//! what a receiver sends, the error answers, and the rows the routes write.

use super::stream::{StreamBody, new_stream, patched, replaced};
use super::*;
use crate::net_policy::NetPolicy;
use crate::ssf::{NewSet, SESSION_REVOKED, SetKind, StreamDelivery, StreamStatus};
use chrono::{TimeZone, Utc};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn body(json: serde_json::Value) -> StreamBody {
    serde_json::from_value(json).unwrap()
}

const STRICT: NetPolicy = NetPolicy {
    allow_insecure: false,
};

#[test]
fn a_create_without_delivery_is_a_poll_stream() {
    let wanted = body(serde_json::json!({"description": "d"}))
        .wanted(STRICT)
        .unwrap();
    let stream = new_stream("ssr_1", wanted, now());
    assert_eq!(stream.delivery, StreamDelivery::Poll);
    assert_eq!(stream.status, StreamStatus::Enabled);
    assert!(stream.stream_id.starts_with("sst_") && stream.stream_id.len() >= 4 + 22);
    assert_eq!(stream.events_delivered(), vec![SESSION_REVOKED]);
}

#[test]
fn push_urls_follow_the_rp_url_policy() {
    let push = |url: &str| {
        body(serde_json::json!({"delivery": {
            "method": "urn:ietf:rfc:8935", "endpoint_url": url, "authorization_header": "Bearer x"
        }}))
    };
    let wanted = push("https://receiver.example.test/ssf")
        .wanted(STRICT)
        .unwrap();
    assert_eq!(
        new_stream("r", wanted, now()).delivery,
        StreamDelivery::Push {
            endpoint_url: "https://receiver.example.test/ssf".to_owned(),
            authorization_header: Some("Bearer x".to_owned()),
        }
    );
    for refused in [
        "http://receiver.example.test/ssf",
        "https://127.0.0.1/ssf",
        "nope",
    ] {
        let err = push(refused).wanted(STRICT).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{refused}");
        assert!(err.description.contains("delivery.endpoint_url"), "{err:?}");
    }
    let insecure = NetPolicy {
        allow_insecure: true,
    };
    assert!(push("http://127.0.0.1:9/ssf").wanted(insecure).is_ok());
    let no_url = body(serde_json::json!({"delivery": {"method": "urn:ietf:rfc:8935"}}));
    assert!(no_url.wanted(STRICT).is_err());
    let unknown = body(serde_json::json!({"delivery": {"method": "urn:example:carrier-pigeon"}}));
    assert!(unknown.wanted(STRICT).is_err());
    let header = body(serde_json::json!({"delivery": {
        "method": "urn:ietf:rfc:8935", "endpoint_url": "https://receiver.example.test/",
        "authorization_header": "Bearer a\r\nX-Injected: 1"
    }}));
    assert!(header.wanted(STRICT).is_err());
}

#[test]
fn patch_keeps_what_is_absent_and_put_resets_it() {
    let first = body(serde_json::json!({
        "events_requested": [SESSION_REVOKED, "urn:example:unknown"],
        "description": "first",
        "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://r.example.test/"}
    }))
    .wanted(STRICT)
    .unwrap();
    let stream = new_stream("r", first, now());
    let change = || {
        body(serde_json::json!({"stream_id": stream.stream_id, "description": "second"}))
            .wanted(STRICT)
            .unwrap()
    };
    let patched = patched(stream.clone(), change(), now());
    assert_eq!(patched.description.as_deref(), Some("second"));
    assert_eq!(patched.events_requested, stream.events_requested);
    assert_eq!(patched.delivery, stream.delivery);
    let replaced = replaced(stream.clone(), change(), now());
    assert_eq!(replaced.description.as_deref(), Some("second"));
    assert_eq!(replaced.events_requested, None);
    assert_eq!(replaced.delivery, StreamDelivery::Poll);
    assert_eq!(replaced.stream_id, stream.stream_id);
    assert_eq!(replaced.status, stream.status);
}

#[test]
fn unknown_requested_events_are_ignored_in_events_delivered() {
    let wanted = body(serde_json::json!({"events_requested": ["urn:example:unknown"]}))
        .wanted(STRICT)
        .unwrap();
    let stream = new_stream("r", wanted, now());
    assert!(stream.events_delivered().is_empty());
}

#[test]
fn a_stream_id_is_required_to_change_a_stream() {
    assert!(body(serde_json::json!({})).stream_id().is_err());
    assert_eq!(
        body(serde_json::json!({"stream_id": "sst_1"}))
            .stream_id()
            .unwrap(),
        "sst_1"
    );
}

#[test]
fn errors_are_ssf_shaped_with_their_headers() {
    let res = SsfError::unauthorized().into_response();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    let res = SsfError::too_soon(7).into_response();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[header::RETRY_AFTER], "7");
}

#[test]
fn a_receiver_token_is_kept_as_lowercase_hex_sha256() {
    assert_eq!(
        token_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_verification_row_carries_the_state_only_when_given() {
    let with = NewSet::verification("sst_1", "ssr_1", Some("s-1"), now());
    assert_eq!(with.kind, SetKind::Verification);
    assert_eq!(with.payload, serde_json::json!({"state": "s-1"}));
    assert_eq!(with.txn, None);
    assert!(with.id.starts_with("set_"));
    assert_eq!(with.created_at, crate::store::millis(now()));
    let without = NewSet::verification("sst_1", "ssr_1", None, now());
    assert_eq!(without.payload, serde_json::json!({}));
    assert_ne!(with.jti, without.jti);
    assert_ne!(with.id, without.id);
}

#[test]
fn a_stream_updated_row_carries_the_status_and_the_reason() {
    let row = NewSet::stream_updated(
        "sst_1",
        "ssr_1",
        StreamStatus::Paused,
        Some("upkeep"),
        now(),
    );
    assert_eq!(row.kind, SetKind::StreamUpdated);
    assert_eq!(
        row.payload,
        serde_json::json!({"status": "paused", "reason": "upkeep"})
    );
    assert_eq!(row.stream_id, "sst_1");
    assert_eq!(row.receiver_id, "ssr_1");
    let bare = NewSet::stream_updated("sst_1", "ssr_1", StreamStatus::Enabled, None, now());
    assert_eq!(bare.payload, serde_json::json!({"status": "enabled"}));
}
