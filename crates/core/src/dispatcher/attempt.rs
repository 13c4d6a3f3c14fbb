//! One delivery attempt: mint a fresh token, POST it, classify the outcome.
//!
//! An attempt starts in the fast lane, on one of the `max_in_flight` slots the claim loop
//! hands out. One still running after [`SLOW_LANE_AFTER`] moves to the slow lane (as many
//! slots again) when it has room there, giving its fast slot back at once: attempts waiting on
//! slow or hung RPs then cannot keep the claim loop from starting attempts to healthy ones,
//! whatever the origins' limits were when those attempts started.

use super::Inner;
use super::origin::{OriginSlot, OriginWait, Signal};
use crate::ids::Jti;
use crate::outbox::{AttemptRecord, AttemptResult, ClaimedDelivery, DeliveryScope};
use crate::retry::{self, Decision, OtherFailure, Outcome};
use crate::sender::SendResult;
use crate::token::{LogoutToken, LogoutTokenBuilder, MintError, Subject};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::Sender as ResultTx;

/// How long an attempt may hold a fast-lane slot before it moves to the slow lane: 1 s, far
/// above a healthy RP's answer (milliseconds) and well below the attempt timeout (5 s).
pub(super) const SLOW_LANE_AFTER: Duration = Duration::from_secs(1);

/// Mints the logout token for one attempt (OIDC Back-Channel Logout 1.0 §2.4): a new `jti`,
/// `iat` and `exp`, the current key for the client's alg, the client's `typ`, `sub` and
/// `sid` (the client's own sid in the session when it joined with one), `session_metadata`
/// only for clients that opted in (omitted when empty), and `txn` (the end's event id) only
/// when the operator turned `logout_token_txn` on.
/// A `user` delivery (one for every session a user-wide end ended) carries `sub` alone: no
/// `sid`, and no `session_metadata`, which belongs to one session.
pub(super) fn mint(
    inner: &Inner,
    row: &ClaimedDelivery,
    now: DateTime<Utc>,
) -> Result<(LogoutToken, Jti), MintError> {
    let user = row.delivery.user_id.clone();
    let subject = match row.delivery.token_sid() {
        Some(sid) => Subject::Both(user, sid.clone()),
        None => Subject::Sub(user),
    };
    let mut builder = LogoutTokenBuilder::new(&inner.issuer, &row.client.client_id, subject, now)
        .lifetime(inner.token_lifetime)?;
    if row.delivery.scope == DeliveryScope::Session
        && row.client.includes_metadata()
        && !row.session_metadata.is_empty()
    {
        builder = builder.session_metadata(&row.session_metadata);
    }
    if inner.logout_token_txn {
        builder = builder.txn(row.delivery.event_id.as_str());
    }
    let claims = builder.build();
    let keys = inner.keys.current();
    let token = keys.sign(
        row.client.id_token_signed_response_alg,
        row.client.logout_token_typ,
        &claims,
    )?;
    Ok((LogoutToken::new(token), claims.jti))
}

/// The token as the client receives it: unchanged, or, for a client that registered ID-token
/// encryption, encrypted to its key (OpenID Connect Core 1.0 §10.2: signed, then encrypted,
/// with `cty: "JWT"` and `iss` replicated in the JWE header as RFC 7519 §5.3 allows). Never
/// falls back to the unencrypted token: without a key the attempt fails, and is retried.
async fn encrypt_for(
    inner: &Inner,
    row: &ClaimedDelivery,
    token: LogoutToken,
) -> Result<LogoutToken, String> {
    let Some((alg, enc)) = row.client.encryption() else {
        return Ok(token);
    };
    let key = inner.client_keys.recipient(&row.client, alg).await?;
    let mut header = serde_json::Map::new();
    header.insert("cty".into(), "JWT".into());
    header.insert("iss".into(), inner.issuer.as_str().into());
    crate::jwe::encrypt(token.expose().as_bytes(), &key, alg, enc, header)
        .map(LogoutToken::new)
        .map_err(|err| err.to_string())
}

/// Runs one admitted row to a recorded result (or hands it back on shutdown).
pub(super) async fn run(
    inner: Arc<Inner>,
    row: ClaimedDelivery,
    mut slot: OwnedSemaphorePermit,
    origin: OriginSlot,
    results: ResultTx<AttemptResult>,
) {
    let Some(url) = row.client.logout_url() else {
        inner.hand_back(&row, inner.clock.now()).await;
        return;
    };
    if inner.shutdown.is_cancelled() {
        inner.hand_back(&row, inner.clock.now()).await;
        return;
    }
    let (result, signal) = attempt(&inner, &row, url, &mut slot).await;
    origin.record(signal);
    drop(origin);
    hand_over(&results, result, slot).await;
}

/// Waits (briefly, holding only `place` among the rows that wait) for a slot of the row's
/// origin and then for a global slot, and runs the attempt; hands the row back if the origin
/// stays full or on shutdown.
pub(super) async fn run_after_wait(
    inner: Arc<Inner>,
    row: ClaimedDelivery,
    wait: OriginWait,
    place: OwnedSemaphorePermit,
    results: ResultTx<AttemptResult>,
) {
    let admitted = tokio::select! {
        biased;
        _ = inner.shutdown.cancelled() => Err(Duration::ZERO),
        admitted = wait.admitted() => admitted,
    };
    drop(place);
    let origin = match admitted {
        Ok(origin) => origin,
        Err(defer) => {
            if !defer.is_zero() {
                inner.metrics.origin_deferrals.inc();
            }
            let due = inner.clock.now() + chrono::Duration::from_std(defer).unwrap_or_default();
            if defer.is_zero() {
                // Shutdown: back at once, with the attempt it was claimed for still to come.
                inner.hand_back(&row, due).await;
            } else {
                inner.defer(&row, due).await;
            }
            return;
        }
    };
    let slot = tokio::select! {
        biased;
        _ = inner.shutdown.cancelled() => None,
        slot = inner.in_flight.clone().acquire_owned() => slot.ok(),
    };
    match slot {
        Some(slot) => run(inner, row, slot, origin, results).await,
        None => inner.hand_back(&row, inner.clock.now()).await,
    }
}

/// Sends `token`, moving the attempt to the slow lane if it takes longer than
/// [`SLOW_LANE_AFTER`].
async fn send(
    inner: &Inner,
    url: &url::Url,
    token: &LogoutToken,
    slot: &mut OwnedSemaphorePermit,
) -> SendResult {
    let sending = inner.sender.send(url, token);
    let mut sending = std::pin::pin!(sending);
    tokio::select! {
        biased;
        sent = &mut sending => return sent,
        _ = tokio::time::sleep(SLOW_LANE_AFTER) => {}
    }
    if let Ok(slow) = inner.slow_lane.clone().try_acquire_owned() {
        // The fast slot goes back to the claim loop now.
        *slot = slow;
        inner.metrics.slow_lane_moves.inc();
    }
    sending.await
}

/// What an attempt's outcome says about its origin's capacity.
fn signal(outcome: &Outcome) -> Signal {
    match outcome {
        Outcome::Status {
            code: 429 | 503, ..
        }
        | Outcome::Timeout => Signal::Congested,
        Outcome::Status { .. } => Signal::Answered,
        _ => Signal::Neutral,
    }
}

/// Queues `result` for the recorder, and only then gives up the attempt's in-flight slot.
/// When results are recorded more slowly than attempts finish (a slow database), claims thus
/// slow down to match, instead of finished attempts piling up in memory, each with its task,
/// waiting for room in the queue while their slots let ever more rows be claimed.
async fn hand_over(
    results: &ResultTx<AttemptResult>,
    result: AttemptResult,
    slot: OwnedSemaphorePermit,
) {
    if let Err(unsent) = results.send(result).await {
        tracing::error!(delivery_id = %unsent.0.id, "result channel closed; the lease will expire and the row be retried");
    }
    drop(slot);
}

async fn attempt(
    inner: &Inner,
    row: &ClaimedDelivery,
    url: &url::Url,
    slot: &mut OwnedSemaphorePermit,
) -> (AttemptResult, Signal) {
    let started = inner.clock.now();
    let (outcome, latency, jti) = match mint(inner, row, started) {
        Ok((token, jti)) => match encrypt_for(inner, row, token).await {
            Ok(token) => {
                let sent = send(inner, url, &token, slot).await;
                (sent.outcome, sent.latency, jti)
            }
            Err(why) => (
                Outcome::Other(OtherFailure::CannotEncrypt(why)),
                std::time::Duration::ZERO,
                jti,
            ),
        },
        Err(err) => (
            Outcome::Other(OtherFailure::CannotSign(err)),
            std::time::Duration::ZERO,
            Jti::new(""),
        ),
    };
    let attempts_made = row.delivery.attempts.saturating_add(1);
    let decision = retry::decide(
        &inner.retry,
        &outcome,
        attempts_made,
        row.budget_started_at,
        inner.clock.now(),
        rand::random::<f64>(),
    );
    let (status, error) = describe(&outcome);
    let record = AttemptRecord {
        at: started,
        status,
        error,
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        jti,
    };
    inner.observe(row, attempts_made, &record, &decision, latency);
    let result = AttemptResult {
        id: row.delivery.id.clone(),
        lease: row.lease.clone(),
        attempt: record,
        decision,
    };
    (result, signal(&outcome))
}

/// The status and error text an attempt record keeps. The RP's own text was cleaned when
/// the sender read it; control characters are stripped here from every kind of message
/// (transport errors can quote a peer, such as a certificate name) before it is stored.
pub(crate) fn describe(outcome: &Outcome) -> (Option<u16>, Option<String>) {
    let (status, text) = describe_raw(outcome);
    (status, text.map(|text| retry::strip_controls(&text)))
}

fn describe_raw(outcome: &Outcome) -> (Option<u16>, Option<String>) {
    match outcome {
        Outcome::Status { code, error, .. } => {
            let text = error.as_ref().map(|e| {
                let code = e.error.as_deref().unwrap_or("");
                match e.error_description.as_deref() {
                    Some(desc) => format!("{code}: {desc}"),
                    None => code.to_owned(),
                }
            });
            (Some(*code), text)
        }
        Outcome::Timeout => (None, Some("timeout".to_owned())),
        Outcome::Connect(e) => (None, Some(format!("connect: {e}"))),
        Outcome::Tls(e) => (None, Some(format!("tls: {e}"))),
        Outcome::Reset(e) => (None, Some(format!("reset: {e}"))),
        Outcome::Refused(e) => (None, Some(format!("refused: {e}"))),
        Outcome::Other(e) => (None, Some(e.to_string())),
    }
}

/// The metric label of a decision.
pub(crate) fn outcome_label(decision: &Decision) -> &'static str {
    match decision {
        Decision::Delivered => "delivered",
        Decision::RetryAt(_) => "retry",
        Decision::GiveUp(_) => "failed",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ids::{DeliveryId, LeaseId};
    use tokio::sync::Semaphore;

    fn result(n: u32) -> AttemptResult {
        AttemptResult {
            id: DeliveryId::new(format!("dlv_{n}")),
            lease: LeaseId::new("lease"),
            attempt: AttemptRecord {
                at: DateTime::UNIX_EPOCH,
                status: Some(204),
                error: None,
                latency_ms: 1,
                jti: Jti::new("jti"),
            },
            decision: Decision::Delivered,
        }
    }

    #[test]
    fn timeouts_429_and_503_shrink_an_origin_other_answers_grow_it() {
        assert_eq!(signal(&Outcome::Timeout), Signal::Congested);
        assert_eq!(signal(&Outcome::status(429)), Signal::Congested);
        assert_eq!(signal(&Outcome::status(503)), Signal::Congested);
        for code in [200, 204, 400, 404, 500, 502] {
            assert_eq!(signal(&Outcome::status(code)), Signal::Answered, "{code}");
        }
        assert_eq!(signal(&Outcome::Connect("refused".into())), Signal::Neutral);
        assert_eq!(signal(&Outcome::Reset("reset".into())), Signal::Neutral);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_slot_is_held_until_the_result_is_queued() {
        let slots = Arc::new(Semaphore::new(1));
        let slot = slots.clone().try_acquire_owned().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        tx.send(result(1)).await.unwrap();
        let handing = tokio::spawn(async move { hand_over(&tx, result(2), slot).await });
        // The task runs until the full queue makes it wait.
        tokio::task::yield_now().await;
        assert!(!handing.is_finished());
        assert_eq!(
            slots.available_permits(),
            0,
            "slot given up with the result unqueued"
        );
        assert_eq!(rx.recv().await.unwrap().id.as_str(), "dlv_1");
        handing.await.unwrap();
        assert_eq!(slots.available_permits(), 1);
        assert_eq!(rx.recv().await.unwrap().id.as_str(), "dlv_2");
    }
}
