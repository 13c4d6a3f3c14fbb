//! Several `logoutd serve` processes on one PostgreSQL database (design §5): they share the
//! outbox through `FOR UPDATE SKIP LOCKED` claims and leases, so every (session, RP) pair is
//! delivered even when one node is killed mid-run, and exactly once in the normal case.
//!
//! Skipped with a warning without a PostgreSQL server, or failed when `CI=true`, like the
//! other PostgreSQL tests.

use crate::store::postgres::TestDatabase;
use crate::support::process::ServeProcess;
use crate::support::recording_rp::{RecordedRequest, RecordingRp, Reply};
use base64::Engine as _;
use futures_util::StreamExt as _;
use logoutd_core::{ClientId, Issuer};
use logoutd_core::{VerifyOptions, verify};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://logoutd.test";
const CLIENTS: [&str; 4] = ["rp-a", "rp-b", "rp-c", "rp-d"];
const USERS: usize = 30;
const SESSIONS_PER_USER: usize = 10;
/// Users ended with one user-wide call; the others' sessions are ended one by one.
const USER_WIDE: usize = 20;
/// Longest wait for every pair to arrive.
const DELIVERY_BOUND: Duration = Duration::from_secs(45);
/// API calls in flight while populating and ending.
const CONCURRENCY: usize = 12;

/// Every (session, RP) pair the workload must deliver.
const TOTAL: usize = USERS * SESSIONS_PER_USER * CLIENTS.len();

/// The logout token's (sid, aud), decoded without verifying.
fn pair(req: &RecordedRequest) -> (String, String) {
    let token = req.form_param("logout_token").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    let field = |name: &str| claims[name].as_str().unwrap().to_owned();
    (field("sid"), field("aud"))
}

/// Counts each (sid, aud) pair incrementally, so a wait over many requests stays linear.
#[derive(Default)]
struct Tally {
    seen: HashMap<(String, String), usize>,
    read: usize,
}

impl Tally {
    fn update(&mut self, reqs: &[RecordedRequest]) -> usize {
        for req in &reqs[self.read..] {
            *self.seen.entry(pair(req)).or_insert(0) += 1;
        }
        self.read = reqs.len();
        self.seen.len()
    }

    fn duplicates(&self) -> usize {
        self.seen.values().map(|n| n - 1).sum()
    }
}

/// Starts node 1 (which creates the shared signing key), then the others on the same keys.
async fn start_nodes(dir: &Path, store: &str, n: usize) -> Vec<ServeProcess> {
    let flags = [
        "--issuer",
        ISSUER,
        "--lease-seconds",
        "3",
        "--retry-base-ms",
        "50",
        "--retry-cap-ms",
        "500",
        "--max-in-flight",
        "16",
    ];
    let mut nodes = vec![ServeProcess::start(dir, store, &flags).await];
    let rest = (1..n).map(|_| ServeProcess::start(dir, store, &flags));
    nodes.extend(futures_util::future::join_all(rest).await);
    nodes
}

/// Sends `calls` (method, path, body, expected status) round-robin over `nodes`.
async fn spread(nodes: &[ServeProcess], calls: Vec<(Method, String, Value, u16)>) {
    let replies = futures_util::stream::iter(calls.into_iter().enumerate())
        .map(|(i, (method, path, body, expected))| async move {
            let node = &nodes[i % nodes.len()];
            let (status, reply) = node.call(method, &path, Some(body)).await;
            assert_eq!(status, expected, "{path}: {reply}");
        })
        .buffer_unordered(CONCURRENCY);
    replies.collect::<Vec<()>>().await;
}

/// Registers the clients through node 1 and creates the sessions through every node.
async fn populate(nodes: &[ServeProcess], rp: &RecordingRp) {
    for client in CLIENTS {
        let url = rp.url(&format!("/{client}"));
        let body = json!({ "client_id": client, "name": client,
            "id_token_signed_response_alg": "RS256",
            "oidc_logout": { "backchannel_logout_urls": [url.as_str()] } });
        let (status, reply) = nodes[0]
            .call(Method::POST, "/api/v2/clients", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let clients: Vec<Value> = CLIENTS.iter().map(|c| json!({ "client_id": c })).collect();
    let calls = (0..USERS)
        .flat_map(|u| (0..SESSIONS_PER_USER).map(move |s| (u, s)))
        .map(|(u, s)| {
            let body = json!({ "id": format!("s-{u}-{s}"), "user_id": format!("u-{u}"),
                "clients": clients });
            (Method::POST, "/api/v2/sessions".to_owned(), body, 201)
        })
        .collect();
    spread(nodes, calls).await;
}

/// Ends the first users user-wide and the rest session by session, spread over the nodes.
async fn end_all(nodes: &[ServeProcess]) {
    let event = |body: Value| (Method::POST, "/api/v2/logout-events".to_owned(), body, 202);
    let users = (0..USER_WIDE)
        .map(|u| event(json!({ "user_id": format!("u-{u}"), "initiator": "rp-logout" })));
    let sessions = (USER_WIDE..USERS)
        .flat_map(|u| (0..SESSIONS_PER_USER).map(move |s| format!("s-{u}-{s}")))
        .map(|sid| event(json!({ "session_id": sid, "initiator": "rp-logout" })));
    spread(nodes, users.chain(sessions).collect()).await;
}

/// Every pair the workload must deliver.
fn expected_pairs() -> HashSet<(String, String)> {
    (0..USERS)
        .flat_map(|u| (0..SESSIONS_PER_USER).map(move |s| format!("s-{u}-{s}")))
        .flat_map(|sid| CLIENTS.iter().map(move |c| (sid.clone(), c.to_string())))
        .collect()
}

/// Waits (bounded) until every pair has arrived; asserts it and returns the tally.
async fn wait_for_every_pair(rp: &RecordingRp) -> Tally {
    let mut tally = Tally::default();
    let complete = rp
        .wait_until(DELIVERY_BOUND, |reqs| tally.update(reqs) >= TOTAL)
        .await;
    tally.update(&rp.requests());
    assert!(
        complete,
        "only {} of {TOTAL} (session, RP) pairs delivered",
        tally.seen.len()
    );
    let seen: HashSet<_> = tally.seen.keys().cloned().collect();
    assert_eq!(seen, expected_pairs());
    tally
}

/// Verifies every received token against the JWKS that `node` publishes.
async fn verify_all(rp: &RecordingRp, node: &ServeProcess) {
    let jwks: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(node.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks = logoutd_core::Jwks::from_value(jwks).unwrap();
    let now = chrono::Utc::now();
    for req in rp.requests() {
        let (_, aud) = pair(&req);
        let opts = VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(aud));
        let token = req.form_param("logout_token").unwrap();
        verify(&token, &jwks, &opts, now).unwrap_or_else(|e| panic!("{e:?}"));
    }
}

/// Three nodes, a workload, and a receiver answering after a short delay.
async fn cluster() -> Option<(
    TestDatabase,
    tempfile::TempDir,
    Vec<ServeProcess>,
    RecordingRp,
)> {
    let db = TestDatabase::create().await?;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_nodes(dir.path(), &db.url, 3).await;
    let rp = RecordingRp::start(Reply::ok().delay(Duration::from_millis(15))).await;
    populate(&nodes, &rp).await;
    Some((db, dir, nodes, rp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_pair_exactly_once() {
    let Some((_db, _dir, nodes, rp)) = cluster().await else {
        return;
    };
    let started = Instant::now();
    end_all(&nodes).await;
    let tally = wait_for_every_pair(&rp).await;
    let duplicates = tally.duplicates();
    eprintln!(
        "3 nodes, no kill: {TOTAL} pairs in {:?}, {duplicates} duplicate deliveries",
        started.elapsed()
    );
    assert!(
        duplicates * 100 < TOTAL,
        "duplicates must stay under 1 %: {duplicates}"
    );
    verify_all(&rp, &nodes[0]).await;
    for node in nodes {
        node.terminate().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_nodes_loses_no_delivery() {
    let Some((_db, _dir, mut nodes, rp)) = cluster().await else {
        return;
    };
    let started = Instant::now();
    end_all(&nodes).await;
    let third = rp
        .wait_until(DELIVERY_BOUND, |reqs| reqs.len() >= TOTAL / 3)
        .await;
    assert!(third, "a third of the deliveries arrived");
    nodes.remove(1).kill9().await;
    let at_kill = rp.requests().len();
    assert!(
        at_kill < TOTAL,
        "the kill landed mid-run ({at_kill}/{TOTAL})"
    );
    let tally = wait_for_every_pair(&rp).await;
    let duplicates = tally.duplicates();
    eprintln!(
        "3 nodes, kill -9 of one after {at_kill}/{TOTAL} requests: every pair in {:?}, \
         {duplicates} duplicate deliveries",
        started.elapsed()
    );
    assert!(
        duplicates * 10 <= TOTAL,
        "duplicates must be rare: {duplicates}"
    );
    verify_all(&rp, &nodes[0]).await;
    for node in nodes {
        node.terminate().await;
    }
}
