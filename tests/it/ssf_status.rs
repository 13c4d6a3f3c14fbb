//! A stream's status end to end (SSF 1.0 §8.1.2, §8.1.5), on `logoutd serve --ssf true`:
//!
//! - paused, a stream holds its SETs as pending rows and releases them once enabled again:
//!   a poll stream hands them out exactly oldest first; a push stream starts them oldest
//!   first, at most 4 at once, so the receiver sees each after all but at most 3 older ones;
//! - disabled, it drops new events and cancels the ones it held;
//! - the operator pausing a push stream tells the receiver first with a `stream-updated` SET
//!   (checked by the strict `mock-ssf`), and enabling it tells it again; a status the receiver
//!   sets itself sends no event.
//!
//! That nothing arrives while a push stream is paused is checked against a second, enabled
//! receiver of the same session ends: once it has its SETs, the worker has claimed past the
//! paused stream's rows, which must still be pending and unattempted.

use crate::support::serve_process::ServeProcess;
use crate::support::ssf::{
    Batch, MockSsfProcess, Poller, Receiver, Set, end_session, operator_status, session, set_rows,
};
use logoutd_core::{SESSION_REVOKED, STREAM_UPDATED};
use std::path::Path;

/// Most SETs of one stream the push worker has in flight at once.
const PER_STREAM: usize = 4;

/// Creates sessions `{prefix}-0`…`{prefix}-{n-1}` of one user; returns their ids in order.
async fn sessions(serve: &ServeProcess, prefix: &str, n: usize) -> Vec<String> {
    let mut sids = Vec::new();
    for i in 0..n {
        let sid = format!("{prefix}-{i}");
        session(serve, &sid, "u-1").await;
        sids.push(sid);
    }
    sids
}

/// Ends `sids` one after the other, each call answered before the next is sent.
async fn end_in_order(serve: &ServeProcess, sids: &[String]) {
    for sid in sids {
        end_session(serve, sid).await;
    }
}

/// The SET rows of `stream` in `state` of `kind`.
async fn rows(
    serve: &ServeProcess,
    stream: &str,
    state: &str,
    kind: &str,
) -> Vec<serde_json::Value> {
    set_rows(
        serve,
        &format!("stream_id={stream}&state={state}&kind={kind}"),
    )
    .await
}

/// Polls one SET at a time, acknowledging each in the next poll, until a poll finds none;
/// returns them in the order they were handed out.
async fn poll_one_by_one(poller: &Poller, base: &str) -> Vec<Set> {
    let mut got = Vec::new();
    let mut ack = Vec::new();
    loop {
        let Batch { sets, more } = poller.take(base, 1, &ack).await;
        assert!(sets.len() <= 1);
        match sets.into_values().next() {
            Some(set) => {
                ack = vec![set.jti.clone()];
                got.push(set);
            }
            None => {
                assert!(!more);
                return got;
            }
        }
    }
}

/// The sessions of `session-revoked` SETs, in order.
fn sids_of(sets: &[Set]) -> Vec<&str> {
    sets.iter().filter_map(Set::sid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_poll_stream_holds_its_sets_and_releases_them_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(dir.path(), &["--ssf", "true"]).await;
    let base = serve.base.clone();
    let audit = Receiver::register(&serve, "audit").await;
    let poller = Poller::create(&base, &audit, &base).await;
    let stream = poller.stream_id.clone();
    let sids = sessions(&serve, "s", 12).await;

    // One SET handed out while enabled; then the receiver pauses and five sessions end.
    end_in_order(&serve, &sids[..1]).await;
    let before = poller.take(&base, 10, &[]).await;
    assert_eq!(
        sids_of(&before.sets.values().cloned().collect::<Vec<_>>()),
        ["s-0"]
    );
    audit.set_status(&base, &stream, "paused").await;
    end_in_order(&serve, &sids[1..6]).await;

    // Paused: a poll hands out nothing, but its ack still applies; the rows wait.
    let paused = poller.take(&base, 10, &before.jtis()).await;
    assert!(paused.sets.is_empty() && !paused.more, "{paused:?}");
    assert_eq!(
        rows(&serve, &stream, "delivered", "session_revoked")
            .await
            .len(),
        1
    );
    let held = rows(&serve, &stream, "pending", "session_revoked").await;
    assert_eq!(held.len(), 5);
    assert!(held.iter().all(|r| r["attempts"] == 0));

    // Enabled: exactly in the order of the ends.
    audit.set_status(&base, &stream, "enabled").await;
    let released = poll_one_by_one(&poller, &base).await;
    assert_eq!(sids_of(&released), ["s-1", "s-2", "s-3", "s-4", "s-5"]);
    assert_eq!(
        released.len(),
        5,
        "no stream-updated for the receiver's own change"
    );

    // The operator pauses: the receiver hears of it, and of nothing else until enabled.
    operator_status(&serve, &stream, "paused").await;
    end_in_order(&serve, &sids[6..9]).await;
    let told = poll_one_by_one(&poller, &base).await;
    let statuses: Vec<_> = told.iter().map(Set::stream_status).collect();
    assert_eq!(statuses, [Some("paused")]);
    assert_eq!(
        rows(&serve, &stream, "pending", "session_revoked")
            .await
            .len(),
        3
    );
    operator_status(&serve, &stream, "enabled").await;
    let released = poll_one_by_one(&poller, &base).await;
    assert_eq!(sids_of(&released), ["s-6", "s-7", "s-8"]);
    assert_eq!(
        released.last().and_then(Set::stream_status),
        Some("enabled"),
        "the enable's stream-updated row was written after the held ones"
    );
    assert_eq!(released.len(), 4);

    // Disabled: the held SET is cancelled, a later end writes nothing for the stream.
    audit.set_status(&base, &stream, "paused").await;
    end_in_order(&serve, &sids[9..10]).await;
    audit.set_status(&base, &stream, "disabled").await;
    let cancelled = rows(&serve, &stream, "cancelled", "session_revoked").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        cancelled[0]["last_error"],
        "the stream was disabled or deleted"
    );
    end_in_order(&serve, &sids[10..11]).await;
    audit.set_status(&base, &stream, "enabled").await;
    end_in_order(&serve, &sids[11..]).await;
    let after = poll_one_by_one(&poller, &base).await;
    assert_eq!(
        sids_of(&after),
        ["s-11"],
        "s-9 was cancelled, s-10 never written"
    );
    let all = set_rows(&serve, &format!("stream_id={stream}&kind=session_revoked")).await;
    assert_eq!(all.len(), 11, "no row for s-10");
}

/// A push receiver and a second, enabled one (the barrier) of every session end.
struct Pushed {
    serve: ServeProcess,
    siem: Receiver,
    siem_mock: MockSsfProcess,
    stream: String,
    canary: MockSsfProcess,
}

impl Pushed {
    async fn start(dir: &Path, delay_ms: &str) -> Self {
        let serve = ServeProcess::start(dir, &["--ssf", "true"]).await;
        let siem = Receiver::register(&serve, "siem").await;
        let siem_mock =
            MockSsfProcess::start(dir, &serve.base, &siem, &["--delay", delay_ms]).await;
        let stream = siem.stream_id(&serve.base).await;
        let canary = Receiver::register(&serve, "canary").await;
        let canary = MockSsfProcess::start(dir, &serve.base, &canary, &[]).await;
        Self {
            serve,
            siem,
            siem_mock,
            stream,
            canary,
        }
    }

    /// Waits until the canary has `n` SETs, then checks that the paused stream holds
    /// `held` rows, pending and never attempted, and that its receiver has `received` SETs.
    async fn holds(&self, n: usize, held: usize, received: usize) {
        self.canary.receipts(n).await;
        let pending = rows(&self.serve, &self.stream, "pending", "session_revoked").await;
        assert_eq!(pending.len(), held, "{pending:#?}");
        assert!(pending.iter().all(|r| r["attempts"] == 0), "{pending:#?}");
        assert_eq!(self.siem_mock.receipts_now().await.len(), received);
    }
}

/// How many older SETs the one that overtook the most arrived ahead of, given each SET's
/// place in the order of the ends, in the order they arrived.
fn most_overtaken(arrived: &[usize]) -> usize {
    (0..arrived.len())
        .map(|i| {
            arrived[i + 1..]
                .iter()
                .filter(|&&later| later < arrived[i])
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_push_stream_holds_its_sets_and_releases_them_in_order() {
    const HELD: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let world = Pushed::start(dir.path(), "20").await;
    let base = world.serve.base.clone();
    let sids = sessions(&world.serve, "s", HELD + 4).await;

    world.siem.set_status(&base, &world.stream, "paused").await;
    end_in_order(&world.serve, &sids[..HELD]).await;
    world.holds(HELD, HELD, 0).await;

    world.siem.set_status(&base, &world.stream, "enabled").await;
    let got: Vec<Set> = world
        .siem_mock
        .receipts(HELD)
        .await
        .iter()
        .map(Set::of_receipt)
        .collect();
    let places: Vec<usize> = sids_of(&got)
        .iter()
        .map(|sid| sids.iter().position(|s| s == sid).unwrap())
        .collect();
    let mut sorted = places.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..HELD).collect::<Vec<_>>(),
        "each once, nothing else"
    );
    let overtaken = most_overtaken(&places);
    eprintln!("released push order {places:?}: a SET overtook at most {overtaken} older ones");
    assert!(
        overtaken < PER_STREAM,
        "started oldest first, {PER_STREAM} at once: {places:?}"
    );

    // Disabled: the held SETs are cancelled, a later end writes nothing for the stream.
    world.siem.set_status(&base, &world.stream, "paused").await;
    end_in_order(&world.serve, &sids[HELD..HELD + 2]).await;
    world.holds(HELD + 2, 2, HELD).await;
    world
        .siem
        .set_status(&base, &world.stream, "disabled")
        .await;
    assert_eq!(
        rows(&world.serve, &world.stream, "cancelled", "session_revoked")
            .await
            .len(),
        2
    );
    end_in_order(&world.serve, &sids[HELD + 2..HELD + 3]).await;
    world.siem.set_status(&base, &world.stream, "enabled").await;
    end_in_order(&world.serve, &sids[HELD + 3..]).await;
    let last = world.siem_mock.receipts(HELD + 1).await;
    world.canary.receipts(HELD + 4).await;
    let after: Vec<Set> = last[HELD..].iter().map(Set::of_receipt).collect();
    assert_eq!(sids_of(&after), [sids[HELD + 3].as_str()]);
    let query = format!("stream_id={}&kind=session_revoked", world.stream);
    let states: Vec<_> = set_rows(&world.serve, &query)
        .await
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .collect();
    let delivered = states.iter().filter(|s| *s == "delivered").count();
    assert_eq!(
        (states.len(), delivered),
        (HELD + 3, HELD + 1),
        "two cancelled, none for the end while disabled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_pausing_a_push_stream_sends_stream_updated_first() {
    let dir = tempfile::tempdir().unwrap();
    let world = Pushed::start(dir.path(), "0").await;
    let (serve, stream) = (&world.serve, world.stream.as_str());
    let sids = sessions(serve, "s", 4).await;

    // The receiver's own changes send nothing.
    world.siem.set_status(&serve.base, stream, "paused").await;
    world.siem.set_status(&serve.base, stream, "enabled").await;
    let updates = set_rows(serve, &format!("stream_id={stream}&kind=stream_updated")).await;
    assert!(updates.is_empty(), "{updates:#?}");

    // The operator's pause is announced, then the stream holds the session ends.
    operator_status(serve, stream, "paused").await;
    let told = world.siem_mock.receipts(1).await;
    let first = Set::of_receipt(&told[0]);
    assert_eq!(first.event(), STREAM_UPDATED);
    assert_eq!(first.stream_status(), Some("paused"));
    assert_eq!(
        first.claims["sub_id"],
        serde_json::json!({"format": "opaque", "id": stream})
    );
    assert_eq!(
        first.claims["events"][STREAM_UPDATED]["reason"],
        "operator: paused"
    );
    end_in_order(serve, &sids).await;
    world.holds(4, 4, 1).await;

    // Enabled: announced, and the held SETs follow (in no asserted order with the notice).
    operator_status(serve, stream, "enabled").await;
    let got: Vec<Set> = world
        .siem_mock
        .receipts(6)
        .await
        .iter()
        .map(Set::of_receipt)
        .collect();
    assert_eq!(got.len(), 6, "{got:#?}");
    let statuses: Vec<_> = got.iter().filter_map(Set::stream_status).collect();
    assert_eq!(statuses, ["paused", "enabled"]);
    let mut revoked: Vec<&str> = sids_of(&got);
    revoked.sort_unstable();
    assert_eq!(revoked, ["s-0", "s-1", "s-2", "s-3"]);
    assert!(
        got.iter()
            .all(|s| [STREAM_UPDATED, SESSION_REVOKED].contains(&s.event()))
    );
    let updates = set_rows(serve, &format!("stream_id={stream}&kind=stream_updated")).await;
    assert_eq!(updates.len(), 2, "one per operator change");
    assert!(updates.iter().all(|r| r["state"] == "delivered"));
}
