//! `POST /api/v2/logout-deliveries/retry` end to end, in process: the API ends sessions, the
//! dispatcher fails their deliveries at a recording RP, the bulk re-drive puts back exactly
//! the matching ones, and the RP, answering 200 by then, receives them.

use crate::store::postgres::TestDatabase;
use crate::support::app::{API_TOKEN, TestApp};
use crate::support::delivery::{Harness, NowUtc};
use crate::support::recording_rp::{RecordingRp, Reply};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use logoutd_core::{AttemptRecord, AttemptResult, Decision, Jti, Terminal, open_store};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PATH: &str = "/api/v2/logout-deliveries/retry";

/// A refused request: its body, its `Idempotency-Key` and the `errorCode` it gets.
type Refused<'a> = (&'a [u8], Option<&'a [u8]>, &'a str);

/// Sends a bulk re-drive with `body` and an optional `Idempotency-Key` (raw bytes).
async fn bulk(h: &Harness, body: &[u8], key: Option<&[u8]>) -> (StatusCode, HeaderMap, Value) {
    send(&h.app.router, body, key).await
}

/// [`bulk`] to the API of `router`.
async fn send(router: &Router, body: &[u8], key: Option<&[u8]>) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(PATH)
        .header(header::AUTHORIZATION, format!("Bearer {API_TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let req = req.body(Body::from(body.to_vec())).unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The `{"redriven": n}` of a bulk re-drive that must succeed without a replay.
async fn redriven(h: &Harness, body: Value, key: Option<&str>) -> u64 {
    let body = body.to_string();
    let (status, headers, reply) = bulk(h, body.as_bytes(), key.map(str::as_bytes)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(headers.get("idempotent-replayed").is_none());
    reply["redriven"].as_u64().unwrap()
}

/// `at` as RFC 3339, as a client would send it.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The state and attempts of the one delivery of `session`.
async fn state(h: &Harness, session: &str) -> (String, u64) {
    let rows = h.deliveries(&format!("session_id={session}")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    (
        row["state"].as_str().unwrap().to_owned(),
        row["attempts"].as_u64().unwrap(),
    )
}

/// A client `id` that receives every initiator at `rp`'s `/id`.
async fn client(h: &Harness, rp: &RecordingRp, id: &str) {
    let url = rp.url(&format!("/{id}"));
    let oidc = json!({ "backchannel_logout_urls": [url.as_str()],
        "backchannel_logout_initiators": { "mode": "all" } });
    h.client(id, url.as_str(), json!({ "oidc_logout": oidc }))
        .await;
}

/// Ends session `id` of `client` with `initiator` and waits for its delivery, the `n`-th
/// recorded attempt, to fail at the RP.
async fn failed(h: &Harness, id: &str, client: &str, initiator: &str, n: usize) {
    h.session(id, "u1", &[client], json!({})).await;
    assert_eq!(h.end(json!({ "session_id": id }), initiator).await, 1);
    h.outbox.wait_recorded(n).await;
    assert_eq!(state(h, id).await, ("failed".to_owned(), 1));
}

#[tokio::test]
async fn bulk_retry_redrives_exactly_the_matching_failed_deliveries_which_then_deliver() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(4, Reply::status(404));
    client(&h, &rp, "c1").await;
    client(&h, &rp, "c2").await;
    let t0 = h.clock.now_utc();
    failed(&h, "s1", "c1", "rp-logout", 1).await;
    h.clock.advance(Duration::minutes(1));
    let t1 = h.clock.now_utc();
    failed(&h, "s2", "c1", "password-changed", 2).await;
    failed(&h, "s3", "c2", "rp-logout", 3).await;
    h.clock.advance(Duration::minutes(1));
    let t2 = h.clock.now_utc();
    failed(&h, "s4", "c1", "rp-logout", 4).await;

    let only_s1 = json!({ "client_id": "c1", "initiator": "rp-logout",
        "failed_since": rfc3339(t0), "failed_before": rfc3339(t2) });
    assert_eq!(redriven(&h, only_s1, None).await, 1);
    h.outbox.wait_recorded(5).await;
    assert_eq!(state(&h, "s1").await, ("delivered".to_owned(), 1));
    for s in ["s2", "s3", "s4"] {
        assert_eq!(state(&h, s).await.0, "failed", "{s}");
    }

    let since_t1 = json!({ "failed_since": rfc3339(t1) });
    assert_eq!(redriven(&h, since_t1, None).await, 3);
    h.outbox.wait_recorded(8).await;
    for s in ["s1", "s2", "s3", "s4"] {
        assert_eq!(state(&h, s).await.0, "delivered", "{s}");
    }
    assert_eq!(rp.requests().len(), 8);
    assert_eq!(
        redriven(&h, json!({}), None).await,
        0,
        "nothing failed is left"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_key_replays_and_the_same_key_with_another_body_is_refused() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(2, Reply::status(404));
    client(&h, &rp, "c1").await;
    failed(&h, "s1", "c1", "rp-logout", 1).await;

    let body = br#"{"client_id":"c1","initiator":"rp-logout"}"#;
    let (status, headers, reply) = bulk(&h, body, Some(b"key-1")).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 1 })));
    assert!(headers.get("idempotent-replayed").is_none());
    h.outbox.wait_recorded(2).await;
    assert_eq!(
        state(&h, "s1").await,
        ("failed".to_owned(), 1),
        "it failed again"
    );

    let same = br#"{ "initiator": "rp-logout", "client_id": "c1" }"#;
    let (status, headers, reply) = bulk(&h, same, Some(b"key-1")).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 1 })));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(
        state(&h, "s1").await.0,
        "failed",
        "a replay re-drives nothing"
    );

    let other = br#"{"client_id":"c1"}"#;
    let (status, _, reply) = bulk(&h, other, Some(b"key-1")).await;
    crate::support::app::assert_auth0_error(status, &reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply["errorCode"], "idempotency_key_reused");
    assert_eq!(
        state(&h, "s1").await.0,
        "failed",
        "a refusal re-drives nothing"
    );

    assert_eq!(
        redriven(&h, json!({ "client_id": "c1" }), Some("key-2")).await,
        1
    );
    h.outbox.wait_recorded(3).await;
    assert_eq!(state(&h, "s1").await.0, "delivered");
    assert_eq!(rp.requests().len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn bad_bodies_and_keys_are_400_and_redrive_nothing() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::status(404)).await;
    client(&h, &rp, "c1").await;
    failed(&h, "s1", "c1", "rp-logout", 1).await;
    let now = h.clock.now_utc();
    let long_key = vec![b'k'; 256];
    let bodies: [Refused; 12] = [
        (br#"{"state":"failed"}"#, None, "invalid_body"),
        (br#"{"failed_since":"yesterday"}"#, None, "invalid_body"),
        (br#"{"failed_before":"2026-01-02"}"#, None, "invalid_body"),
        (br#"{"initiator":"nope"}"#, None, "invalid_body"),
        (br#"{"client_id":""}"#, None, "invalid_body"),
        (br#"{"client_id":7}"#, None, "invalid_body"),
        (br#"[]"#, None, "invalid_body"),
        (b"{", None, "invalid_body"),
        (
            br#"{"client_id":"c1","client_id":"c1"}"#,
            None,
            "invalid_body",
        ),
        (b"{}", Some(b""), "invalid_idempotency_key"),
        (b"{}", Some(&long_key), "invalid_idempotency_key"),
        (b"{}", Some(b"tab\there"), "invalid_idempotency_key"),
    ];
    for (body, key, code) in bodies {
        let (status, _, reply) = bulk(&h, body, key).await;
        let what = String::from_utf8_lossy(body);
        crate::support::app::assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert_eq!(reply["errorCode"], code, "{what}: {reply}");
        if what.contains("failed_") {
            let message = reply["message"].as_str().unwrap();
            assert!(message.contains("RFC 3339"), "{message}");
        }
    }
    let window = json!({ "failed_since": rfc3339(now), "failed_before": rfc3339(now) });
    let (status, _, reply) = bulk(&h, window.to_string().as_bytes(), None).await;
    crate::support::app::assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
    assert!(
        reply["message"].as_str().unwrap().contains("failed_since"),
        "{reply}"
    );
    let (status, _, reply) = bulk(&h, b"{}", Some(&[b'k', 0xc3, 0xa9])).await;
    crate::support::app::assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);

    assert_eq!(state(&h, "s1").await, ("failed".to_owned(), 1));
    assert_eq!(rp.requests().len(), 1);
    let printable: String = (0x20_u8..=0x7e).map(char::from).collect();
    assert_eq!(
        redriven(&h, json!({}), Some(&printable)).await,
        1,
        "every printable byte"
    );
    h.stop().await;
}

/// The id of the one delivery of `session`.
async fn delivery_id(h: &Harness, session: &str) -> String {
    let rows = h.deliveries(&format!("session_id={session}")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bulk_retry_by_ids_redrives_the_named_dead_letters_and_replays_under_a_key() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(4, Reply::status(404));
    client(&h, &rp, "c1").await;
    for (n, s) in ["s1", "s2", "s3", "s4"].into_iter().enumerate() {
        failed(&h, s, "c1", "rp-logout", n + 1).await;
    }
    h.session("s5", "u1", &["c1"], json!({})).await;
    assert_eq!(h.end(json!({ "session_id": "s5" }), "rp-logout").await, 1);
    h.outbox.wait_recorded(5).await;
    assert_eq!(state(&h, "s5").await, ("delivered".to_owned(), 1));
    let [s1, s2, s3, s4, s5] = [
        delivery_id(&h, "s1").await,
        delivery_id(&h, "s2").await,
        delivery_id(&h, "s3").await,
        delivery_id(&h, "s4").await,
        delivery_id(&h, "s5").await,
    ];

    // Two dead letters, a delivered row and an unknown id: the dead letters only.
    let mixed = json!({ "ids": [&s1, &s5, "dlv_nosuchdelivery", &s2] });
    assert_eq!(redriven(&h, mixed, None).await, 2);
    h.outbox.wait_recorded(7).await;
    for s in ["s1", "s2"] {
        assert_eq!(state(&h, s).await, ("delivered".to_owned(), 1), "{s}");
    }
    assert_eq!(state(&h, "s5").await, ("delivered".to_owned(), 1));
    for s in ["s3", "s4"] {
        assert_eq!(state(&h, s).await.0, "failed", "{s}");
    }
    let unknown = json!({ "ids": ["dlv_nosuchdelivery"] });
    assert_eq!(redriven(&h, unknown, None).await, 0);

    // Under a key: the same ids in another order, repeated, replay; other ids are refused.
    let body = json!({ "ids": [&s3] }).to_string();
    let (status, headers, reply) = bulk(&h, body.as_bytes(), Some(b"ids-1")).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 1 })));
    assert!(headers.get("idempotent-replayed").is_none());
    h.outbox.wait_recorded(8).await;
    assert_eq!(state(&h, "s3").await.0, "delivered");
    let same = json!({ "ids": [&s3, &s3] }).to_string();
    let (status, headers, reply) = bulk(&h, same.as_bytes(), Some(b"ids-1")).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 1 })));
    assert_eq!(headers["idempotent-replayed"], "true");
    let other = json!({ "ids": [&s3, &s4] }).to_string();
    let (status, _, reply) = bulk(&h, other.as_bytes(), Some(b"ids-1")).await;
    crate::support::app::assert_auth0_error(status, &reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply["errorCode"], "idempotency_key_reused");
    assert_eq!(
        state(&h, "s4").await.0,
        "failed",
        "a refusal re-drives nothing"
    );
    // The filter that selects the same row is another request.
    let (status, _, reply) = bulk(&h, br#"{"client_id":"c1"}"#, Some(b"ids-1")).await;
    crate::support::app::assert_auth0_error(status, &reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rp.requests().len(), 8);
    h.stop().await;
}

#[tokio::test]
async fn bad_id_lists_are_400_and_redrive_nothing() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::status(404)).await;
    client(&h, &rp, "c1").await;
    failed(&h, "s1", "c1", "rp-logout", 1).await;
    let id = delivery_id(&h, "s1").await;
    let too_many: Vec<String> = (0..101).map(|i| format!("dlv_{i:011}")).collect();
    let bodies = [
        (json!({ "ids": [] }), "1 to 100"),
        (json!({ "ids": too_many }), "1 to 100"),
        (json!({ "ids": [&id, ""] }), "empty"),
        (
            json!({ "ids": [&id], "client_id": "c1" }),
            "cannot be combined",
        ),
        (
            json!({ "ids": [&id], "initiator": "rp-logout" }),
            "cannot be combined",
        ),
        (
            json!({ "ids": [&id], "failed_since": "2026-01-02T03:04:05Z" }),
            "cannot be combined",
        ),
        (json!({ "ids": id }), "ids"),
        (json!({ "ids": [7] }), "ids"),
    ];
    for (body, says) in bodies {
        let (status, _, reply) = bulk(&h, body.to_string().as_bytes(), None).await;
        crate::support::app::assert_auth0_error(status, &reply, StatusCode::BAD_REQUEST);
        assert_eq!(reply["errorCode"], "invalid_body", "{body}: {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let hundred: Vec<String> = std::iter::once(id.clone())
        .chain((1..100).map(|i| format!("dlv_{i:011}")))
        .collect();
    assert_eq!(state(&h, "s1").await, ("failed".to_owned(), 1));
    assert_eq!(
        redriven(&h, json!({ "ids": hundred }), None).await,
        1,
        "100 ids"
    );
    h.stop().await;
}

/// Ends `sessions` of client `c1` through `app` and fails their deliveries with a 410.
async fn fail_through_store(app: &TestApp, sessions: &[&str]) {
    let oidc = json!({ "backchannel_logout_urls": ["http://127.0.0.1:9/bc"] });
    let body = json!({ "client_id": "c1", "name": "c1", "oidc_logout": oidc });
    let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    for id in sessions {
        let body = json!({ "id": id, "user_id": "u1", "clients": [{ "client_id": "c1" }] });
        let (status, _) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = app
        .call(Method::DELETE, "/api/v2/users/u1/sessions", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(fail_due(app).await, sessions.len());
}

/// Claims every due delivery of `app` and fails it with a 410; returns how many.
async fn fail_due(app: &TestApp) -> usize {
    let now = app.clock.now_utc();
    let lease = Duration::seconds(30);
    let claimed = app.stores.queue.claim_due(now, lease, 100).await.unwrap();
    let results: Vec<AttemptResult> = claimed
        .iter()
        .map(|c| AttemptResult {
            id: c.delivery.id.clone(),
            lease: c.lease.clone(),
            attempt: AttemptRecord {
                at: now,
                status: Some(410),
                error: None,
                latency_ms: 1,
                jti: Jti::generate(),
            },
            decision: Decision::GiveUp(Terminal::Refused(410).into()),
        })
        .collect();
    app.stores.queue.record(&results).await.unwrap();
    claimed.len()
}

/// Two nodes on one PostgreSQL database: the same key sent to both at once re-drives the
/// failed deliveries once; the other node answers the replay or says the first request is
/// still running, and afterwards either node replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holds_across_nodes_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = TestApp::over(open_store(&db.url).await.unwrap(), true);
    let b = TestApp::over(open_store(&db.url).await.unwrap(), true);
    fail_through_store(&a, &["s1", "s2", "s3"]).await;

    let body = br#"{"client_id":"c1"}"#;
    let (first, second) = tokio::join!(
        send(&a.router, body, Some(b"shared-key")),
        send(&b.router, body, Some(b"shared-key")),
    );
    let mut runs = 0;
    for (status, headers, reply) in [first, second] {
        match (status, headers.get("idempotent-replayed")) {
            (StatusCode::OK, None) => {
                assert_eq!(reply, json!({ "redriven": 3 }));
                runs += 1;
            }
            (StatusCode::OK, Some(_)) => assert_eq!(reply, json!({ "redriven": 3 })),
            (StatusCode::CONFLICT, _) => {
                assert_eq!(reply["errorCode"], "idempotency_key_in_progress")
            }
            other => panic!("unexpected answer {other:?}: {reply}"),
        }
    }
    assert_eq!(runs, 1, "exactly one node ran the request");
    for app in [&a, &b] {
        let (status, headers, reply) = send(&app.router, body, Some(b"shared-key")).await;
        assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 3 })));
        assert_eq!(headers["idempotent-replayed"], "true");
    }
    let (status, _, reply) = send(&b.router, b"{}", Some(b"shared-key")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
}

/// A bulk re-drive whose process died midway leaves its key unfinished: a repeat is told the
/// request is still running while it might be, and takes it over once it has recorded no
/// progress for ten minutes, going on from its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_off_midway_is_taken_over_by_a_repeat_after_ten_minutes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let app = TestApp::over(open_store(&db.url).await.unwrap(), true);
    fail_through_store(&app, &["s1", "s2", "s3"]).await;
    let body = br#"{"client_id":"c1"}"#;
    let (status, _, reply) = send(&app.router, body, Some(b"cut-key")).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 3 })));
    // The three fail again, and the request's process "dies" after its first batch: the key
    // says 3 re-driven and not done, last heard of `ago` before now.
    assert_eq!(fail_due(&app).await, 3);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let cut_off = |ago: Duration| {
        let at = (app.clock.now_utc() - ago).timestamp_millis();
        sqlx::query("UPDATE idempotency_keys SET done = false, updated_at = $1 WHERE key = $2")
            .bind(at)
            .bind("cut-key")
            .execute(&pool)
    };

    cut_off(Duration::minutes(9)).await.unwrap();
    let (status, _, reply) = send(&app.router, body, Some(b"cut-key")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["errorCode"], "idempotency_key_in_progress");

    cut_off(Duration::minutes(10)).await.unwrap();
    let (status, headers, reply) = send(&app.router, body, Some(b"cut-key")).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 6 })));
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(
        fail_due(&app).await,
        3,
        "the takeover re-drove the three again"
    );
    let (status, headers, reply) = send(&app.router, body, Some(b"cut-key")).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({ "redriven": 6 })));
    assert_eq!(headers["idempotent-replayed"], "true");
}
