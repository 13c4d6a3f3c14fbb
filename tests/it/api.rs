//! The management API through the router: every route, every refusal, and that a refusal
//! changes nothing.

use crate::support::app::{API_TOKEN, TestApp, assert_auth0_error};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

const RP_URL: &str = "https://rp.example.test/backchannel?tenant=a";

/// Registration fields that ask for Auth0's default: `custom` with no extra initiators, so
/// only `rp-logout` and `idp-logout` reach the client.
static AUTH0_DEFAULT_INITIATORS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({ "oidc_logout": { "backchannel_logout_urls": [RP_URL],
        "backchannel_logout_initiators": { "mode": "custom", "selected_initiators": [] } } })
});

async fn client(app: &TestApp, id: &str, extra: Value) -> Value {
    let mut body = json!({
        "client_id": id,
        "name": format!("RP {id}"),
        "oidc_logout": { "backchannel_logout_urls": [RP_URL] },
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let (status, body) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn session(app: &TestApp, id: &str, clients: &[&str], meta: Value) -> Value {
    let clients: Vec<Value> = clients.iter().map(|c| json!({ "client_id": c })).collect();
    let body =
        json!({ "id": id, "user_id": "auth0|u1", "clients": clients, "session_metadata": meta });
    let (status, body) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn management_routes_require_the_bearer_token() {
    let app = TestApp::memory().await;
    let routes = [
        (Method::GET, "/api/v2/clients"),
        (Method::POST, "/api/v2/clients"),
        (Method::GET, "/api/v2/clients/x"),
        (Method::POST, "/api/v2/sessions"),
        (Method::GET, "/api/v2/sessions/x"),
        (Method::DELETE, "/api/v2/sessions/x"),
        (Method::GET, "/api/v2/users/u/sessions"),
        (Method::POST, "/api/v2/logout-events"),
        (Method::GET, "/api/v2/logout-deliveries"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong"), Some("")] {
            let (status, headers, body) = app.raw(method.clone(), path, token, None, None).await;
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_auth0_error(status, &body, StatusCode::UNAUTHORIZED);
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }
    let (status, _, _) = app
        .raw(Method::GET, "/api/v2/clients", Some(API_TOKEN), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn discovery_and_jwks_are_public() {
    let app = TestApp::memory().await;
    let (status, _, body) = app
        .raw(
            Method::GET,
            "/.well-known/openid-configuration",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["issuer"], "https://idp.test");
    assert_eq!(doc["jwks_uri"], "https://idp.test/.well-known/jwks.json");
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256", "PS256", "ES256", "EdDSA"])
    );
    let (status, _, body) = app
        .raw(Method::GET, "/.well-known/jwks.json", None, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let jwks: Value = serde_json::from_slice(&body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    // An empty set would pass the check below: the app has the four fixture keys active.
    assert_eq!(keys.len(), 4, "{jwks}");
    for key in keys {
        assert!(key["kid"].is_string() && key["kty"].is_string(), "{key}");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "no private members: {key}");
        }
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, _) = app.raw(Method::GET, path, None, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn client_registration_defaults_to_all_mode() {
    let app = TestApp::memory().await;
    let body = client(&app, "rp1", json!({})).await;
    let logout = &body["oidc_logout"];
    assert_eq!(logout["backchannel_logout_urls"], json!([RP_URL]));
    assert_eq!(
        logout["backchannel_logout_initiators"],
        json!({ "mode": "all", "selected_initiators": [] })
    );
    assert_eq!(
        logout["backchannel_logout_session_metadata"]["include"],
        false
    );
    assert_eq!(body["logout_token_typ"], "logout+jwt");
    assert_eq!(body["id_token_signed_response_alg"], "RS256");
    assert_eq!(get(&app, "/api/v2/clients/rp1").await, body);
    let list = get(&app, "/api/v2/clients").await;
    assert_eq!(list["clients"][0]["client_id"], "rp1");
    assert_eq!(list["next"], Value::Null);
}

#[tokio::test]
async fn client_refusals_are_400_in_auth0_shape_and_store_nothing() {
    let app = TestApp::over(logoutd_core::open_store("memory://").await.unwrap(), false);
    let bad = [
        json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": ["http://rp.example.test/bc"] } }),
        json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": ["https://127.0.0.1/bc"] } }),
        json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": ["https://rp.example.test/bc#f"] } }),
        json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": ["not a url"] } }),
        json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": [RP_URL, "https://b.example.test/"] } }),
        json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": [RP_URL],
            "backchannel_logout_initiators": { "mode": "custom", "selected_initiators": ["coffee-break"] } } }),
        json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": [RP_URL],
            "backchannel_logout_initiators": { "mode": "some" } } }),
        json!({ "name": 5 }),
        json!({ "name": "x", "unknown_field": true }),
        json!({ "name": "x", "logout_token_typ": "jwt+logout" }),
        json!({ "name": "x", "id_token_signed_response_alg": "HS256" }),
        json!({ "oidc_logout": { "backchannel_logout_urls": [RP_URL] } }),
        json!([1, 2]),
    ];
    for body in bad {
        let (status, reply) = app
            .call(Method::POST, "/api/v2/clients", Some(body.clone()))
            .await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    }
    let (status, _, body) = app
        .raw(
            Method::POST,
            "/api/v2/clients",
            Some(API_TOKEN),
            Some("application/json"),
            Some(b"{\"name\":".to_vec()),
        )
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/api/v2/clients").await["clients"], json!([]));
}

#[tokio::test]
async fn oversized_bodies_are_413_in_auth0_shape() {
    let app = TestApp::memory().await;
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    let (status, _, body) = app
        .raw(
            Method::POST,
            "/api/v2/clients",
            Some(API_TOKEN),
            Some("application/json"),
            Some(huge.into_bytes()),
        )
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_auth0_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(get(&app, "/api/v2/clients").await["clients"], json!([]));
}

#[tokio::test]
async fn client_update_pause_resume_and_delete() {
    let app = TestApp::memory().await;
    client(&app, "rp1", json!({})).await;
    let patch = json!({ "oidc_logout": { "backchannel_logout_session_metadata": { "include": true } },
        "logout_token_typ": "JWT" });
    let (status, body) = app
        .call(Method::PATCH, "/api/v2/clients/rp1", Some(patch))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["oidc_logout"]["backchannel_logout_session_metadata"]["include"],
        true
    );
    assert_eq!(
        body["oidc_logout"]["backchannel_logout_urls"],
        json!([RP_URL]),
        "URL kept"
    );
    assert_eq!(body["logout_token_typ"], "JWT");
    let (status, body) = app
        .call(Method::POST, "/api/v2/clients/rp1/pause", None)
        .await;
    assert_eq!((status, &body["paused"]), (StatusCode::OK, &json!(true)));
    let (status, body) = app
        .call(Method::POST, "/api/v2/clients/rp1/resume", None)
        .await;
    assert_eq!((status, &body["paused"]), (StatusCode::OK, &json!(false)));
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v2/clients/rp1",
            Some(json!({ "client_id": "other" })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, _) = app.call(Method::DELETE, "/api/v2/clients/rp1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, path) in [
        (Method::GET, "/api/v2/clients/rp1"),
        (Method::DELETE, "/api/v2/clients/rp1"),
        (Method::POST, "/api/v2/clients/rp1/pause"),
    ] {
        let (status, body) = app.call(method, path, None).await;
        assert_auth0_error(status, &body, StatusCode::NOT_FOUND);
    }
    client(&app, "dup", json!({})).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v2/clients",
            Some(json!({ "client_id": "dup", "name": "again" })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::CONFLICT);
}

#[tokio::test]
async fn session_round_trip_uses_auth0_field_names() {
    let app = TestApp::memory().await;
    client(&app, "rp1", json!({})).await;
    let body = json!({
        "user_id": "auth0|u1",
        "clients": [{ "client_id": "rp1" }],
        "session_metadata": { "tenant": "acme", "日本": "x" },
    });
    let (status, reply) = app
        .call(Method::POST, "/api/v2/sessions", Some(body.clone()))
        .await;
    assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    let mut ok = body;
    ok["session_metadata"] = json!({ "tenant": "日本" });
    ok["device"] = json!({ "initial_ip": "203.0.113.9", "initial_user_agent": "UA" });
    ok["expires_at"] = json!("2026-01-03T00:00:00Z");
    let (status, created) = app.call(Method::POST, "/api/v2/sessions", Some(ok)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    assert!(id.len() >= 22, "generated ids carry 128 bits");
    for field in [
        "id",
        "user_id",
        "created_at",
        "updated_at",
        "authenticated_at",
        "idle_expires_at",
        "expires_at",
        "last_interacted_at",
        "device",
        "clients",
        "session_metadata",
    ] {
        assert!(created.get(field).is_some(), "missing {field}: {created}");
    }
    assert_eq!(created["clients"], json!([{ "client_id": "rp1" }]));
    assert_eq!(created["device"]["initial_ip"], "203.0.113.9");
    assert_eq!(get(&app, &format!("/api/v2/sessions/{id}")).await, created);
}

#[tokio::test]
async fn metadata_rules_refuse_with_400_and_change_nothing() {
    let app = TestApp::memory().await;
    client(&app, "rp1", json!({})).await;
    let before = session(&app, "s1", &["rp1"], json!({ "a": "1" })).await;
    let many: serde_json::Map<String, Value> =
        (0..26).map(|i| (format!("k{i}"), json!("v"))).collect();
    let bad_replacements = [
        Value::Object(many),
        json!({ "bad key": "v" }),
        json!({ "": "v" }),
        json!({ "k".repeat(256): "v" }),
        json!({ "k": "v".repeat(256) }),
        json!({ "k": "日".repeat(256) }),
        json!({ "k": { "nested": "v" } }),
        json!({ "k": 1 }),
        json!({ "k": null }),
        json!(["v"]),
        json!("flat"),
    ];
    for meta in bad_replacements {
        let (status, body) = app
            .call(
                Method::PATCH,
                "/api/v2/sessions/s1",
                Some(json!({ "session_metadata": meta })),
            )
            .await;
        assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    }
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k",
            Some(json!({ "value": 7 })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k",
            Some(json!({ "value": "x".repeat(256) })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/v2/sessions/s1/metadata/bad%20key",
            Some(json!({ "value": "v" })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v2/sessions/s1",
            Some(json!({ "user_id": "other" })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&app, "/api/v2/sessions/s1").await,
        before,
        "refusals changed nothing"
    );
}

#[tokio::test]
async fn metadata_operations_set_delete_replace_and_evict() {
    let app = TestApp::memory().await;
    session(&app, "s1", &[], json!({ "a": "1" })).await;
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/v2/sessions/s1/metadata/b",
            Some(json!({ "value": "2" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["session_metadata"], json!({ "a": "1", "b": "2" }));
    let (_, body) = app
        .call(Method::DELETE, "/api/v2/sessions/s1/metadata/a", None)
        .await;
    assert_eq!(body["session_metadata"], json!({ "b": "2" }));
    let (_, body) = app
        .call(
            Method::PATCH,
            "/api/v2/sessions/s1",
            Some(json!({ "session_metadata": { "c": "3" } })),
        )
        .await;
    assert_eq!(body["session_metadata"], json!({ "c": "3" }));
    let (_, body) = app
        .call(
            Method::PATCH,
            "/api/v2/sessions/s1",
            Some(json!({ "session_metadata": null })),
        )
        .await;
    assert_eq!(body["session_metadata"], json!({}));
    app.call(
        Method::PUT,
        "/api/v2/sessions/s1/metadata/d",
        Some(json!({ "value": "4" })),
    )
    .await;
    let (status, body) = app
        .call(Method::DELETE, "/api/v2/sessions/s1/metadata", None)
        .await;
    assert_eq!(
        (status, &body["session_metadata"]),
        (StatusCode::OK, &json!({}))
    );
    let full: serde_json::Map<String, Value> =
        (0..25).map(|i| (format!("k{i}"), json!("v"))).collect();
    app.call(
        Method::PATCH,
        "/api/v2/sessions/s1",
        Some(json!({ "session_metadata": full })),
    )
    .await;
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/v2/sessions/s1/metadata/extra",
            Some(json!({ "value": "v" })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_client_in_a_session_is_400_and_nothing_is_stored() {
    let app = TestApp::memory().await;
    let body = json!({ "id": "s1", "user_id": "u", "clients": [{ "client_id": "ghost" }] });
    let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
    assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    let (status, reply) = app.call(Method::GET, "/api/v2/sessions/s1", None).await;
    assert_auth0_error(status, &reply, StatusCode::NOT_FOUND);
    session(&app, "s2", &[], json!({})).await;
    let (status, reply) = app
        .call(
            Method::POST,
            "/api/v2/sessions/s2/clients",
            Some(json!({ "client_id": "ghost" })),
        )
        .await;
    assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/api/v2/sessions/s2").await["clients"], json!([]));
}

#[tokio::test]
async fn clients_join_sessions_once() {
    let app = TestApp::memory().await;
    client(&app, "rp1", json!({})).await;
    client(&app, "rp2", json!({})).await;
    session(&app, "s1", &["rp1"], json!({})).await;
    for id in ["rp2", "rp2", "rp1"] {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/v2/sessions/s1/clients",
                Some(json!({ "client_id": id })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let body = get(&app, "/api/v2/sessions/s1").await;
    assert_eq!(
        body["clients"],
        json!([{ "client_id": "rp1" }, { "client_id": "rp2" }])
    );
}

#[tokio::test]
async fn user_sessions_are_listed_with_cursor_paging() {
    let app = TestApp::memory().await;
    for i in 0..5 {
        session(&app, &format!("s{i}"), &[], json!({})).await;
    }
    let first = get(&app, "/api/v2/users/auth0%7Cu1/sessions?take=2").await;
    assert_eq!(first["sessions"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let second = get(
        &app,
        &format!("/api/v2/users/auth0%7Cu1/sessions?take=2&from={next}"),
    )
    .await;
    assert_eq!(second["sessions"][0]["id"], "s2");
    for bad in ["take=0", "take=1000", "take=x", "bogus=1"] {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/v2/users/u/sessions?{bad}"),
                None,
            )
            .await;
        assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn ending_sessions_answers_202_and_is_idempotent() {
    let app = TestApp::memory().await;
    client(&app, "rp1", AUTH0_DEFAULT_INITIATORS.clone()).await;
    session(&app, "s1", &["rp1"], json!({})).await;
    session(&app, "s2", &["rp1"], json!({})).await;
    let (status, body) = app.call(Method::DELETE, "/api/v2/sessions/s1", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["deliveries"], 0, "custom mode skips session-revoked");
    let ended = get(&app, "/api/v2/sessions/s1").await;
    assert!(ended["ended_at"].is_string());
    let (status, body) = app
        .call(Method::POST, "/api/v2/sessions/s1/revoke", None)
        .await;
    assert_eq!(
        (status, &body["deliveries"]),
        (StatusCode::ACCEPTED, &json!(0))
    );
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v2/logout-events",
            Some(json!({ "session_id": "s2", "initiator": "rp-logout" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["deliveries"], 1);
    assert!(body["event_id"].is_string());
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v2/logout-events",
            Some(json!({ "session_id": "s2", "initiator": "rp-logout" })),
        )
        .await;
    assert_eq!(
        (status, &body["deliveries"]),
        (StatusCode::ACCEPTED, &json!(0))
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v2/sessions/s2",
            Some(json!({ "session_metadata": {} })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::CONFLICT);
    let list = get(&app, "/api/v2/logout-deliveries?session_id=s2").await;
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ending_unknown_sessions_is_404_and_bad_events_are_400() {
    let app = TestApp::memory().await;
    for (method, path) in [
        (Method::DELETE, "/api/v2/sessions/nope"),
        (Method::POST, "/api/v2/sessions/nope/revoke"),
    ] {
        let (status, body) = app.call(method, path, None).await;
        assert_auth0_error(status, &body, StatusCode::NOT_FOUND);
    }
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v2/logout-events",
            Some(json!({ "session_id": "nope", "initiator": "idp-logout" })),
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::NOT_FOUND);
    for event in [
        json!({ "initiator": "idp-logout" }),
        json!({ "session_id": "a", "user_id": "b", "initiator": "idp-logout" }),
        json!({ "session_id": "a", "initiator": "lunch" }),
        json!({ "session_id": "a" }),
    ] {
        let (status, body) = app
            .call(Method::POST, "/api/v2/logout-events", Some(event))
            .await;
        assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    }
    let (status, body) = app
        .call(Method::DELETE, "/api/v2/users/nobody/sessions", None)
        .await;
    assert_eq!(
        (status, &body["deliveries"]),
        (StatusCode::ACCEPTED, &json!(0))
    );
}

#[tokio::test]
async fn delivery_status_routes() {
    let app = TestApp::memory().await;
    client(
        &app,
        "rp1",
        json!({ "oidc_logout": { "backchannel_logout_urls": [RP_URL],
        "backchannel_logout_initiators": { "mode": "all" } } }),
    )
    .await;
    session(&app, "s1", &["rp1"], json!({})).await;
    app.call(Method::DELETE, "/api/v2/users/auth0%7Cu1/sessions", None)
        .await;
    let list = get(
        &app,
        "/api/v2/logout-deliveries?state=pending&client_id=rp1",
    )
    .await;
    let delivery = &list["deliveries"][0];
    assert_eq!(delivery["initiator"], "session-revoked");
    assert_eq!(delivery["state"], "pending");
    assert_eq!(delivery["user_id"], "auth0|u1");
    let id = delivery["id"].as_str().unwrap();
    let detail = get(&app, &format!("/api/v2/logout-deliveries/{id}")).await;
    assert_eq!(detail["attempt_history"], json!([]));
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v2/logout-deliveries/{id}/retry"),
            None,
        )
        .await;
    assert_auth0_error(status, &body, StatusCode::CONFLICT);
    let (status, body) = app
        .call(Method::GET, "/api/v2/logout-deliveries/nope", None)
        .await;
    assert_auth0_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .call(Method::GET, "/api/v2/logout-deliveries?state=lost", None)
        .await;
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, _) = app.call(Method::DELETE, "/api/v2/clients/rp1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let detail = get(&app, &format!("/api/v2/logout-deliveries/{id}")).await;
    assert_eq!(
        detail["state"], "cancelled",
        "deleting the client cancels its rows"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_auth0_shape() {
    let app = TestApp::memory().await;
    let (status, body) = app.call(Method::GET, "/api/v2/nothing-here", None).await;
    assert_auth0_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app.call(Method::PUT, "/api/v2/clients", None).await;
    assert_auth0_error(status, &body, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, body) = app
        .raw(
            Method::POST,
            "/api/v2/clients",
            Some(API_TOKEN),
            Some("text/plain"),
            Some(b"{}".to_vec()),
        )
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_auth0_error(status, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn data_written_through_the_api_survives_a_restart_on_the_same_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/logoutd.db", dir.path().display());
    let (client_body, session_body) = {
        let app = TestApp::over(logoutd_core::open_store(&url).await.unwrap(), false);
        let c = client(&app, "rp1", json!({ "logout_token_typ": "JWT" })).await;
        let s = session(
            &app,
            "s1",
            &["rp1"],
            json!({ "tenant": "acme", "lang": "日本語" }),
        )
        .await;
        (c, s)
    };
    let app = TestApp::over(logoutd_core::open_store(&url).await.unwrap(), false);
    assert_eq!(get(&app, "/api/v2/clients/rp1").await, client_body);
    assert_eq!(get(&app, "/api/v2/sessions/s1").await, session_body);
    let listed = get(&app, "/api/v2/users/auth0%7Cu1/sessions").await;
    assert_eq!(listed["sessions"], json!([session_body]));
}

#[tokio::test]
async fn special_purpose_addresses_and_hostile_client_ids_are_refused_at_registration() {
    let app = TestApp::over(logoutd_core::open_store("memory://").await.unwrap(), false);
    let urls = [
        "https://[2002:7f00:1::]/bc",
        "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/bc",
        "https://[fec0::1]/bc",
        "https://[64:ff9b:1::a00:1]/bc",
        "https://[64:ff9b::7f00:1]/bc",
        "https://[100::1]/bc",
        "https://[3fff::1]/bc",
        "https://[5f00::1]/bc",
        "https://192.88.99.1/bc",
        "https://192.31.196.1/bc",
        "https://0.1.2.3/bc",
    ];
    for url in urls {
        let body = json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": [url] } });
        let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert!(
            reply["message"]
                .as_str()
                .unwrap()
                .contains("backchannel_logout_urls"),
            "{url}: {reply}"
        );
    }
    for id in ["a\"b", "a\\b", "a b", "a,b", "a}b", "ü", "a\nb", ""] {
        let body = json!({ "client_id": id, "name": "x",
            "oidc_logout": { "backchannel_logout_urls": [RP_URL] } });
        let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert!(
            reply["message"].as_str().unwrap().contains("client_id"),
            "{id:?}: {reply}"
        );
    }
    assert_eq!(get(&app, "/api/v2/clients").await["clients"], json!([]));
    let ok = json!({ "client_id": "urn:example:rp-1.prod", "name": "x",
        "oidc_logout": { "backchannel_logout_urls": ["https://[2001:4860:4860::8888]/bc"] } });
    let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(ok)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}
