//! Durable back-channel delivery end to end, in process: the API ends sessions, the
//! dispatcher claims, mints, POSTs to a real loopback receiver, classifies and records.

use crate::support::app::ISSUER;
use crate::support::delivery::{Harness, NowUtc};
use crate::support::recording_rp::{RecordedRequest, RecordingRp, Reply};
use logoutd_core::Queue;
use logoutd_core::{ClientId, Issuer};
use logoutd_core::{TypPolicy, VerifiedToken, VerifyOptions, verify};
use serde_json::{Value, json};
use std::collections::HashSet;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Verifies the token of a recorded request as an RP for `client` would (spec §2.6).
fn verified(h: &Harness, req: &RecordedRequest, client: &str, typ: TypPolicy) -> VerifiedToken {
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form = req.form();
    assert_eq!(form.len(), 1, "only logout_token is sent: {form:?}");
    let token = req.form_param("logout_token").unwrap();
    let mut opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(client));
    opts.accept_typ = typ;
    let jwks = h.app.keys.current().jwks(h.clock.now_utc());
    verify(&token, &jwks, &opts, h.clock.now_utc()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The `aud` of a request's token, read without verification, to pick the verifier.
fn peek_aud(req: &RecordedRequest) -> String {
    use base64::Engine as _;
    let token = req.form_param("logout_token").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["aud"].as_str().unwrap().to_owned()
}

async fn one_delivery(h: &Harness, session: &str) -> Value {
    let rows = h.deliveries(&format!("session_id={session}")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

#[tokio::test]
async fn delivered_token_is_spec_exact_and_keeps_the_query_string() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    h.client("rp1", rp.url("/bc?tenant=a").as_str(), json!({}))
        .await;
    h.session("s1", "u1", &["rp1"], json!({ "k": "v" })).await;
    assert_eq!(h.end(json!({ "session_id": "s1" }), "rp-logout").await, 1);
    h.outbox.wait_recorded(1).await;
    let reqs = rp.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/bc");
    assert_eq!(reqs[0].query.as_deref(), Some("tenant=a"));
    let token = verified(&h, &reqs[0], "rp1", TypPolicy::STRICT);
    assert_eq!(token.header["typ"], "logout+jwt");
    assert_eq!(token.header["alg"], "ES256");
    let claims = &token.claims;
    assert_eq!(claims["sub"], "u1");
    assert_eq!(claims["sid"], "s1");
    assert_eq!(claims["aud"], "rp1");
    assert_eq!(claims["events"], json!({ EVENT: {} }));
    assert!(claims.get("nonce").is_none());
    assert!(
        claims.get("session_metadata").is_none(),
        "client did not opt in"
    );
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert!(exp > iat && exp - iat <= 120);
    let row = one_delivery(&h, "s1").await;
    assert_eq!(row["state"], "delivered");
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["last_status"], 200);
    let detail = h.detail(row["id"].as_str().unwrap()).await;
    assert_eq!(detail["attempt_history"][0]["jti"], claims["jti"]);
    h.stop().await;
}

#[tokio::test]
async fn retries_503_with_a_fresh_jti_each_attempt() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(2, Reply::status(503));
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "idp-logout").await;
    for n in 1..=2 {
        h.outbox.wait_recorded(n).await;
        let row = one_delivery(&h, "s1").await;
        assert_eq!(row["state"], "pending");
        assert_eq!(row["last_status"], 503);
        h.advance_to(&row);
    }
    h.outbox.wait_recorded(3).await;
    let reqs = rp.requests();
    assert_eq!(reqs.len(), 3);
    let jtis: HashSet<String> = reqs
        .iter()
        .map(|r| verified(&h, r, "rp1", TypPolicy::STRICT).jti.into_inner())
        .collect();
    assert_eq!(jtis.len(), 3, "every attempt mints a new token");
    let row = one_delivery(&h, "s1").await;
    assert_eq!(
        (row["state"].as_str(), row["attempts"].as_u64()),
        (Some("delivered"), Some(3))
    );
    h.stop().await;
}

#[tokio::test]
async fn an_rp_that_joined_with_its_own_sid_gets_it_in_every_token() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(1, Reply::status(503));
    h.client("own", rp.url("/own").as_str(), json!({})).await;
    h.client("shared", rp.url("/shared").as_str(), json!({}))
        .await;
    let body = json!({ "id": "s1", "user_id": "u1", "clients": [
        { "client_id": "own", "sid": "op-sid-own" }, { "client_id": "shared" }] });
    let (status, reply) = h
        .app
        .call(axum::http::Method::POST, "/api/v2/sessions", Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(h.end(json!({ "session_id": "s1" }), "rp-logout").await, 2);
    h.outbox.wait_recorded(2).await;
    let retried = h
        .deliveries("state=pending")
        .await
        .pop()
        .expect("the 503 leaves one row pending");
    h.advance_to(&retried);
    h.outbox.wait_recorded(3).await;
    let reqs = rp.requests();
    assert_eq!(reqs.len(), 3);
    for req in &reqs {
        let aud = peek_aud(req);
        let token = verified(&h, req, &aud, TypPolicy::STRICT);
        let expected = if aud == "own" { "op-sid-own" } else { "s1" };
        assert_eq!(token.claims["sid"], expected, "{aud}");
        assert_eq!(token.claims["sub"], "u1");
    }
    h.stop().await;
}

#[tokio::test]
async fn bad_request_is_one_attempt_and_failed_with_the_rp_error() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::invalid_request("signature check failed")).await;
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let row = one_delivery(&h, "s1").await;
    assert_eq!(row["state"], "failed");
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["last_status"], 400);
    let detail = h.detail(row["id"].as_str().unwrap()).await;
    let error = detail["attempt_history"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("invalid_request") && error.contains("signature check failed"),
        "{error}"
    );
    assert_eq!(rp.requests().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn failed_delivery_can_be_redriven() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(1, Reply::status(404));
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let row = one_delivery(&h, "s1").await;
    assert_eq!(row["state"], "failed");
    let id = row["id"].as_str().unwrap();
    let (status, _) = h
        .app
        .call(
            axum::http::Method::POST,
            &format!("/api/v2/logout-deliveries/{id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    h.outbox.wait_recorded(2).await;
    assert_eq!(one_delivery(&h, "s1").await["state"], "delivered");
    h.stop().await;
}

/// On paused time: the RP that never answers holds the attempt until the harness's attempt
/// timeout, which the paused clock reaches as soon as nothing else is left to do, and no other
/// attempt can run into it however slow the machine.
#[tokio::test(start_paused = true)]
async fn dropped_connection_and_timeout_are_retried() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.script([Reply::drop_connection(), Reply::never()]);
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let row = one_delivery(&h, "s1").await;
    assert_eq!(row["state"], "pending", "dropped connection is retried");
    assert!(row["last_status"].is_null());
    h.advance_to(&row);
    h.outbox.wait_recorded(2).await;
    let row = one_delivery(&h, "s1").await;
    assert_eq!(row["state"], "pending", "timeout is retried");
    assert_eq!(row["last_error"], "timeout");
    h.advance_to(&row);
    h.outbox.wait_recorded(3).await;
    assert_eq!(one_delivery(&h, "s1").await["state"], "delivered");
    h.stop().await;
}

#[tokio::test]
async fn too_many_requests_respects_retry_after() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(1, Reply::status(429).header("Retry-After", "120"));
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let row = one_delivery(&h, "s1").await;
    let due: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(row["next_attempt_at"].clone()).unwrap();
    assert!(
        due - h.clock.now_utc() >= chrono::Duration::seconds(119),
        "due {due}"
    );
    assert_eq!(row["last_status"], 429);
    h.stop().await;
}

#[tokio::test]
async fn redirect_is_not_followed_and_fails() {
    let h = Harness::memory().await;
    let target = RecordingRp::start(Reply::ok()).await;
    let rp = RecordingRp::start(Reply::redirect(307, target.url("/elsewhere").as_str())).await;
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let row = one_delivery(&h, "s1").await;
    assert_eq!(
        (row["state"].as_str(), row["last_status"].as_u64()),
        (Some("failed"), Some(307))
    );
    assert!(
        target.requests().is_empty(),
        "the redirect target received nothing"
    );
    h.stop().await;
}

#[tokio::test]
async fn custom_client_skips_password_changed_but_always_gets_rp_logout() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = rp.url("/bc");
    h.client(
        "custom",
        url.as_str(),
        json!({ "oidc_logout": { "backchannel_logout_urls": [url.as_str()],
        "backchannel_logout_initiators": { "mode": "custom" } } }),
    )
    .await;
    h.client("picky", url.as_str(), json!({ "oidc_logout": { "backchannel_logout_urls": [url.as_str()],
        "backchannel_logout_initiators": { "mode": "custom", "selected_initiators": ["password-changed"] } } })).await;
    h.client(
        "everything",
        url.as_str(),
        json!({ "oidc_logout": { "backchannel_logout_urls": [url.as_str()],
        "backchannel_logout_initiators": { "mode": "all" } } }),
    )
    .await;
    h.session("s1", "u1", &["custom", "picky", "everything"], json!({}))
        .await;
    h.session("s2", "u1", &["custom", "picky", "everything"], json!({}))
        .await;
    assert_eq!(
        h.end(json!({ "session_id": "s1" }), "password-changed")
            .await,
        2
    );
    assert_eq!(h.end(json!({ "session_id": "s2" }), "rp-logout").await, 3);
    h.outbox.wait_recorded(5).await;
    let s1: HashSet<String> = h
        .deliveries("session_id=s1")
        .await
        .iter()
        .map(|d| d["client_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        s1,
        HashSet::from(["picky".to_owned(), "everything".to_owned()])
    );
    assert_eq!(rp.requests().len(), 5);
    h.stop().await;
}

#[tokio::test]
async fn session_metadata_is_sent_only_to_clients_that_opted_in() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = rp.url("/bc");
    h.client(
        "in",
        url.as_str(),
        json!({ "oidc_logout": { "backchannel_logout_urls": [url.as_str()],
        "backchannel_logout_session_metadata": { "include": true } }, "logout_token_typ": "JWT" }),
    )
    .await;
    h.client("out", url.as_str(), json!({})).await;
    h.session(
        "s1",
        "u1",
        &["in", "out"],
        json!({ "tenant": "acme", "lang": "日本語" }),
    )
    .await;
    h.session("s2", "u1", &["in"], json!({})).await;
    h.end(json!({ "user_id": "u1" }), "rp-logout").await;
    h.outbox.wait_recorded(3).await;
    let jwt = TypPolicy {
        accept_jwt: true,
        allow_untyped: false,
    };
    let mut seen = 0;
    for req in rp.requests() {
        if peek_aud(&req) != "in" {
            let t = verified(&h, &req, "out", jwt);
            assert!(t.claims.get("session_metadata").is_none());
            continue;
        }
        let t = verified(&h, &req, "in", jwt);
        assert_eq!(t.header["typ"], "JWT");
        match t.claims["sid"].as_str() {
            Some("s1") => {
                assert_eq!(
                    t.claims["session_metadata"],
                    json!({ "tenant": "acme", "lang": "日本語" })
                );
                seen += 1;
            }
            _ => assert!(
                t.claims.get("session_metadata").is_none(),
                "empty metadata is omitted"
            ),
        }
    }
    assert_eq!(seen, 1);
    h.stop().await;
}

#[tokio::test]
async fn logout_tokens_carry_the_ends_txn_only_when_the_operator_asks() {
    for on in [false, true] {
        let (mut settings, sender) = crate::support::delivery::test_settings();
        settings.logout_token_txn = on;
        let stores = logoutd_core::open_store("memory://").await.unwrap();
        let h = Harness::over(stores, (settings, sender)).await;
        let rp = RecordingRp::start(Reply::ok()).await;
        h.client("rp", rp.url("/bc").as_str(), json!({})).await;
        h.session("s1", "u1", &["rp"], json!({})).await;
        h.session("s2", "u1", &["rp"], json!({})).await;
        let body = json!({ "user_id": "u1", "initiator": "rp-logout" });
        let (status, ended) = h
            .app
            .call(
                axum::http::Method::POST,
                "/api/v2/logout-events",
                Some(body),
            )
            .await;
        assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{ended}");
        h.outbox.wait_recorded(2).await;
        let requests = rp.requests();
        assert_eq!(requests.len(), 2);
        for req in requests {
            let t = verified(&h, &req, "rp", TypPolicy::default());
            let expected = on.then(|| ended["event_id"].clone());
            assert_eq!(t.claims.get("txn").cloned(), expected, "txn {on}");
        }
        h.stop().await;
    }
}

#[tokio::test]
async fn user_wide_end_delivers_one_token_per_session_and_repeats_add_nothing() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    for s in ["a", "b", "c"] {
        h.session(s, "u1", &["rp1"], json!({})).await;
    }
    h.session("other", "u2", &["rp1"], json!({})).await;
    assert_eq!(h.end(json!({ "user_id": "u1" }), "idp-logout").await, 3);
    assert_eq!(h.end(json!({ "user_id": "u1" }), "idp-logout").await, 0);
    assert_eq!(h.end(json!({ "session_id": "a" }), "idp-logout").await, 0);
    h.outbox.wait_recorded(3).await;
    let sids: HashSet<String> = rp
        .requests()
        .iter()
        .map(|r| {
            verified(&h, r, "rp1", TypPolicy::STRICT).claims["sid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(sids, HashSet::from(["a".into(), "b".into(), "c".into()]));
    assert_eq!(rp.requests().len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn deleting_a_client_cancels_its_pending_deliveries() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(1, Reply::status(503));
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let row = one_delivery(&h, "s1").await;
    assert_eq!(row["state"], "pending");
    let (status, _) = h
        .app
        .call(axum::http::Method::DELETE, "/api/v2/clients/rp1", None)
        .await;
    assert_eq!(status, axum::http::StatusCode::NO_CONTENT);
    h.advance_to(&row);
    assert_eq!(one_delivery(&h, "s1").await["state"], "cancelled");
    h.stop().await;
    assert_eq!(rp.requests().len(), 1, "nothing is sent after cancellation");
}

#[tokio::test]
async fn paused_client_holds_rows_until_resumed() {
    let h = Harness::memory().await;
    let rp = RecordingRp::start(Reply::ok()).await;
    h.client("rp1", rp.url("/bc").as_str(), json!({})).await;
    h.session("s1", "u1", &["rp1"], json!({})).await;
    let (status, _) = h
        .app
        .call(axum::http::Method::POST, "/api/v2/clients/rp1/pause", None)
        .await;
    assert_eq!(status, axum::http::StatusCode::OK);
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    let claimed = h.outbox.claim_due_probe().await;
    assert_eq!(claimed, 0, "a paused client's rows are not claimable");
    assert_eq!(one_delivery(&h, "s1").await["state"], "pending");
    h.app
        .call(axum::http::Method::POST, "/api/v2/clients/rp1/resume", None)
        .await;
    h.outbox.wait_recorded(1).await;
    assert_eq!(one_delivery(&h, "s1").await["state"], "delivered");
    assert_eq!(rp.requests().len(), 1);
    h.stop().await;
}

/// Characters that would add lines or rows, or restyle a terminal, if printed raw.
fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}'..='\u{202E}'))
}

#[tokio::test]
async fn rp_error_text_is_recorded_clean_and_without_token_parts() {
    let h = Harness::memory().await;
    // A hostile RP: control characters, and parts of the token it received, echoed back.
    let template = json!({
        "error": "invalid_request\r\nFAKE-ROW failed 0\u{1b}[31m",
        "error_description": "bad \u{1b}]0;title\u{7}token $HEADER.$PAYLOAD; claims=$PAYLOAD; sig $SIGNATURE\u{2028}end",
    })
    .to_string();
    let rp = RecordingRp::start(Reply::echoing(&template)).await;
    let opted = json!({ "oidc_logout": { "backchannel_logout_urls": [rp.url("/bc").as_str()],
        "backchannel_logout_session_metadata": { "include": true } } });
    h.client("rp1", rp.url("/bc").as_str(), opted).await;
    h.session(
        "s1",
        "u1",
        &["rp1"],
        json!({ "secret_note": "hunter2-metadata" }),
    )
    .await;
    h.end(json!({ "session_id": "s1" }), "rp-logout").await;
    h.outbox.wait_recorded(1).await;
    let token = rp.requests()[0].form_param("logout_token").unwrap();
    let row = one_delivery(&h, "s1").await;
    assert_eq!(row["state"], "failed");
    let detail = h.detail(row["id"].as_str().unwrap()).await;
    let recorded = [
        detail["attempt_history"][0]["error"].as_str().unwrap(),
        detail["last_error"].as_str().unwrap(),
    ];
    for text in recorded {
        assert!(!has_control(text), "control characters kept: {text:?}");
        assert!(text.contains("FAKE-ROW"), "the RP's words are kept: {text}");
        assert!(text.contains("[redacted]"), "{text}");
        for (i, segment) in token.split('.').enumerate() {
            assert!(!text.contains(segment), "token segment {i} leaked: {text}");
        }
        assert!(!text.contains("eyJ"), "{text}");
    }
    h.stop().await;
}

/// Rows that wait for room at a full origin are handed back unattempted; once a row's age
/// budget would end before it is due again, it fails unattempted instead, with the budget as
/// its last error, so a stuck origin's backlog is bounded by the budget.
#[tokio::test]
async fn rows_waiting_for_a_full_origin_fail_when_their_age_budget_runs_out() {
    let (mut settings, mut sender) = crate::support::delivery::test_settings();
    settings.max_per_origin = 1;
    // The admitted row's lease outlasts the clock's jump, so it is not claimed again.
    settings.lease = std::time::Duration::from_secs(300);
    let budget = std::time::Duration::from_secs(60);
    let retry = &settings.retry;
    settings.retry = logoutd_core::RetryPolicy::new(
        retry.base(),
        retry.factor(),
        retry.cap(),
        retry.max_attempts(),
        budget,
    )
    .unwrap();
    // The one attempt the origin admits never ends within the test.
    sender.timeout = std::time::Duration::from_secs(120);
    let stores = logoutd_core::open_store("memory://").await.unwrap();
    let h = Harness::over(stores, (settings, sender)).await;
    let rp = RecordingRp::start(Reply::never()).await;
    h.client("hung", rp.url("/bc").as_str(), json!({})).await;
    for n in 0..3 {
        h.session(&format!("s{n}"), "u1", &["hung"], json!({}))
            .await;
    }
    assert_eq!(h.end(json!({ "user_id": "u1" }), "idp-logout").await, 3);
    rp.wait_requests(1).await;
    // The two others found the origin full and went back, due within their budget.
    h.outbox.wait_released(2).await;
    assert_eq!(h.deliveries("state=failed").await.len(), 0);
    h.clock
        .set(h.clock.now_utc() + chrono::Duration::seconds(61));
    h.outbox.wakeup().notify_one();
    h.outbox.wait_given_up(2).await;
    let failed = h.deliveries("state=failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    for row in &failed {
        assert_eq!(row["attempts"], 0, "{row}");
        let error = row["last_error"].as_str().unwrap();
        assert!(
            error.contains("age budget of 60s exhausted while waiting for room"),
            "{error}"
        );
    }
    assert_eq!(rp.requests().len(), 1, "a failed row was attempted");
    assert_eq!(h.deliveries("state=in_flight").await.len(), 1);
    drop(rp);
    h.stop().await;
}
