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

mod backend;
mod events;
mod outbox;
mod retention;
mod rows;
mod ssf;
mod terminate;
mod tx;
mod writer;

use super::sql::{Dialect, db, ms, opt_from_ms};

use super::sql::health::{health_page, one_health};
use super::{ClientHealthStats, Health, Page, StoreError, Stores, wake};
use crate::health::{ClientHealth, HealthPolicy, PolicyCell};
use crate::ids::ClientId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use writer::checkpoint::{self, Checkpoints};
use writer::gate::{Lane, WriteGate};
use writer::{WriteTx, values};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in the read pool of a file database.
const READ_CONNECTIONS: u32 = 4;

/// How much one batch write transaction takes on.
///
/// An API write that arrives while a batch transaction holds the writer waits for the rest of
/// it, and that wait grows with the transaction's rows. Larger transactions cost less per row
/// (each commit writes the pages it touched once, however many of its rows share them), so
/// batches are written whole while no API write is arriving, and in smaller transactions
/// while API writes are (see [`WriteGate::api_active`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSizes {
    /// Most rows one claim takes.
    claim: usize,
    /// Most results one transaction records.
    results: usize,
    /// Sessions one chunk of a user-wide end ends.
    end_sessions: usize,
}

impl BatchSizes {
    /// No API write is arriving: each batch in one transaction (a claim takes what the
    /// dispatcher asks for).
    const WHOLE: Self = Self {
        claim: usize::MAX,
        results: usize::MAX,
        end_sessions: terminate::END_CHUNK,
    };
    /// API writes are arriving: claims of at most 32 rows (a full one takes 128), results 32
    /// to a transaction (the recorder's batches hold up to 64), and 4 sessions to a chunk of
    /// a user-wide end.
    const API_ACTIVE: Self = Self {
        claim: 32,
        results: 32,
        end_sessions: terminate::END_CHUNK / 2,
    };
}

/// SQLite store.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    wakeup: Arc<Notify>,
    expiry: Arc<Notify>,
    sets_wakeup: Arc<Notify>,
    gate: Arc<WriteGate>,
    checkpoints: Arc<Checkpoints>,
    health: Arc<PolicyCell>,
    tally: Arc<crate::operator_events::EventTally>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpoints.close();
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
            sets_wakeup: Arc::new(Notify::new()),
            gate,
            checkpoints,
            health: Arc::default(),
            tally: Arc::default(),
        })
    }

    /// The store's seams, sharing this database.
    pub fn into_stores(self) -> Stores {
        Stores::over(Arc::new(self))
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

    /// The sizes for the next batch transaction, from whether API writes are arriving now.
    fn batch_sizes(&self) -> BatchSizes {
        if self.gate.api_active() {
            BatchSizes::API_ACTIVE
        } else {
            BatchSizes::WHOLE
        }
    }

    /// Wakes every waiting worker, and leaves a permit for one that is about to wait.
    fn notify(&self) {
        wake(&self.wakeup);
    }
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

/// Creates the directory the database file goes in (mode 0700) and the file itself (mode
/// 0600) before SQLite opens it: the database holds user ids, session metadata and attempt
/// history, and SQLite gives its `-wal` and `-shm` files the mode of the database file. An
/// existing file or directory open to others is kept as it is, with a warning.
async fn create_parent_dir(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    let file = options.get_filename().to_owned();
    tokio::task::spawn_blocking(move || create_private(&file))
        .await
        .map_err(StoreError::backend)?
        .map_err(StoreError::backend)
}

fn create_private(file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        warn_if_open(dir, std::fs::metadata(dir)?.permissions().mode());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_open(file, std::fs::metadata(file)?.permissions().mode());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn warn_if_open(path: &std::path::Path, mode: u32) {
    if mode & 0o077 != 0 {
        let wanted = if path.is_dir() { "700" } else { "600" };
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the SQLite database is readable by other users; run `chmod {wanted} {}`",
            path.display()
        );
    }
}

#[async_trait]
impl ClientHealthStats for SqliteStore {
    fn set_health_policy(&self, policy: Option<HealthPolicy>) {
        self.health.set(policy);
    }

    fn auto_pauses(&self) -> u64 {
        self.health.pauses()
    }

    async fn client_health(
        &self,
        id: &ClientId,
        now: DateTime<Utc>,
    ) -> Result<Option<ClientHealth>, StoreError> {
        one_health(&self.reader, id, now).await
    }

    async fn list_client_health(
        &self,
        from: Option<&str>,
        take: usize,
        now: DateTime<Utc>,
    ) -> Result<Page<ClientHealth>, StoreError> {
        health_page(&self.reader, from, take, now).await
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

impl Dialect for sqlx::Sqlite {
    type Json = String;
    const LIMIT: &'static str = "LIMIT +";
    const FOR_UPDATE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const FOR_SHARE: &'static str = "";

    fn affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// A JSON array of strings, to pass a list of ids as one parameter (read with `json_each`).
fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<String, StoreError> {
    serde_json::to_string(&items.into_iter().collect::<Vec<_>>()).map_err(StoreError::backend)
}

/// The steps of SQLite's plan for `sql`, with `texts` bound first, then `ints`: what the
/// tests that pin a statement to its indexes read.
#[cfg(test)]
async fn query_plan(store: &SqliteStore, sql: &str, texts: &[&str], ints: &[i64]) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(explain));
    for text in texts {
        query = query.bind(*text);
    }
    for int in ints {
        query = query.bind(*int);
    }
    let rows = query.fetch_all(&store.writer).await.unwrap();
    rows.into_iter().map(|row| row.3).collect()
}

#[cfg(test)]
mod tests;
