//! Explicit typing (RFC 8725 §3.11, design §3): `typ` is `logout+jwt` unless a client asks
//! for `JWT`, which only receivers that accept `JWT` take.

use super::{Rig, assert_valid, client_body};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typ_jwt_for_a_client_that_asks_for_it() {
    let rig = Rig::start().await;
    let lenient = rig.mock("rp-jwt", &["--accept-typ", "JWT"]).await;
    let strict = rig.mock("rp-strict", &[]).await;
    for (client, mock) in [("rp-jwt", &lenient), ("rp-strict", &strict)] {
        let mut body = client_body(client, mock);
        body["logout_token_typ"] = json!("JWT");
        rig.register(body).await;
    }
    rig.session("sess-typ-1", "auth0|fay", &["rp-jwt"], Value::Null)
        .await;
    rig.session("sess-typ-2", "auth0|fay", &["rp-strict"], Value::Null)
        .await;
    assert_eq!(rig.end("sess-typ-1", "rp-logout").await, 1);
    assert_eq!(rig.end("sess-typ-2", "rp-logout").await, 1);

    // A receiver that accepts JWT takes the token ...
    let detail = rig.settled("sess-typ-1").await;
    assert_eq!(detail["state"], "delivered", "{detail:#}");
    let receipts = lenient.receipts().await;
    assert_eq!(receipts.len(), 1, "{receipts:#?}");
    assert_valid(&receipts[0]);
    // ... and a strict one refuses it for its typ, which is therefore JWT: a terminal 400.
    let detail = rig.settled("sess-typ-2").await;
    assert_eq!(detail["state"], "failed", "{detail:#}");
    assert_eq!(detail["last_status"], 400);
    let receipts = strict.receipts().await;
    assert_eq!(receipts.len(), 1, "{receipts:#?}");
    assert!(!receipts[0].valid);
    assert_eq!(receipts[0].status, Some(400));
    assert!(
        receipts[0]
            .errors
            .iter()
            .any(|e| e.contains(r#"typ "JWT""#)),
        "{receipts:#?}"
    );
}
