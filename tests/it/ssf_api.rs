//! The SSF transmitter's HTTP API on the memory store: the metadata (SSF 1.0 §7), stream
//! management (§8.1) with the conformance suite's order of checks (401, then 400, then 404),
//! verification (§8.1.4), poll delivery (RFC 8936), and the operator's `/api/v2/ssf-*`.

use crate::support::app::{API_TOKEN, TestApp};
use axum::http::{HeaderMap, Method, StatusCode, header};
use logoutd_core::{SsfApi, StoredSet};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const ISSUER: &str = "https://logout.example.test";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// A stand-in signer: `{aud}.{jti}`, so a test sees which row went to whom.
fn ssf_api() -> SsfApi {
    SsfApi::new(Arc::new(|row: &StoredSet, aud: &str| {
        Ok(format!("{aud}.{}", row.set.jti))
    }))
}

pub(crate) async fn app() -> TestApp {
    TestApp::ssf(ISSUER, false, ssf_api()).await
}

/// An answer: status, headers and the JSON body (`Null` when empty).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let (status, headers, bytes) = app
        .raw(
            method,
            path,
            token,
            body.map(|_| "application/json"),
            body.map(|b| b.as_bytes().to_vec()),
        )
        .await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn ssf(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Answer {
    let text = (!body.is_null()).then(|| body.to_string());
    send(app, method, path, Some(token), text.as_deref()).await
}

/// Registers a receiver; returns its id and token.
async fn receiver(app: &TestApp, body: Value) -> (String, String) {
    let (status, created) = app
        .call(Method::POST, "/api/v2/ssf-receivers", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

/// A receiver with a poll stream; returns its token and the stream id.
pub(crate) async fn poll_stream(app: &TestApp, aud: &str) -> (String, String) {
    let (_, token) = receiver(app, json!({"name": aud, "aud": aud})).await;
    let created = ssf(app, Method::POST, "/ssf/stream", &token, json!({})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (
        token,
        created.body["stream_id"].as_str().unwrap().to_owned(),
    )
}

fn assert_ssf_error(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(answer.body["error"].is_string(), "{}", answer.body);
    assert!(
        answer.body["error_description"].is_string(),
        "{}",
        answer.body
    );
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn metadata_is_the_documented_document_built_from_the_issuer() {
    let app = app().await;
    let answer = send(
        &app,
        Method::GET,
        "/.well-known/ssf-configuration",
        None,
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        answer.body,
        json!({
            "spec_version": "1_0",
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/.well-known/jwks.json"),
            "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
            "configuration_endpoint": format!("{ISSUER}/ssf/stream"),
            "status_endpoint": format!("{ISSUER}/ssf/status"),
            "add_subject_endpoint": format!("{ISSUER}/ssf/subjects/add"),
            "remove_subject_endpoint": format!("{ISSUER}/ssf/subjects/remove"),
            "verification_endpoint": format!("{ISSUER}/ssf/verify"),
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
            "default_subjects": "ALL",
        })
    );
    let empty_arrays = answer
        .body
        .as_object()
        .unwrap()
        .values()
        .filter(|v| v.as_array().is_some_and(Vec::is_empty))
        .count();
    assert_eq!(empty_arrays, 0);
}

#[tokio::test]
async fn metadata_of_an_issuer_with_a_path_is_served_after_the_well_known_string() {
    let issuer = "https://logout.example.test/t1";
    let app = TestApp::ssf(issuer, false, ssf_api()).await;
    let answer = send(
        &app,
        Method::GET,
        "/.well-known/ssf-configuration/t1",
        None,
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["issuer"], issuer);
    assert_eq!(
        answer.body["configuration_endpoint"],
        format!("{issuer}/ssf/stream")
    );
    let other = send(
        &app,
        Method::GET,
        "/.well-known/ssf-configuration/t2",
        None,
        None,
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ssf_routes_are_404_when_ssf_is_off() {
    let app = TestApp::memory().await;
    for (method, path) in [
        (Method::GET, "/.well-known/ssf-configuration"),
        (Method::GET, "/ssf/stream"),
        (Method::POST, "/ssf/verify"),
        (Method::POST, "/ssf/poll/sst_x"),
    ] {
        let answer = send(&app, method, path, Some("whatever"), Some("{}")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn receivers_are_registered_with_a_token_shown_once_and_rotated() {
    let app = app().await;
    let (status, created) = app
        .call(
            Method::POST,
            "/api/v2/ssf-receivers",
            Some(json!({"name": "SIEM"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("ssr_"));
    assert_eq!(created["aud"], id);
    assert_eq!(created["scope"], "all");
    assert_eq!(created["include_session_metadata"], false);
    assert!(created["client_id"].is_null());
    assert!(created["created_at"].is_string());
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 43);
    assert!(created.get("token_hash").is_none());

    let (status, read) = app
        .call(Method::GET, &format!("/api/v2/ssf-receivers/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(read.get("token").is_none() && !read.to_string().contains(&token));
    let (_, page) = app.call(Method::GET, "/api/v2/ssf-receivers", None).await;
    assert_eq!(page["receivers"].as_array().unwrap().len(), 1);
    assert!(page["next"].is_null());
    assert!(!page.to_string().contains(&token));

    let dup = json!({"name": "again", "aud": id});
    let (status, _) = app
        .call(Method::POST, "/api/v2/ssf-receivers", Some(dup))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let unknown = json!({"name": "x", "client_id": "no-such-client"});
    let (status, _) = app
        .call(Method::POST, "/api/v2/ssf-receivers", Some(unknown))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(
        ssf(&app, Method::GET, "/ssf/stream", &token, Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    let (status, rotated) = app
        .call(
            Method::POST,
            &format!("/api/v2/ssf-receivers/{id}/rotate-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let fresh = rotated["token"].as_str().unwrap();
    assert_ne!(fresh, token);
    let old = ssf(&app, Method::GET, "/ssf/stream", &token, Value::Null).await;
    assert_ssf_error(&old, StatusCode::UNAUTHORIZED);
    let new = ssf(&app, Method::GET, "/ssf/stream", fresh, Value::Null).await;
    assert_eq!(new.status, StatusCode::OK);

    let path = format!("/api/v2/ssf-receivers/{id}");
    assert_eq!(
        app.call(Method::DELETE, &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    let gone = ssf(&app, Method::GET, "/ssf/stream", fresh, Value::Null).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_receiver_for_a_client_hears_of_its_sessions_by_default() {
    let app = app().await;
    let client = json!({"client_id": "crm", "name": "CRM", "oidc_logout": {
        "backchannel_logout_urls": ["https://crm.example.test/logout"]}});
    let (status, _) = app
        .call(Method::POST, "/api/v2/clients", Some(client))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, created) = app
        .call(
            Method::POST,
            "/api/v2/ssf-receivers",
            Some(json!({"name": "CRM SSF", "client_id": "crm", "aud": "crm-ssf"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["scope"], "participating");
    assert_eq!(created["client_id"], "crm");
    assert_eq!(created["aud"], "crm-ssf");
}

#[tokio::test]
async fn a_poll_stream_is_created_read_updated_replaced_and_deleted() {
    let app = app().await;
    let (_, token) = receiver(&app, json!({"name": "r", "aud": "rp-crm"})).await;
    let create = json!({
        "events_requested": [SESSION_REVOKED,
            "https://schemas.openid.net/secevent/caep/event-type/credential-change"],
        "description": "first",
    });
    let created = ssf(&app, Method::POST, "/ssf/stream", &token, create).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers[header::CACHE_CONTROL], "no-store");
    let stream = created.body.clone();
    let id = stream["stream_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sst_"));
    assert_eq!(stream["iss"], ISSUER);
    assert_eq!(stream["aud"], "rp-crm");
    assert_eq!(stream["events_supported"], json!([SESSION_REVOKED]));
    assert_eq!(stream["events_delivered"], json!([SESSION_REVOKED]));
    assert_eq!(stream["min_verification_interval"], 10);
    assert_eq!(
        stream["delivery"],
        json!({"method": "urn:ietf:rfc:8936", "endpoint_url": format!("{ISSUER}/ssf/poll/{id}")})
    );

    let again = ssf(&app, Method::POST, "/ssf/stream", &token, json!({})).await;
    assert_ssf_error(&again, StatusCode::CONFLICT);

    let all = ssf(&app, Method::GET, "/ssf/stream", &token, Value::Null).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body, json!([stream]));
    let one = ssf(
        &app,
        Method::GET,
        &format!("/ssf/stream?stream_id={id}"),
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(one.body, stream);

    let patch = json!({"stream_id": id, "description": "second", "iss": ISSUER,
        "aud": "rp-crm", "events_delivered": [SESSION_REVOKED]});
    let patched = ssf(&app, Method::PATCH, "/ssf/stream", &token, patch).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["description"], "second");
    assert_eq!(patched.body["events_requested"], stream["events_requested"]);

    for mismatch in [
        json!({"stream_id": id, "iss": "https://other.example.test"}),
        json!({"stream_id": id, "aud": "someone-else"}),
        json!({"stream_id": id, "events_delivered": []}),
        json!({"stream_id": id, "min_verification_interval": 5}),
    ] {
        let refused = ssf(&app, Method::PATCH, "/ssf/stream", &token, mismatch.clone()).await;
        assert_ssf_error(&refused, StatusCode::BAD_REQUEST);
        let refused = ssf(&app, Method::PUT, "/ssf/stream", &token, mismatch).await;
        assert_ssf_error(&refused, StatusCode::BAD_REQUEST);
    }

    let replaced = ssf(
        &app,
        Method::PUT,
        "/ssf/stream",
        &token,
        json!({"stream_id": id, "description": "third"}),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["description"], "third");
    assert!(replaced.body.get("events_requested").is_none());
    assert_eq!(replaced.body["events_delivered"], json!([SESSION_REVOKED]));
    assert_eq!(replaced.body["delivery"]["method"], "urn:ietf:rfc:8936");

    let path = format!("/ssf/stream?stream_id={id}");
    let deleted = ssf(&app, Method::DELETE, &path, &token, Value::Null).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.headers[header::CACHE_CONTROL], "no-store");
    let gone = ssf(&app, Method::GET, &path, &token, Value::Null).await;
    assert_ssf_error(&gone, StatusCode::NOT_FOUND);
    let none = ssf(&app, Method::GET, "/ssf/stream", &token, Value::Null).await;
    assert_eq!(none.body, json!([]));
}

#[tokio::test]
async fn put_resets_a_push_stream_to_poll_and_every_event() {
    let app = TestApp::ssf(ISSUER, true, ssf_api()).await;
    let (_, token) = receiver(&app, json!({"name": "r"})).await;
    let create = json!({"events_requested": ["urn:example:other"], "delivery": {
        "method": "urn:ietf:rfc:8935", "endpoint_url": "http://127.0.0.1:9/ssf"}});
    let created = ssf(&app, Method::POST, "/ssf/stream", &token, create).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["events_delivered"], json!([]));
    let id = created.body["stream_id"].as_str().unwrap();
    let replaced = ssf(
        &app,
        Method::PUT,
        "/ssf/stream",
        &token,
        json!({"stream_id": id}),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(replaced.body["events_delivered"], json!([SESSION_REVOKED]));
    assert_eq!(replaced.body["delivery"]["method"], "urn:ietf:rfc:8936");
}

#[tokio::test]
async fn checks_run_401_then_400_then_404() {
    let app = app().await;
    let (token, id) = poll_stream(&app, "rp-a").await;
    let path = format!("/ssf/stream?stream_id={id}");
    assert_eq!(
        ssf(&app, Method::DELETE, &path, &token, Value::Null)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let broken = Some("{\"stream_id\": ");
    for method in [Method::POST, Method::PATCH, Method::PUT] {
        let bad_token = send(&app, method.clone(), "/ssf/stream", Some("nope"), broken).await;
        assert_ssf_error(&bad_token, StatusCode::UNAUTHORIZED);
        assert_eq!(
            bad_token.headers[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let no_token = send(&app, method.clone(), "/ssf/stream", None, broken).await;
        assert_ssf_error(&no_token, StatusCode::UNAUTHORIZED);
        let bad_body = send(&app, method.clone(), "/ssf/stream", Some(&token), broken).await;
        assert_ssf_error(&bad_body, StatusCode::BAD_REQUEST);
    }
    for method in [Method::PATCH, Method::PUT] {
        let body = json!({"stream_id": id, "description": "x"});
        let deleted = ssf(&app, method, "/ssf/stream", &token, body).await;
        assert_ssf_error(&deleted, StatusCode::NOT_FOUND);
    }
    for method in [Method::GET, Method::DELETE] {
        let bad_token = send(&app, method.clone(), &path, Some("nope"), None).await;
        assert_ssf_error(&bad_token, StatusCode::UNAUTHORIZED);
        let deleted = ssf(&app, method, &path, &token, Value::Null).await;
        assert_ssf_error(&deleted, StatusCode::NOT_FOUND);
    }
    for route in ["/ssf/status", "/ssf/verify", "/ssf/subjects/remove"] {
        let bad_token = send(&app, Method::POST, route, Some("nope"), broken).await;
        assert_ssf_error(&bad_token, StatusCode::UNAUTHORIZED);
        let bad_body = send(&app, Method::POST, route, Some(&token), broken).await;
        assert_ssf_error(&bad_body, StatusCode::BAD_REQUEST);
    }
    let wrong_type = json!({"events_requested": "all"});
    let refused = ssf(&app, Method::POST, "/ssf/stream", &token, wrong_type).await;
    assert_ssf_error(&refused, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_tokens_are_refused_on_the_ssf_routes() {
    let app = app().await;
    poll_stream(&app, "rp-a").await;
    for (method, path) in [
        (Method::GET, "/ssf/stream"),
        (Method::POST, "/ssf/stream"),
        (Method::POST, "/ssf/verify"),
    ] {
        let answer = send(&app, method, path, Some(API_TOKEN), Some("{}")).await;
        assert_ssf_error(&answer, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn another_receivers_stream_is_404() {
    let app = app().await;
    let (_, theirs) = poll_stream(&app, "rp-a").await;
    let (mine, _) = poll_stream(&app, "rp-b").await;
    let query = format!("?stream_id={theirs}");
    let body = json!({"stream_id": theirs, "status": "paused", "description": "x",
        "subject": {"format": "email", "email": "a@example.test"}});
    for (method, path) in [
        (Method::GET, format!("/ssf/stream{query}")),
        (Method::DELETE, format!("/ssf/stream{query}")),
        (Method::PATCH, "/ssf/stream".to_owned()),
        (Method::PUT, "/ssf/stream".to_owned()),
        (Method::GET, format!("/ssf/status{query}")),
        (Method::POST, "/ssf/status".to_owned()),
        (Method::POST, "/ssf/subjects/add".to_owned()),
        (Method::POST, "/ssf/subjects/remove".to_owned()),
        (Method::POST, "/ssf/verify".to_owned()),
        (Method::POST, format!("/ssf/poll/{theirs}")),
    ] {
        let send_body = if method == Method::GET || method == Method::DELETE {
            Value::Null
        } else {
            body.clone()
        };
        let answer = ssf(&app, method.clone(), &path, &mine, send_body).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[tokio::test]
async fn a_push_url_the_policy_refuses_is_400() {
    let app = app().await;
    let (_, token) = receiver(&app, json!({"name": "r"})).await;
    for url in ["http://receiver.example.test/ssf", "https://10.0.0.1/ssf"] {
        let body = json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": url}});
        let answer = ssf(&app, Method::POST, "/ssf/stream", &token, body).await;
        assert_ssf_error(&answer, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn the_authorization_header_is_shown_to_its_receiver_only() {
    let app = app().await;
    let (_, token) = receiver(&app, json!({"name": "r"})).await;
    let secret = "Bearer push-secret-4f9a";
    let body = json!({"delivery": {"method": "urn:ietf:rfc:8935",
        "endpoint_url": "https://receiver.example.test/ssf", "authorization_header": secret}});
    let created = ssf(&app, Method::POST, "/ssf/stream", &token, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["delivery"]["authorization_header"], secret);
    let (status, streams) = app.call(Method::GET, "/api/v2/ssf-streams", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!streams.to_string().contains("push-secret"), "{streams}");
    let view = &streams["streams"][0];
    assert_eq!(view["delivery"]["authorization_header_set"], true);
    assert_eq!(
        view["delivery"]["endpoint_url"],
        "https://receiver.example.test/ssf"
    );
    assert_eq!(view["status"], "enabled");
    let (_, receivers) = app.call(Method::GET, "/api/v2/ssf-receivers", None).await;
    assert!(!receivers.to_string().contains("push-secret"));
}

#[tokio::test]
async fn status_is_read_and_set_and_verification_needs_an_enabled_stream() {
    let app = app().await;
    let (token, id) = poll_stream(&app, "rp-a").await;
    let status_path = format!("/ssf/status?stream_id={id}");
    let read = ssf(&app, Method::GET, &status_path, &token, Value::Null).await;
    assert_eq!(read.body, json!({"stream_id": id, "status": "enabled"}));
    let pause = json!({"stream_id": id, "status": "paused", "reason": "upkeep"});
    let set = ssf(&app, Method::POST, "/ssf/status", &token, pause.clone()).await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.body, pause);
    let bad = json!({"stream_id": id, "status": "asleep"});
    let refused = ssf(&app, Method::POST, "/ssf/status", &token, bad).await;
    assert_ssf_error(&refused, StatusCode::BAD_REQUEST);

    let verify = json!({"stream_id": id, "state": "s-1"});
    let paused = ssf(&app, Method::POST, "/ssf/verify", &token, verify.clone()).await;
    assert_ssf_error(&paused, StatusCode::BAD_REQUEST);
    let enable = json!({"stream_id": id, "status": "enabled"});
    ssf(&app, Method::POST, "/ssf/status", &token, enable).await;
    // A status set by the receiver writes no stream-updated event.
    let (_, rows) = app.call(Method::GET, "/api/v2/ssf-deliveries", None).await;
    assert_eq!(rows["deliveries"], json!([]));

    let accepted = ssf(&app, Method::POST, "/ssf/verify", &token, verify.clone()).await;
    assert_eq!(accepted.status, StatusCode::NO_CONTENT);
    let too_soon = ssf(&app, Method::POST, "/ssf/verify", &token, verify.clone()).await;
    assert_ssf_error(&too_soon, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = too_soon.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    app.clock.advance(chrono::Duration::seconds(10));
    let later = ssf(&app, Method::POST, "/ssf/verify", &token, verify).await;
    assert_eq!(later.status, StatusCode::NO_CONTENT);

    let (_, rows) = app
        .call(
            Method::GET,
            "/api/v2/ssf-deliveries?kind=verification",
            None,
        )
        .await;
    let rows = rows["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["stream_id"], id.as_str());
    assert_eq!(rows[0]["state"], "pending");
    assert!(rows[0].get("payload").is_none());
}

#[tokio::test]
async fn subjects_are_removed_and_added_back_without_revealing_who_is_known() {
    let app = app().await;
    let (token, id) = poll_stream(&app, "rp-a").await;
    let email = json!({"stream_id": id, "subject": {"format": "email", "email": "a@example.test"}});
    let removed = ssf(
        &app,
        Method::POST,
        "/ssf/subjects/remove",
        &token,
        email.clone(),
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let again = ssf(
        &app,
        Method::POST,
        "/ssf/subjects/remove",
        &token,
        email.clone(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let (_, streams) = app.call(Method::GET, "/api/v2/ssf-streams", None).await;
    assert_eq!(streams["streams"][0]["excluded_subjects"], 1);
    let added = ssf(
        &app,
        Method::POST,
        "/ssf/subjects/add",
        &token,
        email.clone(),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK);
    let unknown = ssf(&app, Method::POST, "/ssf/subjects/add", &token, email).await;
    assert_eq!(unknown.status, StatusCode::OK);
    let (_, streams) = app.call(Method::GET, "/api/v2/ssf-streams", None).await;
    assert_eq!(streams["streams"][0]["excluded_subjects"], 0);

    for bad in [
        json!("a@example.test"),
        json!({"email": "a@example.test"}),
        json!({"format": 1}),
    ] {
        let body = json!({"stream_id": id, "subject": bad});
        let refused = ssf(&app, Method::POST, "/ssf/subjects/add", &token, body).await;
        assert_ssf_error(&refused, StatusCode::BAD_REQUEST);
    }
    let own = json!({"stream_id": id, "subject": {"format": "opaque", "id": id}});
    let refused = ssf(&app, Method::POST, "/ssf/subjects/remove", &token, own).await;
    assert_ssf_error(&refused, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_user_of_another_issuer_is_not_removed_from_this_issuers_sessions() {
    let app = app().await;
    let (token, id) = poll_stream(&app, "rp-a").await;
    let foreign = [
        json!({"format": "iss_sub", "iss": "https://other-idp.test", "sub": "u1"}),
        json!({"format": "complex",
               "user": {"format": "iss_sub", "iss": "https://other-idp.test", "sub": "u1"}}),
    ];
    for subject in foreign {
        let body = json!({"stream_id": id, "subject": subject});
        let answer = ssf(&app, Method::POST, "/ssf/subjects/remove", &token, body).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    }
    let (_, streams) = app.call(Method::GET, "/api/v2/ssf-streams", None).await;
    assert_eq!(streams["streams"][0]["excluded_subjects"], 0, "{streams}");

    let own = json!({"format": "iss_sub", "iss": format!("{ISSUER}/"), "sub": "u1"});
    let body = json!({"stream_id": id, "subject": own});
    let answer = ssf(&app, Method::POST, "/ssf/subjects/remove", &token, body).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    let (_, streams) = app.call(Method::GET, "/api/v2/ssf-streams", None).await;
    assert_eq!(streams["streams"][0]["excluded_subjects"], 1, "{streams}");
}

/// Writes a verification row (advancing the clock past the minimum interval first).
pub(crate) async fn verification(app: &TestApp, token: &str, id: &str, state: &str) {
    app.clock.advance(chrono::Duration::seconds(10));
    let body = json!({"stream_id": id, "state": state});
    let answer = ssf(app, Method::POST, "/ssf/verify", token, body).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
}

pub(crate) async fn poll(app: &TestApp, token: &str, id: &str, body: Value) -> Answer {
    ssf(app, Method::POST, &format!("/ssf/poll/{id}"), token, body).await
}

#[tokio::test]
async fn poll_hands_out_sets_then_applies_acks_and_errors() {
    let app = app().await;
    let (token, id) = poll_stream(&app, "rp-a").await;
    for state in ["s-1", "s-2", "s-3"] {
        verification(&app, &token, &id, state).await;
    }
    let first = poll(
        &app,
        &token,
        &id,
        json!({"maxEvents": 2, "returnImmediately": true}),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.headers[header::CACHE_CONTROL], "no-store");
    let sets = first.body["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(first.body["moreAvailable"], true);
    for (jti, set) in sets {
        assert_eq!(set, &json!(format!("rp-a.{jti}")));
    }
    let jtis: Vec<String> = sets.keys().cloned().collect();

    let body = json!({"returnImmediately": true, "ack": [jtis[0]],
        "setErrs": {jtis[1].clone(): {"err": "invalid_request", "description": "nope"}}});
    let second = poll(&app, &token, &id, body).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["sets"].as_object().unwrap().len(), 1);
    assert!(second.body.get("moreAvailable").is_none());
    let third_jti = second.body["sets"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();

    let (_, delivered) = app
        .call(Method::GET, "/api/v2/ssf-deliveries?state=delivered", None)
        .await;
    assert_eq!(delivered["deliveries"][0]["jti"], jtis[0].as_str());
    let (_, failed) = app
        .call(Method::GET, "/api/v2/ssf-deliveries?state=failed", None)
        .await;
    let failed = &failed["deliveries"][0];
    assert_eq!(failed["jti"], jtis[1].as_str());
    let failed_id = failed["id"].as_str().unwrap();
    let (status, one) = app
        .call(
            Method::GET,
            &format!("/api/v2/ssf-deliveries/{failed_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for key in [
        "id",
        "kind",
        "stream_id",
        "receiver_id",
        "jti",
        "txn",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status",
        "last_error",
        "delivered_at",
        "created_at",
    ] {
        assert!(one.get(key).is_some(), "{key}: {one}");
    }
    let retry = format!("/api/v2/ssf-deliveries/{failed_id}/retry");
    let (status, redriven) = app.call(Method::POST, &retry, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{redriven}");
    assert_eq!(redriven["state"], "pending");
    let (status, _) = app.call(Method::POST, &retry, None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Acknowledge only: maxEvents 0 hands nothing out.
    let ack_only = json!({"maxEvents": 0, "returnImmediately": true, "ack": [third_jti]});
    let answer = poll(&app, &token, &id, ack_only).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["sets"], json!({}));
    // The re-driven row comes back with its jti.
    let again = poll(&app, &token, &id, json!({"returnImmediately": true})).await;
    assert!(again.body["sets"].get(&jtis[1]).is_some(), "{}", again.body);

    for bad in [
        json!({"maxEvents": -1}),
        json!({"ack": "x"}),
        json!({"setErrs": {"j": 1}}),
    ] {
        let refused = poll(&app, &token, &id, bad).await;
        assert_ssf_error(&refused, StatusCode::BAD_REQUEST);
    }
    let bad_token = send(
        &app,
        Method::POST,
        &format!("/ssf/poll/{id}"),
        Some("nope"),
        Some("{"),
    )
    .await;
    assert_ssf_error(&bad_token, StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_waits_out_its_time_when_nothing_comes() {
    let app = app().await;
    let (token, id) = poll_stream(&app, "rp-a").await;
    let started = tokio::time::Instant::now();
    let answer = poll(&app, &token, &id, json!({})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, json!({"sets": {}}));
    assert!(
        started.elapsed() >= Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_is_woken_by_a_new_set() {
    let app = Arc::new(app().await);
    let (token, id) = poll_stream(&app, "rp-a").await;
    let started = tokio::time::Instant::now();
    let waiting = {
        let (app, token, id) = (app.clone(), token.clone(), id.clone());
        tokio::spawn(async move { poll(&app, &token, &id, json!({"maxEvents": 10})).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    let body = json!({"stream_id": id, "state": "wake"});
    let verify = ssf(&app, Method::POST, "/ssf/verify", &token, body).await;
    assert_eq!(verify.status, StatusCode::NO_CONTENT);
    let answer = waiting.await.unwrap();
    assert_eq!(answer.body["sets"].as_object().unwrap().len(), 1);
    // Woken by the signal, not by the 1 s re-check.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_operator_sets_a_stream_status_and_the_receiver_is_told() {
    let app = app().await;
    let (token, id) = poll_stream(&app, "rp-a").await;
    let path = format!("/api/v2/ssf-streams/{id}/status");
    let (status, view) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"status": "paused", "reason": "maintenance"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "paused");
    assert_eq!(view["status_reason"], "maintenance");
    let (_, rows) = app
        .call(
            Method::GET,
            "/api/v2/ssf-deliveries?kind=stream_updated",
            None,
        )
        .await;
    assert_eq!(rows["deliveries"].as_array().unwrap().len(), 1);
    // The same status again announces nothing.
    app.call(Method::POST, &path, Some(json!({"status": "paused"})))
        .await;
    let (_, rows) = app
        .call(
            Method::GET,
            "/api/v2/ssf-deliveries?kind=stream_updated",
            None,
        )
        .await;
    assert_eq!(rows["deliveries"].as_array().unwrap().len(), 1);
    // A paused stream still hands out its stream-updated SET.
    let answer = poll(&app, &token, &id, json!({"returnImmediately": true})).await;
    assert_eq!(
        answer.body["sets"].as_object().unwrap().len(),
        1,
        "{}",
        answer.body
    );
    let status_path = format!("/ssf/status?stream_id={id}");
    let read = ssf(&app, Method::GET, &status_path, &token, Value::Null).await;
    assert_eq!(read.body["status"], "paused");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v2/ssf-streams/sst_nope/status",
            Some(json!({"status": "enabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(Method::GET, "/api/v2/ssf-deliveries?kind=nope", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_is_woken_by_a_session_end() {
    let app = Arc::new(app().await);
    let (token, id) = poll_stream(&app, "rp-a").await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v2/sessions",
            Some(json!({"id": "s-1", "user_id": "u-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let started = tokio::time::Instant::now();
    let waiting = {
        let (app, token, id) = (app.clone(), token.clone(), id.clone());
        tokio::spawn(async move { poll(&app, &token, &id, json!({})).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    let (status, _) = app
        .call(Method::POST, "/api/v2/sessions/s-1/revoke", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let answer = waiting.await.unwrap();
    let sets = answer.body["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 1, "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (_, rows) = app
        .call(
            Method::GET,
            "/api/v2/ssf-deliveries?kind=session_revoked",
            None,
        )
        .await;
    let row = &rows["deliveries"][0];
    assert_eq!(row["state"], "in_flight");
    assert!(row["txn"].is_string());
    assert!(sets.contains_key(row["jti"].as_str().unwrap()));
}

#[tokio::test]
async fn a_logout_event_names_its_initiating_entity_or_is_refused_unchanged() {
    let app = app().await;
    poll_stream(&app, "audit").await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v2/sessions",
            Some(json!({"id": "s-1", "user_id": "u-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for bad in [json!("robot"), json!("Admin"), json!(1), json!(null)] {
        let body = json!({"session_id": "s-1", "initiator": "rp-logout",
                          "initiating_entity": bad});
        let (status, reply) = app
            .call(Method::POST, "/api/v2/logout-events", Some(body.clone()))
            .await;
        if bad.is_null() {
            continue;
        }
        crate::support::app::assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        let (_, session) = app.call(Method::GET, "/api/v2/sessions/s-1", None).await;
        assert!(session["ended_at"].is_null(), "{body}: {session}");
    }
    let (_, session) = app.call(Method::GET, "/api/v2/sessions/s-1", None).await;
    assert!(
        session["ended_at"].is_string(),
        "null is absent: the initiator's entity is used"
    );
    app.call(
        Method::POST,
        "/api/v2/sessions",
        Some(json!({"id": "s-2", "user_id": "u-1"})),
    )
    .await;
    let body = json!({"user_id": "u-1", "initiator": "rp-logout", "initiating_entity": "system"});
    let (status, reply) = app
        .call(Method::POST, "/api/v2/logout-events", Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let (_, rows) = app
        .call(
            Method::GET,
            "/api/v2/ssf-deliveries?kind=session_revoked",
            None,
        )
        .await;
    assert_eq!(rows["deliveries"].as_array().unwrap().len(), 2, "{rows}");
}
