//! Conformance cases for the SSF transmitter's store: receivers, their one stream, and the
//! SET rows a session end writes in its own transaction (SSF §8.1.1, §8.1.2; docs/ssf.md §7).

use super::claims::lease;
use super::fixtures::*;
use chrono::{DateTime, Utc};
use logoutd_core::PushRoom;
use logoutd_core::{
    ClientId, EndTarget, EventId, InitiatingEntity, Initiator, NewSet, ReceiverScope,
    SESSION_REVOKED, SessionId, SetFilter, SetKind, SetState, SsfReceiver, SsfStream, StoredSet,
    Stores, StreamDelivery, StreamStatus, UserId,
};
use serde_json::json;

/// A receiver `id` with `aud` `aud-{id}` and token hash `hash-{id}`.
pub fn receiver(id: &str, client: Option<&str>, scope: ReceiverScope) -> SsfReceiver {
    SsfReceiver {
        id: id.to_owned(),
        name: format!("receiver {id}"),
        aud: format!("aud-{id}"),
        client_id: client.map(ClientId::new),
        scope,
        include_session_metadata: false,
        token_hash: format!("hash-{id}"),
        created_at: t(0),
        updated_at: t(0),
    }
}

/// An enabled stream `id` of `receiver` delivering by `delivery`.
pub fn stream(id: &str, receiver: &str, delivery: StreamDelivery) -> SsfStream {
    SsfStream {
        stream_id: id.to_owned(),
        receiver_id: receiver.to_owned(),
        status: StreamStatus::Enabled,
        status_reason: None,
        events_requested: None,
        delivery,
        description: None,
        excluded_subjects: Vec::new(),
        last_verification_at: None,
        created_at: t(0),
        updated_at: t(0),
    }
}

/// Push to `https://{id}.example/events` with a bearer header.
pub fn push(id: &str) -> StreamDelivery {
    StreamDelivery::Push {
        endpoint_url: format!("https://{id}.example/events"),
        authorization_header: Some(format!("Bearer push-{id}")),
    }
}

/// Registers receiver `id` (scope `all`) with an enabled stream `st-{id}` delivering by
/// `delivery`.
pub async fn receiver_with_stream(s: &Stores, id: &str, delivery: StreamDelivery) {
    assert!(
        s.ssf
            .insert_receiver(&receiver(id, None, ReceiverScope::All))
            .await
            .unwrap()
    );
    let st = stream(&format!("st-{id}"), id, delivery);
    assert!(s.ssf.insert_stream(&st).await.unwrap());
}

/// A SET row of `kind` for stream `st-{receiver}` created at `at`.
pub fn new_set(receiver: &str, kind: SetKind, at: DateTime<Utc>) -> NewSet {
    NewSet {
        id: logoutd_core::SetId::generate_at(at).into_inner(),
        stream_id: format!("st-{receiver}"),
        receiver_id: receiver.to_owned(),
        kind,
        jti: logoutd_core::random_token(),
        txn: None,
        payload: json!({}),
        created_at: at,
    }
}

/// How many SET rows are waiting: pending or in flight.
pub async fn waiting_sets(s: &Stores) -> u64 {
    let stats = s.ssf.set_stats(t(0)).await.unwrap();
    stats.pending + stats.in_flight
}

/// The rows of stream `stream_id`, oldest first.
pub async fn sets_of(s: &Stores, stream_id: &str) -> Vec<StoredSet> {
    let filter = SetFilter {
        stream_id: Some(stream_id.to_owned()),
        ..SetFilter::default()
    };
    s.ssf.list_sets(&filter, None, 1_000).await.unwrap().items
}

pub async fn receivers_round_trip_with_a_unique_aud_and_lookup_by_token(s: Stores) {
    let mut a = receiver("ssr_a", Some("c1"), ReceiverScope::Participating);
    a.include_session_metadata = true;
    assert!(s.ssf.insert_receiver(&a).await.unwrap());
    assert_eq!(s.ssf.get_receiver("ssr_a").await.unwrap(), Some(a.clone()));
    // The same aud, or the same id, is refused and writes nothing.
    let mut same_aud = receiver("ssr_b", None, ReceiverScope::All);
    same_aud.aud = a.aud.clone();
    assert!(!s.ssf.insert_receiver(&same_aud).await.unwrap());
    assert!(s.ssf.get_receiver("ssr_b").await.unwrap().is_none());
    let mut same_id = receiver("ssr_a", None, ReceiverScope::All);
    same_id.aud = "other".to_owned();
    same_id.token_hash = "other".to_owned();
    assert!(!s.ssf.insert_receiver(&same_id).await.unwrap());
    let found = s.ssf.receiver_by_token("hash-ssr_a").await.unwrap();
    assert_eq!(found.map(|r| r.id), Some("ssr_a".to_owned()));
    assert!(s.ssf.receiver_by_token("nope").await.unwrap().is_none());
    // An update keeps the id, aud and creation time.
    let mut changed = a.clone();
    changed.name = "renamed".to_owned();
    changed.aud = "ignored".to_owned();
    changed.scope = ReceiverScope::All;
    changed.token_hash = "hash-new".to_owned();
    changed.created_at = t(9_000);
    changed.updated_at = t(2_000);
    assert!(s.ssf.update_receiver(&changed).await.unwrap());
    let stored = s.ssf.get_receiver("ssr_a").await.unwrap().unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.aud.as_str(), stored.scope),
        ("renamed", "aud-ssr_a", ReceiverScope::All)
    );
    assert_eq!((stored.created_at, stored.updated_at), (t(0), t(2_000)));
    assert!(
        s.ssf
            .receiver_by_token("hash-ssr_a")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.ssf.receiver_by_token("hash-new").await.unwrap().is_some());
    assert!(
        !s.ssf
            .update_receiver(&receiver("ssr_x", None, ReceiverScope::All))
            .await
            .unwrap()
    );
    // Paging by id, one more than asked.
    for id in ["ssr_c", "ssr_d"] {
        s.ssf
            .insert_receiver(&receiver(id, None, ReceiverScope::All))
            .await
            .unwrap();
    }
    let page: Vec<String> = s
        .ssf
        .receivers(Some("ssr_a"), 1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, ["ssr_c", "ssr_d"]);
    assert!(s.ssf.delete_receiver("ssr_c", t(3_000)).await.unwrap());
    assert!(!s.ssf.delete_receiver("ssr_c", t(3_000)).await.unwrap());
    assert!(s.ssf.get_receiver("ssr_c").await.unwrap().is_none());
}

pub async fn a_receiver_has_one_stream_and_changes_keep_its_status(s: Stores) {
    s.ssf
        .insert_receiver(&receiver("r1", None, ReceiverScope::All))
        .await
        .unwrap();
    let mut first = stream("sst_1", "r1", StreamDelivery::Poll);
    first.events_requested = Some(vec![SESSION_REVOKED.to_owned(), "urn:unknown".to_owned()]);
    first.description = Some("first".to_owned());
    assert!(s.ssf.insert_stream(&first).await.unwrap());
    assert_eq!(
        s.ssf.get_stream("sst_1").await.unwrap(),
        Some(first.clone())
    );
    // A second stream of the same receiver is refused (the API's 409).
    assert!(
        !s.ssf
            .insert_stream(&stream("sst_2", "r1", StreamDelivery::Poll))
            .await
            .unwrap()
    );
    assert!(s.ssf.get_stream("sst_2").await.unwrap().is_none());
    assert_eq!(
        s.ssf.receiver_streams("r1").await.unwrap(),
        vec![first.clone()]
    );
    assert!(s.ssf.receiver_streams("r2").await.unwrap().is_empty());
    // An update replaces what the receiver may change, never the status.
    let mut changed = first.clone();
    changed.status = StreamStatus::Disabled;
    changed.events_requested = None;
    changed.delivery = push("r1");
    changed.description = None;
    changed.excluded_subjects = vec![json!({"format": "opaque", "id": "s9"})];
    changed.updated_at = t(4_000);
    assert!(s.ssf.update_stream(&changed).await.unwrap());
    let stored = s.ssf.get_stream("sst_1").await.unwrap().unwrap();
    assert_eq!(stored.status, StreamStatus::Enabled);
    assert_eq!(stored.delivery, push("r1"));
    assert_eq!(stored.events_requested, None);
    assert_eq!(stored.excluded_subjects, changed.excluded_subjects);
    assert_eq!((stored.description, stored.updated_at), (None, t(4_000)));
    assert!(
        !s.ssf
            .update_stream(&stream("sst_9", "r1", StreamDelivery::Poll))
            .await
            .unwrap()
    );
    // The operator's listing pages by stream_id.
    s.ssf
        .insert_receiver(&receiver("r2", None, ReceiverScope::All))
        .await
        .unwrap();
    s.ssf
        .insert_stream(&stream("sst_0", "r2", StreamDelivery::Poll))
        .await
        .unwrap();
    let ids: Vec<String> = s
        .ssf
        .streams(None, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.stream_id)
        .collect();
    assert_eq!(ids, ["sst_0", "sst_1"]);
    let ids: Vec<String> = s
        .ssf
        .streams(Some("sst_0"), 5)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.stream_id)
        .collect();
    assert_eq!(ids, ["sst_1"]);
    // A status change returns the stream as it now stands.
    let now = s
        .ssf
        .set_stream_status(
            "sst_1",
            StreamStatus::Paused,
            Some("maintenance"),
            None,
            t(5_000),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (now.status, now.status_reason.as_deref()),
        (StreamStatus::Paused, Some("maintenance"))
    );
    let stored = s.ssf.get_stream("sst_1").await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.updated_at),
        (StreamStatus::Paused, t(5_000))
    );
    assert!(
        s.ssf
            .set_stream_status("nope", StreamStatus::Enabled, None, None, t(5_000))
            .await
            .unwrap()
            .is_none()
    );
    // After a deletion the receiver may create a new stream.
    assert!(s.ssf.delete_stream("sst_1", t(6_000)).await.unwrap());
    assert!(!s.ssf.delete_stream("sst_1", t(6_000)).await.unwrap());
    assert!(
        s.ssf
            .insert_stream(&stream("sst_3", "r1", StreamDelivery::Poll))
            .await
            .unwrap()
    );
}

pub async fn a_session_end_writes_one_set_per_stream_in_scope(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    let mut part = receiver("part", Some("c1"), ReceiverScope::Participating);
    part.include_session_metadata = true;
    s.ssf.insert_receiver(&part).await.unwrap();
    s.ssf
        .insert_stream(&stream("st-part", "part", StreamDelivery::Poll))
        .await
        .unwrap();
    receiver_with_stream(&s, "every", push("every")).await;
    let mut excluded = stream("st-excl", "excl", StreamDelivery::Poll);
    excluded.excluded_subjects =
        vec![json!({"format": "iss_sub", "iss": "https://i", "sub": "u2"})];
    s.ssf
        .insert_receiver(&receiver("excl", None, ReceiverScope::All))
        .await
        .unwrap();
    s.ssf.insert_stream(&excluded).await.unwrap();
    create(&s, &session("s1", "u1", &["c1"])).await;
    create(&s, &session("s2", "u2", &["c2"])).await;
    let report = end(&s, "s1", Initiator::SessionRevoked, t(5_000)).await;
    end(&s, "s2", Initiator::RpLogout, t(6_000)).await;
    // `participating` hears of its client's session only; `all` of both; the excluded user's
    // session reaches no stream that removed it.
    let part_rows = sets_of(&s, "st-part").await;
    assert_eq!(part_rows.len(), 1);
    let every = sets_of(&s, "st-every").await;
    assert_eq!(every.len(), 2);
    let excl = sets_of(&s, "st-excl").await;
    assert_eq!(excl.len(), 1);
    assert_eq!(excl[0].set.payload["sid"], "s1");
    // The row: pending, due at the end, its budget from then, jti and txn fixed.
    let row = &part_rows[0];
    assert_eq!((row.state, row.attempts), (SetState::Pending, 0));
    assert_eq!(row.next_attempt_at, Some(t(5_000)));
    assert_eq!(
        (row.set.created_at, row.budget_started_at),
        (t(5_000), t(5_000))
    );
    assert_eq!(row.set.kind, SetKind::SessionRevoked);
    assert_eq!(row.set.receiver_id, "part");
    assert_eq!(row.set.txn.as_deref(), Some(report.event_id.as_str()));
    assert_eq!(
        row.set.payload,
        json!({"sub": "u1", "sid": "s1", "initiator": "session-revoked",
               "initiating_entity": "admin", "event_timestamp": t(5_000).timestamp(),
               "session_metadata": {"tenant": "acme"}})
    );
    // Only the opted-in receiver gets the metadata.
    assert!(every[0].set.payload.get("session_metadata").is_none());
    assert_ne!(every[0].set.jti, row.set.jti);
    assert_eq!(waiting_sets(&s).await, 4);
}

pub async fn a_user_wide_end_writes_a_set_per_session(s: Stores) {
    register(&s, &[client("c1")]).await;
    receiver_with_stream(&s, "every", StreamDelivery::Poll).await;
    for id in ["s1", "s2", "s3"] {
        create(&s, &session(id, "u1", &["c1"])).await;
    }
    create(&s, &session("other", "u2", &["c1"])).await;
    end_user(&s, "u1", Initiator::PasswordChanged, t(5_000)).await;
    let rows = sets_of(&s, "st-every").await;
    let sids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.set.payload["sid"].as_str())
        .collect();
    assert_eq!(sids.len(), 3);
    assert!(["s1", "s2", "s3"].iter().all(|s| sids.contains(s)));
    let txns: std::collections::HashSet<_> = rows.iter().map(|r| r.set.txn.clone()).collect();
    assert_eq!(txns.len(), 1, "one txn per session end");
    assert!(
        rows.iter()
            .all(|r| r.set.payload["initiating_entity"] == "policy")
    );
}

pub async fn an_end_may_name_the_initiating_entity_of_its_sets(s: Stores) {
    register(&s, &[client("c1")]).await;
    receiver_with_stream(&s, "every", StreamDelivery::Poll).await;
    for id in ["s1", "s2", "s3"] {
        create(&s, &session(id, "u1", &["c1"])).await;
    }
    let ends = [
        (
            EndTarget::Session(SessionId::new("s1")),
            Some(InitiatingEntity::System),
        ),
        (
            EndTarget::User(UserId::new("u1")),
            Some(InitiatingEntity::Policy),
        ),
    ];
    for (target, entity) in ends {
        s.sessions
            .end_sessions_as(
                &target,
                Initiator::RpLogout,
                entity,
                &EventId::generate(),
                t(5_000),
            )
            .await
            .unwrap();
    }
    let rows = sets_of(&s, "st-every").await;
    let entity_of = |sid: &str| {
        rows.iter()
            .find(|r| r.set.payload["sid"] == sid)
            .map(|r| r.set.payload["initiating_entity"].clone())
    };
    assert_eq!(entity_of("s1"), Some(json!("system")));
    assert_eq!(entity_of("s2"), Some(json!("policy")));
    assert_eq!(entity_of("s3"), Some(json!("policy")));
    assert_eq!(
        rows.iter()
            .map(|r| r.set.payload["initiator"].clone())
            .collect::<Vec<_>>(),
        vec![json!("rp-logout"); 3],
        "the initiator itself is kept"
    );
}

pub async fn disabled_and_uninterested_streams_get_no_sets(s: Stores) {
    register(&s, &[client("c1")]).await;
    receiver_with_stream(&s, "off", StreamDelivery::Poll).await;
    s.ssf
        .set_stream_status("st-off", StreamStatus::Disabled, None, None, t(100))
        .await
        .unwrap();
    s.ssf
        .insert_receiver(&receiver("deaf", None, ReceiverScope::All))
        .await
        .unwrap();
    let mut deaf = stream("st-deaf", "deaf", StreamDelivery::Poll);
    deaf.events_requested = Some(vec!["https://example.test/other-event".to_owned()]);
    s.ssf.insert_stream(&deaf).await.unwrap();
    // A participating receiver without a client hears of nothing.
    s.ssf
        .insert_receiver(&receiver("nobody", None, ReceiverScope::Participating))
        .await
        .unwrap();
    s.ssf
        .insert_stream(&stream("st-nobody", "nobody", StreamDelivery::Poll))
        .await
        .unwrap();
    create(&s, &session("s1", "u1", &["c1"])).await;
    let report = end(&s, "s1", Initiator::RpLogout, t(5_000)).await;
    assert_eq!(
        report.deliveries, 1,
        "the logout token row is written as before"
    );
    for st in ["st-off", "st-deaf", "st-nobody"] {
        assert!(sets_of(&s, st).await.is_empty(), "{st}");
    }
    assert_eq!(waiting_sets(&s).await, 0);
}

pub async fn a_paused_stream_holds_its_sets_until_enabled_then_releases_them_in_order(s: Stores) {
    register(&s, &[client("c1")]).await;
    receiver_with_stream(&s, "p", push("p")).await;
    receiver_with_stream(&s, "q", StreamDelivery::Poll).await;
    for st in ["st-p", "st-q"] {
        s.ssf
            .set_stream_status(st, StreamStatus::Paused, None, None, t(100))
            .await
            .unwrap();
    }
    for (i, id) in ["s1", "s2", "s3"].iter().enumerate() {
        create(&s, &session(id, "u1", &["c1"])).await;
        end(&s, id, Initiator::RpLogout, t(1_000 + i as i64 * 100)).await;
    }
    assert_eq!(
        sets_of(&s, "st-p").await.len(),
        3,
        "paused streams still get rows"
    );
    // Held: neither pushed nor handed to a poll.
    assert!(
        s.ssf
            .claim_push(t(9_000), lease(), 10, &PushRoom::unlimited())
            .await
            .unwrap()
            .is_empty()
    );
    let polled = s
        .ssf
        .poll(&super::ssf_delivery::poll_of("q", 10, t(9_000)))
        .await
        .unwrap();
    assert!(polled.rows.is_empty() && !polled.more_available);
    // Enabling makes them due at once, with a fresh budget, oldest first.
    let enabled = s
        .ssf
        .set_stream_status("st-p", StreamStatus::Enabled, None, None, t(20_000))
        .await
        .unwrap();
    assert_eq!(enabled.map(|s| s.status), Some(StreamStatus::Enabled));
    let rows = sets_of(&s, "st-p").await;
    assert!(
        rows.iter()
            .all(|r| r.next_attempt_at == Some(t(20_000)) && r.budget_started_at == t(20_000))
    );
    let claimed = s
        .ssf
        .claim_push(t(20_000), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    let sids: Vec<_> = claimed
        .iter()
        .map(|c| c.row.set.payload["sid"].clone())
        .collect();
    assert_eq!(sids, [json!("s1"), json!("s2"), json!("s3")]);
    // The other stream is still paused.
    assert!(claimed.iter().all(|c| c.row.set.stream_id == "st-p"));
    s.ssf
        .set_stream_status("st-q", StreamStatus::Enabled, None, None, t(21_000))
        .await
        .unwrap();
    let polled = s
        .ssf
        .poll(&super::ssf_delivery::poll_of("q", 10, t(21_000)))
        .await
        .unwrap();
    assert_eq!(polled.rows.len(), 3);
}

pub async fn disabling_cancels_waiting_sets_but_keeps_its_stream_updated_row(s: Stores) {
    receiver_with_stream(&s, "p", push("p")).await;
    let waiting = new_set("p", SetKind::Verification, t(1_000));
    let claimed = new_set("p", SetKind::Verification, t(1_100));
    for row in [&waiting, &claimed] {
        s.ssf
            .request_verification("p", "st-p", row, chrono::Duration::zero(), row.created_at)
            .await
            .unwrap();
    }
    let leased = s
        .ssf
        .claim_push(t(1_100), lease(), 1, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let updated = NewSet {
        payload: json!({"status": "disabled"}),
        ..new_set("p", SetKind::StreamUpdated, t(2_000))
    };
    s.ssf
        .set_stream_status(
            "st-p",
            StreamStatus::Disabled,
            Some("operator"),
            Some(&updated),
            t(2_000),
        )
        .await
        .unwrap();
    let rows = sets_of(&s, "st-p").await;
    let states: Vec<_> = rows.iter().map(|r| (r.set.kind, r.state)).collect();
    assert_eq!(
        states,
        [
            (SetKind::Verification, SetState::Cancelled),
            (SetKind::Verification, SetState::Cancelled),
            (SetKind::StreamUpdated, SetState::Pending),
        ]
    );
    assert_eq!(rows[0].updated_at, t(2_000));
    // The stream_updated row is pushed although the stream is disabled; the cancelled ones
    // are not, and a late result for the cancelled claim is ignored.
    let pushed = s
        .ssf
        .claim_push(t(3_000), lease(), 10, &PushRoom::unlimited())
        .await
        .unwrap();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].row.set.id, updated.id);
    let late = super::ssf_delivery::delivered(&leased[0], t(3_000));
    assert!(!s.ssf.record_set(&late).await.unwrap());
    // A disabled stream refuses verification.
    let again = new_set("p", SetKind::Verification, t(30_000));
    let outcome = s
        .ssf
        .request_verification("p", "st-p", &again, chrono::Duration::zero(), t(30_000))
        .await
        .unwrap();
    assert_eq!(outcome, logoutd_core::VerifyOutcome::NotEnabled);
}

pub async fn deleting_a_stream_or_its_receiver_cancels_its_sets(s: Stores) {
    register(&s, &[client("c1")]).await;
    receiver_with_stream(&s, "a", StreamDelivery::Poll).await;
    receiver_with_stream(&s, "b", push("b")).await;
    create(&s, &session("s1", "u1", &["c1"])).await;
    end(&s, "s1", Initiator::RpLogout, t(1_000)).await;
    assert!(s.ssf.delete_stream("st-a", t(2_000)).await.unwrap());
    assert!(s.ssf.delete_receiver("b", t(3_000)).await.unwrap());
    assert!(s.ssf.get_stream("st-b").await.unwrap().is_none());
    let a = sets_of(&s, "st-a").await;
    let b = sets_of(&s, "st-b").await;
    assert_eq!(
        (a[0].state, a[0].updated_at),
        (SetState::Cancelled, t(2_000))
    );
    assert_eq!(
        (b[0].state, b[0].updated_at),
        (SetState::Cancelled, t(3_000))
    );
    assert_eq!(waiting_sets(&s).await, 0);
    // A stream of an unknown receiver is refused.
    assert!(
        s.ssf
            .insert_stream(&stream("st-z", "zz", StreamDelivery::Poll))
            .await
            .is_err()
    );
}

pub async fn a_session_end_with_sets_wakes_the_set_worker(s: Stores) {
    use futures_util::FutureExt;
    register(&s, &[client("c1")]).await;
    receiver_with_stream(&s, "q", StreamDelivery::Poll).await;
    create(&s, &session("s1", "u1", &["c1"])).await;
    // A permit left by an earlier signal (a listener starting) is taken first.
    let _ = s.ssf_wake.notified().now_or_never();
    let waiting = s.ssf_wake.notified();
    end(&s, "s1", Initiator::RpLogout, t(2_000)).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the SET worker is woken after the end commits");
}
