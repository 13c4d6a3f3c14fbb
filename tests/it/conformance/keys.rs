//! Key rotation with deliveries in flight (design §3, "The logout token"): a key is
//! published before its first use and stays published after it is retired, so receivers
//! that refetch the JWKS on an unknown `kid` never see a token they cannot verify.

use super::{ISSUER, Rig, assert_valid, client_body};
use crate::support::mock_rp_process::WAIT;
use crate::support::recording_rp::{RecordingRp, Reply};
use logoutd_core::Jwks;
use logoutd_core::{ClientId, Issuer};
use logoutd_core::{VerifyOptions, verify};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const CLIENT: &str = "rp-keys";
/// A second client whose requests are recorded whole, to read the token headers.
const RAW_CLIENT: &str = "rp-keys-raw";

/// Slow enough retries that the failing deliveries stay pending across a rotation.
const FLAGS: [&str; 6] = [
    "--retry-base-ms",
    "100",
    "--retry-cap-ms",
    "300",
    "--max-attempts",
    "200",
];

async fn published(rig: &Rig) -> Value {
    let (status, jwks) = rig
        .serve
        .call(Method::GET, "/.well-known/jwks.json", None)
        .await;
    assert_eq!(status, 200);
    jwks
}

fn kids(jwks: &Value) -> BTreeSet<String> {
    let keys = jwks["keys"].as_array().unwrap();
    keys.iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until serve publishes `n` keys; a running serve reloads its keys within 2 s, and
/// the JWKS is the only outside sign of it, so it is read every 50 ms within a bound.
async fn wait_for_keys(rig: &Rig, n: usize) -> Value {
    let waited = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let jwks = published(rig).await;
            if kids(&jwks).len() == n {
                return jwks;
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("serve never published {n} keys"))
}

/// Points `client` at `url`.
async fn move_client(rig: &Rig, client: &str, url: &str) {
    let body = json!({ "oidc_logout": { "backchannel_logout_urls": [url] } });
    let path = format!("/api/v2/clients/{client}");
    let (status, reply) = rig.serve.call(Method::PATCH, &path, Some(body)).await;
    assert_eq!(status, 200, "{reply}");
}

/// Verifies `token` for `client` against `jwks`; returns its `kid`.
fn verified_kid(token: &str, jwks: &Value, client: &str) -> String {
    let jwks = Jwks::from_value(jwks.clone()).unwrap();
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(client));
    let verified = verify(token, &jwks, &opts, chrono::Utc::now())
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    verified.header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_while_deliveries_are_pending() {
    let rig = Rig::start_with(&FLAGS).await;
    let old_kids = kids(&wait_for_keys(&rig, 1).await);
    // Before the rotation both clients' receivers answer 503; after it, healthy ones take over.
    // The mocks refetch on every unknown kid (interval 0): their start-up fetch must not
    // throttle the refetch however soon after it the rotation lands.
    let refetch = ["--jwks-refetch-interval", "0"];
    let failing = rig
        .mock(CLIENT, &["--fail-first", "1000000", refetch[0], refetch[1]])
        .await;
    let healthy = rig.mock(CLIENT, &refetch).await;
    let failing_raw = RecordingRp::start(Reply::status(503)).await;
    let healthy_raw = RecordingRp::start(Reply::ok()).await;
    rig.register(client_body(CLIENT, &failing)).await;
    let mut body = client_body(RAW_CLIENT, &failing);
    body["oidc_logout"]["backchannel_logout_urls"] = json!([failing_raw.url("/bc").as_str()]);
    rig.register(body).await;
    rig.session(
        "sess-keys",
        "auth0|erin",
        &[CLIENT, RAW_CLIENT],
        Value::Null,
    )
    .await;
    assert_eq!(rig.end("sess-keys", "rp-logout").await, 2);
    failing.wait_receipts(1).await;
    failing_raw.wait_requests(1).await;

    let rotated = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(["keys", "rotate", "--keys-dir"])
        .arg(rig.keys_dir())
        .env("LOGOUTD_LOG_FORMAT", "json")
        .output()
        .await
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let jwks = wait_for_keys(&rig, 2).await;
    let new_kids: Vec<String> = kids(&jwks).difference(&old_kids).cloned().collect();
    assert_eq!(new_kids.len(), 1, "{jwks}");
    move_client(&rig, CLIENT, &healthy.url("/backchannel")).await;
    move_client(&rig, RAW_CLIENT, healthy_raw.url("/bc").as_str()).await;
    rig.wait_deliveries("sess-keys", |d| {
        d.len() == 2 && d.iter().all(|d| d["state"] == "delivered")
    })
    .await;

    // The receivers refetched the JWKS for the new kid: every receipt verified.
    failing.receipts().await.iter().for_each(assert_valid);
    let receipts = healthy.wait_receipts(1).await;
    receipts.iter().for_each(assert_valid);
    assert!(receipts.iter().all(|r| r.status == Some(200)));
    // Tokens after the rotation carry the new kid ...
    let after = healthy_raw.requests();
    assert!(!after.is_empty());
    for req in after {
        let token = req.form_param("logout_token").unwrap();
        assert_eq!(verified_kid(&token, &jwks, RAW_CLIENT), new_kids[0]);
    }
    // ... and the first token, minted before it, still verifies against the new JWKS,
    // which keeps the retired key.
    let first = failing_raw.requests()[0]
        .form_param("logout_token")
        .unwrap();
    let old_kid = verified_kid(&first, &published(&rig).await, RAW_CLIENT);
    assert!(old_kids.contains(&old_kid), "{old_kid} is not the old key");
}
