//! Conformance cases for per-client `sid`s: an RP that joined a session with its own sid gets
//! it in its rows (and so in its tokens); the others get the session id.

use super::claims::lease;
use super::fixtures::*;
use logoutd_core::DeliveryFilter;
use logoutd_core::Initiator;
use logoutd_core::Stores;
use logoutd_core::{ClientId, SessionId, UserId};
use logoutd_core::{Session, SessionClient};
use std::collections::BTreeMap;

/// A client entry with an optional sid of its own.
fn joined(client: &str, sid: Option<&str>) -> SessionClient {
    SessionClient::with_sid(ClientId::new(client), sid.map(SessionId::new))
}

/// `(client_id, sid)` of each of the session's clients, in joining order.
fn sids(session: &Session) -> Vec<(String, Option<String>)> {
    session
        .clients
        .iter()
        .map(|c| {
            (
                c.client_id.to_string(),
                c.sid.as_ref().map(|s| s.to_string()),
            )
        })
        .collect()
}

fn pair(client: &str, sid: Option<&str>) -> (String, Option<String>) {
    (client.to_owned(), sid.map(str::to_owned))
}

pub async fn per_client_sids_are_stored_and_listed(s: Stores) {
    register(&s, &[client("c1"), client("c2")]).await;
    let mut sess = session("s1", "u1", &[]);
    sess.clients = vec![joined("c1", Some("op-sid-c1")), joined("c2", None)];
    create(&s, &sess).await;
    let expected = [pair("c1", Some("op-sid-c1")), pair("c2", None)];
    assert_eq!(sids(&stored(&s, "s1").await), expected);
    let listed = s
        .sessions
        .list_user_sessions(&UserId::new("u1"), None, 10)
        .await
        .unwrap();
    assert_eq!(sids(&listed.items[0]), expected);
}

pub async fn joining_again_with_a_sid_replaces_it_and_without_one_keeps_it(s: Stores) {
    register(&s, &[client("c1"), client("c2"), client("c3")]).await;
    let mut sess = session("s1", "u1", &[]);
    // A duplicate in the create request merges the same way as a later join.
    sess.clients = vec![
        joined("c1", Some("first")),
        joined("c2", None),
        joined("c1", Some("second")),
    ];
    create(&s, &sess).await;
    assert_eq!(
        sids(&stored(&s, "s1").await),
        [pair("c1", Some("second")), pair("c2", None)]
    );
    let id = SessionId::new("s1");
    let steps = [
        (joined("c3", Some("c3-a")), t(2_000)),
        (joined("c2", Some("c2-a")), t(3_000)),
        (joined("c3", Some("c3-b")), t(4_000)),
        (joined("c3", None), t(5_000)),
    ];
    for (client, at) in &steps {
        let answer = s.sessions.add_client(&id, client, *at).await.unwrap();
        assert_eq!(
            answer,
            stored(&s, "s1").await,
            "the answer is what is stored"
        );
    }
    let expected = [
        pair("c1", Some("second")),
        pair("c2", Some("c2-a")),
        pair("c3", Some("c3-b")),
    ];
    let after = stored(&s, "s1").await;
    assert_eq!(sids(&after), expected);
    assert_eq!(after.updated_at, t(5_000));
}

pub async fn a_client_s_own_sid_reaches_its_claimed_row_and_others_get_the_session_id(s: Stores) {
    register(
        &s,
        &[
            all_mode_client("c1"),
            all_mode_client("c2"),
            all_mode_client("c3"),
        ],
    )
    .await;
    let mut sess = session("s1", "u1", &[]);
    sess.clients = vec![joined("c1", Some("op-sid-c1")), joined("c2", None)];
    create(&s, &sess).await;
    s.sessions
        .add_client(
            &SessionId::new("s1"),
            &joined("c3", Some("op-sid-c3")),
            t(1_500),
        )
        .await
        .unwrap();
    let report = end(&s, "s1", Initiator::SessionRevoked, t(2_000)).await;
    assert_eq!(report.deliveries, 3);
    let claimed = s.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    let token_sids: BTreeMap<String, String> = claimed
        .iter()
        .map(|c| {
            assert_eq!(c.delivery.session_id, SessionId::new("s1"));
            (
                c.delivery.client_id.to_string(),
                c.delivery.token_sid().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> =
        [("c1", "op-sid-c1"), ("c2", "s1"), ("c3", "op-sid-c3")]
            .into_iter()
            .map(|(c, sid)| (c.to_owned(), sid.to_owned()))
            .collect();
    assert_eq!(token_sids, expected);
    let listed = s
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .unwrap();
    let shown: BTreeMap<String, Option<String>> = listed
        .items
        .iter()
        .map(|d| {
            (
                d.client_id.to_string(),
                d.sid.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    assert_eq!(shown["c1"].as_deref(), Some("op-sid-c1"));
    assert_eq!(
        shown["c2"], None,
        "no sid of its own: the session id is used"
    );
    let detail = s
        .deliveries
        .get_delivery(&claimed[0].delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.delivery.sid, claimed[0].delivery.sid);
    let ended = stored(&s, "s1").await;
    assert_eq!(
        sids(&ended),
        [
            pair("c1", Some("op-sid-c1")),
            pair("c2", None),
            pair("c3", Some("op-sid-c3")),
        ],
        "an ended session keeps its clients' sids"
    );
}
