//! Refusal messages point at the fix: a wrong JSON body names the field and what it should
//! be (never a Rust type), and a refused RP URL names the flag that would allow it.

use crate::support::app::{TestApp, assert_auth0_error};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

/// Rust's words that serde would otherwise put in a message.
const RUST_WORDS: [&str; 12] = [
    "struct", "enum", "variant", "usize", "isize", "u64", "u32", "u16", "u8", "i64", "i32",
    "option",
];

/// Words of `text` that look like Rust type names: a capital after a small letter
/// (`ValueBody`), or a Rust keyword or primitive from [`RUST_WORDS`].
fn rust_names(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|word| {
            let camel = word
                .char_indices()
                .any(|(i, c)| c.is_uppercase() && word[..i].chars().any(char::is_lowercase));
            camel || RUST_WORDS.contains(word)
        })
        .map(str::to_owned)
        .collect()
}

async fn setup() -> TestApp {
    let app = TestApp::memory().await;
    let client = json!({ "client_id": "rp1", "name": "rp1",
        "oidc_logout": { "backchannel_logout_urls": ["https://rp.example.test/bc"] } });
    let (status, _) = app
        .call(Method::POST, "/api/v2/clients", Some(client))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let session = json!({ "id": "s1", "user_id": "u1", "clients": [{ "client_id": "rp1" }] });
    let (status, _) = app
        .call(Method::POST, "/api/v2/sessions", Some(session))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app
}

#[tokio::test]
async fn wrong_bodies_name_the_field_and_no_rust_type() {
    let app = setup().await;
    // (method, path, body, text the message must contain)
    let cases: Vec<(Method, &str, Value, &str)> = vec![
        (
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k",
            json!(5),
            "object with the field `value`",
        ),
        (
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k",
            json!({ "value": 5 }),
            "`value`",
        ),
        (
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k",
            json!({}),
            "missing field `value`",
        ),
        (
            Method::POST,
            "/api/v2/sessions/s1/clients",
            json!("rp1"),
            "`client_id`, `sid`",
        ),
        (
            Method::POST,
            "/api/v2/sessions/s1/clients",
            json!({ "client_id": 1 }),
            "`client_id`",
        ),
        (
            Method::PATCH,
            "/api/v2/sessions/s1",
            json!([]),
            "JSON object",
        ),
        (
            Method::POST,
            "/api/v2/sessions",
            json!({ "user_id": "u", "clients": [{ "client_id": "rp1", "sid": 5 }] }),
            "`clients[0].sid`",
        ),
        (
            Method::POST,
            "/api/v2/sessions",
            json!({ "user_id": "u", "device": "x" }),
            "`device`",
        ),
        (
            Method::POST,
            "/api/v2/sessions",
            json!({ "user_id": "u", "clients": {} }),
            "`clients`",
        ),
        (Method::POST, "/api/v2/sessions", json!(true), "`user_id`"),
        (
            Method::POST,
            "/api/v2/clients",
            json!({ "name": "x", "oidc_logout": "y" }),
            "`oidc_logout`",
        ),
        (
            Method::POST,
            "/api/v2/clients",
            json!({ "name": "x", "oidc_logout": { "backchannel_logout_initiators": { "mode": 5 } } }),
            "mode",
        ),
        (
            Method::POST,
            "/api/v2/clients",
            json!({ "name": "x", "logout_token_typ": 5 }),
            "logout_token_typ",
        ),
        (
            Method::PATCH,
            "/api/v2/clients/rp1",
            json!({ "name": ["x"] }),
            "`name`",
        ),
        (
            Method::PATCH,
            "/api/v2/clients/rp1",
            json!(7),
            "`oidc_logout`",
        ),
        (
            Method::POST,
            "/api/v2/logout-events",
            json!([]),
            "`initiator`",
        ),
        (
            Method::POST,
            "/api/v2/logout-events",
            json!({ "session_id": "s1", "initiator": 5 }),
            "initiator",
        ),
        (
            Method::POST,
            "/api/v2/logout-events",
            json!({ "session_id": "s1", "initiator": "lunch" }),
            "`rp-logout`",
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, reply) = app.call(method.clone(), path, Some(body.clone())).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{method} {path} {body}: {message:?} should contain {expected:?}"
        );
        assert_eq!(
            rust_names(message),
            Vec::<String>::new(),
            "{method} {path} {body}: {message:?}"
        );
    }
}

#[tokio::test]
async fn the_rust_name_check_catches_what_serde_says_by_default() {
    assert_eq!(
        rust_names("invalid type: integer `5`, expected struct ValueBody"),
        ["struct", "ValueBody"]
    );
    assert_eq!(rust_names("expected usize"), ["usize"]);
    assert!(rust_names("expected a JSON object with the field `value`").is_empty());
}

#[tokio::test]
async fn refused_rp_urls_name_the_flag_that_allows_them() {
    let app = TestApp::over(logoutd_core::open_store("memory://").await.unwrap(), false);
    for url in [
        "http://rp.example.test/bc",
        "https://127.0.0.1/bc",
        "https://10.0.0.8/bc",
        "https://localhost/bc",
    ] {
        let body = json!({ "name": "x", "oidc_logout": { "backchannel_logout_urls": [url] } });
        let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.contains("--allow-insecure-rp-urls"),
            "{url}: {message}"
        );
    }
    let (_, list) = app.call(Method::GET, "/api/v2/clients", None).await;
    assert_eq!(list["clients"], json!([]));
}
