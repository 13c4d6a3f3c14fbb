//! Encrypted delivery through the in-process dispatcher: the JWE header, the nested token, the
//! key cache and its refetch bound.

use super::{ENCS, KEYS, decryption_key, public_jwks};
use crate::support::app::ISSUER;
use crate::support::delivery::{Harness, NowUtc};
use crate::support::recording_rp::{RecordingRp, Reply};
use logoutd_core::{ClientId, Issuer, Queue, VerifyOptions, decrypt_jwe, verify};
use serde_json::{Value, json};

/// Decrypts the token `rp` received in request `n` with fixture `key`, checks the JWE header,
/// and verifies the inner token against logoutd's keys; returns the header and the claims.
fn open(h: &Harness, rp: &RecordingRp, n: usize, key: &str, client: &str) -> (Value, Value) {
    let token = rp.requests()[n].form_param("logout_token").unwrap();
    assert_eq!(token.split('.').count(), 5, "a compact JWE");
    let opened = decrypt_jwe(&token, &decryption_key(key)).unwrap();
    let header = Value::Object(opened.header.clone());
    assert_eq!(header["cty"], "JWT");
    assert_eq!(header["iss"], ISSUER);
    assert_eq!(header["kid"], format!("rp-{key}"));
    let inner = String::from_utf8(opened.plaintext.to_vec()).unwrap();
    let jwks = h.app.keys.current().jwks(h.clock.now_utc());
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(client));
    let verified = verify(&inner, &jwks, &opts, h.clock.now_utc()).unwrap();
    assert_eq!(verified.header["typ"], "logout+jwt");
    (header, verified.claims)
}

#[tokio::test]
async fn every_alg_and_enc_delivers_a_nested_token_to_an_inline_jwks() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let mut expected = Vec::new();
    for (key, alg) in KEYS {
        for enc in ENCS {
            let id = format!("{key}-{enc}");
            h.client(
                &id,
                rp.url(&format!("/{id}")).as_str(),
                json!({
                    "id_token_encrypted_response_alg": alg,
                    "id_token_encrypted_response_enc": enc,
                    "jwks": public_jwks(key),
                    "oidc_logout": { "backchannel_logout_urls": [rp.url(&format!("/{id}")).as_str()],
                        "backchannel_logout_session_metadata": { "include": true } },
                }),
            )
            .await;
            expected.push((id, key, alg, enc));
        }
    }
    let ids: Vec<&str> = expected.iter().map(|e| e.0.as_str()).collect();
    h.session("s1", "u1", &ids, json!({ "tenant": "acme" }))
        .await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(expected.len()).await;
    let requests = rp.requests();
    assert_eq!(requests.len(), expected.len());
    for (n, req) in requests.iter().enumerate() {
        let id = req.path.trim_start_matches('/');
        let (_, key, alg, enc) = expected.iter().find(|e| e.0 == id).unwrap();
        let (header, claims) = open(&h, &rp, n, key, id);
        assert_eq!(
            (header["alg"].as_str(), header["enc"].as_str()),
            (Some(*alg), Some(*enc))
        );
        assert_eq!(header.get("epk").is_some(), *alg == "ECDH-ES", "{id}");
        assert_eq!(claims["aud"], id);
        assert_eq!(claims["session_metadata"], json!({ "tenant": "acme" }));
    }
    h.stop().await;
}

fn jwks_reply(key: &str) -> Reply {
    Reply::ok()
        .header("content-type", "application/json")
        .body(public_jwks(key).to_string())
}

#[tokio::test]
async fn a_jwks_uri_that_fails_is_refetched_within_the_bound_and_never_bypassed() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let keys = RecordingRp::start(jwks_reply("p256")).await;
    keys.fail_first(1, Reply::status(500));
    let jwks_uri = keys.url("/jwks.json");
    h.client(
        "enc",
        rp.url("/bc").as_str(),
        json!({ "id_token_encrypted_response_alg": "ECDH-ES", "jwks_uri": jwks_uri.as_str() }),
    )
    .await;
    h.session("s1", "u1", &["enc"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;

    // 1. The key server fails: nothing is sent, and the attempt is retried later.
    h.outbox.wait_recorded(1).await;
    let row = h.deliveries("session_id=s1").await.pop().unwrap();
    assert_eq!(row["state"], "pending", "{row}");
    let error = row["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "cannot encrypt: no usable encryption key for ECDH-ES at {jwks_uri}"
        )) && error.contains("500"),
        "{error}"
    );
    assert!(rp.requests().is_empty(), "never sent unencrypted");

    // 2. A retry within 30 s of the failed fetch does not ask the key server again.
    h.advance_to(&row);
    h.outbox.wait_recorded(2).await;
    assert_eq!(keys.requests().len(), 1);
    assert!(rp.requests().is_empty());

    // 3. Once the bound has passed, the next attempt fetches again and delivers.
    let row = h.deliveries("session_id=s1").await.pop().unwrap();
    h.clock.advance(chrono::Duration::seconds(31));
    h.advance_to(&row);
    h.outbox.wait_recorded(3).await;
    assert_eq!(keys.requests().len(), 2);
    assert_eq!(keys.requests()[1].method, "GET");
    assert_eq!(rp.requests().len(), 1);
    let (header, claims) = open(&h, &rp, 0, "p256", "enc");
    assert_eq!(header["enc"], "A128CBC-HS256", "the registration default");
    assert_eq!(claims["sid"], "s1");
    assert_eq!(h.deliveries("state=delivered").await.len(), 1);

    // 4. A second session's token reuses the cached key set.
    h.session("s2", "u1", &["enc"], json!({})).await;
    h.end(json!({ "session_id": "s2" }), "rp-logout").await;
    h.outbox.wait_recorded(4).await;
    assert_eq!(keys.requests().len(), 2);
    assert_eq!(rp.requests().len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_jwks_uri_without_a_usable_key_ends_in_the_dead_letter() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    // An RSA key set for an ECDH-ES client: fetched fine, but no key fits.
    let keys = RecordingRp::start(jwks_reply("rsa")).await;
    let jwks_uri = keys.url("/jwks.json");
    h.client(
        "enc",
        rp.url("/bc").as_str(),
        json!({ "id_token_encrypted_response_alg": "ECDH-ES", "jwks_uri": jwks_uri.as_str() }),
    )
    .await;
    h.session("s1", "u1", &["enc"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    let mut recorded = 1;
    loop {
        h.outbox.wait_recorded(recorded).await;
        let row = h.deliveries("session_id=s1").await.pop().unwrap();
        if row["state"] == "failed" {
            let error = row["last_error"].as_str().unwrap();
            assert!(
                error.contains("no usable encryption key for ECDH-ES"),
                "{error}"
            );
            break;
        }
        assert!(recorded < 20, "never given up: {row}");
        h.clock.advance(chrono::Duration::seconds(31));
        h.advance_to(&row);
        recorded += 1;
    }
    assert!(rp.requests().is_empty(), "never sent unencrypted");
    h.outbox.wakeup().notify_one();
    h.stop().await;
}

#[tokio::test]
async fn a_key_set_over_64_kib_is_not_read() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let keys = RecordingRp::start(Reply::ok().body(vec![b' '; 70 * 1024])).await;
    h.client(
        "enc",
        rp.url("/bc").as_str(),
        json!({ "id_token_encrypted_response_alg": "ECDH-ES",
            "jwks_uri": keys.url("/jwks.json").as_str() }),
    )
    .await;
    h.session("s1", "u1", &["enc"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let row = h.deliveries("session_id=s1").await.pop().unwrap();
    let error = row["last_error"].as_str().unwrap();
    assert!(error.contains("larger than 65536 bytes"), "{error}");
    assert!(rp.requests().is_empty());
    h.stop().await;
}
