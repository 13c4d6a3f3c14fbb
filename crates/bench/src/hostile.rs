//! Hostile back-channel receivers for `bench hol`, each on its own loopback port (so each is
//! an origin of its own): one never answers, one drips its response headers at one byte per
//! second, one answers 200 after ten seconds. They read what they are sent and never fail
//! loudly: a connection the client gives up on simply ends.

use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The answer the dripping and the late receiver send.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
/// How long the late receiver waits before answering.
pub const LATE_AFTER: Duration = Duration::from_secs(10);
/// The pace of the dripping receiver.
pub const DRIP_EVERY: Duration = Duration::from_secs(1);

/// How a hostile receiver misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// Accepts, reads, never answers.
    Silent,
    /// Answers one byte per [`DRIP_EVERY`].
    Drip,
    /// Answers after [`LATE_AFTER`].
    Late,
}

impl Hostility {
    /// The three kinds.
    pub const ALL: [Self; 3] = [Self::Silent, Self::Drip, Self::Late];

    /// A short name for reports and client ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Silent => "silent",
            Self::Drip => "drip",
            Self::Late => "late",
        }
    }
}

/// Binds 127.0.0.1:0 and serves `kind` on it in the background; returns `http://ADDR`.
pub async fn start(kind: Hostility) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(kind, stream));
        }
    });
    Ok(base)
}

async fn serve(kind: Hostility, mut stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !read_request(&mut stream, &mut buf).await {
            return;
        }
        let answered = match kind {
            Hostility::Silent => {
                // Keep reading (and discarding) until the client hangs up.
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                return;
            }
            Hostility::Drip => drip(&mut stream).await,
            Hostility::Late => {
                tokio::time::sleep(LATE_AFTER).await;
                stream.write_all(ANSWER).await.is_ok()
            }
        };
        if !answered {
            return;
        }
    }
}

/// Reads until the end of a request's headers; `false` when the client went away first.
async fn read_request(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut tail = [0u8; 4];
    loop {
        let n = match stream.read(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        for &byte in buf.iter().take(n) {
            tail = [tail[1], tail[2], tail[3], byte];
            if &tail == b"\r\n\r\n" {
                // The small form body follows at once; it is read with the next request's
                // headers or discarded when the connection ends.
                return true;
            }
        }
    }
}

async fn drip(stream: &mut TcpStream) -> bool {
    for byte in ANSWER {
        tokio::time::sleep(DRIP_EVERY).await;
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return false;
        }
    }
    true
}
