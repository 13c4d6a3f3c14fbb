//! Typed reasons: why an attempt failed without an answer, why it is worth retrying, and why a
//! delivery is given up. Their `Display` is the text operators read: the attempt history, the
//! log line and the row's `last_error` hold it byte for byte.

use super::outcome::RpError;
use super::rp_text::clean_rp_text;
use crate::token::MintError;
use std::fmt;

/// An attempt that failed without an answer, for a reason other than a timeout, a
/// connection, TLS or reset error, or the SSRF guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtherFailure {
    /// The URL has no host to connect to.
    NoHost,
    /// No logout token could be minted for the attempt.
    CannotSign(MintError),
    /// The signed token could not be encrypted for a client that registered encryption: no
    /// usable key could be obtained (the text says where it was looked for and why).
    CannotEncrypt(String),
    /// Another transport failure: the host and the HTTP client's error chain, never the
    /// token nor the URL's query.
    Transport(String),
}

impl fmt::Display for OtherFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHost => f.write_str("the URL has no host"),
            Self::CannotSign(err) => write!(f, "cannot sign: {err}"),
            Self::CannotEncrypt(why) => write!(f, "cannot encrypt: {why}"),
            Self::Transport(what) => f.write_str(what),
        }
    }
}

/// An outcome that a later attempt may change, so it is retried while the budgets last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retryable {
    /// 408, 429 or a 5xx.
    Status(u16),
    /// No answer within the attempt's timeout.
    Timeout,
    /// The connection could not be made (or DNS failed).
    Connect(String),
    /// The TLS handshake failed.
    Tls(String),
    /// The connection was closed before a complete answer.
    Reset(String),
    /// Any other failure.
    Other(OtherFailure),
}

impl fmt::Display for Retryable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code) => write!(f, "status {code}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Connect(e) => write!(f, "connect error: {e}"),
            Self::Tls(e) => write!(f, "TLS error: {e}"),
            Self::Reset(e) => write!(f, "connection reset: {e}"),
            Self::Other(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// An outcome that ends the delivery at once: another attempt would meet the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    /// 400: the RP rejected the token, with its `error` and `error_description` if it sent
    /// them (cleaned again when shown).
    Rejected(Option<RpError>),
    /// A 3xx: redirects are never followed.
    Redirect(u16),
    /// A 4xx other than 400, 408 and 429.
    Refused(u16),
    /// A 1xx, a 2xx other than 200 and 204, or a code beyond 599.
    Unexpected(u16),
    /// The SSRF guard refused the URL; the text names the host and addresses.
    Guard(String),
}

impl fmt::Display for Terminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(error) => {
                f.write_str("status 400: the RP rejected the logout token")?;
                let Some(e) = error else { return Ok(()) };
                if let Some(code) = &e.error {
                    write!(f, "; error={}", clean_rp_text(code, None))?;
                }
                if let Some(description) = &e.error_description {
                    write!(
                        f,
                        "; error_description={}",
                        clean_rp_text(description, None)
                    )?;
                }
                Ok(())
            }
            Self::Redirect(code) => write!(f, "status {code}: redirects are never followed"),
            Self::Refused(code) => write!(f, "status {code}: the RP refused the request"),
            Self::Unexpected(code) => {
                write!(f, "unexpected status {code}: the RP must answer 200 OK")
            }
            Self::Guard(e) => write!(f, "refused by the SSRF guard: {e}"),
        }
    }
}

/// Why a delivery became a dead letter. Its `Display` is stored as the row's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The last outcome is final.
    Terminal(Terminal),
    /// `max_attempts` attempts have been made.
    AttemptBudget {
        /// Attempts made, the last included.
        attempts: u32,
        /// What the last attempt met.
        last: Retryable,
    },
    /// The next retry would fall after the age budget.
    AgeBudget {
        /// The policy's `max_age`, in whole seconds.
        max_age_secs: u64,
        /// Attempts made, the last included.
        attempts: u32,
        /// What the last attempt met.
        last: Retryable,
    },
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Terminal(terminal) => fmt::Display::fmt(terminal, f),
            Self::AttemptBudget { attempts, last } => {
                write!(
                    f,
                    "attempt budget exhausted after {attempts} attempts; last: {last}"
                )
            }
            Self::AgeBudget {
                max_age_secs,
                attempts,
                last,
            } => write!(
                f,
                "age budget of {max_age_secs}s exhausted after {attempts} attempts; last: {last}"
            ),
        }
    }
}

impl From<Terminal> for GiveUpReason {
    fn from(terminal: Terminal) -> Self {
        Self::Terminal(terminal)
    }
}
