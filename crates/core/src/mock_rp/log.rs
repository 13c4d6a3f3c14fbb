//! Where receipts go: a ring of JSON lines in memory, bounded in count and in bytes, for
//! `GET /receipts`; and, when asked for, a receipts file, flushed per line and rotated at a
//! size cap so that it cannot fill a disk.

#[cfg(test)]
use super::receipt::Receipt;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt as _;

/// How many receipts are kept in memory, at most; older ones remain only in the file.
pub(super) const MEMORY_RECEIPTS: usize = 100_000;
/// How many bytes of receipts (as JSON lines) are kept in memory, at most: 64 MiB.
pub const DEFAULT_MEMORY_RECEIPT_BYTES: usize = 64 * 1024 * 1024;
/// The size at which the receipts file is rotated: 256 MiB. The full file is renamed with a
/// `.1` suffix (replacing the previous one), so the two take at most twice this on disk.
pub const DEFAULT_RECEIPTS_FILE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// What each kept line costs besides its bytes (the boxed slice in the ring).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Box<[u8]>>();

/// The caps of a [`ReceiptLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Receipts kept in memory ([`MEMORY_RECEIPTS`]).
    pub memory_receipts: usize,
    /// Bytes of receipts kept in memory ([`DEFAULT_MEMORY_RECEIPT_BYTES`]).
    pub memory_bytes: usize,
    /// Size at which the receipts file is rotated ([`DEFAULT_RECEIPTS_FILE_MAX_BYTES`]).
    pub file_max_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            memory_receipts: MEMORY_RECEIPTS,
            memory_bytes: DEFAULT_MEMORY_RECEIPT_BYTES,
            file_max_bytes: DEFAULT_RECEIPTS_FILE_MAX_BYTES,
        }
    }
}

/// The newest receipts as JSON lines (each ending in `\n`), and their total size.
#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<Box<[u8]>>,
    bytes: usize,
}

/// The receipts file and how much has been written to it since it was opened.
#[derive(Debug)]
struct ReceiptFile {
    path: PathBuf,
    file: tokio::fs::File,
    written: u64,
}

/// Where receipts go: any serializable receipt (the mock RP's, the mock SSF receiver's).
#[derive(Debug)]
pub(crate) struct ReceiptLog {
    limits: LogLimits,
    memory: Mutex<Ring>,
    file: Option<tokio::sync::Mutex<ReceiptFile>>,
    /// Receipts recorded since start (memory keeps only the newest).
    total: AtomicU64,
    /// Signalled after every recorded receipt.
    arrived: tokio::sync::Notify,
}

async fn open_append(path: &Path) -> std::io::Result<ReceiptFile> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    let written = file.metadata().await?.len();
    Ok(ReceiptFile {
        path: path.to_owned(),
        file,
        written,
    })
}

/// `path` with `.1` appended to its file name: where a full receipts file goes.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

impl ReceiptFile {
    /// Appends `line`, first rotating the file when the line would take it past `max`.
    async fn append(&mut self, line: &[u8], max: u64) -> std::io::Result<()> {
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        if self.written > 0 && self.written.saturating_add(len) > max {
            self.file.flush().await?;
            tokio::fs::rename(&self.path, rotated_path(&self.path)).await?;
            *self = open_append(&self.path).await?;
        }
        self.file.write_all(line).await?;
        self.file.flush().await?;
        self.written = self.written.saturating_add(len);
        Ok(())
    }
}

impl ReceiptLog {
    /// A log kept in memory, and appended to `path` when given (created if absent).
    pub(crate) async fn open(path: Option<&Path>, limits: LogLimits) -> std::io::Result<Self> {
        let file = match path {
            None => None,
            Some(path) => Some(tokio::sync::Mutex::new(open_append(path).await?)),
        };
        Ok(Self {
            limits,
            memory: Mutex::new(Ring::default()),
            file,
            total: AtomicU64::new(0),
            arrived: tokio::sync::Notify::new(),
        })
    }

    /// Records `receipt`: one flushed line in the file, then memory.
    pub(crate) async fn record<R: serde::Serialize>(&self, receipt: &R) {
        let mut line = match serde_json::to_vec(receipt) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!(error = %err, "cannot serialize a receipt");
                return;
            }
        };
        line.push(b'\n');
        if let Some(file) = &self.file {
            let mut file = file.lock().await;
            if let Err(err) = file.append(&line, self.limits.file_max_bytes).await {
                tracing::error!(error = %err, "cannot write the receipts file");
            }
            self.remember(line);
        } else {
            self.remember(line);
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        match self.memory.lock() {
            Ok(ring) => ring,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Keeps `line`, dropping the oldest lines past either cap.
    fn remember(&self, line: Vec<u8>) {
        let mut ring = self.ring();
        ring.bytes += line.len() + ENTRY_OVERHEAD;
        ring.lines.push_back(line.into_boxed_slice());
        while ring.lines.len() > self.limits.memory_receipts.max(1)
            || (ring.bytes > self.limits.memory_bytes && ring.lines.len() > 1)
        {
            let Some(old) = ring.lines.pop_front() else {
                break;
            };
            ring.bytes -= old.len() + ENTRY_OVERHEAD;
        }
        drop(ring);
        self.total.fetch_add(1, Ordering::AcqRel);
        self.arrived.notify_waiters();
    }

    /// Waits until at least `count` receipts have been recorded since start, or `limit`
    /// passes; returns whether the count was reached.
    pub(crate) async fn wait_for(&self, count: u64, limit: std::time::Duration) -> bool {
        let reached = async {
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if self.total.load(Ordering::Acquire) >= count {
                    return;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(limit, reached).await.is_ok()
    }

    /// The receipts kept in memory, oldest first.
    pub(crate) fn all<R: serde::de::DeserializeOwned>(&self) -> Vec<R> {
        let ring = self.ring();
        ring.lines
            .iter()
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect()
    }

    /// How many receipts, and how many bytes of them, memory holds.
    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let ring = self.ring();
        (ring.lines.len(), ring.bytes)
    }

    /// The receipts kept in memory as JSON lines.
    pub(crate) fn ndjson(&self) -> Vec<u8> {
        let ring = self.ring();
        let mut out = Vec::with_capacity(ring.bytes);
        for line in &ring.lines {
            out.extend_from_slice(line);
        }
        out
    }

    /// The receipts kept in memory as one JSON array.
    pub(crate) fn json_array(&self) -> Vec<u8> {
        let ring = self.ring();
        let mut out = Vec::with_capacity(ring.bytes + 2);
        out.push(b'[');
        for (i, line) in ring.lines.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        }
        out.push(b']');
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn receipt(n: usize, pad: usize) -> Receipt {
        Receipt {
            time: "t".into(),
            path: format!("/{n}"),
            query: None,
            status: Some(200),
            valid: true,
            errors: vec![],
            notes: vec!["x".repeat(pad)],
            claims: None,
            claims_truncated: false,
            jti: None,
            sid: None,
            sub: None,
            attempt: None,
            replay: false,
            fault: None,
        }
    }

    #[tokio::test]
    async fn memory_is_bounded_in_count_and_in_bytes() {
        let limits = LogLimits {
            memory_receipts: 5,
            memory_bytes: 10_000,
            ..LogLimits::default()
        };
        let log = ReceiptLog::open(None, limits).await.unwrap();
        for n in 0..10 {
            log.record(&receipt(n, 10)).await;
        }
        let paths: Vec<String> = log.all::<Receipt>().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/5", "/6", "/7", "/8", "/9"], "the newest five");
        for n in 10..20 {
            log.record(&receipt(n, 3_000)).await;
        }
        let (count, bytes) = log.kept();
        assert!(bytes <= 10_000, "{bytes}");
        assert_eq!(count, 3, "three 3 KB receipts fit in 10 KB");
        assert_eq!(log.all::<Receipt>().last().unwrap().path, "/19");
        let array: Vec<Receipt> = serde_json::from_slice(&log.json_array()).unwrap();
        assert_eq!(array, log.all::<Receipt>());
    }

    #[tokio::test]
    async fn the_receipts_file_is_rotated_at_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipts.jsonl");
        let limits = LogLimits {
            file_max_bytes: 2_000,
            ..LogLimits::default()
        };
        let log = ReceiptLog::open(Some(&path), limits).await.unwrap();
        for n in 0..40 {
            log.record(&receipt(n, 100)).await;
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let rotated = std::fs::metadata(rotated_path(&path)).unwrap().len();
        assert!(current <= 2_000 && rotated <= 2_000, "{current} {rotated}");
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.trim_end().ends_with("\"fault\":null}"));
        assert!(
            last.contains("\"path\":\"/39\""),
            "the newest is in the current file"
        );
    }
}
