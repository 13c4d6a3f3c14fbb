//! Retry classification and backoff schedule: pure functions, no I/O, no clocks.
//!
//! The sender reports what happened to one attempt as an [`Outcome`]; [`decide`] maps it to
//! a [`Decision`] that the outbox persists. Nothing here sleeps or reads the time: the caller
//! passes `now` and a jitter sample, so every schedule is reproducible in tests.

use chrono::{DateTime, Utc};
use std::time::Duration;

mod outcome;
mod reason;
mod rp_text;
mod schedule;

pub use outcome::{Outcome, RpError};
pub use reason::Terminal;
pub(crate) use reason::{GiveUpReason, OtherFailure, Retryable};
pub use rp_text::escape_controls;
pub(crate) use rp_text::{clean_rp_text, strip_controls};
pub(crate) use schedule::backoff_delay;
pub use schedule::parse_retry_after;

#[cfg(test)]
mod tests;

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The RP acknowledged (200 or 204).
    Delivered,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// Stop: the dead letter. The reason is for operators: its text is the row's
    /// `last_error`.
    GiveUp(GiveUpReason),
}

/// First retry delay ceiling: 1 s (design §3, "Delivery and retry").
pub(crate) const DEFAULT_BASE: Duration = Duration::from_secs(1);
/// Growth of the delay ceiling per attempt: doubling.
pub(crate) const DEFAULT_FACTOR: f64 = 2.0;
/// Largest delay between two attempts, and the most a `Retry-After` is honoured: 5 min.
pub const DEFAULT_CAP: Duration = Duration::from_secs(5 * 60);
/// Attempts made before a delivery becomes a dead letter.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// Age after which a delivery is no longer retried, counted from its first attempt budget.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a [`RetryPolicy`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    /// The base delay is zero, so backoff would never grow.
    #[error("retry base delay must be greater than zero")]
    ZeroBase,
    /// The factor is below 1, not finite, or NaN, so delays would shrink or be undefined.
    #[error("retry factor must be a finite number of at least 1")]
    BadFactor,
    /// The cap is below the base delay.
    #[error("retry cap must be at least the base delay")]
    CapBelowBase,
    /// Zero attempts would never send anything.
    #[error("retry max_attempts must be at least 1")]
    ZeroAttempts,
    /// A zero maximum age would give up before the first retry.
    #[error("retry max_age must be greater than zero")]
    ZeroMaxAge,
}

/// The backoff schedule and the two retry budgets (attempts and age).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    base: Duration,
    factor: f64,
    cap: Duration,
    max_attempts: u32,
    max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: DEFAULT_BASE,
            factor: DEFAULT_FACTOR,
            cap: DEFAULT_CAP,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl RetryPolicy {
    /// A checked policy; nonsense parameters are refused rather than silently clamped.
    pub fn new(
        base: Duration,
        factor: f64,
        cap: Duration,
        max_attempts: u32,
        max_age: Duration,
    ) -> Result<Self, RetryPolicyError> {
        if base.is_zero() {
            return Err(RetryPolicyError::ZeroBase);
        }
        if !factor.is_finite() || factor < 1.0 {
            return Err(RetryPolicyError::BadFactor);
        }
        if cap < base {
            return Err(RetryPolicyError::CapBelowBase);
        }
        if max_attempts == 0 {
            return Err(RetryPolicyError::ZeroAttempts);
        }
        if max_age.is_zero() {
            return Err(RetryPolicyError::ZeroMaxAge);
        }
        Ok(Self {
            base,
            factor,
            cap,
            max_attempts,
            max_age,
        })
    }

    /// The delay ceiling after the first attempt.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// How much the delay ceiling grows per attempt.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The largest delay, also the most a `Retry-After` is honoured.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Attempts made before giving up.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long after the budget started retries may still be scheduled.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }
}

/// Decides what follows an attempt (design §3, "Delivery and retry").
///
/// `attempts_made` counts every attempt so far, including the one that produced `outcome`.
/// `budget_started_at` is when the delivery's age budget began (its creation or its manual
/// re-drive). `jitter` is a sample from `[0, 1)` supplied by the caller; values outside are
/// clamped and NaN counts as 0.
///
/// | Outcome | Decision |
/// |---|---|
/// | 200, 204 | [`Decision::Delivered`] |
/// | 400 | [`Decision::GiveUp`], carrying the RP's `error` / `error_description` (sanitised) |
/// | other 4xx except 408 and 429 | [`Decision::GiveUp`] |
/// | any 3xx | [`Decision::GiveUp`]: redirects are never followed |
/// | 1xx, other 2xx (201, 202, ...) | [`Decision::GiveUp`]: the spec asks for 200 OK; an RP answering 202 did not confirm the logout and will answer the same way next time |
/// | 408, 429, 5xx | retry |
/// | timeout, connect, TLS, reset, other transport errors | retry |
/// | [`Outcome::Refused`] (SSRF guard) | [`Decision::GiveUp`]: a name resolving to a private address is a configuration or attack issue that retrying will not fix |
///
/// A retry happens at `now + delay`, where `delay` is [`backoff_delay`] (full jitter), or the
/// `Retry-After` value capped at the policy's cap when that is longer. It becomes
/// [`Decision::GiveUp`] instead when `max_attempts` attempts have been made, or when the retry
/// time would fall after `budget_started_at + max_age`; the reason names the budget.
pub fn decide(
    policy: &RetryPolicy,
    outcome: &Outcome,
    attempts_made: u32,
    budget_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    match outcome.classify() {
        outcome::Class::Delivered => Decision::Delivered,
        outcome::Class::Terminal(reason) => Decision::GiveUp(reason.into()),
        outcome::Class::Retryable { what, retry_after } => {
            let attempt = Attempt {
                what,
                retry_after,
                attempts_made,
                budget_started_at,
                now,
                jitter,
            };
            schedule_retry(policy, attempt)
        }
    }
}

/// Schedules a retry of an outcome the caller judged worth retrying (`what`), within the
/// policy's budgets, exactly as [`decide`] does for its retryable outcomes: for deliveries
/// with a status table of their own (SET push, RFC 8935).
pub(crate) fn retry_within_budget(
    policy: &RetryPolicy,
    what: Retryable,
    retry_after: Option<Duration>,
    attempts_made: u32,
    budget_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    let attempt = Attempt {
        what,
        retry_after,
        attempts_made,
        budget_started_at,
        now,
        jitter,
    };
    schedule_retry(policy, attempt)
}

/// The inputs of a retry that has been judged worth making.
struct Attempt {
    what: Retryable,
    retry_after: Option<Duration>,
    attempts_made: u32,
    budget_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
}

fn schedule_retry(policy: &RetryPolicy, a: Attempt) -> Decision {
    if a.attempts_made >= policy.max_attempts {
        return Decision::GiveUp(GiveUpReason::AttemptBudget {
            attempts: a.attempts_made,
            last: a.what,
        });
    }
    let mut delay = backoff_delay(policy, a.attempts_made, a.jitter);
    if let Some(asked) = a.retry_after {
        delay = delay.max(asked.min(policy.cap));
    }
    let deadline = add(a.budget_started_at, policy.max_age).unwrap_or(DateTime::<Utc>::MAX_UTC);
    match add(a.now, delay) {
        Some(next) if next <= deadline => Decision::RetryAt(next),
        _ => Decision::GiveUp(GiveUpReason::AgeBudget {
            max_age_secs: policy.max_age.as_secs(),
            attempts: a.attempts_made,
            last: a.what,
        }),
    }
}

fn add(t: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    let d = chrono::Duration::from_std(d).ok()?;
    t.checked_add_signed(d)
}
