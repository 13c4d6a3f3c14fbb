//! The default URL policy of a real `logoutd serve` (started without
//! `--allow-insecure-rp-urls`): https and public addresses only. Registration refuses the
//! rest with a 400 naming the flag, and a client row that reached the store anyway (written
//! by an earlier, permissive run on the same database) is refused by the dispatcher before it
//! opens a socket: the delivery fails at once, as a terminal SSRF-guard refusal (README,
//! "Delivery and retry").

use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Longest wait for the deliveries to settle.
const WAIT: Duration = Duration::from_secs(30);
/// How often the deliveries are read while waiting.
const POLL: Duration = Duration::from_millis(50);

/// A registration body for client `id` posting to `url`.
fn client_body(id: &str, url: &str) -> Value {
    json!({ "client_id": id, "name": id,
        "oidc_logout": { "backchannel_logout_urls": [url],
            "backchannel_logout_initiators": { "mode": "all" } } })
}

/// Asserts a 400 in Auth0's shape whose message tells the operator about the flag.
fn assert_refused_naming_the_flag(url: &str, status: u16, reply: &Value) {
    assert_eq!(status, 400, "{url} accepted: {reply}");
    assert_eq!(reply["statusCode"], 400, "{url}: {reply}");
    assert_eq!(reply["error"], "Bad Request", "{url}: {reply}");
    assert_eq!(reply["errorCode"], "invalid_uri", "{url}: {reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("--allow-insecure-rp-urls"),
        "{url}: the message does not name the flag: {reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_refuses_plain_http_loopback_and_private_urls_at_registration() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RecordingRp::start(Reply::ok()).await;
    let server = ServeProcess::start_strict(dir.path(), &[]).await;
    let port = rp.addr().port();
    let refused = [
        rp.url("/bc").to_string(),
        format!("https://127.0.0.1:{port}/bc"),
        "https://localhost/bc".to_owned(),
        "https://app.localhost/bc".to_owned(),
        "https://10.1.2.3/bc".to_owned(),
        "https://172.16.0.9/bc".to_owned(),
        "https://192.168.1.20/bc".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://[::1]/bc".to_owned(),
        "https://[fd00::1]/bc".to_owned(),
        "http://rp.example/bc".to_owned(),
    ];
    for (n, url) in refused.iter().enumerate() {
        let id = format!("refused-{n}");
        let (status, reply) = server
            .call(Method::POST, "/api/v2/clients", Some(client_body(&id, url)))
            .await;
        assert_refused_naming_the_flag(url, status, &reply);
        let (status, _) = server
            .call(Method::GET, &format!("/api/v2/clients/{id}"), None)
            .await;
        assert_eq!(status, 404, "{url}: a refused client was stored");
    }
    // A public https URL (a reserved name: registration does not resolve it, and no session
    // of this client is ended, so nothing ever looks it up) is accepted, and moving it to a
    // loopback URL is refused alike.
    let public = "https://rp.example/bc";
    let (status, reply) = server
        .call(
            Method::POST,
            "/api/v2/clients",
            Some(client_body("public", public)),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    for url in [rp.url("/bc").to_string(), "https://localhost/bc".to_owned()] {
        let body = json!({ "oidc_logout": { "backchannel_logout_urls": [url] } });
        let (status, reply) = server
            .call(Method::PATCH, "/api/v2/clients/public", Some(body))
            .await;
        assert_refused_naming_the_flag(&url, status, &reply);
    }
    let (status, reply) = server
        .call(Method::GET, "/api/v2/clients/public", None)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["oidc_logout"]["backchannel_logout_urls"],
        json!([public])
    );
    assert!(server.terminate().await.success());
    assert_eq!(rp.connections(), 0, "registration never connects to an RP");
}

/// Waits until the deliveries of session `sid` satisfy `done`; returns them.
async fn wait_deliveries(
    server: &ServeProcess,
    sid: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/api/v2/logout-deliveries?session_id={sid}");
    let mut last = Vec::new();
    let waited = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            let (status, reply) = server.call(Method::GET, &path, None).await;
            assert_eq!(status, 200, "{reply}");
            last = reply["deliveries"].as_array().unwrap().clone();
            if done(&last) {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "deliveries never settled; last: {last:#?}");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_refuses_to_connect_to_loopback_rows_a_permissive_run_stored() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RecordingRp::start(Reply::ok()).await;
    let port = rp.addr().port();
    // Each URL reaches a different check: an IP literal (refused before any socket), a name
    // over https (refused after DNS, by the resolver: `localhost` is loopback), and a name
    // over plain http (refused by scheme). Each points at the live RP, so a check that let
    // one through would show as a connection.
    let clients = [
        ("literal", rp.url("/literal").to_string(), "host 127.0.0.1"),
        (
            "named",
            format!("https://localhost:{port}/named"),
            "host localhost",
        ),
        (
            "plain-named",
            format!("http://localhost:{port}/plain"),
            "scheme http",
        ),
    ];
    let permissive = ServeProcess::start(dir.path(), &[]).await;
    for (id, url, _) in &clients {
        permissive.client(id, url).await;
    }
    assert!(permissive.terminate().await.success());

    let strict = ServeProcess::start_strict(dir.path(), &[]).await;
    let members: Vec<Value> = clients
        .iter()
        .map(|(id, _, _)| json!({ "client_id": id }))
        .collect();
    let session = json!({ "id": "s1", "user_id": "u1", "clients": members });
    let (status, reply) = strict
        .call(Method::POST, "/api/v2/sessions", Some(session))
        .await;
    assert_eq!(status, 201, "{reply}");
    let end = json!({ "session_id": "s1", "initiator": "rp-logout" });
    let (status, reply) = strict
        .call(Method::POST, "/api/v2/logout-events", Some(end))
        .await;
    assert_eq!(
        (status, reply["deliveries"].as_u64()),
        (202, Some(clients.len() as u64)),
        "{reply}"
    );
    let rows = wait_deliveries(&strict, "s1", |rows| {
        rows.len() == clients.len()
            && rows.iter().all(|r| r["state"] != "pending")
            && rows.iter().all(|r| r["state"] != "in_flight")
    })
    .await;
    for (id, _, names) in &clients {
        let row = rows
            .iter()
            .find(|r| r["client_id"] == *id)
            .unwrap_or_else(|| panic!("no row for {id}: {rows:#?}"));
        assert_eq!(row["state"], "failed", "{row}");
        assert_eq!(row["attempts"], 1, "refused once, not retried: {row}");
        assert!(row["last_status"].is_null(), "{row}");
        let error = row["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("refused by the SSRF guard") && error.contains(names),
            "{id}: {error}"
        );
    }
    assert!(strict.terminate().await.success());
    assert_eq!(
        rp.connections(),
        0,
        "the dispatcher connected to a loopback RP: {:?}",
        rp.requests()
    );
}
