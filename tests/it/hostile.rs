//! Hostile input through the management API: every refusal is a 400 in Auth0's shape and
//! changes nothing, on every backend.

use crate::store::{Backend, memory, postgres::postgres_fixture, sqlite_file};
use crate::support::app::{TestApp, assert_auth0_error};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

/// The API over each backend available here (PostgreSQL when it answers).
async fn apps() -> Vec<(&'static str, TestApp, Backend)> {
    let mut out = Vec::new();
    for (name, backend) in [("memory", memory().await), ("sqlite", sqlite_file().await)] {
        out.push((name, TestApp::over(backend.stores.clone(), true), backend));
    }
    if let Some(backend) = postgres_fixture().await {
        out.push((
            "postgres",
            TestApp::over(backend.stores.clone(), true),
            backend,
        ));
    }
    out
}

async fn setup(app: &TestApp) {
    let client = json!({"client_id": "rp1", "name": "RP 1",
        "oidc_logout": {"backchannel_logout_urls": ["https://rp.example.test/bc"]}});
    let (status, body) = app
        .call(Method::POST, "/api/v2/clients", Some(client))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = json!({"id": "s1", "user_id": "u1", "clients": [{"client_id": "rp1"}],
        "session_metadata": {"k": "v"}, "device": {"initial_user_agent": "UA"}});
    let (status, body) = app
        .call(Method::POST, "/api/v2/sessions", Some(session))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn session(app: &TestApp) -> Value {
    app.call(Method::GET, "/api/v2/sessions/s1", None).await.1
}

async fn refused(app: &TestApp, method: Method, path: &str, body: Value, what: &str) {
    let before = session(app).await;
    let (status, reply) = app.call(method, path, Some(body)).await;
    assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    assert_eq!(session(app).await, before, "{what} changed the session");
}

#[tokio::test]
async fn nul_characters_are_refused_alike_on_every_backend() {
    for (name, app, _guard) in apps().await {
        setup(&app).await;
        let nul = "a\u{0}b";
        let new_session = json!({"id": "s2", "user_id": "u1", "session_metadata": {"k": nul}});
        let (status, reply) = app
            .call(Method::POST, "/api/v2/sessions", Some(new_session))
            .await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        let ua = json!({"id": "s3", "user_id": "u1", "device": {"initial_user_agent": nul}});
        let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(ua)).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        for id in ["s2", "s3"] {
            let (status, _) = app
                .call(Method::GET, &format!("/api/v2/sessions/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {id} was stored");
        }
        refused(
            &app,
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k",
            json!({"value": nul}),
            "PUT with NUL",
        )
        .await;
        refused(
            &app,
            Method::PATCH,
            "/api/v2/sessions/s1",
            json!({"session_metadata": {"k": nul}}),
            "PATCH with NUL",
        )
        .await;
    }
}

#[tokio::test]
async fn duplicate_keys_are_refused_on_every_route() {
    let (_, app, _guard) = apps().await.into_iter().next().unwrap();
    setup(&app).await;
    let before = session(&app).await;
    let bodies: [(Method, &str, &str); 4] = [
        (
            Method::PATCH,
            "/api/v2/sessions/s1",
            r#"{"session_metadata":{"k":"1"},"session_metadata":{"k":"2"}}"#,
        ),
        (
            Method::PATCH,
            "/api/v2/sessions/s1",
            r#"{"session_metadata":{"k":"1","k":"2"}}"#,
        ),
        (
            Method::POST,
            "/api/v2/sessions",
            r#"{"id":"s9","user_id":"u1","session_metadata":{"k":"1","k":"2"}}"#,
        ),
        (
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k",
            r#"{"value":"1","value":"2"}"#,
        ),
    ];
    for (method, path, body) in bodies {
        let (status, _, reply) = app
            .raw(
                method.clone(),
                path,
                Some(crate::support::app::API_TOKEN),
                Some("application/json"),
                Some(body.as_bytes().to_vec()),
            )
            .await;
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert!(
            reply["message"].as_str().unwrap().contains("twice"),
            "{method} {path}: {reply}"
        );
    }
    assert_eq!(session(&app).await, before);
    let (status, _) = app.call(Method::GET, "/api/v2/sessions/s9", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `older_than_days` so large that the date arithmetic would overflow is a 400, not a
/// panic and a dropped connection.
#[tokio::test]
async fn prune_failed_refuses_an_age_past_the_calendar() {
    let app = TestApp::memory().await;
    for days in ["100000000", "4294967295", "36501"] {
        let path = format!("/api/v2/logout-deliveries/prune-failed?older_than_days={days}");
        let (status, reply) = app.call(Method::POST, &path, None).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    }
    let path = "/api/v2/logout-deliveries/prune-failed?older_than_days=36500";
    let (status, reply) = app.call(Method::POST, path, None).await;
    assert_eq!(
        (status, reply["deleted"].as_u64()),
        (StatusCode::OK, Some(0))
    );
}
