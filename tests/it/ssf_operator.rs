//! The operator's side of the SET outbox over the API, on the memory store: the bulk re-drive
//! of failed SETs (`POST /api/v2/ssf-deliveries/retry`) with the filters and idempotency keys
//! of the deliveries' own, the view's subject ids and receiver filter, and the SET gauges that
//! `/metrics` reads at scrape time when SSF is on.

use crate::ssf_api::{app, poll, poll_stream, verification};
use crate::support::app::{API_TOKEN, TestApp, assert_auth0_error};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};

const BULK: &str = "/api/v2/ssf-deliveries/retry";

/// Fails every SET waiting on stream `id`: one poll hands them out, the next reports each in
/// `setErrs`. Returns how many.
async fn fail_all(app: &TestApp, token: &str, id: &str) -> usize {
    let handed = poll(app, token, id, json!({"returnImmediately": true})).await;
    assert_eq!(handed.status, StatusCode::OK, "{}", handed.body);
    let errs: Map<String, Value> = handed.body["sets"]
        .as_object()
        .unwrap()
        .keys()
        .map(|jti| {
            let error = json!({"err": "invalid_key", "description": "unknown key"});
            (jti.clone(), error)
        })
        .collect();
    let n = errs.len();
    let body = json!({"returnImmediately": true, "maxEvents": 0, "setErrs": errs});
    let reported = poll(app, token, id, body).await;
    assert_eq!(reported.status, StatusCode::OK, "{}", reported.body);
    n
}

/// Registers session `id` of user `u1` and ends it (every receiver here has scope `all`).
async fn end_session(app: &TestApp, id: &str) {
    let body = json!({"id": id, "user_id": "u1"});
    let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, reply) = app
        .call(Method::DELETE, &format!("/api/v2/sessions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
}

/// The SET rows listed with `query`.
async fn listed(app: &TestApp, query: &str) -> Vec<Value> {
    let path = format!("/api/v2/ssf-deliveries?{query}");
    let (status, page) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["deliveries"].as_array().unwrap().clone()
}

/// A bulk re-drive of `body` (raw bytes) with an optional `Idempotency-Key`.
async fn bulk(
    app: &TestApp,
    path: &str,
    body: &[u8],
    key: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = axum::http::Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let req = req.body(axum::body::Body::from(body.to_vec())).unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

/// The `redriven` count of a bulk re-drive of `body` that must succeed, and whether it was
/// a replay.
async fn redriven(app: &TestApp, body: Value, key: Option<&str>) -> (u64, bool) {
    let (status, headers, reply) = bulk(app, BULK, body.to_string().as_bytes(), key).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let replayed = headers.get("idempotent-replayed").is_some();
    (reply["redriven"].as_u64().unwrap(), replayed)
}

/// Two poll receivers, `rp-a` with a verification and both with a session end's SET, every
/// row failed by the receiver. Returns (token a, stream a, token b, stream b).
async fn failed_sets(app: &TestApp) -> (String, String, String, String) {
    let (token_a, stream_a) = poll_stream(app, "rp-a").await;
    let (token_b, stream_b) = poll_stream(app, "rp-b").await;
    verification(app, &token_a, &stream_a, "v-1").await;
    end_session(app, "s1").await;
    assert_eq!(fail_all(app, &token_a, &stream_a).await, 2);
    assert_eq!(fail_all(app, &token_b, &stream_b).await, 1);
    (token_a, stream_a, token_b, stream_b)
}

#[tokio::test]
async fn bulk_retry_of_sets_redrives_exactly_the_matching_failed_ones() {
    let app = app().await;
    let (token_a, stream_a, _, stream_b) = failed_sets(&app).await;
    let failed = listed(&app, "state=failed").await;
    assert_eq!(failed.len(), 3);
    let revoked = failed
        .iter()
        .find(|r| r["kind"] == "session_revoked" && r["stream_id"] == stream_a.as_str())
        .unwrap();
    assert_eq!(
        (&revoked["session_id"], &revoked["user_id"]),
        (&json!("s1"), &json!("u1"))
    );
    let check = failed.iter().find(|r| r["kind"] == "verification").unwrap();
    assert_eq!(
        (&check["session_id"], &check["user_id"]),
        (&Value::Null, &Value::Null)
    );
    let receiver_b = failed
        .iter()
        .find(|r| r["stream_id"] == stream_b.as_str())
        .unwrap()["receiver_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        listed(&app, &format!("receiver_id={receiver_b}"))
            .await
            .len(),
        1
    );

    // The stream's session_revoked SET only, its jti kept.
    let one = json!({"stream_id": stream_a, "kind": "session_revoked"});
    assert_eq!(redriven(&app, one, None).await, (1, false));
    let pending = listed(&app, &format!("state=pending&stream_id={stream_a}")).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            &pending[0]["id"],
            &pending[0]["jti"],
            &pending[0]["attempts"]
        ),
        (&revoked["id"], &revoked["jti"], &json!(0))
    );
    // Under a key: the repeat replays; another request under it is refused, here and at the
    // deliveries' bulk re-drive, which shares the keys.
    let theirs = json!({"receiver_id": receiver_b});
    assert_eq!(
        redriven(&app, theirs.clone(), Some("k-1")).await,
        (1, false)
    );
    assert_eq!(redriven(&app, theirs, Some("k-1")).await, (1, true));
    let other = [
        (
            BULK,
            json!({"receiver_id": receiver_b, "kind": "verification"}),
        ),
        (
            "/api/v2/logout-deliveries/retry",
            json!({"client_id": "c1"}),
        ),
    ];
    for (path, body) in other {
        let body = body.to_string();
        let (status, _, reply) = bulk(&app, path, body.as_bytes(), Some("k-1")).await;
        assert_auth0_error(status, &reply, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply["errorCode"], "idempotency_key_reused", "{path}");
    }
    // The rest, then nothing.
    assert_eq!(redriven(&app, json!({}), None).await, (1, false));
    assert_eq!(redriven(&app, json!({}), None).await, (0, false));
    assert!(listed(&app, "state=failed").await.is_empty());
    // The re-driven SETs go out again with their jti.
    let again = poll(
        &app,
        &token_a,
        &stream_a,
        json!({"returnImmediately": true}),
    )
    .await;
    let sets = again.body["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 2);
    assert!(sets.contains_key(revoked["jti"].as_str().unwrap()));
}

#[tokio::test]
async fn bad_set_retry_bodies_and_keys_are_400_in_auth0_shape_and_redrive_nothing() {
    let app = app().await;
    failed_sets(&app).await;
    let refused: [(&str, Option<&str>, &str); 9] = [
        (r#"{"state":"failed"}"#, None, "invalid_body"),
        (r#"{"kind":"nope"}"#, None, "invalid_body"),
        (r#"{"stream_id":""}"#, None, "invalid_body"),
        (r#"{"receiver_id":""}"#, None, "invalid_body"),
        (r#"{"failed_since":"yesterday"}"#, None, "invalid_body"),
        (
            r#"{"failed_since":"2026-01-02T00:00:00Z","failed_before":"2026-01-01T00:00:00Z"}"#,
            None,
            "invalid_body",
        ),
        ("[]", None, "invalid_body"),
        ("{}", Some(""), "invalid_idempotency_key"),
        ("{}", Some("tab\there"), "invalid_idempotency_key"),
    ];
    for (body, key, code) in refused {
        let (status, _, reply) = bulk(&app, BULK, body.as_bytes(), key).await;
        assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert_eq!(reply["errorCode"], code, "{body}: {reply}");
    }
    assert_eq!(listed(&app, "state=failed").await.len(), 3);
}

/// The value of sample `name` in the Prometheus text `text`.
fn sample(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let (status, _, body) = app.raw(Method::GET, "/metrics", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_read_the_set_gauges_at_scrape_time_only_with_ssf_on() {
    let app = app().await;
    failed_sets(&app).await;
    let one = json!({"kind": "verification"});
    assert_eq!(redriven(&app, one, None).await, (1, false));
    app.clock.advance(chrono::Duration::seconds(30));
    let gauges = |text: &str| {
        [
            "logoutd_ssf_sets_pending",
            "logoutd_ssf_sets_in_flight",
            "logoutd_ssf_sets_dead_letter",
            "logoutd_ssf_sets_oldest_due_age_seconds",
        ]
        .map(|name| sample(text, name))
    };
    let text = scrape(&app).await;
    assert_eq!(
        gauges(&text),
        [Some(1), Some(0), Some(2), Some(30)],
        "{text}"
    );
    // Each scrape reads the store again.
    assert_eq!(redriven(&app, json!({}), None).await, (2, false));
    let text = scrape(&app).await;
    assert_eq!(
        gauges(&text),
        [Some(3), Some(0), Some(0), Some(30)],
        "{text}"
    );

    let off = TestApp::memory().await;
    let text = scrape(&off).await;
    assert!(!text.contains("logoutd_ssf_sets_"), "{text}");
    assert!(sample(&text, "logoutd_deliveries_pending").is_some());
}
