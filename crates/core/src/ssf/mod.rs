//! Shared Signals (SSF 1.0) transmitter: receivers, their streams, and the Security Event
//! Tokens (SETs, RFC 8417) that tell them a session ended (CAEP `session-revoked`), written in
//! the same transaction as the session end and delivered by push (RFC 8935) or poll
//! (RFC 8936) with the retry budget of logout tokens.
//!
//! - This module: the receiver, stream and SET row types, and the fan-out of a session end
//!   into SET rows ([`plan_sets`]), pure.
//! - `set`: the claims of a row's SET and its signature ([`mint`]), and the rows the stream
//!   API writes.
//! - `push`: what a push attempt's answer decides (RFC 8935), pure.
//! - The store's `ssf` seam ([`crate::store::SsfStore`]) keeps them.

mod push;
mod set;
mod worker;

pub use push::{PushVerdict, decide_push};
pub use set::{SetMintError, mint, set_claims};
pub use worker::{SetWorker, SetWorkerParts};

use crate::ids::{ClientId, EventId, LeaseId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::retry::Decision;
use crate::session::Session;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use utoipa::ToSchema;

/// CAEP 1.0 §3.1: the session was revoked.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// SSF 1.0 §8.1.4: the verification event.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// SSF 1.0 §8.1.5: the stream's status changed.
pub const STREAM_UPDATED: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/stream-updated";
/// The push delivery method (RFC 8935).
pub const PUSH_METHOD: &str = "urn:ietf:rfc:8935";
/// The poll delivery method (RFC 8936).
pub const POLL_METHOD: &str = "urn:ietf:rfc:8936";
/// The events a stream may carry (`events_supported`).
pub const EVENTS_SUPPORTED: [&str; 1] = [SESSION_REVOKED];
/// Least time between two verification requests of one stream, in seconds
/// (`min_verification_interval`).
pub const MIN_VERIFICATION_INTERVAL_SECS: i64 = 10;

/// An enum that travels as the wire names given, in serde and in the OpenAPI document. The
/// names are `tt`, not `literal`: a `literal` fragment reaches the derives wrapped in an
/// invisible group, which serde reads but utoipa skips, documenting the Rust names instead.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:tt),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and database name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} {s:?}", stringify!($name)))
            }
        }
    };
}

wire_enum!(
    /// Which session ends a receiver hears of.
    ReceiverScope {
        /// The sessions its `client_id` took part in (the default when it has one).
        Participating = "participating",
        /// Every session.
        All = "all",
    }
);

wire_enum!(
    /// A stream's status (SSF §8.1.2).
    StreamStatus {
        /// Events are delivered.
        Enabled = "enabled",
        /// Events are written and held, then delivered in order once enabled again.
        Paused = "paused",
        /// No events are written; pending ones were cancelled.
        Disabled = "disabled",
    }
);

wire_enum!(
    /// CAEP 1.0 §3.2.1 `initiating_entity`: who or what started a session end.
    InitiatingEntity {
        /// An administrator.
        Admin = "admin",
        /// The user.
        User = "user",
        /// A policy the transmitter or the IdP applies.
        Policy = "policy",
        /// Another system.
        System = "system",
    }
);

wire_enum!(
    /// What a SET row carries.
    SetKind {
        /// CAEP `session-revoked`.
        SessionRevoked = "session_revoked",
        /// SSF verification, answering `/ssf/verify`.
        Verification = "verification",
        /// SSF `stream-updated`, when logoutd itself changed the status.
        StreamUpdated = "stream_updated",
    }
);

wire_enum!(
    /// Where a SET row's delivery stands.
    SetState {
        /// Waiting: for `next_attempt_at`, for the stream to be enabled, or for a poll.
        Pending = "pending",
        /// Claimed under a lease: a push attempt, or handed to a poll and not yet acknowledged.
        InFlight = "in_flight",
        /// Push: the receiver answered 202 (or 2xx). Poll: acknowledged.
        Delivered = "delivered",
        /// Terminal: refused, reported in `setErrs`, or out of budget. Re-drivable.
        Failed = "failed",
        /// The stream was disabled or deleted before it was delivered.
        Cancelled = "cancelled",
    }
);

/// A registered SSF receiver: a security or audit system with its own `aud` and credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SsfReceiver {
    /// Its id (`ssr_…`).
    pub id: String,
    /// A name for operators.
    pub name: String,
    /// The `aud` of its SETs; unique among receivers.
    pub aud: String,
    /// The client it stands for, if any: with scope `participating`, the sessions it hears of.
    pub client_id: Option<ClientId>,
    /// Which session ends it hears of.
    pub scope: ReceiverScope,
    /// Whether its `session-revoked` events carry the session's metadata.
    pub include_session_metadata: bool,
    /// SHA-256 of its bearer token, lowercase hex. Never shown.
    #[serde(skip)]
    pub token_hash: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// How a stream's SETs reach its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamDelivery {
    /// RFC 8935: POSTed to `endpoint_url`, with `authorization_header` as the `Authorization`
    /// header when set.
    Push {
        /// The receiver's URL (passed the SSRF guard when it was set).
        endpoint_url: String,
        /// Sent verbatim as `Authorization`. A secret: shown only to the stream's receiver.
        authorization_header: Option<String>,
    },
    /// RFC 8936: the receiver polls `{issuer}/ssf/poll/{stream_id}`.
    Poll,
}

/// A stream (SSF §8.1.1): one per receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct SsfStream {
    /// Its id: `sst_` and 128 random bits, never reused.
    pub stream_id: String,
    /// Its receiver.
    pub receiver_id: String,
    /// Its status.
    pub status: StreamStatus,
    /// Why, when the status was set with a reason.
    pub status_reason: Option<String>,
    /// The receiver's `events_requested`, as sent; `None` when absent (then all supported
    /// events are delivered).
    pub events_requested: Option<Vec<String>>,
    /// How SETs are delivered.
    pub delivery: StreamDelivery,
    /// The receiver's `description`.
    pub description: Option<String>,
    /// Subjects removed from this stream (SSF §8.1.3.3), as the receiver sent them. Under
    /// `default_subjects: ALL` every other subject is in the stream.
    pub excluded_subjects: Vec<Value>,
    /// When a verification was last accepted (the minimum interval holds across nodes).
    pub last_verification_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl SsfStream {
    /// `events_delivered`: the supported events the receiver requested, or all of them when
    /// it requested none.
    pub fn events_delivered(&self) -> Vec<&'static str> {
        match &self.events_requested {
            None => EVENTS_SUPPORTED.to_vec(),
            Some(requested) => EVENTS_SUPPORTED
                .into_iter()
                .filter(|e| requested.iter().any(|r| r == e))
                .collect(),
        }
    }
}

/// A stream as the fan-out of a session end needs it (read inside the end's transaction):
/// enabled or paused, with its receiver's scope.
#[derive(Debug, Clone, PartialEq)]
pub struct FanoutStream {
    /// The stream.
    pub stream_id: String,
    /// Its receiver.
    pub receiver_id: String,
    /// The receiver's scope.
    pub scope: ReceiverScope,
    /// The receiver's client, for scope `participating`.
    pub client_id: Option<ClientId>,
    /// Whether the receiver opted in to session metadata.
    pub include_session_metadata: bool,
    /// Whether `session-revoked` is in its `events_delivered`.
    pub wants_session_revoked: bool,
    /// Its removed subjects.
    pub excluded_subjects: Vec<Value>,
}

/// A SET row to write: what to sign, not the signature (each attempt signs with the current
/// key), with a `jti` and `iat` fixed for its whole life.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSet {
    /// Its row id (`set_…`, ordered like delivery ids).
    pub id: String,
    /// Its stream.
    pub stream_id: String,
    /// The stream's receiver: rows are keyed by (receiver, stream).
    pub receiver_id: String,
    /// What it carries.
    pub kind: SetKind,
    /// Its `jti`, kept across retries (RFC 8936 acknowledges by `jti`).
    pub jti: String,
    /// `txn`: the session end's event id, shared by every SET and logout token it causes.
    pub txn: Option<String>,
    /// The event's facts, by kind. `session_revoked`: `{"sub", "sid", "initiator",
    /// "initiating_entity", "event_timestamp", "session_metadata"?}`; `verification`:
    /// `{"state"?}`; `stream_updated`: `{"status", "reason"?}`.
    pub payload: Value,
    /// `iat`, and the start of its age budget.
    pub created_at: DateTime<Utc>,
}

/// A SET row as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSet {
    /// What was written.
    pub set: NewSet,
    /// Where its delivery stands.
    pub state: SetState,
    /// Attempts made (push), or times handed out by a poll.
    pub attempts: u32,
    /// Pending: when due. In flight: when the lease ends.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When its age budget started (creation, or its last re-drive).
    pub budget_started_at: DateTime<Utc>,
    /// The last push attempt's HTTP status.
    pub last_status: Option<u16>,
    /// The last error: transport error, the receiver's `err` and `description`, or why it
    /// was given up or cancelled.
    pub last_error: Option<String>,
    /// When it was delivered or acknowledged.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
}

/// A push row claimed for one attempt, with its stream's delivery read at claim time.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedSet {
    /// The row, in flight.
    pub row: StoredSet,
    /// The lease its result must be recorded under.
    pub lease: LeaseId,
    /// The receiver's `aud`.
    pub aud: String,
    /// Where to push, as the stream holds it now.
    pub endpoint_url: String,
    /// The `Authorization` header to send, as the stream holds it now.
    pub authorization_header: Option<String>,
}

/// How many rows of each stream a push claim may take: the streams' share of a worker's
/// attempts, less the attempts it already has in flight. A claim takes each stream's oldest due
/// rows and only as many as can start at once, so none is claimed only to be handed back, and
/// a stream's SETs start in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRoom {
    /// Most attempts of one stream in flight at once.
    pub per_stream: usize,
    /// Attempts in flight, by stream.
    pub running: HashMap<String, usize>,
}

impl PushRoom {
    /// Room for `per_stream` attempts of every stream, none running.
    pub fn new(per_stream: usize) -> Self {
        Self {
            per_stream,
            running: HashMap::new(),
        }
    }

    /// No cap: a claim may take every due row.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// How many more rows of `stream` a claim may take.
    pub fn of(&self, stream: &str) -> usize {
        let running = self.running.get(stream).copied().unwrap_or(0);
        self.per_stream.saturating_sub(running)
    }

    /// The streams with no room left, whose rows a claim leaves alone.
    pub fn full(&self) -> Vec<&str> {
        self.running
            .keys()
            .map(String::as_str)
            .filter(|stream| self.of(stream) == 0)
            .collect()
    }
}

/// What one push attempt decided, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct SetResult {
    /// The row.
    pub id: String,
    /// The lease it was claimed under.
    pub lease: LeaseId,
    /// The retry decision.
    pub decision: Decision,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// The row's last error.
    pub error: Option<String>,
    /// When the attempt started.
    pub at: DateTime<Utc>,
}

/// A receiver's error report for one SET in a poll's `setErrs` (RFC 8936 §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetError {
    /// The error code (RFC 8935 §2.4).
    pub err: String,
    /// Its human-readable text.
    pub description: String,
}

/// One poll request, as the store applies it (RFC 8936 §2.4, in this order: acks, errors,
/// then selection).
#[derive(Debug, Clone, PartialEq)]
pub struct PollRequest {
    /// The stream; rows are keyed by (receiver, stream).
    pub stream_id: String,
    /// The receiver polling.
    pub receiver_id: String,
    /// `ack`: these rows become `delivered`; unknown values are ignored.
    pub ack: Vec<String>,
    /// `setErrs`: these rows become `failed`, never resent.
    pub set_errs: Vec<(String, SetError)>,
    /// At most this many rows to hand out (0: acknowledge only).
    pub max_events: usize,
    /// How long a handed-out row waits for its ack before it is handed out again.
    pub lease: chrono::Duration,
    /// The request's time.
    pub now: DateTime<Utc>,
}

/// What a poll hands out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PollBatch {
    /// The rows, oldest first, now in flight under the poll's lease.
    pub rows: Vec<StoredSet>,
    /// Whether more rows were ready than `max_events`.
    pub more_available: bool,
}

/// What a verification request decided (SSF §8.1.4.2), atomically across nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyOutcome {
    /// Accepted: the verification row was written and `last_verification_at` set.
    Accepted,
    /// Less than the minimum interval since the last one: try again after this many seconds.
    TooSoon {
        /// Seconds until the interval has passed (at least 1).
        retry_after_secs: u64,
    },
    /// The stream is not enabled.
    NotEnabled,
    /// No such stream for this receiver.
    NotFound,
}

/// Which SET rows a listing shows; an unset filter matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetFilter {
    /// Only rows of this stream.
    pub stream_id: Option<String>,
    /// Only rows of this receiver.
    pub receiver_id: Option<String>,
    /// Only rows in this state.
    pub state: Option<SetState>,
    /// Only rows of this kind.
    pub kind: Option<SetKind>,
}

/// Which dead letters a bulk re-drive of SETs takes: `failed` rows matching every filter
/// given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedSetFilter {
    /// Only rows of this stream.
    pub stream_id: Option<String>,
    /// Only rows of this receiver.
    pub receiver_id: Option<String>,
    /// Only rows of this kind.
    pub kind: Option<SetKind>,
    /// Only rows that failed (last changed) at or after this time.
    pub failed_since: Option<DateTime<Utc>>,
    /// Only rows that failed (last changed) before this time.
    pub failed_before: Option<DateTime<Utc>>,
}

/// What re-driving one SET row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetRedrive {
    /// It was failed and is pending again, with a fresh budget (and its `jti`).
    Requeued,
    /// It is not failed; nothing changed.
    NotFailed(SetState),
    /// No such row.
    NotFound,
}

/// CAEP's `initiating_entity` for a logoutd initiator (logoutd's mapping, docs/ssf.md),
/// used unless the end names one itself.
pub fn initiating_entity(initiator: Initiator) -> InitiatingEntity {
    match initiator {
        Initiator::RpLogout => InitiatingEntity::User,
        Initiator::IdpLogout => InitiatingEntity::System,
        Initiator::SessionRevoked | Initiator::AccountDeleted | Initiator::AccountDeactivated => {
            InitiatingEntity::Admin
        }
        Initiator::PasswordChanged
        | Initiator::SessionExpired
        | Initiator::EmailIdentifierChanged
        | Initiator::MfaPhoneUnenrolled => InitiatingEntity::Policy,
    }
}

/// The SET rows of one termination step: one per session and stream in scope that did not
/// remove the session's subject, each with `entity` as its `initiating_entity`. Written in
/// the step's transaction beside its delivery rows.
pub fn plan_sets(
    sessions: &[Session],
    streams: &[FanoutStream],
    initiator: Initiator,
    entity: InitiatingEntity,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Vec<NewSet> {
    let now = crate::store::millis(now);
    let mut rows = Vec::new();
    for stream in streams.iter().filter(|s| s.wants_session_revoked) {
        for session in sessions.iter().filter(|s| in_scope(stream, s)) {
            if excluded(&stream.excluded_subjects, &session.user_id, &session.id) {
                continue;
            }
            rows.push(session_revoked(
                stream, session, initiator, entity, event_id, now,
            ));
        }
    }
    rows
}

fn in_scope(stream: &FanoutStream, session: &Session) -> bool {
    match (stream.scope, &stream.client_id) {
        (ReceiverScope::All, _) => true,
        (ReceiverScope::Participating, Some(client)) => {
            session.clients.iter().any(|c| &c.client_id == client)
        }
        (ReceiverScope::Participating, None) => false,
    }
}

fn session_revoked(
    stream: &FanoutStream,
    session: &Session,
    initiator: Initiator,
    entity: InitiatingEntity,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> NewSet {
    let mut payload = serde_json::json!({
        "sub": session.user_id.as_str(),
        "sid": session.id.as_str(),
        "initiator": initiator.as_str(),
        "initiating_entity": entity.as_str(),
        "event_timestamp": now.timestamp(),
    });
    if stream.include_session_metadata
        && let (Some(map), Ok(metadata)) = (
            payload.as_object_mut(),
            serde_json::to_value(&session.session_metadata),
        )
    {
        map.insert("session_metadata".to_owned(), metadata);
    }
    NewSet {
        id: crate::ids::SetId::generate_at(now).into_inner(),
        stream_id: stream.stream_id.clone(),
        receiver_id: stream.receiver_id.clone(),
        kind: SetKind::SessionRevoked,
        jti: crate::ids::random_token(),
        txn: Some(event_id.as_str().to_owned()),
        payload,
        created_at: now,
    }
}

/// Whether `excluded` removes the session's subjects from a stream: a removed subject
/// matches when every member it names matches (SSF §8.1.3.1: absent members are wildcards).
/// An `iss_sub` compares its `sub` with the user (logoutd is the one issuer of its users), an
/// `opaque` its `id` with the session; a format the transmitter cannot relate to a session
/// (an `email`, say) matches none.
pub fn excluded(excluded: &[Value], user: &UserId, session: &SessionId) -> bool {
    excluded
        .iter()
        .any(|subject| subject_matches(subject, user, session))
}

fn subject_matches(subject: &Value, user: &UserId, session: &SessionId) -> bool {
    let format = subject.get("format").and_then(Value::as_str);
    match format {
        Some("iss_sub") => subject.get("sub").and_then(Value::as_str) == Some(user.as_str()),
        Some("opaque") => subject.get("id").and_then(Value::as_str) == Some(session.as_str()),
        Some("complex") => {
            let user_ok = subject
                .get("user")
                .is_none_or(|u| subject_matches(u, user, session));
            let session_ok = subject
                .get("session")
                .is_none_or(|s| s.get("id").and_then(Value::as_str) == Some(session.as_str()));
            user_ok
                && session_ok
                && (subject.get("user").is_some() || subject.get("session").is_some())
        }
        _ => false,
    }
}
