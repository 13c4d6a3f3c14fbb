//! Termination over PostgreSQL: the sessions' end and their outbox rows in one transaction.
//!
//! The target session rows are locked first (`FOR UPDATE`), then read in a new statement: a
//! second node ending the same session waits for the first to commit, then finds it ended and
//! adds nothing. The clients are read `FOR SHARE`, so a concurrent deletion or URL removal
//! waits for this transaction and then cancels the rows it wrote.

use super::rows::{ClientRow, SessionRow, client_columns, session_columns};
use super::sessions::lock;
use super::{PostgresStore, announce, db, ms, to_json};
use crate::clients::RelyingParty;
use crate::ids::EventId;
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::{EndReport, EndTarget, Session};
use crate::store::StoreError;
use crate::terminate;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, Postgres, Transaction};

/// Ends the target's active sessions and writes their rows from [`terminate::plan`]; commits
/// both together (announcing the rows to every node), then wakes this node's workers.
pub(super) async fn end_sessions(
    store: &PostgresStore,
    target: &EndTarget,
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    let mut tx = store.begin().await?;
    let ids = lock_targets(&mut tx, target).await?;
    finish(store, tx, &ids, initiator, event_id, now).await
}

/// Ends up to `limit` active sessions past their absolute or idle expiry at `now`, with
/// `session-expired`. Sessions another sweeper holds are skipped (`SKIP LOCKED`), and the
/// lock re-checks `ended_at IS NULL`, so two nodes never end one session twice.
pub(super) async fn end_expired(
    store: &PostgresStore,
    now: DateTime<Utc>,
    limit: usize,
    event_id: &EventId,
) -> Result<EndReport, StoreError> {
    let mut tx = store.begin().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM sessions WHERE ended_at IS NULL \
         AND (expires_at <= $1 OR idle_expires_at <= $1) \
         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(ms(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    finish(store, tx, &ids, Initiator::SessionExpired, event_id, now).await
}

/// Reads the locked sessions that are still active, writes their rows from
/// [`terminate::plan`] and marks them ended; commits both together (announcing the rows to
/// every node), then wakes this node's workers.
async fn finish(
    store: &PostgresStore,
    mut tx: Transaction<'static, Postgres>,
    ids: &[String],
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    let sessions = active_sessions(&mut tx, ids).await?;
    let clients = registrations(&mut tx, &sessions).await?;
    let rows: Vec<NewDelivery> = sessions
        .iter()
        .flat_map(|s| terminate::plan(s, &clients, initiator, event_id, now))
        .collect();
    mark_ended(&mut tx, &sessions, initiator, now).await?;
    insert_rows(&mut tx, &rows).await?;
    if !rows.is_empty() {
        announce(&mut tx).await?;
    }
    tx.commit().await.map_err(db)?;
    if !rows.is_empty() {
        store.notify();
    }
    Ok(EndReport {
        event_id: event_id.clone(),
        sessions_ended: sessions.len(),
        deliveries: rows.len(),
    })
}

/// Locks the sessions a termination covers and returns their ids; `NotFound` for an unknown
/// single session. A user's sessions that another transaction ends meanwhile drop out, since
/// `FOR UPDATE` re-checks `ended_at IS NULL` on the row version it locks.
async fn lock_targets(
    conn: &mut PgConnection,
    target: &EndTarget,
) -> Result<Vec<String>, StoreError> {
    match target {
        EndTarget::Session(id) => {
            let ids = lock(conn, &[id.as_str()]).await?;
            if ids.is_empty() {
                return Err(StoreError::NotFound);
            }
            Ok(ids)
        }
        EndTarget::User(user) => sqlx::query_scalar(
            "SELECT id FROM sessions WHERE user_id = $1 AND ended_at IS NULL \
             ORDER BY id FOR UPDATE",
        )
        .bind(user.as_str())
        .fetch_all(conn)
        .await
        .map_err(db),
    }
}

/// The locked sessions that are still active, read after the locks were granted.
async fn active_sessions(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<Vec<Session>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<SessionRow> = sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE id = ANY($1) AND ended_at IS NULL ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter().map(SessionRow::into_session).collect()
}

/// The current registrations of every client the sessions name (absent ones are skipped),
/// share-locked until the transaction ends.
async fn registrations(
    conn: &mut PgConnection,
    sessions: &[Session],
) -> Result<Vec<RelyingParty>, StoreError> {
    let mut ids: Vec<&str> = sessions
        .iter()
        .flat_map(|s| s.clients.iter().map(|c| c.client_id.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<ClientRow> = sqlx::query_as(concat!(
        "SELECT ",
        client_columns!(),
        " FROM clients WHERE client_id = ANY($1) ORDER BY client_id FOR SHARE"
    ))
    .bind(&ids)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter().map(ClientRow::into_client).collect()
}

/// Marks the sessions ended.
async fn mark_ended(
    conn: &mut PgConnection,
    sessions: &[Session],
    initiator: Initiator,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if sessions.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    sqlx::query(
        "UPDATE sessions SET ended_at = $1, end_initiator = $2, updated_at = $1 \
         WHERE id = ANY($3) AND ended_at IS NULL",
    )
    .bind(ms(now))
    .bind(initiator.as_str())
    .bind(&ids)
    .execute(conn)
    .await
    .map_err(db)
    .map(|_| ())
}

/// Inserts the planned rows as pending and due at once, in one statement.
async fn insert_rows(conn: &mut PgConnection, rows: &[NewDelivery]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut batch = Vec::with_capacity(rows.len());
    for r in rows {
        batch.push(json!({
            "id": r.id.as_str(),
            "event_id": r.event_id.as_str(),
            "session_id": r.session_id.as_str(),
            "user_id": r.user_id.as_str(),
            "client_id": r.client_id.as_str(),
            "initiator": r.initiator.as_str(),
            "metadata": to_json(&r.session_metadata)?,
            "at": ms(r.created_at),
        }));
    }
    sqlx::query(
        "INSERT INTO deliveries (id, event_id, session_id, user_id, client_id, initiator, \
         metadata, state, attempts, next_attempt_at, budget_started_at, created_at, updated_at) \
         SELECT r.id, r.event_id, r.session_id, r.user_id, r.client_id, r.initiator, \
         r.metadata, 'pending', 0, r.at, r.at, r.at, r.at \
         FROM jsonb_to_recordset($1) AS r (id text, event_id text, session_id text, \
         user_id text, client_id text, initiator text, metadata jsonb, at bigint)",
    )
    .bind(serde_json::Value::Array(batch))
    .execute(conn)
    .await
    .map_err(db)
    .map(|_| ())
}
