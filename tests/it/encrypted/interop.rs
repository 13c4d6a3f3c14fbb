//! logoutd's encrypted logout tokens, decrypted and verified by two JOSE libraries that share
//! no code with it: panva's `jose` for Node and Python's `jwcrypto`, for every alg and enc,
//! with the keys given inline and at a `jwks_uri`. Under `CI=true` a missing runtime or
//! package fails the test; elsewhere the library's half is skipped with a note.

use super::{ENCS, KEYS, private_jwk, public_jwks};
use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const ISSUER: &str = "https://idp.test";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `check` finds the library; under `CI=true` its absence fails the test.
fn available(what: &str, check: &mut Command) -> bool {
    let found = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {what} is not installed"
        );
        eprintln!("SKIPPED: {what} is not installed");
    }
    found
}

fn node_jose() -> bool {
    let dir = repo().join("examples/oidc-provider");
    available(
        "jose for Node (run `npm ci` in examples/oidc-provider)",
        Command::new("node")
            .args(["-e", "require('jose')"])
            .current_dir(dir),
    )
}

fn python_jwcrypto() -> bool {
    available(
        "Python jwcrypto (pip install -r tests/interop/requirements.txt)",
        Command::new("python3").args(["-c", "import jwcrypto.jwe"]),
    )
}

/// Runs one decrypting script with `input` on stdin; fails with its stderr unless it passes.
fn run(mut command: Command, input: &Value) -> Value {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed for alg {} enc {}: {}",
        input["alg"],
        input["enc"],
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn jwks_server_reply(key: &str) -> Reply {
    Reply::ok()
        .header("content-type", "application/json")
        .header("cache-control", "max-age=600")
        .body(public_jwks(key).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jose_and_jwcrypto_decrypt_and_verify_every_alg_and_enc() {
    let (node, python) = (node_jose(), python_jwcrypto());
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path(), &["--issuer", ISSUER]).await;
    let rp = RecordingRp::start(Reply::ok()).await;
    // P-256 and P-384 keys are published at a jwks_uri; the others are registered inline.
    let key_servers = [
        ("p256", RecordingRp::start(jwks_server_reply("p256")).await),
        ("p384", RecordingRp::start(jwks_server_reply("p384")).await),
    ];
    let mut clients = Vec::new();
    for (key, alg) in KEYS {
        for enc in ENCS {
            let id = format!("{key}-{enc}");
            let mut body = json!({ "client_id": id, "name": id,
                "id_token_encrypted_response_alg": alg, "id_token_encrypted_response_enc": enc,
                "oidc_logout": { "backchannel_logout_urls": [rp.url(&format!("/{id}")).as_str()],
                    "backchannel_logout_session_metadata": { "include": true } } });
            match key_servers.iter().find(|(name, _)| *name == key) {
                Some((_, server)) => body["jwks_uri"] = json!(server.url("/jwks.json").as_str()),
                None => body["jwks"] = public_jwks(key),
            }
            let (status, reply) = server
                .call(Method::POST, "/api/v2/clients", Some(body))
                .await;
            assert_eq!(status, 201, "{reply}");
            clients.push((id, key, alg, enc));
        }
    }
    let members: Vec<Value> = clients
        .iter()
        .map(|c| json!({ "client_id": c.0 }))
        .collect();
    let session = json!({ "id": "s1", "user_id": "u1", "clients": members,
        "session_metadata": { "tenant": "acme" } });
    let (status, reply) = server
        .call(Method::POST, "/api/v2/sessions", Some(session))
        .await;
    assert_eq!(status, 201, "{reply}");
    let (status, _) = server
        .call(Method::DELETE, "/api/v2/sessions/s1", None)
        .await;
    assert_eq!(status, 202);
    rp.wait_requests(clients.len()).await;
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for request in rp.requests() {
        let id = request.path.trim_start_matches('/');
        let (_, key, alg, enc) = clients.iter().find(|c| c.0 == id).unwrap();
        let input = json!({ "token": request.form_param("logout_token").unwrap(),
            "private_jwk": private_jwk(key), "jwks": jwks, "issuer": ISSUER,
            "client_id": id, "alg": alg, "enc": enc });
        if node {
            let mut command = Command::new("node");
            command
                .arg(repo().join("tests/interop/jose-decrypt.mjs"))
                .arg(repo().join("examples/oidc-provider"));
            let claims = run(command, &input);
            assert_eq!(
                claims["session_metadata"],
                json!({ "tenant": "acme" }),
                "{id}"
            );
            assert_eq!(claims["sid"], "s1");
        }
        if python {
            let mut command = Command::new("python3");
            command.arg(repo().join("tests/interop/jwcrypto_decrypt.py"));
            let claims = run(command, &input);
            assert_eq!(
                claims["session_metadata"],
                json!({ "tenant": "acme" }),
                "{id}"
            );
        }
    }
    // One fetch per key server served every token (the cache and its max-age).
    for (_, key_server) in &key_servers {
        assert_eq!(key_server.requests().len(), 1);
    }
    assert!(server.terminate().await.success());
}
