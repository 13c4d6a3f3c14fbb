//! Termination over SQLite: the sessions' end and their outbox rows in one transaction.

use super::rows::{ClientRow, SessionRow, session_columns};
use super::sessions::{fetch_row, hydrate};
use super::{Lane, SqliteStore, WriteTx, db, json_list, ms, values};
use crate::clients::RelyingParty;
use crate::ids::{EventId, UserId};
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::{EndReport, EndTarget, Session};
use crate::store::StoreError;
use crate::terminate;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::sync::LazyLock;

/// Sessions ended per transaction when one call ends a user's sessions. Each chunk commits
/// its sessions' end together with their rows, so a single-session end waits behind one chunk
/// on the writer, never behind a whole user.
pub(super) const END_CHUNK: usize = 8;

/// Ends the target's active sessions and writes their rows from [`terminate::plan`]; each
/// session's end commits together with its rows, then the dispatcher is woken.
pub(super) async fn end_sessions(
    store: &SqliteStore,
    target: &EndTarget,
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    match target {
        EndTarget::Session(id) => {
            let mut tx = store.begin_write().await?;
            let row = fetch_row(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
            let sessions = hydrate(&mut tx, vec![row]).await?;
            let active = sessions.into_iter().filter(|s| !s.is_ended()).collect();
            finish(store, tx, active, initiator, event_id, now).await
        }
        EndTarget::User(user) => end_user(store, user, initiator, event_id, now).await,
    }
}

/// Ends a user's active sessions [`END_CHUNK`] at a time, in id order, on the bulk lane.
async fn end_user(
    store: &SqliteStore,
    user: &UserId,
    initiator: Initiator,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    let mut report = EndReport {
        event_id: event_id.clone(),
        sessions_ended: 0,
        deliveries: 0,
    };
    // The cursor starts below every id, so each chunk is one range of the `sessions_user`
    // index rather than a rescan of the sessions already ended.
    let mut after = String::new();
    loop {
        let mut tx = store.begin_in(Lane::Bulk).await?;
        let rows: Vec<SessionRow> = sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = ?1 AND id > ?2 AND ended_at IS NULL",
            " ORDER BY id LIMIT +?3"
        ))
        .bind(user.as_str())
        .bind(after.as_str())
        .bind(i64::try_from(END_CHUNK).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let last_chunk = rows.len() < END_CHUNK;
        if let Some(last) = rows.last() {
            after.clone_from(&last.id);
        }
        let sessions = hydrate(&mut tx, rows).await?;
        let part = finish(store, tx, sessions, initiator, event_id, now).await?;
        report.sessions_ended += part.sessions_ended;
        report.deliveries += part.deliveries;
        if last_chunk {
            return Ok(report);
        }
    }
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
    let mut tx = store.begin_in(Lane::Bulk).await?;
    let rows: Vec<SessionRow> = sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE ended_at IS NULL AND (expires_at <= ?1 OR idle_expires_at <= ?1)",
        " ORDER BY id LIMIT +?2"
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
    mut tx: WriteTx,
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

/// The insert of planned rows, pending and due at once.
static INSERT_ROWS: LazyLock<values::Statement> = LazyLock::new(|| {
    values::Statement::new(8, |rows| {
        format!(
            "WITH r (id, event_id, session_id, user_id, client_id, initiator, metadata, \
             created_at) AS (VALUES {rows}) \
             INSERT INTO deliveries (id, event_id, session_id, user_id, client_id, initiator, \
             metadata, state, attempts, next_attempt_at, budget_started_at, created_at, \
             updated_at) \
             SELECT id, event_id, session_id, user_id, client_id, initiator, metadata, \
             'pending', 0, created_at, created_at, created_at, created_at FROM r \
             WHERE id IS NOT NULL"
        )
    })
});

/// Inserts the planned rows as pending and due at once, up to 256 rows per statement.
async fn insert_rows(conn: &mut SqliteConnection, rows: &[NewDelivery]) -> Result<(), StoreError> {
    let statement = &*INSERT_ROWS;
    for chunk in rows.chunks(values::MAX_ROWS) {
        let mut query = sqlx::query(statement.sql(chunk.len()));
        for r in chunk {
            let metadata =
                serde_json::to_string(&r.session_metadata).map_err(StoreError::backend)?;
            query = query
                .bind(r.id.as_str())
                .bind(r.event_id.as_str())
                .bind(r.session_id.as_str())
                .bind(r.user_id.as_str())
                .bind(r.client_id.as_str())
                .bind(r.initiator.as_str())
                .bind(metadata)
                .bind(ms(r.created_at));
        }
        statement
            .pad(query, chunk.len())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}
