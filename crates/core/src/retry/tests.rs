//! Unit tests and properties of the retry decision.

use super::schedule::delay_ceiling;
use super::*;
use chrono::TimeZone as _;
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn decide_now(outcome: &Outcome, attempts: u32, jitter: f64) -> Decision {
    decide(
        &RetryPolicy::default(),
        outcome,
        attempts,
        t0(),
        t0(),
        jitter,
    )
}

fn retry_delay(d: &Decision) -> Duration {
    match d {
        Decision::RetryAt(at) => (*at - t0()).to_std().unwrap(),
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn give_up_reason(d: Decision) -> String {
    match d {
        Decision::GiveUp(reason) => reason.to_string(),
        other => panic!("expected give-up, got {other:?}"),
    }
}

#[test]
fn policy_constructor_rejects_nonsense() {
    let ok = |b, f, c, n, a| RetryPolicy::new(b, f, c, n, a);
    assert_eq!(
        ok(secs(0), 2.0, secs(9), 3, secs(9)),
        Err(RetryPolicyError::ZeroBase)
    );
    assert_eq!(
        ok(secs(1), 0.5, secs(9), 3, secs(9)),
        Err(RetryPolicyError::BadFactor)
    );
    assert_eq!(
        ok(secs(1), f64::NAN, secs(9), 3, secs(9)),
        Err(RetryPolicyError::BadFactor)
    );
    assert_eq!(
        ok(secs(1), f64::INFINITY, secs(9), 3, secs(9)),
        Err(RetryPolicyError::BadFactor)
    );
    assert_eq!(
        ok(secs(5), 2.0, secs(1), 3, secs(9)),
        Err(RetryPolicyError::CapBelowBase)
    );
    assert_eq!(
        ok(secs(1), 2.0, secs(9), 0, secs(9)),
        Err(RetryPolicyError::ZeroAttempts)
    );
    assert_eq!(
        ok(secs(1), 2.0, secs(9), 3, secs(0)),
        Err(RetryPolicyError::ZeroMaxAge)
    );
    assert!(ok(secs(1), 1.0, secs(1), 1, secs(1)).is_ok());
}

#[test]
fn defaults_match_the_design() {
    let p = RetryPolicy::default();
    assert_eq!(
        (p.base(), p.factor(), p.cap(), p.max_attempts(), p.max_age()),
        (secs(1), 2.0, secs(300), 12, secs(86_400))
    );
    assert_eq!(
        RetryPolicy::new(secs(1), 2.0, secs(300), 12, secs(86_400)),
        Ok(p)
    );
}

#[test]
fn ok_and_no_content_are_delivered() {
    assert_eq!(
        decide_now(&Outcome::status(200), 1, 0.5),
        Decision::Delivered
    );
    assert_eq!(
        decide_now(&Outcome::status(204), 1, 0.5),
        Decision::Delivered
    );
}

#[test]
fn bad_request_gives_up_with_the_rp_error() {
    let outcome = Outcome::Status {
        code: 400,
        retry_after: None,
        error: Some(RpError {
            error: Some("invalid_request".into()),
            error_description: Some("bad\nsignature".into()),
        }),
    };
    let reason = give_up_reason(decide_now(&outcome, 1, 0.5));
    assert!(reason.contains("error=invalid_request"), "{reason}");
    assert!(
        reason.contains("error_description=bad signature"),
        "{reason}"
    );
}

#[test]
fn rp_error_text_is_truncated_and_tokens_redacted() {
    let long = "x".repeat(1000);
    let outcome = Outcome::Status {
        code: 400,
        retry_after: None,
        error: Some(RpError {
            error: Some("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln".into()),
            error_description: Some(long),
        }),
    };
    let reason = give_up_reason(decide_now(&outcome, 1, 0.5));
    assert!(reason.contains("error=[redacted]"), "{reason}");
    assert!(!reason.contains("eyJ"), "{reason}");
    assert!(reason.len() < 400, "{}", reason.len());
}

#[test]
fn terminal_statuses_give_up() {
    for code in [
        100, 201, 202, 301, 302, 307, 308, 401, 403, 404, 410, 499, 600,
    ] {
        let reason = give_up_reason(decide_now(&Outcome::status(code), 1, 0.5));
        assert!(reason.contains(&code.to_string()), "{code}: {reason}");
    }
    let reason = give_up_reason(decide_now(&Outcome::status(307), 1, 0.5));
    assert!(reason.contains("redirects are never followed"), "{reason}");
}

#[test]
fn ssrf_refusal_is_terminal() {
    let reason = give_up_reason(decide_now(&Outcome::Refused("10.0.0.1".into()), 1, 0.5));
    assert!(reason.contains("SSRF"), "{reason}");
}

#[test]
fn transient_failures_retry() {
    for outcome in [
        Outcome::status(408),
        Outcome::status(429),
        Outcome::status(500),
        Outcome::status(503),
        Outcome::Timeout,
        Outcome::Connect("refused".into()),
        Outcome::Tls("bad cert".into()),
        Outcome::Reset("closed".into()),
        Outcome::Other(OtherFailure::Transport("?".into())),
    ] {
        assert!(
            matches!(decide_now(&outcome, 1, 0.5), Decision::RetryAt(_)),
            "{outcome:?}"
        );
    }
}

/// The text each reason was stored with before reasons were typed: `last_error` and the
/// attempt history must not change.
#[test]
fn typed_reasons_read_exactly_as_the_stored_text() {
    let connect = "host rp.example: error sending request: tcp connect error";
    let mint =
        crate::token::MintError::from(crate::keys::SignError::NoKey(crate::alg::SigningAlg::PS256));
    let cases: Vec<(GiveUpReason, &str)> = vec![
        (
            Terminal::Rejected(None).into(),
            "status 400: the RP rejected the logout token",
        ),
        (
            Terminal::Rejected(Some(RpError {
                error: Some("invalid_request".into()),
                error_description: Some("bad\nsig".into()),
            }))
            .into(),
            "status 400: the RP rejected the logout token; error=invalid_request; \
             error_description=bad sig",
        ),
        (
            Terminal::Rejected(Some(RpError {
                error: None,
                error_description: Some("only a description".into()),
            }))
            .into(),
            "status 400: the RP rejected the logout token; error_description=only a description",
        ),
        (
            Terminal::Redirect(307).into(),
            "status 307: redirects are never followed",
        ),
        (
            Terminal::Refused(410).into(),
            "status 410: the RP refused the request",
        ),
        (
            Terminal::Unexpected(202).into(),
            "unexpected status 202: the RP must answer 200 OK",
        ),
        (
            Terminal::Guard("host rp.example resolves only to non-public addresses".into()).into(),
            "refused by the SSRF guard: host rp.example resolves only to non-public addresses",
        ),
        (
            GiveUpReason::AttemptBudget {
                attempts: 12,
                last: Retryable::Timeout,
            },
            "attempt budget exhausted after 12 attempts; last: timeout",
        ),
        (
            GiveUpReason::AttemptBudget {
                attempts: 3,
                last: Retryable::Status(503),
            },
            "attempt budget exhausted after 3 attempts; last: status 503",
        ),
        (
            GiveUpReason::AgeBudget {
                max_age_secs: 86_400,
                attempts: 7,
                last: Retryable::Connect(connect.into()),
            },
            "age budget of 86400s exhausted after 7 attempts; last: connect error: host \
             rp.example: error sending request: tcp connect error",
        ),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text, "{reason:?}");
    }
    let last = [
        (Retryable::Tls("bad cert".into()), "TLS error: bad cert"),
        (
            Retryable::Reset("closed".into()),
            "connection reset: closed",
        ),
        (
            Retryable::Other(OtherFailure::NoHost),
            "transport error: the URL has no host",
        ),
        (
            Retryable::Other(OtherFailure::Transport("host h: body".into())),
            "transport error: host h: body",
        ),
        (
            Retryable::Other(OtherFailure::CannotSign(mint.clone())),
            "transport error: cannot sign: no active signing key for PS256; create one with \
             `logoutd keys generate --alg PS256`",
        ),
    ];
    for (what, text) in last {
        assert_eq!(what.to_string(), text, "{what:?}");
    }
    assert_eq!(OtherFailure::NoHost.to_string(), "the URL has no host");
    assert_eq!(
        OtherFailure::CannotSign(mint).to_string(),
        "cannot sign: no active signing key for PS256; create one with `logoutd keys generate \
         --alg PS256`"
    );
}

#[test]
fn decisions_carry_the_typed_reason() {
    assert_eq!(
        decide_now(&Outcome::status(301), 1, 0.5),
        Decision::GiveUp(Terminal::Redirect(301).into())
    );
    assert_eq!(
        decide_now(&Outcome::Refused("10.0.0.1".into()), 1, 0.5),
        Decision::GiveUp(Terminal::Guard("10.0.0.1".into()).into())
    );
    assert_eq!(
        decide_now(&Outcome::Other(OtherFailure::NoHost), 12, 0.5),
        Decision::GiveUp(GiveUpReason::AttemptBudget {
            attempts: 12,
            last: Retryable::Other(OtherFailure::NoHost),
        })
    );
}

#[test]
fn backoff_doubles_from_one_second_with_full_jitter() {
    let p = RetryPolicy::default();
    assert_eq!(backoff_delay(&p, 1, 1.0), secs(1));
    assert_eq!(backoff_delay(&p, 4, 1.0), secs(8));
    assert_eq!(backoff_delay(&p, 4, 0.5), secs(4));
    assert_eq!(backoff_delay(&p, 4, 0.0), Duration::ZERO);
    assert_eq!(backoff_delay(&p, 11, 1.0), secs(300));
    assert_eq!(backoff_delay(&p, u32::MAX, 1.0), secs(300));
    assert_eq!(backoff_delay(&p, 3, f64::NAN), Duration::ZERO);
    assert_eq!(backoff_delay(&p, 3, 7.0), secs(4));
}

#[test]
fn retry_after_is_honoured_up_to_the_cap() {
    let ask = |s| Outcome::Status {
        code: 429,
        retry_after: Some(secs(s)),
        error: None,
    };
    assert_eq!(retry_delay(&decide_now(&ask(30), 1, 0.5)), secs(30));
    assert_eq!(retry_delay(&decide_now(&ask(3600), 1, 0.5)), secs(300));
    // A shorter Retry-After than the jittered backoff does not shorten the wait.
    assert_eq!(retry_delay(&decide_now(&ask(0), 5, 1.0)), secs(16));
}

#[test]
fn attempt_budget_gives_up_after_max_attempts() {
    assert!(matches!(
        decide_now(&Outcome::Timeout, 11, 0.5),
        Decision::RetryAt(_)
    ));
    let reason = give_up_reason(decide_now(&Outcome::Timeout, 12, 0.5));
    assert!(reason.contains("attempt budget"), "{reason}");
    assert!(reason.contains("timeout"), "{reason}");
}

#[test]
fn age_budget_gives_up_when_the_next_attempt_is_too_late() {
    let p = RetryPolicy::default();
    let started = t0() - chrono::Duration::hours(24) + chrono::Duration::seconds(10);
    let soon = decide(&p, &Outcome::Timeout, 2, started, t0(), 0.5);
    assert!(matches!(soon, Decision::RetryAt(_)), "{soon:?}");
    let late = decide(&p, &Outcome::status(503), 5, started, t0(), 1.0);
    assert!(give_up_reason(late).contains("age budget"));
}

#[test]
fn retry_after_parses_seconds_and_dates() {
    let now = t0();
    assert_eq!(parse_retry_after("120", now), Some(secs(120)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("-5", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(Duration::from_secs(u64::MAX))
    );
    assert_eq!(
        parse_retry_after("Wed, 01 Jan 2025 00:01:30 GMT", now),
        Some(secs(90))
    );
    assert_eq!(
        parse_retry_after("Wednesday, 01-Jan-25 00:00:10 GMT", now),
        Some(secs(10))
    );
    assert_eq!(
        parse_retry_after("Tue, 31 Dec 2024 23:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    for garbage in ["", "soon", "1.5", "+3", "-", "12 s", "Wed, 99 Foo 2025"] {
        assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
    }
}

fn any_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        1u64..5_000,
        1.0f64..4.0,
        0u64..600_000,
        1u32..50,
        1u64..200_000,
    )
        .prop_map(|(base_ms, factor, extra_ms, attempts, age_s)| {
            RetryPolicy::new(
                Duration::from_millis(base_ms),
                factor,
                Duration::from_millis(base_ms + extra_ms),
                attempts,
                secs(age_s),
            )
            .unwrap()
        })
}

proptest! {
    #[test]
    fn delay_never_exceeds_the_cap(p in any_policy(), n in 0u32..200, j in -1.0f64..2.0) {
        prop_assert!(backoff_delay(&p, n, j) <= p.cap());
    }

    #[test]
    fn delay_never_exceeds_its_ceiling(p in any_policy(), n in 1u32..200, j in 0.0f64..1.0) {
        // Durations are never negative, so the lower bound holds by type.
        prop_assert!(backoff_delay(&p, n, j) <= delay_ceiling(&p, n));
    }

    #[test]
    fn ceiling_is_monotone(p in any_policy(), n in 1u32..200) {
        prop_assert!(delay_ceiling(&p, n) <= delay_ceiling(&p, n + 1));
    }

    #[test]
    fn attempt_budget_is_honoured(p in any_policy(), n in 0u32..100, j in 0.0f64..1.0) {
        let d = decide(&p, &Outcome::Timeout, n, t0(), t0(), j);
        if n >= p.max_attempts() {
            prop_assert!(matches!(d, Decision::GiveUp(_)));
        }
    }

    #[test]
    fn retries_stay_within_age_and_cap(
        p in any_policy(), n in 1u32..100, j in 0.0f64..1.0, ra in proptest::option::of(0u64..100_000),
    ) {
        let outcome = Outcome::Status { code: 503, retry_after: ra.map(secs), error: None };
        if let Decision::RetryAt(at) = decide(&p, &outcome, n, t0(), t0(), j) {
            let delay = (at - t0()).to_std().unwrap();
            prop_assert!(delay <= p.cap());
            prop_assert!(at <= t0() + chrono::Duration::from_std(p.max_age()).unwrap());
            if let Some(ra) = ra {
                prop_assert!(delay >= secs(ra).min(p.cap()));
            }
        }
    }
}
