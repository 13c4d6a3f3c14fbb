//! Initiator subscription: which of Auth0's nine initiators reach a client, by its
//! `backchannel_logout_initiators` mode (design §3).

use super::{Rig, assert_valid, client_body};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Auth0's nine logout initiators.
const INITIATORS: [&str; 9] = [
    "rp-logout",
    "idp-logout",
    "password-changed",
    "session-expired",
    "session-revoked",
    "account-deleted",
    "email-identifier-changed",
    "mfa-phone-unenrolled",
    "account-deactivated",
];

/// Ends one session per initiator (session id `s-<initiator>`); returns the deliveries made.
async fn end_one_session_per_initiator(rig: &Rig, client: &str) -> u64 {
    let mut made = 0;
    for initiator in INITIATORS {
        let sid = format!("s-{initiator}");
        rig.session(&sid, "auth0|alice", &[client], Value::Null)
            .await;
        made += rig.end(&sid, initiator).await;
    }
    made
}

/// Waits until every delivery of `sids` is delivered, each with its session's initiator.
async fn wait_delivered(rig: &Rig, sids: &BTreeSet<String>) {
    for sid in sids {
        let rows = rig
            .wait_deliveries(sid, |d| d.len() == 1 && d[0]["state"] == "delivered")
            .await;
        assert_eq!(rows[0]["initiator"].as_str(), sid.strip_prefix("s-"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_initiator_reaches_an_all_mode_client() {
    let rig = Rig::start().await;
    let mock = rig.mock("rp-all", &[]).await;
    let mut body = client_body("rp-all", &mock);
    body["oidc_logout"]["backchannel_logout_initiators"] = json!({ "mode": "all" });
    rig.register(body).await;

    assert_eq!(end_one_session_per_initiator(&rig, "rp-all").await, 9);
    let expected: BTreeSet<String> = INITIATORS.iter().map(|i| format!("s-{i}")).collect();
    wait_delivered(&rig, &expected).await;

    let receipts = mock.receipts().await;
    assert_eq!(receipts.len(), 9, "{receipts:#?}");
    receipts.iter().for_each(assert_valid);
    let sids: BTreeSet<String> = receipts.iter().filter_map(|r| r.sid.clone()).collect();
    assert_eq!(sids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_registered_without_initiators_gets_every_initiator() {
    let rig = Rig::start().await;
    let mock = rig.mock("rp-default", &[]).await;
    rig.register(client_body("rp-default", &mock)).await;

    assert_eq!(end_one_session_per_initiator(&rig, "rp-default").await, 9);
    let expected: BTreeSet<String> = INITIATORS.iter().map(|i| format!("s-{i}")).collect();
    wait_delivered(&rig, &expected).await;
    let receipts = mock.receipts().await;
    assert_eq!(receipts.len(), 9, "{receipts:#?}");
    receipts.iter().for_each(assert_valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_mode_gets_only_always_on_and_selected_initiators() {
    let rig = Rig::start().await;
    let mock = rig.mock("rp-custom", &[]).await;
    let mut body = client_body("rp-custom", &mock);
    body["oidc_logout"]["backchannel_logout_initiators"] = json!({
        "mode": "custom",
        "selected_initiators": ["password-changed", "account-deleted"],
    });
    rig.register(body).await;

    // Sessions whose initiator the client did not select make no rows at all, so once the
    // four selected ones are delivered nothing else can arrive.
    assert_eq!(end_one_session_per_initiator(&rig, "rp-custom").await, 4);
    let expected: BTreeSet<String> = [
        "rp-logout",
        "idp-logout",
        "password-changed",
        "account-deleted",
    ]
    .iter()
    .map(|i| format!("s-{i}"))
    .collect();
    wait_delivered(&rig, &expected).await;

    let receipts = mock.receipts().await;
    assert_eq!(receipts.len(), 4, "{receipts:#?}");
    receipts.iter().for_each(assert_valid);
    let sids: BTreeSet<String> = receipts.iter().filter_map(|r| r.sid.clone()).collect();
    assert_eq!(sids, expected);
    for unselected in ["session-expired", "mfa-phone-unenrolled"] {
        assert!(rig.deliveries(&format!("s-{unselected}")).await.is_empty());
    }
}
