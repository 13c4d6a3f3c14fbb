//! The SET push worker (RFC 8935): claims due push rows under a lease, oldest first, signs
//! each with the current RS256 key (its `jti` and `iat` fixed when the row was written),
//! POSTs it to the stream's endpoint as the stream holds it now, and records the result with
//! the decision table of `push`. Attempts run side by side up to a cap, each recorded as soon
//! as it ends, and no stream holds more than a few of the slots, so a slow receiver never
//! holds up another's SETs, nor the logout tokens (the dispatcher has its own).
//!
//! A claim takes of each stream only as many rows as it has free slots, its oldest due ones
//! (see [`PushRoom`]), and none of a stream whose slots are all busy: a stream's SETs start in
//! the order they were written, at most [`PER_STREAM`] at once, and a slot that frees is
//! taken by the stream's next SET at once. A receiver may still see them out of order by up
//! to that many (attempts run side by side), and a SET retried after an error comes later.

use super::push::decide_push;
use super::set::mint;
use super::{ClaimedSet, PushRoom, SetResult};
use crate::alg::SigningAlg;
use crate::clock::SharedClock;
use crate::dispatcher::attempt::outcome_label;
use crate::ids::{Issuer, LeaseId};
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::retry::{OtherFailure, Outcome, RetryPolicy};
use crate::sender::Sender;
use crate::store::SsfStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// SETs pushed at once, over every stream.
pub(crate) const CONCURRENCY: usize = 32;

/// SETs of one stream pushed at once: the rest of the slots stay free for other streams.
pub(crate) const PER_STREAM: usize = 4;

/// How long a row claimed beyond its stream's share waits before it is claimable again.
const SHARE_BACKOFF: chrono::Duration = chrono::Duration::milliseconds(200);

/// How often the worker looks for due rows when nothing woke it: the wake-up of a session end
/// or a verification on this node is immediate; this bounds the delay for rows other nodes
/// wrote, retries coming due, and streams enabled elsewhere.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the worker runs on.
pub struct SetWorkerParts {
    /// The SET outbox.
    pub store: Arc<dyn SsfStore>,
    /// Woken when rows were written on this node.
    pub wake: Arc<Notify>,
    /// The HTTP client (its net policy, timeout and no-redirect rule apply).
    pub sender: Sender,
    /// The signing keys; SETs are signed with the active RS256 key.
    pub keys: Arc<KeyRing>,
    /// The transmitter's `iss`, byte-identical to the metadata's `issuer`.
    pub issuer: Issuer,
    /// Time.
    pub clock: SharedClock,
    /// The retry schedule and budgets, the same as logout tokens'.
    pub retry: RetryPolicy,
    /// How long a claim holds a row.
    pub lease: Duration,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The SET push worker.
pub struct SetWorker {
    parts: Arc<SetWorkerParts>,
    shutdown: CancellationToken,
}

impl SetWorker {
    /// A worker that stops claiming when `shutdown` is cancelled.
    pub fn new(parts: SetWorkerParts, shutdown: CancellationToken) -> Self {
        Self {
            parts: Arc::new(parts),
            shutdown,
        }
    }

    /// Runs until shutdown. Attempts already started finish (each within the sender's
    /// timeout) and their results are recorded before it returns.
    pub async fn run(self) {
        let mut running: JoinSet<(String, SetResult)> = JoinSet::new();
        let mut room = PushRoom::new(PER_STREAM);
        while !self.shutdown.is_cancelled() {
            let free = CONCURRENCY.saturating_sub(running.len());
            let claimed = match free {
                0 => Vec::new(),
                n => self.claim(n, &room).await,
            };
            let mut started = 0;
            let mut over_share = Vec::new();
            for claim in claimed {
                let slots = room
                    .running
                    .entry(claim.row.set.stream_id.clone())
                    .or_default();
                if *slots >= PER_STREAM {
                    over_share.push((claim.row.set.id.clone(), claim.lease.clone()));
                    continue;
                }
                *slots += 1;
                started += 1;
                let parts = self.parts.clone();
                running.spawn(async move {
                    let stream = claim.row.set.stream_id.clone();
                    (stream, attempt(&parts, &claim).await)
                });
            }
            self.give_back(&over_share).await;
            if started > 0 && running.len() < CONCURRENCY {
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = self.parts.wake.notified(), if running.len() < CONCURRENCY => {}
                _ = tokio::time::sleep(POLL_INTERVAL), if running.len() < CONCURRENCY => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    self.finished(done, &mut room).await;
                }
            }
        }
        while let Some(done) = running.join_next().await {
            self.finished(done, &mut room).await;
        }
    }

    /// Up to `n` due rows, each stream's oldest and no more than its `room`; none when the
    /// store fails (logged).
    async fn claim(&self, n: usize, room: &PushRoom) -> Vec<ClaimedSet> {
        let now = self.parts.clock.now();
        let lease = chrono::Duration::from_std(self.parts.lease).unwrap_or(chrono::Duration::MAX);
        match self.parts.store.claim_push(now, lease, n, room).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %crate::error::chain(&err), "claiming SETs failed");
                Vec::new()
            }
        }
    }

    /// Gives back rows claimed beyond their stream's share (which the store's claim does not
    /// return), claimable again shortly.
    async fn give_back(&self, leases: &[(String, LeaseId)]) {
        if leases.is_empty() {
            return;
        }
        let due = self.parts.clock.now() + SHARE_BACKOFF;
        if let Err(err) = self.parts.store.release_sets(leases, due).await {
            tracing::warn!(error = %crate::error::chain(&err), "giving back SETs failed");
        }
    }

    /// Records a finished attempt and frees its slot.
    async fn finished(
        &self,
        done: Result<(String, SetResult), tokio::task::JoinError>,
        room: &mut PushRoom,
    ) {
        let Ok((stream, result)) = done else {
            tracing::error!("a SET attempt task failed");
            return;
        };
        if let Some(slots) = room.running.get_mut(&stream) {
            *slots = slots.saturating_sub(1);
            if *slots == 0 {
                room.running.remove(&stream);
            }
        }
        match self.parts.store.record_set(&result).await {
            Ok(true) => self.parts.metrics.count_set_attempt(&result.decision),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(set_id = %result.id, error = %crate::error::chain(&err), "recording a SET attempt failed");
            }
        }
    }
}

/// Signs and pushes one SET, and decides what follows.
async fn attempt(p: &SetWorkerParts, claim: &ClaimedSet) -> SetResult {
    let row = &claim.row;
    let at = p.clock.now();
    let attempts = row.attempts.saturating_add(1);
    let keys = p.keys.current();
    let token = match keys.active_key(SigningAlg::RS256) {
        Some(key) => mint(row, &claim.aud, p.issuer.as_str(), key)
            .map_err(|err| format!("cannot sign the SET: {err}")),
        None => Err("cannot sign the SET: no active RS256 key".to_owned()),
    };
    let outcome = match (token, url::Url::parse(&claim.endpoint_url)) {
        (Ok(token), Ok(url)) => {
            p.sender
                .push_set(&url, &token, claim.authorization_header.as_deref())
                .await
                .outcome
        }
        (Err(why), _) => Outcome::Other(OtherFailure::Transport(why)),
        (_, Err(_)) => Outcome::Other(OtherFailure::NoHost),
    };
    let verdict = decide_push(
        &p.retry,
        &outcome,
        attempts,
        row.budget_started_at,
        p.clock.now(),
        rand::random::<f64>(),
    );
    let decision = verdict.decision;
    let status = match &outcome {
        Outcome::Status { code, .. } => Some(*code),
        _ => None,
    };
    let error = verdict.last_error;
    tracing::info!(
        set_id = %row.set.id,
        stream_id = %row.set.stream_id,
        kind = row.set.kind.as_str(),
        attempt = attempts,
        status = status,
        outcome = outcome_label(&decision),
        "SET push attempt"
    );
    SetResult {
        id: row.set.id.clone(),
        lease: claim.lease.clone(),
        decision,
        status,
        error,
        at,
    }
}
