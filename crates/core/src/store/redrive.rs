//! The re-drive of dead letters, one or in bulk, written once over a [`Backend`]'s
//! primitives.

use super::StoreError;
use super::backend::{Backend, Lane, Tx};
use crate::ids::DeliveryId;
use crate::outbox::{BulkRedrive, DeliveryState, FailedFilter, IdempotentRequest, Redrive};
use chrono::{DateTime, Utc};

/// Most rows one transaction of a bulk re-drive takes.
pub(crate) const REDRIVE_BATCH: usize = 500;

/// Re-drives delivery `id` (see [`super::Deliveries::redrive`]): only a `failed` row goes
/// back in the queue, pending and due at `now` with a fresh attempt count and age budget, and
/// every node's workers are told. `NotFound` if absent; any other state is reported and left
/// alone.
pub(super) async fn redrive(
    backend: &dyn Backend,
    id: &DeliveryId,
    now: DateTime<Utc>,
) -> Result<Redrive, StoreError> {
    let mut tx = backend.begin(Lane::Interactive).await?;
    let state = tx.delivery_state(id).await?.ok_or(StoreError::NotFound)?;
    if state != DeliveryState::Failed {
        return Ok(Redrive::NotFailed(state));
    }
    requeue_all(tx, std::slice::from_ref(id), now).await?;
    backend.wake_workers();
    Ok(Redrive::Requeued)
}

/// Re-drives every `failed` row matching `filter` (see [`super::Deliveries::redrive_failed`])
/// exactly as [`redrive`] does one, [`REDRIVE_BATCH`] rows per transaction, walking the rows
/// by id so that a row failing again meanwhile is not taken twice. With `key`, a repeat of the
/// same request answers the first one's count and re-drives nothing; each batch records its
/// count under the key in its own transaction.
pub(super) async fn redrive_failed(
    backend: &dyn Backend,
    filter: &FailedFilter,
    key: Option<&IdempotentRequest>,
    now: DateTime<Utc>,
) -> Result<BulkRedrive, StoreError> {
    let now = super::millis(now);
    if let Some(key) = key
        && let Some(answer) = claim_key(backend, key, now).await?
    {
        return Ok(answer);
    }
    let mut total = 0_u64;
    let mut after = String::new();
    loop {
        let mut tx = backend.begin(Lane::Bulk).await?;
        let ids = tx.failed_rows(filter, &after, REDRIVE_BATCH).await?;
        let last_batch = ids.len() < REDRIVE_BATCH;
        total += ids.len() as u64;
        if let Some(key) = key {
            tx.update_key(&key.key, total, last_batch, now).await?;
        }
        requeue_all(tx, &ids, now).await?;
        if !ids.is_empty() {
            backend.wake_workers();
        }
        match ids.last() {
            Some(id) if !last_batch => after = id.to_string(),
            _ => return Ok(BulkRedrive::Redriven(total)),
        }
    }
}

/// Puts `ids` (failed rows, locked by `tx`) back in the queue, tells other nodes when there
/// are any, and commits.
async fn requeue_all(
    mut tx: Box<dyn Tx + '_>,
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
    tx.commit().await
}

/// Takes `key` for this request, or answers for it: `None` when the key is new (or its last
/// use expired) and the request runs; otherwise the replay, or the refusal of a key that
/// belongs to another request or to one still running.
async fn claim_key(
    backend: &dyn Backend,
    key: &IdempotentRequest,
    now: DateTime<Utc>,
) -> Result<Option<BulkRedrive>, StoreError> {
    let mut tx = backend.begin(Lane::Interactive).await?;
    if tx.insert_key(key, now).await? {
        tx.commit().await?;
        return Ok(None);
    }
    let stored = tx.lock_key(&key.key).await?.ok_or(StoreError::NotFound)?;
    drop(tx);
    Ok(Some(if stored.request_hash != key.request_hash {
        BulkRedrive::KeyReused
    } else if stored.done {
        BulkRedrive::Replayed(stored.redriven)
    } else {
        BulkRedrive::KeyInProgress
    }))
}
