//! Registered clients over SQLite: the reads, and the write primitives of [`super::tx`].

use super::rows::ClientRow;
use super::{SqliteStore, db, ms};
use crate::clients::RelyingParty;
use crate::ids::ClientId;
use crate::store::StoreError;
use crate::store::sql::overfetch as limit;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

/// Registers a client; false if the client_id exists.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    client: &RelyingParty,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO clients (client_id, settings, paused, has_url, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO NOTHING",
    )
    .bind(client.client_id.as_str())
    .bind(settings(client)?)
    .bind(client.paused)
    .bind(client.logout_url().is_some())
    .bind(ms(client.created_at))
    .bind(ms(client.updated_at))
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(inserted.rows_affected() > 0)
}

/// One client, as last committed.
pub(super) async fn get(
    store: &SqliteStore,
    id: &ClientId,
) -> Result<Option<RelyingParty>, StoreError> {
    let row: Option<ClientRow> = sqlx::query_as(
        "SELECT settings, paused, created_at, updated_at FROM clients WHERE client_id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(&store.reader)
    .await
    .map_err(db)?;
    row.map(ClientRow::into_client).transpose()
}

/// Clients after cursor `from`, one more than `take` at most.
pub(super) async fn list(
    store: &SqliteStore,
    from: Option<&str>,
    take: usize,
) -> Result<Vec<RelyingParty>, StoreError> {
    let rows: Vec<ClientRow> = sqlx::query_as(
        "SELECT settings, paused, created_at, updated_at FROM clients \
         WHERE (?1 IS NULL OR client_id > ?1) ORDER BY client_id LIMIT +?2",
    )
    .bind(from)
    .bind(limit(take))
    .fetch_all(&store.reader)
    .await
    .map_err(db)?;
    rows.into_iter().map(ClientRow::into_client).collect()
}

/// Replaces a client's settings; false if it does not exist.
pub(super) async fn update(
    conn: &mut SqliteConnection,
    client: &RelyingParty,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE clients SET settings = ?, paused = ?, has_url = ?, updated_at = ? \
         WHERE client_id = ?",
    )
    .bind(settings(client)?)
    .bind(client.paused)
    .bind(client.logout_url().is_some())
    .bind(ms(now))
    .bind(client.client_id.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(updated.rows_affected() > 0)
}

/// Deletes a client; false if it does not exist.
pub(super) async fn delete(conn: &mut SqliteConnection, id: &ClientId) -> Result<bool, StoreError> {
    let deleted = sqlx::query("DELETE FROM clients WHERE client_id = ?")
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(deleted.rows_affected() > 0)
}

/// The registration as stored in `settings`.
fn settings(client: &RelyingParty) -> Result<String, StoreError> {
    serde_json::to_string(client).map_err(StoreError::backend)
}

/// Cancels the client's pending and in-flight rows; returns how many.
pub(super) async fn cancel_rows(
    conn: &mut SqliteConnection,
    id: &ClientId,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', next_attempt_at = NULL, lease_id = NULL, \
         lease_until = NULL, updated_at = ? \
         WHERE client_id = ? AND state IN ('pending', 'in_flight')",
    )
    .bind(ms(now))
    .bind(id.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected())
}
