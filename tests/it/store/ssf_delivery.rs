//! Conformance cases for the delivery of SET rows: push claims under a lease (RFC 8935), polls
//! with acks and errors (RFC 8936 §2.4), verification's minimum interval (SSF §8.1.4.2),
//! re-drives and pruning.

use super::claims::lease;
use super::fixtures::*;
use super::ssf::{new_set, push, receiver_with_stream, sets_of, waiting_sets};
use chrono::{DateTime, Duration, Utc};
use logoutd_core::PushRoom;
use logoutd_core::{
    ClaimedSet, Decision, Initiator, PollRequest, SetError, SetFilter, SetKind, SetRedrive,
    SetResult, SetState, Stores, StreamDelivery, StreamStatus, Terminal, VerifyOutcome,
};

/// A poll by `receiver` of its stream `st-{receiver}` at `now`, taking up to `max`, with a
/// 60 s lease.
pub fn poll_of(receiver: &str, max: usize, now: DateTime<Utc>) -> PollRequest {
    PollRequest {
        stream_id: format!("st-{receiver}"),
        receiver_id: receiver.to_owned(),
        ack: Vec::new(),
        set_errs: Vec::new(),
        max_events: max,
        lease: Duration::seconds(60),
        now,
    }
}

/// A push result for `claim` at `at`.
fn push_result(
    claim: &ClaimedSet,
    at: DateTime<Utc>,
    status: u16,
    decision: Decision,
) -> SetResult {
    SetResult {
        id: claim.row.set.id.clone(),
        lease: claim.lease.clone(),
        decision,
        status: Some(status),
        error: (status >= 300).then(|| format!("status {status}")),
        at,
    }
}

/// A 202 for `claim` at `at`.
pub fn delivered(claim: &ClaimedSet, at: DateTime<Utc>) -> SetResult {
    push_result(claim, at, 202, Decision::Delivered)
}

/// Ends sessions `ids` of user `u1` (client `c1`) one after the other, 1 s apart from `t(1_000)`.
async fn end_sessions(s: &Stores, ids: &[&str]) {
    register(s, &[client("c1")]).await;
    for (i, id) in ids.iter().enumerate() {
        create(s, &session(id, "u1", &["c1"])).await;
        end(s, id, Initiator::RpLogout, t(1_000 + 1_000 * i as i64)).await;
    }
}

pub async fn push_rows_are_claimed_under_a_lease_recorded_released_and_reclaimed(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    receiver_with_stream(&s, "q", StreamDelivery::Poll).await;
    end_sessions(&s, &["s1", "s2"]).await;
    // Only due rows of push streams, with the stream's delivery as it is now.
    let mut st = s.ssf.get_stream("st-p").await.unwrap().unwrap();
    st.delivery = StreamDelivery::Push {
        endpoint_url: "https://p.example/v2".to_owned(),
        authorization_header: None,
    };
    s.ssf.update_stream(&st).await.unwrap();
    let first = s
        .ssf
        .claim_push(t(1_500), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let c = &first[0];
    assert_eq!(
        (c.aud.as_str(), c.endpoint_url.as_str()),
        ("aud-p", "https://p.example/v2")
    );
    assert_eq!(c.authorization_header, None);
    assert_eq!(c.row.set.payload["sid"], "s1");
    assert_eq!(
        (c.row.state, c.row.next_attempt_at),
        (SetState::InFlight, Some(t(1_500) + lease()))
    );
    // A retry: pending at its time, the attempt counted; a stale lease changes nothing.
    let retry = push_result(c, t(1_600), 503, Decision::RetryAt(t(5_000)));
    let stale = SetResult {
        lease: logoutd_core::LeaseId::generate(),
        ..retry.clone()
    };
    assert!(!s.ssf.record_set(&stale).await.unwrap());
    assert!(s.ssf.record_set(&retry).await.unwrap());
    assert!(
        !s.ssf.record_set(&retry).await.unwrap(),
        "the lease ended with the result"
    );
    let row = s.ssf.get_set(&c.row.set.id).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.attempts, row.last_status),
        (SetState::Pending, 1, Some(503))
    );
    assert_eq!(
        (row.next_attempt_at, row.last_error.as_deref()),
        (Some(t(5_000)), Some("status 503"))
    );
    // Both due now, oldest first; a release gives one back without counting an attempt.
    let both = s
        .ssf
        .claim_push(t(5_000), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    let sids: Vec<_> = both
        .iter()
        .map(|c| c.row.set.payload["sid"].clone())
        .collect();
    assert_eq!(sids, [serde_json::json!("s1"), serde_json::json!("s2")]);
    let back = vec![(both[1].row.set.id.clone(), both[1].lease.clone())];
    assert_eq!(s.ssf.release_sets(&back, t(5_100)).await.unwrap(), 1);
    assert_eq!(s.ssf.release_sets(&back, t(5_100)).await.unwrap(), 0);
    let released = s.ssf.get_set(&both[1].row.set.id).await.unwrap().unwrap();
    assert_eq!(
        (released.state, released.attempts, released.next_attempt_at),
        (SetState::Pending, 0, Some(t(5_100)))
    );
    // An expired lease is claimed again; the old holder's result is then ignored.
    assert_eq!(
        s.ssf
            .claim_push(t(5_100), lease(), 10, &PushRoom::unlimited())
            .await
            .unwrap()
            .len(),
        1
    );
    let again = s
        .ssf
        .claim_push(t(5_000) + lease(), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "only the expired lease");
    assert!(
        !s.ssf
            .record_set(&delivered(&both[0], t(40_000)))
            .await
            .unwrap()
    );
    let mine = again
        .iter()
        .find(|c| c.row.set.id == both[0].row.set.id)
        .unwrap();
    assert_eq!(
        mine.row.set.jti, both[0].row.set.jti,
        "the jti never changes"
    );
    assert!(s.ssf.record_set(&delivered(mine, t(40_000))).await.unwrap());
    let done = s.ssf.get_set(&mine.row.set.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.attempts, done.delivered_at),
        (SetState::Delivered, 2, Some(t(40_000)))
    );
    // The poll stream's rows were never pushed.
    assert!(
        sets_of(&s, "st-q")
            .await
            .iter()
            .all(|r| r.state == SetState::Pending)
    );
}

pub async fn a_push_claim_takes_each_streams_oldest_rows_up_to_its_room(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    receiver_with_stream(&s, "q", push("q")).await;
    end_sessions(&s, &["s1", "s2", "s3", "s4"]).await;
    let claimed = |c: &[ClaimedSet]| -> Vec<(String, String)> {
        c.iter()
            .map(|c| {
                let sid = c.row.set.payload["sid"].as_str().unwrap().to_owned();
                (c.row.set.stream_id.clone(), sid)
            })
            .collect()
    };
    let pair = |stream: &str, sid: &str| (stream.to_owned(), sid.to_owned());
    // Room for two of each stream, q's taken: p's two oldest, q's rows left alone.
    let mut room = PushRoom::new(2);
    room.running.insert("st-q".to_owned(), 2);
    let first = s
        .ssf
        .claim_push(t(9_000), lease(), 10, &room)
        .await
        .unwrap();
    assert_eq!(claimed(&first), [pair("st-p", "s1"), pair("st-p", "s2")]);
    for stream in ["st-p", "st-q"] {
        let waiting: Vec<_> = sets_of(&s, stream)
            .await
            .into_iter()
            .filter(|r| r.state == SetState::Pending)
            .map(|r| {
                (
                    r.attempts,
                    r.set.payload["sid"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let left = if stream == "st-p" { 2 } else { 4 };
        assert_eq!(waiting.len(), left, "{stream}: the rest untouched");
        assert!(waiting.iter().all(|(attempts, _)| *attempts == 0));
    }
    // One slot of q frees, p's are all busy: q's oldest only.
    room.running.insert("st-p".to_owned(), 2);
    room.running.insert("st-q".to_owned(), 1);
    let second = s
        .ssf
        .claim_push(t(9_000), lease(), 10, &room)
        .await
        .unwrap();
    assert_eq!(claimed(&second), [pair("st-q", "s1")]);
    // With room to spare the limit holds across streams, oldest first (q's s2 ended before
    // p's s3, and each end wrote p's row before q's).
    let rest = s
        .ssf
        .claim_push(t(9_000), lease(), 3, &PushRoom::new(4))
        .await
        .unwrap();
    assert_eq!(
        claimed(&rest),
        [pair("st-q", "s2"), pair("st-p", "s3"), pair("st-q", "s3")]
    );
}

pub async fn a_poll_applies_acks_then_errors_then_hands_out_the_oldest(s: Stores) {
    receiver_with_stream(&s, "q", StreamDelivery::Poll).await;
    receiver_with_stream(&s, "o", StreamDelivery::Poll).await;
    end_sessions(&s, &["s1", "s2", "s3", "s4"]).await;
    let first = s.ssf.poll(&poll_of("q", 2, t(10_000))).await.unwrap();
    assert!(first.more_available);
    let sids: Vec<_> = first
        .rows
        .iter()
        .map(|r| r.set.payload["sid"].clone())
        .collect();
    assert_eq!(sids, [serde_json::json!("s1"), serde_json::json!("s2")]);
    assert!(first.rows.iter().all(|r| r.state == SetState::InFlight
        && r.attempts == 1
        && r.next_attempt_at == Some(t(70_000))));
    let (r1, r2) = (&first.rows[0], &first.rows[1]);
    // Another receiver's acks never touch these rows, on its stream or on this one.
    let mut foreign = poll_of("o", 0, t(11_000));
    foreign.ack = vec![r1.set.jti.clone()];
    s.ssf.poll(&foreign).await.unwrap();
    foreign.stream_id = "st-q".to_owned();
    let sneaky = s.ssf.poll(&foreign).await.unwrap();
    assert!(sneaky.rows.is_empty());
    assert_eq!(
        s.ssf.get_set(&r1.set.id).await.unwrap().unwrap().state,
        SetState::InFlight
    );
    // Ack, error, unknown jti; then one more row.
    let mut next = poll_of("q", 1, t(12_000));
    next.ack = vec![r1.set.jti.clone(), "unknown-jti".to_owned()];
    next.set_errs = vec![(
        r2.set.jti.clone(),
        SetError {
            err: "invalid_key".to_owned(),
            description: "no such key".to_owned(),
        },
    )];
    let second = s.ssf.poll(&next).await.unwrap();
    assert_eq!(second.rows.len(), 1);
    assert_eq!(second.rows[0].set.payload["sid"], "s3");
    assert!(second.more_available);
    let acked = s.ssf.get_set(&r1.set.id).await.unwrap().unwrap();
    assert_eq!(
        (acked.state, acked.delivered_at),
        (SetState::Delivered, Some(t(12_000)))
    );
    let failed = s.ssf.get_set(&r2.set.id).await.unwrap().unwrap();
    assert_eq!(failed.state, SetState::Failed);
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("invalid_key"))
    );
    // maxEvents 0 acknowledges only.
    let mut ack_only = poll_of("q", 0, t(13_000));
    ack_only.ack = vec![second.rows[0].set.jti.clone()];
    let none = s.ssf.poll(&ack_only).await.unwrap();
    assert!(none.rows.is_empty() && none.more_available);
    // The failed row is never handed out again.
    let last = s.ssf.poll(&poll_of("q", 10, t(14_000))).await.unwrap();
    let sids: Vec<_> = last
        .rows
        .iter()
        .map(|r| r.set.payload["sid"].clone())
        .collect();
    assert_eq!(sids, [serde_json::json!("s4")]);
    assert!(!last.more_available);
    // The other receiver's four rows wait untouched.
    assert_eq!(waiting_sets(&s).await, 1 + 4);
}

pub async fn an_expired_poll_lease_hands_the_row_out_again_with_its_jti(s: Stores) {
    receiver_with_stream(&s, "q", StreamDelivery::Poll).await;
    end_sessions(&s, &["s1"]).await;
    let first = s.ssf.poll(&poll_of("q", 10, t(10_000))).await.unwrap();
    assert_eq!(first.rows.len(), 1);
    let held = s.ssf.poll(&poll_of("q", 10, t(69_999))).await.unwrap();
    assert!(held.rows.is_empty());
    let again = s.ssf.poll(&poll_of("q", 10, t(70_000))).await.unwrap();
    assert_eq!(again.rows.len(), 1);
    assert_eq!(again.rows[0].set.jti, first.rows[0].set.jti);
    assert_eq!(
        again.rows[0].attempts, 2,
        "the expired lease counted as an attempt"
    );
    // Acking the first hand-out's jti still works.
    let mut ack = poll_of("q", 0, t(71_000));
    ack.ack = vec![first.rows[0].set.jti.clone()];
    s.ssf.poll(&ack).await.unwrap();
    assert_eq!(waiting_sets(&s).await, 0);
}

pub async fn verification_keeps_the_minimum_interval_per_stream(s: Stores) {
    receiver_with_stream(&s, "v", StreamDelivery::Poll).await;
    receiver_with_stream(&s, "w", StreamDelivery::Poll).await;
    let min = Duration::seconds(10);
    let verify = |at: i64| {
        let s = s.clone();
        async move {
            let row = new_set("v", SetKind::Verification, t(at));
            s.ssf
                .request_verification("v", "st-v", &row, min, t(at))
                .await
                .unwrap()
        }
    };
    assert_eq!(verify(1_000).await, VerifyOutcome::Accepted);
    let stored = s.ssf.get_stream("st-v").await.unwrap().unwrap();
    assert_eq!(stored.last_verification_at, Some(t(1_000)));
    assert_eq!(
        verify(5_000).await,
        VerifyOutcome::TooSoon {
            retry_after_secs: 6
        }
    );
    assert_eq!(
        verify(10_500).await,
        VerifyOutcome::TooSoon {
            retry_after_secs: 1
        }
    );
    assert_eq!(verify(11_000).await, VerifyOutcome::Accepted);
    // Another receiver's stream, or none, is not found.
    let row = new_set("v", SetKind::Verification, t(30_000));
    let theirs = s
        .ssf
        .request_verification("v", "st-w", &row, min, t(30_000))
        .await
        .unwrap();
    assert_eq!(theirs, VerifyOutcome::NotFound);
    let none = s
        .ssf
        .request_verification("v", "st-none", &row, min, t(30_000))
        .await
        .unwrap();
    assert_eq!(none, VerifyOutcome::NotFound);
    s.ssf
        .set_stream_status("st-v", StreamStatus::Paused, None, None, t(30_000))
        .await
        .unwrap();
    assert_eq!(verify(40_000).await, VerifyOutcome::NotEnabled);
    // Exactly the accepted requests wrote a row.
    let rows = sets_of(&s, "st-v").await;
    let at: Vec<_> = rows
        .iter()
        .map(|r| (r.set.kind, r.set.created_at))
        .collect();
    assert_eq!(
        at,
        [
            (SetKind::Verification, t(1_000)),
            (SetKind::Verification, t(11_000))
        ]
    );
}

pub async fn a_redrive_keeps_the_jti_and_prune_removes_only_old_finished_rows(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    end_sessions(&s, &["s1", "s2", "s3", "s4"]).await;
    let claimed = s
        .ssf
        .claim_push(t(9_000), lease(), 3, &PushRoom::unlimited())
        .await
        .unwrap();
    let give_up = Decision::GiveUp(Terminal::Refused(410).into());
    s.ssf
        .record_set(&delivered(&claimed[0], t(9_100)))
        .await
        .unwrap();
    s.ssf
        .record_set(&push_result(&claimed[1], t(9_100), 410, give_up.clone()))
        .await
        .unwrap();
    s.ssf
        .record_set(&push_result(&claimed[2], t(9_100), 410, give_up))
        .await
        .unwrap();
    let failed_id = claimed[1].row.set.id.clone();
    assert_eq!(
        s.ssf.redrive_set(&failed_id, t(10_000)).await.unwrap(),
        SetRedrive::Requeued
    );
    let again = s.ssf.get_set(&failed_id).await.unwrap().unwrap();
    assert_eq!(
        (again.state, again.attempts, again.next_attempt_at),
        (SetState::Pending, 0, Some(t(10_000)))
    );
    assert_eq!(
        (again.budget_started_at, again.set.jti.as_str()),
        (t(10_000), claimed[1].row.set.jti.as_str())
    );
    assert_eq!(
        s.ssf.redrive_set(&failed_id, t(10_000)).await.unwrap(),
        SetRedrive::NotFailed(SetState::Pending)
    );
    assert_eq!(
        s.ssf.redrive_set("set_nope", t(10_000)).await.unwrap(),
        SetRedrive::NotFound
    );
    // Listing by state and kind, paged by id.
    let failed = SetFilter {
        state: Some(SetState::Failed),
        ..SetFilter::default()
    };
    let page = s.ssf.list_sets(&failed, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].set.id, claimed[2].row.set.id);
    let revoked = SetFilter {
        kind: Some(SetKind::SessionRevoked),
        ..SetFilter::default()
    };
    let first = s.ssf.list_sets(&revoked, None, 3).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let rest = s
        .ssf
        .list_sets(&revoked, first.next.as_deref(), 3)
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.next), (1, None));
    let verification = SetFilter {
        kind: Some(SetKind::Verification),
        ..SetFilter::default()
    };
    assert!(
        s.ssf
            .list_sets(&verification, None, 3)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Prune: the delivered and failed rows changed before the cut go; waiting rows stay.
    assert_eq!(
        s.ssf.prune_sets(t(9_100), 10).await.unwrap(),
        0,
        "not before the cut"
    );
    assert_eq!(
        s.ssf.prune_sets(t(9_101), 1).await.unwrap(),
        1,
        "the limit holds"
    );
    assert_eq!(s.ssf.prune_sets(t(9_101), 10).await.unwrap(), 1);
    let left: Vec<_> = sets_of(&s, "st-p").await.iter().map(|r| r.state).collect();
    assert_eq!(left, [SetState::Pending, SetState::Pending]);
    assert_eq!(waiting_sets(&s).await, 2);
    // Cancelled rows are pruned too.
    s.ssf.delete_stream("st-p", t(11_000)).await.unwrap();
    assert_eq!(s.ssf.prune_sets(t(11_001), 10).await.unwrap(), 2);
    assert!(sets_of(&s, "st-p").await.is_empty());
}

pub async fn retention_prunes_finished_sets_with_the_rest(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    end_sessions(&s, &["s1", "s2"]).await;
    let claimed = s
        .ssf
        .claim_push(t(9_000), lease(), 1, &PushRoom::unlimited())
        .await
        .unwrap();
    s.ssf
        .record_set(&delivered(&claimed[0], t(9_100)))
        .await
        .unwrap();
    let report = logoutd_core::prune(&s, t(10_000)).await.unwrap();
    assert_eq!(report.sets, 1);
    let left: Vec<_> = sets_of(&s, "st-p").await.iter().map(|r| r.state).collect();
    assert_eq!(left, [SetState::Pending]);
}
