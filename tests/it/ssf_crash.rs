//! Crash safety of the SSF transmitter: `kill -9` of `logoutd serve --ssf true` (SQLite) in
//! the middle of a mass logout, or right after the ends committed, then a restart on the same
//! store and address, loses no SET. A push receiver (`logoutd mock-ssf`, slowed down) and a
//! poll receiver (driven here) each get one `session-revoked` SET per ended session; a SET
//! sent again keeps its `jti` (at-least-once, RFC 8935 §2 and RFC 8936 §2.4), and the store
//! ends with every row delivered.

use crate::support::serve_process::ServeProcess;
use crate::support::ssf::{
    Batch, MockSsfProcess, PollLedger, Poller, Receiver, Set, WAIT, set_rows,
};
use futures_util::StreamExt as _;
use logoutd_core::SESSION_REVOKED;
use reqwest::Method;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A free loopback address, so that the restarted `serve` answers where the first one did
/// (the receiver knows the transmitter by its issuer, `http://` and this address).
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `serve`'s flags: SSF on, at `addr` as its issuer, with short leases (push and poll) and
/// quick retries so that what the kill interrupted comes back within the test.
fn flags(addr: &str, issuer: &str) -> Vec<String> {
    [
        "--ssf",
        "true",
        "--listen",
        addr,
        "--issuer",
        issuer,
        "--lease-seconds",
        "2",
        "--ssf-poll-lease-seconds",
        "2",
        "--retry-base-ms",
        "50",
        "--retry-cap-ms",
        "500",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn start(dir: &Path, flags: &[String]) -> ServeProcess {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    ServeProcess::start(dir, &flags).await
}

/// The transmitter with its two receivers: `mock-ssf` pushed to (each answer delayed by
/// `delay_ms`) and a poll stream polled here; and `users` × [`SESSIONS_PER_USER`] sessions.
struct World {
    serve: ServeProcess,
    /// The flags it restarts with.
    flags: Vec<String>,
    mock: MockSsfProcess,
    push_stream: String,
    poller: Poller,
    sids: HashSet<String>,
}

const SESSIONS_PER_USER: usize = 10;

impl World {
    /// Starts `serve` with `extra` flags on the first run only.
    async fn start(dir: &Path, users: usize, delay_ms: u64, extra: &[&str]) -> Self {
        let addr = free_addr();
        let issuer = format!("http://{addr}");
        let flags = flags(&addr, &issuer);
        let first: Vec<String> = flags
            .iter()
            .cloned()
            .chain(extra.iter().map(|f| (*f).to_owned()))
            .collect();
        let serve = start(dir, &first).await;
        let push = Receiver::register(&serve, "siem").await;
        let delay = delay_ms.to_string();
        let mock = MockSsfProcess::start(dir, &issuer, &push, &["--delay", &delay]).await;
        let push_stream = push.stream_id(&serve.base).await;
        let audit = Receiver::register(&serve, "audit").await;
        let poller = Poller::create(&serve.base, &audit, &issuer).await;
        let sids = sessions(&serve, users).await;
        Self {
            serve,
            flags,
            mock,
            push_stream,
            poller,
            sids,
        }
    }

    /// Long-polls `serve` into `log`, acknowledging each batch in the next poll, until every
    /// session's SET was handed out and acknowledged and nothing is left.
    async fn drain(&self, log: &mut PollLedger) {
        let base = self.serve.base.clone();
        let no_loss = |_, _: &Batch| false;
        log.drain(&self.poller, |_| base.clone(), 50, &self.sids, no_loss)
            .await;
    }

    /// Ends every user's sessions, one user-wide call per user.
    async fn end_all(&self, users: usize) {
        let calls = (0..users).map(|u| async move {
            let path = format!("/api/v2/users/u-{u}/sessions");
            let (status, reply) = self.serve.call(Method::DELETE, &path, None).await;
            assert_eq!(status, 202, "{reply}");
        });
        futures_util::stream::iter(calls)
            .buffer_unordered(4)
            .collect::<Vec<()>>()
            .await;
    }
}

/// Creates `users` × [`SESSIONS_PER_USER`] sessions `s-{u}-{n}` of users `u-{u}`, with no RP
/// (both receivers hear of every session); returns their ids.
async fn sessions(serve: &ServeProcess, users: usize) -> HashSet<String> {
    let ids: Vec<(String, String)> = (0..users)
        .flat_map(|u| (0..SESSIONS_PER_USER).map(move |n| (format!("s-{u}-{n}"), format!("u-{u}"))))
        .collect();
    let calls = ids.iter().map(|(sid, user)| async move {
        let body = json!({"id": sid, "user_id": user});
        let (status, reply) = serve
            .call(Method::POST, "/api/v2/sessions", Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
    });
    futures_util::stream::iter(calls)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    ids.into_iter().map(|(sid, _)| sid).collect()
}

/// Waits (bounded) until the push receiver has a valid SET for every session of `sids`;
/// checks that a SET pushed again kept its `jti`, and returns how many were pushed again.
async fn pushed_all(mock: &MockSsfProcess, sids: &HashSet<String>) -> usize {
    let mut got = Vec::new();
    let complete = tokio::time::timeout(WAIT, async {
        loop {
            got = mock.receipts(got.len() + 1).await;
            let seen: HashSet<&str> = got
                .iter()
                .filter_map(|r| r.claims.as_ref()?["sub_id"]["session"]["id"].as_str())
                .collect();
            if seen.len() >= sids.len() {
                return;
            }
        }
    })
    .await;
    assert!(complete.is_ok(), "{} receipts: {got:#?}", got.len());
    let mut jtis: HashMap<String, Vec<String>> = HashMap::new();
    for receipt in &got {
        assert_eq!(receipt.status, Some(202), "{receipt:?}");
        let set = Set::of_receipt(receipt);
        assert_eq!(set.event(), SESSION_REVOKED);
        let sid = set.sid().unwrap().to_owned();
        jtis.entry(sid).or_default().push(set.jti);
    }
    let pushed: HashSet<String> = jtis.keys().cloned().collect();
    assert_eq!(&pushed, sids, "one SET per session");
    let mut repeats = 0;
    for (sid, list) in &jtis {
        assert!(list.iter().all(|j| *j == list[0]), "{sid}: {list:?}");
        repeats += list.len() - 1;
    }
    repeats
}

/// Waits (bounded) until no SET row is pending or in flight, reading them every 50 ms, then
/// checks that every row is delivered: one per stream and session.
async fn all_delivered(world: &World) {
    let settled = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            tick.tick().await;
            let pending = set_rows(&world.serve, "state=pending").await;
            let in_flight = set_rows(&world.serve, "state=in_flight").await;
            if pending.is_empty() && in_flight.is_empty() {
                return;
            }
        }
    })
    .await;
    assert!(settled.is_ok(), "rows are still pending or in flight");
    let rows = set_rows(&world.serve, "").await;
    assert_eq!(
        rows.len(),
        2 * world.sids.len(),
        "one row per stream and session"
    );
    let mut per_stream: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        assert_eq!(row["state"], "delivered", "{row}");
        assert_eq!(row["kind"], "session_revoked", "{row}");
        *per_stream
            .entry(row["stream_id"].as_str().unwrap())
            .or_default() += 1;
    }
    let n = world.sids.len();
    assert_eq!(per_stream[world.push_stream.as_str()], n);
    assert_eq!(per_stream[world.poller.stream_id.as_str()], n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_mass_logout_loses_no_set() {
    const USERS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let world = World::start(dir.path(), USERS, 50, &[]).await;
    let total = world.sids.len();
    let base = world.serve.base.clone();
    world.end_all(USERS).await;

    // Mid-run: the poll receiver acknowledged two batches and holds a third, unacknowledged
    // (its answer is lost with the kill); the push receiver has some of its SETs.
    let mut log = PollLedger::default();
    let first = log.take(&world.poller, &base, 20, &[]).await;
    let second = log.take(&world.poller, &base, 20, &first.jtis()).await;
    let lost = log.take(&world.poller, &base, 20, &second.jtis()).await;
    let sizes = [first.sets.len(), second.sets.len(), lost.sets.len()];
    assert_eq!(sizes, [20; 3]);
    world.mock.receipts(total / 10).await;
    let World { serve, flags, .. } = world;
    serve.kill9().await;
    let pushed = world.mock.receipts_now().await.len();
    assert!(
        pushed < total,
        "the kill came mid-run: {pushed}/{total} pushed"
    );

    let world = World {
        serve: start(dir.path(), &flags).await,
        flags,
        ..world
    };
    world.drain(&mut log).await;
    let poll_repeats = log.check(&world.sids);
    for (jti, set) in &lost.sets {
        let sid = set.sid().unwrap();
        assert_eq!(
            log.handed[sid],
            [jti.clone(), jti.clone()],
            "the lost batch came back once its lease ended, with the same jti"
        );
    }
    let push_repeats = pushed_all(&world.mock, &world.sids).await;
    all_delivered(&world).await;
    eprintln!(
        "kill -9 after {pushed}/{total} pushed and 60/{total} polled: {push_repeats} SETs \
         pushed again, {poll_repeats} polled again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_the_ends_commit_loses_no_set() {
    const USERS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    // With dispatch off on the first run no SET is pushed, and nothing polls before the kill.
    let world = World::start(dir.path(), USERS, 0, &["--dispatch", "false"]).await;
    world.end_all(USERS).await;
    let rows = set_rows(&world.serve, "state=pending").await;
    assert_eq!(rows.len(), 2 * world.sids.len(), "every row is written");
    assert!(
        rows.iter().all(|r| r["attempts"] == 0),
        "none was attempted"
    );
    let World { serve, flags, .. } = world;
    serve.kill9().await;
    assert!(world.mock.receipts_now().await.is_empty());

    let world = World {
        serve: start(dir.path(), &flags).await,
        flags,
        ..world
    };
    let mut log = PollLedger::default();
    world.drain(&mut log).await;
    assert_eq!(log.check(&world.sids), 0, "nothing was handed out twice");
    assert_eq!(
        pushed_all(&world.mock, &world.sids).await,
        0,
        "nor pushed twice"
    );
    all_delivered(&world).await;
}
