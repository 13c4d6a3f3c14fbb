//! The mock RP: a conformance receiver for back-channel logout requests (spec §2.5-§2.8).
//!
//! It accepts `POST` on any path except [`RECEIPTS_PATH`], validates the token with the same
//! verifier as `logoutd token verify` ([`JwksSource::verify`]), keeps a bounded `jti` replay
//! cache, answers 200 with `Cache-Control: no-store` or 400 `invalid_request`, and records
//! every POST as a [`Receipt`]. [`Faults`] make it drop, fail, delay or redirect requests so
//! that senders can be tested.
//!
//! It stands apart from the server: of the rest of the crate it uses only the verifier and the
//! clock, as an RP written against any JOSE library would (no store, keys, dispatcher or API).
//!
//! # Layout
//!
//! - `mod.rs`: configuration, the accept loop and the [`MockRpHandle`].
//! - `handler`: routing, fault selection and replies.
//! - `inspect`: validation of one request; `form`: the body and its strict parse.
//! - `cache`: the replay cache and attempt counters; `faults`: the fault plan.
//! - `receipt`: one receipt and its size caps; `log`: the receipts kept in memory (bounded
//!   in count and bytes) and the receipts file (rotated at a size cap).
//!
//! ```ignore
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let jwks = JwksSource::from_uri("http://127.0.0.1:8080/.well-known/jwks.json").await?;
//! let options = VerifyOptions::new(Issuer::new("http://127.0.0.1:8080"), ClientId::new("rp-1"));
//! let rp = MockRp::start(listener, MockRpConfig::new(options, jwks)).await?;
//! // ... deliver to rp.url("/backchannel") ...
//! assert!(rp.receipts().iter().all(|r| r.valid));
//! ```

mod cache;
mod faults;
mod form;
mod handler;
mod inspect;
mod log;
mod receipt;

pub(crate) use cache::{AttemptCounter, DEFAULT_CACHE_CAPACITY, ReplayCache};
pub(crate) use faults::Fault;
pub use faults::{DEFAULT_FAIL_STATUS, Faults};
pub(crate) use form::{ReadBody, read_capped};
pub(crate) use handler::{Dropped, RECEIPTS_PATH, json, method_not_allowed, receipts, respond};
pub(crate) use log::ReceiptLog;
pub use log::{
    DEFAULT_MEMORY_RECEIPT_BYTES, DEFAULT_RECEIPTS_FILE_MAX_BYTES, LogLimits, rotated_path,
};
pub use receipt::Receipt;

use crate::clock::{SharedClock, SystemClock};
use crate::verify::{JwksSource, VerifyOptions};
use axum::body::Body;
use chrono::{DateTime, SecondsFormat, Utc};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Default cap on request bodies (64 KiB); a larger body is answered 413.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// How the mock RP validates, answers and records.
#[derive(Clone)]
pub struct MockRpConfig {
    /// What a valid token looks like (the same options as `token verify`).
    pub verify: VerifyOptions,
    /// The OP's keys, refetched (rate-limited) on an unknown `kid`.
    pub jwks: Arc<JwksSource>,
    /// Faults to inject.
    pub faults: Faults,
    /// Answer a replayed `jti` with 400 instead of 200.
    pub replay_as_error: bool,
    /// A file to append receipts to, one JSON line each.
    pub receipts_file: Option<PathBuf>,
    /// How many receipts memory keeps, and the receipts file's rotation size.
    pub receipt_limits: LogLimits,
    /// Cap on request bodies, in bytes.
    pub body_limit: usize,
    /// Cap on the entries of the replay cache and of the attempt counters.
    pub cache_capacity: usize,
    /// Time, for token validation and receipts.
    pub clock: SharedClock,
    /// The RP's private key: when set, only encrypted tokens (JWE) are accepted, and they
    /// are decrypted before the checks; when unset, a JWE is refused.
    pub decryption_key: Option<Arc<crate::jwe::DecryptionKey>>,
}

impl std::fmt::Debug for MockRpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockRpConfig")
            .field("verify", &self.verify)
            .field("jwks", &self.jwks)
            .field("faults", &self.faults)
            .field("replay_as_error", &self.replay_as_error)
            .field("receipts_file", &self.receipts_file)
            .field("receipt_limits", &self.receipt_limits)
            .field("body_limit", &self.body_limit)
            .field("decryption_key", &self.decryption_key)
            .finish_non_exhaustive()
    }
}

impl MockRpConfig {
    /// No faults, no receipts file, default limits, the system clock.
    pub fn new(verify: VerifyOptions, jwks: JwksSource) -> Self {
        Self {
            verify,
            jwks: Arc::new(jwks),
            faults: Faults::default(),
            replay_as_error: false,
            receipts_file: None,
            receipt_limits: LogLimits::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            clock: Arc::new(SystemClock),
            decryption_key: None,
        }
    }
}

/// State shared by every connection.
struct Shared {
    config: MockRpConfig,
    log: ReceiptLog,
    posts: AtomicU64,
    replay: Mutex<ReplayCache>,
    attempts: Mutex<AttemptCounter>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    /// True when `jti` was accepted before; when `accept`, remembers it until `expiry`.
    fn check_replay(&self, jti: &str, expiry: i64, now: DateTime<Utc>, accept: bool) -> bool {
        let now = now.timestamp();
        let mut cache = lock(&self.replay);
        let seen = cache.contains(jti, now);
        if accept && !seen {
            cache.insert(jti, expiry, now);
        }
        seen
    }

    /// Builds the receipt of one POST, counting its attempt, within the receipt caps.
    fn receipt(
        &self,
        parts: &Parts,
        now: DateTime<Utc>,
        inspection: inspect::Inspection,
        status: Option<u16>,
        fault: Option<Fault>,
    ) -> Receipt {
        let (jti, sid, sub) = (
            inspection.claim("jti"),
            inspection.claim("sid"),
            inspection.claim("sub"),
        );
        let attempt = attempt_key(&sid, &sub, &jti).map(|key| lock(&self.attempts).next(&key));
        let valid = inspection.valid();
        let mut notes = inspection.notes;
        let query = recorded_query(parts, &mut notes);
        Receipt {
            time: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            path: parts.uri.path().to_owned(),
            query,
            status,
            valid,
            errors: inspection.errors,
            notes,
            claims: inspection.claims,
            jti,
            sid,
            sub,
            claims_truncated: false,
            attempt,
            replay: inspection.replay,
            fault: fault.map(|f| f.name().to_owned()),
        }
        .bounded()
    }
}

/// What attempts are counted by: `sid`, else `sub`, else `jti`.
fn attempt_key(sid: &Option<String>, sub: &Option<String>, jti: &Option<String>) -> Option<String> {
    match (sid, sub, jti) {
        (Some(sid), _, _) => Some(format!("sid:{sid}")),
        (None, Some(sub), _) => Some(format!("sub:{sub}")),
        (None, None, Some(jti)) => Some(format!("jti:{jti}")),
        (None, None, None) => None,
    }
}

/// The query string for the receipt; one that carries a `logout_token` is left out.
fn recorded_query(parts: &Parts, notes: &mut Vec<String>) -> Option<String> {
    let query = parts.uri.query()?;
    if query.contains("logout_token") {
        notes.push("the query string holds logout_token; not recorded".into());
        return None;
    }
    Some(query.to_owned())
}

/// The mock RP server.
#[derive(Debug)]
pub struct MockRp;

/// A running mock RP. Dropping it stops the server; [`MockRpHandle::shutdown`] also waits.
pub struct MockRpHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockRpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MockRpHandle({})", self.addr)
    }
}

impl MockRp {
    /// Serves on `listener` until the handle is shut down or dropped. Fails when the
    /// receipts file cannot be opened or the listener has no local address.
    pub async fn start(
        listener: TcpListener,
        config: MockRpConfig,
    ) -> std::io::Result<MockRpHandle> {
        let addr = listener.local_addr()?;
        let log = ReceiptLog::open(config.receipts_file.as_deref(), config.receipt_limits).await?;
        let capacity = config.cache_capacity;
        let shared = Arc::new(Shared {
            config,
            log,
            posts: AtomicU64::new(0),
            replay: Mutex::new(ReplayCache::new(capacity)),
            attempts: Mutex::new(AttemptCounter::new(capacity)),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            shutdown.clone(),
            handler::handle,
        ));
        Ok(MockRpHandle {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }
}

impl MockRpHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` followed by `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Every receipt kept in memory, in arrival order.
    pub fn receipts(&self) -> Vec<Receipt> {
        self.shared.log.all()
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::warn!(error = %err, "mock RP task ended abnormally");
        }
    }
}

impl Drop for MockRpHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Accepts connections on `listener` until `shutdown`, serving each over HTTP/1.1 with
/// `handle` and the receiver's `shared` state, then closes the open ones. The mock RP's and
/// the mock SSF receiver's server.
pub(crate) async fn accept_loop<S, H, F>(
    listener: TcpListener,
    shared: Arc<S>,
    shutdown: CancellationToken,
    handle: H,
) where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Request<Incoming>) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Dropped>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, shared.clone(), handle));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Serves one connection with `handle`.
async fn serve<S, H, F>(stream: TcpStream, shared: Arc<S>, handle: H)
where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Request<Incoming>) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Dropped>> + Send + 'static,
{
    let service = service_fn(move |req| handle(shared.clone(), req));
    if let Err(err) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
