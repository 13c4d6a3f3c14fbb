//! The mock RP (design §3 "Mock RP"; Back-Channel Logout 1.0 §2.5-§2.8) in process on
//! 127.0.0.1:0, with its JWKS served by a tiny in-test server; and the `mock-rp` command.

use crate::support::*;
use axum::routing::get;
use chrono::Utc;
use logoutd_core::{ClientId, Issuer, SessionId, UserId};
use logoutd_core::{Faults, MockRp, MockRpConfig, MockRpHandle, Receipt};
use logoutd_core::{Jwks, KeySet};
use logoutd_core::{JwksSource, VerifyOptions};
use logoutd_core::{LogoutTokenBuilder, Subject};
use logoutd_core::{SigningAlg, TokenTyp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(10);

/// Serves whatever JWKS it is told to at `/jwks`, counting fetches.
struct JwksServer {
    addr: SocketAddr,
    jwks: Arc<Mutex<Jwks>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(jwks: Jwks) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let jwks = Arc::new(Mutex::new(jwks));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (jwks.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/jwks",
            get(move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::Json(served.lock().unwrap().clone())
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            jwks,
            hits,
            task,
        }
    }

    fn uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn serve(&self, jwks: Jwks) {
        *self.jwks.lock().unwrap() = jwks;
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn keys() -> KeySet {
    fixture_keys()
}

/// A token for `sid` signed with `alg` and `typ`.
fn token_for(sid: &str, alg: SigningAlg, typ: TokenTyp) -> String {
    let claims = LogoutTokenBuilder::new(
        &Issuer::new(ISSUER),
        &ClientId::new(CLIENT),
        Subject::Both(UserId::new("user-1"), SessionId::new(sid)),
        Utc::now(),
    )
    .build();
    keys().sign(alg, typ, &claims).unwrap()
}

fn token() -> String {
    token_for("sess-1", SigningAlg::ES256, TokenTyp::LogoutJwt)
}

/// A mock RP over the fixture JWKS, with `change` applied to its configuration.
async fn start_with(change: impl FnOnce(&mut MockRpConfig)) -> (MockRpHandle, JwksServer) {
    let server = JwksServer::start(keys().jwks(Utc::now())).await;
    let jwks = JwksSource::from_uri(&server.uri()).await.unwrap();
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT));
    let mut config = MockRpConfig::new(opts, jwks);
    change(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (MockRp::start(listener, config).await.unwrap(), server)
}

async fn start() -> (MockRpHandle, JwksServer) {
    start_with(|_| {}).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn post_form(rp: &MockRpHandle, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client().post(rp.url(path)).form(form).send().await.unwrap()
}

async fn post_token(rp: &MockRpHandle, token: &str) -> reqwest::Response {
    post_form(rp, "/backchannel", &[("logout_token", token)]).await
}

async fn post_raw(rp: &MockRpHandle, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(rp.url("/backchannel"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Asserts a 400 `invalid_request` whose description mentions `needle`.
async fn assert_invalid_request(response: reqwest::Response, needle: &str) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(needle), "{description}");
}

fn last(rp: &MockRpHandle) -> Receipt {
    rp.receipts().pop().expect("a receipt")
}

#[tokio::test]
async fn valid_token_gets_200_no_store_and_a_valid_receipt() {
    let (rp, _jwks) = start().await;
    let response = post_token(&rp, &token()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.bytes().await.unwrap().is_empty());
    let receipt = last(&rp);
    assert!(receipt.valid, "{receipt:?}");
    assert_eq!(receipt.status, Some(200));
    assert_eq!(receipt.path, "/backchannel");
    assert!(receipt.errors.is_empty());
    assert_eq!(receipt.sid.as_deref(), Some("sess-1"));
    assert_eq!(receipt.sub.as_deref(), Some("user-1"));
    assert_eq!(receipt.claims.as_ref().unwrap()["aud"], CLIENT);
    assert_eq!((receipt.attempt, receipt.replay), (Some(1), false));
    assert_eq!(receipt.fault, None);
}

#[tokio::test]
async fn strict_typing_refuses_typ_jwt_unless_accept_typ() {
    let jwt = token_for("sess-1", SigningAlg::RS256, TokenTyp::Jwt);
    let (strict, _jwks) = start().await;
    assert_invalid_request(post_token(&strict, &jwt).await, "typ").await;
    assert!(!last(&strict).valid);
    let (lenient, _jwks) = start_with(|c| c.verify.accept_typ.accept_jwt = true).await;
    assert_eq!(post_token(&lenient, &jwt).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_or_duplicate_logout_token_is_invalid_request() {
    let (rp, _jwks) = start().await;
    let missing = post_form(&rp, "/bc", &[("token", "x")]).await;
    assert_invalid_request(missing, "logout_token is missing").await;
    let token = token();
    let twice = [
        ("logout_token", token.as_str()),
        ("logout_token", token.as_str()),
    ];
    assert_invalid_request(post_form(&rp, "/bc", &twice).await, "2 times").await;
    assert!(
        rp.receipts()
            .iter()
            .all(|r| !r.valid && r.status == Some(400))
    );
}

#[tokio::test]
async fn extra_form_parameters_are_noted_not_refused() {
    let (rp, _jwks) = start().await;
    let token = token();
    let form = [("logout_token", token.as_str()), ("state", "abc")];
    assert_eq!(post_form(&rp, "/bc", &form).await.status(), StatusCode::OK);
    let receipt = last(&rp);
    assert!(receipt.valid);
    assert!(
        receipt.notes[0].contains("\"state\""),
        "{:?}",
        receipt.notes
    );
}

#[tokio::test]
async fn wrong_content_type_is_400() {
    let (rp, _jwks) = start().await;
    let body = format!("logout_token={}", token()).into_bytes();
    let response = post_raw(&rp, "application/json", body).await;
    assert_invalid_request(response, "Content-Type").await;
    let with_charset = format!("logout_token={}", token()).into_bytes();
    let ok = post_raw(
        &rp,
        "application/x-www-form-urlencoded; charset=UTF-8",
        with_charset,
    );
    assert_eq!(ok.await.status(), StatusCode::OK);
}

#[tokio::test]
async fn get_is_405_and_receipts_only_answer_get() {
    let (rp, _jwks) = start().await;
    let get = client().get(rp.url("/backchannel")).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()["allow"], "POST");
    let post = post_token(&rp, &token()).await;
    assert_eq!(post.status(), StatusCode::OK);
    let to_receipts = post_form(&rp, "/receipts", &[("logout_token", "x")]).await;
    assert_eq!(to_receipts.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        rp.receipts().len(),
        1,
        "only the POST to /backchannel is recorded"
    );
}

#[tokio::test]
async fn receipts_endpoint_serves_json_lines_or_an_array() {
    let (rp, _jwks) = start().await;
    post_token(&rp, &token()).await;
    post_form(&rp, "/other", &[]).await;
    let lines = client().get(rp.url("/receipts")).send().await.unwrap();
    assert_eq!(lines.headers()["content-type"], "application/x-ndjson");
    let text = lines.text().await.unwrap();
    let parsed: Vec<Receipt> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, rp.receipts());
    let array = client().get(rp.url("/receipts?format=json")).send().await;
    let array: Vec<Receipt> = array.unwrap().json().await.unwrap();
    assert_eq!(array, parsed);
    assert_eq!(array[1].path, "/other");
}

/// Lets the runtime run until every task, the mock's included, waits: on paused time the
/// clock moves only then, so a request the mock answers at once is answered by the end.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// On paused time, so that "not answered yet" is an observation rather than a guess: the
/// request is still waiting while the receipts are fewer than `min`, and is answered as soon
/// as the last one needed arrives, long before its `wait_ms`.
#[tokio::test(start_paused = true)]
async fn receipts_with_min_wait_for_the_next_request() {
    let (rp, _jwks) = start().await;
    let url = rp.url("/receipts?format=json&min=2&wait_ms=20000");
    let waiting = tokio::spawn(async move { client().get(url).send().await });
    settle().await;
    assert!(!waiting.is_finished(), "answered with no receipt yet");
    assert_eq!(post_token(&rp, &token()).await.status(), StatusCode::OK);
    settle().await;
    assert!(!waiting.is_finished(), "answered with 1 receipt of min 2");
    let before = tokio::time::Instant::now();
    assert_eq!(post_token(&rp, &token()).await.status(), StatusCode::OK);
    let answered = waiting.await.unwrap().unwrap();
    assert!(
        before.elapsed() < Duration::from_secs(1),
        "answered only when the wait ran out"
    );
    let receipts: Vec<Receipt> = answered.json().await.unwrap();
    assert_eq!(receipts.len(), 2, "answered once the receipts existed");
    let short = client()
        .get(rp.url("/receipts?format=json&min=5&wait_ms=1"))
        .send()
        .await
        .unwrap();
    let receipts: Vec<Receipt> = short.json().await.unwrap();
    assert_eq!(
        receipts.len(),
        2,
        "a wait that runs out answers what there is"
    );
}

#[tokio::test]
async fn replay_is_accepted_and_marked() {
    let (rp, _jwks) = start().await;
    let token = token();
    assert_eq!(post_token(&rp, &token).await.status(), StatusCode::OK);
    assert_eq!(post_token(&rp, &token).await.status(), StatusCode::OK);
    let receipts = rp.receipts();
    assert!(!receipts[0].replay);
    assert!(receipts[1].replay && receipts[1].valid);
}

#[tokio::test]
async fn replay_as_error_answers_400() {
    let (rp, _jwks) = start_with(|c| c.replay_as_error = true).await;
    let token = token();
    assert_eq!(post_token(&rp, &token).await.status(), StatusCode::OK);
    assert_invalid_request(post_token(&rp, &token).await, "replay").await;
    let receipt = last(&rp);
    assert!(receipt.replay && !receipt.valid);
}

#[tokio::test]
async fn unknown_kid_triggers_one_jwks_refetch_then_succeeds() {
    let rs256_only = KeySet::from_keys(vec![fixture_key(SigningAlg::RS256)]);
    let server = JwksServer::start(rs256_only.jwks(Utc::now())).await;
    let source = JwksSource::from_uri(&server.uri()).await.unwrap();
    let source = source.with_refetch_interval(Duration::ZERO);
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT));
    let config = MockRpConfig::new(opts, source);
    let jwks = config.jwks.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp = MockRp::start(listener, config).await.unwrap();
    server.serve(keys().jwks(Utc::now()));
    let rotated = token_for("sess-1", SigningAlg::EdDSA, TokenTyp::LogoutJwt);
    assert_eq!(post_token(&rp, &rotated).await.status(), StatusCode::OK);
    assert_eq!((jwks.fetches(), server.hits.load(Ordering::SeqCst)), (2, 2));
    let known = token_for("sess-2", SigningAlg::RS256, TokenTyp::LogoutJwt);
    assert_eq!(post_token(&rp, &known).await.status(), StatusCode::OK);
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        2,
        "a known kid fetches nothing"
    );
}

#[tokio::test]
async fn fail_first_answers_status_with_retry_after_then_succeeds() {
    let faults = Faults {
        fail_first: 2,
        fail_status: reqwest::StatusCode::TOO_MANY_REQUESTS,
        retry_after: Some(7),
        ..Faults::default()
    };
    let (rp, _jwks) = start_with(|c| c.faults = faults).await;
    for _ in 0..2 {
        let response = post_token(&rp, &token()).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
    }
    let response = post_token(&rp, &token()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("retry-after").is_none());
    let receipts = rp.receipts();
    let faults: Vec<_> = receipts.iter().map(|r| r.fault.as_deref()).collect();
    assert_eq!(faults, [Some("fail_status"), Some("fail_status"), None]);
    assert_eq!(receipts[0].status, Some(429));
    assert!(
        receipts[0].errors.is_empty(),
        "the faulted token was still validated"
    );
    assert!(
        receipts.iter().all(|r| r.valid),
        "a fault does not change validity"
    );
}

#[tokio::test]
async fn drop_first_closes_the_connection_without_a_reply() {
    let faults = Faults {
        drop_first: 1,
        ..Faults::default()
    };
    let (rp, _jwks) = start_with(|c| c.faults = faults).await;
    let body = format!("logout_token={}", token());
    let request = format!(
        "POST /bc HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         content-length: {}\r\n\r\n{body}",
        rp.addr(),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(rp.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.unwrap().is_ok() || answer.is_empty());
    assert!(
        answer.is_empty(),
        "got a reply: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let receipt = last(&rp);
    assert_eq!(
        (receipt.status, receipt.fault.as_deref()),
        (None, Some("drop"))
    );
    assert_eq!(post_token(&rp, &token()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn drop_first_is_a_connection_error_for_an_http_client() {
    let faults = Faults {
        drop_first: 1,
        ..Faults::default()
    };
    let (rp, _jwks) = start_with(|c| c.faults = faults).await;
    let form = [("logout_token", token())];
    let result = client().post(rp.url("/bc")).form(&form).send().await;
    let err = result.expect_err("a dropped connection is not a response");
    assert!(err.status().is_none(), "{err}");
}

#[tokio::test]
async fn redirect_to_answers_307() {
    let target = url::Url::parse("http://127.0.0.1:9/elsewhere").unwrap();
    let faults = Faults {
        redirect_to: Some(target),
        ..Faults::default()
    };
    let (rp, _jwks) = start_with(|c| c.faults = faults).await;
    let response = post_token(&rp, &token()).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        "http://127.0.0.1:9/elsewhere"
    );
    assert_eq!(last(&rp).fault.as_deref(), Some("redirect"));
}

#[tokio::test]
async fn delay_ms_delays_every_reply() {
    let faults = Faults {
        delay: Some(Duration::from_millis(100)),
        ..Faults::default()
    };
    let (rp, _jwks) = start_with(|c| c.faults = faults).await;
    let started = std::time::Instant::now();
    assert_eq!(post_token(&rp, &token()).await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(100));
    let receipt = last(&rp);
    assert!(receipt.valid);
    assert_eq!(receipt.fault.as_deref(), Some("delay"));
}

#[tokio::test]
async fn receipts_file_has_one_json_line_per_request_and_no_raw_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.jsonl");
    let file = path.clone();
    let (rp, _jwks) = start_with(move |c| c.receipts_file = Some(file)).await;
    let tokens = [token(), token_for("s", SigningAlg::RS256, TokenTyp::Jwt)];
    for token in &tokens {
        post_token(&rp, token).await;
    }
    post_raw(&rp, "text/plain", b"garbage".to_vec()).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for field in [
        "time", "path", "status", "valid", "errors", "claims", "jti", "attempt",
    ] {
        assert!(
            lines[0].get(field).is_some(),
            "{field} missing: {}",
            lines[0]
        );
    }
    assert_eq!(lines[0]["valid"], json!(true));
    assert_eq!(lines[1]["valid"], json!(false));
    assert!(chrono::DateTime::parse_from_rfc3339(lines[0]["time"].as_str().unwrap()).is_ok());
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!text.contains(token.as_str()) && !text.contains(signature));
    }
}

#[tokio::test]
async fn attempt_counts_per_sid() {
    let (rp, _jwks) = start().await;
    for sid in ["a", "b", "a", "a"] {
        post_token(&rp, &token_for(sid, SigningAlg::ES256, TokenTyp::LogoutJwt)).await;
    }
    let attempts: Vec<_> = rp.receipts().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [Some(1), Some(1), Some(2), Some(3)]);
}

#[tokio::test]
async fn session_metadata_beyond_the_limits_is_refused() {
    let (rp, _jwks) = start().await;
    let now = Utc::now().timestamp();
    let meta: serde_json::Map<_, _> = (0..26).map(|i| (format!("k{i}"), json!("v"))).collect();
    let claims = json!({
        "iss": ISSUER, "aud": CLIENT, "iat": now, "exp": now + 60, "jti": "meta-1",
        "events": { logoutd_core::BACKCHANNEL_LOGOUT_EVENT: {} }, "sid": "s",
        "session_metadata": meta,
    });
    let key = fixture_key(SigningAlg::ES256);
    let token = sign_raw(&key, &header_for(&key, "logout+jwt"), &claims.to_string());
    assert_invalid_request(post_token(&rp, &token).await, "26").await;
}

#[tokio::test]
async fn hostile_bodies_get_4xx_and_never_panic() {
    let (rp, _jwks) = start().await;
    let form = "application/x-www-form-urlencoded";
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0x00, 0xfe, b'=', 0x80],
        vec![b'a'; 1024 * 1024],
        b"logout_token=%ff%fe%fd".to_vec(),
        b"logout_token=%zz".to_vec(),
        b"logout_token=a.b.c".to_vec(),
        b"logout_token=..".to_vec(),
        b"logout_token=e30.e30.".to_vec(),
        b"=&=&&logout_token".to_vec(),
    ];
    for body in bodies {
        let size = body.len();
        let response = post_raw(&rp, form, body).await;
        assert!(
            response.status().is_client_error(),
            "{size}: {}",
            response.status()
        );
    }
    let statuses: Vec<_> = rp.receipts().iter().map(|r| r.status).collect();
    assert_eq!(statuses[1], Some(413));
    assert!(rp.receipts().iter().all(|r| !r.valid));
    assert_eq!(
        post_token(&rp, &token()).await.status(),
        StatusCode::OK,
        "still serving"
    );
}

#[tokio::test]
async fn cli_mock_rp_prints_its_address_and_writes_receipts() {
    let server = JwksServer::start(keys().jwks(Utc::now())).await;
    let dir = tempfile::tempdir().unwrap();
    let receipts = dir.path().join("receipts.jsonl");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args(["mock-rp", "--listen", "127.0.0.1:0", "--issuer", ISSUER])
        .args(["--jwks-uri", &server.uri(), "--client-id", CLIENT])
        .arg("--receipts")
        .arg(&receipts)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line()).await;
    let line = line.unwrap().unwrap().expect("an address line");
    let base = line.strip_prefix("listening on ").expect(&line).to_owned();
    let token = token();
    let response = client()
        .post(format!("{base}/backchannel"))
        .form(&[("logout_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = std::fs::read_to_string(&receipts).unwrap();
    let receipt: Receipt = serde_json::from_str(text.trim_end()).unwrap();
    assert!(receipt.valid && !text.contains(&token));
    child.start_kill().unwrap();
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
}

/// An unsigned token of about `size` bytes whose claims are junk, as anyone reaching the
/// port can send.
fn junk_token(size: usize) -> String {
    let claims = json!({ "iss": "x", "sid": "s".repeat(300), "junk": "x".repeat(size * 3 / 4) });
    format!(
        "{}.{}.AAAA",
        b64(br#"{"alg":"ES256","typ":"logout+jwt","kid":"nope"}"#),
        b64(claims.to_string().as_bytes())
    )
}

#[tokio::test]
async fn junk_tokens_leave_small_receipts() {
    let (rp, _jwks) = start().await;
    let token = junk_token(61 * 1024 - 64);
    assert!(token.len() < 62 * 1024);
    for _ in 0..20 {
        assert_invalid_request(post_token(&rp, &token).await, "kid").await;
    }
    let receipts = rp.receipts();
    assert_eq!(receipts.len(), 20);
    for receipt in &receipts {
        let line = serde_json::to_value(receipt).unwrap();
        let size = line.to_string().len();
        assert!(size <= 6 * 1024, "a {size}-byte receipt for a junk token");
        assert_eq!(line["claims_truncated"], json!(true), "{line}");
        assert_eq!(
            line["claims"]["iss"], "x",
            "the standard claims that fit are kept"
        );
        assert!(line["claims"].get("junk").is_none());
        assert_eq!(
            receipt.sid.as_ref().unwrap().chars().count(),
            256,
            "255 and an ellipsis"
        );
    }
}

#[tokio::test]
async fn receipts_are_bounded_in_memory_bytes_and_the_file_is_rotated() {
    use logoutd_core::{LogLimits, rotated_path};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.jsonl");
    let file = path.clone();
    let (rp, _jwks) = start_with(move |c| {
        c.receipts_file = Some(file);
        c.receipt_limits = LogLimits {
            memory_receipts: 1_000,
            memory_bytes: 8 * 1024,
            file_max_bytes: 16 * 1024,
        };
    })
    .await;
    let token = junk_token(40 * 1024);
    for n in 0..40 {
        post_form(&rp, &format!("/bc/{n}"), &[("logout_token", &token)]).await;
    }
    let kept = rp.receipts();
    let bytes: usize = kept
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len() + 1)
        .sum();
    assert!(bytes <= 8 * 1024, "{bytes} bytes kept");
    assert!(kept.len() > 1 && kept.len() < 40, "{}", kept.len());
    let paths: Vec<String> = kept.iter().map(|r| r.path.clone()).collect();
    let newest: Vec<String> = (40 - kept.len()..40).map(|n| format!("/bc/{n}")).collect();
    assert_eq!(paths, newest, "the newest are kept, in order");
    let served = client().get(rp.url("/receipts?format=json")).send().await;
    let served: Vec<Receipt> = served.unwrap().json().await.unwrap();
    assert_eq!(served, kept);

    let current = std::fs::read_to_string(&path).unwrap();
    let rotated = std::fs::read_to_string(rotated_path(&path)).unwrap();
    assert!(current.len() <= 16 * 1024 && rotated.len() <= 16 * 1024);
    let lines: Vec<Receipt> = rotated
        .lines()
        .chain(current.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.last().unwrap().path, "/bc/39");
    let first = 40 - lines.len();
    for (i, receipt) in lines.iter().enumerate() {
        assert_eq!(
            receipt.path,
            format!("/bc/{}", first + i),
            "no line lost across the rotation"
        );
    }
}

#[tokio::test]
async fn a_kid_shared_by_two_keys_verifies_with_the_right_one() {
    let real = fixture_key(SigningAlg::ES256);
    let mut decoy = logoutd_core::SigningKey::generate(SigningAlg::ES256, None)
        .unwrap()
        .jwk()
        .clone();
    decoy.kid = Some(real.kid().to_string());
    let jwks = Jwks {
        keys: vec![decoy, real.jwk().clone()],
    };
    let server = JwksServer::start(jwks).await;
    let source = JwksSource::from_uri(&server.uri()).await.unwrap();
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp = MockRp::start(listener, MockRpConfig::new(opts, source))
        .await
        .unwrap();
    let token = token_for("sess-1", SigningAlg::ES256, TokenTyp::LogoutJwt);
    let response = post_token(&rp, &token).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", last(&rp).errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_refetch_never_delays_tokens_signed_with_known_keys() {
    // The JWKS server answers its first fetch, then hangs on every later one.
    let served = KeySet::from_keys(vec![fixture_key(SigningAlg::ES256)]).jwks(Utc::now());
    let hits = Arc::new(AtomicUsize::new(0));
    let hung = Arc::new(tokio::sync::Notify::new());
    let (counted, signal) = (hits.clone(), hung.clone());
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            let served = served.clone();
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let signal = signal.clone();
            async move {
                if n > 1 {
                    signal.notify_one();
                    std::future::pending::<()>().await;
                }
                axum::Json(served)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/jwks", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let source = JwksSource::from_uri(&uri).await.unwrap();
    let source = source.with_refetch_interval(Duration::ZERO);
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp = MockRp::start(listener, MockRpConfig::new(opts, source))
        .await
        .unwrap();

    // Six tokens with an unknown kid (EdDSA is not served) start one refetch, which hangs.
    let unknown: Vec<_> = (0..6)
        .map(|i| {
            let url = rp.url("/bc");
            let token = token_for(
                &format!("sess-u{i}"),
                SigningAlg::EdDSA,
                TokenTyp::LogoutJwt,
            );
            tokio::spawn(async move {
                client()
                    .post(url)
                    .form(&[("logout_token", token)])
                    .send()
                    .await
            })
        })
        .collect();
    tokio::time::timeout(WAIT, hung.notified())
        .await
        .expect("an unknown kid triggers a refetch");

    // A token with a known key is answered while that fetch still hangs.
    let known = token_for("sess-k", SigningAlg::ES256, TokenTyp::LogoutJwt);
    let answered = tokio::time::timeout(Duration::from_secs(3), post_token(&rp, &known)).await;
    let response = answered.expect("a token with a known key waited for the hanging JWKS fetch");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        unknown.iter().all(|task| !task.is_finished()),
        "the unknown-kid requests wait for the one fetch in flight"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "one refetch in flight, not one per unknown-kid request"
    );
    for task in unknown {
        task.abort();
    }
    server.abort();
}
