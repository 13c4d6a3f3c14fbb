//! The client registry over PostgreSQL; removing a client's URL cancels its rows in the same
//! transaction, and resuming one announces its rows to every node.

use super::rows::{ClientRow, client_columns};
use super::{PostgresStore, announce, db, ms, overfetch, to_json};
use crate::clients::{ClientRegistry, RelyingParty};
use crate::ids::ClientId;
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[async_trait]
impl ClientRegistry for PostgresStore {
    async fn create_client(&self, client: &RelyingParty) -> Result<(), StoreError> {
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
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("client {}", client.client_id)));
        }
        Ok(())
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError> {
        let row: Option<ClientRow> = sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE client_id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(ClientRow::into_client).transpose()
    }

    async fn list_clients(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<RelyingParty>, StoreError> {
        let rows: Vec<ClientRow> = sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE ($1::text IS NULL OR client_id > $1)",
            " ORDER BY client_id LIMIT $2"
        ))
        .bind(from)
        .bind(overfetch(take))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let clients = rows
            .into_iter()
            .map(ClientRow::into_client)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(clients, take, |c: &RelyingParty| {
            c.client_id.to_string()
        }))
    }

    async fn update_client(
        &self,
        client: &RelyingParty,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let claimable = !client.paused && client.logout_url().is_some();
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE clients SET settings = $1, paused = $2, has_url = $3, updated_at = $4 \
             WHERE client_id = $5",
        )
        .bind(to_json(client)?)
        .bind(client.paused)
        .bind(client.logout_url().is_some())
        .bind(ms(now))
        .bind(client.client_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let cancelled = match client.logout_url() {
            None => cancel_rows(&mut tx, &client.client_id, now).await?,
            Some(_) => 0,
        };
        if claimable {
            // Resuming a paused client makes its rows claimable again, on every node.
            announce(&mut tx).await?;
        }
        tx.commit().await.map_err(db)?;
        if claimable {
            self.notify();
        }
        Ok(cancelled)
    }

    async fn delete_client(&self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let cancelled = cancel_rows(&mut tx, id, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(cancelled)
    }
}

/// Cancels the client's pending and in-flight rows; returns how many. Terminations read
/// clients `FOR SHARE`, so a termination that saw this client has committed its rows before
/// the caller's change to the client row went through, and this statement sees them.
async fn cancel_rows(
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
