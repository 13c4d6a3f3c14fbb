//! Registration of ID-token encryption: what is accepted, defaulted, shown and refused.

use super::{private_jwk, public_jwks};
use crate::support::app::{TestApp, assert_auth0_error};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

fn body(extra: Value) -> Value {
    let mut body = json!({ "client_id": "rp", "name": "rp", "id_token_signed_response_alg": "ES256",
        "oidc_logout": { "backchannel_logout_urls": ["https://rp.test/bc"] } });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    body
}

async fn create(app: &TestApp, extra: Value) -> (StatusCode, Value) {
    app.call(Method::POST, "/api/v2/clients", Some(body(extra)))
        .await
}

async fn refused(app: &TestApp, extra: Value, needle: &str) {
    let (status, reply) = create(app, extra).await;
    assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    let (status, _) = app.call(Method::GET, "/api/v2/clients/rp", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");
}

#[tokio::test]
async fn alg_alone_defaults_enc_and_the_fields_are_shown_at_top_level() {
    let app = TestApp::memory().await;
    let jwks = public_jwks("rsa");
    let (status, reply) = create(
        &app,
        json!({ "id_token_encrypted_response_alg": "RSA-OAEP-256", "jwks": jwks }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["id_token_encrypted_response_enc"], "A128CBC-HS256");
    let (_, read) = app.call(Method::GET, "/api/v2/clients/rp", None).await;
    assert_eq!(read["id_token_encrypted_response_alg"], "RSA-OAEP-256");
    assert_eq!(read["id_token_encrypted_response_enc"], "A128CBC-HS256");
    assert_eq!(read["jwks"], jwks);
    // PATCH: switch to a jwks_uri (null removes the inline set), then turn encryption off.
    let patch = json!({ "jwks": null, "jwks_uri": "https://rp.test/jwks.json",
        "id_token_encrypted_response_enc": "A256GCM" });
    let (status, reply) = app
        .call(Method::PATCH, "/api/v2/clients/rp", Some(patch))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["jwks_uri"], "https://rp.test/jwks.json");
    assert!(reply.get("jwks").is_none());
    assert_eq!(reply["id_token_encrypted_response_enc"], "A256GCM");
    let off = json!({ "id_token_encrypted_response_alg": null, "jwks_uri": null });
    let (status, reply) = app
        .call(Method::PATCH, "/api/v2/clients/rp", Some(off))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    for member in [
        "id_token_encrypted_response_alg",
        "id_token_encrypted_response_enc",
        "jwks_uri",
    ] {
        assert!(reply.get(member).is_none(), "{member}: {reply}");
    }
}

#[tokio::test]
async fn a_client_without_encryption_is_shown_as_before() {
    let app = TestApp::memory().await;
    let (status, reply) = create(&app, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    for member in [
        "id_token_encrypted_response_alg",
        "id_token_encrypted_response_enc",
        "jwks_uri",
        "jwks",
    ] {
        assert!(reply.get(member).is_none(), "{member}: {reply}");
    }
}

#[tokio::test]
async fn bad_encryption_registrations_are_refused_and_nothing_is_saved() {
    let app = TestApp::memory().await;
    let p256 = public_jwks("p256");
    refused(
        &app,
        json!({ "id_token_encrypted_response_alg": "RSA1_5", "jwks": p256 }),
        "RSA1_5",
    )
    .await;
    refused(&app, json!({ "id_token_encrypted_response_alg": "ECDH-ES", "id_token_encrypted_response_enc": "A128GCM", "jwks": p256 }), "A128GCM").await;
    refused(
        &app,
        json!({ "id_token_encrypted_response_enc": "A256GCM", "jwks": p256 }),
        "needs id_token_encrypted_response_alg",
    )
    .await;
    refused(
        &app,
        json!({ "id_token_encrypted_response_alg": "ECDH-ES" }),
        "jwks_uri or jwks",
    )
    .await;
    refused(
        &app,
        json!({ "id_token_encrypted_response_alg": "ECDH-ES", "jwks": p256,
        "jwks_uri": "https://rp.test/jwks.json" }),
        "not both",
    )
    .await;
    refused(
        &app,
        json!({ "id_token_encrypted_response_alg": "RSA-OAEP-256", "jwks": p256 }),
        "no key usable for RSA-OAEP-256",
    )
    .await;
    refused(
        &app,
        json!({ "id_token_encrypted_response_alg": "ECDH-ES",
        "jwks": { "keys": [private_jwk("p256")] } }),
        "private member d",
    )
    .await;
    let mut signing = p256["keys"][0].clone();
    signing["use"] = json!("sig");
    refused(
        &app,
        json!({ "id_token_encrypted_response_alg": "ECDH-ES",
        "jwks": { "keys": [signing] } }),
        "use \"sig\"",
    )
    .await;
    refused(
        &app,
        json!({ "id_token_encrypted_response_alg": "ECDH-ES", "jwks": [] }),
        "JWK Set",
    )
    .await;
}

#[tokio::test]
async fn a_jwks_uri_on_a_private_address_needs_the_operator_allowance() {
    let strict = TestApp::over(logoutd_core::open_store("memory://").await.unwrap(), false);
    for uri in [
        "https://127.0.0.1/jwks.json",
        "https://10.0.0.8/jwks.json",
        "https://localhost/k",
    ] {
        let extra = json!({ "id_token_encrypted_response_alg": "ECDH-ES", "jwks_uri": uri });
        let (status, reply) = create(&strict, extra).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert!(
            reply["message"]
                .as_str()
                .unwrap()
                .contains("--allow-insecure-rp-urls"),
            "{reply}"
        );
    }
    let extra = json!({ "id_token_encrypted_response_alg": "ECDH-ES",
        "jwks_uri": "http://rp.test/jwks.json" });
    let (status, reply) = create(&strict, extra).await;
    assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("jwks_uri must use https"),
        "{reply}"
    );
    let open = TestApp::memory().await;
    let extra = json!({ "id_token_encrypted_response_alg": "ECDH-ES",
        "jwks_uri": "http://127.0.0.1:9/jwks.json" });
    let (status, reply) = create(&open, extra).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}
