//! The API's connections: header, idle and body timeouts, the connection cap and its 503,
//! 431 in Auth0's shape, running out of descriptors, and a shutdown bounded by its grace.
//! Raw sockets on 127.0.0.1 drive the real hyper server; small settings keep every wait
//! short, and every wait is for an event with a deadline.

use crate::support::app::{API_TOKEN, TestApp};
use logoutd_bench::slow_clients::{self, SlowClientsScenario};
use logoutd_core::HttpSettings;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest any single wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(10);
const HALF_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Stalled: ";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

fn settings() -> HttpSettings {
    HttpSettings {
        header_read_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_secs(5),
        max_connections: 4,
        shutdown_grace: Duration::from_secs(5),
        ..HttpSettings::default()
    }
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(http: HttpSettings) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = TestApp::memory().await.router;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        logoutd_core::serve_api(listener, router, &http, stop).await;
    });
    Server {
        addr,
        shutdown,
        task,
    }
}

async fn open(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// How long until the server closes `stream` (EOF or reset), reading and dropping anything
/// it sends meanwhile.
async fn closed_after(stream: &mut TcpStream, from: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let wait = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the server kept the connection open");
    from.elapsed()
}

/// One response: status, head (lower-cased) and body, read by its content-length.
async fn response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let read = async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a response: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        while raw.len() < end + length {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed inside a body");
            raw.extend_from_slice(&buf[..n]);
        }
        let status = head[9..12].parse().unwrap();
        (status, head, raw[end..end + length].to_vec())
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("no response")
}

fn assert_auth0(body: &[u8], status: u16, code: &str) {
    let json: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["statusCode"], status, "{json}");
    assert_eq!(json["errorCode"], code, "{json}");
    assert!(
        json["error"].is_string() && json["message"].is_string(),
        "{json}"
    );
}

#[tokio::test]
async fn a_request_head_that_stalls_is_closed_after_the_header_timeout() {
    let server = start(settings()).await;
    let started = Instant::now();
    let mut stalled = open(server.addr, HALF_HEAD).await;
    let after = closed_after(&mut stalled, started).await;
    assert!(
        after >= Duration::from_millis(150),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = start(settings()).await;
    let started = Instant::now();
    let mut silent = open(server.addr, b"").await;
    let after = closed_after(&mut silent, started).await;
    assert!(
        after >= Duration::from_millis(150),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_waits_the_idle_timeout_not_the_header_timeout() {
    let server = start(HttpSettings {
        idle_timeout: Duration::from_millis(1500),
        ..settings()
    })
    .await;
    let mut stream = open(server.addr, HEALTHZ).await;
    let (status, _, _) = response(&mut stream).await;
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    // Waiting for the next request is idle time, not a request head: the connection
    // outlives the 200 ms header timeout and closes at the idle timeout.
    let after = closed_after(&mut stream, idle_from).await;
    assert!(
        after >= Duration::from_millis(1200),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn connections_past_the_cap_get_503_in_auth0_shape_and_healthz_comes_back() {
    let server = start(HttpSettings {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(1),
        ..settings()
    })
    .await;
    let _first = open(server.addr, HALF_HEAD).await;
    let _second = open(server.addr, HALF_HEAD).await;
    let mut third = open(server.addr, HEALTHZ).await;
    let (status, head, body) = response(&mut third).await;
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_auth0(&body, 503, "too_many_connections");
    // The stalled ones time out; then the API answers again.
    let started = Instant::now();
    loop {
        let mut probe = open(server.addr, HEALTHZ).await;
        if response(&mut probe).await.0 == 200 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "/healthz never came back");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_request_body_that_stalls_gets_408_and_the_connection_closes() {
    let server = start(HttpSettings {
        body_read_timeout: Duration::from_millis(200),
        ..settings()
    })
    .await;
    let head = format!(
        "POST /api/v2/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user_id\":"
    );
    let started = Instant::now();
    let mut stream = open(server.addr, head.as_bytes()).await;
    let (status, head, body) = response(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(status, 408, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_auth0(&body, 408, "request_timeout");
    closed_after(&mut stream, started).await;
}

#[tokio::test]
async fn a_body_that_arrives_in_time_is_served_as_before() {
    let server = start(settings()).await;
    let body = r#"{"user_id":"u1"}"#;
    let request = format!(
        "POST /api/v2/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = open(server.addr, request.as_bytes()).await;
    let (status, head, body) = response(&mut stream).await;
    assert_eq!(status, 201, "{head} {}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn oversized_headers_get_431_in_auth0_shape() {
    let server = start(settings()).await;
    let big = "a".repeat(logoutd_core::MAX_HEAD_BYTES);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {big}\r\n\r\n");
    let mut stream = open(server.addr, request.as_bytes()).await;
    let (status, head, body) = response(&mut stream).await;
    assert_eq!(status, 431, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_auth0(&body, 431, "request_header_fields_too_large");
}

#[tokio::test]
async fn too_many_headers_get_431_in_auth0_shape() {
    let server = start(settings()).await;
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for n in 0..logoutd_core::MAX_HEADERS {
        request.push_str(&format!("X-{n}: v\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = open(server.addr, request.as_bytes()).await;
    let (status, head, body) = response(&mut stream).await;
    assert_eq!(status, 431, "{head}");
    assert_auth0(&body, 431, "request_header_fields_too_large");
    // Exactly the limit is fine.
    let at_limit = request.replacen("X-0: v\r\n", "", 1);
    let mut stream = open(server.addr, at_limit.as_bytes()).await;
    assert_eq!(response(&mut stream).await.0, 200);
}

#[tokio::test]
async fn shutdown_closes_a_stalled_head_when_the_grace_is_over() {
    let server = start(HttpSettings {
        header_read_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(300),
        ..settings()
    })
    .await;
    let mut stalled = open(server.addr, HALF_HEAD).await;
    // The stalled connection is accepted before this one is answered.
    let mut probe = open(server.addr, HEALTHZ).await;
    assert_eq!(response(&mut probe).await.0, 200);
    let started = Instant::now();
    server.shutdown.cancel();
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .expect("serve_api outlived its grace")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    closed_after(&mut stalled, started).await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once() {
    let server = start(settings()).await;
    let mut idle = open(server.addr, HEALTHZ).await;
    assert_eq!(response(&mut idle).await.0, 200);
    let started = Instant::now();
    server.shutdown.cancel();
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .unwrap()
        .unwrap();
    // Well inside the 5 s grace: nothing waited for the idle connection.
    assert!(started.elapsed() < Duration::from_secs(2));
    closed_after(&mut idle, started).await;
}

fn scenario(connections: usize, nofile: u64, serve_args: &[&str]) -> SlowClientsScenario {
    SlowClientsScenario {
        connections,
        nofile,
        limit: Duration::from_secs(12),
        binary: env!("CARGO_BIN_EXE_logoutd").into(),
        serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_defaults_the_api_answers_within_10s_of_stalled_connections_taking_its_descriptors() {
    // The issue's case scaled down: more stalled connections than descriptors.
    let report = slow_clients::run(scenario(100, 64, &[])).await.unwrap();
    assert_eq!(report.opened, 100, "{report}");
    let healthz = report.healthz.unwrap_or_else(|| panic!("{report}"));
    let events = report.logout_events.unwrap_or_else(|| panic!("{report}"));
    assert!(healthz < Duration::from_secs(10), "{report}");
    assert!(events < Duration::from_secs(10), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_goes_on_after_running_out_of_descriptors() {
    // A cap above the descriptor limit: accept itself fails with EMFILE until the stalled
    // connections time out; the server must back off and carry on.
    let args = [
        "--max-connections",
        "1000",
        "--header-read-timeout-ms",
        "300",
    ];
    let report = slow_clients::run(scenario(100, 48, &args)).await.unwrap();
    assert!(report.healthz.is_some(), "{report}");
    assert!(report.logout_events.is_some(), "{report}");
}
