//! What one SET push attempt's answer decides (RFC 8935 §2.2-§2.4; SSF 1.0 §4 and
//! docs/ssf.md §4): pure, over the sender's [`Outcome`], with the backoff, jitter,
//! `Retry-After` and budgets of [`crate::retry`].

use crate::retry::{self, Decision, Outcome, RetryPolicy, Retryable, RpError, Terminal};
use chrono::{DateTime, Utc};

/// The `err` codes of a 400 that another attempt may change (RFC 8935 §2.4: the
/// transmitter's credentials, which the receiver can fix by updating the stream).
const TRANSIENT_ERRS: [&str; 2] = ["authentication_failed", "access_denied"];

/// A push attempt's decision and the row's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushVerdict {
    /// What to do next.
    pub decision: Decision,
    /// The row's `last_error`: `None` when delivered; otherwise what the receiver answered
    /// (status, `err`, `description`) or why the attempt failed, and why it was given up.
    pub last_error: Option<String>,
}

/// Decides what follows a push attempt.
///
/// `attempts_made` counts every attempt so far, this one included; `budget_started_at` is
/// when the row's age budget began; `jitter` is a sample from `[0, 1)`.
///
/// | Answer | Decision |
/// |---|---|
/// | 202 (§2.2) | delivered |
/// | other 2xx | delivered; not conforming, logged at debug |
/// | 400 with `err` `authentication_failed` or `access_denied` | retry, within the budgets |
/// | 400 with any other `err` (`invalid_request`, `invalid_key`, `invalid_issuer`, `invalid_audience`, unknown), or none | give up: the same SET would be refused again |
/// | 401, 403 | retry, within the budgets: the receiver can update the stream's `authorization_header` |
/// | 408, 429, 5xx | retry, honouring `Retry-After` (capped) |
/// | timeout, connect, TLS, reset, other transport errors | retry |
/// | refused by the SSRF guard | give up |
/// | 3xx (redirects are never followed), other 4xx, 1xx | give up |
///
/// "Within the budgets": the policy's attempt and age budgets bound every retry; once spent,
/// the row is given up with the last answer in its `last_error`.
pub fn decide_push(
    policy: &RetryPolicy,
    outcome: &Outcome,
    attempts_made: u32,
    budget_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> PushVerdict {
    let retry = |what: Retryable, retry_after| {
        retry::retry_within_budget(
            policy,
            what,
            retry_after,
            attempts_made,
            budget_started_at,
            now,
            jitter,
        )
    };
    let (decision, answer) = match outcome {
        Outcome::Status {
            code,
            retry_after,
            error,
        } => {
            let code = *code;
            let answer = describe_answer(code, error.as_ref());
            let decision = match code {
                202 => Decision::Delivered,
                200..=299 => {
                    tracing::debug!(
                        status = code,
                        "SET push answered 2xx other than 202: not conforming to RFC 8935 §2.2"
                    );
                    Decision::Delivered
                }
                400 if is_transient(error.as_ref()) => retry(Retryable::Status(code), *retry_after),
                400 => give_up(Terminal::Rejected(error.clone())),
                401 | 403 | 408 | 429 | 500..=599 => retry(Retryable::Status(code), *retry_after),
                300..=399 => give_up(Terminal::Redirect(code)),
                401..=499 => give_up(Terminal::Refused(code)),
                _ => give_up(Terminal::Unexpected(code)),
            };
            (decision, Some(answer))
        }
        Outcome::Refused(why) => (give_up(Terminal::Guard(why.clone())), None),
        Outcome::Timeout => (retry(Retryable::Timeout, None), None),
        Outcome::Connect(e) => (retry(Retryable::Connect(e.clone()), None), None),
        Outcome::Tls(e) => (retry(Retryable::Tls(e.clone()), None), None),
        Outcome::Reset(e) => (retry(Retryable::Reset(e.clone()), None), None),
        Outcome::Other(e) => (retry(Retryable::Other(e.clone()), None), None),
    };
    let last_error = last_error(&decision, answer, outcome);
    PushVerdict {
        decision,
        last_error,
    }
}

fn give_up(terminal: Terminal) -> Decision {
    Decision::GiveUp(terminal.into())
}

fn is_transient(error: Option<&RpError>) -> bool {
    error
        .and_then(|e| e.error.as_deref())
        .is_some_and(|err| TRANSIENT_ERRS.contains(&err))
}

/// What the receiver answered, for operators: `status 400: the receiver refused the SET;
/// err=invalid_key; description=...` (the text was cleaned when it was read).
fn describe_answer(code: u16, error: Option<&RpError>) -> String {
    let mut text = match code {
        400 => "status 400: the receiver refused the SET".to_owned(),
        300..=399 => format!("status {code}: redirects are never followed"),
        _ => format!("status {code}"),
    };
    if let Some(error) = error {
        if let Some(err) = &error.error {
            text.push_str(&format!("; err={err}"));
        }
        if let Some(description) = &error.error_description {
            text.push_str(&format!("; description={description}"));
        }
    }
    text
}

/// The row's `last_error`: the receiver's answer (or the transport failure), and when given
/// up for a spent budget, that reason first.
fn last_error(decision: &Decision, answer: Option<String>, outcome: &Outcome) -> Option<String> {
    match (decision, answer) {
        (Decision::Delivered, _) => None,
        (Decision::GiveUp(retry::GiveUpReason::Terminal(_)), Some(answer)) => Some(answer),
        (Decision::GiveUp(reason), Some(answer)) => Some(format!("{reason} ({answer})")),
        (Decision::GiveUp(reason), None) => Some(reason.to_string()),
        (Decision::RetryAt(_), Some(answer)) => Some(answer),
        (Decision::RetryAt(_), None) => Some(transport_text(outcome)),
    }
}

fn transport_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Timeout => Retryable::Timeout.to_string(),
        Outcome::Connect(e) => Retryable::Connect(e.clone()).to_string(),
        Outcome::Tls(e) => Retryable::Tls(e.clone()).to_string(),
        Outcome::Reset(e) => Retryable::Reset(e.clone()).to_string(),
        Outcome::Other(e) => Retryable::Other(e.clone()).to_string(),
        Outcome::Refused(e) => Terminal::Guard(e.clone()).to_string(),
        Outcome::Status { code, .. } => format!("status {code}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    fn status(code: u16, err: Option<&str>) -> Outcome {
        Outcome::Status {
            code,
            retry_after: None,
            error: err.map(|e| RpError {
                error: Some(e.to_owned()),
                error_description: Some("why".to_owned()),
            }),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Delivered,
        Retry,
        GiveUp,
    }

    fn verdict(outcome: &Outcome, attempts: u32) -> PushVerdict {
        decide_push(&RetryPolicy::default(), outcome, attempts, t0(), t0(), 0.5)
    }

    fn kind(decision: &Decision) -> Want {
        match decision {
            Decision::Delivered => Want::Delivered,
            Decision::RetryAt(_) => Want::Retry,
            Decision::GiveUp(_) => Want::GiveUp,
        }
    }

    #[test]
    fn rfc8935_answers_follow_the_push_table() {
        let cases = [
            (status(202, None), Want::Delivered),
            (status(200, None), Want::Delivered),
            (status(204, None), Want::Delivered),
            (status(400, Some("invalid_request")), Want::GiveUp),
            (status(400, Some("invalid_key")), Want::GiveUp),
            (status(400, Some("invalid_issuer")), Want::GiveUp),
            (status(400, Some("invalid_audience")), Want::GiveUp),
            (status(400, Some("something_new")), Want::GiveUp),
            (status(400, None), Want::GiveUp),
            (status(400, Some("authentication_failed")), Want::Retry),
            (status(400, Some("access_denied")), Want::Retry),
            (status(401, None), Want::Retry),
            (status(403, None), Want::Retry),
            (status(408, None), Want::Retry),
            (status(429, None), Want::Retry),
            (status(500, None), Want::Retry),
            (status(503, None), Want::Retry),
            (status(301, None), Want::GiveUp),
            (status(307, None), Want::GiveUp),
            (status(404, None), Want::GiveUp),
            (status(415, None), Want::GiveUp),
            (status(101, None), Want::GiveUp),
            (Outcome::Timeout, Want::Retry),
            (Outcome::Connect("host h: refused".into()), Want::Retry),
            (Outcome::Tls("host h: bad cert".into()), Want::Retry),
            (Outcome::Reset("host h: reset".into()), Want::Retry),
            (
                Outcome::Refused("host h resolves to 10.0.0.1".into()),
                Want::GiveUp,
            ),
        ];
        for (outcome, want) in cases {
            let got = verdict(&outcome, 1);
            assert_eq!(kind(&got.decision), want, "{outcome:?}");
            assert_eq!(
                got.last_error.is_none(),
                want == Want::Delivered,
                "{outcome:?}: {:?}",
                got.last_error
            );
        }
    }

    #[test]
    fn a_refusal_records_err_and_description() {
        let got = verdict(&status(400, Some("invalid_audience")), 1);
        assert_eq!(
            got.last_error.as_deref(),
            Some("status 400: the receiver refused the SET; err=invalid_audience; description=why")
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let outcome = Outcome::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(120)),
            error: None,
        };
        let got = verdict(&outcome, 1);
        assert_eq!(
            got.decision,
            Decision::RetryAt(t0() + chrono::Duration::seconds(120))
        );
        assert_eq!(got.last_error.as_deref(), Some("status 503"));
    }

    #[test]
    fn authentication_failures_stop_at_the_attempt_budget() {
        let max = RetryPolicy::default().max_attempts();
        let got = verdict(&status(400, Some("authentication_failed")), max);
        assert_eq!(kind(&got.decision), Want::GiveUp);
        let text = got.last_error.unwrap();
        assert!(text.starts_with("attempt budget exhausted"), "{text}");
        assert!(text.contains("err=authentication_failed"), "{text}");
        let got = verdict(&status(401, None), max);
        assert_eq!(kind(&got.decision), Want::GiveUp);
    }

    #[test]
    fn transport_failures_name_the_cause() {
        let got = verdict(&Outcome::Timeout, 1);
        assert_eq!(got.last_error.as_deref(), Some("timeout"));
        let got = verdict(&Outcome::Refused("private address".into()), 1);
        assert_eq!(
            got.last_error.as_deref(),
            Some("refused by the SSRF guard: private address")
        );
    }
}
