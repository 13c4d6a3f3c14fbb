//! Conformance cases for termination: which rows a session end writes, and when.

use super::fixtures::*;
use futures_util::FutureExt as _;
use logoutd_core::EndTarget;
use logoutd_core::Initiator;
use logoutd_core::{ClientId, EventId, SessionId, UserId};
use logoutd_core::{DeliveryFilter, DeliveryState};
use logoutd_core::{StoreError, Stores};
use std::collections::BTreeSet;
use std::time::Duration;

/// The client ids of every row of session `id`, sorted.
async fn row_clients(s: &Stores, id: &str) -> Vec<String> {
    let filter = DeliveryFilter {
        session_id: Some(SessionId::new(id)),
        ..Default::default()
    };
    let page = s
        .deliveries
        .list_deliveries(&filter, None, 100)
        .await
        .unwrap();
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
    create(&s, &session("s1", "u1", &joined)).await;
    create(&s, &session("s2", "u1", &joined)).await;
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
        create(&s, &session(&id, "u1", &["all", "plain"])).await;
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
    create(&s, &session("s1", "u1", &["c1"])).await;
    let event = EventId::new("evt-1");
    let target = EndTarget::Session(SessionId::new("s1"));
    let report = s
        .sessions
        .end_sessions(&target, Initiator::SessionRevoked, &event, t(2_345));
    let report = report.await.unwrap();
    assert_eq!(report.event_id, event);
    let page = s
        .deliveries
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
    let ended = stored(&s, "s1").await;
    assert_eq!(ended.ended_at, Some(t(2_345)));
    assert_eq!(ended.end_initiator, Some(Initiator::SessionRevoked));
}

pub async fn repeated_end_adds_nothing(s: Stores) {
    register(&s, &[client("c1")]).await;
    create(&s, &session("s1", "u1", &["c1"])).await;
    assert_eq!(
        end(&s, "s1", Initiator::RpLogout, t(2_000))
            .await
            .deliveries,
        1
    );
    let again = end(&s, "s1", Initiator::IdpLogout, t(3_000)).await;
    assert_eq!((again.sessions_ended, again.deliveries), (0, 0));
    let page = s
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let session = stored(&s, "s1").await;
    assert_eq!(session.ended_at, Some(t(2_000)));
    assert_eq!(session.end_initiator, Some(Initiator::RpLogout));
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
        create(&s, &session(id, "u1", &["c1", "c2"])).await;
    }
    create(&s, &session("other", "u2", &["c1"])).await;
    end(&s, "b", Initiator::RpLogout, t(2_000)).await;
    let report = end_user(&s, "u1", Initiator::IdpLogout, t(3_000)).await;
    assert_eq!((report.sessions_ended, report.deliveries), (2, 4));
    for id in ["a", "c"] {
        let sess = stored(&s, id).await;
        assert_eq!(sess.ended_at, Some(t(3_000)));
        assert_eq!(row_clients(&s, id).await, ["c1", "c2"]);
    }
    let other = stored(&s, "other").await;
    assert!(!other.is_ended());
    let listed = s
        .sessions
        .list_user_sessions(&UserId::new("u1"), None, 10)
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}

pub async fn user_wide_end_of_many_sessions_ends_each_once_with_its_rows(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    let ids: Vec<String> = (0..70).map(|n| format!("m{n:03}")).collect();
    for id in &ids {
        create(&s, &session(id, "many", &["c1", "c2"])).await;
    }
    // Already ended sessions spread through the id range are skipped, not ended twice.
    for id in ["m005", "m031", "m069"] {
        end(&s, id, Initiator::RpLogout, t(2_000)).await;
    }
    let report = end_user(&s, "many", Initiator::IdpLogout, t(3_000)).await;
    assert_eq!((report.sessions_ended, report.deliveries), (67, 134));
    let filter = DeliveryFilter {
        user_id: Some(UserId::new("many")),
        ..Default::default()
    };
    let mut rows = 0;
    let mut from = None;
    loop {
        let page = s
            .deliveries
            .list_deliveries(&filter, from.as_deref(), 50)
            .await
            .unwrap();
        rows += page.items.len();
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert_eq!(rows, 140, "two rows per session, written once");
    for id in &ids {
        let sess = stored(&s, id.as_str()).await;
        assert!(sess.is_ended(), "{id} ended");
    }
}

pub async fn ending_wakes_the_dispatcher(s: Stores) {
    let wakeup = s.queue.wakeup();
    register(&s, &[client("c1")]).await;
    // A permit left by anything before the end would pass the check below by itself.
    let _ = wakeup.notified().now_or_never();
    one_row(&s, "s1", t(2_000)).await;
    // A permit is stored, so a dispatcher that starts waiting only now still wakes.
    tokio::time::timeout(Duration::from_secs(5), wakeup.notified())
        .await
        .unwrap();
}

pub async fn deleted_client_gets_no_row_and_sessions_keep_their_lists(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    create(&s, &session("s1", "u1", &["c1", "c2"])).await;
    s.clients
        .delete_client(&ClientId::new("c1"), t(1_500))
        .await
        .unwrap();
    let kept = stored(&s, "s1").await;
    assert_eq!(kept.clients.len(), 2);
    assert_eq!(
        end(&s, "s1", Initiator::RpLogout, t(2_000))
            .await
            .deliveries,
        1
    );
    assert_eq!(row_clients(&s, "s1").await, ["c2"]);
}

pub async fn user_wide_end_writes_every_row_of_sessions_with_many_clients(s: Stores) {
    let names: Vec<String> = (0..40).map(|n| format!("c{n:02}")).collect();
    let clients: Vec<_> = names.iter().map(|n| client(n)).collect();
    register(&s, &clients).await;
    let joined: Vec<&str> = names.iter().map(String::as_str).collect();
    // Nine sessions of 40 clients: the first transaction of a user-wide end writes more rows
    // than one insert statement carries, and the next one the rest.
    for n in 0..9 {
        create(&s, &session(&format!("w{n}"), "wide", &joined)).await;
    }
    create(&s, &session("w-none", "wide", &[])).await;
    s.clients
        .delete_client(&ClientId::new("c07"), t(1_500))
        .await
        .unwrap();
    let report = end_user(&s, "wide", Initiator::IdpLogout, t(3_000)).await;
    assert_eq!((report.sessions_ended, report.deliveries), (10, 9 * 39));
    let mut expected: Vec<&str> = joined.clone();
    expected.retain(|c| *c != "c07");
    for n in 0..9 {
        assert_eq!(row_clients(&s, &format!("w{n}")).await, expected, "w{n}");
    }
    for id in ["w0", "w8", "w-none"] {
        let sess = stored(&s, id).await;
        assert_eq!(sess.ended_at, Some(t(3_000)), "{id}");
        assert_eq!(sess.end_initiator, Some(Initiator::IdpLogout), "{id}");
    }
    let w0 = stored(&s, "w0").await;
    assert_eq!(w0.clients.len(), 40, "the session keeps its list");
}
