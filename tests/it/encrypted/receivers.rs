//! The receivers with `--decryption-key`: `logoutd mock-rp` and `logoutd token verify` open
//! the JWE and then check the inner token as always; a JWE without a key, and a plain token
//! with one, are refused with a message saying so. Also: a `jwks_uri` on a loopback address
//! is refused at fetch time when the operator has not allowed such addresses.

use super::{private_path, public_jwks};
use crate::support::mock_rp_process::{MockRpArgs, MockRpProcess};
use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::{Command, Output};

const ISSUER: &str = "https://idp.test";

async fn register(server: &ServeProcess, id: &str, url: &str, encrypted: bool) {
    let mut body = json!({ "client_id": id, "name": id,
        "oidc_logout": { "backchannel_logout_urls": [url],
            "backchannel_logout_session_metadata": { "include": true } } });
    if encrypted {
        body["id_token_encrypted_response_alg"] = json!("ECDH-ES");
        body["id_token_encrypted_response_enc"] = json!("A256GCM");
        body["jwks"] = public_jwks("p256");
    }
    let (status, reply) = server
        .call(Method::POST, "/api/v2/clients", Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
}

async fn end_session(server: &ServeProcess, id: &str, clients: &[&str]) {
    let members: Vec<Value> = clients.iter().map(|c| json!({ "client_id": c })).collect();
    let session = json!({ "id": id, "user_id": "u1", "clients": members,
        "session_metadata": { "tenant": "acme" } });
    let (status, reply) = server
        .call(Method::POST, "/api/v2/sessions", Some(session))
        .await;
    assert_eq!(status, 201, "{reply}");
    let (status, _) = server
        .call(Method::DELETE, &format!("/api/v2/sessions/{id}"), None)
        .await;
    assert_eq!(status, 202);
}

fn verify(jwks_uri: &str, client: &str, token: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args([
            "token",
            "verify",
            "--issuer",
            ISSUER,
            "--jwks-uri",
            jwks_uri,
        ])
        .args(["--client-id", client])
        .args(extra)
        .arg(token)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_rp_and_token_verify_decrypt_with_the_rp_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path(), &["--issuer", ISSUER]).await;
    let jwks_uri = format!("{}/.well-known/jwks.json", server.base);
    let key = private_path("p256");
    let key = key.to_str().unwrap();
    let with_key = MockRpProcess::start(
        dir.path(),
        &MockRpArgs {
            issuer: ISSUER,
            jwks_uri: &jwks_uri,
            client_id: "enc",
            extra: &["--decryption-key", key],
        },
    )
    .await;
    let without_key = MockRpProcess::start(
        dir.path(),
        &MockRpArgs {
            issuer: ISSUER,
            jwks_uri: &jwks_uri,
            client_id: "enc-nokey",
            extra: &[],
        },
    )
    .await;
    let recorder = RecordingRp::start(Reply::ok()).await;
    register(&server, "enc", &format!("{}/bc", with_key.base), true).await;
    register(&server, "plain", &format!("{}/bc", with_key.base), false).await;
    register(
        &server,
        "enc-nokey",
        &format!("{}/bc", without_key.base),
        true,
    )
    .await;
    register(&server, "captured", recorder.url("/bc").as_str(), true).await;
    end_session(&server, "s1", &["enc", "plain", "enc-nokey", "captured"]).await;

    // mock-rp with the key: the encrypted token passes every check, the plain one is refused.
    let receipts = with_key.wait_receipts(2).await;
    let valid: Vec<_> = receipts.iter().filter(|r| r.valid).collect();
    assert_eq!(valid.len(), 1, "{receipts:?}");
    let claims = valid[0].claims.as_ref().unwrap();
    assert_eq!(claims["aud"], "enc");
    assert_eq!(claims["session_metadata"], json!({ "tenant": "acme" }));
    let refused = receipts.iter().find(|r| !r.valid).unwrap();
    assert_eq!(refused.status, Some(400));
    assert!(
        refused.errors.iter().any(|e| e.contains("only encrypted")),
        "{refused:?}"
    );
    // mock-rp without a key refuses the JWE, saying what is missing.
    let receipts = without_key.wait_receipts(1).await;
    assert!(!receipts[0].valid);
    assert!(
        receipts[0]
            .errors
            .iter()
            .any(|e| e.contains("--decryption-key")),
        "{receipts:?}"
    );

    // token verify: accepted with the key; refused without it, or with another key.
    recorder.wait_requests(1).await;
    let token = recorder.requests()[0].form_param("logout_token").unwrap();
    let out = verify(&jwks_uri, "captured", &token, &["--decryption-key", key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["aud"], "captured");
    let out = verify(&jwks_uri, "captured", &token, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("encrypted"));
    let other = private_path("p384");
    let out = verify(
        &jwks_uri,
        "captured",
        &token,
        &["--decryption-key", other.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JWE"), "{stderr}");
    assert!(
        !stderr.contains("tenant"),
        "no plaintext in errors: {stderr}"
    );
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_jwks_uri_is_refused_at_fetch_without_the_operator_allowance() {
    let dir = tempfile::tempdir().unwrap();
    let keys = RecordingRp::start(Reply::ok().body(public_jwks("p256").to_string())).await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let permissive = ServeProcess::start(dir.path(), &[]).await;
    let body = json!({ "client_id": "enc", "name": "enc",
        "id_token_encrypted_response_alg": "ECDH-ES", "jwks_uri": keys.url("/jwks.json").as_str(),
        "oidc_logout": { "backchannel_logout_urls": ["https://rp.test/bc"] } });
    let (status, reply) = permissive
        .call(Method::POST, "/api/v2/clients", Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
    assert!(permissive.terminate().await.success());

    let strict = ServeProcess::start_strict(dir.path(), &[]).await;
    let session = json!({ "id": "s1", "user_id": "u1", "clients": [{ "client_id": "enc" }] });
    let (status, reply) = strict
        .call(Method::POST, "/api/v2/sessions", Some(session))
        .await;
    assert_eq!(status, 201, "{reply}");
    let (status, _) = strict
        .call(Method::DELETE, "/api/v2/sessions/s1", None)
        .await;
    assert_eq!(status, 202);
    let rows = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (_, reply) = strict
                .call(Method::GET, "/api/v2/logout-deliveries?session_id=s1", None)
                .await;
            let rows = reply["deliveries"].as_array().cloned().unwrap_or_default();
            if rows
                .first()
                .is_some_and(|r| r["attempts"].as_u64() >= Some(1))
            {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no attempt was recorded");
    let error = rows[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("no usable encryption key for ECDH-ES") && error.contains("refused"),
        "{error}"
    );
    assert!(
        keys.requests().is_empty(),
        "the key server was never contacted"
    );
    assert!(rp.requests().is_empty());
    assert!(strict.terminate().await.success());
}
