//! The SSF transmitter's stored rows, as both SQL databases return them, and their
//! conversion to the domain types.

use super::{StoreError, StoredJson, corrupt, from_ms, opt_from_ms, parse, unsigned};
use crate::ssf::{
    FanoutStream, NewSet, SESSION_REVOKED, SsfReceiver, SsfStream, StoredSet, StreamDelivery,
};
use serde_json::Value;

/// The columns of [`ReceiverRow`], for `concat!`.
macro_rules! receiver_columns {
    () => {
        "id, name, aud, client_id, scope, include_session_metadata, token_hash, created_at, \
         updated_at"
    };
}
pub(in crate::store) use receiver_columns;

/// The columns of [`StreamRow`], for `concat!`.
macro_rules! stream_columns {
    () => {
        "stream_id, receiver_id, status, status_reason, events_requested, delivery_method, \
         endpoint_url, authorization_header, description, excluded_subjects, \
         last_verification_at, created_at, updated_at"
    };
}
pub(in crate::store) use stream_columns;

/// The columns of [`SetRow`], for `concat!`.
macro_rules! set_columns {
    () => {
        "id, stream_id, receiver_id, kind, jti, txn, payload, created_at, state, attempts, \
         next_attempt_at, budget_started_at, last_status, last_error, delivered_at, updated_at"
    };
}
pub(in crate::store) use set_columns;

/// A row of `ssf_receivers`.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ReceiverRow {
    id: String,
    name: String,
    aud: String,
    client_id: Option<String>,
    scope: String,
    include_session_metadata: bool,
    token_hash: String,
    created_at: i64,
    updated_at: i64,
}

impl ReceiverRow {
    pub(in crate::store) fn into_receiver(self) -> Result<SsfReceiver, StoreError> {
        Ok(SsfReceiver {
            id: self.id,
            name: self.name,
            aud: self.aud,
            client_id: self.client_id.map(Into::into),
            scope: parse(&self.scope, "scope")?,
            include_session_metadata: self.include_session_metadata,
            token_hash: self.token_hash,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

/// A row of `ssf_streams`.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct StreamRow<J> {
    stream_id: String,
    receiver_id: String,
    status: String,
    status_reason: Option<String>,
    events_requested: Option<J>,
    delivery_method: String,
    endpoint_url: Option<String>,
    authorization_header: Option<String>,
    description: Option<String>,
    excluded_subjects: J,
    last_verification_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl<J: StoredJson> StreamRow<J> {
    pub(in crate::store) fn into_stream(self) -> Result<SsfStream, StoreError> {
        let delivery = match (self.delivery_method.as_str(), self.endpoint_url) {
            ("poll", _) => StreamDelivery::Poll,
            ("push", Some(endpoint_url)) => StreamDelivery::Push {
                endpoint_url,
                authorization_header: self.authorization_header,
            },
            _ => return Err(corrupt("delivery_method")),
        };
        Ok(SsfStream {
            stream_id: self.stream_id,
            receiver_id: self.receiver_id,
            status: parse(&self.status, "status")?,
            status_reason: self.status_reason,
            events_requested: self
                .events_requested
                .map(|e| e.decode("events_requested"))
                .transpose()?,
            delivery,
            description: self.description,
            excluded_subjects: self.excluded_subjects.decode("excluded_subjects")?,
            last_verification_at: opt_from_ms(self.last_verification_at)?,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

/// A stream joined with its receiver, as the fan-out reads it.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct FanoutRow<J> {
    stream_id: String,
    receiver_id: String,
    scope: String,
    client_id: Option<String>,
    include_session_metadata: bool,
    events_requested: Option<J>,
    excluded_subjects: J,
}

impl<J: StoredJson> FanoutRow<J> {
    pub(in crate::store) fn into_fanout(self) -> Result<FanoutStream, StoreError> {
        let requested: Option<Vec<String>> = self
            .events_requested
            .map(|e| e.decode("events_requested"))
            .transpose()?;
        Ok(FanoutStream {
            stream_id: self.stream_id,
            receiver_id: self.receiver_id,
            scope: parse(&self.scope, "scope")?,
            client_id: self.client_id.map(Into::into),
            include_session_metadata: self.include_session_metadata,
            // As `SsfStream::events_delivered`: absent means every supported event.
            wants_session_revoked: requested.is_none_or(|r| r.iter().any(|e| e == SESSION_REVOKED)),
            excluded_subjects: self.excluded_subjects.decode("excluded_subjects")?,
        })
    }
}

/// A row of `ssf_sets`.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct SetRow<J> {
    id: String,
    stream_id: String,
    receiver_id: String,
    kind: String,
    jti: String,
    txn: Option<String>,
    payload: J,
    created_at: i64,
    state: String,
    attempts: i32,
    next_attempt_at: Option<i64>,
    budget_started_at: i64,
    last_status: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    updated_at: i64,
}

impl<J: StoredJson> SetRow<J> {
    pub(in crate::store) fn into_set(self) -> Result<StoredSet, StoreError> {
        Ok(StoredSet {
            set: NewSet {
                id: self.id,
                stream_id: self.stream_id,
                receiver_id: self.receiver_id,
                kind: parse(&self.kind, "kind")?,
                jti: self.jti,
                txn: self.txn,
                payload: self.payload.decode::<Value>("payload")?,
                created_at: from_ms(self.created_at)?,
            },
            state: parse(&self.state, "state")?,
            attempts: unsigned(self.attempts, "attempts")?,
            next_attempt_at: opt_from_ms(self.next_attempt_at)?,
            budget_started_at: from_ms(self.budget_started_at)?,
            last_status: self
                .last_status
                .map(|s| unsigned(s, "last_status"))
                .transpose()?,
            last_error: self.last_error,
            delivered_at: opt_from_ms(self.delivered_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

/// A push stream as a claim reads it: its status and where its rows go.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct PushStream {
    pub(in crate::store) stream_id: String,
    pub(in crate::store) status: String,
    pub(in crate::store) aud: String,
    pub(in crate::store) endpoint_url: Option<String>,
    pub(in crate::store) authorization_header: Option<String>,
}

/// A stream's delivery as stored: method, URL and header.
pub(in crate::store) fn delivery_columns(
    delivery: &StreamDelivery,
) -> (&'static str, Option<&str>, Option<&str>) {
    match delivery {
        StreamDelivery::Push {
            endpoint_url,
            authorization_header,
        } => (
            "push",
            Some(endpoint_url.as_str()),
            authorization_header.as_deref(),
        ),
        StreamDelivery::Poll => ("poll", None, None),
    }
}
