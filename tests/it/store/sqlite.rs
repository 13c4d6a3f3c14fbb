//! SQLite-only cases: opening by URL, in-memory databases and durability across a restart.

use super::fixtures::*;
use chrono::Duration;
use logoutd_core::Decision;
use logoutd_core::Initiator;
use logoutd_core::MetadataOp;
use logoutd_core::Stores;
use logoutd_core::{AttemptResult, DeliveryFilter, DeliveryState};
use logoutd_core::{ClientId, SessionId, open_store};

#[tokio::test]
async fn opening_creates_the_file_and_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/logoutd.db");
    let stores = open_store(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    stores.health.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn in_memory_database_keeps_data_between_calls() {
    let stores = open_store("sqlite::memory:").await.unwrap();
    one_row(&stores, "s1", t(2_000)).await;
    let claimed = stores
        .queue
        .claim_due(t(2_000), Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

/// Writes a little of everything: a client, an ended session with a delivered row and an
/// active session with metadata.
async fn populate(s: &Stores) {
    one_row(s, "ended", t(2_000)).await;
    s.sessions
        .create_session(&session("active", "u1", &["c1"]))
        .await
        .unwrap();
    let set = MetadataOp::Set {
        key: "k".into(),
        value: "v".into(),
    };
    let id = SessionId::new("active");
    s.sessions
        .update_metadata(&id, &set, t(2_500))
        .await
        .unwrap();
    let claimed = s
        .queue
        .claim_due(t(3_000), Duration::seconds(30), 10)
        .await
        .unwrap();
    let done = AttemptResult {
        id: claimed[0].delivery.id.clone(),
        lease: claimed[0].lease.clone(),
        attempt: attempt(t(3_001), Some(200), None),
        decision: Decision::Delivered,
    };
    s.queue.record(&[done]).await.unwrap();
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("logoutd.db").display());
    let before = open_store(&url).await.unwrap();
    populate(&before).await;
    let sessions = [
        before
            .sessions
            .get_session(&SessionId::new("ended"))
            .await
            .unwrap(),
        before
            .sessions
            .get_session(&SessionId::new("active"))
            .await
            .unwrap(),
    ];
    let rows = before
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .unwrap();
    let detail = before
        .deliveries
        .get_delivery(&rows.items[0].id)
        .await
        .unwrap();
    drop(before);

    let after = open_store(&url).await.unwrap();
    let client = after
        .clients
        .get_client(&ClientId::new("c1"))
        .await
        .unwrap();
    assert_eq!(client, Some(super::fixtures::client("c1")));
    for s in sessions {
        let s = s.unwrap();
        assert_eq!(after.sessions.get_session(&s.id).await.unwrap(), Some(s));
    }
    let again = after
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(again, rows);
    let row = after
        .deliveries
        .get_delivery(&rows.items[0].id)
        .await
        .unwrap();
    assert_eq!(row, detail);
    assert_eq!(row.unwrap().delivery.state, DeliveryState::Delivered);
    let ended = end(&after, "active", Initiator::RpLogout, t(4_000)).await;
    assert_eq!(ended.deliveries, 1, "the restarted store keeps working");
}

/// The database and its directory are private from the start: the file, its `-wal` and
/// `-shm` 0600 and a directory it creates 0700, whatever the umask.
#[tokio::test]
async fn database_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("logoutd.db").display());
    let stores = logoutd_core::SqliteStore::open(&url)
        .await
        .unwrap()
        .into_stores();
    stores.health.ping().await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in ["logoutd.db", "logoutd.db-wal", "logoutd.db-shm"] {
        let path = data.join(name);
        assert!(path.exists(), "{name} missing");
        assert_eq!(mode(&path), 0o600, "{name}");
    }
}

/// A registration exactly as versions before per-client sids stored it: a client registered
/// without `backchannel_logout_initiators` got Auth0's default written out.
const OLD_SETTINGS: &str = r#"{"client_id":"old","name":"old","oidc_logout":{"backchannel_logout_urls":["https://old.example/bcl"],"backchannel_logout_initiators":{"mode":"custom","selected_initiators":["rp-logout","idp-logout"]},"backchannel_logout_session_metadata":{"include":false}},"backchannel_logout_session_required":false,"logout_token_typ":"logout+jwt","id_token_signed_response_alg":"RS256","paused":false,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}"#;

/// Builds a database at the schema before per-client sids (migration 3) with one client
/// registered without initiators and two active sessions it joined.
async fn database_before_sids(path: &std::path::Path) {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/migrations/sqlite");
    let migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    migrator.run_to(3, &mut conn).await.unwrap();
    let statements = [
        format!(
            "INSERT INTO clients (client_id, settings, paused, has_url, created_at, updated_at) \
             VALUES ('old', '{OLD_SETTINGS}', 0, 1, 0, 0)"
        ),
        "INSERT INTO sessions (id, user_id, created_at, updated_at, device, metadata) VALUES \
         ('s1', 'u1', 1000, 1000, '{}', '{}'), ('s2', 'u1', 1000, 1000, '{}', '{}')"
            .to_owned(),
        "INSERT INTO session_clients (session_id, client_id, position) VALUES \
         ('s1', 'old', 0), ('s2', 'old', 0)"
            .to_owned(),
    ];
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_database_from_before_per_client_sids_upgrades_and_keeps_auth0_s_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logoutd.db");
    database_before_sids(&path).await;
    let stores = open_store(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let old = stores
        .clients
        .get_client(&ClientId::new("old"))
        .await
        .unwrap()
        .unwrap();
    assert!(old.wants(Initiator::RpLogout));
    assert!(
        !old.wants(Initiator::SessionRevoked),
        "a client stored without initiators keeps Auth0's default"
    );
    let s1 = stores
        .sessions
        .get_session(&SessionId::new("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s1.clients[0].sid, None);
    let revoked = end(&stores, "s1", Initiator::SessionRevoked, t(2_000)).await;
    assert_eq!(revoked.deliveries, 0);
    assert_eq!(revoked.notes.skipped[0].client_id, ClientId::new("old"));
    assert_eq!(
        end(&stores, "s2", Initiator::RpLogout, t(2_000))
            .await
            .deliveries,
        1
    );
    let claimed = stores
        .queue
        .claim_due(t(2_000), Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed[0].delivery.token_sid(), Some(&SessionId::new("s2")));
}

#[tokio::test]
async fn deliveries_from_before_user_wide_rows_read_as_one_session_each() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logoutd.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let migrations =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/migrations/sqlite");
    let migrator = sqlx::migrate::Migrator::new(migrations).await.unwrap();
    migrator.run_to(5, &mut conn).await.unwrap();
    let statements = [
        format!(
            "INSERT INTO clients (client_id, settings, paused, has_url, created_at, updated_at) \
             VALUES ('old', '{OLD_SETTINGS}', 0, 1, 0, 0)"
        ),
        "INSERT INTO sessions (id, user_id, created_at, updated_at, device, metadata, ended_at) \
         VALUES ('s1', 'u1', 1000, 1000, '{}', '{}', 2000)"
            .to_owned(),
        "INSERT INTO deliveries (id, event_id, session_id, user_id, client_id, initiator, \
         metadata, state, attempts, next_attempt_at, budget_started_at, created_at, updated_at) \
         VALUES ('d1', 'e1', 's1', 'u1', 'old', 'rp-logout', '{}', 'pending', 0, 2000, 2000, \
         2000, 2000)"
            .to_owned(),
    ];
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let stores = open_store(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let old = stores
        .clients
        .get_client(&ClientId::new("old"))
        .await
        .unwrap()
        .unwrap();
    assert!(!old.per_user(), "a registration stored without the setting");
    let row = stores
        .deliveries
        .get_delivery(&logoutd_core::DeliveryId::new("d1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.delivery.scope, logoutd_core::DeliveryScope::Session);
    assert_eq!(row.delivery.sessions, 1);
    assert_eq!(row.delivery.token_sid(), Some(&SessionId::new("s1")));
}
