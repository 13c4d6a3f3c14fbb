//! Who writes next on SQLite's single writer connection.
//!
//! Every write transaction passes through one [`WriteGate`]. While a transaction runs, the
//! others wait in one of three lanes. A caller waiting on a single API request goes first;
//! the chunks of bulk terminations and the dispatcher's and pruner's batches take turns after
//! it. So that a steady stream of API writes cannot starve the others, one of them goes after
//! every [`INTERACTIVE_STREAK`] API writes served while it waited. Only the holder of the gate
//! asks the pool for the connection, so the pool's own first-come queue never reorders this.
//!
//! A transaction that holds the writer cannot be interrupted, so an API write that arrives
//! waits for the rest of it. The gate therefore also tells batch writers whether API writes are
//! arriving ([`WriteGate::api_active`]); while they are, those writers cut their work into
//! smaller transactions (see `BatchSizes` in the parent module).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// API writes served in a row, while other writes wait, before one of those goes.
const INTERACTIVE_STREAK: u32 = 8;
/// How long after the last API write asked for the writer [`WriteGate::api_active`] holds.
const API_ACTIVE_FOR: Duration = Duration::from_millis(100);

/// How urgent a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store::sqlite) enum Lane {
    /// One API request is waiting for it.
    Interactive,
    /// One chunk of a many-session termination (an API caller waits for all of them).
    Bulk,
    /// Dispatcher claims and results, pruning: only throughput depends on it.
    Background,
}

impl Lane {
    fn index(self) -> usize {
        match self {
            Lane::Interactive => 0,
            Lane::Bulk => 1,
            Lane::Background => 2,
        }
    }
}

struct Waiter {
    handoff: oneshot::Sender<Pass>,
}

#[derive(Default)]
struct State {
    busy: bool,
    lanes: [VecDeque<Waiter>; 3],
    /// API writes served in a row while another lane waited.
    streak: u32,
    /// The lane of the last bulk or background write served, so the two alternate.
    last_batch: Option<Lane>,
    /// When an API write last asked for the writer.
    last_api: Option<Instant>,
}

/// The gate in front of the writer connection.
#[derive(Default)]
pub(in crate::store::sqlite) struct WriteGate {
    state: Mutex<State>,
    /// Passes handed out so far: the write transactions begun.
    #[cfg(test)]
    passes: std::sync::atomic::AtomicUsize,
}

/// The right to write, held for the life of one transaction; dropping it lets the next
/// waiter in.
pub(in crate::store::sqlite) struct Pass {
    gate: Option<Arc<WriteGate>>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Waits for the writer's turn in `lane`. Cancel-safe: a dropped wait gives up its place,
    /// and a pass handed to a wait that was dropped meanwhile goes to the next waiter.
    pub(in crate::store::sqlite) async fn enter(self: &Arc<Self>, lane: Lane) -> Pass {
        let pass = self.turn(lane).await;
        #[cfg(test)]
        self.passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pass
    }

    /// Notes an API write, then waits for the writer's turn in `lane` (see [`Self::enter`]).
    async fn turn(self: &Arc<Self>, lane: Lane) -> Pass {
        loop {
            let turn = {
                let mut state = self.lock();
                if lane == Lane::Interactive {
                    state.last_api = Some(Instant::now());
                }
                if !state.busy {
                    state.busy = true;
                    return Pass {
                        gate: Some(self.clone()),
                    };
                }
                let (handoff, turn) = oneshot::channel();
                state.lanes[lane.index()].push_back(Waiter { handoff });
                turn
            };
            // The sender is only dropped unsent if the gate itself goes away; queue again.
            if let Ok(pass) = turn.await {
                return pass;
            }
        }
    }

    /// The write transactions begun so far.
    #[cfg(test)]
    pub(in crate::store::sqlite) fn passes(&self) -> usize {
        self.passes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes [`Self::api_active`] hold for an hour, or, with `false`, no longer hold.
    #[cfg(test)]
    pub(in crate::store::sqlite) fn set_api_active(&self, active: bool) {
        let hour = Duration::from_secs(3_600);
        self.lock().last_api = active.then(|| Instant::now() + hour);
    }

    /// Whether an API write asked for the writer within the last [`API_ACTIVE_FOR`].
    pub(in crate::store::sqlite) fn api_active(&self) -> bool {
        self.lock()
            .last_api
            .is_some_and(|at| at.elapsed() < API_ACTIVE_FOR)
    }

    /// Hands the gate to the next waiter, or marks it free.
    fn release(self: Arc<Self>) {
        loop {
            let next = {
                let mut state = self.lock();
                match next_waiter(&mut state) {
                    Some(waiter) => waiter,
                    None => {
                        state.busy = false;
                        return;
                    }
                }
            };
            let pass = Pass {
                gate: Some(self.clone()),
            };
            match next.handoff.send(pass) {
                Ok(()) => return,
                // That waiter gave up; disarm the pass and try the next one.
                Err(mut unsent) => unsent.gate = None,
            }
        }
    }
}

/// The waiter to serve next: an API write unless [`INTERACTIVE_STREAK`] of them went in a row
/// while others waited; otherwise bulk and background writes alternate.
fn next_waiter(state: &mut State) -> Option<Waiter> {
    let waiting = |state: &State, lane: Lane| !state.lanes[lane.index()].is_empty();
    let others = waiting(state, Lane::Bulk) || waiting(state, Lane::Background);
    if waiting(state, Lane::Interactive) && !(others && state.streak >= INTERACTIVE_STREAK) {
        state.streak = if others { state.streak + 1 } else { 0 };
        return state.lanes[Lane::Interactive.index()].pop_front();
    }
    state.streak = 0;
    let lane = match (waiting(state, Lane::Bulk), waiting(state, Lane::Background)) {
        (true, true) if state.last_batch == Some(Lane::Bulk) => Lane::Background,
        (true, _) => Lane::Bulk,
        (false, true) => Lane::Background,
        (false, false) => return None,
    };
    state.last_batch = Some(lane);
    state.lanes[lane.index()].pop_front()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Order = Arc<Mutex<Vec<&'static str>>>;

    fn queue_len(gate: &WriteGate) -> usize {
        gate.lock().lanes.iter().map(VecDeque::len).sum()
    }

    /// Spawns a writer that records `name` once it gets the gate, and waits until it queues.
    async fn queued(
        gate: &Arc<WriteGate>,
        lane: Lane,
        order: &Order,
        name: &'static str,
    ) -> tokio::task::JoinHandle<()> {
        let before = queue_len(gate);
        let (gate2, order) = (gate.clone(), order.clone());
        let task = tokio::spawn(async move {
            let _pass = gate2.enter(lane).await;
            order.lock().unwrap().push(name);
        });
        while queue_len(gate) == before {
            tokio::task::yield_now().await;
        }
        task
    }

    #[tokio::test]
    async fn interactive_writes_go_before_queued_batches() {
        let gate = Arc::new(WriteGate::default());
        let order = Order::default();
        let held = gate.enter(Lane::Interactive).await;
        let background = queued(&gate, Lane::Background, &order, "background").await;
        let bulk = queued(&gate, Lane::Bulk, &order, "bulk").await;
        let interactive = queued(&gate, Lane::Interactive, &order, "interactive").await;
        drop(held);
        for task in [background, bulk, interactive] {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["interactive", "bulk", "background"]
        );
    }

    #[tokio::test]
    async fn a_waiting_batch_goes_after_a_streak_of_api_writes() {
        let gate = Arc::new(WriteGate::default());
        let order = Order::default();
        let held = gate.enter(Lane::Interactive).await;
        let background = queued(&gate, Lane::Background, &order, "background").await;
        let mut api = Vec::new();
        for _ in 0..INTERACTIVE_STREAK + 2 {
            api.push(queued(&gate, Lane::Interactive, &order, "api").await);
        }
        drop(held);
        background.await.unwrap();
        for task in api {
            task.await.unwrap();
        }
        let order = order.lock().unwrap();
        let position = order.iter().position(|&name| name == "background");
        assert_eq!(position, Some(INTERACTIVE_STREAK as usize));
    }

    #[tokio::test]
    async fn bulk_and_background_writes_take_turns() {
        let gate = Arc::new(WriteGate::default());
        let order = Order::default();
        let held = gate.enter(Lane::Background).await;
        let mut tasks = Vec::new();
        for _ in 0..2 {
            tasks.push(queued(&gate, Lane::Bulk, &order, "bulk").await);
        }
        for _ in 0..2 {
            tasks.push(queued(&gate, Lane::Background, &order, "background").await);
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["bulk", "background", "bulk", "background"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn api_writes_mark_the_gate_active_for_a_while() {
        let gate = Arc::new(WriteGate::default());
        assert!(!gate.api_active(), "no API write yet");
        drop(gate.enter(Lane::Background).await);
        drop(gate.enter(Lane::Bulk).await);
        assert!(!gate.api_active(), "batch writes are not API writes");
        let held = gate.enter(Lane::Background).await;
        let api = queued(&gate, Lane::Interactive, &Order::default(), "api").await;
        assert!(gate.api_active(), "an API write that waits counts");
        drop(held);
        api.await.unwrap();
        tokio::time::advance(API_ACTIVE_FOR - Duration::from_millis(1)).await;
        assert!(gate.api_active());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!gate.api_active(), "quiet again {API_ACTIVE_FOR:?} later");
        drop(gate.enter(Lane::Interactive).await);
        assert!(gate.api_active());
    }

    #[tokio::test]
    async fn a_cancelled_wait_passes_the_gate_on() {
        let gate = Arc::new(WriteGate::default());
        let order = Order::default();
        let held = gate.enter(Lane::Background).await;
        let gone = queued(&gate, Lane::Interactive, &order, "gone").await;
        let next = queued(&gate, Lane::Background, &order, "next").await;
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        drop(held);
        next.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["next"]);
        let _again = gate.enter(Lane::Bulk).await;
        assert!(
            gate.lock().busy,
            "the gate is held again after the queue drained"
        );
    }
}
