//! The SSF transmitter in the store: receivers, their streams and the SET outbox.
//!
//! SET rows of a session end are written by the termination walk in the end's own
//! transaction (the `Tx` primitives `fanout_streams` and `insert_sets`), so a crash loses neither
//! the end nor its SETs. Everything else is one atomic method of [`SsfStore`].
//!
//! The rules every backend keeps:
//! - Rows are keyed by (receiver, stream): a poll, an ack or a re-drive never touches another
//!   receiver's rows.
//! - A paused stream's rows stay pending and are neither pushed nor handed to a poll, except
//!   `stream_updated` rows, which skip the status check. Enabling a paused stream makes its
//!   held rows due at once, in creation order, with a fresh age budget.
//! - Disabling or deleting a stream cancels its pending and in-flight rows (a
//!   `stream_updated` row written in the same call survives a disable).
//! - The `jti` of a row never changes, across retries, leases and re-drives.

use super::{Page, StoreError};
use crate::ids::LeaseId;
use crate::outbox::OutboxStats;
use crate::ssf::{
    ClaimedSet, NewSet, PollBatch, PollRequest, PushRoom, SetFilter, SetRedrive, SetResult,
    SsfReceiver, SsfStream, StoredSet, StreamStatus, VerifyOutcome,
};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

/// Receivers, streams and the SET outbox. Every method is atomic.
#[async_trait]
pub trait SsfStore: Send + Sync {
    /// Registers a receiver; `false`, writing nothing, when its id or `aud` exists.
    async fn insert_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError>;

    /// One receiver.
    async fn get_receiver(&self, id: &str) -> Result<Option<SsfReceiver>, StoreError>;

    /// The receiver whose token hashes to `token_hash` (the SSF routes' authentication).
    async fn receiver_by_token(&self, token_hash: &str) -> Result<Option<SsfReceiver>, StoreError>;

    /// Receivers ordered by id, after cursor `from`, at most `take` + 1.
    async fn receivers(
        &self,
        from: Option<&str>,
        take: usize,
    ) -> Result<Vec<SsfReceiver>, StoreError>;

    /// Replaces a receiver's name, client, scope, metadata opt-in and token hash (its id,
    /// `aud` and `created_at` stay); `false` when it does not exist.
    async fn update_receiver(&self, receiver: &SsfReceiver) -> Result<bool, StoreError>;

    /// Deletes a receiver and its stream, cancelling the stream's rows; `false` when it does
    /// not exist.
    async fn delete_receiver(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Creates a stream; `false`, writing nothing, when its receiver already has one (the
    /// API's 409); [`StoreError::NotFound`] when the receiver does not exist.
    async fn insert_stream(&self, stream: &SsfStream) -> Result<bool, StoreError>;

    /// One stream, whoever's it is.
    async fn get_stream(&self, stream_id: &str) -> Result<Option<SsfStream>, StoreError>;

    /// The receiver's streams (none or one), oldest first.
    async fn receiver_streams(&self, receiver_id: &str) -> Result<Vec<SsfStream>, StoreError>;

    /// Every stream, ordered by stream_id, after cursor `from`, at most `take` + 1 (the
    /// operator's view).
    async fn streams(&self, from: Option<&str>, take: usize) -> Result<Vec<SsfStream>, StoreError>;

    /// Replaces what a receiver may change of its stream (`events_requested`, `delivery`,
    /// `description`, `excluded_subjects`) and `updated_at`; `false` when it does not exist.
    /// Its status, id and receiver stay.
    async fn update_stream(&self, stream: &SsfStream) -> Result<bool, StoreError>;

    /// Deletes a stream and cancels its pending and in-flight rows; `false` when it does not
    /// exist.
    async fn delete_stream(&self, stream_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Sets the stream's status and reason under its row lock, and in the same transaction:
    /// writes `event` (a `stream_updated` row) when given; cancels the pending and in-flight
    /// rows other than `event` when the new status is `disabled`; makes held rows due at
    /// `now` with a fresh age budget when a paused stream is enabled. Returns the stream as
    /// it now stands, `None` when it does not exist.
    async fn set_stream_status(
        &self,
        stream_id: &str,
        status: StreamStatus,
        reason: Option<&str>,
        event: Option<&NewSet>,
        now: DateTime<Utc>,
    ) -> Result<Option<SsfStream>, StoreError>;

    /// A verification request of `receiver_id` for `stream_id`, decided under the stream's
    /// row lock so the minimum interval holds across nodes: when the stream exists for that
    /// receiver, is enabled and its `last_verification_at` is `min_interval` or more before
    /// `now` (or unset), writes `event` and sets `last_verification_at` to `now`.
    async fn request_verification(
        &self,
        receiver_id: &str,
        stream_id: &str,
        event: &NewSet,
        min_interval: Duration,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError>;

    /// Claims up to `limit` due push rows (pending with `next_attempt_at <= now`, or in
    /// flight with an expired lease) of enabled push streams (or `stream_updated` rows of any
    /// push stream), oldest first and at most [`PushRoom::of`] of each stream (its oldest),
    /// each under a new lease ending at `now + lease`; on PostgreSQL a row another node is
    /// claiming is skipped.
    async fn claim_push(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
        room: &PushRoom,
    ) -> Result<Vec<ClaimedSet>, StoreError>;

    /// Records one push attempt's result if its lease is current; `false` when it is not.
    async fn record_set(&self, result: &SetResult) -> Result<bool, StoreError>;

    /// Gives claimed push rows back, due at `now`, without counting an attempt (shutdown).
    async fn release_sets(
        &self,
        leases: &[(String, LeaseId)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// One poll, in one transaction: applies `ack` then `set_errs` to the receiver's rows of
    /// the stream, then, when the stream is enabled (or for its `stream_updated` rows), hands
    /// out up to `max_events` rows that are pending, or in flight with an expired lease,
    /// oldest first, each in flight until `now + lease` and its attempts counted.
    async fn poll(&self, request: &PollRequest) -> Result<PollBatch, StoreError>;

    /// Rows matching `filter`, ordered by id, after cursor `from`.
    async fn list_sets(
        &self,
        filter: &SetFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<StoredSet>, StoreError>;

    /// One row.
    async fn get_set(&self, id: &str) -> Result<Option<StoredSet>, StoreError>;

    /// Puts a `failed` row back in the queue: pending, due at `now`, attempts 0, its age
    /// budget counted from `now`, its `jti` kept. Any other row is left alone.
    async fn redrive_set(&self, id: &str, now: DateTime<Utc>) -> Result<SetRedrive, StoreError>;

    /// The SET gauges, read at a scrape in one indexed query: rows pending, in flight and
    /// failed (the dead letter), and the earliest `next_attempt_at` at or before `now` of a
    /// pending or in-flight row (how long the oldest due SET has waited).
    async fn set_stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError>;

    /// Deletes up to `limit` `delivered`, `failed` and `cancelled` rows whose last change
    /// was before `before`. Returns how many.
    async fn prune_sets(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}

/// What a verification request of an existing stream of the receiver decides at `now`: the
/// rule every backend applies under the stream's row lock.
pub(in crate::store) fn verification(
    stream: &SsfStream,
    min_interval: Duration,
    now: DateTime<Utc>,
) -> VerifyOutcome {
    if stream.status != StreamStatus::Enabled {
        return VerifyOutcome::NotEnabled;
    }
    match stream.last_verification_at.map(|at| at + min_interval) {
        Some(open) if open > now => {
            let wait_ms = (open - now).num_milliseconds();
            let secs = wait_ms.saturating_add(999) / 1000;
            VerifyOutcome::TooSoon {
                retry_after_secs: u64::try_from(secs).unwrap_or(1).max(1),
            }
        }
        _ => VerifyOutcome::Accepted,
    }
}
