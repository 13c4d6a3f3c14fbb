//! What `logoutd mock-rp` and `logoutd mock-ssf` share: the receipts flags, the socket they
//! listen on, announced on stdout, and the wait for Ctrl-C or SIGTERM.

use anyhow::Context as _;
use logoutd_core::{DEFAULT_MEMORY_RECEIPT_BYTES, DEFAULT_RECEIPTS_FILE_MAX_BYTES, LogLimits};
use std::fmt::Display;
use std::io::Write as _;
use std::path::PathBuf;
use tokio::net::TcpListener;

/// Where a mock receiver keeps its receipts.
#[derive(Debug, clap::Args)]
pub(super) struct ReceiptArgs {
    /// Append every receipt to this file as one JSON line.
    #[arg(long)]
    receipts: Option<PathBuf>,
    /// Rotate the receipts file to FILE.1 (replacing it) before it grows past this size.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RECEIPTS_FILE_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    receipts_max_bytes: u64,
    /// Keep at most this many bytes of receipts in memory for GET /receipts (the newest;
    /// at most 100,000 receipts in any case).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MEMORY_RECEIPT_BYTES)]
    receipts_memory_bytes: usize,
}

impl ReceiptArgs {
    /// The file every receipt is appended to, if any.
    pub fn file(&self) -> Option<PathBuf> {
        self.receipts.clone()
    }

    /// How many receipts are kept in memory and when the file rotates.
    pub fn limits(&self) -> LogLimits {
        LogLimits {
            memory_bytes: self.receipts_memory_bytes,
            file_max_bytes: self.receipts_max_bytes,
            ..LogLimits::default()
        }
    }
}

/// A socket listening on `listen`.
pub(super) async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Prints `listening on http://ADDR` on stdout as one line at once, so that scripts started
/// with `--listen 127.0.0.1:0` can find the port.
pub(super) fn say_listening(addr: impl Display) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
pub(super) async fn stopped() -> anyhow::Result<()> {
    logoutd_core::stop_signal()
        .await
        .context("cannot handle SIGTERM or SIGINT")
}
