//! Endpoint health end to end, with real `logoutd serve` processes: an RP that keeps failing
//! is paused by the health policy while a healthy one is delivered; the API, the CLI and the
//! metrics show each client's success rate and latency; resuming releases the held rows with
//! a fresh budget and they are delivered. On PostgreSQL, two nodes recording for one client
//! add up.

use crate::store::postgres::TestDatabase;
use crate::support::process::{API_TOKEN, ServeProcess};
use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::store_url;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SESSIONS: usize = 3;
/// Longest wait for an event.
const BOUND: Duration = Duration::from_secs(30);
/// Short retries, and the policy at its smallest: three failures since the last success, and
/// no wait for "no success for".
const FLAGS: [&str; 10] = [
    "--retry-base-ms",
    "20",
    "--retry-cap-ms",
    "50",
    "--lease-seconds",
    "10",
    "--health-pause-min-failures",
    "3",
    "--health-pause-after-seconds",
    "0",
];

/// Registers `client` posting to `url` in `all` mode.
async fn register(node: &ServeProcess, client: &str, url: &str) {
    let body = json!({ "client_id": client, "name": client,
        "oidc_logout": { "backchannel_logout_urls": [url],
            "backchannel_logout_initiators": { "mode": "all" } } });
    let (status, reply) = node.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, 201, "{reply}");
}

/// Gives user `u-1` `SESSIONS` sessions with `clients`, created round-robin on `nodes`, and
/// ends them all with one call.
async fn end_sessions(nodes: &[ServeProcess], clients: &[&str]) {
    let clients: Vec<Value> = clients.iter().map(|c| json!({ "client_id": c })).collect();
    for s in 0..SESSIONS {
        let body = json!({ "id": format!("s-{s}"), "user_id": "u-1", "clients": clients });
        let (status, reply) = nodes[s % nodes.len()]
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let end = json!({ "user_id": "u-1", "initiator": "rp-logout" });
    let (status, reply) = nodes[0]
        .call(Method::POST, "/api/v2/logout-events", Some(end))
        .await;
    assert_eq!(status, 202, "{reply}");
}

/// Reads the client's health every 10 ms (bounded) until `done` holds; returns it.
async fn wait_health(node: &ServeProcess, client: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + BOUND;
    loop {
        let (status, health) = node
            .call(
                Method::GET,
                &format!("/api/v2/clients/{client}/health"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{health}");
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "health never matched: {health}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `logoutd ARGS` against `node`; returns its stdout, asserting success.
async fn cli(node: &ServeProcess, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(args)
        .env("LOGOUTD_URL", node.url(""))
        .env("LOGOUTD_API_TOKEN", API_TOKEN)
        .env("LOGOUTD_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rp_is_paused_by_the_policy_and_resuming_delivers_its_held_rows() {
    let dir = tempfile::tempdir().unwrap();
    let node = ServeProcess::start(dir.path(), &store_url(dir.path()), &FLAGS).await;
    let failing = RecordingRp::start(Reply::status(503)).await;
    let healthy = RecordingRp::start(Reply::ok()).await;
    register(&node, "bad", failing.url("/bc").as_str()).await;
    register(&node, "good", healthy.url("/bc").as_str()).await;
    end_sessions(std::slice::from_ref(&node), &["bad", "good"]).await;

    // The failing client is paused by the policy, in the transaction of the failures.
    let bad = wait_health(&node, "bad", |h| h["paused"] == true).await;
    assert_eq!(bad["paused_by"], "health_policy", "{bad}");
    assert!(bad["paused_at"].is_string(), "{bad}");
    assert!(bad["failures"].as_u64().unwrap() >= 3, "{bad}");
    assert_eq!(bad["success_rate"], 0.0, "{bad}");
    assert!(
        bad["last_success_at"].is_null() && bad["failing_since"].is_string(),
        "{bad}"
    );
    let (_, client) = node.call(Method::GET, "/api/v2/clients/bad", None).await;
    assert_eq!(client["paused_by"], "health_policy", "{client}");
    // Its rows wait, pending, none of them failed.
    let held = node
        .wait_deliveries("client_id=bad", |rows| {
            rows.len() == SESSIONS && rows.iter().all(|r| r["state"] == "pending")
        })
        .await;
    assert_eq!(held.len(), SESSIONS);

    // The healthy client: every attempt delivered, with its latency.
    let good = wait_health(&node, "good", |h| h["successes"] == SESSIONS).await;
    assert_eq!(good["success_rate"], 1.0, "{good}");
    assert!(good["latency_ms"]["p50"].is_u64() && good["latency_ms"]["p99"].is_u64());
    assert_eq!(
        (good["paused"].clone(), good["paused_by"].clone()),
        (json!(false), Value::Null)
    );

    // The list, the CLI and the metrics show the same.
    let (status, list) = node.call(Method::GET, "/api/v2/client-health", None).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bad", "good"]);
    let table = cli(&node, &["clients", "health"]).await;
    assert!(
        table.contains("health_policy") && table.contains("100.0%"),
        "{table}"
    );
    let one: Value =
        serde_json::from_str(&cli(&node, &["clients", "health", "good", "--json"]).await).unwrap();
    assert_eq!(one["client_id"], "good");
    let metrics = reqwest::get(node.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "logoutd_client_success_ratio{client_id=\"good\"} 1.0",
        "logoutd_client_success_ratio{client_id=\"bad\"} 0.0",
        "logoutd_client_paused{client_id=\"bad\"} 1",
        "logoutd_client_paused{client_id=\"good\"} 0",
        "logoutd_client_auto_pauses_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("logoutd_client_latency_seconds{client_id=\"good\",quantile=\"0.99\"}")
    );
    assert!(metrics.contains("logoutd_client_last_success_timestamp_seconds{client_id=\"good\"}"));

    // The RP is fixed (a new URL while paused); resuming releases the held rows with a fresh
    // budget, and each is delivered in one attempt.
    let fixed = RecordingRp::start(Reply::ok()).await;
    let patch =
        json!({ "oidc_logout": { "backchannel_logout_urls": [fixed.url("/bc").as_str()] } });
    let (status, reply) = node
        .call(Method::PATCH, "/api/v2/clients/bad", Some(patch))
        .await;
    assert_eq!(
        (status, reply["paused"].clone()),
        (200, json!(true)),
        "{reply}"
    );
    let (status, reply) = node
        .call(Method::POST, "/api/v2/clients/bad/resume", None)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["paused_by"].is_null() && reply["paused_at"].is_null(),
        "{reply}"
    );
    fixed.wait_requests(SESSIONS).await;
    let delivered = node
        .wait_deliveries("client_id=bad", |rows| {
            rows.iter().all(|r| r["state"] == "delivered")
        })
        .await;
    assert!(
        delivered.iter().all(|r| r["attempts"] == 1),
        "{delivered:#?}"
    );
    let bad = wait_health(&node, "bad", |h| h["successes"] == SESSIONS).await;
    assert_eq!(
        (bad["paused"].clone(), bad["failures_since_success"].clone()),
        (json!(false), json!(0))
    );
    node.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgresql_add_up_one_client_s_health() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = ServeProcess::start(dir.path(), &db.url, &FLAGS).await;
    let second = ServeProcess::start(dir.path(), &db.url, &FLAGS).await;
    let rp = RecordingRp::start(Reply::ok()).await;
    register(&first, "c1", rp.url("/bc").as_str()).await;
    let nodes = [first, second];
    end_sessions(&nodes, &["c1"]).await;
    rp.wait_requests(SESSIONS).await;
    for node in &nodes {
        let h = wait_health(node, "c1", |h| h["attempts"] == SESSIONS).await;
        assert_eq!(
            (h["successes"].clone(), h["success_rate"].clone()),
            (json!(SESSIONS), json!(1.0))
        );
    }
    for node in nodes {
        node.terminate().await;
    }
}
