//! The stored rows both SQL databases return, and their conversion to the domain types.
//! `J` is how the database returns a JSON column (see [`super::Dialect::Json`]).

use super::{StoreError, StoredJson, from_ms, opt_from_ms, parse, unsigned};
use crate::clients::RelyingParty;
use crate::health::PausedBy;
use crate::ids::LeaseId;
use crate::metadata::SessionMetadata;
use crate::outbox::{
    AttemptRecord, BucketCounts, ClaimedDelivery, Delivery, DeliveryDetail, DeliveryProgress,
    DeliveryState, DeliveryStats, OutboxStats, STATS_BUCKET_MS,
};
use crate::session::{Device, Session, SessionClient};
use std::sync::Arc;

/// The columns of [`SessionRow`], for `concat!`.
macro_rules! session_columns {
    () => {
        "id, user_id, created_at, updated_at, authenticated_at, idle_expires_at, expires_at, \
         last_interacted_at, device, metadata, ended_at, end_initiator"
    };
}
pub(in crate::store) use session_columns;

/// The columns of [`DeliveryRow`], for `concat!`.
macro_rules! delivery_columns {
    () => {
        "id, event_id, session_id, user_id, client_id, initiator, state, attempts, \
         next_attempt_at, last_status, last_error, created_at, delivered_at, metadata, \
         budget_started_at, sid, scope, sessions_covered"
    };
}
pub(in crate::store) use delivery_columns;

/// The columns of [`ClientRow`], for `concat!`.
macro_rules! client_columns {
    () => {
        "settings, paused, created_at, updated_at, paused_by, paused_at"
    };
}
pub(in crate::store) use client_columns;

/// A row of `sessions` (the columns of [`session_columns`]), read as a result row or as a
/// JSON array of those columns in that order.
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(in crate::store) struct SessionRow<J> {
    pub id: String,
    user_id: String,
    created_at: i64,
    updated_at: i64,
    authenticated_at: Option<i64>,
    idle_expires_at: Option<i64>,
    expires_at: Option<i64>,
    last_interacted_at: Option<i64>,
    device: J,
    metadata: J,
    ended_at: Option<i64>,
    end_initiator: Option<String>,
}

impl<J: StoredJson> SessionRow<J> {
    /// The session, with its clients in joining order.
    pub(crate) fn into_session(self, clients: Vec<SessionClient>) -> Result<Session, StoreError> {
        Ok(Session {
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
            authenticated_at: opt_from_ms(self.authenticated_at)?,
            idle_expires_at: opt_from_ms(self.idle_expires_at)?,
            expires_at: opt_from_ms(self.expires_at)?,
            last_interacted_at: opt_from_ms(self.last_interacted_at)?,
            device: self.device.decode::<Device>("device")?,
            session_metadata: self.metadata.metadata("metadata")?,
            ended_at: opt_from_ms(self.ended_at)?,
            end_initiator: self
                .end_initiator
                .map(|i| parse(&i, "end_initiator"))
                .transpose()?,
            id: self.id.into(),
            user_id: self.user_id.into(),
            clients,
        })
    }
}

/// A row of `clients` (the columns of [`client_columns`]).
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ClientRow<J> {
    pub settings: J,
    pub paused: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Absent from the claims' reads, which do not show it.
    #[sqlx(default)]
    pub paused_by: Option<String>,
    #[sqlx(default)]
    pub paused_at: Option<i64>,
}

impl<J: StoredJson> ClientRow<J> {
    /// The registration; the columns win over the copies inside `settings`.
    pub(crate) fn into_client(self) -> Result<RelyingParty, StoreError> {
        let paused_by = self.paused_by.as_deref().and_then(PausedBy::parse);
        Ok(RelyingParty {
            paused: self.paused,
            paused_by: paused_by.filter(|_| self.paused),
            paused_at: opt_from_ms(self.paused_at)?.filter(|_| self.paused),
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
            ..self.settings.decode::<RelyingParty>("client settings")?
        })
    }
}

/// A row of `deliveries` (the columns of [`delivery_columns`]), read as a result row or as a
/// JSON array of those columns in that order.
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(in crate::store) struct DeliveryRow<J> {
    pub id: String,
    event_id: String,
    session_id: String,
    user_id: String,
    pub client_id: String,
    initiator: String,
    pub state: String,
    attempts: i32,
    next_attempt_at: Option<i64>,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
    pub metadata: J,
    budget_started_at: i64,
    sid: Option<String>,
    scope: String,
    sessions_covered: i32,
}

impl<J: StoredJson> DeliveryRow<J> {
    /// The status view of the row, its strings moved rather than copied.
    pub(crate) fn into_delivery(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            initiator: parse(&self.initiator, "initiator")?,
            state: parse(&self.state, "state")?,
            scope: parse(&self.scope, "scope")?,
            sessions: unsigned(self.sessions_covered, "sessions_covered")?,
            attempts: unsigned(self.attempts, "attempts")?,
            next_attempt_at: opt_from_ms(self.next_attempt_at)?,
            last_status: self
                .last_status
                .map(|s| unsigned(s, "last_status"))
                .transpose()?,
            created_at: from_ms(self.created_at)?,
            delivered_at: opt_from_ms(self.delivered_at)?,
            id: self.id.into(),
            event_id: self.event_id.into(),
            session_id: self.session_id.into(),
            sid: self.sid.map(Into::into),
            user_id: self.user_id.into(),
            client_id: self.client_id.into(),
            last_error: self.last_error,
        })
    }

    /// Parses a metadata snapshot as stored.
    pub(crate) fn parse_metadata(stored: &J) -> Result<SessionMetadata, StoreError> {
        stored.metadata("metadata snapshot")
    }

    /// The claim handed to a worker: the row as read, under `lease`, with its client's
    /// registration and the parsed snapshot.
    pub(crate) fn into_claim(
        self,
        client: Arc<RelyingParty>,
        session_metadata: SessionMetadata,
        lease: &LeaseId,
        reclaimed: bool,
    ) -> Result<ClaimedDelivery, StoreError> {
        Ok(ClaimedDelivery {
            budget_started_at: from_ms(self.budget_started_at)?,
            delivery: self.into_delivery()?,
            lease: lease.clone(),
            session_metadata,
            client,
            reclaimed,
        })
    }
}

/// A row as [`DeliveryProgress`] shows it: the few columns a waiting request reads.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ProgressRow {
    id: String,
    client_id: String,
    state: String,
    attempts: i32,
    last_status: Option<i32>,
}

impl ProgressRow {
    /// The progress view of the row.
    pub(crate) fn into_progress(self) -> Result<DeliveryProgress, StoreError> {
        Ok(DeliveryProgress {
            state: parse(&self.state, "state")?,
            attempts: unsigned(self.attempts, "attempts")?,
            last_status: self
                .last_status
                .map(|s| unsigned(s, "last_status"))
                .transpose()?,
            id: self.id.into(),
            client_id: self.client_id.into(),
        })
    }
}

/// Reads the attempt history of one row (bound: its id), oldest first.
pub(in crate::store) const ATTEMPTS: &str = "SELECT at, status, error, latency_ms, jti \
    FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id";

/// A row of `delivery_attempts` (as [`ATTEMPTS`] reads it).
#[derive(sqlx::FromRow)]
pub(in crate::store) struct AttemptRow {
    at: i64,
    status: Option<i32>,
    error: Option<String>,
    latency_ms: i64,
    jti: String,
}

impl AttemptRow {
    /// The history entry.
    pub(crate) fn into_record(self) -> Result<AttemptRecord, StoreError> {
        Ok(AttemptRecord {
            at: from_ms(self.at)?,
            status: self
                .status
                .map(|s| unsigned(s, "attempt status"))
                .transpose()?,
            error: self.error,
            latency_ms: unsigned(self.latency_ms, "latency_ms")?,
            jti: self.jti.into(),
        })
    }
}

/// One row with its attempt history.
pub(in crate::store) fn detail<J: StoredJson>(
    row: DeliveryRow<J>,
    attempts: Vec<AttemptRow>,
) -> Result<DeliveryDetail, StoreError> {
    Ok(DeliveryDetail {
        delivery: row.into_delivery()?,
        attempt_history: attempts
            .into_iter()
            .map(AttemptRow::into_record)
            .collect::<Result<_, _>>()?,
    })
}

/// What the statistics statements return: the pending, in-flight and failed counts, and the
/// oldest due time.
pub(in crate::store) type StatsRow = (i64, i64, i64, Option<i64>);

/// The gauges' counts from a [`StatsRow`].
pub(in crate::store) fn stats(
    (pending, in_flight, failed, oldest): StatsRow,
) -> Result<OutboxStats, StoreError> {
    Ok(OutboxStats {
        pending: pending.unsigned_abs(),
        in_flight: in_flight.unsigned_abs(),
        failed: failed.unsigned_abs(),
        oldest_due_at: opt_from_ms(oldest)?,
    })
}

/// The rows per state: `(state, count)`.
pub(in crate::store) type StateCountRow = (String, i64);
/// The outcomes per bucket: `(state, bucket start as milliseconds / [`STATS_BUCKET_MS`],
/// count)`.
pub(in crate::store) type BucketRow = (String, i64, i64);

/// The overview's statistics from the per-state counts, the oldest due time and the
/// per-bucket outcomes (in bucket order).
pub(in crate::store) fn delivery_stats(
    counts: Vec<StateCountRow>,
    oldest: Option<i64>,
    buckets: Vec<BucketRow>,
) -> Result<DeliveryStats, StoreError> {
    let mut stats = DeliveryStats {
        oldest_due_at: opt_from_ms(oldest)?,
        ..DeliveryStats::default()
    };
    for (state, n) in counts {
        let state: DeliveryState = parse(&state, "state")?;
        stats.counts.add(state, unsigned(n, "count")?);
    }
    for (state, bucket, n) in buckets {
        let n: u64 = unsigned(n, "count")?;
        let at = from_ms(bucket.saturating_mul(STATS_BUCKET_MS))?;
        if stats.buckets.last().is_none_or(|b| b.start != at) {
            stats.buckets.push(BucketCounts {
                start: at,
                delivered: 0,
                failed: 0,
            });
        }
        let Some(slot) = stats.buckets.last_mut() else {
            continue;
        };
        match parse::<DeliveryState>(&state, "state")? {
            DeliveryState::Delivered => slot.delivered += n,
            DeliveryState::Failed => slot.failed += n,
            _ => {}
        }
    }
    Ok(stats)
}
