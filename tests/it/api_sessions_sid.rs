//! Per-client `sid`s through the API: registered with a session's clients or when a client
//! joins, shown by GET and the user's session listing, refused when malformed.

use crate::support::app::{TestApp, assert_auth0_error};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

async fn register(app: &TestApp, id: &str) {
    let body = json!({ "client_id": id, "name": id,
        "oidc_logout": { "backchannel_logout_urls": ["https://rp.example.test/bc"] } });
    let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn join(app: &TestApp, session: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/api/v2/sessions/{session}/clients");
    app.call(Method::POST, &path, Some(body)).await
}

#[tokio::test]
async fn a_client_s_own_sid_is_stored_shown_and_replaced_by_a_later_join() {
    let app = TestApp::memory().await;
    for id in ["rp1", "rp2", "rp3"] {
        register(&app, id).await;
    }
    let body = json!({ "id": "s1", "user_id": "u1",
        "clients": [{ "client_id": "rp1", "sid": "op-sid-1" }, { "client_id": "rp2" }] });
    let (status, created) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let expected = json!([{ "client_id": "rp1", "sid": "op-sid-1" }, { "client_id": "rp2" }]);
    assert_eq!(created["clients"], expected, "sid omitted when not set");
    assert_eq!(get(&app, "/api/v2/sessions/s1").await["clients"], expected);

    let (status, joined) = join(&app, "s1", json!({ "client_id": "rp3", "sid": "a" })).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (_, again) = join(&app, "s1", json!({ "client_id": "rp3", "sid": "b" })).await;
    let (_, kept) = join(&app, "s1", json!({ "client_id": "rp3" })).await;
    let expected = json!([{ "client_id": "rp1", "sid": "op-sid-1" }, { "client_id": "rp2" },
        { "client_id": "rp3", "sid": "b" }]);
    assert_eq!(again["clients"], expected, "a later sid replaces the first");
    assert_eq!(kept["clients"], expected, "a join without sid keeps it");
    let listed = get(&app, "/api/v2/users/u1/sessions").await;
    assert_eq!(listed["sessions"][0]["clients"], expected);
}

#[tokio::test]
async fn a_bad_sid_is_400_in_auth0_shape_and_stores_nothing() {
    let app = TestApp::memory().await;
    register(&app, "rp1").await;
    let long = "x".repeat(256);
    for sid in [json!(""), json!(long), json!("a\nb"), json!(5), json!({})] {
        let body = json!({ "id": "s1", "user_id": "u1",
            "clients": [{ "client_id": "rp1", "sid": sid }] });
        let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert!(
            reply["message"].as_str().unwrap().contains("sid"),
            "{reply}"
        );
        let (status, _) = app.call(Method::GET, "/api/v2/sessions/s1", None).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "nothing stored for sid {sid}"
        );
    }
    let body = json!({ "id": "s1", "user_id": "u1", "clients": [{ "client_id": "rp1" }] });
    let (status, _) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    for sid in [json!(""), json!("a\u{7f}b"), json!(long)] {
        let (status, reply) = join(&app, "s1", json!({ "client_id": "rp1", "sid": sid })).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        get(&app, "/api/v2/sessions/s1").await["clients"],
        json!([{ "client_id": "rp1" }])
    );
}
