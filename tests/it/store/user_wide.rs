//! Conformance cases for `per_user` clients: a user-wide end gives such a client one `user`
//! row covering every session it ended, however many steps the walk takes; other ends and
//! other clients keep one row per session; the row is claimed, failed, re-driven, cancelled
//! and pruned like any other.

use super::claims::{lease, result};
use super::fixtures::*;
use chrono::Duration;
use logoutd_core::{ClientId, DeliveryFilter, DeliveryScope, DeliveryState, Redrive, Stores};
use logoutd_core::{Decision, Initiator, SessionId, Terminal, UserWide};
use logoutd_core::{Delivery, RelyingParty};

/// An `all`-mode client registered with `backchannel_logout_user_wide: per_user`, opted in
/// to metadata (which its `user` rows still do not carry).
fn per_user_client(id: &str) -> RelyingParty {
    let mut rp = all_mode_client(id);
    rp.oidc_logout.backchannel_logout_user_wide = UserWide::PerUser;
    rp.oidc_logout.backchannel_logout_session_metadata.include = true;
    rp
}

async fn rows_of(s: &Stores, client: &str) -> Vec<Delivery> {
    let filter = DeliveryFilter {
        client_id: Some(ClientId::new(client)),
        ..DeliveryFilter::default()
    };
    s.deliveries
        .list_deliveries(&filter, None, 100)
        .await
        .unwrap()
        .items
}

/// More sessions than one step of any backend's walk ends (SQLite 8, PostgreSQL 64).
const MANY: usize = 70;

pub async fn a_user_wide_end_writes_one_user_row_covering_every_session(s: Stores) {
    register(&s, &[per_user_client("pu"), all_mode_client("ps")]).await;
    for n in 0..MANY {
        create(&s, &session(&format!("s{n:02}"), "u1", &["ps", "pu"])).await;
    }
    create(&s, &session("other", "u2", &["pu"])).await;
    let report = end_user(&s, "u1", Initiator::PasswordChanged, t(2_000)).await;
    assert_eq!(report.sessions_ended, MANY);
    assert_eq!(report.deliveries, MANY + 1);
    assert_eq!(report.user_wide_deliveries, 1);
    assert_eq!(report.user_wide_sessions, MANY);

    let user_rows = rows_of(&s, "pu").await;
    assert_eq!(user_rows.len(), 1, "{user_rows:?}");
    let row = &user_rows[0];
    assert_eq!(row.scope, DeliveryScope::User);
    assert_eq!(row.sessions, MANY as u32);
    assert_eq!(
        row.session_id,
        SessionId::new("s00"),
        "the first in id order"
    );
    assert_eq!(row.sid, None);
    assert_eq!(row.token_sid(), None);
    assert_eq!(row.user_id.as_str(), "u1");
    assert_eq!(row.state, DeliveryState::Pending);

    let session_rows = rows_of(&s, "ps").await;
    assert_eq!(session_rows.len(), MANY);
    assert!(
        session_rows
            .iter()
            .all(|r| r.scope == DeliveryScope::Session && r.sessions == 1)
    );

    // The session filter still finds it by its first session.
    let by_session = s
        .deliveries
        .list_deliveries(
            &DeliveryFilter {
                session_id: Some(SessionId::new("s00")),
                ..DeliveryFilter::default()
            },
            None,
            10,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(by_session.len(), 2);

    // Claimed, it carries its scope and no metadata; the per-session rows carry theirs.
    let mut claimed = Vec::new();
    loop {
        let batch = s.queue.claim_due(t(2_000), lease(), MANY).await.unwrap();
        if batch.is_empty() {
            break;
        }
        claimed.extend(batch);
    }
    assert_eq!(claimed.len(), MANY + 1);
    let user = claimed
        .iter()
        .find(|c| c.delivery.client_id.as_str() == "pu")
        .unwrap();
    assert_eq!(user.delivery.scope, DeliveryScope::User);
    assert_eq!(user.delivery.sessions, MANY as u32);
    assert!(user.session_metadata.is_empty());
    assert!(
        claimed
            .iter()
            .filter(|c| c.delivery.client_id.as_str() == "ps")
            .all(|c| !c.session_metadata.is_empty())
    );

    // A single-session end still gives a per_user client a per-session row.
    let single = end(&s, "other", Initiator::RpLogout, t(3_000)).await;
    assert_eq!((single.deliveries, single.user_wide_deliveries), (1, 0));
    let rows = rows_of(&s, "pu").await;
    let other = rows.iter().find(|r| r.session_id.as_str() == "other");
    let other = other.unwrap();
    assert_eq!((other.scope, other.sessions), (DeliveryScope::Session, 1));
    assert_eq!(other.token_sid(), Some(&SessionId::new("other")));
}

pub async fn a_user_row_is_redriven_cancelled_and_pruned_like_any_other(s: Stores) {
    register(&s, &[per_user_client("pu")]).await;
    for n in 0..3 {
        create(&s, &session(&format!("s{n}"), "u1", &["pu"])).await;
    }
    end_user(&s, "u1", Initiator::PasswordChanged, t(2_000)).await;
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let failed = Decision::GiveUp(Terminal::Refused(410).into());
    s.queue
        .record(&[result(&claimed[0], 2_100, 410, failed)])
        .await
        .unwrap();
    let id = &claimed[0].delivery.id;
    assert_eq!(
        s.redrives.redrive(id, t(9_000)).await.unwrap(),
        Redrive::Requeued
    );
    let again = s.queue.claim_due(t(9_000), lease(), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].delivery.scope, again[0].delivery.sessions),
        (DeliveryScope::User, 3)
    );
    s.clients
        .delete_client(&ClientId::new("pu"), t(9_500))
        .await
        .unwrap();
    let row = s.deliveries.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(row.delivery.state, DeliveryState::Cancelled);
    assert_eq!(row.delivery.sessions, 3);
    assert_eq!(row.attempt_history.len(), 1);
    let far = t(9_500) + Duration::days(30);
    assert_eq!(s.housekeeping.prune_finished(far, 100).await.unwrap(), 1);
    assert_eq!(s.housekeeping.prune_sessions(far, 100).await.unwrap(), 3);
}
