//! `wait_ms` on the end routes, end to end against real `logoutd serve` processes: the end is
//! committed first, then the request waits (bounded) until every delivery of that end has an
//! answer, and the 202 lists where each stands. Rows the wait leaves behind go on in the
//! background; bad values end nothing; on PostgreSQL the wait sees another node's deliveries.

use crate::store::postgres::TestDatabase;
use crate::support::process;
use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Longest a background delivery may take to show up in the API.
const SETTLE: Duration = Duration::from_secs(20);

/// The entry of `results` for `client`.
fn result_of<'a>(reply: &'a Value, client: &str) -> &'a Value {
    reply["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {reply}"))
        .iter()
        .find(|r| r["client_id"] == client)
        .unwrap_or_else(|| panic!("no result for {client}: {reply}"))
}

/// Creates session `id` of `user` joined by `clients`.
async fn session(node: &ServeProcess, id: &str, user: &str, clients: &[&str]) {
    let clients: Vec<Value> = clients.iter().map(|c| json!({ "client_id": c })).collect();
    let body = json!({ "id": id, "user_id": user, "clients": clients });
    let (status, reply) = node
        .call(Method::POST, "/api/v2/sessions", Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
}

/// Polls delivery `id` through the API until it is in `state`, for at most [`SETTLE`].
async fn until_state(node: &ServeProcess, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (status, row) = node
            .call(
                Method::GET,
                &format!("/api/v2/logout-deliveries/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{row}");
        if row["state"] == state {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {id} never became {state}: {row}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_reports_each_rps_answer_and_skips_paused_clients() {
    let ok = RecordingRp::start(Reply::status(204)).await;
    let refusing = RecordingRp::start(Reply::invalid_request("unknown sid")).await;
    let dir = tempfile::tempdir().unwrap();
    let node = ServeProcess::start(dir.path(), &[]).await;
    node.client("ok", ok.url("/bc").as_str()).await;
    node.client("refusing", refusing.url("/bc").as_str()).await;
    node.client("paused", ok.url("/paused").as_str()).await;
    let (status, _) = node
        .call(Method::POST, "/api/v2/clients/paused/pause", None)
        .await;
    assert_eq!(status, 200);
    let all = ["ok", "refusing", "paused"];
    session(&node, "s1", "u1", &all).await;

    let body = json!({ "session_id": "s1", "initiator": "rp-logout", "wait_ms": 10000 });
    let started = Instant::now();
    let (status, reply) = node
        .call(Method::POST, "/api/v2/logout-events", Some(body))
        .await;
    assert_eq!(status, 202, "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "waited for the paused client"
    );
    assert_eq!(reply["deliveries"], 3, "{reply}");
    assert_eq!(reply["wait_complete"], true, "{reply}");
    assert_eq!(reply["results_omitted"], 0, "{reply}");
    assert_eq!(reply["results"].as_array().unwrap().len(), 3, "{reply}");
    let delivered = result_of(&reply, "ok");
    assert_eq!(delivered["state"], "delivered", "{reply}");
    assert_eq!(delivered["attempts"], 1, "{reply}");
    assert_eq!(delivered["last_status"], 204, "{reply}");
    let failed = result_of(&reply, "refusing");
    assert_eq!(failed["state"], "failed", "{reply}");
    assert_eq!(failed["last_status"], 400, "{reply}");
    let held = result_of(&reply, "paused");
    assert_eq!(held["state"], "pending", "{reply}");
    assert_eq!(held["attempts"], 0, "{reply}");
    assert_eq!(held["last_status"], Value::Null, "{reply}");
    assert_eq!(ok.requests().len(), 1, "the paused client was told");

    // A user-wide end waits for the rows of every session it ends, and only for them.
    session(&node, "s2", "u2", &["ok"]).await;
    session(&node, "s3", "u2", &["ok"]).await;
    let (status, reply) = node
        .call(
            Method::DELETE,
            "/api/v2/users/u2/sessions?wait_ms=10000",
            None,
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["wait_complete"], true, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{reply}");
    assert!(results.iter().all(|r| r["state"] == "delivered"), "{reply}");

    // Without wait_ms, or with 0, the answer is what it always was.
    session(&node, "s4", "u3", &["ok"]).await;
    session(&node, "s5", "u3", &["ok"]).await;
    for path in ["/api/v2/sessions/s4", "/api/v2/sessions/s5?wait_ms=0"] {
        let (status, reply) = node.call(Method::DELETE, path, None).await;
        assert_eq!(status, 202, "{reply}");
        let keys: Vec<&String> = reply.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["deliveries", "event_id", "held", "skipped"],
            "{reply}"
        );
    }
    node.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_lists_the_row_which_then_delivers_in_the_background() {
    let slow = RecordingRp::start(Reply::ok().delay(Duration::from_millis(1500))).await;
    let dir = tempfile::tempdir().unwrap();
    let node = ServeProcess::start(dir.path(), &[]).await;
    node.client("slow", slow.url("/bc").as_str()).await;
    session(&node, "s1", "u1", &["slow"]).await;

    let started = Instant::now();
    let (status, reply) = node
        .call(Method::POST, "/api/v2/sessions/s1/revoke?wait_ms=200", None)
        .await;
    let took = started.elapsed();
    assert_eq!(status, 202, "{reply}");
    assert!(
        took >= Duration::from_millis(200),
        "answered after {took:?}"
    );
    assert!(
        took < Duration::from_millis(1400),
        "answered after {took:?}"
    );
    assert_eq!(reply["wait_complete"], false, "{reply}");
    let row = result_of(&reply, "slow");
    assert!(
        row["state"] == "in_flight" || row["state"] == "pending",
        "{reply}"
    );
    assert_eq!(row["attempts"], 0, "{reply}");
    assert_eq!(row["last_status"], Value::Null, "{reply}");

    let id = row["id"].as_str().unwrap();
    let done = until_state(&node, id, "delivered").await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(slow.requests().len(), 1);
    node.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_wait_ms_is_refused_and_ends_nothing_and_a_full_server_answers_at_once() {
    let rp = RecordingRp::start(Reply::status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    // No request may wait on this node.
    let node = ServeProcess::start(dir.path(), &["--max-waiting-requests", "0"]).await;
    node.client("app", rp.url("/bc").as_str()).await;
    session(&node, "s1", "u1", &["app"]).await;

    let queries = [
        "-1",
        "10001",
        "1.5",
        "abc",
        "",
        "1e3",
        "%2B5",
        "99999999999999999999",
        "1&wait_ms=2",
    ];
    for query in queries {
        for (method, path) in [
            (Method::DELETE, "/api/v2/sessions/s1"),
            (Method::POST, "/api/v2/sessions/s1/revoke"),
            (Method::DELETE, "/api/v2/users/u1/sessions"),
        ] {
            let path = format!("{path}?wait_ms={query}");
            let (status, reply) = node.call(method, &path, None).await;
            assert_eq!(status, 400, "{path}: {reply}");
            assert_eq!(reply["statusCode"], 400, "{reply}");
            assert_eq!(reply["errorCode"], "invalid_query_string", "{reply}");
            let message = reply["message"].as_str().unwrap();
            assert!(message.contains("wait_ms"), "{reply}");
        }
    }
    let bodies = [
        json!(-1),
        json!(10001),
        json!(1.5),
        json!("500"),
        json!(true),
    ];
    for wait in bodies {
        for target in [json!({ "session_id": "s1" }), json!({ "user_id": "u1" })] {
            let mut body = target.clone();
            body["initiator"] = json!("rp-logout");
            body["wait_ms"] = wait.clone();
            let (status, reply) = node
                .call(Method::POST, "/api/v2/logout-events", Some(body))
                .await;
            assert_eq!(status, 400, "{wait}: {reply}");
            assert_eq!(reply["errorCode"], "invalid_body", "{reply}");
            let message = reply["message"].as_str().unwrap();
            assert!(message.contains("wait_ms"), "{reply}");
        }
    }
    let (status, session) = node.call(Method::GET, "/api/v2/sessions/s1", None).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        session.get("ended_at").unwrap_or(&Value::Null),
        &Value::Null,
        "{session}"
    );
    let (_, rows) = node
        .call(Method::GET, "/api/v2/logout-deliveries", None)
        .await;
    assert_eq!(rows["deliveries"], json!([]), "{rows}");

    // With no room to wait, the end is committed and answered at once, saying it did not wait.
    let (status, reply) = node
        .call(Method::DELETE, "/api/v2/sessions/s1?wait_ms=10000", None)
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["deliveries"], 1, "{reply}");
    assert_eq!(reply["wait_complete"], false, "{reply}");
    assert!(reply.get("results").is_none(), "{reply}");
    rp.wait_requests(1).await;
    node.terminate().await;
}

/// Two nodes on one PostgreSQL database; the one that waits delivers nothing itself, so only
/// its re-reads of the store can see the other node's progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_wait_completes_from_another_nodes_deliveries() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let rp = RecordingRp::start(Reply::status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let api_only =
        process::ServeProcess::start(dir.path(), &db.url, &["--dispatch", "false"]).await;
    let worker = process::ServeProcess::start(dir.path(), &db.url, &[]).await;
    let body = json!({ "client_id": "app", "name": "app",
        "oidc_logout": { "backchannel_logout_urls": [rp.url("/bc").as_str()] } });
    let (status, reply) = api_only
        .call(Method::POST, "/api/v2/clients", Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
    for id in ["s1", "s2"] {
        let body = json!({ "id": id, "user_id": "u1", "clients": [{ "client_id": "app" }] });
        let (status, reply) = api_only
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }

    let body = json!({ "user_id": "u1", "initiator": "rp-logout", "wait_ms": 10000 });
    let started = Instant::now();
    let (status, reply) = api_only
        .call(Method::POST, "/api/v2/logout-events", Some(body))
        .await;
    assert_eq!(status, 202, "{reply}");
    assert!(started.elapsed() < Duration::from_secs(9), "{reply}");
    assert_eq!(reply["wait_complete"], true, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{reply}");
    for row in results {
        assert_eq!(row["state"], "delivered", "{reply}");
        assert_eq!(row["last_status"], 204, "{reply}");
    }
    assert_eq!(rp.requests().len(), 2);
    api_only.terminate().await;
    worker.terminate().await;
}
