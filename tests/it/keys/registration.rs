//! Registering a client for an alg that has no active signing key is a 400, at POST and at a
//! PATCH that sets the alg, and stores nothing.

use crate::support::app::*;
use axum::http::{Method, StatusCode};
use logoutd_core::SigningAlg;
use serde_json::{Value, json};

const RP_URL: &str = "https://rp.example.test/bc";

fn body(id: &str, alg: Option<&str>) -> Value {
    let mut body = json!({ "client_id": id, "name": id,
        "oidc_logout": { "backchannel_logout_urls": [RP_URL] } });
    if let Some(alg) = alg {
        body["id_token_signed_response_alg"] = json!(alg);
    }
    body
}

/// A test app whose keys directory holds only an ES256 key.
async fn es256_only(dir: &std::path::Path) -> TestApp {
    let app = TestApp::memory().await;
    logoutd_core::generate_key(dir, SigningAlg::ES256, None, start_time()).unwrap();
    assert!(app.keys.reload(dir, start_time()).unwrap());
    assert_eq!(app.keys.current().active_algs(), vec![SigningAlg::ES256]);
    app
}

fn assert_no_key(status: StatusCode, reply: &Value, alg: &str) {
    assert_auth0_error(status, reply, StatusCode::BAD_REQUEST);
    assert_eq!(reply["errorCode"], "no_signing_key");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("no active {alg} signing key")),
        "{message}"
    );
    assert!(
        message.contains(&format!("logoutd keys generate --alg {alg}")),
        "{message}"
    );
    assert!(
        message.contains("(ES256)"),
        "names the algs that have a key: {message}"
    );
}

#[tokio::test]
async fn registration_without_a_key_for_the_alg_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = es256_only(tmp.path()).await;
    for (id, alg, named) in [
        ("rp-default", None, "RS256"),
        ("rp-ps", Some("PS256"), "PS256"),
    ] {
        let (status, reply) = app
            .call(Method::POST, "/api/v2/clients", Some(body(id, alg)))
            .await;
        assert_no_key(status, &reply, named);
        let (status, _) = app
            .call(Method::GET, &format!("/api/v2/clients/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id} was stored");
    }
    let (status, reply) = app
        .call(
            Method::POST,
            "/api/v2/clients",
            Some(body("rp-es", Some("ES256"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

#[tokio::test]
async fn patching_to_an_alg_without_a_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = es256_only(tmp.path()).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v2/clients",
            Some(body("rp", Some("ES256"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let path = "/api/v2/clients/rp";
    let (status, reply) = app
        .call(
            Method::PATCH,
            path,
            Some(json!({ "id_token_signed_response_alg": "EdDSA" })),
        )
        .await;
    assert_no_key(status, &reply, "EdDSA");
    let (_, stored) = app.call(Method::GET, path, None).await;
    assert_eq!(stored["id_token_signed_response_alg"], "ES256");
    // A PATCH that leaves the alg alone does not look at the keys.
    let (status, _) = app
        .call(Method::PATCH, path, Some(json!({ "name": "renamed" })))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Once the server has loaded an EdDSA key, the same PATCH goes through.
    logoutd_core::generate_key(tmp.path(), SigningAlg::EdDSA, None, start_time()).unwrap();
    assert!(app.keys.reload(tmp.path(), start_time()).unwrap());
    let (status, reply) = app
        .call(
            Method::PATCH,
            path,
            Some(json!({ "id_token_signed_response_alg": "EdDSA" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["id_token_signed_response_alg"], "EdDSA");
}
