//! The operator commands (`logoutd deliveries ...`, `logoutd sessions ...`) against a running
//! `logoutd serve`.

use crate::support::app::API_TOKEN;
use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::{Value, json};

/// Output of one `logoutd` run.
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs `logoutd ARGS` against `base` with `token`.
pub(crate) async fn logoutd(base: &str, token: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(args)
        .env("LOGOUTD_URL", base)
        .env("LOGOUTD_API_TOKEN", token)
        .env("LOGOUTD_LOG", "warn")
        .output()
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn create_session(server: &ServeProcess, id: &str, user: &str) {
    let body = json!({ "id": id, "user_id": user, "clients": [{ "client_id": "c1" }] });
    let (status, reply) = server
        .call(Method::POST, "/api/v2/sessions", Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
}

/// Waits (bounded) until `n` deliveries are in `state`, asking the API.
async fn wait_state(server: &ServeProcess, state: &str, n: usize) {
    let path = format!("/api/v2/logout-deliveries?state={state}");
    let wait = async {
        loop {
            let (_, reply) = server.call(Method::GET, &path, None).await;
            if reply["deliveries"].as_array().map_or(0, Vec::len) >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} deliveries {state}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_list_show_and_retry_one_and_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(3, Reply::status(400));
    let server = ServeProcess::start(dir.path(), &[]).await;
    server.client("c1", rp.url("/bc").as_str()).await;
    for id in ["s1", "s2", "s3"] {
        create_session(&server, id, "u1").await;
    }
    let (status, _) = server
        .call(Method::DELETE, "/api/v2/users/u1/sessions", None)
        .await;
    assert_eq!(status, 202);
    wait_state(&server, "failed", 3).await;
    let base = server.base.clone();
    let base = base.as_str();

    let table = logoutd(
        base,
        API_TOKEN,
        &["deliveries", "list", "--state", "failed"],
    )
    .await;
    assert!(table.ok, "{}", table.stderr);
    assert!(table.stdout.starts_with("ID"), "{}", table.stdout);
    assert_eq!(
        table
            .stdout
            .lines()
            .filter(|l| l.contains("failed"))
            .count(),
        3
    );
    let listed = logoutd(
        base,
        API_TOKEN,
        &["deliveries", "list", "--client", "c1", "--json"],
    )
    .await;
    let listed = listed.json();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let id = listed[0]["id"].as_str().unwrap().to_owned();

    let shown = logoutd(base, API_TOKEN, &["deliveries", "show", &id, "--json"]).await;
    assert_eq!(shown.json()["attempt_history"].as_array().unwrap().len(), 1);
    let shown = logoutd(base, API_TOKEN, &["deliveries", "show", &id]).await;
    assert!(
        shown.stdout.contains("JTI")
            && shown.stdout.contains(&id)
            && shown.stdout.contains("scope"),
        "{}",
        shown.stdout
    );

    let one = logoutd(base, API_TOKEN, &["deliveries", "retry", &id]).await;
    assert!(one.ok && one.stdout.contains("re-driven"), "{}", one.stderr);
    let since = "2000-01-01T00:00:00Z";
    let args = [
        "deliveries",
        "retry",
        "--client",
        "c1",
        "--since",
        since,
        "--initiator",
        "session-revoked",
        "--idempotency-key",
        "cli-key-1",
    ];
    let bulk = logoutd(base, API_TOKEN, &[&args[..], &["--json"]].concat()).await;
    assert!(bulk.ok, "{}", bulk.stderr);
    let bulk = bulk.json();
    let redriven = bulk["redriven"].as_u64().unwrap();
    assert!((1..=2).contains(&redriven), "{bulk}");
    assert_eq!(bulk["replayed"], false);
    let again = logoutd(base, API_TOKEN, &args).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains(&format!("re-drove {redriven} failed deliveries"))
            && again.stdout.contains("earlier request"),
        "{}",
        again.stdout
    );
    let no_filter = logoutd(base, API_TOKEN, &["deliveries", "retry"]).await;
    assert!(
        !no_filter.ok && no_filter.stderr.contains("--client"),
        "{}",
        no_filter.stderr
    );
    wait_state(&server, "delivered", 3).await;
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_get_list_and_end_one_and_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RecordingRp::start(Reply::ok()).await;
    let server = ServeProcess::start(dir.path(), &[]).await;
    server.client("c1", rp.url("/bc").as_str()).await;
    for id in ["a1", "a2", "a3"] {
        create_session(&server, id, "alice").await;
    }
    create_session(&server, "b1", "bob").await;
    let base = server.base.clone();
    let base = base.as_str();

    let got = logoutd(base, API_TOKEN, &["sessions", "get", "a1", "--json"]).await;
    assert_eq!(got.json()["user_id"], "alice");
    let listed = logoutd(base, API_TOKEN, &["sessions", "list", "--user", "alice"]).await;
    assert!(listed.ok, "{}", listed.stderr);
    for id in ["a1", "a2", "a3"] {
        assert!(listed.stdout.contains(id), "{}", listed.stdout);
    }
    assert!(!listed.stdout.contains("b1"));

    let one = logoutd(
        base,
        API_TOKEN,
        &["sessions", "end", "b1", "--initiator", "idp-logout"],
    )
    .await;
    assert!(
        one.ok && one.stdout.contains("1 deliveries"),
        "{} {}",
        one.stdout,
        one.stderr
    );
    let all = logoutd(
        base,
        API_TOKEN,
        &["sessions", "end", "--user", "alice", "--json"],
    )
    .await;
    assert!(all.ok, "{}", all.stderr);
    assert_eq!(
        all.json(),
        json!({ "sessions_ended": 3, "deliveries": 3, "skipped": [], "held": [] })
    );
    let left = logoutd(
        base,
        API_TOKEN,
        &["sessions", "list", "--user", "alice", "--json"],
    )
    .await;
    assert_eq!(left.json(), json!([]));
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_prints_the_clients_it_skipped_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RecordingRp::start(Reply::ok()).await;
    let server = ServeProcess::start(dir.path(), &[]).await;
    server.client("c1", rp.url("/bc").as_str()).await;
    for (id, logout) in [
        (
            "auth0",
            json!({ "backchannel_logout_urls": [rp.url("/bc").as_str()],
                "backchannel_logout_initiators": { "mode": "custom" } }),
        ),
        ("nourl", json!({ "backchannel_logout_urls": [] })),
    ] {
        let body = json!({ "client_id": id, "name": id, "oidc_logout": logout });
        let (status, reply) = server
            .call(Method::POST, "/api/v2/clients", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let joined = json!([{ "client_id": "c1" }, { "client_id": "auth0" }, { "client_id": "nourl" }]);
    for id in ["a1", "a2", "a3"] {
        let body = json!({ "id": id, "user_id": "alice", "clients": joined });
        let (status, reply) = server
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let base = server.base.clone();
    let base = base.as_str();

    let one = logoutd(base, API_TOKEN, &["sessions", "end", "a1"]).await;
    assert!(one.ok, "{}", one.stderr);
    let lines: Vec<&str> = one.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "session a1 ended; 1 deliveries queued",
            "skipped auth0 (not_subscribed): not subscribed to session-revoked",
            "skipped nourl (no_url): no back-channel logout URL registered",
        ],
        "{}",
        one.stdout
    );
    let user = logoutd(base, API_TOKEN, &["sessions", "end", "--user", "alice"]).await;
    assert!(user.ok, "{}", user.stderr);
    assert!(
        user.stdout
            .contains("skipped auth0 (not_subscribed) in 2 session(s): not subscribed"),
        "{}",
        user.stdout
    );
    assert!(
        user.stdout
            .contains("skipped nourl (no_url) in 2 session(s)"),
        "{}",
        user.stdout
    );
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_an_address_in_use_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let store = format!("sqlite://{}", dir.path().join("db").display());
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(["serve", "--listen", &addr, "--store", &store, "--keys-dir"])
        .arg(dir.path().join("keys"))
        .env("LOGOUTD_API_TOKEN", API_TOKEN)
        .env("LOGOUTD_LOG", "warn")
        .env_remove("LOGOUTD_CONFIG")
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("serve exits when it cannot listen")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("--listen"),
        "{stderr}"
    );
    drop(taken);
}

/// `serve` reads its settings from the process's `LOGOUTD_*` variables, under its flags and
/// over the config file, and a value it refuses names the variable it came from.
#[test]
fn serve_takes_a_setting_from_its_flag_then_its_variable_then_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("logoutd.toml"), "listen = \"from-file\"\n").unwrap();
    let serve = |vars: &[(&str, &str)], flags: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
            .args(["serve", "--dev", "--store", "memory://"])
            .args(flags)
            .env_clear()
            .envs(vars.iter().copied())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let env = [("LOGOUTD_LISTEN", "from-env")];
    let stderr = serve(&[], &[]);
    assert!(
        stderr.contains("invalid setting listen: \"from-file\""),
        "{stderr}"
    );
    let stderr = serve(&env, &[]);
    assert!(stderr.contains("\"from-env\""), "{stderr}");
    let stderr = serve(&env, &["--listen", "from-flag"]);
    assert!(stderr.contains("\"from-flag\""), "{stderr}");
    let stderr = serve(&[("LOGOUTD_ALLOW_INSECURE_RP_URLS", "maybe")], &[]);
    assert!(
        stderr.contains("LOGOUTD_ALLOW_INSECURE_RP_URLS"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_clear_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path(), &[]).await;
    let base = server.base.clone();
    let base = base.as_str();
    let denied = logoutd(base, "wrong-token", &["deliveries", "list"]).await;
    assert!(
        !denied.ok && denied.stderr.contains("401"),
        "{}",
        denied.stderr
    );
    let missing = logoutd(base, API_TOKEN, &["sessions", "get", "nope"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("404"),
        "{}",
        missing.stderr
    );
    let missing = logoutd(base, API_TOKEN, &["deliveries", "retry", "nope"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("404"),
        "{}",
        missing.stderr
    );
    assert!(server.terminate().await.success());
    let refused = logoutd(base, API_TOKEN, &["sessions", "list", "--user", "u"]).await;
    assert!(
        !refused.ok && refused.stderr.contains("cannot connect"),
        "{}",
        refused.stderr
    );
}

/// A stand-in for the API that answers one delivery whose stored texts hold raw control
/// characters (as rows written before they were cleaned at record time could).
async fn api_serving(delivery: Value) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/api/v2/logout-deliveries/{id}",
        axum::routing::get(move || {
            let delivery = delivery.clone();
            async move { axum::Json(delivery) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, task)
}

#[tokio::test]
async fn deliveries_show_prints_no_raw_control_characters() {
    let hostile =
        "invalid_request: bad\r\nFAKE  failed  0\u{1b}[2J\u{1b}]0;pwned\u{7}\u{85}\u{202E}x";
    let delivery = json!({
        "id": "dlv_1", "event_id": "evt_1", "session_id": "s\u{1b}[31m1", "scope": "session",
        "sessions": 1, "user_id": "u1",
        "client_id": "c1", "initiator": "rp-logout", "state": "failed", "attempts": 1,
        "next_attempt_at": null, "last_status": 400, "last_error": hostile,
        "created_at": "2026-01-01T00:00:00Z", "delivered_at": null,
        "attempt_history": [{ "at": "2026-01-01T00:00:00Z", "status": 400, "error": hostile,
            "latency_ms": 3, "jti": "j1" }],
    });
    let (base, task) = api_serving(delivery).await;
    let shown = logoutd(&base, API_TOKEN, &["deliveries", "show", "dlv_1"]).await;
    task.abort();
    assert!(shown.ok, "{}", shown.stderr);
    let raw: Vec<char> = shown
        .stdout
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202E}')
        .collect();
    assert!(
        raw.is_empty(),
        "raw control characters {raw:?} in {:?}",
        shown.stdout
    );
    assert!(
        !shown.stdout.lines().any(|l| l.starts_with("FAKE")),
        "a forged row: {}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains(r"bad\r\nFAKE"),
        "escaped, not dropped: {}",
        shown.stdout
    );
    // FIELD header, 15 fields, a blank line, the history header and one attempt.
    assert_eq!(shown.stdout.lines().count(), 19, "{}", shown.stdout);
}
