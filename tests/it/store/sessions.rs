//! Conformance cases for sessions: registration, listing, clients and metadata.

use super::fixtures::*;
use logoutd_core::Initiator;
use logoutd_core::{ClientId, SessionId, UserId};
use logoutd_core::{Device, SessionClient};
use logoutd_core::{MetadataError, MetadataOp, SessionMetadata};
use logoutd_core::{StoreError, Stores};

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
    let ids = |p: &logoutd_core::Page<logoutd_core::Session>| {
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
    let c2 = SessionClient::new(ClientId::new("c2"));
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
    let c1 = SessionClient::new(ClientId::new("c1"));
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
        .add_client(
            &SessionId::new("s1"),
            &SessionClient::new(ClientId::new("ghost")),
            t(3_000),
        )
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

pub async fn duplicate_clients_are_listed_once_in_joining_order(s: Stores) {
    register(&s, &[client("c1"), client("c2"), client("c3")]).await;
    let sess = session("s1", "u1", &["c2", "c1", "c2"]);
    s.sessions.create_session(&sess).await.unwrap();
    let id = SessionId::new("s1");
    s.sessions
        .add_client(&id, &SessionClient::new(ClientId::new("c3")), t(2_000))
        .await
        .unwrap();
    let stored = s.sessions.get_session(&id).await.unwrap().unwrap();
    let clients: Vec<_> = stored
        .clients
        .iter()
        .map(|c| c.client_id.to_string())
        .collect();
    assert_eq!(clients, ["c2", "c1", "c3"]);
}

/// NUL cannot be stored in PostgreSQL text, so every backend refuses it alike, before the
/// database sees it, and the session is unchanged.
pub async fn metadata_with_nul_is_refused_alike(s: Stores) {
    let sess = session("s1", "u1", &[]);
    s.sessions.create_session(&sess).await.unwrap();
    let id = SessionId::new("s1");
    let nul = MetadataOp::Set {
        key: "k".into(),
        value: "a\0b".into(),
    };
    let res = s.sessions.update_metadata(&id, &nul, t(2_000)).await;
    assert!(
        matches!(
            res,
            Err(StoreError::Metadata(MetadataError::NulInValue { .. }))
        ),
        "{res:?}"
    );
    assert_eq!(s.sessions.get_session(&id).await.unwrap().unwrap(), sess);
    let map = std::collections::BTreeMap::from([("k".to_owned(), "a\0b".to_owned())]);
    assert!(matches!(
        SessionMetadata::try_from_map(map),
        Err(MetadataError::NulInValue { .. })
    ));
}
