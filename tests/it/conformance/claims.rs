//! What the token says (spec §2.4 and Auth0's Session Metadata): `sub`, `sid`, and the
//! `session_metadata` snapshot, as the receiving RP sees them.

use super::{ISSUER, Rig, assert_valid, claims, client_body};
use reqwest::Method;
use serde_json::{Value, json};

/// The standard claims every receipt of session `sid` of `user` to `aud` must carry.
fn assert_standard_claims(claims: &Value, aud: &str, user: &str, sid: &str) {
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], aud);
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["sid"], sid);
    assert_eq!(
        claims["events"],
        json!({ "http://schemas.openid.net/event/backchannel-logout": {} })
    );
    assert!(claims.get("nonce").is_none(), "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=120).contains(&lifetime), "{claims}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_2_4_sid_and_sub_are_sent_and_session_required_client_gets_sid() {
    let rig = Rig::start().await;
    let required = rig.mock("rp-sid-required", &[]).await;
    let plain = rig.mock("rp-plain", &[]).await;
    let mut body = client_body("rp-sid-required", &required);
    body["backchannel_logout_session_required"] = json!(true);
    rig.register(body).await;
    rig.register_plain("rp-plain", &plain).await;

    let both = ["rp-sid-required", "rp-plain"];
    rig.session("sess-24", "auth0|bob", &both, Value::Null)
        .await;
    assert_eq!(rig.end("sess-24", "rp-logout").await, 2);

    for (mock, aud) in [(&required, "rp-sid-required"), (&plain, "rp-plain")] {
        let receipts = mock.wait_receipts(1).await;
        assert_eq!(receipts.len(), 1, "{receipts:#?}");
        assert_valid(&receipts[0]);
        assert_eq!(receipts[0].status, Some(200));
        assert_standard_claims(claims(&receipts[0]), aud, "auth0|bob", "sess-24");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_metadata_is_sent_only_when_opted_in_with_exact_values() {
    let rig = Rig::start().await;
    let opted_in = rig.mock("rp-meta", &[]).await;
    let opted_out = rig.mock("rp-no-meta", &[]).await;
    let mut body = client_body("rp-meta", &opted_in);
    body["oidc_logout"]["backchannel_logout_session_metadata"] = json!({ "include": true });
    rig.register(body).await;
    let mut body = client_body("rp-no-meta", &opted_out);
    body["oidc_logout"]["backchannel_logout_session_metadata"] = json!({ "include": false });
    rig.register(body).await;
    let both = ["rp-meta", "rp-no-meta"];

    // The snapshot is taken when the session ends: later edits are part of it.
    let metadata = json!({ "tenant": "acme", "plan": "gold", "drop-me": "x" });
    rig.session("sess-meta", "auth0|carol", &both, metadata)
        .await;
    let set = json!({ "value": "Zürich ✓" });
    let path = "/api/v2/sessions/sess-meta/metadata/city";
    assert_eq!(rig.serve.call(Method::PUT, path, Some(set)).await.0, 200);
    let path = "/api/v2/sessions/sess-meta/metadata/drop-me";
    assert_eq!(rig.serve.call(Method::DELETE, path, None).await.0, 200);
    // A session without metadata: the claim is omitted, not sent as {}.
    rig.session("sess-empty", "auth0|carol", &both, Value::Null)
        .await;
    assert_eq!(rig.end("sess-meta", "idp-logout").await, 2);
    assert_eq!(rig.end("sess-empty", "idp-logout").await, 2);

    let expected = json!({ "tenant": "acme", "plan": "gold", "city": "Zürich ✓" });
    let receipts = opted_in.wait_receipts(2).await;
    assert_eq!(receipts.len(), 2, "{receipts:#?}");
    for receipt in &receipts {
        assert_valid(receipt);
        let claims = claims(receipt);
        match receipt.sid.as_deref() {
            Some("sess-meta") => assert_eq!(claims["session_metadata"], expected),
            Some("sess-empty") => assert!(claims.get("session_metadata").is_none()),
            other => panic!("unexpected sid {other:?}"),
        }
    }
    let receipts = opted_out.wait_receipts(2).await;
    assert_eq!(receipts.len(), 2, "{receipts:#?}");
    for receipt in &receipts {
        assert_valid(receipt);
        assert!(
            claims(receipt).get("session_metadata").is_none(),
            "{receipt:#?}"
        );
    }
}
