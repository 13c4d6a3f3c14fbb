//! Conformance cases for results, releases, status listings and re-drives.

use super::claims::{lease, result};
use super::fixtures::*;
use logoutd_core::Initiator;
use logoutd_core::{ClientId, DeliveryId, LeaseId, SessionId, UserId};
use logoutd_core::{Decision, RpError, Terminal};
use logoutd_core::{Delivery, DeliveryFilter, DeliveryState, Redrive};
use logoutd_core::{StoreError, Stores};

pub async fn record_applies_decisions(s: Stores) {
    for id in ["a", "b", "c"] {
        one_row(&s, id, t(2_000)).await;
    }
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let by = |sid: &str| {
        claimed
            .iter()
            .find(|c| c.delivery.session_id.as_str() == sid)
            .unwrap()
    };
    let mut give_up = result(
        by("c"),
        2_300,
        400,
        Decision::GiveUp(
            Terminal::Rejected(Some(RpError {
                error: Some("invalid_request".into()),
                error_description: None,
            }))
            .into(),
        ),
    );
    give_up.attempt.error = Some("invalid_request".into());
    let results = [
        result(by("a"), 2_100, 204, Decision::Delivered),
        result(by("b"), 2_200, 503, Decision::RetryAt(t(7_000))),
        give_up,
    ];
    assert_eq!(s.queue.record(&results).await.unwrap(), 3);
    let a = s
        .deliveries
        .get_delivery(&by("a").delivery.id)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(
        (a.state, a.attempts, a.last_status),
        (DeliveryState::Delivered, 1, Some(204))
    );
    assert_eq!((a.delivered_at, a.next_attempt_at), (Some(t(2_100)), None));
    let b = s
        .deliveries
        .get_delivery(&by("b").delivery.id)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(
        (b.state, b.attempts, b.last_status),
        (DeliveryState::Pending, 1, Some(503))
    );
    assert_eq!((b.delivered_at, b.next_attempt_at), (None, Some(t(7_000))));
    let c = s
        .deliveries
        .get_delivery(&by("c").delivery.id)
        .await
        .unwrap()
        .unwrap();
    let d = &c.delivery;
    assert_eq!(
        (d.state, d.attempts, d.last_status),
        (DeliveryState::Failed, 1, Some(400))
    );
    assert_eq!(
        d.last_error.as_deref(),
        Some("status 400: the RP rejected the logout token; error=invalid_request")
    );
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(
        c.attempt_history[0].error.as_deref(),
        Some("invalid_request")
    );
    assert_eq!(s.queue.next_due_at().await.unwrap(), Some(t(7_000)));
}

pub async fn record_ignores_stale_and_unknown_leases(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let mut wrong = result(&claimed[0], 2_100, 200, Decision::Delivered);
    wrong.lease = LeaseId::generate();
    let mut unknown = wrong.clone();
    unknown.id = DeliveryId::generate();
    assert_eq!(s.queue.record(&[wrong, unknown]).await.unwrap(), 0);
    assert!(s.queue.record(&[]).await.unwrap() == 0);
    let ok = result(&claimed[0], 2_100, 200, Decision::Delivered);
    assert_eq!(s.queue.record(std::slice::from_ref(&ok)).await.unwrap(), 1);
    assert_eq!(
        s.queue.record(&[ok]).await.unwrap(),
        0,
        "a lease is used once"
    );
    let row = s
        .deliveries
        .get_delivery(&claimed[0].delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.delivery.attempts, row.attempt_history.len()), (1, 1));
}

pub async fn record_counts_only_the_rows_whose_lease_holds(s: Stores) {
    for id in ["s1", "s2", "s3"] {
        one_row(&s, id, t(2_000)).await;
    }
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let mut stale = result(&claimed[1], 2_100, 200, Decision::Delivered);
    stale.lease = LeaseId::generate();
    let batch = [
        result(&claimed[0], 2_100, 200, Decision::Delivered),
        stale,
        result(&claimed[2], 2_100, 503, Decision::RetryAt(t(9_000))),
    ];
    assert_eq!(s.queue.record(&batch).await.unwrap(), 2);
    let mut seen = Vec::new();
    for c in &claimed {
        let row = s
            .deliveries
            .get_delivery(&c.delivery.id)
            .await
            .unwrap()
            .unwrap();
        seen.push((row.delivery.state, row.attempt_history.len()));
    }
    assert_eq!(
        seen,
        [
            (DeliveryState::Delivered, 1),
            (DeliveryState::InFlight, 0),
            (DeliveryState::Pending, 1)
        ]
    );
}

pub async fn attempt_history_is_oldest_first(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    let mut expected = Vec::new();
    for (n, status) in [500u16, 429, 200].into_iter().enumerate() {
        let at = 10_000 * (n as i64 + 1);
        let claimed = s.queue.claim_due(t(at), lease(), 1).await.unwrap();
        let decision = match status {
            200 => Decision::Delivered,
            _ => Decision::RetryAt(t(at + 5_000)),
        };
        let r = result(&claimed[0], at + 1, status, decision);
        expected.push(r.attempt.clone());
        assert_eq!(s.queue.record(&[r]).await.unwrap(), 1);
    }
    let id = s
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 1)
        .await
        .unwrap();
    let row = s
        .deliveries
        .get_delivery(&id.items[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempt_history, expected);
    assert_eq!(row.delivery.attempts, 3);
    assert_eq!(row.delivery.state, DeliveryState::Delivered);
    assert_eq!(
        s.deliveries
            .get_delivery(&DeliveryId::new("nope"))
            .await
            .unwrap(),
        None
    );
}

pub async fn release_returns_rows_without_counting_an_attempt(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    one_row(&s, "s2", t(2_000)).await;
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let mut leases: Vec<_> = claimed
        .iter()
        .map(|c| (c.delivery.id.clone(), c.lease.clone()))
        .collect();
    leases.push((claimed[0].delivery.id.clone(), LeaseId::generate()));
    assert_eq!(s.queue.release(&leases, t(2_500)).await.unwrap(), 2);
    let again = s.queue.claim_due(t(2_500), lease(), 10).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| c.delivery.attempts == 0));
    let stale = result(&claimed[0], 2_600, 200, Decision::Delivered);
    assert_eq!(s.queue.record(&[stale]).await.unwrap(), 0);
}

pub async fn next_due_at_tracks_pending_and_leased_rows(s: Stores) {
    assert_eq!(s.queue.next_due_at().await.unwrap(), None);
    one_row(&s, "s1", t(5_000)).await;
    one_row(&s, "s2", t(3_000)).await;
    assert_eq!(s.queue.next_due_at().await.unwrap(), Some(t(3_000)));
    let claimed = s.queue.claim_due(t(3_000), lease(), 1).await.unwrap();
    assert_eq!(s.queue.next_due_at().await.unwrap(), Some(t(5_000)));
    let claimed_late = s.queue.claim_due(t(5_000), lease(), 1).await.unwrap();
    assert_eq!(s.queue.next_due_at().await.unwrap(), Some(t(33_000)));
    let done = [
        result(&claimed[0], 3_100, 200, Decision::Delivered),
        result(&claimed_late[0], 5_100, 200, Decision::Delivered),
    ];
    s.queue.record(&done).await.unwrap();
    assert_eq!(s.queue.next_due_at().await.unwrap(), None);
}

/// Every row matching `filter`.
async fn list(s: &Stores, filter: DeliveryFilter) -> Vec<Delivery> {
    s.deliveries
        .list_deliveries(&filter, None, 100)
        .await
        .unwrap()
        .items
}

pub async fn deliveries_filter_and_page_by_id(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    for (id, user) in [("s1", "u1"), ("s2", "u1"), ("s3", "u2")] {
        s.sessions
            .create_session(&session(id, user, &["c1", "c2"]))
            .await
            .unwrap();
        end(&s, id, Initiator::RpLogout, t(2_000)).await;
    }
    let claimed = s.queue.claim_due(t(2_000), lease(), 1).await.unwrap();
    let all = list(&s, DeliveryFilter::default()).await;
    assert_eq!(all.len(), 6);
    let ids: Vec<_> = all.iter().map(|d| d.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let u2 = DeliveryFilter {
        user_id: Some(UserId::new("u2")),
        ..Default::default()
    };
    assert!(
        list(&s, u2)
            .await
            .iter()
            .all(|d| d.session_id.as_str() == "s3")
    );
    let in_flight = DeliveryFilter {
        state: Some(DeliveryState::InFlight),
        ..Default::default()
    };
    let flying = list(&s, in_flight).await;
    assert_eq!(flying.len(), 1);
    assert_eq!(flying[0].id, claimed[0].delivery.id);
    let combined = DeliveryFilter {
        client_id: Some(ClientId::new("c2")),
        session_id: Some(SessionId::new("s2")),
        user_id: Some(UserId::new("u1")),
        ..Default::default()
    };
    let one = list(&s, combined).await;
    assert_eq!(one.len(), 1);
    assert_eq!(
        (one[0].client_id.as_str(), one[0].session_id.as_str()),
        ("c2", "s2")
    );

    let paged: Vec<_> = all_deliveries(&s, 4)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(paged, ids);
}

pub async fn redrive_requeues_failed_rows_only(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    one_row(&s, "s2", t(2_000)).await;
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let results = [
        result(
            &claimed[0],
            2_100,
            410,
            Decision::GiveUp(Terminal::Refused(410).into()),
        ),
        result(&claimed[1], 2_100, 200, Decision::Delivered),
    ];
    s.queue.record(&results).await.unwrap();
    let missing = s.redrives.redrive(&DeliveryId::new("nope"), t(9_000)).await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
    let delivered = s
        .redrives
        .redrive(&claimed[1].delivery.id, t(9_000))
        .await
        .unwrap();
    assert_eq!(delivered, Redrive::NotFailed(DeliveryState::Delivered));

    let wakeup = s.queue.wakeup();
    let failed = &claimed[0].delivery.id;
    assert_eq!(
        s.redrives.redrive(failed, t(9_000)).await.unwrap(),
        Redrive::Requeued
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), wakeup.notified())
        .await
        .unwrap();
    let row = s.deliveries.get_delivery(failed).await.unwrap().unwrap();
    assert_eq!(
        (row.delivery.state, row.delivery.attempts),
        (DeliveryState::Pending, 0)
    );
    assert_eq!(row.delivery.next_attempt_at, Some(t(9_000)));
    assert_eq!(row.delivery.created_at, t(2_000));
    assert_eq!(row.attempt_history.len(), 1, "history is kept");
    let again = s.queue.claim_due(t(9_000), lease(), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].budget_started_at, t(9_000));
    let pending = s.redrives.redrive(failed, t(9_500)).await.unwrap();
    assert_eq!(pending, Redrive::NotFailed(DeliveryState::InFlight));
}

/// The rows one end wrote, read by session or by user, leaving out another end's rows of the
/// same user; each as last recorded.
pub async fn event_progress_lists_the_rows_of_one_end_in_id_order(s: Stores) {
    use logoutd_core::{EndTarget, EventId};
    register(&s, &[client("c1"), client("c2")]).await;
    create(&s, &session("early", "u1", &["c1"])).await;
    let first = EventId::generate();
    let user = EndTarget::User(UserId::new("u1"));
    s.sessions
        .end_sessions(&user, Initiator::RpLogout, &first, t(1_000))
        .await
        .unwrap();
    create(&s, &session("a", "u1", &["c1", "c2"])).await;
    create(&s, &session("b", "u1", &["c1"])).await;
    let second = EventId::generate();
    let report = s
        .sessions
        .end_sessions(&user, Initiator::RpLogout, &second, t(2_000))
        .await
        .unwrap();
    assert_eq!(report.deliveries, 3);

    let rows = s.deliveries.event_progress(&user, &second).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id), "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.state == DeliveryState::Pending && r.attempts == 0 && !r.settled()),
        "{rows:?}"
    );
    let of_a = EndTarget::Session(SessionId::new("a"));
    let a_rows = s.deliveries.event_progress(&of_a, &second).await.unwrap();
    let mut clients: Vec<&str> = a_rows.iter().map(|r| r.client_id.as_str()).collect();
    clients.sort_unstable();
    assert_eq!(clients, ["c1", "c2"]);
    assert!(
        s.deliveries
            .event_progress(&of_a, &first)
            .await
            .unwrap()
            .is_empty()
    );
    let early = s.deliveries.event_progress(&user, &first).await.unwrap();
    assert_eq!(early.len(), 1);

    let claimed = s.queue.claim_due(t(3_000), lease(), 10).await.unwrap();
    let mine = claimed
        .iter()
        .find(|c| c.delivery.session_id.as_str() == "b")
        .unwrap();
    let done = [result(mine, 3_100, 204, Decision::Delivered)];
    assert_eq!(s.queue.record(&done).await.unwrap(), 1);
    let rows = s.deliveries.event_progress(&user, &second).await.unwrap();
    let b = rows.iter().find(|r| r.id == mine.delivery.id).unwrap();
    assert_eq!(
        (b.state, b.attempts, b.last_status, b.settled()),
        (DeliveryState::Delivered, 1, Some(204), true)
    );
    assert!(
        rows.iter()
            .filter(|r| r.id != mine.delivery.id)
            .all(|r| r.state == DeliveryState::InFlight && !r.settled()),
        "{rows:?}"
    );
}
