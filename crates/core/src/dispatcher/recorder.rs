//! Writes attempt results to the outbox in batches, so a busy dispatcher makes one database
//! round trip per batch rather than per delivery.

use crate::outbox::AttemptResult;
use crate::retry::Decision;
use crate::store::Queue;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::mpsc::Receiver;

/// Most results written in one call.
pub(super) const BATCH: usize = 64;
/// Results queued for the recorder before attempts wait to hand theirs over: room for what
/// arrives during one linger at the fastest delivery rates.
pub(super) const CHANNEL: usize = BATCH * 8;
/// How long a short batch waits for more results before it is written. Every write
/// transaction costs the pages it touches, however few rows it carries; a crash meanwhile only
/// means the rows are delivered again when their leases expire.
const LINGER: Duration = Duration::from_millis(20);
/// Attempts to write one batch before giving up on it (its leases then expire and the rows
/// are delivered again: a duplicate, never a loss).
const WRITE_TRIES: u32 = 8;

/// Drains `results` until every sender is gone, waking every waiter of `recorded` after each
/// batch is written (the API's requests that wait for their RPs, see `api::wait`).
///
/// A short batch lingers with a timer rather than by waiting on the channel: a receiver
/// waiting on the channel is woken by every result sent, and each wake-up can cost a thread
/// hand-off on a core that is busy signing. Results that arrive meanwhile are taken without
/// waiting once the timer fires; a backlog is written in full batches with no lingering.
pub(super) async fn run(
    outbox: Arc<dyn Queue>,
    mut results: Receiver<AttemptResult>,
    recorded: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while results.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match results.try_recv() {
                    Ok(result) => batch.push(result),
                    Err(_) => break,
                }
            }
        }
        write(outbox.as_ref(), &batch).await;
        recorded.notify_waiters();
        if batch
            .iter()
            .any(|r| matches!(r.decision, Decision::RetryAt(_)))
        {
            outbox.wakeup().notify_one();
        }
        batch.clear();
    }
}

async fn write(outbox: &dyn Queue, batch: &[AttemptResult]) {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=WRITE_TRIES {
        match outbox.record(batch).await {
            Ok(_) => return,
            Err(err) => {
                tracing::error!(
                    error = %crate::error::chain(&err),
                    attempt,
                    rows = batch.len(),
                    "recording delivery results failed"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
    tracing::error!(
        rows = batch.len(),
        "giving up recording results; the rows will be retried after their lease"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeliveryId, Jti, LeaseId};
    use crate::outbox::AttemptRecord;
    use crate::store::memory::MemoryStore;

    /// A request waiting for its deliveries is woken once the batch holding their results
    /// is written.
    #[tokio::test(start_paused = true)]
    async fn a_written_batch_wakes_the_waiters_of_recorded() {
        let recorded = Arc::new(Notify::new());
        let waiter = recorded.notified();
        tokio::pin!(waiter);
        waiter.as_mut().enable();
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
        let outbox: Arc<dyn Queue> = Arc::new(MemoryStore::new());
        let recorder = tokio::spawn(run(outbox, rx, recorded.clone()));
        let result = AttemptResult {
            id: DeliveryId::from("d1"),
            lease: LeaseId::from("l1"),
            attempt: AttemptRecord {
                at: chrono::DateTime::UNIX_EPOCH,
                status: Some(204),
                error: None,
                latency_ms: 1,
                jti: Jti::generate(),
            },
            decision: Decision::Delivered,
        };
        tx.send(result).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the waiter is woken after the batch is written");
        drop(tx);
        recorder.await.unwrap();
    }
}
