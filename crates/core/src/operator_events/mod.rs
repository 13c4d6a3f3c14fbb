//! Operator events: what an operator is told happened to the service (`client.paused`,
//! `client.resumed`, `delivery.failed`), written in the same transaction as their cause,
//! shown by the API, and delivered to the operator webhook with the leases and the retry
//! decision of logout tokens.
//!
//! - [`NewOperatorEvent`] builds each event's `data`; the store's `emit` writes events inside
//!   the transaction of their cause.
//! - `webhook`: the Standard Webhooks request (headers and signature) and its secret.
//! - `worker`: claims due events under a lease, posts them, and records each result with
//!   [`crate::retry::decide`].

mod webhook;
mod worker;

pub use webhook::{WebhookSecret, WebhookSecretError, sign as sign_webhook};
pub use worker::{EventWorker, EventWorkerParts};

use crate::health::PausedBy;
use crate::ids::{ClientId, LeaseId, OperatorEventId};
use crate::outbox::Delivery;
use crate::retry::Decision;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use utoipa::ToSchema;

/// What an operator event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum OperatorEventType {
    /// A client was paused: its deliveries are held.
    #[serde(rename = "client.paused")]
    ClientPaused,
    /// A paused client was resumed.
    #[serde(rename = "client.resumed")]
    ClientResumed,
    /// A delivery reached `failed`, the dead letter.
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
}

impl OperatorEventType {
    /// Every type, in a fixed order (the metrics).
    pub const ALL: [Self; 3] = [
        Self::ClientPaused,
        Self::ClientResumed,
        Self::DeliveryFailed,
    ];

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientPaused => "client.paused",
            Self::ClientResumed => "client.resumed",
            Self::DeliveryFailed => "delivery.failed",
        }
    }
}

impl FromStr for OperatorEventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown operator event type {s:?}"))
    }
}

/// Where an operator event's webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorEventState {
    /// Waiting for `next_attempt_at` (or for a webhook to be configured).
    Pending,
    /// Claimed by a worker under a lease.
    InFlight,
    /// The webhook answered 2xx.
    Delivered,
    /// Terminal: the webhook refused it, or the retry budget ran out. Re-drivable.
    Failed,
}

impl OperatorEventState {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for OperatorEventState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Pending, Self::InFlight, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown operator event state {s:?}"))
    }
}

/// An event to write in the transaction of its cause.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOperatorEvent {
    /// Its id.
    pub id: OperatorEventId,
    /// Its type.
    pub kind: OperatorEventType,
    /// Its `data` object.
    pub data: Value,
    /// When it happened; also the start of its webhook delivery's age budget.
    pub created_at: DateTime<Utc>,
}

impl NewOperatorEvent {
    /// `client.paused` (or `client.resumed` when `paused` is false) for `client`.
    pub fn client_paused(
        client: &ClientId,
        paused: bool,
        by: PausedBy,
        now: DateTime<Utc>,
    ) -> Self {
        let kind = match paused {
            true => OperatorEventType::ClientPaused,
            false => OperatorEventType::ClientResumed,
        };
        let data = json!({"client_id": client.as_str(), "paused_by": by.as_str()});
        Self::new(kind, data, now)
    }

    /// `client.paused` by the health policy for each of `clients`, paused at `now` (the time
    /// of the batch whose failures paused them; `None` only when none was paused).
    pub fn auto_paused(clients: &[ClientId], now: Option<DateTime<Utc>>) -> Vec<Self> {
        let Some(now) = now else {
            return Vec::new();
        };
        clients
            .iter()
            .map(|client| Self::client_paused(client, true, PausedBy::HealthPolicy, now))
            .collect()
    }

    /// `delivery.failed` for `delivery` as it stands once failed. Never carries the session's
    /// metadata nor a token.
    pub fn delivery_failed(delivery: &Delivery, now: DateTime<Utc>) -> Self {
        let data = json!({
            "delivery_id": delivery.id.as_str(),
            "client_id": delivery.client_id.as_str(),
            "session_id": delivery.session_id.as_str(),
            "user_id": delivery.user_id.as_str(),
            "event_id": delivery.event_id.as_str(),
            "initiator": delivery.initiator.as_str(),
            "attempts": delivery.attempts,
            "last_status": delivery.last_status,
            "last_error": delivery.last_error,
        });
        Self::new(OperatorEventType::DeliveryFailed, data, now)
    }

    fn new(kind: OperatorEventType, data: Value, now: DateTime<Utc>) -> Self {
        let created_at = crate::store::millis(now);
        Self {
            id: OperatorEventId::generate_at(created_at),
            kind,
            data,
            created_at,
        }
    }
}

/// An operator event as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperatorEvent {
    /// Its id, also the `webhook-id` of its webhook requests.
    pub id: OperatorEventId,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: OperatorEventType,
    /// What happened: for `client.paused`/`client.resumed` `{client_id, paused_by}`; for
    /// `delivery.failed` `{delivery_id, client_id, session_id, user_id, event_id, initiator,
    /// attempts, last_status, last_error}`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Where its webhook delivery stands.
    pub state: OperatorEventState,
    /// Webhook attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending) or the lease ends (in flight).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// The last attempt's transport error, or why it was failed.
    pub last_error: Option<String>,
    /// When the webhook accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
}

impl OperatorEvent {
    /// The webhook body: `{"id", "type", "created_at", "data"}`.
    pub fn webhook_body(&self) -> Value {
        json!({
            "id": self.id.as_str(),
            "type": self.kind.as_str(),
            "created_at": self.created_at,
            "data": self.data,
        })
    }
}

/// An event claimed for one webhook attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedOperatorEvent {
    /// The event, in flight.
    pub event: OperatorEvent,
    /// The lease the result must be recorded under.
    pub lease: LeaseId,
    /// When its age budget started (its creation or its last re-drive).
    pub budget_started_at: DateTime<Utc>,
}

/// What one webhook attempt decided, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorEventResult {
    /// The event.
    pub id: OperatorEventId,
    /// The lease it was claimed under.
    pub lease: LeaseId,
    /// The retry decision.
    pub decision: Decision,
    /// The webhook's HTTP status, if it answered.
    pub status: Option<u16>,
    /// The event's last error: the attempt's, or why it was given up.
    pub error: Option<String>,
    /// When the attempt started.
    pub at: DateTime<Utc>,
}

/// Which events a listing shows; an unset filter matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorEventFilter {
    /// Only events of this type.
    pub kind: Option<OperatorEventType>,
    /// Only events in this state.
    pub state: Option<OperatorEventState>,
}

/// What re-driving one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRedrive {
    /// It was failed and is pending again, with a fresh budget.
    Requeued,
    /// It is not failed; nothing changed.
    NotFailed(OperatorEventState),
    /// No such event.
    NotFound,
}

/// How many events of each type this process wrote (the metric
/// `logoutd_operator_events_total`); counted after their transaction committed.
#[derive(Debug, Default)]
pub struct EventTally {
    counts: [AtomicU64; 3],
}

impl EventTally {
    /// Counts `events`, written by a committed transaction.
    pub fn count(&self, events: &[NewOperatorEvent]) {
        for event in events {
            self.count_kind(event.kind, 1);
        }
    }

    /// Counts `n` events of `kind`.
    pub fn count_kind(&self, kind: OperatorEventType, n: u64) {
        let slot = OperatorEventType::ALL.iter().position(|k| *k == kind);
        if let Some(counter) = slot.and_then(|i| self.counts.get(i)) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counts per type.
    pub fn snapshot(&self) -> Vec<(OperatorEventType, u64)> {
        OperatorEventType::ALL
            .into_iter()
            .zip(&self.counts)
            .map(|(kind, n)| (kind, n.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
