//! Who may read session metadata values: a token without the metadata grant sees every
//! metadata key with its value replaced by `[redacted]` on every route that answers with a
//! session, a token with the grant and the admin token see the values, writing metadata does
//! not depend on the grant, and `GET /api/v2/token-info` says which the calling token is.

use crate::support::app::{API_TOKEN, TestApp, assert_auth0_error};
use axum::http::{Method, StatusCode};
use logoutd_core::{Scope, TokenFile};
use serde_json::{Value, json};

/// What a value reads as without the grant.
const REDACTED: &str = "[redacted]";

/// Scoped tokens in a token file, and the app that reads it.
struct Tokens {
    app: TestApp,
    read: String,
    read_granted: String,
    operate: String,
    operate_granted: String,
    _dir: tempfile::TempDir,
}

async fn tokens() -> Tokens {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-tokens.json");
    let mut file = TokenFile::default();
    let now = chrono::Utc::now();
    let read = file.add("dashboard", Scope::Read, false, now);
    let read_granted = file.add("support", Scope::Read, true, now);
    let operate = file.add("on-call", Scope::Operate, false, now);
    let operate_granted = file.add("operator", Scope::Operate, true, now);
    file.save(&path).unwrap();
    Tokens {
        app: TestApp::with_tokens(path).await,
        read,
        read_granted,
        operate,
        operate_granted,
        _dir: dir,
    }
}

/// `method path` with `token` and an optional JSON body: the status and the JSON answer.
async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let (status, _, body) = app
        .raw(method, path, Some(token), Some("application/json"), bytes)
        .await;
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, value)
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let (status, body) = call(app, token, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// The client `rp` and the sessions `s1` (metadata) and `s2` (none) of user `u1`.
async fn seed(app: &TestApp) {
    let body = json!({ "client_id": "rp", "name": "rp",
        "oidc_logout": { "backchannel_logout_urls": ["https://rp.example.test/bc"] } });
    let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    for (id, meta) in [
        (
            "s1",
            json!({ "email": "alice@example.test", "tenant": "acme" }),
        ),
        ("s2", Value::Null),
    ] {
        let body = json!({ "id": id, "user_id": "u1", "clients": [{ "client_id": "rp" }],
            "session_metadata": meta });
        let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
}

/// `session` with every metadata value redacted, and nothing else changed.
fn redacted(session: &Value) -> Value {
    let mut out = session.clone();
    if let Some(meta) = out["session_metadata"].as_object_mut() {
        for value in meta.values_mut() {
            *value = json!(REDACTED);
        }
    }
    out
}

/// The routes that answer with sessions, as `token` reads them.
async fn sessions_seen_by(app: &TestApp, token: &str) -> Vec<Value> {
    let one = get(app, token, "/api/v2/sessions/s1").await;
    let none = get(app, token, "/api/v2/sessions/s2").await;
    let page = get(app, token, "/api/v2/users/u1/sessions").await;
    let mut out = vec![one, none];
    out.extend(page["sessions"].as_array().unwrap().iter().cloned());
    out
}

#[tokio::test]
async fn without_the_grant_metadata_keys_show_and_values_are_redacted_on_every_route() {
    let t = tokens().await;
    seed(&t.app).await;
    let admin = sessions_seen_by(&t.app, API_TOKEN).await;
    assert_eq!(
        admin[0]["session_metadata"],
        json!({ "email": "alice@example.test", "tenant": "acme" })
    );
    assert_eq!(admin.len(), 4, "{admin:?}");
    assert_eq!(
        admin[2], admin[0],
        "the user's listing shows s1 as GET does"
    );
    let expected: Vec<Value> = admin.iter().map(redacted).collect();
    assert_eq!(
        expected[0]["session_metadata"],
        json!({ "email": REDACTED, "tenant": REDACTED })
    );
    assert_eq!(
        expected[1]["session_metadata"],
        json!({}),
        "no keys: nothing to redact"
    );
    for token in [&t.read, &t.operate] {
        assert_eq!(sessions_seen_by(&t.app, token).await, expected);
    }
    for token in [&t.read_granted, &t.operate_granted] {
        assert_eq!(sessions_seen_by(&t.app, token).await, admin);
    }

    // An ended session keeps its metadata, and the same rule.
    let (status, reply) = t
        .app
        .call(Method::DELETE, "/api/v2/sessions/s1", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let ended = get(&t.app, API_TOKEN, "/api/v2/sessions/s1").await;
    assert!(ended["ended_at"].is_string(), "{ended}");
    assert_eq!(
        get(&t.app, &t.read, "/api/v2/sessions/s1").await,
        redacted(&ended)
    );
    assert_eq!(
        get(&t.app, &t.read_granted, "/api/v2/sessions/s1").await,
        ended
    );
}

#[tokio::test]
async fn writing_metadata_does_not_depend_on_the_grant_and_needs_admin() {
    let t = tokens().await;
    seed(&t.app).await;
    // The grant is about reading: it does not let a read or operate token write.
    for token in [&t.read, &t.read_granted, &t.operate, &t.operate_granted] {
        for (method, path, body) in [
            (
                Method::PUT,
                "/api/v2/sessions/s1/metadata/tenant",
                Some(json!({ "value": "x" })),
            ),
            (
                Method::PATCH,
                "/api/v2/sessions/s1",
                Some(json!({ "session_metadata": {} })),
            ),
            (Method::DELETE, "/api/v2/sessions/s1/metadata/tenant", None),
            (Method::DELETE, "/api/v2/sessions/s1/metadata", None),
        ] {
            let (status, reply) = call(&t.app, token, method.clone(), path, body).await;
            assert_auth0_error(status, &reply, StatusCode::FORBIDDEN);
            assert_eq!(reply["errorCode"], "insufficient_scope", "{method} {path}");
        }
    }
    // The admin token writes as before and reads back what it wrote.
    let path = "/api/v2/sessions/s1/metadata/tenant";
    let (status, set) = t
        .app
        .call(Method::PUT, path, Some(json!({ "value": "globex" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["session_metadata"]["tenant"], "globex");
    let body = json!({ "session_metadata": { "plan": "gold" } });
    let (status, patched) = t
        .app
        .call(Method::PATCH, "/api/v2/sessions/s1", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["session_metadata"], json!({ "plan": "gold" }));
    let body = json!({ "id": "s3", "user_id": "u1", "session_metadata": { "k": "v" } });
    let (status, created) = t
        .app
        .call(Method::POST, "/api/v2/sessions", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["session_metadata"], json!({ "k": "v" }));
    // The readers see the change, each as their grant allows.
    let seen = get(&t.app, &t.read_granted, "/api/v2/sessions/s1").await;
    assert_eq!(seen["session_metadata"], json!({ "plan": "gold" }));
    let seen = get(&t.app, &t.read, "/api/v2/sessions/s1").await;
    assert_eq!(seen["session_metadata"], json!({ "plan": REDACTED }));
    let (status, evicted) = t
        .app
        .call(Method::DELETE, "/api/v2/sessions/s1/metadata", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{evicted}");
    assert_eq!(evicted["session_metadata"], json!({}));
}

#[tokio::test]
async fn token_info_answers_the_calling_token_s_scope_and_grant() {
    let t = tokens().await;
    for (token, scope, metadata) in [
        (t.read.as_str(), "read", false),
        (&t.read_granted, "read", true),
        (&t.operate, "operate", false),
        (&t.operate_granted, "operate", true),
        (API_TOKEN, "admin", true),
    ] {
        let info = get(&t.app, token, "/api/v2/token-info").await;
        assert_eq!(
            info,
            json!({ "scope": scope, "metadata": metadata }),
            "{scope}"
        );
    }
    let (status, _, body) = t
        .app
        .raw(Method::GET, "/api/v2/token-info", None, None, None)
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_auth0_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        &t.app,
        "not-a-token",
        Method::GET,
        "/api/v2/token-info",
        None,
    )
    .await;
    assert_auth0_error(status, &body, StatusCode::UNAUTHORIZED);
}
