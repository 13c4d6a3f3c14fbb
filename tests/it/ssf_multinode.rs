//! Poll delivery (RFC 8936) across two `logoutd serve --ssf true` nodes on one PostgreSQL
//! database: the receiver polls either node, and the outbox they share hands out every SET
//! until it is acknowledged (a lost answer's SETs come back once their lease ends, with the
//! same `jti`), never hands out an acknowledged one again, and a long poll held on one node is
//! woken by a session end committed on the other.
//!
//! Skipped with a warning without a PostgreSQL server, or failed when `CI=true`, like the
//! other PostgreSQL tests.

use crate::store::postgres::TestDatabase;
use crate::support::serve_process::ServeProcess;
use crate::support::ssf::{
    Batch, PollLedger, Poller, Receiver, WAIT, end_session, session, set_rows,
};
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Both nodes' issuer: the `iss` of every SET, whichever node signs it.
const ISSUER: &str = "https://logoutd.test";
const USERS: usize = 4;
const SESSIONS_PER_USER: usize = 10;

/// Two nodes on a fresh database (the first creates the shared keys), with a 2 s poll lease,
/// and a receiver's poll stream created through the first.
struct Cluster {
    _db: TestDatabase,
    _dir: tempfile::TempDir,
    a: ServeProcess,
    b: ServeProcess,
    poller: Poller,
}

impl Cluster {
    async fn start() -> Option<Self> {
        let db = TestDatabase::create().await?;
        let dir = tempfile::tempdir().unwrap();
        let flags = [
            "--ssf",
            "true",
            "--issuer",
            ISSUER,
            "--ssf-poll-lease-seconds",
            "2",
        ];
        let a = ServeProcess::start_on(dir.path(), &db.url, &flags).await;
        let b = ServeProcess::start_on(dir.path(), &db.url, &flags).await;
        let audit = Receiver::register(&a, "audit").await;
        let poller = Poller::create(&a.base, &audit, ISSUER).await;
        Some(Self {
            _db: db,
            _dir: dir,
            a,
            b,
            poller,
        })
    }

    /// The node for call `i`: A, B, A, …
    fn node(&self, i: usize) -> &ServeProcess {
        if i.is_multiple_of(2) {
            &self.a
        } else {
            &self.b
        }
    }
}

/// Creates the sessions through both nodes, then ends the first half of the users through A
/// (user-wide) and the other users' sessions one by one through B; returns the sessions.
async fn end_through_both(c: &Cluster) -> HashSet<String> {
    let mut sids = HashSet::new();
    for u in 0..USERS {
        for n in 0..SESSIONS_PER_USER {
            let sid = format!("s-{u}-{n}");
            session(c.node(n), &sid, &format!("u-{u}")).await;
            sids.insert(sid);
        }
    }
    for u in 0..USERS / 2 {
        let path = format!("/api/v2/users/u-{u}/sessions");
        let (status, reply) = c.a.call(Method::DELETE, &path, None).await;
        assert_eq!(status, 202, "{reply}");
    }
    for u in USERS / 2..USERS {
        for n in 0..SESSIONS_PER_USER {
            end_session(&c.b, &format!("s-{u}-{n}")).await;
        }
    }
    sids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_alternating_between_two_nodes_lose_nothing_and_repeat_nothing_acknowledged() {
    let Some(c) = Cluster::start().await else {
        return;
    };
    let sids = end_through_both(&c).await;
    let started = Instant::now();
    let mut ledger = PollLedger::default();
    // The `jti`s of the batches whose answer was "lost" (never acknowledged): every third of
    // the first nine answers, unless it brings a lost SET back.
    let mut lost: HashSet<String> = HashSet::new();
    let lose = |polls: usize, batch: &Batch| {
        let fresh = batch.sets.keys().all(|jti| !lost.contains(jti));
        let lose = polls % 3 == 2 && polls < 9 && !batch.sets.is_empty() && fresh;
        if lose {
            lost.extend(batch.jtis());
        }
        lose
    };
    let node = |polls: usize| c.node(polls).base.clone();
    let polls = ledger.drain(&c.poller, node, 7, &sids, lose).await;
    for node in [&c.a, &c.b] {
        let empty = c.poller.take(&node.base, 100, &[]).await;
        assert!(empty.sets.is_empty() && !empty.more, "{empty:?}");
    }

    ledger.check(&sids);
    for (sid, jtis) in &ledger.handed {
        let lost = lost.contains(&jtis[0]);
        assert_eq!(jtis.len(), 1 + usize::from(lost), "{sid}: {jtis:?}");
    }
    assert!(!lost.is_empty());
    let rows = set_rows(&c.a, &format!("stream_id={}", c.poller.stream_id)).await;
    assert_eq!(rows.len(), sids.len());
    assert!(rows.iter().all(|r| r["state"] == "delivered"), "{rows:#?}");
    eprintln!(
        "{} SETs over {polls} polls alternating between two nodes in {:?}; {} lost and handed \
         out again",
        sids.len(),
        started.elapsed(),
        lost.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_one_node_is_woken_by_an_end_on_the_other() {
    let Some(c) = Cluster::start().await else {
        return;
    };
    session(&c.b, "s-late", "u-1").await;
    let empty = c.poller.take(&c.b.base, 10, &[]).await;
    assert!(empty.sets.is_empty());

    let poller = c.poller.clone();
    let base = c.b.base.clone();
    let mut held = tokio::spawn(async move {
        let body = json!({"maxEvents": 10, "returnImmediately": false});
        let batch = poller.poll(&base, body).await;
        (batch, Instant::now())
    });
    // Nothing to hand out: node B holds the poll.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut held).await;
    assert!(early.is_err(), "the poll was held");

    let ended = Instant::now();
    end_session(&c.a, "s-late").await;
    let (batch, answered) = tokio::time::timeout(WAIT, held).await.unwrap().unwrap();
    let woken = answered.duration_since(ended);
    let sids: Vec<_> = batch.sets.values().filter_map(|s| s.sid()).collect();
    assert_eq!(sids, ["s-late"]);
    eprintln!("a long poll on node B answered {woken:?} after the end on node A");
    assert!(
        woken < Duration::from_secs(5),
        "well under the 25 s hold: {woken:?}"
    );
}
