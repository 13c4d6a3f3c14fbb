//! The client registry over SQLite; removing a client's URL cancels its rows in the same
//! transaction.

use super::rows::ClientRow;
use super::sessions::limit;
use super::{SqliteStore, db, ms};
use crate::clients::{ClientRegistry, RelyingParty};
use crate::ids::ClientId;
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

#[async_trait]
impl ClientRegistry for SqliteStore {
    async fn create_client(&self, client: &RelyingParty) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if exists(&mut tx, &client.client_id).await? {
            return Err(StoreError::Conflict(format!("client {}", client.client_id)));
        }
        sqlx::query(
            "INSERT INTO clients (client_id, settings, paused, has_url, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(client.client_id.as_str())
        .bind(settings(client)?)
        .bind(client.paused)
        .bind(client.logout_url().is_some())
        .bind(ms(client.created_at))
        .bind(ms(client.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError> {
        let row: Option<ClientRow> = sqlx::query_as(
            "SELECT settings, paused, created_at, updated_at FROM clients WHERE client_id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        row.map(ClientRow::into_client).transpose()
    }

    async fn list_clients(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<RelyingParty>, StoreError> {
        let rows: Vec<ClientRow> = sqlx::query_as(
            "SELECT settings, paused, created_at, updated_at FROM clients \
             WHERE (?1 IS NULL OR client_id > ?1) ORDER BY client_id LIMIT +?2",
        )
        .bind(from)
        .bind(limit(take))
        .fetch_all(&self.reader)
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
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE clients SET settings = ?, paused = ?, has_url = ?, updated_at = ? \
             WHERE client_id = ?",
        )
        .bind(settings(client)?)
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
        tx.commit().await.map_err(db)?;
        if !client.paused && client.logout_url().is_some() {
            // Resuming a paused client makes its rows claimable again.
            self.notify();
        }
        Ok(cancelled)
    }

    async fn delete_client(&self, id: &ClientId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM clients WHERE client_id = ?")
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

/// The registration as stored in `settings`.
fn settings(client: &RelyingParty) -> Result<String, StoreError> {
    serde_json::to_string(client).map_err(StoreError::backend)
}

/// Whether `id` is registered.
async fn exists(conn: &mut SqliteConnection, id: &ClientId) -> Result<bool, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM clients WHERE client_id = ?")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// Cancels the client's pending and in-flight rows; returns how many.
async fn cancel_rows(
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
