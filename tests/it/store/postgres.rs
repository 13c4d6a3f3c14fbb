//! PostgreSQL fixture and PostgreSQL-only cases: several store instances (nodes) on one
//! database share the work, end a session once, and wake each other.
//!
//! Every test gets a throwaway database `logoutd_test_<unix seconds>_<random>` on the server
//! at `LOGOUTD_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped
//! when the test ends; databases left behind by an interrupted run more than an hour ago are
//! dropped by the next run. Without a server the tests are skipped with a warning, or fail
//! when `CI=true`.

use super::Backend;
use super::claims::lease;
use super::fixtures::*;
use crate::support::app::TestApp;
use crate::support::delivery::{Harness, test_settings};
use crate::support::recording_rp::{RecordingRp, Reply};
use axum::http::{Method, StatusCode};
use chrono::Duration;
use futures_util::FutureExt;
use logoutd_core::DeliveryFilter;
use logoutd_core::Initiator;
use logoutd_core::PostgresStore;
use logoutd_core::Stores;
use logoutd_core::{DeliveryId, EventId, SessionId, UserId, open_store};
use logoutd_core::{EndReport, EndTarget};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PREFIX: &str = "logoutd_test_";
/// Test databases older than this are left over from an interrupted run.
const STALE_AFTER_SECS: u64 = 3_600;
/// How long a test waits for a wake-up before failing.
pub(super) const WAKE_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

static SWEPT: AtomicBool = AtomicBool::new(false);
static WARNED: AtomicBool = AtomicBool::new(false);

/// The server's maintenance database URL.
fn admin_url() -> String {
    std::env::var("LOGOUTD_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A connection to the maintenance database, or `None` (after a loud warning) when the server
/// does not answer; fails instead under CI.
async fn admin() -> Option<PgConnection> {
    let connect = PgConnection::connect(&admin_url());
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
        Ok(Ok(conn)) => Some(conn),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL is not answering on 127.0.0.1:5432 and CI=true")
        }
        _ => {
            eprintln!("SKIPPED: PostgreSQL tests (no server on 127.0.0.1:5432)");
            if !WARNED.swap(true, Ordering::SeqCst) {
                // Once per run, past the test harness's output capture, so it is seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: PostgreSQL tests (no server on 127.0.0.1:5432)"
                );
            }
            None
        }
    }
}

/// Drops test databases left behind by runs that ended more than an hour ago (once per run).
async fn sweep(conn: &mut PgConnection) {
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'logoutd\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let cutoff = unix_now().saturating_sub(STALE_AFTER_SECS);
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| secs < cutoff) {
            drop_database(conn, &name).await;
        }
    }
}

/// Drops database `name`, closing its connections.
async fn drop_database(conn: &mut PgConnection, name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(conn).await;
}

/// A throwaway database, dropped with this guard.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a fresh database; `None` when the tests are skipped.
    pub async fn create() -> Option<Self> {
        let mut conn = admin().await?;
        sweep(&mut conn).await;
        let name = format!("{PREFIX}{}_{:016x}", unix_now(), rand::random::<u64>());
        let sql = format!("CREATE DATABASE \"{name}\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Self {
            url: url.to_string(),
            name,
        })
    }
}

impl Drop for TestDatabase {
    /// Drops the database from a thread of its own, since `Drop` cannot await.
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    drop_database(&mut conn, &name).await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Waits for the signal a store's listener gives once it listens (a notification may have
/// been missed before), and takes the permit it leaves, so that only what a case does can
/// signal the wake-up afterwards. The signal wakes waiters and then leaves a permit; a round
/// trip to the database gives the listener time to leave it before it is taken.
pub(super) async fn listening(stores: &Stores) {
    let wakeup = stores.queue.wakeup();
    tokio::time::timeout(WAKE_BOUND, wakeup.notified())
        .await
        .expect("the store's listener starts listening");
    stores.health.ping().await.unwrap();
    let _ = wakeup.notified().now_or_never();
}

/// A fresh PostgreSQL backend for the conformance suite, listening; `None` when skipped.
pub async fn postgres_fixture() -> Option<Backend> {
    let db = TestDatabase::create().await?;
    let stores = PostgresStore::open(&db.url).await.unwrap().into_stores();
    listening(&stores).await;
    Some(Backend {
        stores,
        _guard: Box::new(db),
    })
}

/// Two nodes on one fresh database, opened through `open_store` like `logoutd serve` does.
pub(super) async fn two_nodes() -> Option<(Stores, Stores, TestDatabase)> {
    let db = TestDatabase::create().await?;
    let a = open_store(&db.url).await.unwrap();
    let b = open_store(&db.url).await.unwrap();
    Some((a, b, db))
}

/// Claims at `t(10_000)` in batches of 7 until nothing is left; returns the ids claimed.
async fn drain(stores: Stores) -> Vec<DeliveryId> {
    let mut mine = Vec::new();
    loop {
        let batch = stores.queue.claim_due(t(10_000), lease(), 7).await.unwrap();
        if batch.is_empty() {
            return mine;
        }
        mine.extend(batch.into_iter().map(|c| c.delivery.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_hold_a_current_lease_on_one_row() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    let clients: Vec<_> = (0..4).map(|i| client(&format!("c{i}"))).collect();
    register(&a, &clients).await;
    for n in 0..50 {
        let id = format!("s{n:02}");
        let joined = session(&id, "u1", &["c0", "c1", "c2", "c3"]);
        a.sessions.create_session(&joined).await.unwrap();
        end(&a, &id, Initiator::RpLogout, t(2_000 + n)).await;
    }
    let tasks: Vec<_> = [&a, &b, &a, &b, &a, &b]
        .into_iter()
        .map(|node| tokio::spawn(drain(node.clone())))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 200, "every row claimed once");
    assert_eq!(unique.len(), 200, "no row claimed twice");
}

/// Ends `target` with `idp-logout` on both nodes at once; both reports.
async fn end_on_both(a: &Stores, b: &Stores, target: EndTarget) -> Vec<EndReport> {
    let ends = [a, b].map(|node| {
        let sessions = node.sessions.clone();
        let target = target.clone();
        tokio::spawn(async move {
            sessions
                .end_sessions(
                    &target,
                    Initiator::IdpLogout,
                    &EventId::generate(),
                    t(3_000),
                )
                .await
                .unwrap()
        })
    });
    let mut reports = Vec::new();
    for end in ends {
        reports.push(end.await.unwrap());
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_ending_one_session_write_its_rows_once() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    register(&a, &[client("c1"), client("c2")]).await;
    for n in 0..20 {
        let id = format!("s{n:02}");
        let joined = session(&id, "u1", &["c1", "c2"]);
        a.sessions.create_session(&joined).await.unwrap();
        let reports = end_on_both(&a, &b, EndTarget::Session(SessionId::new(id.as_str()))).await;
        let ended: usize = reports.iter().map(|r| r.sessions_ended).sum();
        let rows: usize = reports.iter().map(|r| r.deliveries).sum();
        assert_eq!((ended, rows), (1, 2), "session {id}");
    }
    let all = a
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_ending_one_user_end_each_session_once_across_chunks() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    register(&a, &[client("c1"), client("c2")]).await;
    // More sessions than three chunks of a user-wide end, so both walks overlap.
    let sessions = 200;
    for n in 0..sessions {
        let id = format!("s{n:03}");
        create(&a, &session(&id, "u1", &["c1", "c2"])).await;
    }
    let reports = end_on_both(&a, &b, EndTarget::User(UserId::new("u1"))).await;
    let ended: usize = reports.iter().map(|r| r.sessions_ended).sum();
    let rows: usize = reports.iter().map(|r| r.deliveries).sum();
    assert_eq!((ended, rows), (sessions, 2 * sessions));
    let mut pairs = HashSet::new();
    for d in all_deliveries(&a, 100).await {
        assert!(
            pairs.insert((d.session_id.to_string(), d.client_id.to_string())),
            "one row per session and client"
        );
    }
    assert_eq!(pairs.len(), 2 * sessions);
    for n in 0..sessions {
        assert!(stored(&a, &format!("s{n:03}")).await.is_ended());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_on_one_node_wakes_another() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    register(&a, &[client("c1")]).await;
    a.sessions
        .create_session(&session("s1", "u1", &["c1"]))
        .await
        .unwrap();
    let wakeup = b.queue.wakeup();
    // B's listener signals once when it starts listening; after that, only a NOTIFY wakes it.
    listening(&b).await;
    let waiting = wakeup.notified();
    end(&a, "s1", Initiator::RpLogout, t(2_000)).await;
    tokio::time::timeout(WAKE_BOUND, waiting)
        .await
        .expect("node B is woken by node A's termination");
    let claimed = b.queue.claim_due(t(2_000), lease(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].delivery.next_attempt_at,
        Some(t(2_000) + Duration::seconds(30))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_never_end_one_session_twice() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    register(&a, &[client("c1"), client("c2")]).await;
    for n in 0..60 {
        let mut s = session(&format!("s{n:02}"), "u1", &["c1", "c2"]);
        s.expires_at = Some(t(2_000));
        a.sessions.create_session(&s).await.unwrap();
    }
    let sweeps: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .map(|node| {
            let sessions = node.sessions.clone();
            tokio::spawn(async move {
                let mut ended = 0;
                loop {
                    let report = sessions
                        .end_expired(t(3_000), 7, &EventId::generate())
                        .await
                        .unwrap();
                    // Each sweeper counts what it ended; the sum must be exactly the expired.
                    ended += report.sessions_ended;
                    if report.sessions_ended == 0 {
                        return ended;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for sweep in sweeps {
        total += sweep.await.unwrap();
    }
    assert_eq!(total, 60, "every expired session ended exactly once");
}

/// Node B's dispatcher, idle with its fallback look at the outbox an hour away, delivers a row
/// that node A (an API without a dispatcher) ended: only A's `NOTIFY` can wake it in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_ended_on_one_node_is_delivered_by_another_node_s_idle_dispatcher() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    listening(&b).await;
    let h = Harness::with_max_idle(
        b,
        test_settings(),
        Some(std::time::Duration::from_secs(3600)),
    )
    .await;
    let rp = RecordingRp::start(Reply::ok()).await;
    h.client("c1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["c1"], json!({})).await;
    // B has looked at the outbox, found nothing due, and waits.
    h.outbox.wait_idle(1).await;
    let node_a = TestApp::over(a, true);
    let end = json!({ "session_id": "s1", "initiator": "rp-logout" });
    let (status, reply) = node_a
        .call(Method::POST, "/api/v2/logout-events", Some(end))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    h.outbox.wait_recorded(1).await;
    let rows = h.deliveries("session_id=s1").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "delivered", "{rows:?}");
    assert_eq!(rp.requests().len(), 1);
    h.stop().await;
}

/// Two nodes claiming operator events at once: each event is claimed by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claim_each_operator_event_once() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    let clients: Vec<_> = (0..30).map(|i| client(&format!("c{i}"))).collect();
    register(&a, &clients).await;
    for rp in &clients {
        a.clients
            .set_paused(&rp.client_id, true, t(1_000))
            .await
            .unwrap();
    }
    let drain_events = |node: Stores| async move {
        let mut mine = Vec::new();
        loop {
            let batch = node
                .operator_events
                .claim_events(t(2_000), lease(), 3)
                .await
                .unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|c| c.event.id));
        }
    };
    let tasks: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .map(|node| tokio::spawn(drain_events(node.clone())))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 30, "every event claimed once");
    assert_eq!(unique.len(), 30, "no event claimed twice");
}
