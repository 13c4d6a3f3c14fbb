//! The sender against real loopback receivers (OIDC Back-Channel Logout 1.0 §2.5, design §3
//! "Delivery and retry", §6 SSRF guard). No traffic leaves 127.0.0.1.

use crate::support::recording_rp::{RecordingRp, Reply};
use chrono::{TimeZone as _, Utc};
use logoutd_core::LogoutToken;
use logoutd_core::{Decision, Outcome, RetryPolicy};
use logoutd_core::{NetPolicy, decide_retry};
use logoutd_core::{SendResult, Sender, SenderConfig};
use std::time::Duration;

/// A compact JWT shape with characters that need form encoding.
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyKzEvMj0ifQ.c2ln+/=";

fn token() -> LogoutToken {
    LogoutToken::new(TOKEN.to_owned())
}

fn sender_with(timeout: Duration, allow_insecure: bool) -> Sender {
    Sender::new(SenderConfig {
        timeout,
        max_response_bytes: 1024,
        policy: NetPolicy { allow_insecure },
        ..SenderConfig::default()
    })
    .unwrap()
}

fn insecure_sender() -> Sender {
    sender_with(Duration::from_secs(5), true)
}

fn decide(result: &SendResult) -> Decision {
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    decide_retry(&RetryPolicy::default(), &result.outcome, 1, now, now, 0.5)
}

fn assert_retry(result: &SendResult) {
    assert!(matches!(decide(result), Decision::RetryAt(_)), "{result:?}");
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains("eyJ"), "the token leaked: {text}");
    assert!(!text.contains("tenant="), "the query leaked: {text}");
}

#[tokio::test]
async fn ok_and_no_content_are_delivered() {
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.script([Reply::ok(), Reply::status(204)]);
    let sender = insecure_sender();
    for _ in 0..2 {
        let result = sender.send(&rp.url("/bc"), &token()).await;
        assert_eq!(decide(&result), Decision::Delivered, "{result:?}");
    }
}

#[tokio::test]
async fn posts_exactly_one_form_encoded_logout_token() {
    let rp = RecordingRp::start(Reply::ok()).await;
    insecure_sender().send(&rp.url("/bc"), &token()).await;
    let request = &rp.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        request.form(),
        vec![("logout_token".to_owned(), TOKEN.to_owned())]
    );
    assert!(request.body.starts_with("logout_token=eyJ"));
    assert!(request.body.ends_with("c2ln%2B%2F%3D"), "{}", request.body);
    assert!(
        request
            .user_agent
            .as_deref()
            .unwrap()
            .starts_with("logoutd/")
    );
}

#[tokio::test]
async fn registered_query_string_is_kept() {
    let rp = RecordingRp::start(Reply::ok()).await;
    insecure_sender()
        .send(&rp.url("/rp/logout?tenant=a&x=1%202"), &token())
        .await;
    let request = &rp.requests()[0];
    assert_eq!(request.path, "/rp/logout");
    assert_eq!(request.query.as_deref(), Some("tenant=a&x=1%202"));
}

#[tokio::test]
async fn bad_request_gives_up_with_the_rp_error_text() {
    let rp = RecordingRp::start(Reply::invalid_request("signature did not verify")).await;
    let result = insecure_sender().send(&rp.url("/bc"), &token()).await;
    let Decision::GiveUp(reason) = decide(&result) else {
        panic!("expected give-up: {result:?}");
    };
    let reason = reason.to_string();
    assert!(reason.contains("error=invalid_request"), "{reason}");
    assert!(reason.contains("signature did not verify"), "{reason}");
}

#[tokio::test]
async fn echoed_token_is_scrubbed_from_the_rp_error() {
    let rp = RecordingRp::start(Reply::invalid_request(&format!("bad token {TOKEN}"))).await;
    let result = insecure_sender().send(&rp.url("/bc"), &token()).await;
    let Decision::GiveUp(reason) = decide(&result) else {
        panic!("expected give-up: {result:?}");
    };
    assert_no_secret(&reason.to_string());
    assert!(!format!("{:?}", result.outcome).contains(TOKEN));
}

#[tokio::test]
async fn service_unavailable_is_retried() {
    let rp = RecordingRp::start(Reply::status(503)).await;
    let result = insecure_sender().send(&rp.url("/bc"), &token()).await;
    assert_retry(&result);
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let rp = RecordingRp::start(Reply::status(429).header("retry-after", "120")).await;
    let result = insecure_sender().send(&rp.url("/bc"), &token()).await;
    assert!(matches!(
        result.outcome,
        Outcome::Status { code: 429, retry_after: Some(d), .. } if d == Duration::from_secs(120)
    ));
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let decision = decide_retry(&RetryPolicy::default(), &result.outcome, 1, now, now, 0.5);
    assert_eq!(
        decision,
        Decision::RetryAt(now + chrono::Duration::seconds(120))
    );
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let target = RecordingRp::start(Reply::ok()).await;
    let rp = RecordingRp::start(Reply::redirect(307, target.url("/elsewhere").as_str())).await;
    let result = insecure_sender().send(&rp.url("/bc"), &token()).await;
    assert!(matches!(result.outcome, Outcome::Status { code: 307, .. }));
    assert!(matches!(decide(&result), Decision::GiveUp(r) if r.to_string().contains("redirect")));
    assert!(target.requests().is_empty());
    assert_eq!(target.connections(), 0);
}

#[tokio::test]
async fn dropped_connection_is_retried() {
    let rp = RecordingRp::start(Reply::drop_connection()).await;
    let result = insecure_sender()
        .send(&rp.url("/bc?tenant=a"), &token())
        .await;
    assert!(matches!(&result.outcome, Outcome::Reset(_)), "{result:?}");
    assert_no_secret(&format!("{:?}", result.outcome));
    assert_retry(&result);
}

#[tokio::test]
async fn timeout_is_retried() {
    let rp = RecordingRp::start(Reply::never()).await;
    let sender = sender_with(Duration::from_millis(200), true);
    let result = sender.send(&rp.url("/bc"), &token()).await;
    assert_eq!(result.outcome, Outcome::Timeout);
    assert!(result.latency >= Duration::from_millis(200));
    assert!(result.latency < Duration::from_secs(3), "{result:?}");
    assert_retry(&result);
}

#[tokio::test]
async fn connection_refused_is_retried_without_leaking_the_query() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/bc?tenant=a")
        .parse()
        .unwrap();
    let result = insecure_sender().send(&url, &token()).await;
    assert!(matches!(&result.outcome, Outcome::Connect(_)), "{result:?}");
    assert_no_secret(&format!("{:?}", result.outcome));
    assert_retry(&result);
}

#[tokio::test]
async fn oversized_response_body_is_not_read_whole() {
    let rp = RecordingRp::start(Reply::status(400).endless_body()).await;
    let result = insecure_sender().send(&rp.url("/bc"), &token()).await;
    // An endless body read whole would run into the 5 s timeout.
    assert!(result.latency < Duration::from_secs(2), "{result:?}");
    assert!(matches!(
        result.outcome,
        Outcome::Status {
            code: 400,
            error: None,
            ..
        }
    ));
}

#[tokio::test]
async fn strict_policy_refuses_a_loopback_ip_literal() {
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = format!("https://{}/bc", rp.addr()).parse().unwrap();
    let result = sender_with(Duration::from_secs(5), false)
        .send(&url, &token())
        .await;
    assert!(matches!(&result.outcome, Outcome::Refused(m) if m.contains("127.0.0.1")));
    assert!(matches!(decide(&result), Decision::GiveUp(_)));
    assert_eq!(rp.connections(), 0);
}

#[tokio::test]
async fn strict_policy_refuses_a_name_resolving_to_loopback() {
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = format!("https://localhost:{}/bc", rp.addr().port())
        .parse()
        .unwrap();
    let result = sender_with(Duration::from_secs(5), false)
        .send(&url, &token())
        .await;
    assert!(
        matches!(&result.outcome, Outcome::Refused(m) if m.contains("refused non-public address")),
        "{result:?}"
    );
    assert!(matches!(decide(&result), Decision::GiveUp(_)));
    assert_eq!(rp.connections(), 0);
}

#[tokio::test]
async fn insecure_policy_reaches_localhost_by_name() {
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = format!("http://localhost:{}/bc", rp.addr().port())
        .parse()
        .unwrap();
    let result = insecure_sender().send(&url, &token()).await;
    assert_eq!(decide(&result), Decision::Delivered, "{result:?}");
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let rp = RecordingRp::start(Reply::ok()).await;
    rp.fail_first(2, Reply::status(503));
    let sender = insecure_sender();
    for _ in 0..5 {
        sender.clone().send(&rp.url("/bc"), &token()).await;
    }
    assert_eq!(rp.requests().len(), 5);
    assert_eq!(rp.connections(), 1);
}

#[tokio::test]
async fn tls_failure_is_retried() {
    // A plain-HTTP receiver answering a TLS handshake.
    let rp = RecordingRp::start(Reply::ok()).await;
    let url = format!("https://127.0.0.1:{}/bc", rp.addr().port())
        .parse()
        .unwrap();
    let result = insecure_sender().send(&url, &token()).await;
    assert!(matches!(&result.outcome, Outcome::Tls(_)), "{result:?}");
    assert_retry(&result);
    assert!(rp.requests().is_empty());
}

#[tokio::test]
async fn strict_policy_refuses_6to4_teredo_site_local_and_local_nat64_before_connecting() {
    let sender = sender_with(Duration::from_secs(5), false);
    for host in [
        "[2002:7f00:1::]",
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
        "[fec0::1]",
        "[64:ff9b:1::7f00:1]",
        "[64:ff9b::a9fe:a9fe]",
        "198.18.0.1",
    ] {
        let url = format!("https://{host}/bc").parse().unwrap();
        let result = sender.send(&url, &token()).await;
        assert!(
            matches!(&result.outcome, Outcome::Refused(m) if m.contains("non-public")),
            "{host}: {result:?}"
        );
        assert!(matches!(decide(&result), Decision::GiveUp(_)), "{host}");
    }
}
