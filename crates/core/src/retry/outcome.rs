//! What one delivery attempt produced, and its classification for [`super::decide`].

use super::reason::{OtherFailure, Retryable, Terminal};
use std::time::Duration;

/// The `{"error", "error_description"}` body an RP may send with a 400 (spec §2.8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpError {
    /// The `error` code, such as `invalid_request`.
    pub error: Option<String>,
    /// The human-readable `error_description`.
    pub error_description: Option<String>,
}

/// What happened to one attempt, as the sender saw it.
///
/// Transport messages never contain the logout token nor the URL's query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The RP answered with an HTTP status.
    Status {
        /// The status code.
        code: u16,
        /// The parsed `Retry-After` header, if any.
        retry_after: Option<Duration>,
        /// The RP's error body, parsed for a 400.
        error: Option<RpError>,
    },
    /// The attempt did not complete within its timeout.
    Timeout,
    /// The TCP connection could not be established (or DNS failed).
    Connect(String),
    /// The TLS handshake failed.
    Tls(String),
    /// The connection was closed or reset before a complete response.
    Reset(String),
    /// The SSRF guard refused the URL: every address of its host is non-public, or its scheme
    /// is not allowed. Terminal: a name that resolves to a loopback, private or metadata
    /// address is a configuration or attack issue, and retrying would only hammer the guard.
    Refused(String),
    /// Any other failure: no host, no token minted, or another transport error.
    Other(OtherFailure),
}

/// The classification that [`super::decide`] turns into a decision.
pub(super) enum Class {
    Delivered,
    Terminal(Terminal),
    Retryable {
        what: Retryable,
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// A status outcome with no header or body details.
    pub fn status(code: u16) -> Self {
        Outcome::Status {
            code,
            retry_after: None,
            error: None,
        }
    }

    pub(super) fn classify(&self) -> Class {
        let retry = |what: Retryable| Class::Retryable {
            what,
            retry_after: None,
        };
        match self {
            Outcome::Status {
                code,
                retry_after,
                error,
            } => classify_status(*code, *retry_after, error.as_ref()),
            Outcome::Timeout => retry(Retryable::Timeout),
            Outcome::Connect(e) => retry(Retryable::Connect(e.clone())),
            Outcome::Tls(e) => retry(Retryable::Tls(e.clone())),
            Outcome::Reset(e) => retry(Retryable::Reset(e.clone())),
            Outcome::Other(e) => retry(Retryable::Other(e.clone())),
            Outcome::Refused(e) => Class::Terminal(Terminal::Guard(e.clone())),
        }
    }
}

fn classify_status(code: u16, retry_after: Option<Duration>, error: Option<&RpError>) -> Class {
    match code {
        200 | 204 => Class::Delivered,
        400 => Class::Terminal(Terminal::Rejected(error.cloned())),
        408 | 429 | 500..=599 => Class::Retryable {
            what: Retryable::Status(code),
            retry_after,
        },
        300..=399 => Class::Terminal(Terminal::Redirect(code)),
        401..=499 => Class::Terminal(Terminal::Refused(code)),
        _ => Class::Terminal(Terminal::Unexpected(code)),
    }
}
