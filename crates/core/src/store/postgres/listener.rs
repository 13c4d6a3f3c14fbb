//! The wake-up listener: `LISTEN logoutd_outbox` and `LISTEN logoutd_ssf` on a connection of
//! the store's pool, turning other nodes' (and this node's) `NOTIFY` into a signal on the
//! outbox's wake-up `Notify`, or on the SET rows' one.
//!
//! A wake-up is only a hint: workers still claim by `next_attempt_at`, so a spurious signal
//! costs one empty claim and a missed one at most a sleep until the next due time. After every
//! (re)connection the listener signals once, since a notification may have been missed while
//! it was not listening.

use super::{CHANNEL, SSF_CHANNEL, wake};
use sqlx::postgres::{PgListener, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Pause before reconnecting after an error.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between reconnection attempts while the database stays away.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(10);

/// Listens until the task is aborted (the store's `Drop` does that), reconnecting with a
/// growing backoff while the database is unreachable.
pub(super) async fn run(pool: PgPool, wakeup: Arc<Notify>, sets: Arc<Notify>) {
    let mut backoff = RECONNECT_BACKOFF;
    loop {
        match subscribe(&pool).await {
            Ok(mut listener) => {
                backoff = RECONNECT_BACKOFF;
                wake(&wakeup);
                wake(&sets);
                forward(&mut listener, &wakeup, &sets).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "outbox listener cannot connect; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
    }
}

/// A listener subscribed to the outbox and SET channels.
async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, SSF_CHANNEL]).await?;
    Ok(listener)
}

/// Signals `wakeup` (or `sets`, for the SET channel) for every notification until the
/// listener fails.
async fn forward(listener: &mut PgListener, wakeup: &Notify, sets: &Notify) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) if n.channel() == SSF_CHANNEL => wake(sets),
            Ok(Some(_)) => wake(wakeup),
            // The connection was lost and re-established: a notification may have been missed.
            Ok(None) => {
                wake(wakeup);
                wake(sets);
            }
            Err(err) => {
                tracing::warn!(error = %err, "outbox listener lost its connection; reconnecting");
                return;
            }
        }
    }
}
