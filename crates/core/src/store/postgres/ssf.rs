//! The SSF transmitter over PostgreSQL: claims and polls skip rows another node holds (`FOR
//! UPDATE SKIP LOCKED`), status changes and verifications lock the stream row, and a write
//! that makes SET rows due announces them on `logoutd_ssf` at commit so other nodes' SET
//! workers and long polls wake; the statements are shared ([`SsfStatements`]).

use super::{PostgresStore, db};
use crate::ids::LeaseId;
use crate::outbox::OutboxStats;
use crate::ssf::{
    ClaimedSet, NewSet, PollBatch, PollRequest, PushRoom, SetFilter, SetRedrive, SetResult,
    SsfReceiver, SsfStream, StoredSet, StreamStatus, VerifyOutcome,
};
use crate::store::sql::sets::SetStatements;
use crate::store::sql::ssf::{ReceiverKey, SsfStatements};
use crate::store::{Page, SsfStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::Postgres;

#[async_trait]
impl SsfStore for PostgresStore {
    async fn insert_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = Postgres::insert_receiver(&mut tx, receiver).await?;
        tx.commit().await.map_err(db)?;
        Ok(inserted)
    }

    async fn get_receiver(&self, id: &str) -> Result<Option<SsfReceiver>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::receiver_by(&mut conn, ReceiverKey::Id, id).await
    }

    async fn receiver_by_token(&self, token_hash: &str) -> Result<Option<SsfReceiver>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::receiver_by(&mut conn, ReceiverKey::TokenHash, token_hash).await
    }

    async fn receivers(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfReceiver>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::receivers(&mut conn, from, take).await
    }

    async fn update_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let updated = Postgres::update_receiver(&mut tx, receiver).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn delete_receiver(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = Postgres::delete_receiver(&mut tx, id, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn insert_stream(&self, stream: &SsfStream) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = Postgres::insert_stream(&mut tx, stream).await?;
        tx.commit().await.map_err(db)?;
        Ok(inserted)
    }

    async fn get_stream(&self, stream_id: &str) -> Result<Option<SsfStream>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::get_stream(&mut conn, stream_id, false).await
    }

    async fn receiver_streams(&self, receiver_id: &str) -> Result<Vec<SsfStream>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::list_streams(&mut conn, Some(receiver_id), None, usize::MAX - 1).await
    }

    async fn streams(&self, from: Option<&str>, take: usize) -> Result<Vec<SsfStream>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::list_streams(&mut conn, None, from, take).await
    }

    async fn update_stream(&self, stream: &SsfStream) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let updated = Postgres::update_stream(&mut tx, stream).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn delete_stream(&self, stream_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = Postgres::delete_stream(&mut tx, stream_id, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn set_stream_status(
        &self,
        stream_id: &str,
        status: StreamStatus,
        reason: Option<&str>,
        event: Option<&NewSet>,
        now: DateTime<Utc>,
    ) -> Result<Option<SsfStream>, StoreError> {
        let mut tx = self.begin().await?;
        let stream =
            Postgres::set_stream_status(&mut tx, stream_id, status, reason, event, now).await?;
        self.commit_due_sets(tx, stream.is_some()).await?;
        Ok(stream)
    }

    async fn request_verification(
        &self,
        receiver_id: &str,
        stream_id: &str,
        event: &NewSet,
        min_interval: Duration,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let outcome = Postgres::request_verification(
            &mut tx,
            receiver_id,
            stream_id,
            event,
            min_interval,
            now,
        )
        .await?;
        let accepted = outcome == VerifyOutcome::Accepted;
        self.commit_due_sets(tx, accepted).await?;
        Ok(outcome)
    }

    async fn claim_push(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
        room: &PushRoom,
    ) -> Result<Vec<ClaimedSet>, StoreError> {
        let mut tx = self.begin().await?;
        let lease_id = LeaseId::generate();
        let claims =
            Postgres::claim_push(&mut tx, now, &lease_id, now + lease, limit, room).await?;
        tx.commit().await.map_err(db)?;
        Ok(claims)
    }

    async fn record_set(&self, result: &SetResult) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let applied = Postgres::record_set(&mut tx, result).await?;
        tx.commit().await.map_err(db)?;
        Ok(applied)
    }

    async fn release_sets(
        &self,
        leases: &[(String, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut released = 0;
        for (id, lease) in leases {
            released += u64::from(Postgres::release_set(&mut tx, id, lease, now).await?);
        }
        self.commit_due_sets(tx, released > 0).await?;
        Ok(released)
    }

    async fn poll(&self, request: &PollRequest) -> Result<PollBatch, StoreError> {
        let mut tx = self.begin().await?;
        let batch = Postgres::poll(&mut tx, request).await?;
        tx.commit().await.map_err(db)?;
        Ok(batch)
    }

    async fn list_sets(
        &self,
        filter: &SetFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<StoredSet>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::list_sets(&mut conn, filter, from, take).await
    }

    async fn get_set(&self, id: &str) -> Result<Option<StoredSet>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Postgres::get_set(&mut conn, id).await
    }

    async fn redrive_set(&self, id: &str, now: DateTime<Utc>) -> Result<SetRedrive, StoreError> {
        let mut tx = self.begin().await?;
        let requeued = Postgres::requeue_failed_set(&mut tx, id, now).await?;
        let current = Postgres::get_set(&mut tx, id).await?;
        self.commit_due_sets(tx, requeued).await?;
        Ok(match (requeued, current) {
            (true, _) => SetRedrive::Requeued,
            (false, Some(row)) => SetRedrive::NotFailed(row.state),
            (false, None) => SetRedrive::NotFound,
        })
    }

    /// Counts per waiting and dead-letter state (over `ssf_sets_state`) and the oldest due
    /// row (first entry of `ssf_sets_due`).
    async fn set_stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
        self.queue_stats("ssf_sets", now).await
    }

    async fn prune_sets(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let pruned = Postgres::prune_sets(&mut tx, before, limit).await?;
        tx.commit().await.map_err(db)?;
        Ok(pruned)
    }
}
