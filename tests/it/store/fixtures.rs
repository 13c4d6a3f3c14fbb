//! Builders for the conformance cases: fixed times, clients, sessions and attempts.

use chrono::{DateTime, Duration, TimeZone, Utc};
use logoutd_core::Initiator;
use logoutd_core::SessionMetadata;
use logoutd_core::Stores;
use logoutd_core::{AttemptRecord, Delivery, DeliveryFilter};
use logoutd_core::{ClientId, EventId, Jti, SessionId, UserId};
use logoutd_core::{Device, Session, SessionClient};
use logoutd_core::{EndReport, EndTarget};
use logoutd_core::{InitiatorMode, LogoutInitiators, OidcLogout, RelyingParty};
use url::Url;

/// A fixed instant `ms` milliseconds after 2025-01-01T00:00:00Z.
pub fn t(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + Duration::milliseconds(ms)
}

/// A client with a URL in Auth0's default mode (`custom`, always-on initiators only).
pub fn client(id: &str) -> RelyingParty {
    RelyingParty {
        client_id: ClientId::new(id),
        name: format!("RP {id}"),
        oidc_logout: OidcLogout {
            backchannel_logout_urls: vec![
                Url::parse(&format!("https://{id}.example/bcl")).unwrap(),
            ],
            backchannel_logout_initiators: LogoutInitiators::auth0_default(),
            ..OidcLogout::default()
        },
        backchannel_logout_session_required: false,
        logout_token_typ: Default::default(),
        id_token_signed_response_alg: Default::default(),
        encryption: Default::default(),
        paused: false,
        paused_by: None,
        paused_at: None,
        created_at: t(0),
        updated_at: t(0),
    }
}

/// A client in `all` mode.
pub fn all_mode_client(id: &str) -> RelyingParty {
    let mut rp = client(id);
    rp.oidc_logout.backchannel_logout_initiators = LogoutInitiators {
        mode: InitiatorMode::All,
        selected_initiators: Vec::new(),
    };
    rp
}

/// A `custom`-mode client that also selected `extra`.
pub fn custom_client(id: &str, extra: Initiator) -> RelyingParty {
    let mut rp = client(id);
    rp.oidc_logout
        .backchannel_logout_initiators
        .selected_initiators
        .push(extra);
    rp
}

/// A client without a back-channel URL.
pub fn urlless_client(id: &str) -> RelyingParty {
    let mut rp = client(id);
    rp.oidc_logout.backchannel_logout_urls.clear();
    rp
}

/// Metadata from pairs.
pub fn meta(pairs: &[(&str, &str)]) -> SessionMetadata {
    SessionMetadata::try_from_map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .unwrap()
}

/// An active session of `user` created at `t(1_000)` with `clients`.
pub fn session(id: &str, user: &str, clients: &[&str]) -> Session {
    Session {
        id: SessionId::new(id),
        user_id: UserId::new(user),
        created_at: t(1_000),
        updated_at: t(1_000),
        authenticated_at: None,
        idle_expires_at: None,
        expires_at: None,
        last_interacted_at: None,
        device: Device::default(),
        clients: clients
            .iter()
            .map(|c| SessionClient::new(ClientId::new(*c)))
            .collect(),
        session_metadata: meta(&[("tenant", "acme")]),
        ended_at: None,
        end_initiator: None,
    }
}

/// Registers the clients.
pub async fn register(stores: &Stores, clients: &[RelyingParty]) {
    for c in clients {
        stores.clients.create_client(c).await.unwrap();
    }
}

/// Stores `session`.
pub async fn create(stores: &Stores, session: &Session) {
    stores.sessions.create_session(session).await.unwrap();
}

/// The stored session `id`, which must exist.
pub async fn stored(stores: &Stores, id: &str) -> Session {
    stores
        .sessions
        .get_session(&SessionId::new(id))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("session {id} is stored"))
}

/// Ends session `id` with `initiator` at `at`.
pub async fn end(stores: &Stores, id: &str, initiator: Initiator, at: DateTime<Utc>) -> EndReport {
    stores
        .sessions
        .end_sessions(
            &EndTarget::Session(SessionId::new(id)),
            initiator,
            &EventId::generate(),
            at,
        )
        .await
        .unwrap()
}

/// Ends every active session of `user` with `initiator` at `at`.
pub async fn end_user(
    stores: &Stores,
    user: &str,
    initiator: Initiator,
    at: DateTime<Utc>,
) -> EndReport {
    stores
        .sessions
        .end_sessions(
            &EndTarget::User(UserId::new(user)),
            initiator,
            &EventId::generate(),
            at,
        )
        .await
        .unwrap()
}

/// Registers client `c1`, creates session `id` for it and ends it at `at`: one pending row.
pub async fn one_row(stores: &Stores, id: &str, at: DateTime<Utc>) {
    if stores
        .clients
        .get_client(&ClientId::new("c1"))
        .await
        .unwrap()
        .is_none()
    {
        register(stores, &[client("c1")]).await;
    }
    stores
        .sessions
        .create_session(&session(id, "u1", &["c1"]))
        .await
        .unwrap();
    assert_eq!(end(stores, id, Initiator::RpLogout, at).await.deliveries, 1);
}

/// An attempt at `at` answered with `status`.
pub fn attempt(at: DateTime<Utc>, status: Option<u16>, error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        at,
        status,
        error: error.map(str::to_owned),
        latency_ms: 12,
        jti: Jti::generate(),
    }
}

/// Every delivery, read page by page (`take` per page) in id order.
pub async fn all_deliveries(stores: &Stores, take: usize) -> Vec<Delivery> {
    let mut all = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let page = stores
            .deliveries
            .list_deliveries(&DeliveryFilter::default(), from.as_deref(), take)
            .await
            .unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => from = Some(next),
            None => return all,
        }
    }
}
