//! The mock SSF receiver against a tiny fake transmitter (metadata, JWKS, stream and poll
//! endpoints on 127.0.0.1:0), with SETs minted by `ssf::mint` and pushed by the sender.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::alg::TokenTyp;
use crate::keys::{Jwks, SigningKey};
use crate::net_policy::NetPolicy;
use crate::retry::{Outcome, RpError};
use crate::sender::{Sender, SenderConfig};
use crate::ssf::{NewSet, SESSION_REVOKED, SetKind, SetState, StoredSet, mint, set_claims};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;
use std::sync::Mutex;
use url::Url;

const TOKEN: &str = "receiver-token";
const AUD: &str = "rp-crm";
const STREAM_ID: &str = "sst_1";

/// What the fake transmitter was asked.
#[derive(Default)]
struct Seen {
    created: Option<Value>,
    patched: Option<Value>,
    polls: Vec<Value>,
    auth_ok: bool,
}

struct Fake {
    issuer: String,
    jwks: Value,
    conflict: bool,
    /// The answers to the first polls, in order; later polls are held open.
    poll_answers: Mutex<Vec<Value>>,
    seen: Mutex<Seen>,
    polled: tokio::sync::Notify,
}

type Shared = Arc<Fake>;

fn stream_object(fake: &Fake, delivery: Value) -> Value {
    json!({"stream_id": STREAM_ID, "iss": fake.issuer, "aud": AUD,
           "events_supported": [SESSION_REVOKED], "events_delivered": [SESSION_REVOKED],
           "delivery": delivery})
}

fn poll_delivery(fake: &Fake) -> Value {
    json!({"method": "urn:ietf:rfc:8936",
           "endpoint_url": format!("{}/ssf/poll/{STREAM_ID}", fake.issuer)})
}

fn authorized(fake: &Fake, headers: &HeaderMap) {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    fake.seen.lock().unwrap().auth_ok = ok;
}

async fn create(
    State(fake): State<Shared>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    authorized(&fake, &headers);
    fake.seen.lock().unwrap().created = Some(body.0.clone());
    if fake.conflict {
        return (axum::http::StatusCode::CONFLICT, axum::Json(json!({})));
    }
    let delivery = body
        .0
        .get("delivery")
        .cloned()
        .unwrap_or_else(|| poll_delivery(&fake));
    let stream = stream_object(&fake, delivery);
    (axum::http::StatusCode::CREATED, axum::Json(stream))
}

async fn read(State(fake): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!([stream_object(&fake, poll_delivery(&fake))]))
}

async fn patch(State(fake): State<Shared>, body: axum::Json<Value>) -> axum::Json<Value> {
    fake.seen.lock().unwrap().patched = Some(body.0.clone());
    axum::Json(stream_object(&fake, body.0["delivery"].clone()))
}

async fn poll(State(fake): State<Shared>, body: axum::Json<Value>) -> axum::Json<Value> {
    fake.seen.lock().unwrap().polls.push(body.0);
    fake.polled.notify_one();
    let next = {
        let mut answers = fake.poll_answers.lock().unwrap();
        (!answers.is_empty()).then(|| answers.remove(0))
    };
    match next {
        Some(answer) => axum::Json(answer),
        // A long poll with nothing to hand out: held until the receiver stops.
        None => std::future::pending().await,
    }
}

struct Transmitter {
    fake: Shared,
    key: SigningKey,
}

async fn transmitter(conflict: bool) -> Transmitter {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/t1", listener.local_addr().unwrap());
    let key = SigningKey::generate(crate::alg::SigningAlg::RS256, None).unwrap();
    let jwks = serde_json::to_value(Jwks {
        keys: vec![key.jwk().clone()],
    })
    .unwrap();
    let fake = Arc::new(Fake {
        issuer: issuer.clone(),
        jwks,
        conflict,
        poll_answers: Mutex::new(Vec::new()),
        seen: Mutex::new(Seen::default()),
        polled: tokio::sync::Notify::new(),
    });
    let metadata = json!({"spec_version": "1_0", "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
        "configuration_endpoint": format!("{issuer}/ssf/stream")});
    let jwks = fake.jwks.clone();
    let app = Router::new()
        .route(
            "/.well-known/ssf-configuration/t1",
            get(move || async move { axum::Json(metadata) }),
        )
        .route("/t1/jwks", get(move || async move { axum::Json(jwks) }))
        .route("/t1/ssf/stream", post(create).get(read).patch(patch))
        .route("/t1/ssf/poll/{id}", post(poll))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Transmitter { fake, key }
}

async fn receiver(tx: &Transmitter, tune: impl FnOnce(&mut MockSsfConfig)) -> MockSsfHandle {
    let mut config = MockSsfConfig::new(tx.fake.issuer.clone(), TOKEN);
    tune(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    MockSsf::start(listener, config).await.unwrap()
}

fn row() -> StoredSet {
    let now = crate::store::millis(Utc::now());
    let set = NewSet {
        id: crate::ids::SetId::generate_at(now).into_inner(),
        stream_id: STREAM_ID.into(),
        receiver_id: "ssr_1".into(),
        kind: SetKind::SessionRevoked,
        jti: crate::ids::random_token(),
        txn: Some("evt_1".into()),
        payload: json!({"sub": "u1", "sid": "s1", "initiator": "rp-logout",
            "initiating_entity": "user", "event_timestamp": now.timestamp()}),
        created_at: now,
    };
    StoredSet {
        budget_started_at: now,
        updated_at: now,
        set,
        state: SetState::Pending,
        attempts: 0,
        next_attempt_at: None,
        last_status: None,
        last_error: None,
        delivered_at: None,
    }
}

fn sender() -> Sender {
    Sender::new(SenderConfig {
        policy: NetPolicy {
            allow_insecure: true,
        },
        ..SenderConfig::default()
    })
    .unwrap()
}

async fn push(rx: &MockSsfHandle, set: &str) -> Outcome {
    let url = Url::parse(&rx.url(EVENTS_PATH)).unwrap();
    let auth = rx.stream().authorization_header.as_deref();
    sender().push_set(&url, set, auth).await.outcome
}

fn refused_with(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Status {
            code: 400,
            error: Some(RpError { error, .. }),
            ..
        } => error.clone(),
        _ => None,
    }
}

/// The claims of a valid SET, changed by `edit`, signed with `key` under `typ`.
fn edited(tx: &Transmitter, typ: TokenTyp, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = set_claims(&row().set, AUD, &tx.fake.issuer).unwrap();
    edit(&mut claims);
    tx.key
        .sign_json(typ, &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

#[tokio::test]
async fn push_stream_is_created_and_a_valid_set_gets_202() {
    let tx = transmitter(false).await;
    let rx = receiver(&tx, |_| {}).await;
    let created = tx.fake.seen.lock().unwrap().created.clone().unwrap();
    assert!(tx.fake.seen.lock().unwrap().auth_ok, "bearer token sent");
    assert_eq!(created["delivery"]["method"], "urn:ietf:rfc:8935");
    assert_eq!(created["delivery"]["endpoint_url"], rx.url(EVENTS_PATH));
    let auth = created["delivery"]["authorization_header"]
        .as_str()
        .unwrap();
    assert!(auth.starts_with("Bearer "));
    let row = row();
    let set = mint(&row, AUD, &tx.fake.issuer, &tx.key).unwrap();
    assert_eq!(push(&rx, &set).await, Outcome::status(202));
    let receipts = rx.receipts();
    assert_eq!(receipts.len(), 1);
    let receipt = &receipts[0];
    assert!(receipt.valid, "{receipt:?}");
    assert_eq!(receipt.jti.as_deref(), Some(row.set.jti.as_str()));
    assert_eq!(receipt.event.as_deref(), Some(SESSION_REVOKED));
    assert_eq!(receipt.status, Some(202));
    rx.shutdown().await;
}

#[tokio::test]
async fn invalid_sets_get_400_with_the_rfc8935_err() {
    let tx = transmitter(false).await;
    let rx = receiver(&tx, |_| {}).await;
    let other_key = SigningKey::generate(crate::alg::SigningAlg::RS256, None).unwrap();
    let foreign = other_key
        .sign_json(
            TokenTyp::SecEventJwt,
            &serde_json::to_vec(&set_claims(&row().set, AUD, &tx.fake.issuer).unwrap()).unwrap(),
        )
        .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong typ",
            edited(&tx, TokenTyp::LogoutJwt, |_| {}),
            "invalid_request",
        ),
        (
            "wrong iss",
            mint(&row(), AUD, "http://127.0.0.1:1/other", &tx.key).unwrap(),
            "invalid_issuer",
        ),
        (
            "wrong aud",
            mint(&row(), "someone-else", &tx.fake.issuer, &tx.key).unwrap(),
            "invalid_audience",
        ),
        ("unknown key", foreign, "invalid_key"),
        (
            "sub present",
            edited(&tx, TokenTyp::SecEventJwt, |c| c["sub"] = json!("u1")),
            "invalid_request",
        ),
        (
            "exp present",
            edited(&tx, TokenTyp::SecEventJwt, |c| c["exp"] = json!(1)),
            "invalid_request",
        ),
        (
            "two events",
            edited(&tx, TokenTyp::SecEventJwt, |c| {
                c["events"]["https://example.com/other"] = json!({});
            }),
            "invalid_request",
        ),
        (
            "empty reason_admin",
            edited(&tx, TokenTyp::SecEventJwt, |c| {
                c["events"][SESSION_REVOKED]["reason_admin"] = json!({});
            }),
            "invalid_request",
        ),
        (
            "bad sub_id",
            edited(&tx, TokenTyp::SecEventJwt, |c| {
                c["sub_id"] = json!({"format": "complex"});
            }),
            "invalid_request",
        ),
        (
            "iat in the future",
            edited(&tx, TokenTyp::SecEventJwt, |c| {
                c["iat"] = json!(Utc::now().timestamp() + 3600);
            }),
            "invalid_request",
        ),
    ];
    for (what, set, err) in &cases {
        let outcome = push(&rx, set).await;
        assert_eq!(
            refused_with(&outcome).as_deref(),
            Some(*err),
            "{what}: {outcome:?}"
        );
    }
    let receipts = rx.receipts();
    assert_eq!(receipts.len(), cases.len());
    assert!(receipts.iter().all(|r| !r.valid && r.status == Some(400)));
    rx.shutdown().await;
}

#[tokio::test]
async fn a_push_without_the_registered_authorization_gets_authentication_failed() {
    let tx = transmitter(false).await;
    let rx = receiver(&tx, |_| {}).await;
    let set = mint(&row(), AUD, &tx.fake.issuer, &tx.key).unwrap();
    let url = Url::parse(&rx.url(EVENTS_PATH)).unwrap();
    for auth in [None, Some("Bearer wrong")] {
        let outcome = sender().push_set(&url, &set, auth).await.outcome;
        assert_eq!(
            refused_with(&outcome).as_deref(),
            Some("authentication_failed")
        );
    }
    let response = reqwest::Client::new()
        .post(rx.url(EVENTS_PATH))
        .header(
            "authorization",
            rx.stream().authorization_header.clone().unwrap(),
        )
        .header("content-type", "application/jwt")
        .body(set)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    rx.shutdown().await;
}

#[tokio::test]
async fn faults_fail_then_accept_drop_and_replace_the_status() {
    let tx = transmitter(false).await;
    let set = mint(&row(), AUD, &tx.fake.issuer, &tx.key).unwrap();
    let rx = receiver(&tx, |c| {
        c.faults.fail_first = 1;
        c.faults.fail_status = StatusCode::INTERNAL_SERVER_ERROR;
        c.status = Some(StatusCode::OK);
    })
    .await;
    assert_eq!(push(&rx, &set).await, Outcome::status(500));
    assert_eq!(push(&rx, &set).await, Outcome::status(200));
    let faults: Vec<_> = rx
        .receipts()
        .into_iter()
        .map(|r| (r.valid, r.fault))
        .collect();
    assert_eq!(faults, [(true, Some("fail_status".into())), (true, None)]);
    rx.shutdown().await;
    let rx = receiver(&tx, |c| c.faults.drop_first = u64::MAX).await;
    let outcome = push(&rx, &set).await;
    assert!(matches!(outcome, Outcome::Reset(_)), "{outcome:?}");
    assert_eq!(rx.receipts()[0].status, None);
    rx.shutdown().await;
}

#[tokio::test]
async fn an_existing_stream_is_read_and_its_delivery_updated() {
    let tx = transmitter(true).await;
    let rx = receiver(&tx, |_| {}).await;
    let patched = tx.fake.seen.lock().unwrap().patched.clone().unwrap();
    assert_eq!(patched["stream_id"], STREAM_ID);
    assert_eq!(patched["delivery"]["endpoint_url"], rx.url(EVENTS_PATH));
    assert_eq!(rx.stream().stream_id, STREAM_ID);
    let set = mint(&row(), AUD, &tx.fake.issuer, &tx.key).unwrap();
    assert_eq!(push(&rx, &set).await, Outcome::status(202));
    rx.shutdown().await;
}

#[tokio::test]
async fn poll_acknowledges_valid_sets_and_reports_the_others() {
    let good = row();
    let bad = row();
    let tx = transmitter(false).await;
    let good_set = mint(&good, AUD, &tx.fake.issuer, &tx.key).unwrap();
    let bad_set = mint(&bad, "someone-else", &tx.fake.issuer, &tx.key).unwrap();
    let answer = json!({"sets": {good.set.jti.clone(): good_set, bad.set.jti.clone(): bad_set},
                        "moreAvailable": false});
    tx.fake.poll_answers.lock().unwrap().push(answer);
    let rx = receiver(&tx, |c| c.poll = true).await;
    let created = tx.fake.seen.lock().unwrap().created.clone().unwrap();
    assert!(
        created.get("delivery").is_none(),
        "poll asks for no delivery"
    );
    let second_poll = async {
        loop {
            let polled = tx.fake.polled.notified();
            if tx.fake.seen.lock().unwrap().polls.len() >= 2 {
                return;
            }
            polled.await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), second_poll)
        .await
        .expect("a second poll");
    let polls = tx.fake.seen.lock().unwrap().polls.clone();
    assert_eq!(polls[0]["returnImmediately"], false);
    assert_eq!(polls[0]["maxEvents"], DEFAULT_MAX_EVENTS);
    assert_eq!(polls[1]["ack"], json!([good.set.jti]));
    assert_eq!(polls[1]["setErrs"][&bad.set.jti]["err"], "invalid_audience");
    let receipts = rx.receipts();
    assert_eq!(receipts.len(), 2);
    assert!(receipts.iter().all(|r| r.delivery == "poll"));
    rx.shutdown().await;
}
