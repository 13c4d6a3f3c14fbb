//! Endpoint health: per-client success rate, latency percentiles and failure streak, kept by
//! the store as attempts are recorded, and the operator's policy that pauses a client that
//! keeps failing instead of letting its deliveries burn their retry budgets.
//!
//! - [`latency`]: the fixed log-scale latency buckets and the percentiles read from them.
//! - `batch`: one recorded batch summed per client, added to the store in the batch's
//!   transaction.
//! - [`HealthPolicy`]: when a failing client is paused.
//! - [`ClientHealth`]: what the API, the CLI and the metrics show.

pub(crate) mod batch;
mod latency;

use crate::ids::ClientId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long the health statistics look back: the last 24 hourly buckets, the current one
/// included.
pub const WINDOW_HOURS: i64 = 24;

/// Who paused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PausedBy {
    /// The operator, through the API.
    Operator,
    /// The health policy, after the client kept failing.
    HealthPolicy,
}

impl PausedBy {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::HealthPolicy => "health_policy",
        }
    }

    /// The value of a stored name; `None` for an unknown one.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "operator" => Some(Self::Operator),
            "health_policy" => Some(Self::HealthPolicy),
            _ => None,
        }
    }
}

/// A client's pause as stored: whether it is paused, and by whom and since when while it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PauseState {
    /// Whether its deliveries are held.
    pub paused: bool,
    /// Who paused it, while paused.
    pub by: Option<PausedBy>,
    /// When it was paused, while paused.
    pub at: Option<DateTime<Utc>>,
}

impl PauseState {
    /// The pause `client` carries.
    pub fn of(client: &crate::clients::RelyingParty) -> Self {
        Self {
            paused: client.paused,
            by: client.paused_by,
            at: client.paused_at,
        }
    }

    /// Puts this pause on `client`.
    pub fn apply(self, client: &mut crate::clients::RelyingParty) {
        client.paused = self.paused;
        client.paused_by = self.by;
        client.paused_at = self.at;
    }
}

/// When a failing client is paused: no success for `pause_after` (counted from the start of
/// its failure streak when it never succeeded) and at least `min_failures` failures since its
/// last success or its last resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// How long without a success.
    pub pause_after: Duration,
    /// Failures since the last success or resume.
    pub min_failures: u64,
}

impl HealthPolicy {
    /// The latest last-success (or streak start) time, in milliseconds, that lets the
    /// policy pause a client at `now`.
    pub(crate) fn quiet_before(&self, now: DateTime<Utc>) -> i64 {
        (now - self.pause_after).timestamp_millis()
    }

    /// `min_failures` as stored.
    pub(crate) fn min_failures(&self) -> i64 {
        i64::try_from(self.min_failures).unwrap_or(i64::MAX)
    }
}

/// The pause policy a store applies as it records, set once at start, and how many clients
/// it paused in this process.
#[derive(Debug, Default)]
pub(crate) struct PolicyCell {
    policy: std::sync::RwLock<Option<HealthPolicy>>,
    paused: std::sync::atomic::AtomicU64,
}

impl PolicyCell {
    /// The policy, if one is set.
    pub(crate) fn get(&self) -> Option<HealthPolicy> {
        match self.policy.read() {
            Ok(policy) => *policy,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Sets the policy (`None`: off).
    pub(crate) fn set(&self, policy: Option<HealthPolicy>) {
        match self.policy.write() {
            Ok(mut slot) => *slot = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }

    /// Counts clients the policy paused.
    pub(crate) fn count_pauses(&self, paused: &[ClientId]) {
        for client in paused {
            tracing::warn!(client_id = %client, "client paused by the health policy");
        }
        let n = u64::try_from(paused.len()).unwrap_or(u64::MAX);
        self.paused
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Clients the policy paused in this process.
    pub(crate) fn pauses(&self) -> u64 {
        self.paused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The p50 and p99 latency of a client's attempts in the window, each within 10 % (see
/// [`latency`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LatencyQuantiles {
    /// Median, in milliseconds.
    pub p50: u64,
    /// 99th percentile, in milliseconds.
    pub p99: u64,
}

/// One client's endpoint health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientHealth {
    /// The client.
    #[schema(value_type = String)]
    pub client_id: ClientId,
    /// How far back `attempts`, `successes`, `failures`, `success_rate` and `latency_ms`
    /// look, in seconds.
    pub window_seconds: u64,
    /// Attempts in the window.
    pub attempts: u64,
    /// Attempts delivered (200 or 204) in the window.
    pub successes: u64,
    /// Attempts not delivered in the window, whatever ended them.
    pub failures: u64,
    /// `successes / attempts`; null when there were no attempts.
    pub success_rate: Option<f64>,
    /// Latency percentiles in the window; null when there were no attempts.
    pub latency_ms: Option<LatencyQuantiles>,
    /// The last delivered attempt, ever.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failed attempt, ever.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Failures since the last success or the last resume.
    pub failures_since_success: u64,
    /// The first of those failures.
    pub failing_since: Option<DateTime<Utc>>,
    /// Whether the client is paused.
    pub paused: bool,
    /// Who paused it, while paused.
    pub paused_by: Option<PausedBy>,
    /// When it was paused, while paused.
    pub paused_at: Option<DateTime<Utc>>,
}

/// A client's health as a backend reads it, before the percentiles are computed.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredHealth {
    /// The client.
    pub client_id: String,
    /// Whether it is paused, by whom and since when.
    pub paused: bool,
    /// Who paused it.
    pub paused_by: Option<PausedBy>,
    /// When.
    pub paused_at: Option<DateTime<Utc>>,
    /// The streak row (all `None`/0 when the client has no attempts yet).
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Failures since the last success or resume.
    pub failures_since_success: u64,
    /// When the streak began.
    pub failing_since: Option<DateTime<Utc>>,
    /// The window's counts per latency bucket: (bucket, successes, failures).
    pub buckets: Vec<(i64, u64, u64)>,
}

impl StoredHealth {
    /// What the API shows.
    pub(crate) fn into_health(self) -> ClientHealth {
        let successes: u64 = self.buckets.iter().map(|b| b.1).sum();
        let failures: u64 = self.buckets.iter().map(|b| b.2).sum();
        let attempts = successes + failures;
        let counts: Vec<(i64, u64)> = self.buckets.iter().map(|b| (b.0, b.1 + b.2)).collect();
        let latency_ms = match (
            latency::quantile(&counts, 0.5),
            latency::quantile(&counts, 0.99),
        ) {
            (Some(p50), Some(p99)) => Some(LatencyQuantiles { p50, p99 }),
            _ => None,
        };
        #[allow(clippy::cast_precision_loss)]
        let success_rate = (attempts > 0).then(|| successes as f64 / attempts as f64);
        ClientHealth {
            client_id: ClientId::from(self.client_id.as_str()),
            window_seconds: WINDOW_HOURS.unsigned_abs() * 3600,
            attempts,
            successes,
            failures,
            success_rate,
            latency_ms,
            last_success_at: self.last_success_at,
            last_failure_at: self.last_failure_at,
            failures_since_success: self.failures_since_success,
            failing_since: self.failing_since,
            paused: self.paused,
            paused_by: self.paused.then_some(self.paused_by).flatten(),
            paused_at: self.paused.then_some(self.paused_at).flatten(),
        }
    }
}

/// The start of the oldest hour in the window at `now`, in milliseconds.
pub(crate) fn window_start(now: DateTime<Utc>) -> i64 {
    let at = now.timestamp_millis();
    let hour = at - at.rem_euclid(batch::HOUR_MS);
    hour - (WINDOW_HOURS - 1) * batch::HOUR_MS
}
