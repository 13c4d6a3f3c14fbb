//! Receipts: one JSON object per POST the mock RP received, appended as a line to the
//! receipts file (flushed per line) and kept in memory for `GET /receipts`.
//!
//! A receipt never holds the raw token: only its decoded claims.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt as _;

/// How many receipts are kept in memory; older ones remain only in the receipts file.
pub const MEMORY_RECEIPTS: usize = 100_000;

/// What the mock RP saw and answered for one POST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The request path.
    pub path: String,
    /// The query string, if any (dropped when it holds a `logout_token`).
    pub query: Option<String>,
    /// The status answered, or `None` when the connection was dropped.
    pub status: Option<u16>,
    /// Whether the request and its token passed every check; an injected fault does not
    /// change it.
    pub valid: bool,
    /// Every reason the request or its token was refused.
    pub errors: Vec<String>,
    /// Remarks that did not make the request invalid (extra form parameters).
    pub notes: Vec<String>,
    /// The token's claims when its payload could be decoded, valid or not.
    pub claims: Option<Value>,
    /// The `jti` claim, if it is a string.
    pub jti: Option<String>,
    /// The `sid` claim, if it is a string.
    pub sid: Option<String>,
    /// The `sub` claim, if it is a string.
    pub sub: Option<String>,
    /// The 1-based number of requests seen for this `sid` (else `sub`, else `jti`).
    pub attempt: Option<u64>,
    /// True when the `jti` was already accepted before (spec §2.7).
    pub replay: bool,
    /// The injected fault: `drop`, `fail_status`, `redirect`, `delay`, or `None`.
    pub fault: Option<String>,
}

/// Where receipts go.
#[derive(Debug)]
pub struct ReceiptLog {
    memory: Mutex<VecDeque<Receipt>>,
    file: Option<tokio::sync::Mutex<tokio::fs::File>>,
    /// Receipts recorded since start (memory keeps only the newest).
    total: std::sync::atomic::AtomicU64,
    /// Signalled after every recorded receipt.
    arrived: tokio::sync::Notify,
}

impl ReceiptLog {
    /// A log kept in memory, and appended to `path` when given (created if absent).
    pub async fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            None => None,
            Some(path) => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?;
                Some(tokio::sync::Mutex::new(file))
            }
        };
        Ok(Self {
            memory: Mutex::new(VecDeque::new()),
            file,
            total: std::sync::atomic::AtomicU64::new(0),
            arrived: tokio::sync::Notify::new(),
        })
    }

    /// Records `receipt`: one flushed line in the file, then memory.
    pub async fn record(&self, receipt: Receipt) {
        match &self.file {
            Some(file) => {
                let mut file = file.lock().await;
                if let Err(err) = write_line(&mut file, &receipt).await {
                    tracing::error!(error = %err, "cannot write the receipts file");
                }
                self.remember(receipt);
            }
            None => self.remember(receipt),
        }
    }

    fn remember(&self, receipt: Receipt) {
        let mut memory = match self.memory.lock() {
            Ok(memory) => memory,
            Err(poisoned) => poisoned.into_inner(),
        };
        if memory.len() >= MEMORY_RECEIPTS {
            memory.pop_front();
        }
        memory.push_back(receipt);
        drop(memory);
        self.total.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.arrived.notify_waiters();
    }

    /// Waits until at least `count` receipts have been recorded since start, or `limit`
    /// passes; returns whether the count was reached.
    pub async fn wait_for(&self, count: u64, limit: std::time::Duration) -> bool {
        let reached = async {
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if self.total.load(std::sync::atomic::Ordering::Acquire) >= count {
                    return;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(limit, reached).await.is_ok()
    }

    /// The receipts kept in memory, oldest first.
    pub fn all(&self) -> Vec<Receipt> {
        match self.memory.lock() {
            Ok(memory) => memory.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }
}

async fn write_line(file: &mut tokio::fs::File, receipt: &Receipt) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(receipt)?;
    line.push(b'\n');
    file.write_all(&line).await?;
    file.flush().await
}

/// Receipts as JSON lines.
pub fn to_ndjson(receipts: &[Receipt]) -> Vec<u8> {
    let mut out = Vec::new();
    for receipt in receipts {
        if serde_json::to_writer(&mut out, receipt).is_ok() {
            out.push(b'\n');
        }
    }
    out
}
