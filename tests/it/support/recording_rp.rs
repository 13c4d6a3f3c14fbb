//! `RecordingRp`: a scriptable back-channel logout receiver on 127.0.0.1 for tests.
//!
//! It records every request (method, path, query, content type, body, connection number) and
//! counts accepted TCP connections. Each request takes the next scripted [`Reply`]; once the
//! script is used up, the default reply answers. A reply can set a status, headers
//! (`Retry-After`, `Location`), a body (including an endless one), a delay before answering,
//! or drop the connection without answering.
//!
//! ```ignore
//! let rp = RecordingRp::start(Reply::ok()).await;
//! rp.script([Reply::status(503), Reply::status(503)]); // fail twice, then 200
//! sender.send(&rp.url("/bc?tenant=a"), token).await;
//! assert_eq!(rp.requests()[0].form_param("logout_token"), Some(token.into()));
//! ```

use axum::body::{Body, Bytes};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

/// One request as the receiver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub body: String,
    /// The Standard Webhooks headers, when sent: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature`.
    pub webhook: [Option<String>; 3],
    /// 1 for the first accepted TCP connection, 2 for the second, ...
    pub connection: usize,
    /// When the request (with its body) had arrived.
    pub at: std::time::Instant,
}

impl RecordedRequest {
    /// Every form parameter of the body, decoded, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// The decoded value of one form parameter.
    pub fn form_param(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The body of a scripted reply.
#[derive(Debug, Clone, Default)]
pub enum ReplyBody {
    #[default]
    Empty,
    Bytes(Vec<u8>),
    /// 1 KiB chunks for ever, to check that clients stop reading.
    Endless,
    /// A template in which `$HEADER`, `$PAYLOAD` and `$SIGNATURE` become the segments of the
    /// `logout_token` received, for RPs that echo (part of) the token in their error.
    EchoToken(String),
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
    pub delay: Option<Duration>,
    pub drop_connection: bool,
}

impl Reply {
    /// 200 with an empty body.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// The given status with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ReplyBody::Empty,
            delay: None,
            drop_connection: false,
        }
    }

    /// 400 with `{"error":"invalid_request","error_description": description}`.
    pub fn invalid_request(description: &str) -> Self {
        let json =
            serde_json::json!({"error": "invalid_request", "error_description": description});
        Self::status(400)
            .header("content-type", "application/json")
            .body(json.to_string())
    }

    /// 400 with a JSON body from `template` (see [`ReplyBody::EchoToken`]).
    pub fn echoing(template: &str) -> Self {
        Self {
            body: ReplyBody::EchoToken(template.to_owned()),
            ..Self::status(400).header("content-type", "application/json")
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::status(status).header("location", location)
    }

    /// Closes the connection without answering.
    pub fn drop_connection() -> Self {
        Self {
            drop_connection: true,
            ..Self::ok()
        }
    }

    /// Never answers within any reasonable timeout.
    pub fn never() -> Self {
        Self::ok().delay(Duration::from_secs(3600))
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = ReplyBody::Bytes(body.into());
        self
    }

    /// Streams an endless body.
    pub fn endless_body(mut self) -> Self {
        self.body = ReplyBody::Endless;
        self
    }

    /// Waits before answering (or before dropping the connection).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

#[derive(Debug)]
struct State {
    default: Reply,
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
    arrived: tokio::sync::Notify,
}

/// A recording, scriptable RP bound to `127.0.0.1:0`. Stops when dropped.
pub struct RecordingRp {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl RecordingRp {
    /// Starts a receiver that answers `default` once its script is used up.
    pub async fn start(default: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            default,
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            arrived: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Self { addr, state, task }
    }

    /// Queues replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Queues `n` copies of `reply`: "fail N times, then answer the default".
    pub fn fail_first(&self, n: usize, reply: Reply) {
        self.script(std::iter::repeat_n(reply, n));
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> Url {
        Url::parse(&format!("http://{}{}", self.addr, path_and_query)).unwrap()
    }

    /// Waits (bounded) until at least `n` requests have arrived.
    pub async fn wait_requests(&self, n: usize) {
        let wait = async {
            loop {
                let arrived = self.state.arrived.notified();
                if self.state.requests.lock().unwrap().len() >= n {
                    return;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(super::delivery::EVENT_TIMEOUT * 3, wait)
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} requests arrived"));
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until `done` holds for the requests received so far; returns
    /// whether it did. Woken by each arriving request, never by a timer.
    pub async fn wait_until(
        &self,
        limit: Duration,
        mut done: impl FnMut(&[RecordedRequest]) -> bool,
    ) -> bool {
        let wait = async {
            loop {
                let arrived = self.state.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if done(&self.state.requests.lock().unwrap()) {
                    return;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RecordingRp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let number = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let state = state.clone();
        let service = service_fn(move |req| handle(state.clone(), number, req));
        connections.spawn(async move {
            // An error here is a dropped or broken connection, which some tests ask for.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A refusal to answer: hyper closes the connection without a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    state: Arc<State>,
    connection: usize,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), 1 << 20)
        .await
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.requests.lock().unwrap().push(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        body: String::from_utf8_lossy(&body).into_owned(),
        webhook: [
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ],
        connection,
        at: std::time::Instant::now(),
    });
    state.arrived.notify_waiters();
    let reply = state.script.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| state.default.clone());
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    if reply.drop_connection {
        return Err(Dropped);
    }
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    Ok(build_response(reply, &token))
}

fn build_response(reply: Reply, token: &str) -> hyper::Response<Body> {
    let body = match reply.body {
        ReplyBody::Empty => Body::empty(),
        ReplyBody::Bytes(bytes) => Body::from(bytes),
        ReplyBody::EchoToken(template) => {
            let segments: Vec<&str> = token.split('.').chain(["", "", ""]).collect();
            Body::from(
                template
                    .replace("$HEADER", segments[0])
                    .replace("$PAYLOAD", segments[1])
                    .replace("$SIGNATURE", segments[2]),
            )
        }
        ReplyBody::Endless => Body::from_stream(futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024]))
        })),
    };
    let mut response = hyper::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(body).unwrap()
}
