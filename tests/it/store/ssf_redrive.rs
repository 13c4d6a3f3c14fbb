//! Conformance cases for the operator's side of the SET outbox: the bulk re-drive of failed
//! SETs (its filters, its batches, and the idempotency keys it shares with the deliveries'),
//! and the counts behind the SET gauges.

use super::claims::lease;
use super::fixtures::*;
use super::ssf::{new_set, push, receiver_with_stream};
use super::ssf_delivery::{delivered, poll_of};
use chrono::{DateTime, Duration, Utc};
use logoutd_core::{
    BulkRedrive, ClaimedSet, Decision, FailedFilter, FailedSetFilter, IdempotentRequest, Initiator,
    OutboxStats, PushRoom, SetKind, SetResult, SetState, StoredSet, Stores, StreamDelivery,
    Terminal,
};

/// A 410 for `claim` at `at`: given up at once, the row failed.
fn given_up(claim: &ClaimedSet, at: DateTime<Utc>) -> SetResult {
    SetResult {
        id: claim.row.set.id.clone(),
        lease: claim.lease.clone(),
        decision: Decision::GiveUp(Terminal::Refused(410).into()),
        status: Some(410),
        error: Some("status 410".to_owned()),
        at,
    }
}

/// Row `id` as stored.
async fn row(s: &Stores, id: &str) -> StoredSet {
    s.ssf.get_set(id).await.unwrap().unwrap()
}

/// A bulk re-drive of the SETs matching `filter` at `now`, without a key.
async fn redrive(s: &Stores, filter: &FailedSetFilter, now: DateTime<Utc>) -> BulkRedrive {
    s.redrives
        .redrive_failed_sets(filter, None, now)
        .await
        .unwrap()
}

/// The claim of stream `stream` whose row is of `kind` and, for a session end, of session
/// `sid`.
fn find<'a>(claims: &'a [ClaimedSet], stream: &str, kind: SetKind, sid: &str) -> &'a ClaimedSet {
    claims
        .iter()
        .find(|c| {
            c.row.set.stream_id == stream
                && c.row.set.kind == kind
                && (kind != SetKind::SessionRevoked || c.row.set.payload["sid"] == sid)
        })
        .unwrap()
}

pub async fn bulk_set_redrive_takes_exactly_the_failed_rows_matching_every_filter(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    receiver_with_stream(&s, "r", push("r")).await;
    register(&s, &[client("c1")]).await;
    for (id, at) in [("s1", 1_000), ("s2", 2_000)] {
        create(&s, &session(id, "u1", &["c1"])).await;
        end(&s, id, Initiator::RpLogout, t(at)).await;
    }
    let verification = new_set("p", SetKind::Verification, t(3_000));
    let min = Duration::seconds(10);
    s.ssf
        .request_verification("p", "st-p", &verification, min, t(3_000))
        .await
        .unwrap();
    let claims = s
        .ssf
        .claim_push(t(4_000), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(claims.len(), 5);
    let p1 = find(&claims, "st-p", SetKind::SessionRevoked, "s1");
    let p2 = find(&claims, "st-p", SetKind::SessionRevoked, "s2");
    let pv = find(&claims, "st-p", SetKind::Verification, "");
    let r1 = find(&claims, "st-r", SetKind::SessionRevoked, "s1");
    let r2 = find(&claims, "st-r", SetKind::SessionRevoked, "s2");
    for (claim, at) in [(p1, 5_000), (pv, 5_000), (r1, 5_000), (p2, 7_000)] {
        assert!(s.ssf.record_set(&given_up(claim, t(at))).await.unwrap());
    }
    assert!(s.ssf.record_set(&delivered(r2, t(5_000))).await.unwrap());

    // Every filter at once: the stream's session_revoked row that failed in the window.
    let narrow = FailedSetFilter {
        stream_id: Some("st-p".to_owned()),
        receiver_id: Some("p".to_owned()),
        kind: Some(SetKind::SessionRevoked),
        failed_since: Some(t(5_000)),
        failed_before: Some(t(7_000)),
    };
    let wakeup = s.ssf_wake.clone();
    let woken = wakeup.notified();
    assert_eq!(
        redrive(&s, &narrow, t(9_000)).await,
        BulkRedrive::Redriven(1)
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("the SET workers are woken");
    let again = row(&s, &p1.row.set.id).await;
    assert_eq!(
        (again.state, again.attempts, again.next_attempt_at),
        (SetState::Pending, 0, Some(t(9_000)))
    );
    assert_eq!(again.budget_started_at, t(9_000), "a fresh age budget");
    assert_eq!(again.set.jti, p1.row.set.jti, "the jti is kept");
    for claim in [p2, pv, r1] {
        assert_eq!(row(&s, &claim.row.set.id).await.state, SetState::Failed);
    }
    // One filter each.
    let receiver = FailedSetFilter {
        receiver_id: Some("r".to_owned()),
        ..FailedSetFilter::default()
    };
    assert_eq!(
        redrive(&s, &receiver, t(9_100)).await,
        BulkRedrive::Redriven(1)
    );
    assert_eq!(row(&s, &r1.row.set.id).await.state, SetState::Pending);
    let kind = FailedSetFilter {
        kind: Some(SetKind::Verification),
        ..FailedSetFilter::default()
    };
    assert_eq!(redrive(&s, &kind, t(9_200)).await, BulkRedrive::Redriven(1));
    assert_eq!(row(&s, &pv.row.set.id).await.state, SetState::Pending);
    let before = FailedSetFilter {
        failed_before: Some(t(7_000)),
        ..FailedSetFilter::default()
    };
    assert_eq!(
        redrive(&s, &before, t(9_300)).await,
        BulkRedrive::Redriven(0)
    );
    let all = FailedSetFilter::default();
    assert_eq!(redrive(&s, &all, t(9_400)).await, BulkRedrive::Redriven(1));
    assert_eq!(row(&s, &p2.row.set.id).await.state, SetState::Pending);
    assert_eq!(redrive(&s, &all, t(9_500)).await, BulkRedrive::Redriven(0));
    assert_eq!(
        row(&s, &r2.row.set.id).await.state,
        SetState::Delivered,
        "only failed rows"
    );
    // The re-driven rows are pushed again.
    let pushed = s
        .ssf
        .claim_push(t(9_500), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(pushed.len(), 4);
}

pub async fn bulk_set_redrive_pages_through_more_than_one_batch_once_each(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    register(&s, &[client("c1")]).await;
    let n = 501;
    for i in 0..n {
        create(&s, &session(&format!("s{i:04}"), "u1", &["c1"])).await;
    }
    end_user(&s, "u1", Initiator::RpLogout, t(2_000)).await;
    let claims = s
        .ssf
        .claim_push(t(2_000), lease(), 1_000, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(claims.len(), n);
    for claim in &claims {
        assert!(s.ssf.record_set(&given_up(claim, t(2_100))).await.unwrap());
    }
    assert_eq!(s.ssf.set_stats(t(2_100)).await.unwrap().failed, n as u64);

    let all = FailedSetFilter::default();
    assert_eq!(
        redrive(&s, &all, t(3_000)).await,
        BulkRedrive::Redriven(n as u64)
    );
    let stats = s.ssf.set_stats(t(3_000)).await.unwrap();
    assert_eq!((stats.pending, stats.failed), (n as u64, 0));
}

pub async fn a_set_redrive_key_replays_and_belongs_to_one_operation(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    register(&s, &[client("c1")]).await;
    create(&s, &session("s1", "u1", &["c1"])).await;
    end(&s, "s1", Initiator::RpLogout, t(1_000)).await;
    let fail = |at: i64| {
        let s = s.clone();
        async move {
            let claims = s
                .ssf
                .claim_push(t(at), lease(), 10, &PushRoom::unlimited())
                .await
                .unwrap();
            assert_eq!(claims.len(), 1);
            s.ssf
                .record_set(&given_up(&claims[0], t(at)))
                .await
                .unwrap();
            claims[0].row.set.id.clone()
        }
    };
    let id = fail(2_000).await;
    let key = |hash: &str| IdempotentRequest {
        key: "key-1".to_owned(),
        request_hash: hash.to_owned(),
        expires_at: t(100_000),
    };
    let all = FailedSetFilter::default();
    let (sets, deliveries, other) = (key("sets"), key("deliveries"), key("other"));
    let first = s.redrives.redrive_failed_sets(&all, Some(&sets), t(3_000));
    assert_eq!(first.await.unwrap(), BulkRedrive::Redriven(1));
    assert_eq!(fail(3_000).await, id);

    let replay = s.redrives.redrive_failed_sets(&all, Some(&sets), t(4_000));
    assert_eq!(replay.await.unwrap(), BulkRedrive::Replayed(1));
    assert_eq!(row(&s, &id).await.state, SetState::Failed, "nothing more");
    // The deliveries' bulk re-drive shares the keys: another request under this one is
    // refused, there or here.
    let none = FailedFilter::default();
    let reused = s
        .redrives
        .redrive_failed(&none, Some(&deliveries), t(4_000));
    assert_eq!(reused.await.unwrap(), BulkRedrive::KeyReused);
    let reused = s.redrives.redrive_failed_sets(&all, Some(&other), t(4_000));
    assert_eq!(reused.await.unwrap(), BulkRedrive::KeyReused);
    assert_eq!(row(&s, &id).await.state, SetState::Failed);
}

pub async fn set_stats_count_waiting_and_dead_rows_and_the_oldest_due(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    receiver_with_stream(&s, "q", StreamDelivery::Poll).await;
    register(&s, &[client("c1")]).await;
    for (id, at) in [("s1", 1_000), ("s2", 2_000)] {
        create(&s, &session(id, "u1", &["c1"])).await;
        end(&s, id, Initiator::RpLogout, t(at)).await;
    }
    let stats = |at: i64| {
        let s = s.clone();
        async move { s.ssf.set_stats(t(at)).await.unwrap() }
    };
    let counts = |st: OutboxStats| (st.pending, st.in_flight, st.failed, st.oldest_due_at);
    assert_eq!(counts(stats(500).await), (4, 0, 0, None), "none due yet");
    assert_eq!(counts(stats(2_500).await), (4, 0, 0, Some(t(1_000))));

    let claims = s
        .ssf
        .claim_push(t(3_000), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(claims.len(), 2);
    assert!(
        s.ssf
            .record_set(&given_up(&claims[0], t(3_100)))
            .await
            .unwrap()
    );
    assert_eq!(
        counts(stats(4_000).await),
        (2, 1, 1, Some(t(1_000))),
        "the poll stream's rows wait for a poll"
    );
    let mut ack = poll_of("q", 10, t(5_000));
    let handed = s.ssf.poll(&ack).await.unwrap();
    ack.ack = handed.rows.iter().map(|r| r.set.jti.clone()).collect();
    ack.max_events = 0;
    s.ssf.poll(&ack).await.unwrap();
    let lease_end = t(3_000) + lease();
    assert_eq!(counts(stats(5_000).await), (0, 1, 1, None));
    assert_eq!(
        counts(stats(40_000).await),
        (0, 1, 1, Some(lease_end)),
        "an expired lease is due"
    );
}
