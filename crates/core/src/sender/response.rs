//! Turning what the HTTP client returned into a [`retry::Outcome`].
//!
//! Messages built here name the host only: never the logout token, never the URL's query.

use super::resolve::RefusedAddress;
use crate::retry::{self, OtherFailure, Outcome, RpError};
use crate::token::LogoutToken;
use chrono::{DateTime, Utc};
use reqwest::header::RETRY_AFTER;
use std::error::Error as StdError;
use std::io;
use tokio::time::{Instant, timeout_at};

/// What the sender needs to read a response.
pub(super) struct ReadLimits<'a> {
    /// When the attempt's time runs out.
    pub deadline: Instant,
    /// The most body bytes read.
    pub max_bytes: usize,
    /// The token sent, scrubbed from anything the RP echoes back.
    pub token: &'a LogoutToken,
    /// The current time, for HTTP-date `Retry-After` values.
    pub now: DateTime<Utc>,
}

/// Reads the status, `Retry-After` and (for a 400) the RP's error body.
///
/// The status line is the RP's answer: if the body is slow or broken, the status still
/// stands, and the body is simply not used. At most `max_bytes` of the body are read; the
/// rest is left unread and the connection is dropped rather than returned to the pool.
pub(super) async fn outcome(response: reqwest::Response, limits: ReadLimits<'_>) -> Outcome {
    let code = response.status().as_u16();
    let retry_after = retry_after(&response, limits.now);
    let body = timeout_at(limits.deadline, read_capped(response, limits.max_bytes))
        .await
        .unwrap_or_default();
    let error = if code == 400 {
        parse_rp_error(&body, limits.token)
    } else {
        None
    };
    Outcome::Status {
        code,
        retry_after,
        error,
    }
}

/// Reads the status and `Retry-After` of a response whose body is not used (the operator
/// webhook's); the body is read up to `max_bytes` before `deadline`, and dropped.
pub(super) async fn status_only(
    response: reqwest::Response,
    deadline: Instant,
    max_bytes: usize,
    now: DateTime<Utc>,
) -> Outcome {
    let code = response.status().as_u16();
    let retry_after = retry_after(&response, now);
    let _ = timeout_at(deadline, read_capped(response, max_bytes)).await;
    Outcome::Status {
        code,
        retry_after,
        error: None,
    }
}

/// The parsed `Retry-After` header, if any.
pub(super) fn retry_after(
    response: &reqwest::Response,
    now: DateTime<Utc>,
) -> Option<std::time::Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, now))
}

/// Reads chunks until the body ends, fails, or passes `max_bytes`; keeps at most `max_bytes`.
pub(super) async fn read_capped(mut response: reqwest::Response, max_bytes: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = max_bytes.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
}

/// Parses `{"error", "error_description"}` and cleans both with [`retry::clean_rp_text`]:
/// no control characters, nothing shaped like a token or a part of one (the token sent
/// included), at most [`retry::MAX_RP_TEXT_CHARS`] characters. Everything downstream (the
/// attempt history, the log line, `last_error`) records this cleaned text.
fn parse_rp_error(body: &[u8], token: &LogoutToken) -> Option<RpError> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let clean = |s: String| retry::clean_rp_text(&s, Some(token));
    let error = RpError {
        error: parsed.error.map(clean),
        error_description: parsed.error_description.map(clean),
    };
    (error != RpError::default()).then_some(error)
}

/// Maps a client error to an outcome. Only `host` and the error chain are described.
pub(super) fn from_error(err: reqwest::Error, host: &str) -> Outcome {
    let err = err.without_url();
    if let Some(refused) = find::<RefusedAddress>(&err) {
        return Outcome::Refused(refused.to_string());
    }
    let what = describe(&err, host);
    if err.is_timeout() {
        Outcome::Timeout
    } else if err.is_connect() && has_io_kind(&err, &[io::ErrorKind::InvalidData]) {
        // rustls reports handshake and certificate failures as `InvalidData` I/O errors.
        Outcome::Tls(what)
    } else if err.is_connect() {
        Outcome::Connect(what)
    } else if is_reset(&err) {
        Outcome::Reset(what)
    } else {
        Outcome::Other(OtherFailure::Transport(what))
    }
}

fn is_reset(err: &reqwest::Error) -> bool {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let incomplete = chain(err).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
    });
    incomplete
        || has_io_kind(
            err,
            &[
                ConnectionReset,
                ConnectionAborted,
                BrokenPipe,
                UnexpectedEof,
            ],
        )
}

fn has_io_kind(err: &reqwest::Error, kinds: &[io::ErrorKind]) -> bool {
    chain(err).any(|e| {
        // `io::Error::source` skips a wrapped error, so nested I/O errors are unwrapped here.
        let mut io = e.downcast_ref::<io::Error>();
        while let Some(current) = io {
            if kinds.contains(&current.kind()) {
                return true;
            }
            io = current
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<io::Error>());
        }
        false
    })
}

fn find<T: StdError + 'static>(err: &reqwest::Error) -> Option<&T> {
    chain(err).find_map(|e| e.downcast_ref::<T>())
}

/// The error and its sources, outermost first.
fn chain<'a>(err: &'a reqwest::Error) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let first: &'a (dyn StdError + 'static) = err;
    std::iter::successors(Some(first), |e: &&'a (dyn StdError + 'static)| {
        (*e).source()
    })
}

fn describe(err: &reqwest::Error, host: &str) -> String {
    let mut parts = vec![format!("host {host}")];
    for e in chain(err) {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
