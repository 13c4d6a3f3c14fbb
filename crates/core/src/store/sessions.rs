//! Sessions: the rules of creating, joining, changing and ending them, written once over a
//! [`Backend`].

use super::backend::{Backend, Lane};
use super::{Page, StoreError, millis};
use crate::ids::{ClientId, EventId, SessionId, UserId};
use crate::initiator::Initiator;
use crate::metadata::MetadataOp;
use crate::session::{Session, SessionClient};
use crate::ssf::InitiatingEntity;
use crate::terminate::{EndReport, EndTarget};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The session store: the rules, over one backend. Every method is atomic, except that ending
/// a user's sessions may commit them in several transactions; each session's end still
/// commits together with its rows.
#[derive(Clone)]
pub struct Sessions {
    backend: Arc<dyn Backend>,
}

impl Sessions {
    /// The session rules over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// Stores a new session. `Conflict` if the id exists; `UnknownClient` if a listed client
    /// is not registered.
    pub async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict(format!("session {}", session.id));
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        if tx.session(&session.id).await?.is_some() {
            return Err(conflict());
        }
        let wanted: Vec<&ClientId> = session.clients.iter().map(|c| &c.client_id).collect();
        if let Some(unknown) = tx.first_unknown_client(&wanted).await? {
            return Err(StoreError::UnknownClient(unknown.to_string()));
        }
        if !tx.insert_session(session).await? {
            return Err(conflict());
        }
        tx.commit().await?;
        if session.expires_at.is_some() || session.idle_expires_at.is_some() {
            self.backend.wake_expiry();
        }
        Ok(())
    }

    /// The session, ended or not.
    pub async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.backend.get_session(id).await
    }

    /// The user's active sessions ordered by id, starting after cursor `from`.
    pub async fn list_user_sessions(
        &self,
        user: &UserId,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<Session>, StoreError> {
        let sessions = self.backend.user_sessions(user, from, take).await?;
        Ok(Page::from_overfetch(sessions, take, |s: &Session| {
            s.id.to_string()
        }))
    }

    /// Records that `client` joined the session. Joining again keeps the client's place in
    /// the list; a `sid` given on the new join replaces the one stored, a join without one
    /// keeps it. `NotFound`, `Ended` or `UnknownClient` otherwise.
    pub async fn add_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError> {
        let now = millis(now);
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        let mut session = active(tx.lock_session(id).await?)?;
        if tx
            .first_unknown_client(&[&client.client_id])
            .await?
            .is_some()
        {
            return Err(StoreError::UnknownClient(client.client_id.to_string()));
        }
        // A client already listed with nothing new to record only touches the session.
        let changed = !session.has_client(&client.client_id) || client.sid.is_some();
        let joining = if changed {
            std::slice::from_ref(client)
        } else {
            &[]
        };
        tx.join(id, joining, now).await?;
        tx.commit().await?;
        session.join(client.clone());
        session.updated_at = now;
        Ok(session)
    }

    /// Applies a metadata change, validated with
    /// [`crate::metadata::SessionMetadata::apply`] inside the same transaction. `NotFound`,
    /// `Ended` or `Metadata` otherwise; a refusal changes nothing.
    pub async fn update_metadata(
        &self,
        id: &SessionId,
        op: &MetadataOp,
        now: DateTime<Utc>,
    ) -> Result<Session, StoreError> {
        let now = millis(now);
        let mut tx = self.backend.begin(Lane::Interactive).await?;
        let mut session = active(tx.lock_session(id).await?)?;
        session.session_metadata = session.session_metadata.apply(op)?;
        session.updated_at = now;
        tx.set_metadata(id, &session.session_metadata, now).await?;
        tx.commit().await?;
        Ok(session)
    }

    /// Ends the target's active sessions and, in the same transaction, writes the outbox rows
    /// that [`crate::terminate::plan`] derives for each, and reports the clients it noted.
    /// Sessions already ended are skipped and add no rows and no notes. `NotFound` when a
    /// single target session does not exist. The SSF SETs of the end carry the
    /// `initiating_entity` that `initiator` maps to.
    pub async fn end_sessions(
        &self,
        target: &EndTarget,
        initiator: Initiator,
        event_id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<EndReport, StoreError> {
        self.end_sessions_as(target, initiator, None, event_id, now)
            .await
    }

    /// [`Self::end_sessions`], with the SETs' `initiating_entity` named by the caller when
    /// `entity` is given.
    pub async fn end_sessions_as(
        &self,
        target: &EndTarget,
        initiator: Initiator,
        entity: Option<InitiatingEntity>,
        event_id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<EndReport, StoreError> {
        let now = millis(now);
        super::terminate::end_sessions(&*self.backend, target, initiator, entity, event_id, now)
            .await
    }

    /// Ends up to `limit` active sessions whose `expires_at` or `idle_expires_at` is at or
    /// before `now`, with initiator `session-expired`, exactly as [`Self::end_sessions`] does
    /// (same transaction, rows only for subscribed clients). A session another node ends
    /// meanwhile is skipped, never ended twice.
    pub async fn end_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        event_id: &EventId,
    ) -> Result<EndReport, StoreError> {
        super::terminate::end_expired(&*self.backend, millis(now), limit, event_id).await
    }
}

/// The session if it exists and is active: `NotFound` or `Ended` otherwise.
fn active(session: Option<Session>) -> Result<Session, StoreError> {
    let session = session.ok_or(StoreError::NotFound)?;
    if session.is_ended() {
        return Err(StoreError::Ended);
    }
    Ok(session)
}
