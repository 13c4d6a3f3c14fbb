//! The backoff schedule and the `Retry-After` header: pure arithmetic on durations.

use super::RetryPolicy;
use chrono::{DateTime, Utc};
use std::time::{Duration, SystemTime};

/// The delay before the next attempt, with "full jitter": `jitter × min(cap, base ×
/// factor^(attempts_made − 1))`.
///
/// `jitter` is a sample from `[0, 1)` chosen by the caller; values outside `[0, 1]` are clamped
/// and NaN counts as 0. The result never exceeds the policy's cap.
pub(crate) fn backoff_delay(policy: &RetryPolicy, attempts_made: u32, jitter: f64) -> Duration {
    let ceiling = delay_ceiling(policy, attempts_made);
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    Duration::try_from_secs_f64(ceiling.as_secs_f64() * jitter)
        .unwrap_or(Duration::ZERO)
        .min(policy.cap())
}

/// The un-jittered upper bound of [`backoff_delay`]: non-decreasing in `attempts_made`.
pub(super) fn delay_ceiling(policy: &RetryPolicy, attempts_made: u32) -> Duration {
    let exponent = f64::from(attempts_made.saturating_sub(1));
    let secs = policy.base().as_secs_f64() * policy.factor().powf(exponent);
    // Overflow to infinity is the cap; `try_from_secs_f64` rejects it.
    Duration::try_from_secs_f64(secs)
        .unwrap_or(policy.cap())
        .min(policy.cap())
}

/// Parses a `Retry-After` header value (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.
///
/// A date in the past, or a negative number of seconds, gives zero; anything unparsable gives
/// `None`. Very large values saturate rather than fail; the caller caps them.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Some(digits) = value.strip_prefix('-') {
        return all_digits(digits).then_some(Duration::ZERO);
    }
    if all_digits(value) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let when: DateTime<Utc> = httpdate::parse_http_date(value)
        .ok()
        .map(SystemTime::into)?;
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}
