//! `logoutd mock-ssf` as a process: it reads a transmitter's metadata and JWKS, creates its
//! push stream with the token from a file, prints its address, and records a pushed SET.

use axum::Router;
use axum::routing::{get, post};
use chrono::Utc;
use logoutd_core::{
    Jwks, NetPolicy, NewSet, Outcome, SESSION_REVOKED, Sender, SenderConfig, SetKind, SetReceipt,
    SetState, SigningAlg, SigningKey, StoredSet, mint_set,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt as _;

const WAIT: Duration = Duration::from_secs(20);

/// A transmitter with metadata, a JWKS and a stream endpoint that keeps the create request.
async fn transmitter(key: &SigningKey) -> (String, Arc<Mutex<Option<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let metadata = json!({"spec_version": "1_0", "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"), "configuration_endpoint": format!("{issuer}/ssf/stream"),
        "delivery_methods_supported": ["urn:ietf:rfc:8935"]});
    let jwks = serde_json::to_value(Jwks {
        keys: vec![key.jwk().clone()],
    })
    .unwrap();
    let created = Arc::new(Mutex::new(None));
    let record = created.clone();
    let iss = issuer.clone();
    let app = Router::new()
        .route(
            "/.well-known/ssf-configuration",
            get(move || async move { axum::Json(metadata) }),
        )
        .route("/jwks", get(move || async move { axum::Json(jwks) }))
        .route(
            "/ssf/stream",
            post(move |body: axum::Json<Value>| async move {
                *record.lock().unwrap() = Some(body.0.clone());
                let stream = json!({"stream_id": "sst_1", "iss": iss, "aud": "rp-crm",
                    "events_delivered": [SESSION_REVOKED], "delivery": body.0["delivery"]});
                (axum::http::StatusCode::CREATED, axum::Json(stream))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (issuer, created)
}

fn row() -> StoredSet {
    let now = logoutd_core::millis(Utc::now());
    StoredSet {
        set: NewSet {
            id: logoutd_core::SetId::generate_at(now).into_inner(),
            stream_id: "sst_1".into(),
            receiver_id: "ssr_1".into(),
            kind: SetKind::SessionRevoked,
            jti: logoutd_core::random_token(),
            txn: None,
            payload: json!({"sub": "u1", "sid": "s1", "initiator": "session-revoked",
                "initiating_entity": "admin", "event_timestamp": now.timestamp(),
                "session_metadata": {"tenant": "acme-secret-value"}}),
            created_at: now,
        },
        state: SetState::Pending,
        attempts: 0,
        next_attempt_at: None,
        budget_started_at: now,
        last_status: None,
        last_error: None,
        delivered_at: None,
        updated_at: now,
    }
}

#[tokio::test]
async fn cli_mock_ssf_sets_up_its_stream_and_records_a_pushed_set() {
    let key = SigningKey::generate(SigningAlg::RS256, None).unwrap();
    let (issuer, created) = transmitter(&key).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "receiver-secret-token\n").unwrap();
    let receipts = dir.path().join("receipts.jsonl");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
        .args([
            "mock-ssf",
            "--listen",
            "127.0.0.1:0",
            "--transmitter",
            &issuer,
        ])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--receipts")
        .arg(&receipts)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line()).await;
    let line = line.unwrap().unwrap().expect("an address line");
    let base = line.strip_prefix("listening on ").expect(&line).to_owned();
    let delivery = created.lock().unwrap().clone().unwrap()["delivery"].clone();
    assert_eq!(delivery["endpoint_url"], format!("{base}/ssf/events"));
    let auth = delivery["authorization_header"]
        .as_str()
        .unwrap()
        .to_owned();

    let set = mint_set(&row(), "rp-crm", &issuer, &key).unwrap();
    let sender = Sender::new(SenderConfig {
        policy: NetPolicy {
            allow_insecure: true,
        },
        ..SenderConfig::default()
    })
    .unwrap();
    let url = url::Url::parse(&format!("{base}/ssf/events")).unwrap();
    let outcome = sender.push_set(&url, &set, Some(&auth)).await.outcome;
    assert_eq!(outcome, Outcome::status(202));

    let listed: Vec<SetReceipt> = reqwest::get(format!("{base}/receipts?format=json&min=1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed[0].valid, "{:?}", listed[0]);
    assert_eq!(listed[0].event.as_deref(), Some(SESSION_REVOKED));
    let text = std::fs::read_to_string(&receipts).unwrap();
    assert!(!text.contains(&set), "no raw SET in the receipts");

    child.start_kill().unwrap();
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("SET received"), "{logs}");
    for secret in ["receiver-secret-token", "acme-secret-value", auth.as_str()] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
}
