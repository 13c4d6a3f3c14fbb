//! Retry budgets through the dispatcher and a real (SQLite) store: an RP that answers 503 for
//! ever makes its delivery `failed` once `max_attempts` attempts are made, or once its age
//! budget (`max_age`) is spent, with the attempt count and the reason recorded; an operator's
//! re-drive (`POST /api/v2/logout-deliveries/{id}/retry`) then brings it back with a fresh
//! budget and it is delivered (README, "Delivery and retry").

use crate::support::delivery::{Harness, test_settings};
use crate::support::recording_rp::{RecordingRp, Reply};
use axum::http::{Method, StatusCode};
use logoutd_core::DispatchSettings;
use logoutd_core::RetryPolicy;
use serde_json::{Value, json};
use std::time::Duration;

/// The harness over a SQLite file in `dir`, with `retry` as the retry policy.
async fn harness(dir: &tempfile::TempDir, retry: RetryPolicy) -> Harness {
    let url = format!("sqlite://{}", dir.path().join("logoutd.db").display());
    let stores = logoutd_core::open_store(&url).await.unwrap();
    let (settings, sender) = test_settings();
    let settings = DispatchSettings { retry, ..settings };
    Harness::over(stores, (settings, sender)).await
}

/// A policy with a 1 s backoff ceiling, `max_attempts` attempts and `max_age`.
fn policy(max_attempts: u32, max_age: Duration) -> RetryPolicy {
    let second = Duration::from_secs(1);
    RetryPolicy::new(second, 2.0, second, max_attempts, max_age).unwrap()
}

/// Registers `rp1` at `rp`, ends one session for it; returns its one delivery.
async fn one_ended_session(h: &Harness, rp: &RecordingRp) -> Value {
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    assert_eq!(h.end(json!({ "session_id": "s1" }), "rp-logout").await, 1);
    let rows = h.deliveries("session_id=s1").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

/// Re-drives the failed delivery `id` and waits for it to be delivered (attempt `recorded`).
async fn redrive_and_deliver(h: &Harness, id: &str, recorded: usize) -> Value {
    let path = format!("/api/v2/logout-deliveries/{id}/retry");
    let (status, reply) = h.app.call(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    h.outbox.wait_recorded(recorded).await;
    let detail = h.detail(id).await;
    assert_eq!(detail["state"], "delivered", "{detail}");
    assert_eq!(
        detail["attempts"], 1,
        "the re-drive gave a fresh budget: {detail}"
    );
    assert_eq!(detail["last_status"], 200, "{detail}");
    detail
}

#[tokio::test]
async fn a_503_for_ever_fails_after_max_attempts_and_a_redrive_delivers_it() {
    const MAX_ATTEMPTS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let h = harness(
        &dir,
        policy(MAX_ATTEMPTS as u32, Duration::from_secs(86_400)),
    )
    .await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(MAX_ATTEMPTS, Reply::status(503));
    let id = one_ended_session(&h, &rp).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..MAX_ATTEMPTS {
        h.outbox.wait_recorded(n).await;
        let row = h.detail(&id).await;
        assert_eq!(row["state"], "pending", "{row}");
        assert_eq!(row["attempts"], n, "{row}");
        h.advance_to(&row);
    }
    h.outbox.wait_recorded(MAX_ATTEMPTS).await;
    let row = h.detail(&id).await;
    assert_eq!(row["state"], "failed", "{row}");
    assert_eq!(row["attempts"], MAX_ATTEMPTS, "{row}");
    assert_eq!(row["last_status"], 503, "{row}");
    assert!(row["next_attempt_at"].is_null(), "{row}");
    let error = row["last_error"].as_str().unwrap();
    assert!(
        error.contains("attempt budget exhausted after 3 attempts") && error.contains("503"),
        "{error}"
    );
    let history = row["attempt_history"].as_array().unwrap();
    assert_eq!(history.len(), MAX_ATTEMPTS);
    assert!(history.iter().all(|a| a["status"] == 503), "{history:?}");
    assert_eq!(
        rp.requests().len(),
        MAX_ATTEMPTS,
        "no attempt past the budget"
    );

    let detail = redrive_and_deliver(&h, &id, MAX_ATTEMPTS + 1).await;
    assert_eq!(
        detail["attempt_history"].as_array().unwrap().len(),
        MAX_ATTEMPTS + 1
    );
    assert_eq!(rp.requests().len(), MAX_ATTEMPTS + 1);
    h.stop().await;
}

#[tokio::test]
async fn a_503_for_ever_fails_once_the_age_budget_is_spent_and_a_redrive_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let max_age = Duration::from_secs(60);
    let h = harness(&dir, policy(100, max_age)).await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(2, Reply::status(503));
    let created = one_ended_session(&h, &rp).await;
    let id = created["id"].as_str().unwrap().to_owned();
    h.outbox.wait_recorded(1).await;
    let row = h.detail(&id).await;
    assert_eq!(
        (row["state"].as_str(), row["attempts"].as_u64()),
        (Some("pending"), Some(1))
    );
    // The next attempt happens after the age budget: any retry would fall outside it.
    let past_budget: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(created["created_at"].clone()).unwrap();
    let past_budget = past_budget + chrono::Duration::from_std(max_age).unwrap();
    h.advance_to(&json!({ "next_attempt_at": past_budget + chrono::Duration::seconds(1) }));
    h.outbox.wait_recorded(2).await;
    let row = h.detail(&id).await;
    assert_eq!(row["state"], "failed", "{row}");
    assert_eq!(row["attempts"], 2, "{row}");
    assert_eq!(row["last_status"], 503, "{row}");
    let error = row["last_error"].as_str().unwrap();
    assert!(
        error.contains("age budget of 60s exhausted after 2 attempts"),
        "{error}"
    );
    assert_eq!(rp.requests().len(), 2);

    // The re-drive counts the age budget from now: delivered although the row is old.
    redrive_and_deliver(&h, &id, 3).await;
    assert_eq!(rp.requests().len(), 3);
    h.stop().await;
}
