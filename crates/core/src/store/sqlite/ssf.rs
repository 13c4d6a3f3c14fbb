//! The SSF transmitter over SQLite: each write one transaction (API changes on the
//! interactive lane, the SET worker's claims, results and pruning behind API writes), reads on
//! the reader pool; the statements are shared ([`SsfStatements`]).

use super::{SqliteStore, db};
use crate::ids::LeaseId;
use crate::outbox::OutboxStats;
use crate::ssf::{
    ClaimedSet, NewSet, PollBatch, PollRequest, PushRoom, SetFilter, SetRedrive, SetResult,
    SsfReceiver, SsfStream, StoredSet, StreamStatus, VerifyOutcome,
};
use crate::store::backend::Backend;
use crate::store::sql::sets::SetStatements;
use crate::store::sql::ssf::{ReceiverKey, SsfStatements};
use crate::store::{Page, SsfStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::Sqlite;

#[async_trait]
impl SsfStore for SqliteStore {
    async fn insert_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let inserted = Sqlite::insert_receiver(&mut tx, receiver).await?;
        tx.commit().await.map_err(db)?;
        Ok(inserted)
    }

    async fn get_receiver(&self, id: &str) -> Result<Option<SsfReceiver>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::receiver_by(&mut conn, ReceiverKey::Id, id).await
    }

    async fn receiver_by_token(&self, token_hash: &str) -> Result<Option<SsfReceiver>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::receiver_by(&mut conn, ReceiverKey::TokenHash, token_hash).await
    }

    async fn receivers(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfReceiver>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::receivers(&mut conn, from, take).await
    }

    async fn update_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let updated = Sqlite::update_receiver(&mut tx, receiver).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn delete_receiver(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let deleted = Sqlite::delete_receiver(&mut tx, id, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn insert_stream(&self, stream: &SsfStream) -> Result<bool, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let inserted = Sqlite::insert_stream(&mut tx, stream).await?;
        tx.commit().await.map_err(db)?;
        Ok(inserted)
    }

    async fn get_stream(&self, stream_id: &str) -> Result<Option<SsfStream>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::get_stream(&mut conn, stream_id, false).await
    }

    async fn receiver_streams(&self, receiver_id: &str) -> Result<Vec<SsfStream>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::list_streams(&mut conn, Some(receiver_id), None, usize::MAX - 1).await
    }

    async fn streams(&self, from: Option<&str>, take: usize) -> Result<Vec<SsfStream>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::list_streams(&mut conn, None, from, take).await
    }

    async fn update_stream(&self, stream: &SsfStream) -> Result<bool, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let updated = Sqlite::update_stream(&mut tx, stream).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn delete_stream(&self, stream_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let deleted = Sqlite::delete_stream(&mut tx, stream_id, now).await?;
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
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let stream =
            Sqlite::set_stream_status(&mut tx, stream_id, status, reason, event, now).await?;
        if stream.is_some() {
            announce_sets(&mut tx).await?;
        }
        tx.commit().await.map_err(db)?;
        if stream.is_some() {
            self.wake_sets();
        }
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
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let outcome =
            Sqlite::request_verification(&mut tx, receiver_id, stream_id, event, min_interval, now)
                .await?;
        let accepted = outcome == VerifyOutcome::Accepted;
        if accepted {
            announce_sets(&mut tx).await?;
        }
        tx.commit().await.map_err(db)?;
        if accepted {
            self.wake_sets();
        }
        Ok(outcome)
    }

    async fn claim_push(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
        room: &PushRoom,
    ) -> Result<Vec<ClaimedSet>, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let lease_id = LeaseId::generate();
        let claims = Sqlite::claim_push(&mut tx, now, &lease_id, now + lease, limit, room).await?;
        tx.commit().await.map_err(db)?;
        Ok(claims)
    }

    async fn record_set(&self, result: &SetResult) -> Result<bool, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let applied = Sqlite::record_set(&mut tx, result).await?;
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
        let mut tx = self.begin_background_write().await?;
        let mut released = 0;
        for (id, lease) in leases {
            released += u64::from(Sqlite::release_set(&mut tx, id, lease, now).await?);
        }
        if released > 0 {
            announce_sets(&mut tx).await?;
        }
        tx.commit().await.map_err(db)?;
        if released > 0 {
            self.wake_sets();
        }
        Ok(released)
    }

    async fn poll(&self, request: &PollRequest) -> Result<PollBatch, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let batch = Sqlite::poll(&mut tx, request).await?;
        tx.commit().await.map_err(db)?;
        Ok(batch)
    }

    async fn list_sets(
        &self,
        filter: &SetFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<StoredSet>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::list_sets(&mut conn, filter, from, take).await
    }

    async fn get_set(&self, id: &str) -> Result<Option<StoredSet>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Sqlite::get_set(&mut conn, id).await
    }

    async fn redrive_set(&self, id: &str, now: DateTime<Utc>) -> Result<SetRedrive, StoreError> {
        let mut tx = self.begin_in(super::Lane::Interactive).await?;
        let requeued = Sqlite::requeue_failed_set(&mut tx, id, now).await?;
        let current = Sqlite::get_set(&mut tx, id).await?;
        if requeued {
            announce_sets(&mut tx).await?;
        }
        tx.commit().await.map_err(db)?;
        if requeued {
            self.wake_sets();
        }
        Ok(match (requeued, current) {
            (true, _) => SetRedrive::Requeued,
            (false, Some(row)) => SetRedrive::NotFailed(row.state),
            (false, None) => SetRedrive::NotFound,
        })
    }

    async fn set_stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
        self.queue_stats("ssf_sets", now).await
    }

    async fn prune_sets(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut tx = self.begin_background_write().await?;
        let pruned = Sqlite::prune_sets(&mut tx, before, limit).await?;
        tx.commit().await.map_err(db)?;
        Ok(pruned)
    }
}

/// Tells other processes of newly due SET rows: nothing to do on SQLite, whose SET worker
/// and long polls re-check the database on their own schedule.
async fn announce_sets(_conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::sql::sets::stream_claim;
    use crate::store::sqlite::outbox::queue_stats_sql;
    use crate::store::sqlite::{SqliteStore, query_plan};
    use chrono::Utc;
    use sqlx::Sqlite;

    /// A push claim reads each stream's waiting rows in id order along `ssf_sets_stream`:
    /// no sort, and no search of every waiting row, so its cost does not grow with the
    /// backlog of a mass logout.
    #[tokio::test]
    async fn a_push_claim_reads_one_streams_rows_along_its_index() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        for enabled in [true, false] {
            let claim = stream_claim::<Sqlite>("stream-1", enabled, Utc::now(), 8);
            let steps = query_plan(&store, claim.sql().as_str(), &["stream-1"], &[0, 8]).await;
            assert!(
                steps
                    .iter()
                    .any(|s| s
                        .starts_with("SEARCH ssf_sets USING INDEX ssf_sets_stream (stream_id=?)")),
                "{steps:?}"
            );
            assert!(
                !steps.iter().any(|s| s.contains("TEMP B-TREE")),
                "{steps:?}"
            );
        }
    }

    /// The gauges' query reads indexes only: no scan of the SET table at a scrape.
    #[tokio::test]
    async fn the_set_gauges_read_indexes_not_the_table() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let steps = query_plan(&store, &queue_stats_sql("ssf_sets"), &[], &[0]).await;
        let counts = steps
            .iter()
            .filter(|s| s.contains("USING COVERING INDEX ssf_sets_state (state=?)"))
            .count();
        assert_eq!(counts, 3, "{steps:?}");
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING INDEX ssf_sets_due (next_attempt_at<?)")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.starts_with("SCAN ssf_sets")),
            "{steps:?}"
        );
    }
}
