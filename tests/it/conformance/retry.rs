//! Retry classes (design §3, "Delivery and retry"), each driven by one of the mock's
//! injected faults and judged by its receipts and the delivery status API.

use super::{FAST_RETRY, Rig, assert_valid, client_body};
use crate::support::mock_rp_process::MockRpProcess;
use chrono::{DateTime, Utc};
use logoutd_core::Receipt;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;

const CLIENT: &str = "rp-retry";
const SESSION: &str = "sess-retry";

/// Registers [`CLIENT`] at `mock`, then creates and ends [`SESSION`] for it.
async fn end_session_for(rig: &Rig, mock: &MockRpProcess) {
    rig.register_plain(CLIENT, mock).await;
    rig.session(SESSION, "auth0|dave", &[CLIENT], Value::Null)
        .await;
    assert_eq!(rig.end(SESSION, "rp-logout").await, 1);
}

/// A mock for [`CLIENT`] with `faults`, and the session ended towards it.
async fn faulty(rig: &Rig, faults: &[&str]) -> MockRpProcess {
    let mock = rig.mock(CLIENT, faults).await;
    end_session_for(rig, &mock).await;
    mock
}

fn statuses(receipts: &[Receipt]) -> Vec<Option<u16>> {
    receipts.iter().map(|r| r.status).collect()
}

fn faults(receipts: &[Receipt]) -> Vec<Option<&str>> {
    receipts.iter().map(|r| r.fault.as_deref()).collect()
}

fn attempts(receipts: &[Receipt]) -> Vec<Option<u64>> {
    receipts.iter().map(|r| r.attempt).collect()
}

fn arrived(receipt: &Receipt) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&receipt.time).unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_first_503_then_delivered() {
    let rig = Rig::start().await;
    let mock = faulty(&rig, &["--fail-first", "2", "--fail-status", "503"]).await;

    let detail = rig.settled(SESSION).await;
    assert_eq!(
        (detail["state"].as_str(), detail["attempts"].as_u64()),
        (Some("delivered"), Some(3))
    );
    let receipts = mock.receipts().await;
    assert_eq!(attempts(&receipts), [Some(1), Some(2), Some(3)]);
    assert_eq!(statuses(&receipts), [Some(503), Some(503), Some(200)]);
    assert_eq!(
        faults(&receipts),
        [Some("fail_status"), Some("fail_status"), None]
    );
    receipts.iter().for_each(assert_valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    // The cap bounds Retry-After too, so it must exceed the one second asked for.
    let rig = Rig::start_with(&["--retry-base-ms", "50", "--retry-cap-ms", "3000"]).await;
    let mock = faulty(&rig, &["--fail-first", "1", "--retry-after", "1"]).await;

    let detail = rig.settled(SESSION).await;
    assert_eq!(detail["state"], "delivered");
    let receipts = mock.receipts().await;
    assert_eq!(statuses(&receipts), [Some(503), Some(200)]);
    receipts.iter().for_each(assert_valid);
    // Receipt times have millisecond resolution; the retry came at least 1 s later.
    let waited = arrived(&receipts[1]) - arrived(&receipts[0]);
    assert!(waited.num_milliseconds() >= 999, "retried after {waited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_is_terminal() {
    let rig = Rig::start().await;
    let mock = faulty(&rig, &["--fail-first", "1", "--fail-status", "400"]).await;

    let detail = rig.settled(SESSION).await;
    assert_eq!(detail["state"], "failed", "{detail:#}");
    assert_eq!(
        (detail["attempts"].as_u64(), detail["last_status"].as_u64()),
        (Some(1), Some(400))
    );
    // A failed delivery is never attempted again, so one receipt is the final count.
    let receipts = mock.receipts().await;
    assert_eq!(statuses(&receipts), [Some(400)]);
    assert_valid(&receipts[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_is_retried() {
    let rig = Rig::start().await;
    let mock = faulty(&rig, &["--drop-first", "1"]).await;

    let detail = rig.settled(SESSION).await;
    assert_eq!(
        (detail["state"].as_str(), detail["attempts"].as_u64()),
        (Some("delivered"), Some(2))
    );
    let receipts = mock.receipts().await;
    assert_eq!(statuses(&receipts), [None, Some(200)]);
    assert_eq!(faults(&receipts), [Some("drop"), None]);
    receipts.iter().for_each(assert_valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_retried() {
    // The slow mock answers every POST after 3 s, past the 500 ms attempt timeout; once an
    // attempt has timed out the client is moved to a prompt mock, which gets the retry.
    let mut flags = FAST_RETRY.to_vec();
    flags.extend(["--attempt-timeout-ms", "500"]);
    let rig = Rig::start_with(&flags).await;
    let slow = faulty(&rig, &["--delay-ms", "3000"]).await;
    let prompt = rig.mock(CLIENT, &[]).await;
    rig.wait_deliveries(SESSION, |d| {
        d.len() == 1 && d[0]["attempts"].as_u64() >= Some(1)
    })
    .await;
    let urls = json!({ "oidc_logout": client_body(CLIENT, &prompt)["oidc_logout"] });
    let path = format!("/api/v2/clients/{CLIENT}");
    assert_eq!(
        rig.serve.call(Method::PATCH, &path, Some(urls)).await.0,
        200
    );

    let detail = rig.settled(SESSION).await;
    assert_eq!(detail["state"], "delivered", "{detail:#}");
    let history = detail["attempt_history"].as_array().unwrap();
    assert!(history.len() >= 2, "{detail:#}");
    let first = &history[0];
    assert!(first["status"].is_null(), "{detail:#}");
    let error = first["error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("time"), "not a timeout: {error}");
    let receipts = prompt.wait_receipts(1).await;
    assert_eq!(statuses(&receipts), [Some(200)]);
    assert_valid(&receipts[0]);
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_is_not_followed() {
    let rig = Rig::start().await;
    let target = rig.mock(CLIENT, &[]).await;
    let redirecting = faulty(&rig, &["--redirect-to", &target.url("/backchannel")]).await;

    let detail = rig.settled(SESSION).await;
    assert_eq!(detail["state"], "failed", "{detail:#}");
    assert_eq!(
        (detail["attempts"].as_u64(), detail["last_status"].as_u64()),
        (Some(1), Some(307))
    );
    let receipts = redirecting.receipts().await;
    assert_eq!(statuses(&receipts), [Some(307)]);
    assert_eq!(faults(&receipts), [Some("redirect")]);
    assert!(
        target.receipts().await.is_empty(),
        "the redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_2_6_fresh_jti_per_attempt() {
    let rig = Rig::start().await;
    let mock = faulty(&rig, &["--drop-first", "1", "--fail-first", "2"]).await;

    let detail = rig.settled(SESSION).await;
    assert_eq!(
        (detail["state"].as_str(), detail["attempts"].as_u64()),
        (Some("delivered"), Some(4))
    );
    let receipts = mock.receipts().await;
    assert_eq!(receipts.len(), 4, "{receipts:#?}");
    receipts.iter().for_each(assert_valid);
    let jtis: HashSet<&str> = receipts.iter().filter_map(|r| r.jti.as_deref()).collect();
    assert_eq!(jtis.len(), 4, "a jti was reused: {receipts:#?}");
    assert!(receipts.iter().all(|r| !r.replay));
    // The status API records the same jti per attempt as the RP saw.
    let recorded: HashSet<&str> = detail["attempt_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["jti"].as_str())
        .collect();
    assert_eq!(recorded, jtis);
}
