//! Fault injection, for testing senders: which POST is dropped, failed or redirected.
//!
//! POSTs are numbered from 1 in arrival order across all paths. The first `drop_first` are
//! dropped, the next `fail_first` get `fail_status`, and then every POST is redirected when
//! `redirect_to` is set, or answered normally. `delay` applies to every reply.

use hyper::StatusCode;
use std::time::Duration;
use url::Url;

/// The status of `--fail-first` replies unless `--fail-status` says otherwise.
pub const DEFAULT_FAIL_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// The faults to inject; the default injects none.
#[derive(Debug, Clone)]
pub struct Faults {
    /// How many POSTs (after the dropped ones) get `fail_status`.
    pub fail_first: u64,
    /// The status of failed POSTs.
    pub fail_status: StatusCode,
    /// A `Retry-After` value, in seconds, added to `fail_status` replies.
    pub retry_after: Option<u64>,
    /// A delay before every reply (or before dropping the connection).
    pub delay: Option<Duration>,
    /// How many of the first POSTs have their connection closed without a reply.
    pub drop_first: u64,
    /// Answer every POST not dropped or failed with `307` and this `Location`.
    pub redirect_to: Option<Url>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_first: 0,
            fail_status: DEFAULT_FAIL_STATUS,
            retry_after: None,
            delay: None,
            drop_first: 0,
            redirect_to: None,
        }
    }
}

/// The fault injected into one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection was closed without a reply.
    Drop,
    /// The reply had the configured failure status.
    FailStatus,
    /// The reply was a 307 redirect.
    Redirect,
    /// The reply was only delayed.
    Delay,
}

impl Fault {
    /// The name written in receipts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::FailStatus => "fail_status",
            Self::Redirect => "redirect",
            Self::Delay => "delay",
        }
    }
}

impl Faults {
    /// The fault for the POST numbered `number` (1-based), if any.
    pub fn pick(&self, number: u64) -> Option<Fault> {
        if number <= self.drop_first {
            Some(Fault::Drop)
        } else if number <= self.drop_first.saturating_add(self.fail_first) {
            Some(Fault::FailStatus)
        } else if self.redirect_to.is_some() {
            Some(Fault::Redirect)
        } else if self.delay.is_some() {
            Some(Fault::Delay)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_then_fails_then_answers() {
        let faults = Faults {
            drop_first: 1,
            fail_first: 2,
            ..Faults::default()
        };
        let picked: Vec<_> = (1..=4).map(|n| faults.pick(n)).collect();
        assert_eq!(
            picked,
            [
                Some(Fault::Drop),
                Some(Fault::FailStatus),
                Some(Fault::FailStatus),
                None
            ]
        );
    }
}
