//! The operator webhook worker: claims due events under a lease, oldest first, a few at a
//! time, posts each as a signed Standard Webhooks request, and records the result with the
//! retry decision of logout tokens ([`crate::retry::decide`]). It runs beside the dispatcher
//! with its own claims and concurrency, so a slow webhook never holds up a logout.

use super::webhook::{WebhookSecret, sign};
use super::{ClaimedOperatorEvent, OperatorEventResult};
use crate::clock::SharedClock;
use crate::dispatcher::attempt::{describe, outcome_label};
use crate::metrics::Metrics;
use crate::retry::{self, Decision, Outcome, RetryPolicy};
use crate::sender::Sender;
use crate::store::OperatorEvents;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Events posted at once: the webhook is one receiver, so a few suffice.
pub(crate) const CONCURRENCY: usize = 4;

/// How often the worker looks for due events when it found none. Events are rare, and a
/// second of delay is nothing next to the webhook's own retries.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What the worker runs on.
pub struct EventWorkerParts {
    /// The events' queue.
    pub events: Arc<dyn OperatorEvents>,
    /// The HTTP client (its net policy, timeout and no-redirect rule apply).
    pub sender: Sender,
    /// Time.
    pub clock: SharedClock,
    /// The webhook's URL.
    pub url: Url,
    /// The signing secret.
    pub secret: WebhookSecret,
    /// The retry schedule and budgets, the same as logout tokens'.
    pub retry: RetryPolicy,
    /// How long a claim holds an event.
    pub lease: Duration,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The operator webhook worker.
pub struct EventWorker {
    parts: EventWorkerParts,
    shutdown: CancellationToken,
}

impl EventWorker {
    /// A worker that stops claiming when `shutdown` is cancelled.
    pub fn new(parts: EventWorkerParts, shutdown: CancellationToken) -> Self {
        Self { parts, shutdown }
    }

    /// Runs until shutdown. Attempts already started finish (each within the sender's
    /// timeout) and their results are recorded before it returns.
    pub async fn run(self) {
        while !self.shutdown.is_cancelled() {
            let claimed = self.claim().await;
            if claimed.is_empty() {
                tokio::select! {
                    _ = self.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                }
                continue;
            }
            let attempts = claimed.iter().map(|c| self.attempt(c));
            for result in futures_util::future::join_all(attempts).await {
                self.record(&result).await;
            }
        }
    }

    /// Up to [`CONCURRENCY`] due events; none when the store fails (logged).
    async fn claim(&self) -> Vec<ClaimedOperatorEvent> {
        let now = self.parts.clock.now();
        let lease = chrono::Duration::from_std(self.parts.lease).unwrap_or(chrono::Duration::MAX);
        match self
            .parts
            .events
            .claim_events(now, lease, CONCURRENCY)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %crate::error::chain(&err), "claiming operator events failed");
                Vec::new()
            }
        }
    }

    /// Posts one event with a fresh timestamp and signature, and decides what follows.
    async fn attempt(&self, claim: &ClaimedOperatorEvent) -> OperatorEventResult {
        let p = &self.parts;
        let event = &claim.event;
        let at = p.clock.now();
        let body = serde_json::to_vec(&event.webhook_body()).unwrap_or_default();
        let timestamp = at.timestamp();
        let signature = sign(&p.secret, event.id.as_str(), timestamp, &body);
        let headers = [
            ("webhook-id", event.id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        let sent = p.sender.send_webhook(&p.url, body, &headers).await;
        let decision = match &sent.outcome {
            // A webhook receiver confirms with any 2xx (Standard Webhooks).
            Outcome::Status { code, .. } if (200..300).contains(code) => Decision::Delivered,
            outcome => retry::decide(
                &p.retry,
                outcome,
                event.attempts.saturating_add(1),
                claim.budget_started_at,
                p.clock.now(),
                rand::random::<f64>(),
            ),
        };
        let (status, error) = describe(&sent.outcome);
        let error = last_error(&decision, status, error);
        tracing::info!(
            operator_event_id = %event.id,
            event_type = event.kind.as_str(),
            attempt = event.attempts.saturating_add(1),
            status = status,
            outcome = outcome_label(&decision),
            "operator webhook attempt"
        );
        OperatorEventResult {
            id: event.id.clone(),
            lease: claim.lease.clone(),
            decision,
            status,
            error,
            at,
        }
    }

    /// Records a result and counts it; a store failure is logged, and the event comes back
    /// when its lease ends.
    async fn record(&self, result: &OperatorEventResult) {
        match self.parts.events.record_event(result).await {
            Ok(true) => self.parts.metrics.count_webhook_attempt(&result.decision),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(operator_event_id = %result.id, error = %crate::error::chain(&err), "recording an operator webhook attempt failed");
            }
        }
    }
}

/// The event's `last_error` after an attempt: the attempt's own error, or, once it is given
/// up, why; a refusal by the webhook is worded for the webhook (the retry reasons speak of
/// RPs and logout tokens).
fn last_error(decision: &Decision, status: Option<u16>, error: Option<String>) -> Option<String> {
    use crate::retry::{GiveUpReason, Terminal};
    match decision {
        Decision::GiveUp(GiveUpReason::Terminal(
            Terminal::Rejected(_) | Terminal::Refused(_) | Terminal::Unexpected(_),
        )) => Some(match status {
            Some(code) => format!("status {code}: the operator webhook refused the event"),
            None => "the operator webhook refused the event".to_owned(),
        }),
        Decision::GiveUp(reason) => Some(reason.to_string()),
        _ => error,
    }
}
