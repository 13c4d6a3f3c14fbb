//! The mock SSF receiver: a strict receiver of Security Event Tokens for testing a
//! transmitter (SSF 1.0, RFC 8935 push, RFC 8936 poll, CAEP `session-revoked`).
//!
//! At start it reads the transmitter's metadata (`/.well-known/ssf-configuration`, SSF §7.2)
//! and JWKS, and creates its stream (§8.1.1.1) with its own bearer token: push to
//! `http://ADDR/ssf/events` with a random `Authorization` value, or poll. A 409 means the
//! transmitter already holds its stream: it is read, and its delivery updated when needed.
//!
//! Every SET is checked strictly (`validate`; an unknown `kid` makes it fetch the JWKS
//! again, once for that SET) and recorded as a [`SetReceipt`], readable at
//! `GET /receipts` exactly as the mock RP's are. Pushes are answered 202, or 400
//! `{"err","description"}` with an RFC 8935 §2.4 code. A push without the registered
//! `Authorization` gets 400 `authentication_failed`: RFC 8935 §2.4 defines that code for
//! this case, and a 400 with a code tells the transmitter more than a bare 401.
//! The mock RP's [`Faults`] (fail, drop, delay) apply to pushes, and `status` replaces the
//! 202 of valid ones. With poll, a task long-polls the stream, acknowledging what it
//! accepted and reporting the rest in `setErrs`.
//!
//! # Layout
//!
//! - `mod.rs`: configuration, start-up, the accept loop and the [`MockSsfHandle`].
//! - `discovery`: metadata and stream set-up; `validate`: the checks of one SET.
//! - `handler`: the push endpoint and receipts; `poll`: the poll loop.

mod discovery;
mod handler;
mod poll;
mod validate;

pub use discovery::{StreamInfo, well_known_url};

use crate::clock::{SharedClock, SystemClock};
use crate::mock_rp::{Faults, LogLimits, ReceiptLog, accept_loop};
use crate::verify::JwksSource;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The path pushes are received on.
pub const EVENTS_PATH: &str = "/ssf/events";
/// Default `maxEvents` of a poll.
pub const DEFAULT_MAX_EVENTS: u32 = 10;

/// Why the mock SSF receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockSsfError {
    /// Reading the metadata or JWKS, or setting up the stream, failed.
    #[error("SSF set-up failed: {0}")]
    Setup(String),
    /// The socket or the receipts file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How the mock SSF receiver sets up, checks, answers and records.
#[derive(Clone)]
pub struct MockSsfConfig {
    /// The transmitter's issuer, byte for byte as its metadata and SETs carry it.
    pub transmitter: String,
    /// The receiver's bearer token at the transmitter. A secret: never logged.
    pub token: String,
    /// Poll (RFC 8936) instead of push.
    pub poll: bool,
    /// `events_requested`; `None` leaves it out.
    pub events: Option<Vec<String>>,
    /// Faults injected into push answers.
    pub faults: Faults,
    /// The status valid pushes are answered with instead of 202.
    pub status: Option<StatusCode>,
    /// `maxEvents` of each poll.
    pub max_events: u32,
    /// A file to append receipts to, one JSON line each.
    pub receipts_file: Option<PathBuf>,
    /// How many receipts memory keeps, and the receipts file's rotation size.
    pub receipt_limits: LogLimits,
    /// Time, for `iat` and receipts.
    pub clock: SharedClock,
}

impl std::fmt::Debug for MockSsfConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockSsfConfig")
            .field("transmitter", &self.transmitter)
            .field("token", &"[redacted]")
            .field("poll", &self.poll)
            .field("events", &self.events)
            .field("faults", &self.faults)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl MockSsfConfig {
    /// Push, no faults, no receipts file, the system clock.
    pub fn new(transmitter: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            transmitter: transmitter.into(),
            token: token.into(),
            poll: false,
            events: None,
            faults: Faults::default(),
            status: None,
            max_events: DEFAULT_MAX_EVENTS,
            receipts_file: None,
            receipt_limits: LogLimits::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// What the receiver saw and answered for one SET (or one push that carried none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetReceipt {
    /// When it arrived (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// `push` or `poll`.
    pub delivery: String,
    /// The status answered to a push; `None` for a poll or a dropped connection.
    pub status: Option<u16>,
    /// Whether it passed every check; an injected fault does not change it.
    pub valid: bool,
    /// The RFC 8935 `err` code it was refused with.
    pub err: Option<String>,
    /// Why it was refused.
    pub description: Option<String>,
    /// Its `jti`, when it has one.
    pub jti: Option<String>,
    /// Its event type, when it has exactly one.
    pub event: Option<String>,
    /// Its claims, when its signature verified.
    pub claims: Option<Value>,
    /// The injected fault: `drop`, `fail_status`, `delay`, or `None`.
    pub fault: Option<String>,
}

/// State shared by the server and the poll loop.
struct Shared {
    config: MockSsfConfig,
    stream: StreamInfo,
    jwks: JwksSource,
    log: ReceiptLog,
    posts: AtomicU64,
}

/// The mock SSF receiver.
#[derive(Debug)]
pub struct MockSsf;

/// A running mock SSF receiver. Dropping it stops it; [`MockSsfHandle::shutdown`] also
/// waits.
pub struct MockSsfHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MockSsfHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MockSsfHandle({})", self.addr)
    }
}

impl MockSsf {
    /// Reads the transmitter's metadata and keys, sets up the stream, then serves on
    /// `listener` (and polls, with `config.poll`) until the handle is shut down or dropped.
    pub async fn start(
        listener: TcpListener,
        config: MockSsfConfig,
    ) -> Result<MockSsfHandle, MockSsfError> {
        let addr = listener.local_addr()?;
        let client = discovery::client()?;
        let metadata = discovery::metadata(&client, &config.transmitter).await?;
        let jwks = JwksSource::from_uri(&metadata.jwks_uri)
            .await
            .map_err(|e| MockSsfError::Setup(e.to_string()))?
            .with_refetch_interval(Duration::ZERO);
        let delivery = (!config.poll).then(|| {
            let authorization = format!("Bearer {}", crate::ids::random_token());
            discovery::Wanted::push(&format!("http://{addr}{EVENTS_PATH}"), &authorization)
        });
        let wanted = discovery::Wanted {
            delivery,
            events: config.events.clone(),
        };
        let stream = discovery::stream(
            &client,
            &metadata.configuration_endpoint,
            &config.token,
            &wanted,
        )
        .await?;
        let log = ReceiptLog::open(config.receipts_file.as_deref(), config.receipt_limits).await?;
        let poll = config.poll;
        let shared = Arc::new(Shared {
            config,
            stream,
            jwks,
            log,
            posts: AtomicU64::new(0),
        });
        let shutdown = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            shutdown.clone(),
            handler::handle,
        ))];
        if poll {
            tasks.push(tokio::spawn(poll::run(
                shared.clone(),
                client,
                shutdown.clone(),
            )));
        }
        Ok(MockSsfHandle {
            addr,
            shared,
            shutdown,
            tasks,
        })
    }
}

impl MockSsfHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The stream it set up.
    pub fn stream(&self) -> &StreamInfo {
        &self.shared.stream
    }

    /// Every receipt kept in memory, in arrival order.
    pub fn receipts(&self) -> Vec<SetReceipt> {
        self.shared.log.all()
    }

    /// Waits until `count` receipts have been recorded since start, or `limit` passes;
    /// returns whether the count was reached.
    pub async fn wait_for(&self, count: u64, limit: Duration) -> bool {
        self.shared.log.wait_for(count, limit).await
    }

    /// Stops serving and polling, and waits for its tasks.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "mock SSF task ended abnormally");
            }
        }
    }
}

impl Drop for MockSsfHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests;
