//! Registered clients over the in-memory state.

use super::State;
use crate::clients::RelyingParty;
use crate::ids::ClientId;
use std::ops::Bound;

/// Clients after cursor `from`, one more than `take` at most.
pub(super) fn list(state: &State, from: Option<&str>, take: usize) -> Vec<RelyingParty> {
    let start = from.map_or(Bound::Unbounded, |c| Bound::Excluded(ClientId::from(c)));
    state
        .clients
        .range((start, Bound::Unbounded))
        .take(take.saturating_add(1))
        .map(|(_, c)| c.clone())
        .collect()
}
