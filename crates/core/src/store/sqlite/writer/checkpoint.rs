//! WAL checkpoints off the write path, and WAL restarts kept rare.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so one
//! writer (often an API request) pays for copying every page written since the last one. Here
//! the writer's automatic checkpoint is only a backstop, and a task checkpoints in `PASSIVE`
//! mode on a read connection after every [`EVERY`] write transactions. A passive checkpoint
//! never takes the write lock, so writers go on meanwhile. Pages written many times between two
//! checkpoints are copied once.
//!
//! Once a checkpoint has copied every frame, the next writer starts the WAL over from its
//! beginning, and with `synchronous = NORMAL` it syncs the new WAL header to disk inside its
//! commit, holding the write lock. On a disk where one `fsync` takes tens of milliseconds, that
//! happened about once a second under load, and every write queued behind it. So the task keeps
//! a read transaction open on a connection of its own (a pin) while the WAL is shorter than
//! [`RESTART_FRAMES`]. A reader inside the WAL stops the writer from starting it over, and the
//! pin is moved to the newest snapshot just before each checkpoint, so the checkpoint still
//! copies everything up to it. Once the WAL reaches [`RESTART_FRAMES`], the task lets the pin
//! go and checkpoints once more while it holds the writer's turn (in the background lane of
//! the [`WriteGate`]), so that the checkpoint is complete and the next writer restarts the WAL;
//! then the pin is taken again. A restart thus costs the writers about three `fsync`s once
//! per [`RESTART_FRAMES`] pages written, and the WAL file peaks at about that size.

use super::gate::{Lane, WriteGate};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, SqliteConnection, SqlitePool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tokio::sync::Notify;

/// Write transactions between two background checkpoints.
const EVERY: u32 = 64;
/// WAL length, in frames of one 4 KiB page, from which the WAL may start over (128 MiB).
const RESTART_FRAMES: i64 = 32_768;
/// The writer's own automatic checkpoint threshold, in pages: only reached when the background
/// checkpoints fall behind or stop.
pub(in crate::store::sqlite) const BACKSTOP_PAGES: &str = "65536";

/// Counts write transactions and wakes the checkpoint task.
#[derive(Default)]
pub(in crate::store::sqlite) struct Checkpoints {
    writes: AtomicU32,
    closed: AtomicBool,
    wake: Notify,
}

impl Checkpoints {
    /// Counts one committed write transaction.
    pub(in crate::store::sqlite) fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) + 1 >= EVERY {
            self.writes.store(0, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Stops the task (the store is going away).
    pub(in crate::store::sqlite) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Starts the task that checkpoints `pool`'s database when woken, pinning the WAL on two
    /// connections of its own opened with `options`, and taking turns at `gate` to restart it.
    pub(in crate::store::sqlite) fn spawn(
        self: &Arc<Self>,
        pool: SqlitePool,
        options: SqliteConnectOptions,
        gate: Arc<WriteGate>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut pin = Pin::new(options);
            loop {
                this.wake.notified().await;
                if this.closed.load(Ordering::Acquire) {
                    return;
                }
                pin.advance().await;
                match checkpoint(&pool).await {
                    Ok(frames) if frames >= RESTART_FRAMES => {
                        let _turn = gate.enter(Lane::Background).await;
                        pin.release().await;
                        if let Err(err) = checkpoint(&pool).await {
                            tracing::warn!(error = %err, "WAL checkpoint before a restart failed");
                        }
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "background WAL checkpoint failed"),
                }
            }
        });
    }
}

/// Runs one passive checkpoint; returns the frames in the WAL.
async fn checkpoint(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    let (_busy, frames, _copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await?;
    Ok(frames)
}

/// The read transaction that keeps the WAL from starting over (see the module docs). Two
/// connections take turns, so that the new snapshot is taken before the old one is let go.
struct Pin {
    options: SqliteConnectOptions,
    /// The connection holding the current snapshot, if any.
    held: Option<SqliteConnection>,
    /// The other connection, idle.
    spare: Option<SqliteConnection>,
}

impl Pin {
    fn new(options: SqliteConnectOptions) -> Self {
        Self {
            options,
            held: None,
            spare: None,
        }
    }

    /// Takes a snapshot of the newest commit, then lets the previous one go. On any error the
    /// pin is dropped, and the WAL restarts as SQLite would without it.
    async fn advance(&mut self) {
        match self.fresh_snapshot().await {
            Ok(conn) => {
                if let Some(previous) = self.held.replace(conn) {
                    self.spare = end(previous).await;
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot pin the WAL; it may restart early");
                self.release().await;
            }
        }
    }

    /// The spare connection (opened if there is none) with a snapshot of the newest commit.
    async fn fresh_snapshot(&mut self) -> Result<SqliteConnection, sqlx::Error> {
        let mut conn = match self.spare.take() {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        snapshot(&mut conn).await?;
        Ok(conn)
    }

    /// Lets the snapshot go.
    async fn release(&mut self) {
        if let Some(conn) = self.held.take() {
            self.spare = end(conn).await;
        }
    }
}

/// Opens a read transaction on `conn` and backend, which fixes its snapshot.
async fn snapshot(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("BEGIN DEFERRED").execute(&mut *conn).await?;
    let read = sqlx::query("SELECT 1 FROM sqlite_schema LIMIT 1")
        .fetch_optional(&mut *conn)
        .await;
    if let Err(err) = read {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(err);
    }
    Ok(())
}

/// Ends `conn`'s read transaction; returns the connection unless that failed.
async fn end(mut conn: SqliteConnection) -> Option<SqliteConnection> {
    match sqlx::query("ROLLBACK").execute(&mut conn).await {
        Ok(_) => Some(conn),
        Err(err) => {
            tracing::debug!(error = %err, "cannot end the WAL pin's read transaction");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
    use std::str::FromStr as _;

    /// A WAL database with one table, its writer, a reader pool and a pin.
    struct Wal {
        _dir: tempfile::TempDir,
        writer: SqlitePool,
        reader: SqlitePool,
        pin: Pin,
    }

    impl Wal {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("pin.db").display());
            let options = SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .pragma("wal_autocheckpoint", "0");
            let pool = |n| {
                SqlitePoolOptions::new()
                    .max_connections(n)
                    .connect_with(options.clone())
            };
            let writer = pool(1).await.unwrap();
            let reader = pool(2).await.unwrap();
            sqlx::query("CREATE TABLE t (v INTEGER)")
                .execute(&writer)
                .await
                .unwrap();
            Self {
                _dir: dir,
                writer,
                reader,
                pin: Pin::new(options),
            }
        }

        async fn write(&self) {
            sqlx::query("INSERT INTO t (v) VALUES (1)")
                .execute(&self.writer)
                .await
                .unwrap();
        }

        /// Frames in the WAL after one write, having checkpointed it completely before
        /// (advancing the pin first if `pinned`).
        async fn frames_after_a_complete_checkpoint(&mut self, pinned: bool) -> i64 {
            self.write().await;
            if pinned {
                self.pin.advance().await;
            }
            let before = checkpoint(&self.reader).await.unwrap();
            self.write().await;
            let after = checkpoint(&self.reader).await.unwrap();
            assert!(after > 0 && before > 0);
            after
        }

        async fn cycles(&mut self, pinned: bool) -> Vec<i64> {
            let mut frames = Vec::new();
            for _ in 0..4 {
                frames.push(self.frames_after_a_complete_checkpoint(pinned).await);
            }
            frames
        }
    }

    #[tokio::test]
    async fn a_pinned_wal_grows_and_restarts_once_let_go() {
        let mut wal = Wal::new().await;
        let frames = wal.cycles(true).await;
        assert!(wal.pin.held.is_some());
        assert!(
            frames.windows(2).all(|w| w[0] < w[1]),
            "the writer never started the pinned WAL over: {frames:?}"
        );
        wal.pin.release().await;
        let restarted = wal.frames_after_a_complete_checkpoint(false).await;
        assert!(
            restarted < frames[0],
            "once let go, the WAL starts over: {restarted} frames after {frames:?}"
        );
        let pinned_again = wal.frames_after_a_complete_checkpoint(true).await;
        assert!(pinned_again > restarted && wal.pin.held.is_some());
    }

    #[tokio::test]
    async fn without_a_pin_every_complete_checkpoint_restarts_the_wal() {
        let mut wal = Wal::new().await;
        let frames = wal.cycles(false).await;
        assert!(
            frames.windows(2).all(|w| w[0] == w[1]),
            "each write starts the WAL over: {frames:?}"
        );
    }
}
