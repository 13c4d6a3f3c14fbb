//! Termination over SQLite: the sessions' end and their outbox rows in one transaction.

use super::rows::{ClientRow, SessionRow, session_columns};
use super::sessions::{fetch_row, hydrate};
use super::{SqliteStore, db, json_list, ms};
use crate::clients::RelyingParty;
use crate::ids::EventId;
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::{EndReport, EndTarget, Session};
use crate::store::StoreError;
use crate::terminate;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Sqlite, SqliteConnection, Transaction};

/// Ends the target's active sessions and writes their rows from [`terminate::plan`]; commits
/// both together, then wakes the dispatcher.
pub(super) async fn end_sessions(
    store: &SqliteStore,
    target: &EndTarget,
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    let mut tx = store.begin_write().await?;
    let sessions = active_targets(&mut tx, target).await?;
    finish(store, tx, sessions, initiator, event_id, now).await
}

/// Ends up to `limit` active sessions past their absolute or idle expiry at `now`, with
/// `session-expired`. The write lock taken at `BEGIN IMMEDIATE` keeps another process from
/// ending the same sessions meanwhile.
pub(super) async fn end_expired(
    store: &SqliteStore,
    now: DateTime<Utc>,
    limit: usize,
    event_id: &EventId,
) -> Result<EndReport, StoreError> {
    let mut tx = store.begin_write().await?;
    let rows: Vec<SessionRow> = sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE ended_at IS NULL AND (expires_at <= ?1 OR idle_expires_at <= ?1)",
        " ORDER BY id LIMIT ?2"
    ))
    .bind(ms(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let sessions = hydrate(&mut tx, rows).await?;
    finish(
        store,
        tx,
        sessions,
        Initiator::SessionExpired,
        event_id,
        now,
    )
    .await
}

/// Writes the rows [`terminate::plan`] derives for `sessions`, marks them ended, commits
/// both together, then wakes the dispatcher.
async fn finish(
    store: &SqliteStore,
    mut tx: Transaction<'static, Sqlite>,
    sessions: Vec<Session>,
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    let clients = registrations(&mut tx, &sessions).await?;
    let rows: Vec<NewDelivery> = sessions
        .iter()
        .flat_map(|s| terminate::plan(s, &clients, initiator, event_id, now))
        .collect();
    mark_ended(&mut tx, &sessions, initiator, now).await?;
    insert_rows(&mut tx, &rows).await?;
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

/// The active sessions a termination covers; `NotFound` for an unknown single session.
async fn active_targets(
    conn: &mut SqliteConnection,
    target: &EndTarget,
) -> Result<Vec<Session>, StoreError> {
    let rows = match target {
        EndTarget::Session(id) => {
            let row = fetch_row(conn, id).await?.ok_or(StoreError::NotFound)?;
            vec![row]
        }
        EndTarget::User(user) => sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = ? AND ended_at IS NULL ORDER BY id"
        ))
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?,
    };
    let sessions = hydrate(conn, rows).await?;
    Ok(sessions.into_iter().filter(|s| !s.is_ended()).collect())
}

/// The current registrations of every client the sessions name (absent ones are skipped).
async fn registrations(
    conn: &mut SqliteConnection,
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
    fetch_clients(conn, &ids).await
}

/// The registrations of the named clients that exist.
pub(super) async fn fetch_clients(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<Vec<RelyingParty>, StoreError> {
    let rows: Vec<ClientRow> = sqlx::query_as(
        "SELECT settings, paused, created_at, updated_at FROM clients \
         WHERE client_id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(ids.iter().copied())?)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter().map(ClientRow::into_client).collect()
}

/// Marks the sessions ended.
async fn mark_ended(
    conn: &mut SqliteConnection,
    sessions: &[Session],
    initiator: Initiator,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if sessions.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE sessions SET ended_at = ?1, end_initiator = ?2, updated_at = ?1 \
         WHERE id IN (SELECT value FROM json_each(?3)) AND ended_at IS NULL",
    )
    .bind(ms(now))
    .bind(initiator.as_str())
    .bind(json_list(sessions.iter().map(|s| s.id.as_str()))?)
    .execute(conn)
    .await
    .map_err(db)
    .map(|_| ())
}

/// Inserts the planned rows as pending and due at once, in one statement.
async fn insert_rows(conn: &mut SqliteConnection, rows: &[NewDelivery]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut batch = Vec::with_capacity(rows.len());
    for r in rows {
        let metadata = serde_json::to_string(&r.session_metadata).map_err(StoreError::backend)?;
        batch.push(json!([
            r.id.as_str(),
            r.event_id.as_str(),
            r.session_id.as_str(),
            r.user_id.as_str(),
            r.client_id.as_str(),
            r.initiator.as_str(),
            metadata,
            ms(r.created_at),
        ]));
    }
    sqlx::query(
        "INSERT INTO deliveries (id, event_id, session_id, user_id, client_id, initiator, \
         metadata, state, attempts, next_attempt_at, budget_started_at, created_at, updated_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
         value ->> 6, 'pending', 0, value ->> 7, value ->> 7, value ->> 7, value ->> 7 \
         FROM json_each(?)",
    )
    .bind(serde_json::Value::Array(batch).to_string())
    .execute(conn)
    .await
    .map_err(db)
    .map(|_| ())
}
