//! Conformance cases for endpoint health: the per-client statistics recorded with each batch,
//! the pause policy applied in the same transaction, resuming, deletion and pruning.

use super::fixtures::*;
use chrono::{DateTime, Duration, Utc};
use logoutd_core::{
    AttemptResult, ClaimedDelivery, ClientId, Decision, DeliveryFilter, HealthPolicy, Initiator,
    OperatorEventFilter, OperatorEventType, PausedBy, Stores,
};

/// Ends one session per name in `sessions`, each with `clients`, at `t(2_000)`.
async fn rows_for(s: &Stores, clients: &[&str], sessions: &[&str]) {
    for id in sessions {
        create(s, &session(id, "u1", clients)).await;
        end(s, id, Initiator::RpLogout, t(2_000)).await;
    }
}

/// Claims every row due at `at`.
async fn claim(s: &Stores, at: DateTime<Utc>) -> Vec<ClaimedDelivery> {
    s.queue
        .claim_due(at, Duration::seconds(30), 100)
        .await
        .unwrap()
}

/// The result of one attempt of `c` at `at`: delivered, or a 503 retried a second later.
fn result(
    c: &ClaimedDelivery,
    at: DateTime<Utc>,
    delivered: bool,
    latency_ms: u64,
) -> AttemptResult {
    let (status, decision) = if delivered {
        (200, Decision::Delivered)
    } else {
        (503, Decision::RetryAt(at + Duration::seconds(1)))
    };
    let mut attempt = attempt(at, Some(status), None);
    attempt.latency_ms = latency_ms;
    AttemptResult {
        id: c.delivery.id.clone(),
        lease: c.lease.clone(),
        attempt,
        decision,
    }
}

/// Claims `client`'s rows due at `at` and fails each once then; returns how many.
async fn fail_all(s: &Stores, client: &str, at: DateTime<Utc>) -> usize {
    let results: Vec<AttemptResult> = claim(s, at)
        .await
        .iter()
        .filter(|c| c.client.client_id.as_str() == client)
        .map(|c| result(c, at, false, 40))
        .collect();
    s.queue.record(&results).await.unwrap();
    results.len()
}

async fn health(s: &Stores, id: &str, now: DateTime<Utc>) -> logoutd_core::ClientHealth {
    s.client_health
        .client_health(&ClientId::new(id), now)
        .await
        .unwrap()
        .unwrap()
}

pub async fn health_counts_each_client_s_attempts_and_latency(s: Stores) {
    register(&s, &[client("c1"), client("c2"), client("idle")]).await;
    rows_for(&s, &["c1", "c2"], &["s1", "s2", "s3", "s4"]).await;
    let claimed = claim(&s, t(3_000)).await;
    let mut results = Vec::new();
    let (mut c1_seen, at) = (0, |i: i64| t(3_000 + i));
    for (i, c) in claimed.iter().enumerate() {
        let i = i64::try_from(i).unwrap();
        if c.client.client_id.as_str() == "c1" {
            // Three fast successes and one slow failure, the failure last.
            c1_seen += 1;
            results.push(result(
                c,
                at(i),
                c1_seen < 4,
                if c1_seen < 4 { 10 } else { 1_000 },
            ));
        } else {
            results.push(result(c, at(i), false, 0));
        }
    }
    assert_eq!(s.queue.record(&results).await.unwrap(), 8);

    let c1 = health(&s, "c1", t(4_000)).await;
    assert_eq!((c1.attempts, c1.successes, c1.failures), (4, 3, 1));
    assert_eq!(c1.success_rate, Some(0.75));
    let latency = c1.latency_ms.unwrap();
    assert_eq!(latency.p50, 10);
    assert!(latency.p99.abs_diff(1_000) <= 100, "p99 {}", latency.p99);
    assert!(c1.last_success_at.is_some() && c1.last_failure_at.is_some());
    assert_eq!(c1.failures_since_success, 1);
    assert_eq!(c1.failing_since, c1.last_failure_at);
    assert_eq!(c1.window_seconds, 86_400);

    let c2 = health(&s, "c2", t(4_000)).await;
    assert_eq!((c2.attempts, c2.successes, c2.failures), (4, 0, 4));
    assert_eq!(c2.success_rate, Some(0.0));
    assert_eq!(c2.last_success_at, None);
    assert_eq!(c2.failures_since_success, 4);
    assert!(c2.failing_since.unwrap() < c2.last_failure_at.unwrap());
    assert!(!c2.paused);

    let idle = health(&s, "idle", t(4_000)).await;
    assert_eq!(
        (idle.attempts, idle.success_rate, idle.latency_ms),
        (0, None, None)
    );
    let none = s
        .client_health
        .client_health(&ClientId::new("ghost"), t(4_000))
        .await
        .unwrap();
    assert!(none.is_none());

    let page = s
        .client_health
        .list_client_health(None, 2, t(4_000))
        .await
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|h| h.client_id.as_str()).collect();
    assert_eq!((ids, page.next.as_deref()), (vec!["c1", "c2"], Some("c2")));
    let rest = s
        .client_health
        .list_client_health(Some("c2"), 2, t(4_000))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
}

pub async fn batches_add_up_and_a_success_ends_the_streak(s: Stores) {
    register(&s, &[client("c1")]).await;
    rows_for(&s, &["c1"], &["s1", "s2"]).await;
    assert_eq!(fail_all(&s, "c1", t(3_000)).await, 2);
    assert_eq!(fail_all(&s, "c1", t(5_000)).await, 2);
    let h = health(&s, "c1", t(6_000)).await;
    assert_eq!(
        (h.attempts, h.failures, h.failures_since_success),
        (4, 4, 4)
    );
    assert_eq!(h.failing_since, Some(t(3_000)));

    let claimed = claim(&s, t(7_000)).await;
    let results: Vec<_> = claimed
        .iter()
        .map(|c| result(c, t(7_000), true, 20))
        .collect();
    s.queue.record(&results).await.unwrap();
    let h = health(&s, "c1", t(8_000)).await;
    assert_eq!(
        (h.attempts, h.successes, h.failures_since_success),
        (6, 2, 0)
    );
    assert_eq!((h.last_success_at, h.failing_since), (Some(t(7_000)), None));
    assert_eq!(h.last_failure_at, Some(t(5_000)));
}

pub async fn the_policy_pauses_a_client_that_keeps_failing(s: Stores) {
    s.client_health.set_health_policy(Some(HealthPolicy {
        pause_after: Duration::hours(1),
        min_failures: 2,
    }));
    register(&s, &[client("bad"), client("good")]).await;
    rows_for(&s, &["bad", "good"], &["s1"]).await;
    // Two failures within a second: enough failures, not yet an hour without a success.
    fail_all(&s, "bad", t(3_000)).await;
    fail_all(&s, "bad", t(5_000)).await;
    assert!(!health(&s, "bad", t(6_000)).await.paused);
    // Still failing an hour after the streak began: paused with the batch.
    let later = t(3_000) + Duration::hours(1);
    fail_all(&s, "bad", later).await;
    let h = health(&s, "bad", later).await;
    assert!(h.paused);
    assert_eq!(
        (h.paused_by, h.paused_at),
        (Some(PausedBy::HealthPolicy), Some(later))
    );
    let stored = s
        .clients
        .get_client(&ClientId::new("bad"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.paused_by, Some(PausedBy::HealthPolicy));
    assert_eq!(s.client_health.auto_pauses(), 1);
    // The pause's operator event was written with it.
    let events = s
        .operator_events
        .list_events(&OperatorEventFilter::default(), None, 10)
        .await
        .unwrap()
        .items;
    let paused: Vec<_> = events
        .iter()
        .filter(|e| e.kind == OperatorEventType::ClientPaused)
        .map(|e| (&e.data, e.created_at))
        .collect();
    assert_eq!(
        paused,
        [(
            &serde_json::json!({"client_id": "bad", "paused_by": "health_policy"}),
            later
        )]
    );
    // Its row is held; the other client's row is still claimed.
    let claimed = claim(&s, later + Duration::hours(1)).await;
    assert!(
        claimed
            .iter()
            .all(|c| c.client.client_id.as_str() == "good")
    );
    assert!(!health(&s, "good", later).await.paused);
}

pub async fn resume_releases_held_rows_in_write_order_with_a_fresh_budget(s: Stores) {
    s.client_health.set_health_policy(Some(HealthPolicy {
        pause_after: Duration::zero(),
        min_failures: 3,
    }));
    register(&s, &[client("c1")]).await;
    rows_for(&s, &["c1"], &["s1", "s2", "s3"]).await;
    // Each row fails, the first written retried last.
    let claimed = claim(&s, t(3_000)).await;
    let results: Vec<AttemptResult> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut r = result(c, t(3_000), false, 30);
            r.decision = Decision::RetryAt(t(60_000 - 1_000 * i64::try_from(i).unwrap()));
            r
        })
        .collect();
    s.queue.record(&results).await.unwrap();
    let paused = health(&s, "c1", t(4_000)).await;
    assert_eq!(
        (paused.paused, paused.paused_by),
        (true, Some(PausedBy::HealthPolicy))
    );

    let resumed = s
        .clients
        .set_paused(&ClientId::new("c1"), false, t(100_000))
        .await
        .unwrap();
    assert_eq!(
        (resumed.paused, resumed.paused_by, resumed.paused_at),
        (false, None, None)
    );
    let rows = s
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .unwrap()
        .items;
    assert!(
        rows.iter()
            .all(|d| d.attempts == 0 && d.next_attempt_at == Some(t(100_000)))
    );
    let h = health(&s, "c1", t(100_000)).await;
    assert_eq!((h.failures_since_success, h.failing_since), (0, None));
    assert_eq!(h.failures, 3, "the window's counts are kept");

    let released = claim(&s, t(100_000)).await;
    let order: Vec<String> = released.iter().map(|c| c.delivery.id.to_string()).collect();
    let written: Vec<String> = rows.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(order, written);
    // One more failure does not pause it again: the streak restarted at the resume.
    let again = result(&released[0], t(100_500), false, 30);
    s.queue.record(&[again]).await.unwrap();
    let h = health(&s, "c1", t(101_000)).await;
    assert_eq!((h.paused, h.failures_since_success), (false, 1));
}

pub async fn an_operator_pause_is_recorded_and_kept_when_paused_again(s: Stores) {
    register(&s, &[client("c1")]).await;
    let paused = s
        .clients
        .set_paused(&ClientId::new("c1"), true, t(5_000))
        .await
        .unwrap();
    assert_eq!(
        (paused.paused, paused.paused_by, paused.paused_at),
        (true, Some(PausedBy::Operator), Some(t(5_000)))
    );
    let again = s
        .clients
        .set_paused(&ClientId::new("c1"), true, t(9_000))
        .await
        .unwrap();
    assert_eq!(again.paused_at, Some(t(5_000)));
    let stored = s
        .clients
        .get_client(&ClientId::new("c1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.paused_by, stored.paused_at),
        (Some(PausedBy::Operator), Some(t(5_000)))
    );
    let missing = s
        .clients
        .set_paused(&ClientId::new("zz"), true, t(9_000))
        .await;
    assert!(matches!(missing, Err(logoutd_core::StoreError::NotFound)));
}

pub async fn deleting_a_client_deletes_its_health(s: Stores) {
    register(&s, &[client("c1")]).await;
    rows_for(&s, &["c1"], &["s1"]).await;
    fail_all(&s, "c1", t(3_000)).await;
    assert_eq!(health(&s, "c1", t(4_000)).await.attempts, 1);
    s.clients
        .delete_client(&ClientId::new("c1"), t(5_000))
        .await
        .unwrap();
    register(&s, &[client("c1")]).await;
    let h = health(&s, "c1", t(6_000)).await;
    assert_eq!(
        (h.attempts, h.failures_since_success, h.last_failure_at),
        (0, 0, None)
    );
}

pub async fn health_buckets_older_than_the_window_are_pruned(s: Stores) {
    register(&s, &[client("c1")]).await;
    rows_for(&s, &["c1"], &["s1"]).await;
    fail_all(&s, "c1", t(3_000)).await;
    let in_window = t(3_000) + Duration::hours(23);
    assert_eq!(s.housekeeping.prune_health(in_window).await.unwrap(), 0);
    assert_eq!(health(&s, "c1", in_window).await.attempts, 1);
    let later = t(3_000) + Duration::hours(25);
    assert_eq!(health(&s, "c1", later).await.attempts, 0);
    assert!(s.housekeeping.prune_health(later).await.unwrap() > 0);
    let h = health(&s, "c1", later).await;
    assert_eq!((h.attempts, h.last_failure_at), (0, Some(t(3_000))));
}
