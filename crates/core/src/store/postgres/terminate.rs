//! Termination over PostgreSQL: reading and locking a step's sessions, and writing their end
//! with their outbox rows in one statement (the walk itself is [`crate::store::Sessions`]').
//!
//! The clients are read `FOR SHARE`, so a concurrent deletion or URL removal waits for this
//! transaction and then cancels the rows it wrote.

use super::backend::lock;
use super::rows::{ClientRow, SessionRow, session_columns};
use super::{CHANNEL, db, ms};
use crate::clients::RelyingParty;
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::Session;
use crate::store::StoreError;
use crate::store::backend::{Ending, EndingSet};
use crate::store::sql::limit as bound;
use crate::store::sql::rows::client_columns;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;

/// Sessions ended per transaction when one call ends a user's sessions. Each chunk commits
/// its sessions' end together with their rows, so what one call holds in memory, and how long
/// one transaction keeps its locks, stay bounded however many sessions the user has.
pub(super) const END_CHUNK: usize = 64;

/// Reads and locks the sessions of one termination step, with their clients' registrations.
///
/// The target session rows are locked first (`FOR UPDATE`), then read in a new statement
/// ([`active_sessions`]): a second node ending the same session waits for the first to
/// commit, then finds it ended and adds nothing. A user's sessions are read [`END_CHUNK`] at
/// a time past a cursor, then locked; a session another transaction ends meanwhile drops out
/// when its lock is granted, and the cursor moves past every candidate, so the walk ends
/// however many drop out. The expiry sweep skips sessions another sweeper holds
/// (`SKIP LOCKED`), and the lock re-checks `ended_at IS NULL`, so two nodes never end one
/// session twice.
pub(super) async fn ending(
    conn: &mut PgConnection,
    which: Ending<'_>,
) -> Result<EndingSet, StoreError> {
    let (ids, found, next) = match which {
        Ending::Session(id) => {
            let ids = lock(conn, &[id.as_str()]).await?;
            let found = !ids.is_empty();
            (ids, found, None)
        }
        Ending::User { user, after } => {
            let candidates: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM sessions WHERE user_id = $1 AND ended_at IS NULL AND id > $2 \
                 ORDER BY id LIMIT $3",
            )
            .bind(user.as_str())
            .bind(after)
            .bind(bound(END_CHUNK))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
            let next = match candidates.last() {
                Some(last) if candidates.len() >= END_CHUNK => Some(last.clone()),
                _ => None,
            };
            let wanted: Vec<&str> = candidates.iter().map(String::as_str).collect();
            let ids = if wanted.is_empty() {
                Vec::new()
            } else {
                lock(conn, &wanted).await?
            };
            (ids, true, next)
        }
        Ending::Expired { now, limit } => {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM sessions WHERE ended_at IS NULL \
                 AND (expires_at <= $1 OR idle_expires_at <= $1) \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(ms(now))
            .bind(bound(limit))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
            (ids, true, None)
        }
    };
    let sessions = active_sessions(conn, &ids).await?;
    let clients = registrations(conn, &sessions).await?;
    Ok(EndingSet {
        sessions,
        clients,
        found,
        next,
    })
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

/// Marks the sessions ended, inserts the planned rows as pending and due at once, and
/// announces them (when there are any), in one statement: one round trip where there were
/// three, each a wait for a turn on the cores while a mass logout runs. A `user` row an
/// earlier step of the same user-wide end wrote gets this step's sessions added instead.
pub(super) async fn write_end(
    conn: &mut PgConnection,
    sessions: &[Session],
    rows: &[NewDelivery],
    initiator: Initiator,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if sessions.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    let mut batch = Vec::with_capacity(rows.len());
    for r in rows {
        let mut row = json!({
            "id": r.id.as_str(),
            "event_id": r.event_id.as_str(),
            "session_id": r.session_id.as_str(),
            "user_id": r.user_id.as_str(),
            "client_id": r.client_id.as_str(),
            "initiator": r.initiator.as_str(),
            "metadata": serde_json::to_value(&r.session_metadata).map_err(StoreError::backend)?,
            "at": ms(r.created_at),
            "scope": r.scope.as_str(),
            "sessions": r.sessions,
        });
        // Absent (NULL in the recordset) unless the client joined with its own sid.
        if let (Some(sid), Some(fields)) = (&r.sid, row.as_object_mut()) {
            fields.insert("sid".into(), sid.as_str().into());
        }
        batch.push(row);
    }
    sqlx::query(
        "WITH ended AS (UPDATE sessions SET ended_at = $1, end_initiator = $2, updated_at = $1 \
         WHERE id = ANY($3) AND ended_at IS NULL), \
         inserted AS (INSERT INTO deliveries (id, event_id, session_id, sid, user_id, \
         client_id, initiator, metadata, state, attempts, next_attempt_at, budget_started_at, \
         created_at, updated_at, scope, sessions_covered) \
         SELECT r.id, r.event_id, r.session_id, r.sid, r.user_id, r.client_id, r.initiator, \
         r.metadata, 'pending', 0, r.at, r.at, r.at, r.at, r.scope, r.sessions \
         FROM jsonb_to_recordset($4) AS r (id text, event_id text, session_id text, \
         sid text, user_id text, client_id text, initiator text, metadata jsonb, at bigint, \
         scope text, sessions integer) \
         ON CONFLICT (id) DO UPDATE \
         SET sessions_covered = deliveries.sessions_covered + excluded.sessions_covered) \
         SELECT pg_notify($5, '') WHERE jsonb_array_length($4) > 0",
    )
    .bind(ms(now))
    .bind(initiator.as_str())
    .bind(&ids)
    .bind(serde_json::Value::Array(batch))
    .bind(CHANNEL)
    .execute(conn)
    .await
    .map_err(db)
    .map(|_| ())
}
