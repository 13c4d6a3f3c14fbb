//! Conformance cases for session expiry, retention and the outbox statistics.

use super::claims::{lease, result};
use super::fixtures::*;
use chrono::Duration;
use logoutd_core::Initiator;
use logoutd_core::Session;
use logoutd_core::Stores;
use logoutd_core::{ClientId, EventId, SessionId};
use logoutd_core::{Decision, Terminal};
use logoutd_core::{DeliveryFilter, DeliveryState};

/// `session(id)` joined by the three subscription kinds, expiring as given.
fn expiring(id: &str, absolute: Option<i64>, idle: Option<i64>) -> Session {
    let mut s = session(id, "u1", &["opted", "plain", "all"]);
    s.expires_at = absolute.map(t);
    s.idle_expires_at = idle.map(t);
    s
}

async fn expiry_fixture(s: &Stores) {
    register(
        s,
        &[
            custom_client("opted", Initiator::SessionExpired),
            client("plain"),
            all_mode_client("all"),
        ],
    )
    .await;
    for session in [
        expiring("absolute", Some(5_000), None),
        expiring("idle", Some(90_000), Some(4_000)),
        expiring("future", Some(60_000), Some(30_000)),
        expiring("forever", None, None),
    ] {
        s.sessions.create_session(&session).await.unwrap();
    }
}

pub async fn end_expired_ends_past_sessions_for_subscribed_clients_only(s: Stores) {
    expiry_fixture(&s).await;
    let report = s
        .sessions
        .end_expired(t(10_000), 100, &EventId::generate())
        .await
        .unwrap();
    assert_eq!((report.sessions_ended, report.deliveries), (2, 4));
    for id in ["absolute", "idle"] {
        let ended = s
            .sessions
            .get_session(&SessionId::new(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended.ended_at, Some(t(10_000)), "{id}");
        assert_eq!(ended.end_initiator, Some(Initiator::SessionExpired), "{id}");
        let rows = s
            .deliveries
            .list_deliveries(
                &DeliveryFilter {
                    session_id: Some(SessionId::new(id)),
                    ..DeliveryFilter::default()
                },
                None,
                10,
            )
            .await
            .unwrap()
            .items;
        let mut clients: Vec<&str> = rows.iter().map(|d| d.client_id.as_str()).collect();
        clients.sort_unstable();
        assert_eq!(clients, ["all", "opted"], "{id}");
        assert!(
            rows.iter()
                .all(|d| d.initiator == Initiator::SessionExpired)
        );
    }
    for id in ["future", "forever"] {
        let active = s.sessions.get_session(&SessionId::new(id)).await.unwrap();
        assert!(!active.unwrap().is_ended(), "{id}");
    }
    let again = s
        .sessions
        .end_expired(t(10_000), 100, &EventId::generate())
        .await
        .unwrap();
    assert_eq!((again.sessions_ended, again.deliveries), (0, 0));
}

pub async fn end_expired_respects_the_batch_limit(s: Stores) {
    expiry_fixture(&s).await;
    let first = s
        .sessions
        .end_expired(t(10_000), 1, &EventId::generate())
        .await
        .unwrap();
    let second = s
        .sessions
        .end_expired(t(10_000), 1, &EventId::generate())
        .await
        .unwrap();
    assert_eq!((first.sessions_ended, second.sessions_ended), (1, 1));
}

pub async fn next_expiry_is_the_earliest_of_active_sessions(s: Stores) {
    assert_eq!(s.housekeeping.next_expiry().await.unwrap(), None);
    expiry_fixture(&s).await;
    assert_eq!(s.housekeeping.next_expiry().await.unwrap(), Some(t(4_000)));
    s.sessions
        .end_expired(t(10_000), 100, &EventId::generate())
        .await
        .unwrap();
    assert_eq!(s.housekeeping.next_expiry().await.unwrap(), Some(t(30_000)));
}

pub async fn creating_an_expiring_session_wakes_the_sweeper(s: Stores) {
    register(&s, &[client("plain")]).await;
    let wakeup = s.housekeeping.expiry_wakeup();
    let mut session = session("s1", "u1", &["plain"]);
    session.expires_at = Some(t(9_000));
    s.sessions.create_session(&session).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), wakeup.notified())
        .await
        .expect("a wake-up after creating an expiring session");
}

/// Three rows at `t(2_000)`: one delivered, one failed, one cancelled (client deleted).
async fn finished_rows(s: &Stores) {
    for id in ["ok", "bad"] {
        one_row(s, id, t(2_000)).await;
    }
    register(s, &[client("gone")]).await;
    s.sessions
        .create_session(&session("cancelled", "u1", &["gone"]))
        .await
        .unwrap();
    end(s, "cancelled", Initiator::RpLogout, t(2_000)).await;
    s.clients
        .delete_client(&ClientId::new("gone"), t(2_000))
        .await
        .unwrap();
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let results: Vec<_> = claimed
        .iter()
        .map(|c| match c.delivery.session_id.as_str() {
            "ok" => result(c, 2_100, 204, Decision::Delivered),
            _ => result(
                c,
                2_100,
                400,
                Decision::GiveUp(Terminal::Rejected(None).into()),
            ),
        })
        .collect();
    assert_eq!(s.queue.record(&results).await.unwrap(), 2);
}

async fn states(s: &Stores) -> Vec<(String, DeliveryState)> {
    // Ordered by session id (the state is a function of it here).
    let page = s
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 100)
        .await
        .unwrap();
    let mut all: Vec<_> = page
        .items
        .into_iter()
        .map(|d| (d.session_id.to_string(), d.state))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

pub async fn prune_finished_keeps_failed_and_young_rows(s: Stores) {
    finished_rows(&s).await;
    // Nothing changed strictly before t(2_000).
    assert_eq!(
        s.housekeeping.prune_finished(t(2_000), 100).await.unwrap(),
        0
    );
    assert_eq!(
        s.housekeeping.prune_sessions(t(2_000), 100).await.unwrap(),
        0
    );
    assert_eq!(
        s.housekeeping.prune_finished(t(3_000), 100).await.unwrap(),
        2
    );
    assert_eq!(
        states(&s).await,
        [("bad".to_owned(), DeliveryState::Failed)]
    );
    // The failed row keeps its session; the others' sessions go.
    assert_eq!(
        s.housekeeping.prune_sessions(t(3_000), 100).await.unwrap(),
        2
    );
    let kept = s
        .sessions
        .get_session(&SessionId::new("bad"))
        .await
        .unwrap();
    assert!(kept.is_some());
    for id in ["ok", "cancelled"] {
        let gone = s.sessions.get_session(&SessionId::new(id)).await.unwrap();
        assert!(gone.is_none(), "{id}");
    }
    assert_eq!(s.housekeeping.prune_failed(t(3_000), 100).await.unwrap(), 1);
    assert!(states(&s).await.is_empty());
    assert_eq!(
        s.housekeeping.prune_sessions(t(3_000), 100).await.unwrap(),
        1
    );
}

pub async fn prune_keeps_sessions_with_live_rows_and_active_sessions(s: Stores) {
    one_row(&s, "pending", t(2_000)).await;
    s.sessions
        .create_session(&session("active", "u1", &["c1"]))
        .await
        .unwrap();
    let far = t(2_000) + Duration::days(30);
    assert_eq!(s.housekeeping.prune_finished(far, 100).await.unwrap(), 0);
    assert_eq!(s.housekeeping.prune_sessions(far, 100).await.unwrap(), 0);
    assert_eq!(states(&s).await.len(), 1);
}

pub async fn prune_works_in_batches(s: Stores) {
    for n in 0..5 {
        one_row(&s, &format!("s{n}"), t(2_000)).await;
    }
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let results: Vec<_> = claimed
        .iter()
        .map(|c| result(c, 2_100, 204, Decision::Delivered))
        .collect();
    s.queue.record(&results).await.unwrap();
    assert_eq!(s.housekeeping.prune_finished(t(3_000), 2).await.unwrap(), 2);
    assert_eq!(s.housekeeping.prune_finished(t(3_000), 2).await.unwrap(), 2);
    assert_eq!(s.housekeeping.prune_finished(t(3_000), 2).await.unwrap(), 1);
    assert_eq!(s.housekeeping.prune_sessions(t(3_000), 3).await.unwrap(), 3);
    assert_eq!(s.housekeeping.prune_sessions(t(3_000), 3).await.unwrap(), 2);
}

pub async fn stats_count_live_and_dead_rows(s: Stores) {
    let empty = s.deliveries.stats(t(0)).await.unwrap();
    assert_eq!((empty.pending, empty.in_flight, empty.failed), (0, 0, 0));
    assert_eq!(empty.oldest_due_at, None);
    finished_rows(&s).await;
    one_row(&s, "p1", t(4_000)).await;
    one_row(&s, "p2", t(5_000)).await;
    one_row(&s, "later", t(9_000)).await;
    let claimed = s.queue.claim_due(t(4_500), lease(), 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let stats = s.deliveries.stats(t(6_000)).await.unwrap();
    assert_eq!((stats.pending, stats.in_flight, stats.failed), (2, 1, 1));
    assert_eq!(stats.oldest_due_at, Some(t(5_000)));
}

pub async fn claims_flag_rows_whose_lease_expired(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    let first = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(!first[0].reclaimed);
    let later = t(2_000) + lease() + Duration::seconds(1);
    let second = s.queue.claim_due(later, lease(), 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].reclaimed);
}
