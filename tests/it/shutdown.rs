//! Graceful shutdown of the real binary: SIGTERM in the middle of a mass logout loses no
//! delivery, duplicates none, and leaves no row waiting for a lease to expire.

use crate::support::recording_rp::{RecordedRequest, RecordingRp, Reply};
use crate::support::serve_process::{ServeProcess, stored_deliveries};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use logoutd_core::{DeliveryFilter, DeliveryState};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const SESSIONS: usize = 300;
/// A lease far longer than the test may take: a row left in flight would time the test out.
const FLAGS: &[&str] = &["--lease-seconds", "300", "--max-in-flight", "8"];

/// The `sid` claim of a request's token, read without verification.
fn sid(req: &RecordedRequest) -> String {
    let token = req.form_param("logout_token").unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_mass_logout_delivers_every_pair_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RecordingRp::start(Reply::ok().delay(Duration::from_millis(20))).await;
    let server = ServeProcess::start(dir.path(), FLAGS).await;
    server.client("c1", rp.url("/bc").as_str()).await;
    for n in 0..SESSIONS {
        let body = json!({ "id": format!("s{n:03}"), "user_id": "u1",
            "clients": [{ "client_id": "c1" }] });
        let (status, reply) = server
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let (status, reply) = server
        .call(Method::DELETE, "/api/v2/users/u1/sessions", None)
        .await;
    assert_eq!(
        (status, reply["deliveries"].as_u64()),
        (202, Some(SESSIONS as u64))
    );
    rp.wait_requests(20).await;
    assert!(server.terminate().await.success());
    let before_restart = rp.requests().len();
    assert!(
        before_restart < SESSIONS,
        "the signal landed mid-run ({before_restart}/{SESSIONS})"
    );
    let restarted = ServeProcess::start(dir.path(), FLAGS).await;
    rp.wait_requests(SESSIONS).await;
    assert!(restarted.terminate().await.success());
    let mut per_sid: HashMap<String, usize> = HashMap::new();
    for req in rp.requests() {
        *per_sid.entry(sid(&req)).or_default() += 1;
    }
    assert_eq!(per_sid.len(), SESSIONS, "every session's client was told");
    let repeated: Vec<_> = per_sid.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "duplicates: {repeated:?}");
    let url = format!("sqlite://{}", dir.path().join("db").display());
    let stores = logoutd_core::open_store(&url).await.unwrap();
    let delivered = DeliveryFilter {
        state: Some(DeliveryState::Delivered),
        ..DeliveryFilter::default()
    };
    let page = stores
        .deliveries
        .list_deliveries(&delivered, None, 1000)
        .await
        .unwrap();
    assert_eq!(
        page.items.len(),
        SESSIONS,
        "every row recorded as delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_client_stuck_in_its_headers_exits_within_the_grace() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    // The header timeout is far away: only the shutdown grace can end the stuck client.
    let flags = [
        "--header-read-timeout-ms",
        "120000",
        "--shutdown-grace-ms",
        "500",
    ];
    let server = ServeProcess::start(dir.path(), &flags).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        .await
        .unwrap();
    // Accepted before this later connection is answered.
    let (status, _) = server.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    assert!(server.terminate().await.success());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stuck.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the stuck client was not let go: {read:?}"
    );
}

/// Sessions of the hand-back test: enough that most are still undelivered at the signal.
const QUEUED: usize = 120;
/// Requests the RP answers before the signal.
const BEFORE_SIGNAL: usize = 30;
/// The grace of the hand-back test's serve, and the bound on its exit.
const GRACE: Duration = Duration::from_secs(3);

/// Ends `n` sessions of user `u1`, one client `c1` each; returns how many rows were written.
async fn end_sessions(server: &ServeProcess, n: usize) -> u64 {
    for i in 0..n {
        let body = json!({ "id": format!("s{i:03}"), "user_id": "u1",
            "clients": [{ "client_id": "c1" }] });
        let (status, reply) = server
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let (status, reply) = server
        .call(Method::DELETE, "/api/v2/users/u1/sessions", None)
        .await;
    assert_eq!(status, 202, "{reply}");
    reply["deliveries"].as_u64().unwrap()
}

/// SIGTERM while rows wait in memory for their origin's one slot: the RP answers each request
/// after 25 ms, so with `--max-per-origin 1` one attempt is in flight and the origin keeps
/// moving, and up to `--max-in-flight` claimed rows wait for it (design: rows wait in memory
/// while their origin moves). The signal must hand those rows back due at once: none is left
/// leased until its 300 s lease ends, serve exits within its grace, nothing sent is lost, and
/// a restart delivers every row exactly once (docs/operations.md, "Deploys, crashes and
/// leases": a deploy causes neither duplicates nor a wait for leases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_rows_waiting_for_a_slot_due_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RecordingRp::start(Reply::ok().delay(Duration::from_millis(25))).await;
    let grace = GRACE.as_millis().to_string();
    let flags = [
        "--lease-seconds",
        "300",
        "--max-per-origin",
        "1",
        "--max-in-flight",
        "8",
        "--shutdown-grace-ms",
        &grace,
    ];
    let server = ServeProcess::start(dir.path(), &flags).await;
    server.client("c1", rp.url("/bc").as_str()).await;
    assert_eq!(end_sessions(&server, QUEUED).await, QUEUED as u64);
    rp.wait_requests(BEFORE_SIGNAL).await;
    let signalled = std::time::Instant::now();
    assert!(server.terminate().await.success());
    let took = signalled.elapsed();
    let exited = chrono::Utc::now();
    assert!(took < GRACE, "serve took {took:?} to exit after SIGTERM");

    // The signal landed mid-run, and every request sent was recorded as delivered.
    let sent = rp.requests().len();
    assert!(
        (BEFORE_SIGNAL..QUEUED).contains(&sent),
        "the signal landed mid-run ({sent}/{QUEUED})"
    );
    let rows = stored_deliveries(dir.path()).await;
    assert_eq!(rows.len(), QUEUED);
    let delivered = rows
        .iter()
        .filter(|r| r.state == DeliveryState::Delivered)
        .count();
    assert_eq!(delivered, sent, "every answered request is recorded");
    // The rest were handed back: pending, no attempt counted, due at once or after their
    // origin's short deferral (at most 10 s), never at the end of a 300 s lease.
    let latest_due = exited + chrono::Duration::from_std(logoutd_core::MAX_DEFER).unwrap();
    let mut due_by_exit = 0;
    for row in rows.iter().filter(|r| r.state != DeliveryState::Delivered) {
        assert_eq!(row.state, DeliveryState::Pending, "left behind: {row:?}");
        assert_eq!(
            row.attempts, 0,
            "a handed-back row counts no attempt: {row:?}"
        );
        let due = row.next_attempt_at.expect("a pending row is due some time");
        assert!(due <= latest_due, "not due soon: {row:?}");
        due_by_exit += usize::from(due <= exited);
    }
    assert!(due_by_exit > 0, "no row was handed back due at once");

    // A restart on the same store delivers the rest, each row once in all.
    let restarted = ServeProcess::start(dir.path(), &flags).await;
    rp.wait_requests(QUEUED).await;
    assert!(restarted.terminate().await.success());
    let mut per_sid: HashMap<String, usize> = HashMap::new();
    for req in rp.requests() {
        *per_sid.entry(sid(&req)).or_default() += 1;
    }
    assert_eq!(per_sid.len(), QUEUED, "every session's client was told");
    let repeated: Vec<_> = per_sid.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "duplicates: {repeated:?}");
    let rows = stored_deliveries(dir.path()).await;
    let undelivered: Vec<_> = rows
        .iter()
        .filter(|r| r.state != DeliveryState::Delivered)
        .collect();
    assert!(undelivered.is_empty(), "{undelivered:?}");
}
