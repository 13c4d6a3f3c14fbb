//! Conformance cases for the client registry and its cancellations.

use super::fixtures::*;
use chrono::Duration;
use logoutd_core::Decision;
use logoutd_core::Initiator;
use logoutd_core::{AttemptResult, DeliveryFilter, DeliveryState};
use logoutd_core::{ClientId, DeliveryId};
use logoutd_core::{StoreError, Stores};

pub async fn client_crud_and_paging(s: Stores) {
    register(&s, &[client("b"), client("a"), client("c")]).await;
    let dup = s.clients.create_client(&client("a")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    assert_eq!(
        s.clients.get_client(&ClientId::new("a")).await.unwrap(),
        Some(client("a"))
    );
    assert_eq!(
        s.clients.get_client(&ClientId::new("zz")).await.unwrap(),
        None
    );

    let first = s.clients.list_clients(None, 2).await.unwrap();
    let ids: Vec<_> = first
        .items
        .iter()
        .map(|c| c.client_id.to_string())
        .collect();
    assert_eq!(
        (ids, first.next.as_deref()),
        (vec!["a".to_owned(), "b".to_owned()], Some("b"))
    );
    let rest = s.clients.list_clients(Some("b"), 2).await.unwrap();
    assert_eq!(rest.items, vec![client("c")]);
    assert_eq!(rest.next, None);

    let mut changed = all_mode_client("b");
    changed.name = "renamed".into();
    changed.paused = true;
    changed.created_at = t(99_999);
    assert_eq!(
        s.clients.update_client(&changed, t(5_000)).await.unwrap(),
        0
    );
    let stored = s
        .clients
        .get_client(&ClientId::new("b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.name, "renamed");
    assert!(!stored.paused, "a settings change keeps the stored pause");
    assert_eq!(stored.oidc_logout, changed.oidc_logout);
    assert_eq!((stored.created_at, stored.updated_at), (t(0), t(5_000)));

    let ghost = s.clients.update_client(&client("zz"), t(5_000)).await;
    assert!(matches!(ghost, Err(StoreError::NotFound)));
    assert_eq!(
        s.clients
            .delete_client(&ClientId::new("c"), t(6_000))
            .await
            .unwrap(),
        0
    );
    let gone = s.clients.delete_client(&ClientId::new("c"), t(6_000)).await;
    assert!(matches!(gone, Err(StoreError::NotFound)));
    assert_eq!(
        s.clients.get_client(&ClientId::new("c")).await.unwrap(),
        None
    );
}

/// The states of every row of `client`, ordered by row id.
async fn states(s: &Stores, client: &str) -> Vec<DeliveryState> {
    let filter = DeliveryFilter {
        client_id: Some(ClientId::new(client)),
        ..Default::default()
    };
    let page = s
        .deliveries
        .list_deliveries(&filter, None, 100)
        .await
        .unwrap();
    page.items.iter().map(|d| d.state).collect()
}

pub async fn delete_cancels_pending_and_in_flight_rows(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    for id in ["s1", "s2", "s3"] {
        s.sessions
            .create_session(&session(id, "u1", &["c1", "c2"]))
            .await
            .unwrap();
    }
    end(&s, "s1", Initiator::RpLogout, t(2_000)).await;
    end(&s, "s2", Initiator::RpLogout, t(3_000)).await;
    // s1's rows go in flight; c1's is then delivered, so it must stay delivered.
    let claimed = s
        .queue
        .claim_due(t(2_500), Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let c1_row = claimed
        .iter()
        .find(|c| c.client.client_id.as_str() == "c1")
        .unwrap();
    let done = AttemptResult {
        id: c1_row.delivery.id.clone(),
        lease: c1_row.lease.clone(),
        attempt: attempt(t(2_600), Some(200), None),
        decision: Decision::Delivered,
    };
    assert_eq!(s.queue.record(&[done]).await.unwrap(), 1);
    end(&s, "s3", Initiator::RpLogout, t(4_000)).await;

    // c2 has one in-flight row (s1) and two pending ones (s2, s3).
    assert_eq!(
        s.clients
            .delete_client(&ClientId::new("c2"), t(5_000))
            .await
            .unwrap(),
        3
    );
    assert!(
        states(&s, "c2")
            .await
            .iter()
            .all(|st| *st == DeliveryState::Cancelled)
    );
    let c1 = states(&s, "c1").await;
    assert_eq!(
        c1.iter()
            .filter(|st| **st == DeliveryState::Delivered)
            .count(),
        1
    );
    assert_eq!(
        c1.iter()
            .filter(|st| **st == DeliveryState::Pending)
            .count(),
        2
    );

    // The worker still holding the c2 lease cannot revive the row.
    let c2_row = claimed
        .iter()
        .find(|c| c.client.client_id.as_str() == "c2")
        .unwrap();
    let late = AttemptResult {
        id: c2_row.delivery.id.clone(),
        lease: c2_row.lease.clone(),
        attempt: attempt(t(5_100), Some(200), None),
        decision: Decision::Delivered,
    };
    assert_eq!(s.queue.record(&[late]).await.unwrap(), 0);
    let row = s
        .deliveries
        .get_delivery(&c2_row.delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.delivery.state, DeliveryState::Cancelled);
    assert_eq!(row.delivery.next_attempt_at, None);
    assert!(row.attempt_history.is_empty());
    let due: Vec<DeliveryId> = s
        .queue
        .claim_due(t(10_000), Duration::seconds(30), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.delivery.id)
        .collect();
    assert_eq!(due.len(), 2, "only c1's pending rows remain claimable");
}

pub async fn emptying_the_url_list_cancels_rows(s: Stores) {
    one_row(&s, "s1", t(2_000)).await;
    one_row(&s, "s2", t(2_000)).await;
    let mut renamed = client("c1");
    renamed.name = "still has a URL".into();
    assert_eq!(
        s.clients.update_client(&renamed, t(3_000)).await.unwrap(),
        0
    );
    assert_eq!(states(&s, "c1").await, [DeliveryState::Pending; 2]);

    s.queue
        .claim_due(t(3_000), Duration::seconds(30), 1)
        .await
        .unwrap();
    let emptied = urlless_client("c1");
    assert_eq!(
        s.clients.update_client(&emptied, t(4_000)).await.unwrap(),
        2
    );
    assert_eq!(states(&s, "c1").await, [DeliveryState::Cancelled; 2]);
    let stored = s
        .clients
        .get_client(&ClientId::new("c1"))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.logout_url().is_none());
}

pub async fn health_ping_answers(s: Stores) {
    s.health.ping().await.unwrap();
}

/// Deleting a client forgets its pacing state: registered again under the same id, it starts
/// with a full burst instead of inheriting the places its predecessor took.
pub async fn delete_forgets_the_pacing_state(s: Stores) {
    use logoutd_core::{ManualClock, RateLimit};
    let id = ClientId::new("p");
    let limit = RateLimit::new(1.0, Some(2)).unwrap();
    let clock = ManualClock::new(t(1_000));
    let horizon = std::time::Duration::ZERO;
    register(&s, &[client("p")]).await;
    let first = s.queue.pace(&id, &limit, &clock, horizon, 5).await.unwrap();
    assert_eq!(first.go, 2);
    let spent = s.queue.pace(&id, &limit, &clock, horizon, 5).await.unwrap();
    assert_eq!(spent.go, 0);

    s.clients.delete_client(&id, t(1_000)).await.unwrap();
    register(&s, &[client("p")]).await;
    let again = s.queue.pace(&id, &limit, &clock, horizon, 5).await.unwrap();
    assert_eq!(again.go, 2);
}
