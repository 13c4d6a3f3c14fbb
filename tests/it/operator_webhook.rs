//! Operator events end to end, on real `logoutd serve` processes: pause and resume, and a
//! dead letter, reach the operator webhook as signed Standard Webhooks requests, retried with
//! the logout tokens' retry decision, and stay visible and re-drivable in the API.

use crate::support::delivery::EVENT_TIMEOUT;
use crate::support::recording_rp::{RecordedRequest, RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use logoutd_core::{WebhookSecret, sign_webhook};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Fast retries, so that a test sees its retries within seconds.
const FAST_RETRY: [&str; 4] = ["--retry-base-ms", "20", "--retry-cap-ms", "50"];

/// Starts `serve` under `dir` posting operator events to `webhook`, with `extra` flags;
/// returns the process and the webhook secret.
async fn serve_with_webhook(
    dir: &Path,
    webhook: &RecordingRp,
    extra: &[&str],
) -> (ServeProcess, WebhookSecret) {
    let secret = WebhookSecret::generate();
    let file = dir.join("webhook-secret");
    std::fs::write(&file, &secret).unwrap();
    let url = webhook.url("/hooks/logoutd").to_string();
    let file = file.to_str().unwrap().to_owned();
    let mut flags = vec![
        "--operator-webhook-url",
        url.as_str(),
        "--operator-webhook-secret-file",
        file.as_str(),
    ];
    flags.extend_from_slice(extra);
    let serve = ServeProcess::start(dir, &flags).await;
    (serve, WebhookSecret::parse(&secret).unwrap())
}

/// The request's body, after checking its Standard Webhooks headers and signature.
fn verified(request: &RecordedRequest, secret: &WebhookSecret) -> Value {
    let [Some(id), Some(timestamp), Some(signature)] = &request.webhook else {
        panic!("missing webhook headers: {request:?}");
    };
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    let ts: i64 = timestamp.parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 60,
        "stale timestamp"
    );
    let expected = sign_webhook(secret, id, ts, request.body.as_bytes());
    assert_eq!(signature, &expected, "signature does not verify");
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["id"], id.as_str());
    body
}

/// Waits (bounded) until the operator event `id` is in `state`; returns it.
async fn event_in_state(serve: &ServeProcess, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let path = format!("/api/v2/operator-events/{id}");
        let (status, event) = serve.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{event}");
        if event["state"] == state {
            return event;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event never reached {state}: {event}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_reach_the_webhook_signed() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = RecordingRp::start(Reply::status(204)).await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let (serve, secret) = serve_with_webhook(dir.path(), &webhook, &[]).await;
    serve.client("rp1", rp.url("/bcl").as_str()).await;
    for action in ["pause", "pause", "resume"] {
        let path = format!("/api/v2/clients/rp1/{action}");
        let (status, reply) = serve.call(Method::POST, &path, None).await;
        assert_eq!(status, 200, "{reply}");
    }
    webhook.wait_requests(2).await;
    let requests = webhook.requests();
    let mut bodies: Vec<Value> = requests.iter().map(|r| verified(r, &secret)).collect();
    assert!(requests.iter().all(|r| r.path == "/hooks/logoutd"));
    // Events claimed together are posted at once; their ids give the order they happened in.
    bodies.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["client.paused", "client.resumed"]);
    assert_eq!(
        bodies[0]["data"],
        json!({"client_id": "rp1", "paused_by": "operator"})
    );
    let id = bodies[0]["id"].as_str().unwrap();
    let event = event_in_state(&serve, id, "delivered").await;
    assert_eq!(
        (event["attempts"].as_u64(), event["last_status"].as_u64()),
        (Some(1), Some(204))
    );
    let (_, page) = serve
        .call(
            Method::GET,
            "/api/v2/operator-events?type=client.paused",
            None,
        )
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    // The attempt is counted just after it is recorded: read the metrics until it shows.
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let metrics = reqwest::get(format!("{}/metrics", serve.base))
            .await
            .unwrap();
        let text = metrics.text().await.unwrap();
        let paused = text.contains("logoutd_operator_events_total{type=\"client.paused\"} 1");
        assert!(paused, "{text}");
        if text.contains("logoutd_operator_webhook_attempts_total{outcome=\"delivered\"} 2") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_503s_twice_gets_the_event_on_the_third_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = RecordingRp::start(Reply::status(204)).await;
    webhook.fail_first(2, Reply::status(503));
    let rp = RecordingRp::start(Reply::ok()).await;
    let (serve, secret) = serve_with_webhook(dir.path(), &webhook, &FAST_RETRY).await;
    serve.client("rp1", rp.url("/bcl").as_str()).await;
    serve
        .call(Method::POST, "/api/v2/clients/rp1/pause", None)
        .await;
    webhook.wait_requests(3).await;
    let requests = webhook.requests();
    let ids: Vec<String> = requests
        .iter()
        .map(|r| verified(r, &secret)["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "one event, three attempts"
    );
    let event = event_in_state(&serve, &ids[0], "delivered").await;
    assert_eq!(event["attempts"], 3);
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_reaches_the_webhook_as_delivery_failed() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = RecordingRp::start(Reply::status(204)).await;
    let rp = RecordingRp::start(Reply::status(503)).await;
    let mut flags = FAST_RETRY.to_vec();
    flags.extend(["--max-attempts", "2"]);
    let (serve, secret) = serve_with_webhook(dir.path(), &webhook, &flags).await;
    serve.client("rp1", rp.url("/bcl").as_str()).await;
    let session = json!({"id": "s1", "user_id": "u1", "clients": [{"client_id": "rp1"}],
        "session_metadata": {"secret_hint": "do-not-send"}});
    let (status, reply) = serve
        .call(Method::POST, "/api/v2/sessions", Some(session))
        .await;
    assert_eq!(status, 201, "{reply}");
    let (status, _) = serve
        .call(Method::DELETE, "/api/v2/sessions/s1", None)
        .await;
    assert_eq!(status, 202);
    webhook.wait_requests(1).await;
    let request = &webhook.requests()[0];
    assert!(!request.body.contains("do-not-send"));
    let body = verified(request, &secret);
    assert_eq!(body["type"], "delivery.failed");
    let data = &body["data"];
    assert_eq!(
        (&data["client_id"], &data["session_id"], &data["user_id"]),
        (&json!("rp1"), &json!("s1"), &json!("u1"))
    );
    assert_eq!(
        (&data["initiator"], &data["attempts"]),
        (&json!("session-revoked"), &json!(2))
    );
    assert_eq!(data["last_status"], 503);
    let delivery = data["delivery_id"].as_str().unwrap();
    let (_, row) = serve
        .call(
            Method::GET,
            &format!("/api/v2/logout-deliveries/{delivery}"),
            None,
        )
        .await;
    assert_eq!(row["state"], "failed");
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_leaves_the_event_failed_and_re_drivable() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = RecordingRp::start(Reply::status(503)).await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let mut flags = FAST_RETRY.to_vec();
    flags.extend(["--max-attempts", "2"]);
    let (serve, secret) = serve_with_webhook(dir.path(), &webhook, &flags).await;
    serve.client("rp1", rp.url("/bcl").as_str()).await;
    serve
        .call(Method::POST, "/api/v2/clients/rp1/pause", None)
        .await;
    webhook.wait_requests(2).await;
    let id = verified(&webhook.requests()[0], &secret)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = event_in_state(&serve, &id, "failed").await;
    assert_eq!(failed["attempts"], 2);
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("attempt budget"),
        "{failed}"
    );
    let (_, page) = serve
        .call(Method::GET, "/api/v2/operator-events?state=failed", None)
        .await;
    assert_eq!(page["events"][0]["id"], id.as_str());
    // The webhook is back: the operator re-drives the event and it is delivered.
    webhook.script([Reply::status(204)]);
    let path = format!("/api/v2/operator-events/{id}/retry");
    let (status, reply) = serve.call(Method::POST, &path, None).await;
    assert_eq!(
        (status, &reply["state"]),
        (202, &json!("pending")),
        "{reply}"
    );
    let delivered = event_in_state(&serve, &id, "delivered").await;
    assert_eq!(delivered["attempts"], 1);
    let (status, reply) = serve.call(Method::POST, &path, None).await;
    assert_eq!(
        (status, &reply["errorCode"]),
        (409, &json!("not_failed")),
        "{reply}"
    );
    let (status, _) = serve
        .call(
            Method::POST,
            "/api/v2/operator-events/oev_missing/retry",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = serve
        .call(Method::GET, "/api/v2/operator-events?state=lost", None)
        .await;
    assert_eq!(status, 400);
    serve.terminate().await;
}

/// Two nodes on one PostgreSQL database with the same webhook: each event reaches it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_send_each_event_once() {
    use crate::support::process::ServeProcess as Node;
    let Some(db) = crate::store::postgres::TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let webhook = RecordingRp::start(Reply::status(204)).await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let secret = WebhookSecret::generate();
    let file = dir.path().join("webhook-secret");
    std::fs::write(&file, &secret).unwrap();
    let url = webhook.url("/hook").to_string();
    let flags = [
        "--operator-webhook-url",
        url.as_str(),
        "--operator-webhook-secret-file",
        file.to_str().unwrap(),
    ];
    let a = Node::start(dir.path(), &db.url, &flags).await;
    let b = Node::start(dir.path(), &db.url, &flags).await;
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        let id = format!("rp{i}");
        let body = json!({ "client_id": id, "name": id,
            "oidc_logout": { "backchannel_logout_urls": [rp.url("/bcl").as_str()] } });
        let (status, reply) = node.call(Method::POST, "/api/v2/clients", Some(body)).await;
        assert_eq!(status, 201, "{reply}");
        for action in ["pause", "resume"] {
            let path = format!("/api/v2/clients/{id}/{action}");
            assert_eq!(node.call(Method::POST, &path, None).await.0, 200);
        }
    }
    assert!(webhook.wait_until(EVENT_TIMEOUT, |r| r.len() >= 20).await);
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let (_, page) = a
            .call(Method::GET, "/api/v2/operator-events?state=delivered", None)
            .await;
        if page["events"].as_array().unwrap().len() == 20 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = webhook
        .requests()
        .iter()
        .map(|r| r.webhook[0].clone().unwrap())
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (20, 20), "each event sent once");
    a.terminate().await;
    b.terminate().await;
}
