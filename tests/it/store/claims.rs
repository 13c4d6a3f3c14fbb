//! Conformance cases for claiming: due order, leases, pausing and concurrent claimers.

use super::fixtures::*;
use chrono::Duration;
use logoutd_core::Decision;
use logoutd_core::Initiator;
use logoutd_core::Stores;
use logoutd_core::{AttemptResult, ClaimedDelivery, DeliveryFilter, DeliveryState};
use logoutd_core::{ClientId, DeliveryId, SessionId};
use std::collections::HashSet;

/// The 30-second lease every case claims with.
pub fn lease() -> Duration {
    Duration::seconds(30)
}

/// A result for a claimed row.
pub fn result(c: &ClaimedDelivery, at: i64, status: u16, decision: Decision) -> AttemptResult {
    AttemptResult {
        id: c.delivery.id.clone(),
        lease: c.lease.clone(),
        attempt: attempt(t(at), Some(status), None),
        decision,
    }
}

pub async fn claims_due_rows_oldest_first_under_a_lease(s: Stores) {
    one_row(&s, "late", t(5_000)).await;
    one_row(&s, "early", t(2_000)).await;
    one_row(&s, "mid", t(3_000)).await;
    let claimed = s.queue.claim_due(t(6_000), lease(), 2).await.unwrap();
    let sessions: Vec<_> = claimed
        .iter()
        .map(|c| c.delivery.session_id.to_string())
        .collect();
    assert_eq!(sessions, ["early", "mid"]);
    let first = &claimed[0];
    assert_eq!(first.delivery.state, DeliveryState::InFlight);
    assert_eq!(first.delivery.next_attempt_at, Some(t(36_000)));
    assert_eq!(first.delivery.attempts, 0);
    assert_eq!(*first.client, client("c1"));
    assert_eq!(first.session_metadata, meta(&[("tenant", "acme")]));
    assert_eq!(first.budget_started_at, t(2_000));
    let stored = s
        .deliveries
        .get_delivery(&first.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.delivery, first.delivery);
    let rest = s.queue.claim_due(t(6_000), lease(), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].delivery.session_id, SessionId::new("late"));
    assert!(
        s.queue
            .claim_due(t(6_000), lease(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn rows_not_yet_due_are_not_claimed(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    assert!(
        s.queue
            .claim_due(t(1_999), lease(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let retry = result(&claimed[0], 2_100, 503, Decision::RetryAt(t(9_000)));
    assert_eq!(s.queue.record(&[retry]).await.unwrap(), 1);
    assert!(
        s.queue
            .claim_due(t(8_999), lease(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.queue
            .claim_due(t(9_000), lease(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn paused_client_rows_stay_pending_until_resumed(s: Stores) {
    register(&s, &[client("c2")]).await;
    one_row(&s, "s1", t(2_000)).await;
    s.sessions
        .create_session(&session("s2", "u1", &["c2"]))
        .await
        .unwrap();
    end(&s, "s2", Initiator::RpLogout, t(2_000)).await;
    s.clients
        .set_paused(&ClientId::new("c1"), true, t(2_500))
        .await
        .unwrap();
    let claimed = s.queue.claim_due(t(3_000), lease(), 10).await.unwrap();
    let clients: Vec<_> = claimed
        .iter()
        .map(|c| c.client.client_id.to_string())
        .collect();
    assert_eq!(clients, ["c2"]);
    assert!(
        s.queue
            .claim_due(t(3_000), lease(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let filter = DeliveryFilter {
        client_id: Some(ClientId::new("c1")),
        ..Default::default()
    };
    let rows = s
        .deliveries
        .list_deliveries(&filter, None, 10)
        .await
        .unwrap()
        .items;
    assert_eq!(rows[0].state, DeliveryState::Pending);
    let c2_lease_end = Some(t(33_000));
    assert_eq!(
        s.queue.next_due_at().await.unwrap(),
        c2_lease_end,
        "paused rows do not count"
    );
    s.clients
        .set_paused(&ClientId::new("c1"), false, t(4_000))
        .await
        .unwrap();
    // Resuming makes the held row due at once, with a fresh budget.
    assert_eq!(s.queue.next_due_at().await.unwrap(), Some(t(4_000)));
    let resumed = s.queue.claim_due(t(4_000), lease(), 10).await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert!(!resumed[0].client.paused);
}

pub async fn expired_lease_is_reclaimed_and_old_result_ignored(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    let first = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    assert!(
        s.queue
            .claim_due(t(31_999), lease(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let second = s.queue.claim_due(t(32_000), lease(), 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].delivery.id, first[0].delivery.id);
    assert_ne!(second[0].lease, first[0].lease);
    assert_eq!(second[0].delivery.next_attempt_at, Some(t(62_000)));
    let stale = result(&first[0], 40_000, 200, Decision::Delivered);
    assert_eq!(s.queue.record(&[stale]).await.unwrap(), 0);
    let row = s
        .deliveries
        .get_delivery(&first[0].delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.delivery.state, DeliveryState::InFlight);
    assert!(row.attempt_history.is_empty());
    let current = result(&second[0], 41_000, 204, Decision::Delivered);
    assert_eq!(s.queue.record(&[current]).await.unwrap(), 1);
}

pub async fn concurrent_claimers_never_share_a_row(s: Stores) {
    let clients: Vec<_> = (0..4).map(|i| client(&format!("c{i}"))).collect();
    register(&s, &clients).await;
    let names = ["c0", "c1", "c2", "c3"];
    for n in 0..25 {
        let id = format!("s{n:02}");
        s.sessions
            .create_session(&session(&id, "u1", &names))
            .await
            .unwrap();
        end(&s, &id, Initiator::RpLogout, t(2_000 + n)).await;
    }
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let outbox = s.queue.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = outbox.claim_due(t(10_000), lease(), 7).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.delivery.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut all: Vec<DeliveryId> = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 100);
    assert_eq!(unique.len(), 100);
}

pub async fn a_claim_gives_each_row_the_metadata_of_its_own_session(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    let snapshots = [
        ("s-a", meta(&[("tenant", "acme")])),
        ("s-b", meta(&[("tenant", "other"), ("plan", "gold")])),
        ("s-c", meta(&[("tenant", "acme")])),
        ("s-d", meta(&[])),
        ("s-e", meta(&[("tenant", "other"), ("plan", "gold")])),
    ];
    for (id, metadata) in &snapshots {
        let mut sess = session(id, "u", &["c1", "c2"]);
        sess.session_metadata = metadata.clone();
        create(&s, &sess).await;
    }
    end_user(&s, "u", Initiator::RpLogout, t(2_000)).await;
    let claimed = s.queue.claim_due(t(3_000), lease(), 100).await.unwrap();
    assert_eq!(claimed.len(), 10);
    for c in &claimed {
        let (_, expected) = snapshots
            .iter()
            .find(|(id, _)| c.delivery.session_id.as_str() == *id)
            .unwrap();
        assert_eq!(&c.session_metadata, expected, "{}", c.delivery.session_id);
    }
}

/// Text that JSON must escape reaches the claim unchanged, whichever way the store carries it
/// from the session to the claimed row.
pub async fn text_that_needs_escaping_reaches_the_claim_unchanged(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    let tricky = meta(&[
        ("quote", "say \"hi\" \\ back\\"),
        ("lines", "one\ntwo\tthree\r\u{1}\u{1f}"),
        ("unicode", "é ß 日本 😀 \u{2028}"),
        ("markup", "</script><!-- ' -->"),
    ]);
    let user = "usér \"q\" 😀";
    let mut sess = session("s-\"tricky\"-é", user, &["c1", "c2"]);
    sess.session_metadata = tricky.clone();
    sess.device.last_user_agent = Some("Agent \"x\" \\ é".to_owned());
    create(&s, &sess).await;
    create(&s, &session("s-none", user, &[])).await;
    let report = end_user(&s, user, Initiator::RpLogout, t(2_000)).await;
    assert_eq!((report.sessions_ended, report.deliveries), (2, 2));
    let ended = stored(&s, "s-\"tricky\"-é").await;
    assert_eq!(ended.device, sess.device);
    assert_eq!(ended.session_metadata, tricky);
    let claimed = s.queue.claim_due(t(3_000), lease(), 100).await.unwrap();
    assert_eq!(claimed.len(), 2);
    for c in &claimed {
        assert_eq!(c.session_metadata, tricky);
        assert_eq!(c.delivery.session_id.as_str(), "s-\"tricky\"-é");
        assert_eq!(c.delivery.user_id.as_str(), user);
    }
}
