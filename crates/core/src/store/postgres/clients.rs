//! Registered clients over PostgreSQL: the reads, and the write primitives of [`super::tx`].

use super::rows::{ClientRow, client_columns};
use super::{PostgresStore, db, ms, overfetch, to_json};
use crate::clients::RelyingParty;
use crate::ids::ClientId;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// Registers a client; false if the client_id exists.
pub(super) async fn insert(
    conn: &mut PgConnection,
    client: &RelyingParty,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO clients (client_id, settings, paused, has_url, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id) DO NOTHING",
    )
    .bind(client.client_id.as_str())
    .bind(to_json(client)?)
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
    store: &PostgresStore,
    id: &ClientId,
) -> Result<Option<RelyingParty>, StoreError> {
    let row: Option<ClientRow> = sqlx::query_as(concat!(
        "SELECT ",
        client_columns!(),
        " FROM clients WHERE client_id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    row.map(ClientRow::into_client).transpose()
}

/// Clients after cursor `from`, one more than `take` at most.
pub(super) async fn list(
    store: &PostgresStore,
    from: Option<&str>,
    take: usize,
) -> Result<Vec<RelyingParty>, StoreError> {
    let rows: Vec<ClientRow> = sqlx::query_as(concat!(
        "SELECT ",
        client_columns!(),
        " FROM clients WHERE ($1::text IS NULL OR client_id > $1)",
        " ORDER BY client_id LIMIT $2"
    ))
    .bind(from)
    .bind(overfetch(take))
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    rows.into_iter().map(ClientRow::into_client).collect()
}

/// Replaces a client's settings; false if it does not exist.
pub(super) async fn update(
    conn: &mut PgConnection,
    client: &RelyingParty,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE clients SET settings = $1, paused = $2, has_url = $3, updated_at = $4 \
         WHERE client_id = $5",
    )
    .bind(to_json(client)?)
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
pub(super) async fn delete(conn: &mut PgConnection, id: &ClientId) -> Result<bool, StoreError> {
    let deleted = sqlx::query("DELETE FROM clients WHERE client_id = $1")
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(deleted.rows_affected() > 0)
}

/// Cancels the client's pending and in-flight rows; returns how many. Terminations read
/// clients `FOR SHARE`, so a termination that saw this client has committed its rows before
/// the caller's change to the client row went through, and this statement sees them.
pub(super) async fn cancel_rows(
    conn: &mut PgConnection,
    id: &ClientId,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', next_attempt_at = NULL, lease_id = NULL, \
         lease_until = NULL, updated_at = $1 \
         WHERE client_id = $2 AND state IN ('pending', 'in_flight')",
    )
    .bind(ms(now))
    .bind(id.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected())
}
