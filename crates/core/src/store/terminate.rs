//! The termination walk, written once over a [`Backend`]'s primitives.
//!
//! Each step of the walk is one backend transaction: it reads and locks the step's active
//! sessions with their clients' registrations ([`Tx::ending`]), derives their rows with
//! [`plan_all`], marks them ended and inserts the rows ([`Tx::end`]), writes the SET rows of
//! the SSF streams in scope ([`Tx::fanout_streams`], [`plan_sets`], [`Tx::insert_sets`]), and
//! commits, so a session's end and its rows commit together or not at all.

use super::StoreError;
use super::backend::{Backend, Ending, EndingSet, Lane, Tx};
use crate::ids::{EventId, UserId};
use crate::initiator::Initiator;
use crate::outbox::DeliveryScope;
use crate::ssf::{InitiatingEntity, initiating_entity, plan_sets};
use crate::terminate::{EndReport, EndTarget, UserRows, plan_all};
use chrono::{DateTime, Utc};

/// Ends the target's active sessions (see [`crate::store::Sessions::end_sessions`]). A single
/// session is one transaction on the interactive lane; a user's sessions are ended a step at
/// a time on the bulk lane, each step as many as the backend ends in one transaction, so what
/// one call holds and how long one transaction keeps its locks stay bounded however many
/// sessions the user has.
pub(super) async fn end_sessions(
    backend: &dyn Backend,
    target: &EndTarget,
    initiator: Initiator,
    entity: Option<InitiatingEntity>,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    match target {
        EndTarget::Session(id) => {
            let mut tx = backend.begin(Lane::Interactive).await?;
            let set = tx.ending(Ending::Session(id)).await?;
            if !set.found {
                return Err(StoreError::NotFound);
            }
            let cause = Cause::new(initiator, entity);
            finish(backend, tx, set, cause, event_id, now, None).await
        }
        EndTarget::User(user) => {
            let cause = Cause::new(initiator, entity);
            end_user(backend, user, cause, event_id, now).await
        }
    }
}

/// Ends a user's active sessions step by step in id order; each step starts after the cursor
/// the previous one returned, so the walk ends however many sessions other transactions end
/// meanwhile. A `per_user` client's one row is written by the first step that ends one of its
/// sessions, and each later step adds its sessions to that row in the same transaction as
/// their end, so a crash between steps loses no logout.
async fn end_user(
    backend: &dyn Backend,
    user: &UserId,
    cause: Cause,
    event_id: &EventId,
    now: DateTime<Utc>,
) -> Result<EndReport, StoreError> {
    let mut report = EndReport::nothing(event_id);
    let mut after = String::new();
    let mut user_rows = UserRows::default();
    loop {
        let mut tx = backend.begin(Lane::Bulk).await?;
        let mut set = tx
            .ending(Ending::User {
                user,
                after: &after,
            })
            .await?;
        let next = set.next.take();
        let step = finish(backend, tx, set, cause, event_id, now, Some(&mut user_rows)).await?;
        report.absorb(step);
        match next {
            Some(cursor) => after = cursor,
            None => return Ok(report),
        }
    }
}

/// Why an end happens: its initiator, and the `initiating_entity` of its SETs (the one the
/// caller named, else the initiator's).
#[derive(Debug, Clone, Copy)]
struct Cause {
    initiator: Initiator,
    entity: InitiatingEntity,
}

impl Cause {
    fn new(initiator: Initiator, entity: Option<InitiatingEntity>) -> Self {
        Self {
            initiator,
            entity: entity.unwrap_or_else(|| initiating_entity(initiator)),
        }
    }
}

/// Ends up to `limit` active sessions past their absolute or idle expiry at `now`, with
/// `session-expired`, in one transaction on the bulk lane.
pub(super) async fn end_expired(
    backend: &dyn Backend,
    now: DateTime<Utc>,
    limit: usize,
    event_id: &EventId,
) -> Result<EndReport, StoreError> {
    let mut tx = backend.begin(Lane::Bulk).await?;
    let set = tx.ending(Ending::Expired { now, limit }).await?;
    finish(
        backend,
        tx,
        set,
        Cause::new(Initiator::SessionExpired, None),
        event_id,
        now,
        None,
    )
    .await
}

/// Plans the rows of the step's sessions (`user` carries a user-wide end's `user` rows from
/// step to step), ends them with their rows and their SET rows (one per session and SSF
/// stream in scope), commits, then wakes this node's workers when rows were written.
async fn finish(
    backend: &dyn Backend,
    mut tx: Box<dyn Tx + '_>,
    set: EndingSet,
    cause: Cause,
    event_id: &EventId,
    now: DateTime<Utc>,
    user: Option<&mut UserRows>,
) -> Result<EndReport, StoreError> {
    let Cause { initiator, entity } = cause;
    let plan = plan_all(&set.sessions, &set.clients, initiator, event_id, now, user);
    let mut sets = Vec::new();
    if !set.sessions.is_empty() {
        tx.end(&set.sessions, &plan.rows, initiator, now).await?;
        let streams = tx.fanout_streams().await?;
        sets = plan_sets(&set.sessions, &streams, initiator, entity, event_id, now);
        if !sets.is_empty() {
            tx.insert_sets(&sets).await?;
        }
    }
    tx.commit().await?;
    if plan.new_rows > 0 {
        backend.wake_workers();
    }
    if !sets.is_empty() {
        backend.wake_sets();
    }
    let continued = plan.rows.len().saturating_sub(plan.new_rows);
    let (user_rows, user_sessions) = plan
        .rows
        .iter()
        .filter(|r| r.scope == DeliveryScope::User)
        .fold((0_usize, 0_usize), |(rows, sessions), r| {
            (rows + 1, sessions + r.sessions as usize)
        });
    Ok(EndReport {
        event_id: event_id.clone(),
        sessions_ended: set.sessions.len(),
        deliveries: plan.new_rows,
        user_wide_deliveries: user_rows.saturating_sub(continued),
        user_wide_sessions: user_sessions,
        notes: plan.notes,
    })
}
