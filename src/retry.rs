//! Retry classification and backoff schedule: pure functions, no I/O, no clocks.

use chrono::{DateTime, Utc};

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The RP acknowledged (200 or 204).
    Delivered,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// Stop: the dead letter. The reason is for operators.
    GiveUp(String),
}
