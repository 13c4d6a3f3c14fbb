//! Attempt results as both SQL databases store them: the row's new state and the attempt
//! appended to its history.

use super::ms;
use crate::health::batch::BatchHealth;
use crate::outbox::{AttemptRecord, AttemptResult};
use crate::retry::Decision;
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
