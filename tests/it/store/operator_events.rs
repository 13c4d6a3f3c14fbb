//! Conformance cases for operator events: written in the transaction of their cause (a pause
//! or resume, a dead letter), claimed under a lease, their webhook results recorded with the
//! retry decision, re-driven, pruned.

use super::claims::{lease, result};
use super::fixtures::*;
use logoutd_core::{ClientId, OperatorEvent, PausedBy};
use logoutd_core::{
    Decision, EventRedrive, OperatorEventFilter, OperatorEventId, OperatorEventResult,
    OperatorEventState, OperatorEventType, Stores, Terminal,
};

/// Every event, oldest first.
async fn events(s: &Stores) -> Vec<OperatorEvent> {
    let filter = OperatorEventFilter::default();
    s.operator_events
        .list_events(&filter, None, 100)
        .await
        .unwrap()
        .items
}

/// A webhook result for a claimed event.
fn webhook_result(
    c: &logoutd_core::ClaimedOperatorEvent,
    at: i64,
    status: u16,
    decision: Decision,
) -> OperatorEventResult {
    OperatorEventResult {
        id: c.event.id.clone(),
        lease: c.lease.clone(),
        decision,
        status: Some(status),
        error: Some(format!("status {status}")),
        at: t(at),
    }
}

/// A pause or resume writes one event in its transaction, only when `paused` changes.
pub async fn pause_and_resume_write_one_event_each_only_on_change(s: Stores) {
    register(&s, &[client("rp")]).await;
    let rp = ClientId::new("rp");
    s.clients.set_paused(&rp, true, t(1_000)).await.unwrap();
    s.clients.set_paused(&rp, true, t(1_100)).await.unwrap();
    // A settings change neither writes an event nor undoes the pause.
    s.clients
        .update_client(&client("rp"), t(1_150))
        .await
        .unwrap();
    let kept = s.clients.get_client(&rp).await.unwrap().unwrap();
    assert_eq!(
        (kept.paused, kept.paused_by),
        (true, Some(PausedBy::Operator))
    );
    s.clients.set_paused(&rp, false, t(1_200)).await.unwrap();
    s.clients.set_paused(&rp, false, t(1_250)).await.unwrap();
    let all = events(&s).await;
    let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            OperatorEventType::ClientPaused,
            OperatorEventType::ClientResumed
        ]
    );
    assert_eq!(
        all[0].data,
        serde_json::json!({"client_id": "rp", "paused_by": "operator"})
    );
    assert_eq!(all[1].data["paused_by"], "operator");
    assert_eq!(
        (all[0].state, all[0].attempts, all[0].created_at),
        (OperatorEventState::Pending, 0, t(1_000))
    );
    assert_eq!(all[0].next_attempt_at, Some(t(1_000)));
    assert_eq!(s.operator_events.pending_events().await.unwrap(), 2);
    let counts = s.event_tally.snapshot();
    assert!(
        counts.contains(&(OperatorEventType::ClientPaused, 1)),
        "{counts:?}"
    );
    // An unknown client writes nothing.
    let err = s
        .clients
        .set_paused(&ClientId::new("ghost"), true, t(1_300))
        .await;
    assert!(err.is_err());
    assert_eq!(events(&s).await.len(), 2);
}

/// A result that gives a delivery up writes `delivery.failed` with the row as it stands;
/// a delivered or retried one, or a stale lease, writes nothing.
pub async fn a_dead_letter_writes_delivery_failed_with_it(s: Stores) {
    for id in ["a", "b", "c", "d"] {
        one_row(&s, id, t(2_000)).await;
    }
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let by = |sid: &str| {
        claimed
            .iter()
            .find(|c| c.delivery.session_id.as_str() == sid)
            .unwrap()
    };
    let mut gone = result(
        by("c"),
        2_300,
        410,
        Decision::GiveUp(Terminal::Refused(410).into()),
    );
    gone.attempt.error = Some("gone".into());
    let mut stale = result(
        by("d"),
        2_300,
        410,
        Decision::GiveUp(Terminal::Refused(410).into()),
    );
    stale.lease = logoutd_core::LeaseId::generate();
    let results = [
        result(by("a"), 2_100, 204, Decision::Delivered),
        result(by("b"), 2_200, 503, Decision::RetryAt(t(7_000))),
        gone,
        stale,
    ];
    assert_eq!(s.queue.record(&results).await.unwrap(), 3);
    let all = events(&s).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let e = &all[0];
    assert_eq!(e.kind, OperatorEventType::DeliveryFailed);
    let c = &by("c").delivery;
    assert_eq!(
        e.data,
        serde_json::json!({
            "delivery_id": c.id.as_str(),
            "client_id": "c1",
            "session_id": "c",
            "user_id": "u1",
            "event_id": c.event_id.as_str(),
            "initiator": "rp-logout",
            "attempts": 1,
            "last_status": 410,
            "last_error": "status 410: the RP refused the request",
        })
    );
    // A row given up without an attempt (its age budget ran out waiting) writes one too.
    let d = by("d");
    let failed = s
        .queue
        .give_up(
            &[(d.delivery.id.clone(), d.lease.clone())],
            "age budget",
            t(3_000),
        )
        .await
        .unwrap();
    assert_eq!(failed, 1);
    let all = events(&s).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].data["delivery_id"], d.delivery.id.as_str());
    assert_eq!(all[1].data["last_error"], "age budget");
    assert_eq!(all[1].data["attempts"], 0);
}

/// Due events are claimed oldest first under a lease; a claimed one is not claimed again
/// until its lease ends, and a result under the old lease is then ignored.
pub async fn events_are_claimed_under_a_lease_oldest_first(s: Stores) {
    register(&s, &[client("a"), client("b")]).await;
    for (id, at) in [("a", 1_000), ("b", 1_100)] {
        s.clients
            .set_paused(&ClientId::new(id), true, t(at))
            .await
            .unwrap();
    }
    let first = s
        .operator_events
        .claim_events(t(2_000), lease(), 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].event.data["client_id"], "a");
    assert_eq!(first[0].event.state, OperatorEventState::InFlight);
    assert_eq!(first[0].budget_started_at, t(1_000));
    let second = s
        .operator_events
        .claim_events(t(2_000), lease(), 5)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event.data["client_id"], "b");
    assert!(
        s.operator_events
            .claim_events(t(2_000), lease(), 5)
            .await
            .unwrap()
            .is_empty()
    );
    // The lease ends: the event is claimed again, and the old claim's result is ignored.
    let again = s
        .operator_events
        .claim_events(t(40_000), lease(), 5)
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    let old = webhook_result(&first[0], 40_100, 204, Decision::Delivered);
    assert!(!s.operator_events.record_event(&old).await.unwrap());
    let released = s
        .operator_events
        .release_events(
            &again
                .iter()
                .map(|c| (c.event.id.clone(), c.lease.clone()))
                .collect::<Vec<_>>(),
            t(40_200),
        )
        .await
        .unwrap();
    assert_eq!(released, 2);
    let pending = s
        .operator_events
        .get_event(&first[0].event.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (pending.state, pending.attempts, pending.next_attempt_at),
        (OperatorEventState::Pending, 0, Some(t(40_200)))
    );
}

/// Webhook results move events as the retry decision says, and a failed one is re-driven
/// with a fresh budget; other states and unknown ids are refused.
pub async fn webhook_results_follow_the_decision_and_failed_ones_are_redriven(s: Stores) {
    register(&s, &[client("a"), client("b"), client("c")]).await;
    for id in ["a", "b", "c"] {
        s.clients
            .set_paused(&ClientId::new(id), true, t(1_000))
            .await
            .unwrap();
    }
    let claimed = s
        .operator_events
        .claim_events(t(2_000), lease(), 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let outcomes = [
        webhook_result(&claimed[0], 2_100, 204, Decision::Delivered),
        webhook_result(&claimed[1], 2_100, 503, Decision::RetryAt(t(9_000))),
        webhook_result(
            &claimed[2],
            2_100,
            404,
            Decision::GiveUp(Terminal::Refused(404).into()),
        ),
    ];
    for outcome in &outcomes {
        assert!(s.operator_events.record_event(outcome).await.unwrap());
    }
    let get = |id: &OperatorEventId| {
        let s = s.clone();
        let id = id.clone();
        async move { s.operator_events.get_event(&id).await.unwrap().unwrap() }
    };
    let delivered = get(&claimed[0].event.id).await;
    assert_eq!(
        (delivered.state, delivered.attempts, delivered.delivered_at),
        (OperatorEventState::Delivered, 1, Some(t(2_100)))
    );
    let retry = get(&claimed[1].event.id).await;
    assert_eq!(
        (retry.state, retry.next_attempt_at, retry.last_status),
        (OperatorEventState::Pending, Some(t(9_000)), Some(503))
    );
    let failed = get(&claimed[2].event.id).await;
    assert_eq!(
        (failed.state, failed.attempts),
        (OperatorEventState::Failed, 1)
    );
    assert_eq!(failed.last_error.as_deref(), Some("status 404"));
    let only_failed = OperatorEventFilter {
        state: Some(OperatorEventState::Failed),
        ..Default::default()
    };
    let page = s
        .operator_events
        .list_events(&only_failed, None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(s.operator_events.pending_events().await.unwrap(), 1);

    let ops = &s.operator_events;
    assert_eq!(
        ops.redrive_event(&failed.id, t(5_000)).await.unwrap(),
        EventRedrive::Requeued
    );
    let again = get(&failed.id).await;
    assert_eq!(
        (again.state, again.attempts, again.next_attempt_at),
        (OperatorEventState::Pending, 0, Some(t(5_000)))
    );
    let reclaimed = ops.claim_events(t(5_000), lease(), 5).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].budget_started_at, t(5_000));
    assert_eq!(
        ops.redrive_event(&delivered.id, t(5_000)).await.unwrap(),
        EventRedrive::NotFailed(OperatorEventState::Delivered)
    );
    assert_eq!(
        ops.redrive_event(&OperatorEventId::new("oev_nope"), t(5_000))
            .await
            .unwrap(),
        EventRedrive::NotFound
    );
}

/// Retention deletes delivered and failed events older than its age, and keeps the rest.
pub async fn prune_removes_old_delivered_and_failed_events_only(s: Stores) {
    register(&s, &[client("a"), client("b"), client("c")]).await;
    for id in ["a", "b", "c"] {
        s.clients
            .set_paused(&ClientId::new(id), true, t(1_000))
            .await
            .unwrap();
    }
    let claimed = s
        .operator_events
        .claim_events(t(2_000), lease(), 2)
        .await
        .unwrap();
    let done = [
        webhook_result(&claimed[0], 2_100, 204, Decision::Delivered),
        webhook_result(
            &claimed[1],
            2_100,
            410,
            Decision::GiveUp(Terminal::Refused(410).into()),
        ),
    ];
    for d in &done {
        s.operator_events.record_event(d).await.unwrap();
    }
    assert_eq!(
        s.operator_events.prune_events(t(2_100), 10).await.unwrap(),
        0
    );
    assert_eq!(
        s.operator_events.prune_events(t(3_000), 10).await.unwrap(),
        2
    );
    let left = events(&s).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, OperatorEventState::Pending);
}
