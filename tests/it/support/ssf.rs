//! SSF receivers for the end-to-end tests of `logoutd serve --ssf true`: registering one,
//! `logoutd mock-ssf` as a push receiver process, a poll client that drives RFC 8936 polls
//! itself and the ledger of what it was handed and acknowledged, the two ways a stream's
//! status changes, and the operator's view of the SET rows.

use super::serve_process::ServeProcess;
use base64::Engine as _;
use logoutd_core::{SESSION_REVOKED, STREAM_UPDATED, SetReceipt};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;

/// The longest a test waits for a process, a SET or a state.
pub const WAIT: Duration = Duration::from_secs(30);

/// A receiver registered at `serve`, with its bearer token.
pub struct Receiver {
    pub id: String,
    pub aud: String,
    pub token: String,
}

impl Receiver {
    /// Registers a receiver named `name` that hears of every session end (`scope: all`).
    pub async fn register(serve: &ServeProcess, name: &str) -> Self {
        let body = json!({"name": name, "scope": "all"});
        Self::register_with(serve, body).await.0
    }

    /// Registers a receiver with `body`; returns it and the API's answer.
    pub async fn register_with(serve: &ServeProcess, body: Value) -> (Self, Value) {
        let (status, created) = serve
            .call(Method::POST, "/api/v2/ssf-receivers", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        let text = |key: &str| created[key].as_str().unwrap().to_owned();
        let receiver = Self {
            id: text("id"),
            aud: text("aud"),
            token: text("token"),
        };
        (receiver, created)
    }

    /// Its one stream's id, read at `/ssf/stream`.
    pub async fn stream_id(&self, base: &str) -> String {
        let streams: Value = reqwest::Client::new()
            .get(format!("{base}/ssf/stream"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        streams[0]["stream_id"].as_str().unwrap().to_owned()
    }

    /// Sets its stream's status as the receiver itself (`POST /ssf/status`, SSF §8.1.2.2).
    pub async fn set_status(&self, base: &str, stream_id: &str, status: &str) {
        let reply = reqwest::Client::new()
            .post(format!("{base}/ssf/status"))
            .bearer_auth(&self.token)
            .json(&json!({"stream_id": stream_id, "status": status}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["status"], status, "{body}");
    }
}

/// Sets a stream's status as the operator (`POST /api/v2/ssf-streams/{id}/status`), which
/// tells the receiver with a `stream-updated` SET.
pub async fn operator_status(serve: &ServeProcess, stream_id: &str, status: &str) {
    let path = format!("/api/v2/ssf-streams/{stream_id}/status");
    let body = json!({"status": status, "reason": format!("operator: {status}")});
    let (code, reply) = serve.call(Method::POST, &path, Some(body)).await;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["status"], status, "{reply}");
}

/// Every SET row `/api/v2/ssf-deliveries` lists for `query` (`stream_id=…&state=…`), all
/// pages, oldest first.
pub async fn set_rows(serve: &ServeProcess, query: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let cursor = from.map(|f| format!("&from={f}")).unwrap_or_default();
        let path = format!("/api/v2/ssf-deliveries?take=100&{query}{cursor}");
        let (status, page) = serve.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        rows.extend(page["deliveries"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => return rows,
        }
    }
}

/// Ends the session `sid` (initiator `session-revoked`).
pub async fn end_session(serve: &ServeProcess, sid: &str) {
    let path = format!("/api/v2/sessions/{sid}/revoke");
    let (status, reply) = serve.call(Method::POST, &path, None).await;
    assert_eq!(status, 202, "{reply}");
}

/// Creates the session `sid` of `user`, with no RP.
pub async fn session(serve: &ServeProcess, sid: &str, user: &str) {
    let body = json!({"id": sid, "user_id": user});
    let (status, reply) = serve
        .call(Method::POST, "/api/v2/sessions", Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
}

/// `logoutd mock-ssf`, the strict push receiver, as a child process.
pub struct MockSsfProcess {
    _child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl MockSsfProcess {
    /// Starts it against `serve` with the receiver's token and `extra` flags (faults);
    /// returns once it has created its push stream and listens.
    pub async fn start(dir: &Path, serve: &str, receiver: &Receiver, extra: &[&str]) -> Self {
        let token_file = dir.join(format!("token-{}", receiver.id));
        std::fs::write(&token_file, &receiver.token).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_logoutd"))
            .args([
                "mock-ssf",
                "--listen",
                "127.0.0.1:0",
                "--transmitter",
                serve,
            ])
            .arg("--token-file")
            .arg(&token_file)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line()).await;
        let line = line.unwrap().unwrap().expect("an address line");
        let base = line.strip_prefix("listening on ").expect(&line).to_owned();
        Self {
            _child: child,
            base,
        }
    }

    /// Its receipts, in the order they were recorded, once it holds at least `min` (waiting
    /// for them, bounded).
    pub async fn receipts(&self, min: usize) -> Vec<SetReceipt> {
        let url = format!("{}/receipts?format=json&min={min}", self.base);
        let listed: Vec<SetReceipt> = tokio::time::timeout(WAIT, async {
            reqwest::get(&url).await.unwrap().json().await.unwrap()
        })
        .await
        .expect("the receipts came");
        assert!(listed.len() >= min, "{} < {min}: {listed:#?}", listed.len());
        listed
    }

    /// Its receipts so far.
    pub async fn receipts_now(&self) -> Vec<SetReceipt> {
        self.receipts(0).await
    }
}

/// One SET as a test reads it: its `jti` and claims (decoded, not verified; pushed SETs are
/// verified by the mock).
#[derive(Debug, Clone)]
pub struct Set {
    pub jti: String,
    pub claims: Value,
}

impl Set {
    /// The SET's one event type.
    pub fn event(&self) -> &str {
        let events = self.claims["events"].as_object().unwrap();
        assert_eq!(events.len(), 1, "{}", self.claims);
        events.keys().next().unwrap()
    }

    /// The ended session, for a `session-revoked` SET.
    pub fn sid(&self) -> Option<&str> {
        (self.event() == SESSION_REVOKED)
            .then(|| self.claims["sub_id"]["session"]["id"].as_str())
            .flatten()
    }

    /// The status it announces, for a `stream-updated` SET.
    pub fn stream_status(&self) -> Option<&str> {
        (self.event() == STREAM_UPDATED)
            .then(|| self.claims["events"][STREAM_UPDATED]["status"].as_str())
            .flatten()
    }

    /// The SET of a receipt that passed the mock's checks.
    pub fn of_receipt(receipt: &SetReceipt) -> Self {
        assert!(receipt.valid, "{receipt:?}");
        Self {
            jti: receipt.jti.clone().unwrap(),
            claims: receipt.claims.clone().unwrap(),
        }
    }
}

/// A poll answer: the SETs by `jti`, and `moreAvailable`.
#[derive(Debug, Default)]
pub struct Batch {
    pub sets: BTreeMap<String, Set>,
    pub more: bool,
}

impl Batch {
    /// The `jti`s, to acknowledge.
    pub fn jtis(&self) -> Vec<String> {
        self.sets.keys().cloned().collect()
    }
}

/// A receiver polling its stream itself (RFC 8936).
#[derive(Clone)]
pub struct Poller {
    http: reqwest::Client,
    token: String,
    aud: String,
    issuer: String,
    pub stream_id: String,
}

impl Poller {
    /// Creates the receiver's poll stream at `base` (a stream without `delivery`); its SETs
    /// carry `issuer`.
    pub async fn create(base: &str, receiver: &Receiver, issuer: &str) -> Self {
        let http = reqwest::Client::new();
        let reply = http
            .post(format!("{base}/ssf/stream"))
            .bearer_auth(&receiver.token)
            .json(&json!({"description": "polled by the test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
        let stream: Value = reply.json().await.unwrap();
        assert_eq!(stream["delivery"]["method"], logoutd_core::POLL_METHOD);
        Self {
            http,
            token: receiver.token.clone(),
            aud: receiver.aud.clone(),
            issuer: issuer.to_owned(),
            stream_id: stream["stream_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Polls at `base` with `body` (RFC 8936 §2.2) and checks the answer's SETs: typed
    /// `secevent+jwt`, from the issuer to this receiver, each under its own `jti`.
    pub async fn poll(&self, base: &str, body: Value) -> Batch {
        let reply = self
            .http
            .post(format!("{base}/ssf/poll/{}", self.stream_id))
            .bearer_auth(&self.token)
            .json(&body)
            .timeout(WAIT)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        let answer: Value = reply.json().await.unwrap();
        let mut batch = Batch {
            more: answer["moreAvailable"] == true,
            ..Batch::default()
        };
        for (jti, token) in answer["sets"].as_object().unwrap() {
            let set = self.decode(token.as_str().unwrap());
            assert_eq!(set.jti, *jti, "a SET is keyed by its jti");
            batch.sets.insert(jti.clone(), set);
        }
        batch
    }

    /// `returnImmediately` poll taking at most `max` SETs and acknowledging `ack`.
    pub async fn take(&self, base: &str, max: usize, ack: &[String]) -> Batch {
        let body = json!({"maxEvents": max, "returnImmediately": true, "ack": ack});
        self.poll(base, body).await
    }

    fn decode(&self, token: &str) -> Set {
        let part = |i: usize| -> Value {
            let b64 = token.split('.').nth(i).unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let (header, claims) = (part(0), part(1));
        assert_eq!(header["typ"], "secevent+jwt", "{header}");
        assert_eq!(header["alg"], "RS256", "{header}");
        assert_eq!(claims["iss"], self.issuer.as_str(), "{claims}");
        assert_eq!(claims["aud"], self.aud.as_str(), "{claims}");
        Set {
            jti: claims["jti"].as_str().unwrap().to_owned(),
            claims,
        }
    }
}

/// What a poll receiver was handed and acknowledged, checked as it goes: an acknowledged SET
/// is never handed out again, and every SET is a `session-revoked` one.
#[derive(Default)]
pub struct PollLedger {
    /// The `jti`s handed out for each session, in order, repeats included.
    pub handed: HashMap<String, Vec<String>>,
    /// The session of each `jti` handed out.
    pub sid_of: HashMap<String, String>,
    /// The `jti`s acknowledged.
    pub acked: HashSet<String>,
    /// The sessions whose SET was acknowledged.
    pub acked_sids: HashSet<String>,
}

impl PollLedger {
    /// Records a batch; an acknowledged SET is never handed out again.
    pub fn record(&mut self, batch: &Batch) {
        for set in batch.sets.values() {
            assert!(
                !self.acked.contains(&set.jti),
                "an acknowledged SET was handed out again: {}",
                set.claims
            );
            assert_eq!(set.event(), SESSION_REVOKED);
            let sid = set.sid().unwrap().to_owned();
            self.handed
                .entry(sid.clone())
                .or_default()
                .push(set.jti.clone());
            self.sid_of.insert(set.jti.clone(), sid);
        }
    }

    /// Notes that a poll acknowledged `jtis`.
    pub fn acked(&mut self, jtis: &[String]) {
        for jti in jtis {
            self.acked.insert(jti.clone());
            self.acked_sids.insert(self.sid_of[jti].clone());
        }
    }

    /// Whether every session of `sids` is acknowledged, or is in `ack`, about to be.
    pub fn covers(&self, sids: &HashSet<String>, ack: &[String]) -> bool {
        let about: HashSet<&String> = ack.iter().map(|j| &self.sid_of[j]).collect();
        sids.iter()
            .all(|sid| self.acked_sids.contains(sid) || about.contains(sid))
    }

    /// Polls at `base` with `ack`, `max` SETs at most, at once; records the batch.
    pub async fn take(&mut self, poller: &Poller, base: &str, max: usize, ack: &[String]) -> Batch {
        let batch = poller.take(base, max, ack).await;
        self.acked(ack);
        self.record(&batch);
        batch
    }

    /// Long-polls, `max` SETs at most a poll, the node `base(n)` for the `n`th poll,
    /// acknowledging each batch in the next poll unless `lose(n, batch)` says its answer was
    /// lost, until a SET of every session of `sids` was handed out and acknowledged or is
    /// about to be (SETs handed out and never acknowledged come back once their lease ends);
    /// fails after [`WAIT`]. The poll that then acknowledges the last batch, at the next node,
    /// finds nothing left. Returns how many long polls it took.
    pub async fn drain(
        &mut self,
        poller: &Poller,
        base: impl Fn(usize) -> String,
        max: usize,
        sids: &HashSet<String>,
        mut lose: impl FnMut(usize, &Batch) -> bool,
    ) -> usize {
        let mut ack: Vec<String> = Vec::new();
        let mut polls = 0;
        let drained = tokio::time::timeout(WAIT, async {
            while !self.covers(sids, &ack) {
                let body = json!({"maxEvents": max, "returnImmediately": false, "ack": ack});
                let batch = poller.poll(&base(polls), body).await;
                self.acked(&ack);
                self.record(&batch);
                ack = if lose(polls, &batch) {
                    Vec::new()
                } else {
                    batch.jtis()
                };
                polls += 1;
            }
        })
        .await;
        assert!(
            drained.is_ok(),
            "{} of {} sessions acknowledged after {polls} polls",
            self.acked_sids.len(),
            sids.len()
        );
        let last = self.take(poller, &base(polls), 100, &ack).await;
        assert!(last.sets.is_empty(), "nothing is left: {last:?}");
        polls
    }

    /// Every session polled exactly as `sids`, each repeat under the same `jti`; returns how
    /// many SETs were handed out more than once.
    pub fn check(&self, sids: &HashSet<String>) -> usize {
        let polled: HashSet<String> = self.handed.keys().cloned().collect();
        assert_eq!(&polled, sids, "one SET per session");
        let mut repeats = 0;
        for (sid, jtis) in &self.handed {
            assert!(jtis.iter().all(|j| *j == jtis[0]), "{sid}: {jtis:?}");
            repeats += jtis.len() - 1;
        }
        repeats
    }
}
