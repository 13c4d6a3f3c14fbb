//! Prometheus metrics: one registry, created at start and passed down.

use crate::health::ClientHealth;
use crate::operator_events::OperatorEventType;
use crate::outbox::OutboxStats;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A label value written escaped as the Prometheus text format requires: `\\` for a
/// backslash, `\"` for a double quote and `\n` for a line feed. prometheus-client 0.24
/// writes label values as they are, so one holding a quote or a newline would otherwise
/// break the whole scrape. Client ids registered through the API cannot hold these
/// characters; ids stored by other means still scrape cleanly.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct LabelText(pub String);

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl From<&str> for LabelText {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Labels of the per-outcome delivery counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `retry` or `failed`.
    pub outcome: &'static str,
    /// The RP.
    pub client_id: LabelText,
}

/// Labels of a per-client counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// The RP.
    pub client_id: LabelText,
}

/// Labels of a per-client quantile.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuantileLabels {
    /// The RP.
    pub client_id: LabelText,
    /// `0.5` or `0.99`.
    pub quantile: &'static str,
}

/// A gauge holding a fraction or a time in seconds.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Labels of the session-end counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InitiatorLabels {
    /// The Auth0 initiator name.
    pub initiator: &'static str,
}

/// Labels of the operator event counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabels {
    /// `client.paused`, `client.resumed` or `delivery.failed`.
    pub r#type: &'static str,
}

/// Labels of the operator webhook attempt counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookOutcomeLabels {
    /// `delivered`, `retry` or `failed`.
    pub outcome: &'static str,
}

/// The gauges of one outbox, read from the store at scrape time.
#[derive(Debug, Default)]
pub struct OutboxGauges {
    /// Rows in state `pending` at the last scrape.
    pub pending: Gauge,
    /// Rows in state `in_flight` at the last scrape.
    pub in_flight: Gauge,
    /// Rows in state `failed` (the dead letter) at the last scrape.
    pub dead_letter: Gauge,
    /// Age in seconds of the oldest due row at the last scrape.
    pub oldest_due_age_seconds: Gauge,
}

impl OutboxGauges {
    /// Registers the gauges in `registry`, in field order, each under its (name, help).
    fn register(&self, registry: &mut Registry, names: [(&str, &str); 4]) {
        let gauges = [
            &self.pending,
            &self.in_flight,
            &self.dead_letter,
            &self.oldest_due_age_seconds,
        ];
        for ((name, help), gauge) in names.into_iter().zip(gauges) {
            registry.register(name, help, gauge.clone());
        }
    }

    /// Sets the gauges from a store snapshot taken at `now`.
    fn set(&self, stats: &OutboxStats, now: DateTime<Utc>) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pending.set(gauge(stats.pending));
        self.in_flight.set(gauge(stats.in_flight));
        self.dead_letter.set(gauge(stats.failed));
        let age = stats
            .oldest_due_at
            .map_or(0, |due| (now - due).num_seconds().max(0));
        self.oldest_due_age_seconds.set(age);
    }
}

/// Every metric logoutd exports.
pub struct Metrics {
    registry: Registry,
    /// The SET outbox's gauges, exported from the first scrape that read them: only when
    /// SSF is on.
    ssf_registry: Registry,
    /// Whether the SET gauges were read (SSF is on).
    ssf_gauges_on: AtomicBool,
    /// Delivery attempts by outcome and client.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Attempt latency in seconds.
    pub attempt_seconds: Histogram,
    /// Sessions ended, by initiator.
    pub sessions_ended: Family<InitiatorLabels, Counter>,
    /// Outbox rows written.
    pub deliveries_enqueued: Counter,
    /// Of those, `user` rows: one for every session of a user that a user-wide end ended,
    /// for a client registered with `backchannel_logout_user_wide: per_user`.
    pub user_wide_deliveries: Counter,
    /// Ended sessions the `user` rows cover.
    pub user_wide_sessions: Counter,
    /// The logout-token outbox's gauges.
    pub outbox: OutboxGauges,
    /// Rows claimed again after another worker's lease expired.
    pub lease_reclaims: Counter,
    /// Claimed rows handed back unattempted because their origin was at its limit.
    pub origin_deferrals: Counter,
    /// Attempts that moved to the slow lane.
    pub slow_lane_moves: Counter,
    /// Claimed rows given back unattempted to keep to their client's rate limit, by client.
    pub pacing_deferrals: Family<ClientLabels, Counter>,
    /// Each client's share of delivered attempts in the health window, at the last scrape.
    pub client_success_ratio: Family<ClientLabels, FloatGauge>,
    /// Each client's p50 and p99 attempt latency in the health window, at the last scrape.
    pub client_latency_seconds: Family<QuantileLabels, FloatGauge>,
    /// Each client's last delivered attempt, at the last scrape.
    pub client_last_success: Family<ClientLabels, Gauge>,
    /// Whether each client is paused (1) or not (0), at the last scrape.
    pub client_paused: Family<ClientLabels, Gauge>,
    /// Clients the health policy paused in this process.
    pub client_auto_pauses: Counter,
    /// Operator events written by this process, by type (brought up to the store's tally at
    /// each scrape).
    pub operator_events: Family<EventTypeLabels, Counter>,
    /// Operator webhook attempts by outcome.
    pub webhook_attempts: Family<WebhookOutcomeLabels, Counter>,
    /// Operator events pending or in flight at the last scrape.
    pub operator_events_pending: Gauge,
    /// SET push attempts by outcome.
    pub set_push_attempts: Family<WebhookOutcomeLabels, Counter>,
    /// The SET outbox's gauges (exported only when SSF is on).
    pub set_outbox: OutboxGauges,
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("logoutd");
        let attempts = Family::<OutcomeLabels, Counter>::default();
        let attempt_seconds = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let sessions_ended = Family::<InitiatorLabels, Counter>::default();
        let deliveries_enqueued = Counter::default();
        let user_wide_deliveries = Counter::default();
        let user_wide_sessions = Counter::default();
        let outbox = OutboxGauges::default();
        let lease_reclaims = Counter::default();
        let origin_deferrals = Counter::default();
        let slow_lane_moves = Counter::default();
        let pacing_deferrals = Family::<ClientLabels, Counter>::default();
        let client_success_ratio = Family::<ClientLabels, FloatGauge>::default();
        let client_latency_seconds = Family::<QuantileLabels, FloatGauge>::default();
        let client_last_success = Family::<ClientLabels, Gauge>::default();
        let client_paused = Family::<ClientLabels, Gauge>::default();
        let client_auto_pauses = Counter::default();
        let operator_events = Family::<EventTypeLabels, Counter>::default();
        let webhook_attempts = Family::<WebhookOutcomeLabels, Counter>::default();
        let operator_events_pending = Gauge::default();
        let set_push_attempts = Family::<WebhookOutcomeLabels, Counter>::default();
        registry.register(
            "ssf_push_attempts",
            "SET push attempts (RFC 8935) by outcome (delivered, retry, failed)",
            set_push_attempts.clone(),
        );
        registry.register(
            "operator_events",
            "Operator events written, by type (client.paused, client.resumed, delivery.failed)",
            operator_events.clone(),
        );
        registry.register(
            "operator_webhook_attempts",
            "Operator webhook attempts by outcome (delivered, retry, failed)",
            webhook_attempts.clone(),
        );
        registry.register(
            "operator_events_pending",
            "Operator events waiting for the webhook (pending or in flight)",
            operator_events_pending.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts by outcome (delivered, retry, failed) and client",
            attempts.clone(),
        );
        registry.register(
            "delivery_attempt_duration_seconds",
            "Wall time of one delivery attempt",
            attempt_seconds.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions ended, by initiator",
            sessions_ended.clone(),
        );
        registry.register(
            "deliveries_enqueued",
            "Outbox rows written by terminations",
            deliveries_enqueued.clone(),
        );
        registry.register(
            "user_wide_deliveries_enqueued",
            "Outbox rows written as one delivery for all the sessions a user-wide end ended \
             (clients with backchannel_logout_user_wide per_user); counted in \
             deliveries_enqueued too",
            user_wide_deliveries.clone(),
        );
        registry.register(
            "user_wide_sessions_covered",
            "Ended sessions covered by user-wide deliveries",
            user_wide_sessions.clone(),
        );
        outbox.register(
            &mut registry,
            [
                ("deliveries_pending", "Rows waiting for an attempt"),
                ("deliveries_in_flight", "Rows claimed by a worker"),
                ("deliveries_dead_letter", "Rows in the failed state"),
                (
                    "oldest_due_age_seconds",
                    "Age of the oldest row that is due",
                ),
            ],
        );
        registry.register(
            "lease_reclaims",
            "Rows claimed again after a lease expired",
            lease_reclaims.clone(),
        );
        registry.register(
            "delivery_origin_deferrals",
            "Claimed rows handed back unattempted because their RP origin was at its limit",
            origin_deferrals.clone(),
        );
        registry.register(
            "delivery_slow_lane_moves",
            "Attempts still running after 1 s that moved to the slow lane",
            slow_lane_moves.clone(),
        );
        registry.register(
            "delivery_pacing_deferrals",
            "Claimed rows given back unattempted to keep to their client's rate limit, by client",
            pacing_deferrals.clone(),
        );
        registry.register(
            "client_success_ratio",
            "Share of a client's attempts delivered in the last 24 hours (absent without attempts)",
            client_success_ratio.clone(),
        );
        registry.register(
            "client_latency_seconds",
            "A client's attempt latency in the last 24 hours at quantile 0.5 and 0.99, within 10 %",
            client_latency_seconds.clone(),
        );
        registry.register(
            "client_last_success_timestamp_seconds",
            "Unix time of a client's last delivered attempt",
            client_last_success.clone(),
        );
        registry.register(
            "client_paused",
            "Whether a client's deliveries are held (1) or not (0)",
            client_paused.clone(),
        );
        registry.register(
            "client_auto_pauses",
            "Clients paused by the health policy in this process",
            client_auto_pauses.clone(),
        );
        let mut ssf_registry = Registry::with_prefix("logoutd");
        let set_outbox = OutboxGauges::default();
        set_outbox.register(
            &mut ssf_registry,
            [
                (
                    "ssf_sets_pending",
                    "SET rows waiting: for an attempt, for their stream to be enabled, or for a poll",
                ),
                (
                    "ssf_sets_in_flight",
                    "SET rows claimed for a push or handed to a poll and not yet acknowledged",
                ),
                ("ssf_sets_dead_letter", "SET rows in the failed state"),
                (
                    "ssf_sets_oldest_due_age_seconds",
                    "Age of the oldest SET row that is due (a held or unpolled one included)",
                ),
            ],
        );
        Self {
            registry,
            ssf_registry,
            ssf_gauges_on: AtomicBool::new(false),
            set_outbox,
            attempts,
            attempt_seconds,
            sessions_ended,
            deliveries_enqueued,
            user_wide_deliveries,
            user_wide_sessions,
            outbox,
            lease_reclaims,
            origin_deferrals,
            slow_lane_moves,
            pacing_deferrals,
            operator_events,
            webhook_attempts,
            operator_events_pending,
            set_push_attempts,
            client_success_ratio,
            client_latency_seconds,
            client_last_success,
            client_paused,
            client_auto_pauses,
        }
    }

    /// Sets the per-client health gauges from the store's view of every client (clients no
    /// longer listed lose their series), and brings the auto-pause counter up to `auto_pauses`.
    pub fn set_client_health(&self, clients: &[ClientHealth], auto_pauses: u64) {
        self.client_success_ratio.clear();
        self.client_latency_seconds.clear();
        self.client_last_success.clear();
        self.client_paused.clear();
        for h in clients {
            let client = || ClientLabels {
                client_id: LabelText::from(h.client_id.as_str()),
            };
            if let Some(rate) = h.success_rate {
                self.client_success_ratio.get_or_create(&client()).set(rate);
            }
            if let Some(latency) = h.latency_ms {
                for (quantile, ms) in [("0.5", latency.p50), ("0.99", latency.p99)] {
                    let labels = QuantileLabels {
                        client_id: LabelText::from(h.client_id.as_str()),
                        quantile,
                    };
                    #[allow(clippy::cast_precision_loss)]
                    let seconds = ms as f64 / 1000.0;
                    self.client_latency_seconds
                        .get_or_create(&labels)
                        .set(seconds);
                }
            }
            if let Some(at) = h.last_success_at {
                self.client_last_success
                    .get_or_create(&client())
                    .set(at.timestamp());
            }
            self.client_paused
                .get_or_create(&client())
                .set(i64::from(h.paused));
        }
        let counted = self.client_auto_pauses.get();
        if auto_pauses > counted {
            self.client_auto_pauses.inc_by(auto_pauses - counted);
        }
    }

    /// Sets the operator event metrics from the store's tally and pending count.
    pub fn set_operator_events(&self, tally: &[(OperatorEventType, u64)], pending: u64) {
        for (kind, total) in tally {
            let counter = self.operator_events.get_or_create(&EventTypeLabels {
                r#type: kind.as_str(),
            });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.operator_events_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Counts one recorded operator webhook attempt.
    pub fn count_webhook_attempt(&self, decision: &crate::retry::Decision) {
        let outcome = crate::dispatcher::attempt::outcome_label(decision);
        self.webhook_attempts
            .get_or_create(&WebhookOutcomeLabels { outcome })
            .inc();
    }

    /// Counts one recorded SET push attempt.
    pub fn count_set_attempt(&self, decision: &crate::retry::Decision) {
        let outcome = crate::dispatcher::attempt::outcome_label(decision);
        self.set_push_attempts
            .get_or_create(&WebhookOutcomeLabels { outcome })
            .inc();
    }

    /// Sets the outbox gauges from a store snapshot taken at `now`.
    pub fn set_outbox(&self, stats: &OutboxStats, now: DateTime<Utc>) {
        self.outbox.set(stats, now);
    }

    /// Sets the SET outbox gauges from a store snapshot taken at `now`; from then on they
    /// are exported.
    pub fn set_ssf_outbox(&self, stats: &OutboxStats, now: DateTime<Utc>) {
        self.set_outbox.set(stats, now);
        self.ssf_gauges_on.store(true, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let ssf = self.ssf_gauges_on.load(Ordering::Relaxed);
        let written = encode_registry(&mut out, &self.registry)
            .and_then(|()| match ssf {
                true => encode_registry(&mut out, &self.ssf_registry),
                false => Ok(()),
            })
            .and_then(|()| encode_eof(&mut out));
        if written.is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_text_format_requires() {
        let metrics = Metrics::new();
        let hostile = "x\",outcome=\"delivered\"} 1e+99\\\nfake_metric 1";
        metrics
            .attempts
            .get_or_create(&OutcomeLabels {
                outcome: "failed",
                client_id: LabelText::from(hostile),
            })
            .inc();
        let text = metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("logoutd_delivery_attempts_total{"))
            .unwrap();
        assert_eq!(
            line,
            r#"logoutd_delivery_attempts_total{outcome="failed",client_id="x\",outcome=\"delivered\"} 1e+99\\\nfake_metric 1"} 1"#
        );
        assert!(!text.lines().any(|l| l.starts_with("fake_metric")));
    }

    #[test]
    fn set_gauges_are_exported_once_read_and_the_text_ends_once() {
        let metrics = Metrics::new();
        let before = metrics.encode();
        assert!(!before.contains("logoutd_ssf_sets_"), "{before}");
        assert!(before.ends_with("# EOF\n"), "{before}");
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let stats = OutboxStats {
            pending: 3,
            in_flight: 1,
            failed: 2,
            oldest_due_at: DateTime::from_timestamp(990, 0),
        };
        metrics.set_ssf_outbox(&stats, now);
        let text = metrics.encode();
        for line in [
            "logoutd_ssf_sets_pending 3",
            "logoutd_ssf_sets_in_flight 1",
            "logoutd_ssf_sets_dead_letter 2",
            "logoutd_ssf_sets_oldest_due_age_seconds 10",
            "logoutd_deliveries_pending 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }
}
