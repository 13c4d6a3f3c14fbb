//! Attempt results as both SQL databases store them: the row's new state and the attempt
//! appended to its history.

use super::ms;
use crate::health::batch::BatchHealth;
use crate::operator_events::NewOperatorEvent;
use crate::outbox::{AttemptRecord, AttemptResult, Delivery, DeliveryState};
use crate::retry::Decision;
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// One result as stored.
pub(in crate::store) struct ResultRow<'a> {
    /// The row.
    pub id: &'a str,
    /// The lease the result was reached under; the row must still hold it.
    pub lease: &'a str,
    /// The row's new state.
    pub state: &'static str,
    /// When it is due again (a retry).
    pub next_attempt_at: Option<i64>,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
    /// The row's last error: the attempt's, or why it was given up.
    pub last_error: Option<Cow<'a, str>>,
    /// The attempt, for the history.
    pub attempt: &'a AttemptRecord,
}

impl<'a> ResultRow<'a> {
    /// The first result of each row, as stored (a later one for the same row is a repeat).
    pub(crate) fn first_of_each(results: &'a [AttemptResult]) -> Vec<Self> {
        let mut seen = HashSet::new();
        results
            .iter()
            .filter(|r| seen.insert(&r.id))
            .map(Self::of)
            .collect()
    }

    /// One result as stored.
    fn of(r: &'a AttemptResult) -> Self {
        let a = &r.attempt;
        let error = || a.error.as_deref().map(Cow::from);
        let (state, next_attempt_at, delivered_at, last_error) = match &r.decision {
            Decision::Delivered => ("delivered", None, Some(ms(a.at)), error()),
            Decision::RetryAt(t) => ("pending", Some(ms(*t)), None, error()),
            Decision::GiveUp(reason) => ("failed", None, None, Some(Cow::from(reason.to_string()))),
        };
        Self {
            id: r.id.as_str(),
            lease: r.lease.as_str(),
            state,
            next_attempt_at,
            delivered_at,
            last_error,
            attempt: a,
        }
    }
}

/// The endpoint health of the results of `rows` that were applied: `applied` holds each
/// applied row's id and client, as the update returned them.
pub(in crate::store) fn applied_health(
    rows: &[ResultRow<'_>],
    applied: &[(String, String)],
) -> BatchHealth {
    let clients: HashMap<&str, &str> = applied
        .iter()
        .map(|(id, client)| (id.as_str(), client.as_str()))
        .collect();
    BatchHealth::of(rows.iter().filter_map(|r| {
        let client = clients.get(r.id)?;
        Some((*client, r.attempt, r.state == "delivered"))
    }))
}

/// The give-up results among `rows`, as `(id, lease)`: the rows they may turn into dead
/// letters.
pub(in crate::store) fn give_ups<'a>(rows: &[ResultRow<'a>]) -> Vec<(&'a str, &'a str)> {
    rows.iter()
        .filter(|r| r.state == "failed")
        .map(|r| (r.id, r.lease))
        .collect()
}

/// `delivery.failed` for each of `failed`, read under its lease before `rows` were applied,
/// as it stands after: one more attempt, and the result's status and error.
pub(in crate::store) fn dead_letters(
    rows: &[ResultRow<'_>],
    failed: Vec<Delivery>,
) -> Vec<NewOperatorEvent> {
    failed
        .into_iter()
        .filter_map(|mut d| {
            let row = rows.iter().find(|r| r.id == d.id.as_str())?;
            d.state = DeliveryState::Failed;
            d.attempts = d.attempts.saturating_add(1);
            d.last_status = row.attempt.status;
            d.last_error = row.last_error.as_deref().map(str::to_owned);
            d.next_attempt_at = None;
            Some(NewOperatorEvent::delivery_failed(&d, row.attempt.at))
        })
        .collect()
}

/// `delivery.failed` for each of `failed`, given up without an attempt for `reason`.
pub(in crate::store) fn given_up(
    failed: Vec<Delivery>,
    reason: &str,
    now: DateTime<Utc>,
) -> Vec<NewOperatorEvent> {
    failed
        .into_iter()
        .map(|mut d| {
            d.state = DeliveryState::Failed;
            d.last_error = Some(reason.to_owned());
            d.next_attempt_at = None;
            NewOperatorEvent::delivery_failed(&d, now)
        })
        .collect()
}
