//! A fast back-channel receiver for benchmarks, run as its own process (`logoutd bench sink`)
//! so that its CPU time is not counted as logoutd's. It answers every POST with 200 at once,
//! keeps connections alive, and reports how many POSTs it has seen at `GET /count`.

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

/// Binds `ports` listeners on 127.0.0.1, prints `listening on URL URL ...` on stdout, and
/// serves until the process is killed.
pub async fn serve(ports: usize) -> anyhow::Result<()> {
    let count = Arc::new(AtomicU64::new(0));
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for _ in 0..ports.max(1) {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(accept(listener, count.clone()));
    }
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    println!("listening on {}", urls.join(" "));
    std::future::pending::<()>().await;
    Ok(())
}

async fn accept(listener: TcpListener, count: Arc<AtomicU64>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, count.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    count: Arc<AtomicU64>,
) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Body::empty());
    if req.method() == Method::GET && req.uri().path() == "/count" {
        *response.body_mut() = Body::from(count.load(Ordering::Acquire).to_string());
        return Ok(response);
    }
    // Drain the body so the connection can be reused.
    let _ = axum::body::to_bytes(Body::new(req.into_body()), 64 * 1024).await;
    count.fetch_add(1, Ordering::AcqRel);
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}
