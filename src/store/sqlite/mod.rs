//! SQLite backend, the embedded default: WAL mode, migrations at open, one write connection.
//!
//! Writes go through a pool of exactly one connection, and each write transaction starts with
//! `BEGIN IMMEDIATE`, which takes SQLite's write lock before the first read. A
//! read-modify-write (metadata changes, claims, termination) therefore cannot lose an update,
//! in this process (the single connection serialises writers without busy-waiting) or against
//! another process on the same file (the busy timeout waits for its lock). Reads use a separate
//! pool and see the last committed state, as WAL allows. An in-memory database (`sqlite::memory:`)
//! lives only as long as its connection, so there a single connection serves both roles.
//!
//! Timestamps are INTEGER milliseconds since the epoch (see the migration).
//!
//! Every bound `LIMIT` is written `LIMIT +?`: SQLite plans a plain `LIMIT ?` with the value bound
//! at the time, and so prepares the statement again each time it is bound anew; the unary plus
//! keeps the prepared statement in use.

mod checkpoint;
mod clients;
mod gate;
mod outbox;
mod retention;
mod rows;
mod sessions;
mod status;
mod terminate;
mod values;

use super::{Health, StoreError, Stores};
use async_trait::async_trait;
use checkpoint::Checkpoints;
use chrono::{DateTime, Utc};
use gate::{Lane, Pass, WriteGate};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in the read pool of a file database.
const READ_CONNECTIONS: u32 = 4;

/// SQLite store.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    wakeup: Arc<Notify>,
    expiry: Arc<Notify>,
    gate: Arc<WriteGate>,
    checkpoints: Arc<Checkpoints>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpoints.close();
    }
}

/// A write transaction and its turn at the writer (see [`gate`]); derefs to the connection.
struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _pass: Pass,
    checkpoints: Arc<Checkpoints>,
}

impl WriteTx {
    /// Commits, then lets the next writer in.
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.checkpoints.wrote();
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

impl SqliteStore {
    /// Opens (creating the file and its directory if missing) and migrates the database at
    /// `url`: `sqlite://PATH` or `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::UnsupportedUrl(url.to_owned()))?
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            // Statement journals of the batched multi-row updates stay in memory, and the
            // page cache holds the hot outbox index (8 MiB per connection at most).
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-8192")
            .pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES);
        let checkpoints = Arc::new(Checkpoints::default());
        let gate = Arc::new(WriteGate::default());
        let (writer, reader) = if in_memory {
            let pool = single_connection(options).await?;
            (pool.clone(), pool)
        } else {
            create_parent_dir(&options).await?;
            let options = options.journal_mode(SqliteJournalMode::Wal);
            let writer = single_connection(options.clone()).await?;
            let reader = SqlitePoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await
                .map_err(StoreError::backend)?;
            checkpoints.spawn(reader.clone(), options, gate.clone());
            (writer, reader)
        };
        migrate(&writer).await?;
        Ok(Self {
            writer,
            reader,
            wakeup: Arc::new(Notify::new()),
            expiry: Arc::new(Notify::new()),
            gate,
            checkpoints,
        })
    }

    /// The three trait objects (and the health probe), sharing this database.
    pub fn into_stores(self) -> Stores {
        let shared = Arc::new(self);
        Stores {
            sessions: shared.clone(),
            clients: shared.clone(),
            outbox: shared.clone(),
            health: shared,
        }
    }

    /// Starts a write transaction for an API request, holding the database write lock (see
    /// the module docs), ahead of queued bulk and background writes.
    async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        self.begin_in(Lane::Interactive).await
    }

    /// Starts a write transaction in `lane` (see [`gate`]).
    async fn begin_in(&self, lane: Lane) -> Result<WriteTx, StoreError> {
        let pass = self.gate.enter(lane).await;
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::backend)?;
        Ok(WriteTx {
            tx,
            _pass: pass,
            checkpoints: self.checkpoints.clone(),
        })
    }

    /// Starts a write transaction for a dispatcher or pruning batch, behind API writes.
    async fn begin_background_write(&self) -> Result<WriteTx, StoreError> {
        self.begin_in(Lane::Background).await
    }

    /// Wakes every waiting worker, and leaves a permit for one that is about to wait.
    fn notify(&self) {
        wake(&self.wakeup);
    }
}

/// Wakes every waiter of `notify`, and leaves a permit for one that is about to wait.
fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

/// A pool of exactly one connection that is never closed for idleness.
///
/// Neither pool pings a connection before handing it out: a SQLite connection is a file
/// handle in this process with no peer to lose, and the ping would be one more round trip
/// to the connection's thread for every transaction.
async fn single_connection(options: SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(StoreError::backend)
}

/// Runs the migrations under `migrations/sqlite`.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::migrate!("migrations/sqlite")
        .run(pool)
        .await
        .map_err(StoreError::backend)
}

/// Creates the directory the database file goes in.
async fn create_parent_dir(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    match options.get_filename().parent() {
        Some(dir) if !dir.as_os_str().is_empty() => tokio::fs::create_dir_all(dir)
            .await
            .map_err(StoreError::backend),
        _ => Ok(()),
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(StoreError::backend)
    }
}

/// Maps a database error.
fn db(err: sqlx::Error) -> StoreError {
    StoreError::backend(err)
}

/// A stored value that does not decode; names the column, never the value.
#[derive(Debug, thiserror::Error)]
#[error("stored {0} is invalid")]
struct Corrupt(&'static str);

/// The stored form of a timestamp.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A timestamp from its stored form.
fn from_ms(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(value).ok_or_else(|| StoreError::backend(Corrupt("timestamp")))
}

/// An optional timestamp from its stored form.
fn opt_from_ms(value: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    value.map(from_ms).transpose()
}

/// A JSON array of strings, to pass a list of ids as one parameter (read with `json_each`).
fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<String, StoreError> {
    serde_json::to_string(&items.into_iter().collect::<Vec<_>>()).map_err(StoreError::backend)
}
