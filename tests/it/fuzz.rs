//! Property-based fuzzing, bounded in cases: hostile input of every shape reaches the token
//! verifier, every JSON body of the API (mutated from valid bodies), metadata validation, the
//! URL policy and `Retry-After` parsing. The invariant each time: no panic, a verdict or a 4xx,
//! and nothing stored by a refusal.

use crate::support::app::{API_TOKEN, TestApp};
use crate::support::{CLIENT, ISSUER, builder, fixed_now, fixture_keys};
use axum::http::{Method, StatusCode};
use logoutd_core::NetPolicy;
use logoutd_core::SessionMetadata;
use logoutd_core::{ClientId, Issuer};
use logoutd_core::{SigningAlg, TokenTyp};
use logoutd_core::{VerifyOptions, verify};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Any JSON value, hostile strings included (NUL, controls, long, non-ASCII), nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(u64::MAX)),
        ".{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\]{0,8}".prop_map(Value::String),
        (0usize..2000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a valid body: replace a value at some path, drop a key, add a key, or break
/// the bytes themselves.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    Add(String, Value),
    Truncate(usize),
    Bytes(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => (".{0,12}", any_json()).prop_map(|(k, v)| Mutation::Add(k, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Bytes),
    ]
}

/// Every value position in `v`, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = k.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(base: &Value, m: &Mutation) -> Vec<u8> {
    let mut body = base.clone();
    let mut all = Vec::new();
    pointers(&body, String::new(), &mut all);
    match m {
        Mutation::Replace(i, value) => {
            let at = &all[i % all.len()];
            if let Some(slot) = body.pointer_mut(at) {
                *slot = value.clone();
            }
        }
        Mutation::Remove(i) => {
            let at = &all[i % all.len()];
            if let Some((parent, key)) = at.rsplit_once('/')
                && let Some(Value::Object(map)) = body.pointer_mut(parent)
            {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
        }
        Mutation::Add(key, value) => {
            if let Value::Object(map) = &mut body {
                map.insert(key.clone(), value.clone());
            }
        }
        Mutation::Truncate(n) => {
            let bytes = serde_json::to_vec(&body).unwrap();
            return bytes[..n % bytes.len().max(1)].to_vec();
        }
        Mutation::Bytes(bytes) => return bytes.clone(),
    }
    serde_json::to_vec(&body).unwrap()
}

/// What the API holds: every client, the user's sessions and one session in full.
async fn snapshot(app: &TestApp) -> Value {
    let clients = app.call(Method::GET, "/api/v2/clients", None).await.1;
    let sessions = app
        .call(Method::GET, "/api/v2/users/u1/sessions", None)
        .await
        .1;
    let s1 = app.call(Method::GET, "/api/v2/sessions/s1", None).await.1;
    let deliveries = app
        .call(Method::GET, "/api/v2/logout-deliveries", None)
        .await
        .1;
    json!([clients, sessions, s1, deliveries])
}

async fn seed(app: &TestApp) {
    for id in ["rp1", "rp2"] {
        let body = json!({"client_id": id, "name": id,
            "oidc_logout": {"backchannel_logout_urls": [format!("https://{id}.example.test/bc")]}});
        let (status, reply) = app.call(Method::POST, "/api/v2/clients", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    let body = json!({"id": "s1", "user_id": "u1", "clients": [{"client_id": "rp1"}],
        "session_metadata": {"k": "v"}});
    let (status, reply) = app.call(Method::POST, "/api/v2/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

/// The valid body of every route that takes one, with its method and path.
fn routes() -> Vec<(Method, &'static str, Value)> {
    vec![
        (
            Method::POST,
            "/api/v2/clients",
            json!({"client_id": "rp9", "name": "RP 9",
            "oidc_logout": {"backchannel_logout_urls": ["https://rp9.example.test/bc"],
                "backchannel_logout_initiators": {"mode": "custom", "selected_initiators": ["password-changed"]},
                "backchannel_logout_session_metadata": {"include": true}},
            "backchannel_logout_session_required": true, "logout_token_typ": "JWT",
            "id_token_signed_response_alg": "ES256"}),
        ),
        (
            Method::PATCH,
            "/api/v2/clients/rp2",
            json!({"name": "renamed",
            "oidc_logout": {"backchannel_logout_urls": ["https://rp2.example.test/other"]}}),
        ),
        (
            Method::POST,
            "/api/v2/sessions",
            json!({"id": "s2", "user_id": "u1",
            "clients": [{"client_id": "rp1", "sid": "sid-a"}, {"client_id": "rp2"}],
            "session_metadata": {"a": "1", "b": "2"}, "expires_at": "2030-01-01T00:00:00Z",
            "device": {"initial_ip": "192.0.2.1", "initial_user_agent": "UA"}}),
        ),
        (
            Method::PATCH,
            "/api/v2/sessions/s1",
            json!({"session_metadata": {"k": "w", "x": "y"}}),
        ),
        (
            Method::PUT,
            "/api/v2/sessions/s1/metadata/k2",
            json!({"value": "v2"}),
        ),
        (
            Method::POST,
            "/api/v2/sessions/s1/clients",
            json!({"client_id": "rp2", "sid": "sid-b"}),
        ),
        (
            Method::POST,
            "/api/v2/logout-events",
            json!({"session_id": "s1", "initiator": "rp-logout"}),
        ),
    ]
}

/// Mutated bodies on every route: never a 5xx, and a 4xx leaves everything as it was.
#[test]
fn mutated_api_bodies_get_a_clear_answer_and_refusals_change_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(async {
        let app = TestApp::memory().await;
        seed(&app).await;
        app
    });
    let routes = routes();
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..routes.len(), mutation());
    runner
        .run(&strategy, |(route, m)| {
            let (method, path, base) = &routes[route];
            let body = apply(base, &m);
            rt.block_on(async {
                let before = snapshot(&app).await;
                let (status, _, reply) = app
                    .raw(
                        method.clone(),
                        path,
                        Some(API_TOKEN),
                        Some("application/json"),
                        Some(body.clone()),
                    )
                    .await;
                let text = String::from_utf8_lossy(&reply);
                prop_assert!(
                    !status.is_server_error(),
                    "{method} {path} {:?} -> {status} {text}",
                    String::from_utf8_lossy(&body)
                );
                if status.is_client_error() {
                    let reply: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
                    prop_assert!(reply["errorCode"].is_string(), "{status} {text}");
                    prop_assert_eq!(
                        snapshot(&app).await,
                        before,
                        "a {} changed the state",
                        status
                    );
                }
                Ok(())
            })
        })
        .unwrap();
}

/// Garbage and mangled tokens get a verdict with reasons, never a panic or a pass.
#[test]
fn the_verifier_refuses_mangled_tokens_without_panicking() {
    let keys = fixture_keys();
    let claims = builder(fixed_now()).build();
    let valid = keys
        .sign(SigningAlg::ES256, TokenTyp::LogoutJwt, &claims)
        .unwrap();
    let jwks = keys.jwks(fixed_now());
    let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT));
    assert!(verify(&valid, &jwks, &opts, fixed_now()).is_ok());
    let strategy = prop_oneof![
        ".{0,300}",
        (any::<usize>(), any::<char>()).prop_map({
            let valid = valid.clone();
            move |(at, c)| {
                let mut chars: Vec<char> = valid.chars().collect();
                let i = at % chars.len();
                chars[i] = if chars[i] == c { '!' } else { c };
                chars.into_iter().collect()
            }
        }),
        (any::<usize>(), any::<usize>()).prop_map({
            let valid = valid.clone();
            move |(a, b)| {
                let parts: Vec<&str> = valid.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[a % 3],
                    parts[b % 3],
                    parts[(a % 3 + b % 3) % 3]
                )
            }
        }),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |token| {
            if token == valid {
                return Ok(());
            }
            let verdict = verify(&token, &jwks, &opts, fixed_now());
            prop_assert!(verdict.is_err(), "{token} passed");
            prop_assert!(!verdict.unwrap_err().is_empty());
            Ok(())
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Accepted metadata keeps every rule; anything else is refused, never a panic.
    #[test]
    fn metadata_validation_holds_its_rules(
        map in proptest::collection::btree_map(".{0,20}", ".{0,20}", 0..30),
        json in any_json(),
    ) {
        if let Ok(meta) = SessionMetadata::try_from_map(map.clone()) {
            let stored: BTreeMap<String, String> =
                serde_json::from_value(serde_json::to_value(&meta).unwrap()).unwrap();
            prop_assert!(stored.len() <= 25);
            for (k, v) in &stored {
                prop_assert!(!k.is_empty() && k.len() <= 255);
                prop_assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                prop_assert!(v.chars().count() <= 255 && !v.contains('\0'));
            }
        }
        let _ = SessionMetadata::from_json(&json);
    }

    /// The URL policy never panics, and what it accepts by default is https to a host that
    /// is not an IP literal of a non-public range.
    #[test]
    fn url_policy_accepts_only_https_by_default(raw in "(https?|ftp|javascript)://[^ ]{0,60}|.{0,80}") {
        let strict = NetPolicy { allow_insecure: false };
        if let Ok(url) = strict.validate_url(&raw) {
            prop_assert_eq!(url.scheme(), "https");
            if let Some(url::Host::Ipv4(ip)) = url.host() {
                prop_assert!(!ip.is_loopback() && !ip.is_private() && !ip.is_link_local(), "{}", raw);
            }
        }
        let _ = NetPolicy { allow_insecure: true }.validate_url(&raw);
    }

    /// `Retry-After` parsing never panics and never yields a negative wait.
    #[test]
    fn retry_after_parsing_is_total(value in ".{0,40}|[0-9]{0,30}|-[0-9]{1,25}") {
        let _ = logoutd_core::parse_retry_after(&value, fixed_now());
    }
}
