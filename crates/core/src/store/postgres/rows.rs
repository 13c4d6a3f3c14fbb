//! The rows PostgreSQL returns: the shared rows with JSON as JSONB, a session with its client
//! list from one statement, and a claimed row with its client's registration.

use crate::clients::RelyingParty;
use crate::session::{Session, SessionClient};
use crate::store::StoreError;
use crate::store::sql::rows;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A row of `clients`.
pub(super) type ClientRow = rows::ClientRow<Value>;
/// A row of `deliveries`.
pub(super) type DeliveryRow = rows::DeliveryRow<Value>;

/// The columns of [`SessionRow`] selected `FROM sessions`, for `concat!`: the session's clients
/// and their sids come in joining order from the same statement, so they belong to the same
/// snapshot.
macro_rules! session_columns {
    () => {
        concat!(
            crate::store::sql::rows::session_columns!(),
            ", ARRAY(SELECT ROW(sc.client_id, sc.sid) FROM session_clients sc \
             WHERE sc.session_id = sessions.id ORDER BY sc.position) AS clients"
        )
    };
}
pub(super) use session_columns;

/// A row of `sessions` with its client list.
#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    #[sqlx(flatten)]
    row: rows::SessionRow<Value>,
    /// `(client_id, sid)` in joining order: one array of pairs, read by one subquery.
    clients: Vec<(String, Option<String>)>,
}

impl SessionRow {
    /// The session, with its clients in joining order.
    pub(super) fn into_session(self) -> Result<Session, StoreError> {
        let clients = self
            .clients
            .into_iter()
            .map(|(c, sid)| SessionClient::with_sid(c.into(), sid.map(Into::into)))
            .collect();
        self.row.into_session(clients)
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
    pub(super) fn into_parts(
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
                        paused_by: None,
                        paused_at: None,
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
