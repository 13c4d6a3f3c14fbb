//! `logoutd ssf-deliveries list|show|retry` against a running `logoutd serve --ssf true`, whose
//! poll receiver reports its SETs as errors so that they fail.

use crate::cli::logoutd;
use crate::support::app::API_TOKEN;
use crate::support::serve_process::ServeProcess;
use reqwest::Method;
use serde_json::{Map, Value, json};

/// A receiver's request to `serve`'s SSF route `path`.
async fn ssf(serve: &ServeProcess, token: &str, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", serve.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

/// A receiver with a poll stream, its three SETs of one user-wide end failed by the receiver.
/// Returns the stream id, the receiver id and the end's event id.
async fn failed_sets(serve: &ServeProcess) -> (String, String, String) {
    let (status, created) = serve
        .call(
            Method::POST,
            "/api/v2/ssf-receivers",
            Some(json!({"name": "siem"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    let stream = ssf(serve, token, "/ssf/stream", json!({})).await;
    let stream = stream["stream_id"].as_str().unwrap().to_owned();
    for id in ["s1", "s2", "s3"] {
        let body = json!({"id": id, "user_id": "u1"});
        let (status, reply) = serve
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let (status, ended) = serve
        .call(Method::DELETE, "/api/v2/users/u1/sessions", None)
        .await;
    assert_eq!(status, 202, "{ended}");
    let poll = format!("/ssf/poll/{stream}");
    let handed = ssf(serve, token, &poll, json!({"returnImmediately": true})).await;
    let errs: Map<String, Value> = handed["sets"]
        .as_object()
        .unwrap()
        .keys()
        .map(|jti| {
            (
                jti.clone(),
                json!({"err": "invalid_key", "description": "no key"}),
            )
        })
        .collect();
    assert_eq!(errs.len(), 3);
    let report = json!({"returnImmediately": true, "maxEvents": 0, "setErrs": errs});
    ssf(serve, token, &poll, report).await;
    let receiver = created["id"].as_str().unwrap().to_owned();
    (
        stream,
        receiver,
        ended["event_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_deliveries_list_show_and_retry_one_and_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(dir.path(), &["--ssf", "true"]).await;
    let (stream, receiver, event_id) = failed_sets(&serve).await;
    let base = serve.base.clone();
    let base = base.as_str();

    let table = logoutd(
        base,
        API_TOKEN,
        &["ssf-deliveries", "list", "--state", "failed"],
    )
    .await;
    assert!(table.ok, "{}", table.stderr);
    let header = table.stdout.lines().next().unwrap();
    for column in [
        "ID",
        "KIND",
        "STREAM",
        "RECEIVER",
        "STATE",
        "LAST_ERROR",
        "TXN",
        "SESSION",
    ] {
        assert!(header.contains(column), "{column}: {header}");
    }
    let rows: Vec<&str> = table.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{}", table.stdout);
    assert!(
        rows.iter().all(|r| r.contains("session_revoked")
            && r.contains("failed")
            && r.contains(&event_id)
            && r.contains("invalid_key")),
        "{}",
        table.stdout
    );
    let args = [
        "ssf-deliveries",
        "list",
        "--stream",
        &stream,
        "--receiver",
        &receiver,
    ];
    let listed = logoutd(base, API_TOKEN, &[&args[..], &["--json"]].concat()).await;
    let listed = listed.json();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let limited = ["--kind", "session_revoked", "--limit", "2", "--json"];
    let two = logoutd(base, API_TOKEN, &[&args[..], &limited].concat()).await;
    assert_eq!(two.json().as_array().unwrap().len(), 2);
    let id = listed[0]["id"].as_str().unwrap().to_owned();

    let shown = logoutd(base, API_TOKEN, &["ssf-deliveries", "show", &id, "--json"]).await;
    let shown = shown.json();
    assert_eq!(
        (&shown["kind"], &shown["txn"]),
        (&json!("session_revoked"), &json!(event_id))
    );
    assert_eq!(
        (&shown["user_id"], &shown["attempts"]),
        (&json!("u1"), &json!(1))
    );
    let shown = logoutd(base, API_TOKEN, &["ssf-deliveries", "show", &id]).await;
    assert!(shown.ok, "{}", shown.stderr);
    for text in [
        "FIELD",
        "stream_id",
        &stream,
        "last_error",
        "invalid_key",
        "jti",
    ] {
        assert!(shown.stdout.contains(text), "{text}: {}", shown.stdout);
    }

    let one = logoutd(base, API_TOKEN, &["ssf-deliveries", "retry", &id]).await;
    assert!(one.ok && one.stdout.contains("re-driven"), "{}", one.stderr);
    let again = logoutd(base, API_TOKEN, &["ssf-deliveries", "retry", &id]).await;
    assert!(
        !again.ok && again.stderr.contains("409"),
        "{}",
        again.stderr
    );
    let bulk = [
        "ssf-deliveries",
        "retry",
        "--stream",
        &stream,
        "--kind",
        "session_revoked",
        "--since",
        "2000-01-01T00:00:00Z",
        "--idempotency-key",
        "cli-set-key",
    ];
    let first = logoutd(base, API_TOKEN, &[&bulk[..], &["--json"]].concat()).await;
    assert!(first.ok, "{}", first.stderr);
    assert_eq!(first.json(), json!({"redriven": 2, "replayed": false}));
    let replay = logoutd(base, API_TOKEN, &bulk).await;
    assert!(
        replay.ok
            && replay.stdout.contains("re-drove 2 failed SET deliveries")
            && replay.stdout.contains("earlier request"),
        "{} {}",
        replay.stdout,
        replay.stderr
    );
    let pending = ["ssf-deliveries", "list", "--state", "pending", "--json"];
    let pending = logoutd(base, API_TOKEN, &pending).await;
    assert_eq!(pending.json().as_array().unwrap().len(), 3);

    let no_filter = logoutd(base, API_TOKEN, &["ssf-deliveries", "retry"]).await;
    assert!(
        !no_filter.ok && no_filter.stderr.contains("--stream"),
        "{}",
        no_filter.stderr
    );
    let missing = logoutd(base, API_TOKEN, &["ssf-deliveries", "show", "set_nope"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("404"),
        "{}",
        missing.stderr
    );
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == "logoutd_ssf_sets_pending 3"),
        "{metrics}"
    );
    assert!(serve.terminate().await.success());
}
