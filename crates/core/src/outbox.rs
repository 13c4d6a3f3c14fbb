//! The outbox: one row per (ended session, client) intent, its states, leases and history.
//!
//! A row never holds a JWT. Every attempt mints a fresh token from the row's intent.

use crate::clients::RelyingParty;
use crate::ids::{ClientId, DeliveryId, EventId, Jti, LeaseId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::SessionMetadata;
use crate::retry::Decision;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;
use utoipa::ToSchema;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for `next_attempt_at`.
    Pending,
    /// Claimed by a worker under a lease.
    InFlight,
    /// The RP answered 200 or 204.
    Delivered,
    /// Terminal failure: the dead letter, re-drivable by an operator.
    Failed,
    /// The client was deleted or unsubscribed before delivery.
    Cancelled,
}

impl DeliveryState {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Pending,
            Self::InFlight,
            Self::Delivered,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown delivery state {s:?}"))
    }
}

/// What one delivery covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryScope {
    /// One session: the token carries `sub`, `sid` and, when the client opted in, the
    /// session's metadata.
    #[default]
    Session,
    /// Every session of the user that a user-wide end ended and the client took part in (a
    /// client registered with `backchannel_logout_user_wide: per_user`): the token carries
    /// `sub` only.
    User,
}

impl DeliveryScope {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::User => "user",
        }
    }
}

impl FromStr for DeliveryScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Session, Self::User]
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown delivery scope {s:?}"))
    }
}

/// A delivery as the status API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Row id.
    pub id: DeliveryId,
    /// The termination event.
    pub event_id: EventId,
    /// The ended session; for a `user` delivery, the first of the sessions it covers (in id
    /// order).
    pub session_id: SessionId,
    /// The client's own `sid` in that session, when it joined with one: the token's `sid`
    /// instead of `session_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    /// `session` (one session; its token carries `sid`) or `user` (every session of the user
    /// that the end ended and the client took part in; its token carries `sub` only).
    #[serde(default)]
    #[schema(required = true)]
    pub scope: DeliveryScope,
    /// How many ended sessions the delivery covers: 1 for a `session` delivery.
    #[serde(default = "one")]
    #[schema(required = true, minimum = 1)]
    pub sessions: u32,
    /// Its user.
    pub user_id: UserId,
    /// The RP to tell.
    pub client_id: ClientId,
    /// Why the session ended.
    pub initiator: Initiator,
    /// Current state.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending rows) or the lease ends (in-flight rows).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// Transport error or the RP's `error`/`error_description` from the last attempt.
    pub last_error: Option<String>,
    /// When the row was written (the session end).
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

fn one() -> u32 {
    1
}

impl Delivery {
    /// The `sid` its logout tokens carry: the client's own, else the session id; none for a
    /// `user` delivery, whose tokens name the user only.
    pub fn token_sid(&self) -> Option<&SessionId> {
        match self.scope {
            DeliveryScope::Session => Some(self.sid.as_ref().unwrap_or(&self.session_id)),
            DeliveryScope::User => None,
        }
    }
}

/// One attempt in a delivery's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptRecord {
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Transport error or the RP's error, when there was one.
    pub error: Option<String>,
    /// Wall time of the attempt, in milliseconds.
    pub latency_ms: u64,
    /// The `jti` of the token sent.
    pub jti: Jti,
}

/// A delivery with its attempt history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDetail {
    /// The row.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Every attempt, oldest first.
    pub attempt_history: Vec<AttemptRecord>,
}

/// The intent a termination writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Row id.
    pub id: DeliveryId,
    /// The termination event.
    pub event_id: EventId,
    /// The ended session; for a `user` row, the first it covers.
    pub session_id: SessionId,
    /// The client's own `sid` in that session, if it joined with one.
    pub sid: Option<SessionId>,
    /// Its user.
    pub user_id: UserId,
    /// The RP to tell.
    pub client_id: ClientId,
    /// Why the session ended.
    pub initiator: Initiator,
    /// Metadata snapshot at termination (empty for a `user` row).
    pub session_metadata: SessionMetadata,
    /// One session, or every session of the user the end ended.
    pub scope: DeliveryScope,
    /// How many ended sessions this write covers. A `user` row that an earlier step of the
    /// same user-wide end wrote has the same id, and this many sessions are added to it.
    pub sessions: u32,
    /// The termination time; first attempt is due at once.
    pub created_at: DateTime<Utc>,
}

/// A row a worker has claimed, with what it needs to mint and send.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The row (state `in_flight`).
    pub delivery: Delivery,
    /// The claim; results are recorded only while it is current.
    pub lease: LeaseId,
    /// Metadata snapshot at termination.
    pub session_metadata: SessionMetadata,
    /// The client's current registration, shared by the rows of one claim.
    pub client: Arc<RelyingParty>,
    /// Start of the row's age budget: `created_at`, or the time of the last operator re-drive.
    pub budget_started_at: DateTime<Utc>,
    /// The row was in flight under an expired lease when claimed (a lease reclaim).
    pub reclaimed: bool,
}

/// A worker's result for one claimed row.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// The row.
    pub id: DeliveryId,
    /// The claim it was made under.
    pub lease: LeaseId,
    /// What happened.
    pub attempt: AttemptRecord,
    /// What happens next.
    pub decision: Decision,
}

/// Where one delivery of an end stands: what a request that waits for its RPs reads of each
/// row, again and again, so only the columns it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryProgress {
    /// Row id.
    pub id: DeliveryId,
    /// The RP to tell.
    pub client_id: ClientId,
    /// Current state.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
}

impl DeliveryProgress {
    /// Whether the row has an answer to give: a final state (delivered, failed, cancelled) or
    /// the outcome of at least one attempt.
    pub fn settled(&self) -> bool {
        self.attempts >= 1
            || matches!(
                self.state,
                DeliveryState::Delivered | DeliveryState::Failed | DeliveryState::Cancelled
            )
    }
}

/// Filters for the status API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only rows in this state.
    pub state: Option<DeliveryState>,
    /// Only rows for this client.
    pub client_id: Option<ClientId>,
    /// Only rows for this session.
    pub session_id: Option<SessionId>,
    /// Only rows for this user.
    pub user_id: Option<UserId>,
    /// Only rows of ends with this initiator.
    pub initiator: Option<Initiator>,
    /// Only rows written (the session end) at or after this time.
    pub created_since: Option<DateTime<Utc>>,
    /// Only rows written before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// Counts of live and dead-letter rows, for the metrics gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Rows in state `pending`.
    pub pending: u64,
    /// Rows in state `in_flight`.
    pub in_flight: u64,
    /// Rows in state `failed` (the dead letter).
    pub failed: u64,
    /// The earliest `next_attempt_at` at or before `now` of a pending or in-flight row: how
    /// long the oldest due row has waited.
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// Rows per state, for the operator's overview.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct StateCounts {
    /// Rows in state `pending`.
    pub pending: u64,
    /// Rows in state `in_flight`.
    pub in_flight: u64,
    /// Rows in state `delivered` (until retention prunes them).
    pub delivered: u64,
    /// Rows in state `failed` (the dead letter).
    pub failed: u64,
    /// Rows in state `cancelled` (until retention prunes them).
    pub cancelled: u64,
}

impl StateCounts {
    /// Adds `n` rows in `state`.
    pub fn add(&mut self, state: DeliveryState, n: u64) {
        let slot = match state {
            DeliveryState::Pending => &mut self.pending,
            DeliveryState::InFlight => &mut self.in_flight,
            DeliveryState::Delivered => &mut self.delivered,
            DeliveryState::Failed => &mut self.failed,
            DeliveryState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }
}

/// Rows that became `delivered` or `failed` (by their last change) in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct MinuteCounts {
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    /// Rows delivered in it.
    pub delivered: u64,
    /// Rows that failed (went to the dead letter) in it.
    pub failed: u64,
}

/// Width of a bucket of the overview's outcome series, in milliseconds: ten seconds, so that
/// an hour is 360 buckets and a minute is six.
pub const STATS_BUCKET_MS: i64 = 10_000;

/// Rows that became `delivered` or `failed` (by their last change) in one bucket of
/// [`STATS_BUCKET_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct BucketCounts {
    /// The start of the bucket.
    pub start: DateTime<Utc>,
    /// Rows delivered in it.
    pub delivered: u64,
    /// Rows that failed (went to the dead letter) in it.
    pub failed: u64,
}

/// The outbox at a glance: rows per state, the oldest due row, and recent outcomes per
/// bucket of [`STATS_BUCKET_MS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Rows per state.
    pub counts: StateCounts,
    /// The earliest `next_attempt_at` at or before `now` of a pending or in-flight row.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Per bucket since the requested start, in order, the buckets with an outcome only.
    pub buckets: Vec<BucketCounts>,
}

/// The minute `t` falls in.
pub(crate) fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    start_of(t, 60_000)
}

/// The bucket of [`STATS_BUCKET_MS`] `t` falls in.
pub(crate) fn bucket_of(t: DateTime<Utc>) -> DateTime<Utc> {
    start_of(t, STATS_BUCKET_MS)
}

/// The start of the `width_ms` period (counted from the epoch) `t` falls in.
fn start_of(t: DateTime<Utc>, width_ms: i64) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(width_ms)).unwrap_or(t)
}

/// Result of an operator re-drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redrive {
    /// The row is pending again, due now, with a fresh attempt budget.
    Requeued,
    /// The row is not in the `failed` state.
    NotFailed(DeliveryState),
}

/// Which dead letters a bulk re-drive takes: `failed` rows matching every filter given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedFilter {
    /// Only rows for this client.
    pub client_id: Option<ClientId>,
    /// Only rows of sessions ended by this initiator.
    pub initiator: Option<Initiator>,
    /// Only rows that failed (last changed) at or after this time.
    pub failed_since: Option<DateTime<Utc>>,
    /// Only rows that failed (last changed) before this time.
    pub failed_before: Option<DateTime<Utc>>,
    /// Only these rows (the API sends at most [`MAX_REDRIVE_IDS`], sorted and without
    /// repeats); ids of rows that are absent or not `failed` are passed over.
    pub ids: Option<Vec<DeliveryId>>,
}

/// Most delivery ids one bulk re-drive by id names.
pub const MAX_REDRIVE_IDS: usize = 100;

/// An idempotency key as a bulk re-drive stores it: the key, a hash of the request it came
/// with, and when the store may forget it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    /// The client's key.
    pub key: String,
    /// A hash of the request (its operation and filters), to refuse the key's reuse for
    /// another request.
    pub request_hash: String,
    /// When the key expires; retention prunes it after that.
    pub expires_at: DateTime<Utc>,
}

/// What the store holds for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The hash of the request that first used the key.
    pub request_hash: String,
    /// Rows that request has re-driven so far.
    pub redriven: u64,
    /// Whether that request finished.
    pub done: bool,
    /// When that request last recorded its progress (it does after each batch).
    pub updated_at: DateTime<Utc>,
}

/// Result of a bulk re-drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkRedrive {
    /// This many rows are pending again, due now, with a fresh attempt budget.
    Redriven(u64),
    /// The key was used before for the same request, which re-drove this many; nothing more
    /// was re-driven.
    Replayed(u64),
    /// The key was used before for a different request; nothing was re-driven.
    KeyReused,
    /// The key's first request has not finished; nothing was re-driven.
    KeyInProgress,
}
