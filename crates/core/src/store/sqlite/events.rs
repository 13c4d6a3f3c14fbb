//! Operator events over SQLite: each write one transaction behind API writes, reads on the
//! reader pool; the statements are shared ([`EventStatements`]).

use super::{SqliteStore, db};
use crate::ids::{LeaseId, OperatorEventId};
use crate::operator_events::{
    ClaimedOperatorEvent, EventRedrive, OperatorEvent, OperatorEventFilter, OperatorEventResult,
};
use crate::store::sql::events::EventStatements;
use crate::store::{OperatorEvents, Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::Sqlite;

#[async_trait]
impl OperatorEvents for SqliteStore {
    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedOperatorEvent>, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let lease_id = LeaseId::generate();
        let claims = Sqlite::claim_events(&mut tx, now, &lease_id, now + lease, limit).await?;
        tx.commit().await.map_err(db)?;
        Ok(claims)
    }

    async fn record_event(&self, result: &OperatorEventResult) -> Result<bool, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let applied = Sqlite::record_event(&mut tx, result).await?;
        tx.commit().await.map_err(db)?;
        Ok(applied)
    }

    async fn release_events(
        &self,
        leases: &[(OperatorEventId, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_background_write().await?;
        let mut released = 0;
        for (id, lease) in leases {
            released += u64::from(Sqlite::release_event(&mut tx, id, lease, now).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(released)
    }

    async fn list_events(
        &self,
        filter: &OperatorEventFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<OperatorEvent>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::list_events(&mut conn, filter, from, take).await
    }

    async fn get_event(&self, id: &OperatorEventId) -> Result<Option<OperatorEvent>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::get_event(&mut conn, id).await
    }

    async fn redrive_event(
        &self,
        id: &OperatorEventId,
        now: DateTime<Utc>,
    ) -> Result<EventRedrive, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let requeued = Sqlite::requeue_failed_event(&mut tx, id, now).await?;
        let current = Sqlite::get_event(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(super::super::operator_events::redrive_outcome(
            requeued, current,
        ))
    }

    async fn pending_events(&self) -> Result<u64, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::pending_events(&mut conn).await
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let pruned = Sqlite::prune_events(&mut tx, before, limit).await?;
        tx.commit().await.map_err(db)?;
        Ok(pruned)
    }
}
