//! What every end route answers: the deliveries written, and the participating clients it
//! skipped (and why) or holds while they are paused.

use crate::support::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

const URL: &str = "https://rp.example.test/bc";

async fn register(app: &TestApp, id: &str, logout: Value) {
    let body = json!({ "client_id": id, "name": id, "oidc_logout": logout });
    let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

/// `all` (default), `auth0` (Auth0's default), `nourl`, `paused` and `gone` (deleted).
async fn clients(app: &TestApp) {
    register(app, "all", json!({ "backchannel_logout_urls": [URL] })).await;
    register(
        app,
        "auth0",
        json!({ "backchannel_logout_urls": [URL],
        "backchannel_logout_initiators": { "mode": "custom", "selected_initiators": [] } }),
    )
    .await;
    register(app, "nourl", json!({ "backchannel_logout_urls": [] })).await;
    register(app, "paused", json!({ "backchannel_logout_urls": [URL] })).await;
    register(app, "gone", json!({ "backchannel_logout_urls": [URL] })).await;
    let (status, _) = app
        .call(Method::POST, "/api/v2/clients/paused/pause", None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn sessions(app: &TestApp, ids: &[&str], user: &str) {
    let joined: Vec<Value> = ["all", "auth0", "nourl", "paused", "gone"]
        .iter()
        .map(|c| json!({ "client_id": c }))
        .collect();
    for id in ids {
        let body = json!({ "id": id, "user_id": user, "clients": joined });
        let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
}

async fn delete_gone(app: &TestApp) {
    let (status, _) = app.call(Method::DELETE, "/api/v2/clients/gone", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// The skipped and held entries of one session's end with an initiator `auth0` ignores.
fn one_session_outcome() -> (Value, Value) {
    (
        json!([
            { "client_id": "auth0", "reason": "not_subscribed" },
            { "client_id": "nourl", "reason": "no_url" },
            { "client_id": "gone", "reason": "unknown_client" },
        ]),
        json!([{ "client_id": "paused", "reason": "paused" }]),
    )
}

#[tokio::test]
async fn single_session_ends_name_each_skipped_and_held_client() {
    let app = TestApp::memory().await;
    clients(&app).await;
    sessions(&app, &["s1", "s2", "s3"], "u1").await;
    delete_gone(&app).await;
    let (skipped, held) = one_session_outcome();
    let ends = [
        (Method::DELETE, "/api/v2/sessions/s1", None),
        (Method::POST, "/api/v2/sessions/s2/revoke", None),
        (
            Method::POST,
            "/api/v2/logout-events",
            Some(json!({ "session_id": "s3", "initiator": "password-changed" })),
        ),
    ];
    for (method, path, body) in ends {
        let (status, reply) = app.call(method, path, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {reply}");
        assert!(reply["event_id"].is_string());
        assert_eq!(reply["deliveries"], 2, "{path}: all, and paused held");
        assert_eq!(reply["skipped"], skipped, "{path}");
        assert_eq!(reply["held"], held, "{path}");
    }
    let (status, again) = app.call(Method::DELETE, "/api/v2/sessions/s1", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        (&again["deliveries"], &again["skipped"], &again["held"]),
        (&json!(0), &json!([]), &json!([])),
        "an ended session: nothing written, nothing skipped"
    );
}

#[tokio::test]
async fn user_wide_ends_list_each_client_and_reason_once_with_a_session() {
    let app = TestApp::memory().await;
    clients(&app).await;
    sessions(&app, &["a1", "a2", "a3"], "alice").await;
    sessions(&app, &["b1", "b2"], "bob").await;
    delete_gone(&app).await;
    let (status, reply) = app
        .call(Method::DELETE, "/api/v2/users/alice/sessions", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(reply["deliveries"], 6);
    assert_eq!(
        reply["skipped"],
        json!([
            { "client_id": "auth0", "reason": "not_subscribed", "session_id": "a1", "sessions": 3 },
            { "client_id": "nourl", "reason": "no_url", "session_id": "a1", "sessions": 3 },
            { "client_id": "gone", "reason": "unknown_client", "session_id": "a1", "sessions": 3 },
        ])
    );
    assert_eq!(
        reply["held"],
        json!([{ "client_id": "paused", "reason": "paused", "session_id": "a1", "sessions": 3 }])
    );
    let body = json!({ "user_id": "bob", "initiator": "rp-logout" });
    let (status, reply) = app
        .call(Method::POST, "/api/v2/logout-events", Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(
        reply["deliveries"], 6,
        "rp-logout reaches auth0-mode clients"
    );
    assert_eq!(
        reply["skipped"],
        json!([
            { "client_id": "nourl", "reason": "no_url", "session_id": "b1", "sessions": 2 },
            { "client_id": "gone", "reason": "unknown_client", "session_id": "b1", "sessions": 2 },
        ])
    );
}

#[tokio::test]
async fn a_client_registered_without_initiators_is_told_of_revocations() {
    let app = TestApp::memory().await;
    register(&app, "plain", json!({ "backchannel_logout_urls": [URL] })).await;
    let body = json!({ "id": "s1", "user_id": "u1", "clients": [{ "client_id": "plain" }] });
    let (status, _) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, reply) = app.call(Method::DELETE, "/api/v2/sessions/s1", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(reply["deliveries"], 1, "{reply}");
    assert_eq!(reply["skipped"], json!([]));
}
