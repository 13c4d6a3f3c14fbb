//! `backchannel_logout_rate_limit` end to end, with real `logoutd serve` processes: a mass
//! logout reaches a client limited to 20/s (burst 5) at that pace, every delivery in one
//! attempt, while an unlimited client on the same RP origin is delivered at once; on SQLite
//! with one node, and on PostgreSQL with two nodes sharing the pace.

use crate::store::postgres::TestDatabase;
use crate::support::app::{TestApp, assert_auth0_error, start_time};
use crate::support::delivery::Harness;
use crate::support::process::ServeProcess;
use crate::support::recording_rp::{RecordedRequest, RecordingRp, Reply};
use crate::support::serve_process::store_url;
use axum::http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SESSIONS: usize = 40;
const PER_SECOND: f64 = 20.0;
const BURST: usize = 5;
/// Longest wait for every delivery.
const BOUND: Duration = Duration::from_secs(30);
/// Allowance for the spread of receipt times around send times (scheduling, signing, the
/// loopback, and a receiver that is not scheduled for a moment on a busy machine, which then
/// reads requests sent apart all at once): the receipts of any window of `w` are at most
/// `BURST + PER_SECOND x (w + JITTER)`, one request more than the limit at most.
const JITTER: Duration = Duration::from_millis(50);

/// Flags every node runs with: short retries, and a lease far longer than any wait.
const FLAGS: [&str; 6] = [
    "--lease-seconds",
    "10",
    "--retry-base-ms",
    "50",
    "--max-in-flight",
    "16",
];

/// Registers `paced` (limited) and `free` (unlimited) on the one RP, gives one user
/// `SESSIONS` sessions with both, and ends them with one user-wide call through the last
/// node; returns when the call was answered.
async fn mass_logout(nodes: &[ServeProcess], rp: &RecordingRp) -> Instant {
    let limit = json!({ "per_second": PER_SECOND, "burst": BURST });
    for (client, limit) in [("paced", limit), ("free", Value::Null)] {
        let body = json!({ "client_id": client, "name": client,
            "oidc_logout": { "backchannel_logout_urls": [rp.url(&format!("/{client}")).as_str()],
                "backchannel_logout_rate_limit": limit } });
        let (status, reply) = nodes[0]
            .call(Method::POST, "/api/v2/clients", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
        let limit = &reply["oidc_logout"]["backchannel_logout_rate_limit"];
        if client == "paced" {
            assert_eq!(limit, &json!({ "per_second": 20.0, "burst": 5 }));
        } else {
            assert!(limit.is_null(), "{reply}");
        }
    }
    for s in 0..SESSIONS {
        let body = json!({ "id": format!("s-{s}"), "user_id": "u-1",
            "clients": [{ "client_id": "paced" }, { "client_id": "free" }] });
        let (status, reply) = nodes[s % nodes.len()]
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let ended = json!({ "user_id": "u-1", "initiator": "rp-logout" });
    let (status, reply) = nodes[nodes.len() - 1]
        .call(Method::POST, "/api/v2/logout-events", Some(ended))
        .await;
    assert_eq!(status, 202, "{reply}");
    Instant::now()
}

/// The receipt times of `path`, in arrival order.
fn receipts(reqs: &[RecordedRequest], path: &str) -> Vec<Instant> {
    reqs.iter()
        .filter(|r| r.path == path)
        .map(|r| r.at)
        .collect()
}

/// Every window of receipts holds at most `BURST + PER_SECOND x (w + JITTER)` of them.
fn assert_paced(times: &[Instant]) {
    for (i, first) in times.iter().enumerate() {
        for (j, last) in times.iter().enumerate().skip(i) {
            let count = (j - i + 1) as f64;
            let window = last.duration_since(*first) + JITTER;
            let bound = BURST as f64 + PER_SECOND * window.as_secs_f64();
            assert!(
                count <= bound,
                "{count} receipts within {:?}: more than {bound:.2}; receipts at (ms) {:?}",
                last.duration_since(*first),
                offsets(times)
            );
        }
    }
}

/// The receipt times in milliseconds after the first.
fn offsets(times: &[Instant]) -> Vec<u128> {
    times
        .iter()
        .map(|t| t.duration_since(times[0]).as_millis())
        .collect()
}

/// A page of the client's deliveries.
async fn deliveries(node: &ServeProcess, client: &str) -> Vec<Value> {
    let path = format!("/api/v2/logout-deliveries?client_id={client}&take=100");
    let (status, reply) = node.call(Method::GET, &path, None).await;
    assert_eq!(status, 200, "{reply}");
    reply["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Polls `node` (bounded) until the client's deliveries satisfy `done`; returns them.
async fn wait_for(
    node: &ServeProcess,
    client: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + BOUND;
    loop {
        let rows = deliveries(node, client).await;
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whole check, over `nodes` sharing one store.
async fn paced_mass_logout(nodes: &[ServeProcess]) {
    let rp = RecordingRp::start(Reply::ok()).await;
    let ended = mass_logout(nodes, &rp).await;
    // While the pace holds rows back, the status view shows them pending, unattempted,
    // with the time they are due again.
    let held = wait_for(&nodes[0], "paced", |rows| {
        rows.iter().any(|r| {
            r["state"] == "pending" && r["attempts"] == 0 && r["next_attempt_at"].is_string()
        })
    })
    .await;
    assert!(
        held.iter()
            .any(|r| r["state"] == "pending" && r["attempts"] == 0),
        "no paced row seen pending: {held:?}"
    );
    let all = rp
        .wait_until(BOUND, |reqs| {
            receipts(reqs, "/paced").len() >= SESSIONS && receipts(reqs, "/free").len() >= SESSIONS
        })
        .await;
    let reqs = rp.requests();
    let (paced, free) = (receipts(&reqs, "/paced"), receipts(&reqs, "/free"));
    assert!(
        all,
        "{} paced and {} free receipts",
        paced.len(),
        free.len()
    );
    assert_eq!(paced.len(), SESSIONS, "each paced delivery sent once");
    assert_eq!(free.len(), SESSIONS, "each free delivery sent once");
    assert_paced(&paced);
    // The pace: 5 at once, then one every 50 ms, so the last after about 1.75 s.
    let span = paced[SESSIONS - 1].duration_since(paced[0]);
    assert!(span >= Duration::from_millis(1_700), "paced over {span:?}");
    // The unlimited client on the same origin was not held up by the paced one.
    let free_done = free[SESSIONS - 1].duration_since(ended);
    assert!(
        free_done < Duration::from_millis(1_000),
        "the unlimited client's deliveries took {free_done:?}"
    );
    assert!(free[SESSIONS - 1] < paced[SESSIONS - 1]);
    // Every paced delivery ends delivered in one attempt: waiting was never an attempt.
    for client in ["paced", "free"] {
        let rows = wait_for(&nodes[0], client, |rows| {
            rows.len() == SESSIONS && rows.iter().all(|r| r["state"] == "delivered")
        })
        .await;
        assert_eq!(rows.len(), SESSIONS);
        for row in &rows {
            assert_eq!(row["state"], "delivered", "{row}");
            assert_eq!(row["attempts"], 1, "{row}");
            assert!(row["last_error"].is_null(), "{row}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_logout_reaches_a_rate_limited_client_at_its_pace_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let node = ServeProcess::start(dir.path(), &store_url(dir.path()), &FLAGS).await;
    let nodes = [node];
    paced_mass_logout(&nodes).await;
    let [node] = nodes;
    node.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgresql_share_a_client_s_pace() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = ServeProcess::start(dir.path(), &db.url, &FLAGS).await;
    let second = ServeProcess::start(dir.path(), &db.url, &FLAGS).await;
    let nodes = [first, second];
    paced_mass_logout(&nodes).await;
    for node in nodes {
        node.terminate().await;
    }
}

/// The setting through the API: set with a default burst, changed, refused when out of range
/// (400 in Auth0's shape, nothing changed), and removed with `null`.
#[tokio::test]
async fn the_rate_limit_is_set_checked_and_removed_through_the_api() {
    let app = TestApp::memory().await;
    let url = "http://127.0.0.1:9/bc";
    let create = json!({ "client_id": "rp1", "name": "RP 1",
        "oidc_logout": { "backchannel_logout_urls": [url],
            "backchannel_logout_rate_limit": { "per_second": 2.5 } } });
    let (status, reply) = app
        .call(Method::POST, "/api/v2/clients", Some(create))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let limit = |reply: &Value| reply["oidc_logout"]["backchannel_logout_rate_limit"].clone();
    // The burst defaults to max(1, ceil(per_second)).
    assert_eq!(limit(&reply), json!({ "per_second": 2.5, "burst": 3 }));
    let patch = |body: Value| json!({ "oidc_logout": { "backchannel_logout_rate_limit": body } });
    let (status, reply) = app
        .call(
            Method::PATCH,
            "/api/v2/clients/rp1",
            Some(patch(json!({ "per_second": 0.5, "burst": 2 }))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(limit(&reply), json!({ "per_second": 0.5, "burst": 2 }));
    // A PATCH without the member keeps it.
    let (status, reply) = app
        .call(
            Method::PATCH,
            "/api/v2/clients/rp1",
            Some(json!({ "name": "RP one" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(limit(&reply), json!({ "per_second": 0.5, "burst": 2 }));
    let bad = [
        json!({ "per_second": 0 }),
        json!({ "per_second": -1 }),
        json!({ "per_second": 0.0001 }),
        json!({ "per_second": 1000.5 }),
        json!({ "per_second": "20" }),
        json!({ "per_second": 20, "burst": 0 }),
        json!({ "per_second": 20, "burst": 1001 }),
        json!({ "per_second": 20, "burst": 2.5 }),
        json!({ "per_second": 20, "burst": -1 }),
        json!({ "burst": 5 }),
        json!({ "per_second": 20, "window": 1 }),
        json!(20),
    ];
    for body in bad {
        let (status, reply) = app
            .call(
                Method::PATCH,
                "/api/v2/clients/rp1",
                Some(patch(body.clone())),
            )
            .await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert!(
            reply["message"].as_str().unwrap().contains("per_second")
                || reply["message"].as_str().unwrap().contains("burst")
                || reply["errorCode"] == "invalid_body",
            "{body}: {reply}"
        );
    }
    let (_, reply) = app.call(Method::GET, "/api/v2/clients/rp1", None).await;
    assert_eq!(
        limit(&reply),
        json!({ "per_second": 0.5, "burst": 2 }),
        "a refusal changed nothing"
    );
    let (status, reply) = app
        .call(
            Method::PATCH,
            "/api/v2/clients/rp1",
            Some(patch(Value::Null)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(
        reply["oidc_logout"]
            .get("backchannel_logout_rate_limit")
            .is_none(),
        "{reply}"
    );
    let (_, reply) = app.call(Method::GET, "/api/v2/clients/rp1", None).await;
    assert!(limit(&reply).is_null());
}

/// On an injected clock: rows beyond the burst wait pending, unattempted, due shortly before
/// their place; each goes when the clock reaches it, in one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_rows_wait_pending_without_an_attempt_until_their_place() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = rp.url("/slow");
    let settings = json!({ "oidc_logout": { "backchannel_logout_urls": [url.as_str()],
        "backchannel_logout_rate_limit": { "per_second": 1, "burst": 2 } } });
    h.client("slow", url.as_str(), settings).await;
    for s in 0..5 {
        h.session(&format!("s{s}"), "u1", &["slow"], json!({}))
            .await;
    }
    assert_eq!(h.end(json!({ "user_id": "u1" }), "rp-logout").await, 5);
    h.outbox.wait_recorded(2).await;
    h.outbox.wait_released(3).await;
    let rows = h.deliveries("client_id=slow").await;
    let mut pending: Vec<&Value> = rows.iter().filter(|r| r["state"] == "pending").collect();
    assert_eq!(pending.len(), 3, "{rows:?}");
    pending.sort_by_key(|r| r["next_attempt_at"].as_str().unwrap().to_owned());
    for (i, row) in pending.iter().enumerate() {
        assert_eq!(row["attempts"], 0, "{row}");
        assert!(row["last_error"].is_null(), "{row}");
        // Places at 1 s, 2 s and 3 s; each row is due 100 ms before its place.
        let due: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(row["next_attempt_at"].clone()).unwrap();
        let expected = start_time() + chrono::Duration::milliseconds(900 + 1000 * i as i64);
        assert_eq!(due, expected, "{row}");
    }
    assert!(
        h.metrics
            .encode()
            .contains("logoutd_delivery_pacing_deferrals_total{client_id=\"slow\"} 3"),
        "{}",
        h.metrics.encode()
    );
    // The clock reaches the first row's due time: it goes at its place, in one attempt.
    let first = pending[0].clone();
    h.advance_to(&first);
    h.outbox.wait_recorded(3).await;
    assert_eq!(rp.requests().len(), 3);
    let row = h.detail(first["id"].as_str().unwrap()).await;
    assert_eq!(row["state"], "delivered", "{row}");
    assert_eq!(row["attempts"], 1, "{row}");
    let rows = h.deliveries("client_id=slow").await;
    let still = rows.iter().filter(|r| r["state"] == "pending").count();
    assert_eq!(still, 2, "the others wait for their places: {rows:?}");
}
