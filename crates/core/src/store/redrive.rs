//! The re-drive of dead letters, one or in bulk, written once over a [`Backend`]'s
//! primitives. A bulk re-drive walks either dead-letter queue, the logout deliveries' or the
//! SETs' ([`DeadLetters`]), with the same batches and idempotency keys.

use super::StoreError;
use super::backend::{Backend, Lane, Tx};
use crate::ids::DeliveryId;
use crate::outbox::{BulkRedrive, DeliveryState, FailedFilter, IdempotentRequest, Redrive};
use crate::ssf::FailedSetFilter;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

/// Most rows one transaction of a bulk re-drive takes.
pub(crate) const REDRIVE_BATCH: usize = 500;
/// How long a bulk re-drive under an idempotency key may go without recording progress before
/// a repeat of it takes over: far longer than a batch takes, so only a request whose process
/// died (a crash, a `kill -9`) is taken over.
pub(crate) const KEY_TAKEOVER_AFTER: Duration = Duration::minutes(10);

/// The re-drive of dead letters (the operator's), its rule written once over a backend.
#[derive(Clone)]
pub struct Redrives {
    backend: Arc<dyn Backend>,
}

impl Redrives {
    /// The re-drive rules over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// Re-drives a failed row: pending, due at `now`, attempts reset to 0, `created_at` kept
    /// but the age budget counted from `now`. `NotFound` if absent; a row in another state is
    /// reported and left alone.
    pub async fn redrive(
        &self,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Redrive, StoreError> {
        redrive(&*self.backend, id, now).await
    }

    /// Re-drives every `failed` row matching `filter` as [`Redrives::redrive`] does one, a
    /// bounded batch per transaction, each row at most once. With `key`, a repeat of the same
    /// request (same key and request hash) re-drives nothing and answers the first one's
    /// count; the same key with another request is refused.
    pub async fn redrive_failed(
        &self,
        filter: &FailedFilter,
        key: Option<&IdempotentRequest>,
        now: DateTime<Utc>,
    ) -> Result<BulkRedrive, StoreError> {
        redrive_failed(&*self.backend, filter, key, now).await
    }

    /// Re-drives every `failed` SET row matching `filter` as
    /// [`crate::store::SsfStore::redrive_set`] does one (its `jti` kept), in batches and
    /// under `key` exactly as [`Redrives::redrive_failed`] re-drives deliveries; the keys of
    /// both share one namespace.
    pub async fn redrive_failed_sets(
        &self,
        filter: &FailedSetFilter,
        key: Option<&IdempotentRequest>,
        now: DateTime<Utc>,
    ) -> Result<BulkRedrive, StoreError> {
        redrive_failed(&*self.backend, filter, key, now).await
    }
}

/// A dead-letter queue a bulk re-drive walks, named by the filter that selects its rows:
/// which failed rows a batch takes, how it puts them back, and whom that wakes.
#[async_trait]
trait DeadLetters: Sync {
    /// A row id.
    type Id: ToString + Send + Sync;

    /// Up to `limit` failed rows matching the filter whose id sorts after `after`, in id
    /// order, locked until commit.
    async fn take(
        &self,
        tx: &mut (dyn Tx + '_),
        after: &str,
        limit: usize,
    ) -> Result<Vec<Self::Id>, StoreError>;

    /// Puts `ids` back in the queue, due at `now` with a fresh budget, and announces them to
    /// other nodes at commit when there are any.
    async fn requeue(
        &self,
        tx: &mut (dyn Tx + '_),
        ids: &[Self::Id],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Wakes this process's workers of the queue, after a commit that requeued rows.
    fn wake(&self, backend: &dyn Backend);
}

#[async_trait]
impl DeadLetters for FailedFilter {
    type Id = DeliveryId;

    async fn take(
        &self,
        tx: &mut (dyn Tx + '_),
        after: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        tx.failed_rows(self, after, limit).await
    }

    async fn requeue(
        &self,
        tx: &mut (dyn Tx + '_),
        ids: &[DeliveryId],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        requeue_deliveries(tx, ids, now).await
    }

    fn wake(&self, backend: &dyn Backend) {
        backend.wake_workers();
    }
}

#[async_trait]
impl DeadLetters for FailedSetFilter {
    type Id = String;

    async fn take(
        &self,
        tx: &mut (dyn Tx + '_),
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        tx.failed_sets(self, after, limit).await
    }

    async fn requeue(
        &self,
        tx: &mut (dyn Tx + '_),
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        tx.requeue_sets(ids, now).await
    }

    fn wake(&self, backend: &dyn Backend) {
        backend.wake_sets();
    }
}

/// Re-drives delivery `id` (see [`Redrives::redrive`]): only a `failed` row goes
/// back in the queue, pending and due at `now` with a fresh attempt count and age budget, and
/// every node's workers are told. `NotFound` if absent; any other state is reported and left
/// alone.
async fn redrive(
    backend: &dyn Backend,
    id: &DeliveryId,
    now: DateTime<Utc>,
) -> Result<Redrive, StoreError> {
    let mut tx = backend.begin(Lane::Interactive).await?;
    let state = tx.delivery_state(id).await?.ok_or(StoreError::NotFound)?;
    if state != DeliveryState::Failed {
        return Ok(Redrive::NotFailed(state));
    }
    requeue_deliveries(&mut *tx, std::slice::from_ref(id), now).await?;
    tx.commit().await?;
    backend.wake_workers();
    Ok(Redrive::Requeued)
}

/// Re-drives every `failed` row of the queue `filter` selects from (see
/// [`Redrives::redrive_failed`]) exactly as a single re-drive does one, [`REDRIVE_BATCH`] rows
/// per transaction, walking the rows by id so that a row failing again meanwhile is not taken
/// twice. With `key`, a repeat of the same request answers the first one's count and
/// re-drives nothing; each batch records its count under the key in its own transaction,
/// which also shows the request is alive. A request that recorded nothing for
/// [`KEY_TAKEOVER_AFTER`] (its process died) is taken over by a repeat, which goes on from its
/// count.
async fn redrive_failed<Q: DeadLetters>(
    backend: &dyn Backend,
    filter: &Q,
    key: Option<&IdempotentRequest>,
    now: DateTime<Utc>,
) -> Result<BulkRedrive, StoreError> {
    let now = super::millis(now);
    let mut total = 0_u64;
    if let Some(key) = key {
        match claim_key(backend, key, now).await? {
            Claim::Run { from } => total = from,
            Claim::Answer(answer) => return Ok(answer),
        }
    }
    let started = std::time::Instant::now();
    let mut after = String::new();
    loop {
        let mut tx = backend.begin(Lane::Bulk).await?;
        let ids = filter.take(&mut *tx, &after, REDRIVE_BATCH).await?;
        let last_batch = ids.len() < REDRIVE_BATCH;
        total += ids.len() as u64;
        if let Some(key) = key {
            let alive = now + Duration::from_std(started.elapsed()).unwrap_or(Duration::zero());
            tx.update_key(&key.key, total, last_batch, alive).await?;
        }
        filter.requeue(&mut *tx, &ids, now).await?;
        tx.commit().await?;
        if !ids.is_empty() {
            filter.wake(backend);
        }
        match ids.last() {
            Some(id) if !last_batch => after = id.to_string(),
            _ => return Ok(BulkRedrive::Redriven(total)),
        }
    }
}

/// Puts delivery rows `ids` (failed rows, locked by `tx`) back in the queue, and tells other
/// nodes at commit when there are any.
async fn requeue_deliveries(
    tx: &mut (dyn Tx + '_),
    ids: &[DeliveryId],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now = super::millis(now);
    for id in ids {
        tx.requeue(id, now).await?;
    }
    if !ids.is_empty() {
        tx.announce().await?;
    }
    Ok(())
}

/// What a request holding an idempotency key does.
enum Claim {
    /// Runs, its count starting at `from` (0, or what the request it takes over re-drove).
    Run { from: u64 },
    /// Answers at once: the replay, or the refusal of the key.
    Answer(BulkRedrive),
}

/// Takes `key` for this request, or answers for it: it runs when the key is new (or its last
/// use expired), or when the same request under it stopped recording progress
/// [`KEY_TAKEOVER_AFTER`] ago; otherwise the replay, or the refusal of a key that belongs to
/// another request or to one still running.
async fn claim_key(
    backend: &dyn Backend,
    key: &IdempotentRequest,
    now: DateTime<Utc>,
) -> Result<Claim, StoreError> {
    let mut tx = backend.begin(Lane::Interactive).await?;
    if tx.insert_key(key, now).await? {
        tx.commit().await?;
        return Ok(Claim::Run { from: 0 });
    }
    let stored = tx.lock_key(&key.key).await?.ok_or(StoreError::NotFound)?;
    if stored.request_hash != key.request_hash {
        return Ok(Claim::Answer(BulkRedrive::KeyReused));
    }
    if stored.done {
        return Ok(Claim::Answer(BulkRedrive::Replayed(stored.redriven)));
    }
    if stored.updated_at + KEY_TAKEOVER_AFTER > now {
        return Ok(Claim::Answer(BulkRedrive::KeyInProgress));
    }
    tx.update_key(&key.key, stored.redriven, false, now).await?;
    tx.commit().await?;
    Ok(Claim::Run {
        from: stored.redriven,
    })
}
