//! Crash safety: `kill -9` of `logoutd serve` in the middle of a mass logout, then a restart
//! on the same store, loses no delivery (design §1: at-least-once through leases).

use crate::support::process::ServeProcess;
use crate::support::recording_rp::{RecordedRequest, RecordingRp, Reply};
use base64::Engine as _;
use logoutd_core::{ClientId, Issuer};
use logoutd_core::{DeliveryFilter, DeliveryState};
use logoutd_core::{VerifyOptions, verify};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const ISSUER: &str = "https://logoutd.test";
const CLIENTS: [&str; 3] = ["rp-a", "rp-b", "rp-c"];
const USERS: usize = 30;
const SESSIONS_PER_USER: usize = 10;

fn claims(req: &RecordedRequest) -> Value {
    let token = req.form_param("logout_token").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// (sid, aud) pairs received so far, with how often each arrived.
fn received(reqs: &[RecordedRequest]) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for req in reqs {
        let c = claims(req);
        let key = (
            c["sid"].as_str().unwrap().to_owned(),
            c["aud"].as_str().unwrap().to_owned(),
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

async fn populate(serve: &ServeProcess, rp: &RecordingRp) {
    for client in CLIENTS {
        let body = json!({ "client_id": client, "name": client, "id_token_signed_response_alg": "RS256",
            "oidc_logout": { "backchannel_logout_urls": [rp.url(&format!("/{client}")).as_str()] } });
        assert_eq!(
            serve
                .call(Method::POST, "/api/v2/clients", Some(body))
                .await
                .0,
            201
        );
    }
    let clients: Vec<Value> = CLIENTS.iter().map(|c| json!({ "client_id": c })).collect();
    for u in 0..USERS {
        for s in 0..SESSIONS_PER_USER {
            let body = json!({ "id": format!("s-{u}-{s}"), "user_id": format!("u-{u}"), "clients": clients });
            assert_eq!(
                serve
                    .call(Method::POST, "/api/v2/sessions", Some(body))
                    .await
                    .0,
                201
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/logoutd.db", dir.path().display());
    let rp = RecordingRp::start(Reply::ok().delay(Duration::from_millis(20))).await;
    let flags = [
        "--issuer",
        ISSUER,
        "--lease-seconds",
        "2",
        "--retry-base-ms",
        "50",
        "--retry-cap-ms",
        "500",
        "--max-per-origin",
        "8",
    ];
    let serve = ServeProcess::start(dir.path(), &store, &flags).await;
    populate(&serve, &rp).await;
    for u in 0..USERS {
        let body = json!({ "user_id": format!("u-{u}"), "initiator": "rp-logout" });
        let (status, reply) = serve
            .call(Method::POST, "/api/v2/logout-events", Some(body))
            .await;
        assert_eq!(
            (status, reply["deliveries"].as_u64()),
            (202, Some((SESSIONS_PER_USER * CLIENTS.len()) as u64))
        );
    }
    let total = USERS * SESSIONS_PER_USER * CLIENTS.len();
    assert!(
        rp.wait_until(Duration::from_secs(120), |r| r.len() >= total / 3)
            .await
    );
    serve.kill9().await;
    let before_restart = rp.requests().len();
    assert!(
        before_restart < total,
        "the kill landed mid-run ({before_restart}/{total})"
    );

    let serve = ServeProcess::start(dir.path(), &store, &flags).await;
    let complete = rp
        .wait_until(Duration::from_secs(180), |r| received(r).len() >= total)
        .await;
    let seen = received(&rp.requests());
    assert!(
        complete,
        "only {} of {total} (session, RP) pairs delivered",
        seen.len()
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("kill -9 after {before_restart}/{total} requests: {duplicates} duplicate deliveries");
    assert!(
        duplicates <= total / 10,
        "duplicates must be rare: {duplicates}"
    );
    let expected: HashSet<(String, String)> = (0..USERS)
        .flat_map(|u| (0..SESSIONS_PER_USER).map(move |s| format!("s-{u}-{s}")))
        .flat_map(|sid| CLIENTS.iter().map(move |c| (sid.clone(), c.to_string())))
        .collect();
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), expected);

    let jwks: Value = reqwest::get(serve.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks = logoutd_core::Jwks::from_value(jwks).unwrap();
    for req in rp.requests() {
        let aud = claims(&req)["aud"].as_str().unwrap().to_owned();
        let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(aud));
        let token = req.form_param("logout_token").unwrap();
        verify(&token, &jwks, &opts, chrono::Utc::now()).unwrap_or_else(|e| panic!("{e:?}"));
    }
    // Rows whose result the kill lost are sent again once their lease ends, possibly after
    // the RP already has every pair: wait for the store to settle, then read it directly.
    wait_settled(&serve).await;
    assert!(serve.terminate().await.success());
    let stores = logoutd_core::open_store(&store).await.unwrap();
    let rows = stores
        .deliveries
        .list_deliveries(&DeliveryFilter::default(), None, 2 * total)
        .await
        .unwrap();
    assert!(rows.next.is_none());
    assert_eq!(rows.items.len(), total, "one row per (session, RP) pair");
    let stored: HashSet<(String, String)> = rows
        .items
        .iter()
        .map(|r| (r.session_id.to_string(), r.client_id.to_string()))
        .collect();
    assert_eq!(stored, expected, "no row lost or doubled");
    let unsettled: Vec<_> = rows
        .items
        .iter()
        .filter(|r| r.state != DeliveryState::Delivered)
        .collect();
    assert!(
        unsettled.is_empty(),
        "every row delivered, none left leased: {unsettled:#?}"
    );
}

/// The value of the unlabelled sample `name` in a `/metrics` scrape; a missing sample fails.
fn gauge(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in the scrape:\n{scrape}"))
}

/// Waits (bounded) until the outbox has no pending, in-flight or failed row, reading the
/// gauges of `/metrics` every 100 ms.
async fn wait_settled(serve: &ServeProcess) {
    let mut last = String::new();
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            last = reqwest::get(serve.url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let open = ["pending", "in_flight", "dead_letter"]
                .map(|g| gauge(&last, &format!("logoutd_deliveries_{g}")));
            if open == [0.0; 3] {
                return;
            }
        }
    })
    .await;
    assert!(settled.is_ok(), "the outbox never settled:\n{last}");
}
