//! The re-drive of a dead letter, written once over a [`Backend`]'s primitives.

use super::StoreError;
use super::backend::{Backend, Lane};
use crate::ids::DeliveryId;
use crate::outbox::{DeliveryState, Redrive};
use chrono::{DateTime, Utc};

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
    tx.requeue(id, super::millis(now)).await?;
    tx.announce().await?;
    tx.commit().await?;
    backend.wake_workers();
    Ok(Redrive::Requeued)
}
