//! Conformance cases for sessions and termination.

use super::fixtures::*;
use logoutd::ids::{ClientId, EventId, SessionId, UserId};
use logoutd::initiator::Initiator;
use logoutd::metadata::{MetadataError, MetadataOp};
use logoutd::outbox::{DeliveryFilter, DeliveryState};
use logoutd::session::{Device, EndTarget};
use logoutd::store::{StoreError, Stores};
use std::collections::BTreeSet;
use std::time::Duration;

pub async fn session_round_trips_at_millisecond_precision(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    let mut sess = session("s1", "u1", &["c2", "c1"]);
    sess.created_at = t(1_123);
    sess.updated_at = t(2_456);
    sess.authenticated_at = Some(t(999));
    sess.expires_at = Some(t(86_400_001));
    sess.idle_expires_at = Some(t(3_600_007));
    sess.last_interacted_at = Some(t(2_000));
    sess.device = Device {
        initial_ip: Some("192.0.2.1".into()),
        initial_user_agent: Some("ua".into()),
        last_ip: None,
        last_user_agent: Some("ua2".into()),
    };
    s.sessions.create_session(&sess).await.unwrap();
    let got = s.sessions.get_session(&sess.id).await.unwrap();
    assert_eq!(got, Some(sess));
    assert_eq!(
        s.sessions
            .get_session(&SessionId::new("nope"))
            .await
            .unwrap(),
        None
    );
}

pub async fn create_session_refuses_a_duplicate_id(s: Stores) {
    register(&s, &[client("c1")]).await;
    s.sessions
        .create_session(&session("s1", "u1", &["c1"]))
        .await
        .unwrap();
    let again = s.sessions.create_session(&session("s1", "u2", &[])).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))));
    let kept = s
        .sessions
        .get_session(&SessionId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.user_id, UserId::new("u1"));
}

pub async fn create_session_refuses_unknown_clients_and_stores_nothing(s: Stores) {
    register(&s, &[client("c1")]).await;
    let res = s
        .sessions
        .create_session(&session("s1", "u1", &["c1", "ghost"]))
        .await;
    assert!(matches!(res, Err(StoreError::UnknownClient(c)) if c == "ghost"));
    assert_eq!(
        s.sessions.get_session(&SessionId::new("s1")).await.unwrap(),
        None
    );
}

pub async fn user_sessions_list_active_ones_by_id_in_pages(s: Stores) {
    for id in ["s5", "s2", "s4", "s1", "s3"] {
        s.sessions
            .create_session(&session(id, "u1", &[]))
            .await
            .unwrap();
    }
    s.sessions
        .create_session(&session("s0", "u2", &[]))
        .await
        .unwrap();
    end(&s, "s3", Initiator::IdpLogout, t(5_000)).await;
    let user = UserId::new("u1");
    let first = s.sessions.list_user_sessions(&user, None, 2).await.unwrap();
    let ids = |p: &logoutd::store::Page<logoutd::session::Session>| {
        p.items.iter().map(|x| x.id.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ["s1", "s2"]);
    assert_eq!(first.next.as_deref(), Some("s2"));
    let second = s
        .sessions
        .list_user_sessions(&user, Some("s2"), 2)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["s4", "s5"]);
    assert_eq!(second.next, None);
    let all = s
        .sessions
        .list_user_sessions(&user, None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&all), ["s1", "s2", "s4", "s5"]);
    assert_eq!(all.next, None);
}

pub async fn add_client_is_idempotent_and_bumps_updated_at(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    s.sessions
        .create_session(&session("s1", "u1", &["c1"]))
        .await
        .unwrap();
    let id = SessionId::new("s1");
    let c2 = ClientId::new("c2");
    let after = s.sessions.add_client(&id, &c2, t(7_000)).await.unwrap();
    assert_eq!(after.updated_at, t(7_000));
    let again = s.sessions.add_client(&id, &c2, t(8_000)).await.unwrap();
    let stored = s.sessions.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored, again);
    let clients: Vec<_> = stored
        .clients
        .iter()
        .map(|c| c.client_id.to_string())
        .collect();
    assert_eq!(clients, ["c1", "c2"]);
    assert_eq!(stored.updated_at, t(8_000));
}

pub async fn add_client_refusals_change_nothing(s: Stores) {
    register(&s, &[client("c1")]).await;
    s.sessions
        .create_session(&session("s1", "u1", &[]))
        .await
        .unwrap();
    s.sessions
        .create_session(&session("s2", "u1", &[]))
        .await
        .unwrap();
    end(&s, "s2", Initiator::RpLogout, t(2_000)).await;
    let c1 = ClientId::new("c1");
    let missing = s
        .sessions
        .add_client(&SessionId::new("nope"), &c1, t(3_000))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
    let ended = s
        .sessions
        .add_client(&SessionId::new("s2"), &c1, t(3_000))
        .await;
    assert!(matches!(ended, Err(StoreError::Ended)));
    let ghost = s
        .sessions
        .add_client(&SessionId::new("s1"), &ClientId::new("ghost"), t(3_000))
        .await;
    assert!(matches!(ghost, Err(StoreError::UnknownClient(_))));
    let s1 = s
        .sessions
        .get_session(&SessionId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s1, session("s1", "u1", &[]));
}

pub async fn metadata_ops_apply_and_bump_updated_at(s: Stores) {
    s.sessions
        .create_session(&session("s1", "u1", &[]))
        .await
        .unwrap();
    let id = SessionId::new("s1");
    let set = MetadataOp::Set {
        key: "k".into(),
        value: "v".into(),
    };
    let got = s
        .sessions
        .update_metadata(&id, &set, t(2_000))
        .await
        .unwrap();
    assert_eq!(
        got.session_metadata,
        meta(&[("tenant", "acme"), ("k", "v")])
    );
    assert_eq!(got.updated_at, t(2_000));
    let del = MetadataOp::Delete {
        key: "tenant".into(),
    };
    s.sessions
        .update_metadata(&id, &del, t(3_000))
        .await
        .unwrap();
    let stored = s.sessions.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored.session_metadata, meta(&[("k", "v")]));
    assert_eq!(stored.updated_at, t(3_000));
    let replace = MetadataOp::Replace(meta(&[("a", "1"), ("b", "2")]));
    s.sessions
        .update_metadata(&id, &replace, t(4_000))
        .await
        .unwrap();
    let stored = s.sessions.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored.session_metadata, meta(&[("a", "1"), ("b", "2")]));
    s.sessions
        .update_metadata(&id, &MetadataOp::Evict, t(5_000))
        .await
        .unwrap();
    let stored = s.sessions.get_session(&id).await.unwrap().unwrap();
    assert!(stored.session_metadata.is_empty());
}

pub async fn metadata_refusals_change_nothing(s: Stores) {
    let pairs: Vec<(String, String)> = (0..25).map(|i| (format!("k{i}"), "v".into())).collect();
    let full = meta(
        &pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let mut sess = session("s1", "u1", &[]);
    sess.session_metadata = full.clone();
    s.sessions.create_session(&sess).await.unwrap();
    let id = SessionId::new("s1");
    let extra = MetadataOp::Set {
        key: "extra".into(),
        value: "v".into(),
    };
    let res = s.sessions.update_metadata(&id, &extra, t(2_000)).await;
    assert!(matches!(
        res,
        Err(StoreError::Metadata(MetadataError::TooManyPairs {
            count: 26
        }))
    ));
    let too_long = MetadataOp::Set {
        key: "k1".into(),
        value: "x".repeat(256),
    };
    let res = s.sessions.update_metadata(&id, &too_long, t(2_000)).await;
    assert!(matches!(
        res,
        Err(StoreError::Metadata(MetadataError::ValueTooLong { .. }))
    ));
    assert_eq!(s.sessions.get_session(&id).await.unwrap().unwrap(), sess);
    let missing = s
        .sessions
        .update_metadata(&SessionId::new("nope"), &MetadataOp::Evict, t(2_000))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
    end(&s, "s1", Initiator::RpLogout, t(3_000)).await;
    let ended = s
        .sessions
        .update_metadata(&id, &MetadataOp::Evict, t(4_000))
        .await;
    assert!(matches!(ended, Err(StoreError::Ended)));
    let stored = s.sessions.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored.session_metadata, full);
}

/// The client ids of every row of session `id`, sorted.
async fn row_clients(s: &Stores, id: &str) -> Vec<String> {
    let filter = DeliveryFilter {
        session_id: Some(SessionId::new(id)),
        ..Default::default()
    };
    let page = s.outbox.list_deliveries(&filter, None, 100).await.unwrap();
    let set: BTreeSet<String> = page.items.iter().map(|d| d.client_id.to_string()).collect();
    set.into_iter().collect()
}

pub async fn ending_writes_rows_only_for_subscribed_clients_with_a_url(s: Stores) {
    let clients = [
        client("plain"),
        custom_client("pwd", Initiator::PasswordChanged),
        all_mode_client("all"),
        urlless_client("nourl"),
        client("outsider"),
    ];
    register(&s, &clients).await;
    let joined = ["plain", "pwd", "all", "nourl"];
    s.sessions
        .create_session(&session("s1", "u1", &joined))
        .await
        .unwrap();
    s.sessions
        .create_session(&session("s2", "u1", &joined))
        .await
        .unwrap();
    let rp = end(&s, "s1", Initiator::RpLogout, t(2_000)).await;
    assert_eq!((rp.sessions_ended, rp.deliveries), (1, 3));
    assert_eq!(row_clients(&s, "s1").await, ["all", "plain", "pwd"]);
    let pwd = end(&s, "s2", Initiator::PasswordChanged, t(2_000)).await;
    assert_eq!((pwd.sessions_ended, pwd.deliveries), (1, 2));
    assert_eq!(row_clients(&s, "s2").await, ["all", "pwd"]);
}

pub async fn all_mode_client_gets_every_initiator(s: Stores) {
    register(&s, &[all_mode_client("all"), client("plain")]).await;
    for (n, initiator) in Initiator::ALL.into_iter().enumerate() {
        let id = format!("s{n}");
        s.sessions
            .create_session(&session(&id, "u1", &["all", "plain"]))
            .await
            .unwrap();
        let report = end(&s, &id, initiator, t(2_000)).await;
        let expected = if Initiator::ALWAYS_ON.contains(&initiator) {
            2
        } else {
            1
        };
        assert_eq!(report.deliveries, expected, "{initiator}");
        assert!(row_clients(&s, &id).await.contains(&"all".to_owned()));
    }
}

pub async fn rows_are_pending_and_due_at_the_end(s: Stores) {
    register(&s, &[all_mode_client("c1")]).await;
    s.sessions
        .create_session(&session("s1", "u1", &["c1"]))
        .await
        .unwrap();
    let event = EventId::new("evt-1");
    let target = EndTarget::Session(SessionId::new("s1"));
    let report = s
        .sessions
        .end_sessions(&target, Initiator::SessionRevoked, &event, t(2_345));
    let report = report.await.unwrap();
    assert_eq!(report.event_id, event);
    let page = s
        .outbox
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .unwrap();
    let [row] = page.items.as_slice() else {
        panic!("one row expected")
    };
    assert_eq!(row.event_id, event);
    assert_eq!(row.session_id, SessionId::new("s1"));
    assert_eq!(row.user_id, UserId::new("u1"));
    assert_eq!(row.client_id, ClientId::new("c1"));
    assert_eq!(row.initiator, Initiator::SessionRevoked);
    assert_eq!(row.state, DeliveryState::Pending);
    assert_eq!(row.attempts, 0);
    assert_eq!(row.next_attempt_at, Some(t(2_345)));
    assert_eq!(row.created_at, t(2_345));
    assert_eq!(
        (row.last_status, row.last_error.clone(), row.delivered_at),
        (None, None, None)
    );
    let ended = s
        .sessions
        .get_session(&SessionId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.ended_at, Some(t(2_345)));
    assert_eq!(ended.end_initiator, Some(Initiator::SessionRevoked));
}

pub async fn repeated_end_adds_nothing(s: Stores) {
    register(&s, &[client("c1")]).await;
    s.sessions
        .create_session(&session("s1", "u1", &["c1"]))
        .await
        .unwrap();
    assert_eq!(
        end(&s, "s1", Initiator::RpLogout, t(2_000))
            .await
            .deliveries,
        1
    );
    let again = end(&s, "s1", Initiator::IdpLogout, t(3_000)).await;
    assert_eq!((again.sessions_ended, again.deliveries), (0, 0));
    let page = s
        .outbox
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let stored = s
        .sessions
        .get_session(&SessionId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.ended_at, Some(t(2_000)));
    assert_eq!(stored.end_initiator, Some(Initiator::RpLogout));
}

pub async fn ending_an_unknown_session_is_not_found(s: Stores) {
    let target = EndTarget::Session(SessionId::new("nope"));
    let res = s
        .sessions
        .end_sessions(&target, Initiator::RpLogout, &EventId::generate(), t(1))
        .await;
    assert!(matches!(res, Err(StoreError::NotFound)));
    let target = EndTarget::User(UserId::new("nobody"));
    let res = s
        .sessions
        .end_sessions(&target, Initiator::RpLogout, &EventId::generate(), t(1))
        .await;
    let report = res.unwrap();
    assert_eq!((report.sessions_ended, report.deliveries), (0, 0));
}

pub async fn user_wide_end_covers_every_active_session(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    for id in ["a", "b", "c"] {
        s.sessions
            .create_session(&session(id, "u1", &["c1", "c2"]))
            .await
            .unwrap();
    }
    s.sessions
        .create_session(&session("other", "u2", &["c1"]))
        .await
        .unwrap();
    end(&s, "b", Initiator::RpLogout, t(2_000)).await;
    let target = EndTarget::User(UserId::new("u1"));
    let event = EventId::generate();
    let report = s
        .sessions
        .end_sessions(&target, Initiator::IdpLogout, &event, t(3_000))
        .await
        .unwrap();
    assert_eq!((report.sessions_ended, report.deliveries), (2, 4));
    for id in ["a", "c"] {
        let sess = s
            .sessions
            .get_session(&SessionId::new(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sess.ended_at, Some(t(3_000)));
        assert_eq!(row_clients(&s, id).await, ["c1", "c2"]);
    }
    let other = s
        .sessions
        .get_session(&SessionId::new("other"))
        .await
        .unwrap()
        .unwrap();
    assert!(!other.is_ended());
    let listed = s
        .sessions
        .list_user_sessions(&UserId::new("u1"), None, 10)
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}

pub async fn ending_wakes_the_dispatcher(s: Stores) {
    let wakeup = s.outbox.wakeup();
    one_row(&s, "s1", t(2_000)).await;
    // A permit is stored, so a dispatcher that starts waiting only now still wakes.
    tokio::time::timeout(Duration::from_secs(5), wakeup.notified())
        .await
        .unwrap();
}

pub async fn deleted_client_gets_no_row_and_sessions_keep_their_lists(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    s.sessions
        .create_session(&session("s1", "u1", &["c1", "c2"]))
        .await
        .unwrap();
    s.clients
        .delete_client(&ClientId::new("c1"), t(1_500))
        .await
        .unwrap();
    let kept = s
        .sessions
        .get_session(&SessionId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.clients.len(), 2);
    assert_eq!(
        end(&s, "s1", Initiator::RpLogout, t(2_000))
            .await
            .deliveries,
        1
    );
    assert_eq!(row_clients(&s, "s1").await, ["c2"]);
}
