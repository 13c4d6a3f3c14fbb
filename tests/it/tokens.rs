//! Scoped API tokens end to end: `logoutd tokens` edits the file, a running `serve` picks the
//! change up, each scope reaches what the docs say and no more, and weak tokens are refused.

use crate::support::app::{TestApp, assert_auth0_error};
use crate::support::serve_process::ServeProcess;
use axum::http::{Method, StatusCode};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn logoutd(args: &[&str], cwd: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(args)
        .current_dir(cwd)
        .env("LOGOUTD_LOG", "warn")
        .env_remove("LOGOUTD_API_TOKENS_FILE")
        .output()
        .unwrap()
}

/// `tokens add` in `dir`; returns the token printed once.
fn add(dir: &Path, scope: &str) -> String {
    let out = logoutd(&["tokens", "add", "--scope", scope, "--name", scope], dir);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn call(base: &str, token: &str, method: reqwest::Method, path: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&serde_json::json!({"client_id": "c1", "name": "c1"}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Polls until `path` answers `want` for `token`; a reload is due within 2 s.
async fn eventually(base: &str, token: &str, want: u16) {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let (status, _) = call(base, token, reqwest::Method::GET, "/api/v2/clients").await;
            if status == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("GET /api/v2/clients never answered {want}"));
}

#[tokio::test]
async fn scopes_reach_what_they_name_and_revocation_needs_no_restart() {
    let dir = tempfile::tempdir().unwrap();
    let read = add(dir.path(), "read");
    let operate = add(dir.path(), "operate");
    let serve = ServeProcess::start(dir.path(), &[]).await;
    let base = serve.base.clone();
    use reqwest::Method as M;

    let (status, reply) = call(&base, &read, M::GET, "/api/v2/clients").await;
    assert_eq!(status, 200, "{reply}");
    for (method, path) in [
        (M::POST, "/api/v2/clients"),
        (M::POST, "/api/v2/logout-deliveries/d1/retry"),
        (M::POST, "/api/v2/clients/c1/pause"),
        (M::DELETE, "/api/v2/sessions/s1"),
    ] {
        let (status, reply) = call(&base, &read, method.clone(), path).await;
        assert_eq!(status, 403, "read {method} {path}: {reply}");
        assert_eq!(reply["errorCode"], "insufficient_scope", "{reply}");
    }
    // An operate token passes the scope check for re-drive (and finds no such delivery).
    let (status, reply) = call(
        &base,
        &operate,
        M::POST,
        "/api/v2/logout-deliveries/d1/retry",
    )
    .await;
    assert_eq!(status, 404, "{reply}");
    let (status, _) = call(&base, &operate, M::POST, "/api/v2/clients").await;
    assert_eq!(status, 403);

    let list = logoutd(&["tokens", "list", "--json"], dir.path());
    let rows: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&read[4..]));
    let read_id = rows[0]["id"].as_str().unwrap().to_owned();
    let out = logoutd(&["tokens", "revoke", &read_id], dir.path());
    assert!(out.status.success(), "{out:?}");
    eventually(&base, &read, 401).await;
    let late = add(dir.path(), "read");
    eventually(&base, &late, 200).await;
    serve.terminate().await;
}

/// `tokens add --metadata` grants the reading of metadata values; `tokens list` shows the
/// grant (admin tokens always have it), and `token-info` answers it to the token.
#[tokio::test]
async fn tokens_add_metadata_grants_metadata_values_and_list_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let plain = add(dir.path(), "read");
    let args = [
        "tokens",
        "add",
        "--scope",
        "read",
        "--name",
        "support",
        "--metadata",
    ];
    let out = logoutd(&args, dir.path());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("may read metadata values"));
    let granted = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    add(dir.path(), "admin");

    let list = logoutd(&["tokens", "list", "--json"], dir.path());
    let rows: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    let grants: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["scope"].as_str().unwrap(),
                r["metadata"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(grants, [("read", false), ("read", true), ("admin", true)]);
    let table = logoutd(&["tokens", "list"], dir.path());
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("METADATA"), "{table}");
    assert!(
        lines[1].contains(" keys ") && lines[2].contains(" values "),
        "{table}"
    );

    let app = TestApp::with_tokens(dir.path().join("data/api-tokens.json")).await;
    for (token, metadata) in [(&plain, false), (&granted, true)] {
        let (status, _, body) = app
            .raw(Method::GET, "/api/v2/token-info", Some(token), None, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let info: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            info,
            serde_json::json!({"scope": "read", "metadata": metadata})
        );
    }
}

#[tokio::test]
async fn weak_api_tokens_are_refused_outside_dev() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory://"])
        .current_dir(dir.path())
        .env("LOGOUTD_API_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 32"), "{stderr}");
}

/// Without credentials every `/api/v2` request is a 401, whether or not the route or the
/// method exists: a stranger learns nothing of the API's shape.
#[tokio::test]
async fn unauthenticated_requests_get_401_before_404_or_405() {
    let app = TestApp::memory().await;
    for (method, path) in [
        (Method::PUT, "/api/v2/clients"),
        (Method::GET, "/api/v2/nope"),
        (Method::DELETE, "/api/v2/logout-deliveries"),
        (Method::GET, "/api/v2/clients"),
    ] {
        let (status, _, body) = app.raw(method.clone(), path, None, None, None).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_auth0_error(status, &body, StatusCode::UNAUTHORIZED);
        let (status, _, _) = app
            .raw(method.clone(), path, Some("wrong-token"), None, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let (status, _) = app.call(Method::GET, "/api/v2/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call(Method::PUT, "/api/v2/clients", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A keys directory or key file that other users can read stops `serve` with the `chmod` to
/// run, unless the operator explicitly allows it.
#[tokio::test]
async fn loose_key_permissions_are_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = logoutd(
        &["keys", "generate", "--alg", "ES256", "--keys-dir", "keys"],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let serve = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory://"])
            .args(["--keys-dir", "keys"])
            .args(extra)
            .current_dir(dir.path())
            .env("LOGOUTD_API_TOKEN", crate::support::app::API_TOKEN)
            .env("LOGOUTD_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = serve(&[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("chmod 700"), "{stderr}");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pem = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve(&[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("chmod 600"), "{stderr}");
    // With the explicit flag it starts: it logs that it listens (and is stopped here).
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory://"])
        .args(["--keys-dir", "keys", "--allow-loose-key-permissions"])
        .current_dir(dir.path())
        .env("LOGOUTD_API_TOKEN", crate::support::app::API_TOKEN)
        .env("LOGOUTD_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("logoutd listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "serve did not start with the flag");
    child.kill().await.unwrap();
}
