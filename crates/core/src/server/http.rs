//! The API's accept loop: one hyper HTTP/1.1 connection per accepted socket, each behind a
//! [`Guard`], at most `max_connections` at once, and a shutdown bounded in time.
//!
//! - Past the cap, a connection is still accepted (so that nothing piles up in the listen
//!   backlog, holding descriptors and timing out unseen), answered 503 in Auth0's shape with
//!   `Retry-After: 1` and `Connection: close`, and closed.
//! - An accept that fails for lack of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`)
//!   is retried after [`ACCEPT_BACKOFF`] instead of spinning or ending the server.
//! - On shutdown the listener closes, idle connections close at once, busy ones finish their
//!   request, and whatever is still open after `shutdown_grace` is dropped.

use super::exchange::{self, Exchange};
use super::guard::{self, Guard, Timeouts};
use crate::api::ApiError;
use crate::config::HttpSettings;
use axum::Router;
use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pause after an accept failed for lack of resources.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most refused connections being answered and drained at once; past it a refusal is written
/// without waiting and the socket closed at once.
const MAX_LINGERING: usize = 64;
/// Longest wait for connections to close once the grace is over.
const HARD_STOP_WAIT: Duration = Duration::from_secs(1);
/// How often a run of refusals or accept failures is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// hyper's own limits, above the guard's so that the guard answers first.
const HYPER_MAX_BUF: usize = 2 * guard::MAX_HEAD_BYTES;
const HYPER_MAX_HEADERS: usize = guard::MAX_HEADERS + 28;

/// Shared by the accept loop and its connections.
struct Shared {
    router: Router,
    timeouts: Timeouts,
    body_timeout: Duration,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains the connections
/// for at most `settings.shutdown_grace` and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    shutdown: CancellationToken,
) {
    let cap = settings.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(cap));
    let lingering = Arc::new(Semaphore::new((cap / 4).clamp(1, MAX_LINGERING)));
    let busy = Arc::new(guard::raw_response(&busy_error(), "retry-after: 1\r\n"));
    let shared = Arc::new(Shared {
        router,
        timeouts: Timeouts {
            header: settings.header_read_timeout,
            idle: settings.idle_timeout,
        },
        body_timeout: settings.body_read_timeout,
        shutdown: shutdown.clone(),
        hard_stop: CancellationToken::new(),
    });
    let mut refusals = Tally::default();
    let mut failures = Tally::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    tokio::spawn(connection(stream, slot, shared.clone()));
                }
                Err(_) => {
                    refuse(stream, &lingering, &busy);
                    refusals.note(|n| {
                        tracing::warn!(
                            refused = n,
                            max_connections = cap,
                            "API connection cap reached; refusing connections with 503"
                        )
                    });
                }
            },
            Err(err) if is_per_connection(&err) => {}
            Err(err) => {
                failures.note(|n| {
                    tracing::error!(
                        error = %err,
                        failures = n,
                        "accepting API connections failed; retrying"
                    )
                });
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    drain(&slots, cap, settings.shutdown_grace, &shared.hard_stop).await;
}

/// Waits for every connection to close, for at most `grace`; then drops the rest.
async fn drain(slots: &Arc<Semaphore>, cap: usize, grace: Duration, hard_stop: &CancellationToken) {
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_ok()
    {
        return;
    }
    let open = cap.saturating_sub(slots.available_permits());
    tracing::warn!(
        open,
        grace_ms = grace.as_millis() as u64,
        "API connections still open after the shutdown grace; closing them"
    );
    hard_stop.cancel();
    let _ = tokio::time::timeout(HARD_STOP_WAIT, slots.acquire_many(all)).await;
}

/// Serves one connection until it ends, the server stops it gracefully, or the grace is over.
async fn connection(stream: TcpStream, slot: OwnedSemaphorePermit, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let exchange = Arc::new(Exchange::default());
    let io = TokioIo::new(Guard::new(stream, exchange.clone(), shared.timeouts));
    let service = exchange::service(shared.router.clone(), exchange, shared.body_timeout);
    let conn = http1::Builder::new()
        .max_buf_size(HYPER_MAX_BUF)
        .max_headers(HYPER_MAX_HEADERS)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => Some(ended),
        _ = shared.shutdown.cancelled() => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                ended = conn.as_mut() => ended,
                _ = shared.hard_stop.cancelled() => Ok(()),
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!(error = %err, "API connection ended with an error");
    }
    drop(slot);
}

fn busy_error() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        "the server has too many open connections; retry later",
    )
}

/// Answers a connection past the cap with 503 and closes it, lingering briefly so that the
/// client reads the answer; without a lingering slot, writes what the socket takes and
/// closes at once.
fn refuse(stream: TcpStream, lingering: &Arc<Semaphore>, answer: &Arc<Vec<u8>>) {
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        let _ = stream.try_write(answer);
        return;
    };
    let answer = answer.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        let linger = async {
            stream.write_all(&answer).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(guard::LINGER, linger).await;
        drop(permit);
    });
}

/// Accept errors about one connection only, after which accepting goes on at once.
fn is_per_connection(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Counts events and logs at most once per [`LOG_EVERY`], with the count since the last log.
#[derive(Default)]
struct Tally {
    count: u64,
    logged: Option<Instant>,
}

impl Tally {
    fn note(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            log(self.count);
            self.count = 0;
            self.logged = Some(Instant::now());
        }
    }
}
