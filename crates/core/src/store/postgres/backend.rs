//! The [`Backend`] over PostgreSQL: its transactions, and the reads; a session comes with its
//! client list in one statement. Also the session lock the write transaction takes.

use super::rows::{ClientRow, SessionRow, session_columns};
use super::tx::PgTx;
use super::{PostgresStore, db, overfetch};
use crate::clients::RelyingParty;
use crate::ids::{ClientId, SessionId, UserId};
use crate::session::Session;
use crate::store::backend::{Backend, Lane, Tx};
use crate::store::sql::rows::client_columns;
use crate::store::sql::shared::Shared;
use crate::store::{StoreError, wake};
use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::Postgres;

#[async_trait]
impl Backend for PostgresStore {
    async fn begin(&self, _lane: Lane) -> Result<Box<dyn Tx + '_>, StoreError> {
        Ok(Box::new(PgTx {
            tx: self.begin().await?,
        }))
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        fetch(&mut conn, id).await
    }

    /// The user's active sessions after cursor `from`, one more than `take` at most.
    async fn user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<Session>, StoreError> {
        let rows: Vec<SessionRow> = sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 AND ended_at IS NULL",
            " AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ))
        .bind(user.as_str())
        .bind(from)
        .bind(overfetch(take))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(SessionRow::into_session).collect()
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<RelyingParty>, StoreError> {
        Postgres::get_client(&self.pool, id).await
    }

    /// Clients after cursor `from`, one more than `take` at most.
    async fn clients(
        &self,
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
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(ClientRow::into_client).collect()
    }

    fn wake_workers(&self) {
        self.notify();
    }

    fn wake_expiry(&self) {
        wake(&self.expiry);
    }

    fn wake_sets(&self) {
        wake(&self.sets_wakeup);
    }

    fn sets_wakeup(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.sets_wakeup.clone()
    }

    fn event_tally(&self) -> std::sync::Arc<crate::operator_events::EventTally> {
        self.tally.clone()
    }
}

/// The session `id` with its clients, ended or not.
pub(super) async fn fetch(
    conn: &mut PgConnection,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    let row: Option<SessionRow> = sqlx::query_as(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    row.map(SessionRow::into_session).transpose()
}

/// Locks the rows of the sessions `ids` until the transaction ends, in id order (so two
/// transactions locking overlapping sets cannot deadlock); returns the ids that exist.
pub(super) async fn lock(conn: &mut PgConnection, ids: &[&str]) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT id FROM sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(db)
}
