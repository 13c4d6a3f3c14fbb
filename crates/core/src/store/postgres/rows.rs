//! Stored rows and their conversion to the domain types.

use super::{Corrupt, from_ms, opt_from_ms};
use crate::clients::RelyingParty;
use crate::metadata::SessionMetadata;
use crate::outbox::{AttemptRecord, Delivery};
use crate::session::{Device, Session, SessionClient};
use crate::store::StoreError;
use crate::store::sql::{parse, unsigned};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The columns of [`SessionRow`] selected `FROM sessions`, for `concat!`: the session's clients
/// and their sids come in joining order from the same statement, so they belong to the same
/// snapshot.
macro_rules! session_columns {
    () => {
        "id, user_id, created_at, updated_at, authenticated_at, idle_expires_at, expires_at, \
         last_interacted_at, device, metadata, ended_at, end_initiator, \
         ARRAY(SELECT ROW(sc.client_id, sc.sid) FROM session_clients sc \
         WHERE sc.session_id = sessions.id ORDER BY sc.position) AS clients"
    };
}
pub(super) use session_columns;

/// The columns of [`DeliveryRow`], for `concat!`.
macro_rules! delivery_columns {
    () => {
        "id, event_id, session_id, user_id, client_id, initiator, state, attempts, \
         next_attempt_at, last_status, last_error, created_at, delivered_at, metadata, \
         budget_started_at, sid"
    };
}
pub(super) use delivery_columns;

/// The columns of [`ClientRow`], for `concat!`.
macro_rules! client_columns {
    () => {
        "settings, paused, created_at, updated_at"
    };
}
pub(super) use client_columns;

/// Decodes a stored JSON column, naming only the column on failure.
fn json<T: serde::de::DeserializeOwned>(
    value: Value,
    column: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|_| StoreError::backend(Corrupt(column)))
}

/// A row of `sessions`.
#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    pub id: String,
    user_id: String,
    created_at: i64,
    updated_at: i64,
    authenticated_at: Option<i64>,
    idle_expires_at: Option<i64>,
    expires_at: Option<i64>,
    last_interacted_at: Option<i64>,
    device: Value,
    metadata: Value,
    ended_at: Option<i64>,
    end_initiator: Option<String>,
    /// `(client_id, sid)` in joining order: one array of pairs, read by one subquery.
    clients: Vec<(String, Option<String>)>,
}

impl SessionRow {
    /// The session, with its clients in joining order.
    pub fn into_session(self) -> Result<Session, StoreError> {
        let clients = self
            .clients
            .into_iter()
            .map(|(c, sid)| SessionClient::with_sid(c.into(), sid.map(Into::into)))
            .collect();
        Ok(Session {
            id: self.id.into(),
            user_id: self.user_id.into(),
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
            authenticated_at: opt_from_ms(self.authenticated_at)?,
            idle_expires_at: opt_from_ms(self.idle_expires_at)?,
            expires_at: opt_from_ms(self.expires_at)?,
            last_interacted_at: opt_from_ms(self.last_interacted_at)?,
            device: json::<Device>(self.device, "device")?,
            clients,
            session_metadata: json::<SessionMetadata>(self.metadata, "metadata")?,
            ended_at: opt_from_ms(self.ended_at)?,
            end_initiator: self
                .end_initiator
                .map(|i| parse(&i, "end_initiator"))
                .transpose()?,
        })
    }
}

/// A row of `clients` (the columns of [`client_columns`]).
#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    settings: Value,
    paused: bool,
    created_at: i64,
    updated_at: i64,
}

impl ClientRow {
    /// The registration; the columns win over the copies inside `settings`.
    pub fn into_client(self) -> Result<RelyingParty, StoreError> {
        Ok(RelyingParty {
            paused: self.paused,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
            ..json::<RelyingParty>(self.settings, "client settings")?
        })
    }
}

/// A row of `deliveries` (the columns of [`delivery_columns`]).
#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    id: String,
    event_id: String,
    session_id: String,
    user_id: String,
    client_id: String,
    initiator: String,
    state: String,
    attempts: i32,
    next_attempt_at: Option<i64>,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
    metadata: Value,
    budget_started_at: i64,
    sid: Option<String>,
}

impl DeliveryRow {
    /// The status view of the row.
    pub fn to_delivery(&self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            id: self.id.as_str().into(),
            event_id: self.event_id.as_str().into(),
            session_id: self.session_id.as_str().into(),
            sid: self.sid.as_deref().map(Into::into),
            user_id: self.user_id.as_str().into(),
            client_id: self.client_id.as_str().into(),
            initiator: parse(&self.initiator, "initiator")?,
            state: parse(&self.state, "state")?,
            attempts: unsigned(self.attempts, "attempts")?,
            next_attempt_at: opt_from_ms(self.next_attempt_at)?,
            last_status: self
                .last_status
                .map(|s| unsigned(s, "last_status"))
                .transpose()?,
            last_error: self.last_error.clone(),
            created_at: from_ms(self.created_at)?,
            delivered_at: opt_from_ms(self.delivered_at)?,
        })
    }

    /// The metadata snapshot taken at termination, as stored.
    pub fn metadata_value(&self) -> &Value {
        &self.metadata
    }

    /// Parses a metadata snapshot as stored.
    pub fn parse_metadata(value: &Value) -> Result<SessionMetadata, StoreError> {
        SessionMetadata::from_json(value)
            .map_err(|_| StoreError::backend(Corrupt("metadata snapshot")))
    }

    /// Start of the age budget.
    pub fn budget_started_at(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        from_ms(self.budget_started_at)
    }
}

/// A claimed row joined with its client's registration, as the claim statement returns it.
#[derive(sqlx::FromRow)]
pub(super) struct ClaimRow {
    #[sqlx(flatten)]
    row: DeliveryRow,
    reclaimed: bool,
    client_settings: Value,
    client_paused: bool,
    client_created_at: i64,
    client_updated_at: i64,
}

impl ClaimRow {
    /// The row, its client's registration, and whether the claim reclaimed an expired lease.
    /// Every row carries its client's registration; `registrations` keeps each one parsed
    /// once per claim and shared by the client's rows.
    pub fn into_parts(
        self,
        registrations: &mut HashMap<String, Arc<RelyingParty>>,
    ) -> Result<(DeliveryRow, Arc<RelyingParty>, bool), StoreError> {
        let client = match registrations.get(&self.row.client_id) {
            Some(client) => client.clone(),
            None => {
                let client = Arc::new(
                    ClientRow {
                        settings: self.client_settings,
                        paused: self.client_paused,
                        created_at: self.client_created_at,
                        updated_at: self.client_updated_at,
                    }
                    .into_client()?,
                );
                registrations.insert(self.row.client_id.clone(), client.clone());
                client
            }
        };
        Ok((self.row, client, self.reclaimed))
    }
}

/// A row of `delivery_attempts`.
#[derive(sqlx::FromRow)]
pub(super) struct AttemptRow {
    at: i64,
    status: Option<i32>,
    error: Option<String>,
    latency_ms: i64,
    jti: String,
}

impl AttemptRow {
    /// The history entry.
    pub fn into_record(self) -> Result<AttemptRecord, StoreError> {
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
