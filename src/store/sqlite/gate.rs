//! Who writes next on SQLite's single writer connection.
//!
//! Every write transaction passes through one [`WriteGate`]. While a transaction runs, the
//! others wait in one of three lanes, and the next to go is taken from the most urgent lane:
//! a caller waiting on a single API request first, then the chunks of a bulk termination, then
//! the dispatcher's and the pruner's batches. A waiter of a less urgent lane that has waited
//! longer than its lane's limit goes first anyway, so no lane starves. Only the holder of the
//! gate asks the pool for the connection, so the pool's own first-come queue never reorders
//! this.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How urgent a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// One API request is waiting for it.
    Interactive,
    /// One chunk of a many-session termination (an API caller waits for all of them).
    Bulk,
    /// Dispatcher claims and results, pruning: only throughput depends on it.
    Background,
}

impl Lane {
    /// Lanes in the order they are served.
    const ALL: [Lane; 3] = [Lane::Interactive, Lane::Bulk, Lane::Background];

    fn index(self) -> usize {
        match self {
            Lane::Interactive => 0,
            Lane::Bulk => 1,
            Lane::Background => 2,
        }
    }

    /// How long a waiter of this lane lets more urgent lanes go first.
    fn patience(self) -> Duration {
        match self {
            Lane::Interactive => Duration::ZERO,
            Lane::Bulk => Duration::from_millis(100),
            Lane::Background => Duration::from_millis(50),
        }
    }
}

struct Waiter {
    since: Instant,
    handoff: oneshot::Sender<Pass>,
}

#[derive(Default)]
struct State {
    busy: bool,
    lanes: [VecDeque<Waiter>; 3],
}

/// The gate in front of the writer connection.
#[derive(Default)]
pub(super) struct WriteGate {
    state: Mutex<State>,
}

/// The right to write, held for the life of one transaction; dropping it lets the next
/// waiter in.
pub(super) struct Pass {
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
    pub(super) async fn enter(self: &Arc<Self>, lane: Lane) -> Pass {
        loop {
            let turn = {
                let mut state = self.lock();
                if !state.busy {
                    state.busy = true;
                    return Pass {
                        gate: Some(self.clone()),
                    };
                }
                let (handoff, turn) = oneshot::channel();
                state.lanes[lane.index()].push_back(Waiter {
                    since: Instant::now(),
                    handoff,
                });
                turn
            };
            // The sender is only dropped unsent if the gate itself goes away; queue again.
            if let Ok(pass) = turn.await {
                return pass;
            }
        }
    }

    /// Hands the gate to the next waiter, or marks it free.
    fn release(self: Arc<Self>) {
        loop {
            let next = {
                let mut state = self.lock();
                match next_waiter(&mut state, Instant::now()) {
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

/// The waiter to serve next: the front of a lane that has run out of patience (the longest
/// waiting of those), else the front of the most urgent non-empty lane.
fn next_waiter(state: &mut State, now: Instant) -> Option<Waiter> {
    let overdue = Lane::ALL
        .iter()
        .filter_map(|lane| {
            let front = state.lanes[lane.index()].front()?;
            let waited = now.saturating_duration_since(front.since);
            (waited > lane.patience() && lane.patience() > Duration::ZERO)
                .then_some((front.since, *lane))
        })
        .min_by_key(|(since, _)| *since)
        .map(|(_, lane)| lane);
    let lane = overdue.or_else(|| {
        Lane::ALL
            .into_iter()
            .find(|lane| !state.lanes[lane.index()].is_empty())
    })?;
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_waited_past_its_patience_goes_first() {
        let gate = Arc::new(WriteGate::default());
        let order = Order::default();
        let held = gate.enter(Lane::Interactive).await;
        let background = queued(&gate, Lane::Background, &order, "background").await;
        tokio::time::advance(Lane::Background.patience() * 2).await;
        let interactive = queued(&gate, Lane::Interactive, &order, "interactive").await;
        drop(held);
        background.await.unwrap();
        interactive.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["background", "interactive"]);
    }

    #[tokio::test(start_paused = true)]
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
