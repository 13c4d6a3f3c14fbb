//! A fast back-channel receiver for benchmarks, run as its own process (`logoutd bench sink`)
//! so that its CPU time is not counted as logoutd's. It answers every logout token POST with
//! 200 at once, keeps connections alive, and reports how many it has seen at `GET /count` and
//! how many distinct (`sid`, `aud`) pairs they carried at `GET /distinct` (the difference is
//! the duplicate deliveries), and at `GET /cpu_us` the CPU time its process has used, so that
//! the benchmark can take the receiver's share of the cores out of the signing ceiling.
//!
//! It is also an SSF push receiver at any path: a POST of `Content-Type:
//! application/secevent+jwt` (RFC 8935 §2) is a SET, answered 202 and counted apart, at
//! `GET /set_count` (POSTs) and `GET /set_distinct` (distinct `jti`s; a SET keeps its `jti`
//! on every attempt). Tokens and SETs are decoded, never verified: this is a counter, not an
//! RP.

use axum::body::{Body, Bytes};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The media type of a pushed SET (RFC 8417 §2.3).
const SET_CONTENT_TYPE: &[u8] = b"application/secevent+jwt";

/// What the sink has seen.
#[derive(Default)]
struct Tally {
    posts: AtomicU64,
    pairs: Mutex<HashSet<(String, String)>>,
    set_posts: AtomicU64,
    set_jtis: Mutex<HashSet<String>>,
}

/// Binds `ports` listeners on 127.0.0.1, prints `listening on URL URL ...` on stdout, and
/// serves until the process is killed.
pub async fn serve(ports: usize) -> anyhow::Result<()> {
    let tally = Arc::new(Tally::default());
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for _ in 0..ports.max(1) {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(accept(listener, tally.clone()));
    }
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    logoutd_core::outln!("listening on {}", urls.join(" "));
    std::future::pending::<()>().await;
    Ok(())
}

async fn accept(listener: TcpListener, tally: Arc<Tally>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let tally = tally.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, tally.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>, tally: Arc<Tally>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Body::empty());
    if req.method() == Method::GET {
        let figure = match req.uri().path() {
            "/count" => Some(tally.posts.load(Ordering::Acquire)),
            "/distinct" => Some(distinct(&tally)),
            "/set_count" => Some(tally.set_posts.load(Ordering::Acquire)),
            "/set_distinct" => Some(tally.set_jtis.lock().map_or(0, |j| j.len() as u64)),
            "/cpu_us" => super::proc_stats::cpu_time()
                .map(|cpu| u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX)),
            _ => None,
        };
        match figure {
            Some(n) => *response.body_mut() = Body::from(n.to_string()),
            None => *response.status_mut() = StatusCode::NOT_FOUND,
        }
        return Ok(response);
    }
    let is_set = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == SET_CONTENT_TYPE);
    // Reading the whole body also lets the connection be reused.
    let body = axum::body::to_bytes(Body::new(req.into_body()), 64 * 1024)
        .await
        .unwrap_or_default();
    if is_set {
        if let Some(jti) = jti_of(&body)
            && let Ok(mut jtis) = tally.set_jtis.lock()
        {
            jtis.insert(jti);
        }
        tally.set_posts.fetch_add(1, Ordering::AcqRel);
        *response.status_mut() = StatusCode::ACCEPTED;
        return Ok(response);
    }
    if let Some(pair) = pair_of(&body)
        && let Ok(mut pairs) = tally.pairs.lock()
    {
        pairs.insert(pair);
    }
    tally.posts.fetch_add(1, Ordering::AcqRel);
    Ok(response)
}

fn distinct(tally: &Tally) -> u64 {
    tally.pairs.lock().map_or(0, |pairs| pairs.len() as u64)
}

/// The claims of a compact JWS, decoded without verification.
fn claims_of<T: serde::de::DeserializeOwned>(compact: &str) -> Option<T> {
    let payload = URL_SAFE_NO_PAD.decode(compact.split('.').nth(1)?).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// The `jti` of a SET sent as the whole body, decoded without verification.
fn jti_of(body: &Bytes) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Claims {
        jti: String,
    }
    let claims: Claims = claims_of(std::str::from_utf8(body).ok()?.trim())?;
    Some(claims.jti)
}

/// The (`sid`, `aud`) of the `logout_token` in a form body, decoded without verification.
fn pair_of(body: &Bytes) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Claims {
        sid: String,
        aud: serde_json::Value,
    }
    let (_, token) = url::form_urlencoded::parse(body).find(|(k, _)| k == "logout_token")?;
    let claims: Claims = claims_of(&token)?;
    let aud = match claims.aud {
        serde_json::Value::String(aud) => aud,
        other => other.to_string(),
    };
    Some((claims.sid, aud))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_of_reads_sid_and_aud_from_the_form() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sid":"s-1","aud":"rp-0","iss":"x"}"#);
        let body = Bytes::from(format!("logout_token=e30.{claims}.c2ln"));
        assert_eq!(pair_of(&body), Some(("s-1".into(), "rp-0".into())));
        assert_eq!(pair_of(&Bytes::from_static(b"logout_token=garbage")), None);
    }

    #[test]
    fn jti_of_reads_the_jti_of_a_set_body() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"jti":"j-1","iss":"x","events":{}}"#);
        let body = Bytes::from(format!("e30.{claims}.c2ln"));
        assert_eq!(jti_of(&body), Some("j-1".into()));
        assert_eq!(jti_of(&Bytes::from_static(b"garbage")), None);
    }
}
