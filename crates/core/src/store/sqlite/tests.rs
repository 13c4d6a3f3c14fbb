//! The SQLite backend's batch sizes under API load.

use super::*;
use crate::clients::{OidcLogout, RelyingParty};
use crate::ids::{ClientId, SessionId, UserId};
use crate::ids::{EventId, Jti};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::outbox::{AttemptRecord, AttemptResult, ClaimedDelivery};
use crate::retry::Decision;
use crate::session::Session;
use crate::session::{Device, SessionClient};
use crate::store::{Clients, Deliveries, Queue, Sessions};
use crate::terminate::EndTarget;
use chrono::{DateTime, Utc};

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_735_689_600_000 + ms).unwrap()
}

/// A store with client `c1` and `sessions` sessions of user `u1` with it, not yet ended.
async fn store_with(sessions: usize) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    let client = RelyingParty {
        client_id: ClientId::new("c1"),
        name: "RP c1".into(),
        oidc_logout: OidcLogout {
            backchannel_logout_urls: vec![url::Url::parse("https://c1.example/bcl").unwrap()],
            ..OidcLogout::default()
        },
        backchannel_logout_session_required: false,
        logout_token_typ: Default::default(),
        id_token_signed_response_alg: Default::default(),
        encryption: Default::default(),
        paused: false,
        paused_by: None,
        paused_at: None,
        created_at: at(0),
        updated_at: at(0),
    };
    Clients::new(store.clone())
        .create_client(&client)
        .await
        .unwrap();
    for n in 0..sessions {
        let session = Session {
            id: SessionId::new(format!("s{n:03}")),
            user_id: UserId::new("u1"),
            created_at: at(1),
            updated_at: at(1),
            authenticated_at: None,
            idle_expires_at: None,
            expires_at: None,
            last_interacted_at: None,
            device: Device::default(),
            clients: vec![SessionClient::new(ClientId::new("c1"))],
            session_metadata: SessionMetadata::new(),
            ended_at: None,
            end_initiator: None,
        };
        Sessions::new(store.clone())
            .create_session(&session)
            .await
            .unwrap();
    }
    store
}

async fn end_user(store: &Arc<SqliteStore>) -> usize {
    let target = EndTarget::User(UserId::new("u1"));
    let event = EventId::generate();
    let report = Sessions::new(store.clone())
        .end_sessions(&target, Initiator::RpLogout, &event, at(2))
        .await
        .unwrap();
    report.sessions_ended
}

async fn claim(store: &SqliteStore, limit: usize) -> Vec<ClaimedDelivery> {
    store
        .claim_due(at(3), chrono::Duration::seconds(60), limit)
        .await
        .unwrap()
}

fn delivered(c: &ClaimedDelivery) -> AttemptResult {
    AttemptResult {
        id: c.delivery.id.clone(),
        lease: c.lease.clone(),
        attempt: AttemptRecord {
            at: at(4),
            status: Some(200),
            error: None,
            latency_ms: 1,
            jti: Jti::generate(),
        },
        decision: Decision::Delivered,
    }
}

#[tokio::test]
async fn a_user_wide_end_takes_smaller_chunks_while_api_writes_arrive() {
    let store = store_with(16).await;
    store.gate.set_api_active(false);
    let before = store.gate.passes();
    // 8 + 8, then the empty chunk that shows there are no more.
    assert_eq!(end_user(&store).await, 16);
    assert_eq!(store.gate.passes() - before, 3);

    let store = store_with(16).await;
    store.gate.set_api_active(true);
    let before = store.gate.passes();
    assert_eq!(end_user(&store).await, 16);
    assert_eq!(store.gate.passes() - before, 5, "4 + 4 + 4 + 4, then none");
}

#[tokio::test]
async fn claims_and_results_take_smaller_transactions_while_api_writes_arrive() {
    let store = store_with(80).await;
    assert_eq!(end_user(&store).await, 80);

    store.gate.set_api_active(true);
    let first = claim(&store, 128).await;
    assert_eq!(first.len(), BatchSizes::API_ACTIVE.claim);
    store.gate.set_api_active(false);
    let rest = claim(&store, 128).await;
    assert_eq!(
        rest.len(),
        80 - BatchSizes::API_ACTIVE.claim,
        "the rest at once"
    );

    let results: Vec<AttemptResult> = first.iter().chain(&rest).map(delivered).collect();
    store.gate.set_api_active(true);
    let before = store.gate.passes();
    assert_eq!(store.record(&results[..70]).await.unwrap(), 70);
    assert_eq!(store.gate.passes() - before, 3, "32 + 32 + 6");
    store.gate.set_api_active(false);
    let before = store.gate.passes();
    // Results already written are not written again.
    assert_eq!(store.record(&results).await.unwrap(), 10);
    assert_eq!(store.gate.passes() - before, 1);

    let stats = store.stats(at(5)).await.unwrap();
    assert_eq!((stats.pending, stats.in_flight, stats.failed), (0, 0, 0));
}
