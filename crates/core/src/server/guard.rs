//! The I/O guard of one API connection: it sits between the socket and hyper and enforces
//! what hyper 1 does not offer on its own, so that no client can hold a connection for free.
//!
//! - **Header read timeout**: a connection's first request must have its headers in within
//!   `header_read_timeout` of the connection; on a kept-alive connection the clock starts at
//!   the request's first byte.
//! - **Idle timeout**: a kept-alive connection waits at most `idle_timeout` for the next
//!   request's first byte; a response the client does not read for as long also ends it.
//! - **Head limits**: a request head over [`MAX_HEAD_BYTES`] or with more than
//!   [`MAX_HEADERS`] header lines is answered 431 with Auth0's error body (hyper's own 431 has
//!   none), then the connection is shut and drained briefly so that the client reads the answer
//!   instead of a reset.
//!
//! Which phase a connection is in comes from the request counters of its [`Exchange`]: a
//! request is "with the router" from its dispatch to its response.

use super::exchange::Exchange;
use crate::api::ApiError;
use axum::http::StatusCode;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Largest request head (request line and headers) accepted: 64 KiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in a request head.
pub const MAX_HEADERS: usize = 100;
/// How long a refused connection is drained after its answer, so that the client reads the
/// answer rather than a reset caused by unread bytes.
pub(super) const LINGER: Duration = Duration::from_secs(1);

/// The timeouts a guard enforces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// From the connection, or a request's first byte, to the end of its headers.
    pub header: Duration,
    /// Waiting for the next request on a kept-alive connection; a stalled response write.
    pub idle: Duration,
}

/// Where a connection stands.
enum Phase {
    /// Waiting for a request's first byte since `since`; `first` for a new connection.
    Await { since: Instant, first: bool },
    /// Reading a request head that began at `since`.
    Head { since: Instant, scan: HeadScan },
    /// A request is with the router.
    Busy,
    /// Answering `answer` (from byte `written`), then draining until `until`.
    Refuse {
        answer: Vec<u8>,
        written: usize,
        shut: bool,
        until: Instant,
    },
}

/// Counts what has been seen of a request head.
#[derive(Default)]
struct HeadScan {
    bytes: usize,
    lines: usize,
    last: [u8; 2],
    done: bool,
}

impl HeadScan {
    /// Feeds bytes read; `Err` with the answer when the head breaks a limit.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        for &byte in bytes {
            if self.done {
                return Ok(());
            }
            self.bytes += 1;
            if byte == b'\n' {
                self.lines += 1;
                // An empty line ends the head: "\n\n" or "\n\r\n".
                self.done = self.last[1] == b'\n' || self.last == *b"\n\r";
            }
            self.last = [self.last[1], byte];
        }
        // The request line and the final empty line are not headers.
        if !self.done && self.lines > MAX_HEADERS + 1 || self.lines > MAX_HEADERS + 2 {
            return Err(too_large(format!(
                "a request may carry at most {MAX_HEADERS} header fields"
            )));
        }
        if self.bytes > MAX_HEAD_BYTES {
            return Err(too_large(format!(
                "the request line and headers may be at most {MAX_HEAD_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

fn too_large(message: String) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
        message,
    )
}

/// A complete HTTP/1.1 response carrying `error` in Auth0's shape, closing the connection.
pub(super) fn raw_response(error: &ApiError, extra_headers: &str) -> Vec<u8> {
    let body = error.body_json();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n{extra_headers}\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or("Error"),
        body.len(),
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The socket of one API connection, guarded.
pub(super) struct Guard<IO> {
    io: IO,
    exchange: Arc<Exchange>,
    timeouts: Timeouts,
    phase: Phase,
    /// Requests dispatched when the current phase began.
    dispatched: u64,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    write_stalled_since: Option<Instant>,
}

impl<IO> Guard<IO> {
    /// Guards `io`, accepted now.
    pub(super) fn new(io: IO, exchange: Arc<Exchange>, timeouts: Timeouts) -> Self {
        Self {
            io,
            exchange,
            timeouts,
            phase: Phase::Await {
                since: Instant::now(),
                first: true,
            },
            dispatched: 0,
            read_timer: None,
            write_timer: None,
            write_stalled_since: None,
        }
    }

    /// Follows the router: a dispatched request makes the connection busy, its response
    /// makes it wait for the next one.
    fn sync_phase(&mut self) {
        let started = self.exchange.started.load(Ordering::Acquire);
        match self.phase {
            Phase::Await { .. } | Phase::Head { .. } if started != self.dispatched => {
                self.dispatched = started;
                self.phase = Phase::Busy;
            }
            Phase::Busy if self.exchange.finished.load(Ordering::Acquire) == started => {
                self.phase = Phase::Await {
                    since: Instant::now(),
                    first: false,
                };
            }
            _ => {}
        }
    }

    /// When a read that finds nothing should give up, in the current phase.
    fn read_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Await { since, first: true } => Some(*since + self.timeouts.header),
            Phase::Await {
                since,
                first: false,
            } => Some(*since + self.timeouts.idle),
            Phase::Head { since, .. } => Some(*since + self.timeouts.header),
            Phase::Busy | Phase::Refuse { .. } => None,
        }
    }

    /// Takes note of bytes read; `Err` with the answer when the head breaks a limit.
    fn on_bytes(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        if let Phase::Await { .. } = self.phase {
            self.phase = Phase::Head {
                since: Instant::now(),
                scan: HeadScan::default(),
            };
        }
        match &mut self.phase {
            Phase::Head { scan, .. } => scan.feed(bytes),
            _ => Ok(()),
        }
    }
}

/// Arms `timer` for `deadline` and polls it: `true` once the deadline has passed.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    let timer = match timer {
        Some(timer) => {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    timer.as_mut().poll(cx).is_ready()
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Guard<IO> {
    /// Writes the refusal, shuts the write side, then drains until the client closes or the
    /// linger ends; always ends in an error, which makes hyper drop the connection.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Phase::Refuse {
            answer,
            written,
            shut,
            until,
        } = &mut self.phase
        else {
            return Poll::Ready(Ok(()));
        };
        let refused = || io::Error::other("request refused");
        loop {
            let step = if *written < answer.len() {
                match Pin::new(&mut self.io).poll_write(cx, &answer[*written..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(refused())),
                    Poll::Ready(Ok(n)) => {
                        *written += n;
                        continue;
                    }
                    Poll::Pending => Poll::Pending,
                }
            } else if !*shut {
                match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Ready(_) => {
                        *shut = true;
                        continue;
                    }
                    Poll::Pending => Poll::Pending,
                }
            } else {
                let mut scratch = [0u8; 1024];
                let mut drain = ReadBuf::new(&mut scratch);
                match Pin::new(&mut self.io).poll_read(cx, &mut drain) {
                    Poll::Ready(Ok(())) if !drain.filled().is_empty() => continue,
                    Poll::Ready(_) => return Poll::Ready(Err(refused())),
                    Poll::Pending => Poll::Pending,
                }
            };
            if expired(&mut self.read_timer, *until, cx) {
                return Poll::Ready(Err(refused()));
            }
            return step;
        }
    }

    fn refuse(&mut self, error: &ApiError, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tracing::debug!(
            status = error.status.as_u16(),
            "refusing an API request head"
        );
        self.phase = Phase::Refuse {
            answer: raw_response(error, ""),
            written: 0,
            shut: false,
            until: Instant::now() + LINGER,
        };
        self.poll_refuse(cx)
    }

    /// hyper may have polled the socket for reading last while the request was with the
    /// router, and does not poll it again until bytes arrive; so once a response is being
    /// written, the wait for the next request is armed from here.
    fn arm_read_deadline(&mut self, cx: &mut Context<'_>) {
        self.sync_phase();
        if let Some(deadline) = self.read_deadline()
            && expired(&mut self.read_timer, deadline, cx)
        {
            // Already past: make sure the read that reports it happens.
            cx.waker().wake_by_ref();
        }
    }

    /// Runs `write` on the socket; a write that stays blocked for the idle timeout fails.
    fn guard_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut IO>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match write(Pin::new(&mut self.io), cx) {
            Poll::Pending => {
                let since = *self.write_stalled_since.get_or_insert_with(Instant::now);
                if expired(&mut self.write_timer, since + self.timeouts.idle, cx) {
                    return Poll::Ready(Err(timed_out("response write")));
                }
                Poll::Pending
            }
            ready => {
                self.write_stalled_since = None;
                self.arm_read_deadline(cx);
                ready
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.sync_phase();
        if let Phase::Refuse { .. } = this.phase {
            return this.poll_refuse(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if fresh.is_empty() || matches!(this.phase, Phase::Busy) {
                    return Poll::Ready(Ok(()));
                }
                if let Err(error) = this.on_bytes(fresh) {
                    // hyper never sees the head; the guard answers instead.
                    buf.set_filled(before);
                    return this.refuse(&error, cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(deadline) = this.read_deadline()
                    && expired(&mut this.read_timer, deadline, cx)
                {
                    let what = match this.phase {
                        Phase::Await { first: false, .. } => "idle keep-alive connection",
                        _ => "request head",
                    };
                    return Poll::Ready(Err(timed_out(what)));
                }
                Poll::Pending
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard_write(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard_write(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard_write(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.guard_write(cx, |io, cx| io.poll_shutdown(cx)))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_empty_line_and_body_newlines_do_not_count() {
        let mut scan = HeadScan::default();
        let body = "\n".repeat(500);
        let request = format!("POST / HTTP/1.1\r\nHost: a\r\n\r\n{body}");
        scan.feed(request.as_bytes()).unwrap();
        assert!(scan.done);
        assert_eq!(scan.lines, 3);
    }

    #[test]
    fn a_head_with_one_header_too_many_is_refused_with_431() {
        let head = |headers: usize| {
            let mut text = String::from("GET / HTTP/1.1\r\n");
            for n in 0..headers {
                text.push_str(&format!("X-{n}: v\r\n"));
            }
            text.push_str("\r\n");
            text
        };
        assert!(
            HeadScan::default()
                .feed(head(MAX_HEADERS).as_bytes())
                .is_ok()
        );
        let err = HeadScan::default()
            .feed(head(MAX_HEADERS + 1).as_bytes())
            .unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn a_head_is_refused_once_it_passes_the_byte_limit_even_unfinished() {
        let mut scan = HeadScan::default();
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES / 2));
        scan.feed(line.as_bytes()).unwrap();
        let err = scan.feed(line.as_bytes()).unwrap_err();
        assert_eq!(err.code, "request_header_fields_too_large");
    }

    #[test]
    fn the_raw_answer_is_a_complete_response_with_auth0_body() {
        let raw = raw_response(&too_large("x".into()), "retry-after: 1\r\n");
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("connection: close"));
        assert!(head.contains("retry-after: 1"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["statusCode"], 431);
        assert_eq!(json["errorCode"], "request_header_fields_too_large");
    }
}
