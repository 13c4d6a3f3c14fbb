//! The operator console in a real browser: `logoutd serve` with healthy RPs and one that
//! rejects its first tokens with hostile error text, driven by headless Chromium through
//! `tests/console/console.mjs` (playwright-core). Without Chromium or the node modules the
//! test skips, saying why; under `CI=true` it fails instead.

use crate::support::app::API_TOKEN;
use crate::support::recording_rp::{RecordingRp, Reply};
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Where Debian's package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";
/// An RP error text that would run script if the console parsed it as HTML.
const HOSTILE_ERROR: &str =
    "<img src=x onerror=\"window.pwned='error-img'\"><script>window.pwned='error-script'</script>";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Why the browser test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let modules = repo().join("tests/console/node_modules/playwright-core");
    let chromium = std::env::var("CONSOLE_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if !modules.exists() {
        return Some("no tests/console/node_modules (cd tests/console && npm ci)".to_owned());
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("no node on PATH".to_owned());
    }
    None
}

/// `logoutd tokens add --scope <scope> [extra...]` in `dir`; the token printed once.
fn token(dir: &Path, scope: &str, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(["tokens", "add", "--scope", scope, "--name", scope])
        .args(extra)
        .current_dir(dir)
        .env("LOGOUTD_LOG", "warn")
        .env_remove("LOGOUTD_API_TOKENS_FILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn created(serve: &ServeProcess, path: &str, body: serde_json::Value) {
    let (status, reply) = serve.call(Method::POST, path, Some(body)).await;
    assert_eq!(status, 201, "{path}: {reply}");
}

#[tokio::test]
async fn the_console_answers_an_operators_questions_in_a_browser() {
    if let Some(why) = missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "console browser test cannot run under CI: {why}"
        );
        eprintln!("skipping the console browser test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The read token lacks the metadata grant; the operate one has it.
    let read = token(dir.path(), "read", &[]);
    let operate = token(dir.path(), "operate", &["--metadata"]);
    let healthy = [
        RecordingRp::start(Reply::ok()).await,
        RecordingRp::start(Reply::ok()).await,
    ];
    // Rejects the first three tokens (dead letters at once), then recovers.
    let failing = RecordingRp::start(Reply::ok()).await;
    failing.fail_first(3, Reply::invalid_request(HOSTILE_ERROR));
    let serve = ServeProcess::start(dir.path(), &[]).await;
    for (id, rp) in [("shop", &healthy[0]), ("wiki", &healthy[1])] {
        serve.client(id, rp.url("/bc").as_str()).await;
    }
    serve.client("billing", failing.url("/bc").as_str()).await;
    // The mass logout's users: each with a session at the healthy RPs; the first three also
    // at the failing one. The last user's session holds hostile metadata.
    for i in 0..6 {
        let mut clients = vec![json!({"client_id": "shop"}), json!({"client_id": "wiki"})];
        if i < 3 {
            clients.push(json!({"client_id": "billing"}));
        }
        created(
            &serve,
            "/api/v2/sessions",
            json!({"id": format!("s-{i}"), "user_id": format!("u-{i}"), "clients": clients,
                "device": {"last_ip": "127.0.0.1", "last_user_agent": "<b>agent</b>"}}),
        )
        .await;
    }
    created(
        &serve,
        "/api/v2/sessions",
        json!({"id": "s-hostile", "user_id": "u-hostile", "clients": [{"client_id": "shop"}],
            "session_metadata": {
                "note": "<img src=x onerror=\"window.pwned='metadata-img'\">",
                "html": "<script>window.pwned='metadata-script'</script>"}}),
    )
    .await;
    let shots = repo().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let status = tokio::process::Command::new("node")
        .arg(repo().join("tests/console/console.mjs"))
        .env("CONSOLE_BASE", &serve.base)
        .env("CONSOLE_READ_TOKEN", &read)
        .env("CONSOLE_OPERATE_TOKEN", &operate)
        .env("CONSOLE_ADMIN_TOKEN", API_TOKEN)
        .env("CONSOLE_SHOTS", &shots)
        .env("CONSOLE_HOSTILE_ERROR", HOSTILE_ERROR)
        .kill_on_drop(true)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "the browser scenarios failed: {status}");
    eprintln!("console screenshots: {}", shots.display());
    serve.terminate().await;
}

/// The page and its assets: served without a token, under the console's policy.
#[tokio::test]
async fn the_console_is_served_without_a_token_under_a_strict_policy() {
    use crate::support::app::TestApp;
    use axum::http::StatusCode;
    let app = TestApp::memory().await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/style.css", "text/css"),
    ] {
        let (status, headers, body) = app.raw(Method::GET, path, None, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let header = |name: &str| headers[name].to_str().unwrap().to_owned();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("content-security-policy"), logoutd_core::CONSOLE_CSP);
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert!(!body.is_empty());
    }
    let (_, headers, _) = app.raw(Method::GET, "/console", None, None, None).await;
    assert_eq!(headers["cache-control"], "no-store");
    let (status, headers, _) = app
        .raw(Method::GET, "/console/nope.js", None, None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.contains_key("content-security-policy"));
}

/// `GET /api/v2/delivery-stats`: the overview's figures, shared for a moment.
#[tokio::test]
async fn delivery_stats_count_rows_and_fill_the_hour_and_are_shared_for_a_moment() {
    use crate::support::app::TestApp;
    use axum::http::StatusCode;
    let app = TestApp::over(logoutd_core::MemoryStore::new().into_stores(), true);
    let body = json!({"client_id": "rp", "name": "rp",
        "oidc_logout": {"backchannel_logout_urls": ["http://127.0.0.1:9/bc"],
            "backchannel_logout_initiators": {"mode": "all"}}});
    let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    for id in ["s1", "s2"] {
        let body = json!({"id": id, "user_id": "u", "clients": [{"client_id": "rp"}]});
        let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    let (status, reply) = app
        .call(Method::DELETE, "/api/v2/users/u/sessions", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    app.clock.advance(chrono::Duration::seconds(90));

    let (status, stats) = app.call(Method::GET, "/api/v2/delivery-stats", None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let pending = stats["counts"]["pending"].as_u64().unwrap();
    assert!(pending >= 1, "{stats}");
    assert_eq!(stats["counts"]["failed"], 0);
    assert_eq!(stats["dead_letters"], 0);
    assert_eq!(stats["oldest_due_age_ms"], 90_000, "{stats}");
    let minutes = stats["per_minute"].as_array().unwrap();
    assert_eq!(minutes.len(), logoutd_core::STATS_MINUTES);
    assert!(
        minutes
            .iter()
            .all(|m| m["delivered"] == 0 && m["failed"] == 0)
    );
    assert_eq!(stats["bucket_seconds"], 10);
    let buckets = stats["per_bucket"].as_array().unwrap();
    assert_eq!(buckets.len(), logoutd_core::STATS_BUCKETS);
    assert_eq!(
        buckets.last().unwrap()["start"],
        "2026-01-02T03:05:30Z",
        "{stats}"
    );
    assert!(
        buckets
            .iter()
            .all(|b| b["delivered"] == 0 && b["failed"] == 0)
    );

    // A second caller within the moment gets the same answer, even though time moved.
    app.clock.advance(chrono::Duration::seconds(60));
    let (_, again) = app.call(Method::GET, "/api/v2/delivery-stats", None).await;
    assert_eq!(again["as_of"], stats["as_of"]);
    let (status, _, _) = app
        .raw(Method::GET, "/api/v2/delivery-stats", None, None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
