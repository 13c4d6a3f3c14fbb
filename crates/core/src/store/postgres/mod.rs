//! PostgreSQL backend, for several `logoutd` processes sharing one database.
//!
//! - **Work sharing.** Claims lock due rows with `FOR UPDATE SKIP LOCKED` and put them in flight
//!   under a new lease in the same statement, so two nodes never hold a current lease on one
//!   row. Results and releases are fenced by the lease id and state.
//! - **Termination** locks the target session rows (`FOR UPDATE`) before reading them, so two
//!   nodes ending the same session at once write its rows once: the second sees it ended.
//!   Read-modify-write changes to a session (metadata, joining clients) take the same lock.
//! - **Wake-up across nodes.** A transaction that makes rows due issues
//!   `NOTIFY logoutd_outbox`, which fires on commit; every store instance listens on that
//!   channel (see `listener`) and signals its [`Queue::wakeup`](crate::store::Queue::wakeup);
//!   SET rows likewise on `logoutd_ssf`, signalling [`crate::store::Stores::ssf_wake`].
//! - **Timestamps** are BIGINT milliseconds since the epoch, as in the SQLite backend, and
//!   identifier columns use the "C" collation so paging follows byte order (see the migration).
//! - **Expiry sweeps** lock expired active sessions `FOR UPDATE SKIP LOCKED`, so sweepers on
//!   several nodes split the work and never end one session twice.
//! - Migrations run at open; sqlx serialises concurrent migrators with an advisory lock.

mod backend;
mod events;
mod listener;
mod nodelay;
mod outbox;
mod retention;
mod rows;
mod ssf;
mod terminate;
mod tx;

use super::sql::{Dialect, db, ms, opt_from_ms, overfetch};

use super::sql::health::{health_page, one_health};
use super::{ClientHealthStats, Health, Page, StoreError, Stores, redact_url, wake};
use crate::health::{ClientHealth, HealthPolicy, PolicyCell};
use crate::ids::ClientId;
use crate::outbox::OutboxStats;
use crate::store::sql::rows::{StatsRow, stats};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Connections in the pool of one store instance (one of them serves the listener).
const POOL_CONNECTIONS: u32 = 16;
/// The channel that announces newly due rows to every node.
const CHANNEL: &str = "logoutd_outbox";
/// The channel that announces newly due SET rows to every node.
const SSF_CHANNEL: &str = "logoutd_ssf";

/// PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    wakeup: Arc<Notify>,
    expiry: Arc<Notify>,
    sets_wakeup: Arc<Notify>,
    listener: JoinHandle<()>,
    health: Arc<PolicyCell>,
    tally: Arc<crate::operator_events::EventTally>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://...` or `postgresql://...`), runs the migrations and
    /// starts listening for other nodes' wake-ups.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::UnsupportedUrl(redact_url(url)))?;
        let port = options.get_port();
        let tcp = options.get_socket().is_none();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .after_connect(move |_conn, _meta| {
                Box::pin(async move {
                    if tcp && let Err(err) = nodelay::set_on_sockets_to(port) {
                        tracing::warn!(error = %err, "cannot set TCP_NODELAY on a database connection; statements larger than 16 KiB may wait up to 40 ms");
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::backend)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(StoreError::backend)?;
        let wakeup = Arc::new(Notify::new());
        let sets_wakeup = Arc::new(Notify::new());
        let listener = tokio::spawn(listener::run(
            pool.clone(),
            wakeup.clone(),
            sets_wakeup.clone(),
        ));
        Ok(Self {
            pool,
            wakeup,
            expiry: Arc::new(Notify::new()),
            sets_wakeup,
            listener,
            health: Arc::default(),
            tally: Arc::default(),
        })
    }

    /// The store's seams, sharing this pool.
    pub fn into_stores(self) -> Stores {
        Stores::over(Arc::new(self))
    }

    /// Starts a transaction (READ COMMITTED; the statements take the row locks they need).
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db)
    }

    /// Wakes this process's workers at once; other nodes learn from the `NOTIFY`.
    fn notify(&self) {
        wake(&self.wakeup);
    }

    /// Commits `tx`. When it made rows `due`, it announces them to every node with the commit
    /// and then wakes this process's workers at once.
    async fn commit_due(
        &self,
        tx: Transaction<'static, Postgres>,
        due: bool,
    ) -> Result<(), StoreError> {
        commit_announcing(tx, CHANNEL, due, &self.wakeup).await
    }

    /// Commits `tx`. When it made SET rows `due`, it announces them to every node with the
    /// commit and then wakes this process's SET workers and long polls at once.
    async fn commit_due_sets(
        &self,
        tx: Transaction<'static, Postgres>,
        due: bool,
    ) -> Result<(), StoreError> {
        commit_announcing(tx, SSF_CHANNEL, due, &self.sets_wakeup).await
    }

    /// The gauges of one queue table (`deliveries` or `ssf_sets`): counts per waiting and
    /// dead-letter state (over its `_state` index) and the oldest due row (first entry of its
    /// `_due` index).
    async fn queue_stats(
        &self,
        table: &'static str,
        now: DateTime<Utc>,
    ) -> Result<OutboxStats, StoreError> {
        let sql = format!(
            "SELECT (SELECT count(*) FROM {table} WHERE state = 'pending'), \
             (SELECT count(*) FROM {table} WHERE state = 'in_flight'), \
             (SELECT count(*) FROM {table} WHERE state = 'failed'), \
             (SELECT MIN(next_attempt_at) FROM {table} \
             WHERE state IN ('pending', 'in_flight') AND next_attempt_at <= $1)"
        );
        let counts: StatsRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        stats(counts)
    }
}

impl Drop for PostgresStore {
    /// Stops the listener task with the store, so it does not keep the pool alive.
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[async_trait]
impl ClientHealthStats for PostgresStore {
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
        one_health(&self.pool, id, now).await
    }

    async fn list_client_health(
        &self,
        from: Option<&str>,
        take: usize,
        now: DateTime<Utc>,
    ) -> Result<Page<ClientHealth>, StoreError> {
        health_page(&self.pool, from, take, now).await
    }
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db)
    }
}

/// Announces newly due rows to every node; delivered when the transaction commits.
async fn announce(conn: &mut PgConnection) -> Result<(), StoreError> {
    notify(conn, CHANNEL).await
}

/// Announces newly due SET rows to every node; delivered when the transaction commits.
async fn announce_sets(conn: &mut PgConnection) -> Result<(), StoreError> {
    notify(conn, SSF_CHANNEL).await
}

/// Commits `tx`, with a `NOTIFY` on `channel` in it when `due`, and then, when `due`, wakes
/// this process's waiters on `local` at once (other nodes' wake with the `NOTIFY`).
async fn commit_announcing(
    mut tx: Transaction<'static, Postgres>,
    channel: &str,
    due: bool,
    local: &Notify,
) -> Result<(), StoreError> {
    if due {
        notify(&mut tx, channel).await?;
    }
    tx.commit().await.map_err(db)?;
    if due {
        wake(local);
    }
    Ok(())
}

async fn notify(conn: &mut PgConnection, channel: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(db)
}

impl Dialect for Postgres {
    type Json = serde_json::Value;
    const LIMIT: &'static str = "LIMIT ";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const FOR_SHARE: &'static str = " FOR SHARE";

    fn affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

#[cfg(test)]
mod tests {
    use super::PostgresStore;
    use crate::store::StoreError;

    #[tokio::test]
    async fn a_bad_url_is_refused_without_its_password() {
        let err = PostgresStore::open("postgres://app:s3cret@db.example:notaport/logoutd")
            .await
            .err();
        let Some(StoreError::UnsupportedUrl(shown)) = err else {
            panic!("expected UnsupportedUrl, got {err:?}");
        };
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
