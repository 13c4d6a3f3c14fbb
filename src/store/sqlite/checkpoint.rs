//! WAL checkpoints off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so one
//! writer (often an API request) pays for copying every page written since the last one. Here
//! the writer's automatic checkpoint is only a backstop, and a task checkpoints in `PASSIVE`
//! mode on a read connection after every [`EVERY`] write transactions. A passive checkpoint
//! never takes the write lock, so writers go on meanwhile. Pages written many times between two
//! checkpoints are copied once.

use sqlx::SqlitePool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tokio::sync::Notify;

/// Write transactions between two background checkpoints.
const EVERY: u32 = 256;
/// The writer's own automatic checkpoint threshold, in pages (4 KiB each): only reached when
/// the background checkpoints fall behind.
pub(super) const BACKSTOP_PAGES: &str = "16384";

/// Counts write transactions and wakes the checkpoint task.
#[derive(Default)]
pub(super) struct Checkpoints {
    writes: AtomicU32,
    closed: AtomicBool,
    wake: Notify,
}

impl Checkpoints {
    /// Counts one committed write transaction.
    pub(super) fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) + 1 >= EVERY {
            self.writes.store(0, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Stops the task (the store is going away).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Starts the task that checkpoints `pool`'s database when woken.
    pub(super) fn spawn(self: &Arc<Self>, pool: SqlitePool) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                this.wake.notified().await;
                if this.closed.load(Ordering::Acquire) {
                    return;
                }
                if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %err, "background WAL checkpoint failed");
                }
            }
        });
    }
}
