//! The delivery loop: claim due outbox rows under a lease, mint a fresh token per attempt,
//! send, classify and record. Caps attempts in flight globally and per RP origin, wakes on new
//! rows without polling, and on shutdown finishes or hands back what it holds.
//!
//! One RP's slowness must not hold up the others (head-of-line blocking across origins):
//!
//! 1. Each origin has a learned limit on its attempts in flight (see `origin.rs`): small for a
//!    new origin, raised by answers, halved by timeouts, 429 and 503.
//! 2. The claim loop never waits for an origin. A claimed row whose origin is at its limit
//!    waits in memory for a short while ([`HOLD`]) without a global slot if the origin is
//!    moving, and is otherwise handed back to the outbox (rows gathered over claims for up to
//!    10 ms, one write per due time), due again after a delay that grows while the origin
//!    stays stuck. Either way the loop goes on to the next row.
//! 3. An attempt still running after [`SLOW_LANE_AFTER`] moves from the `max_in_flight` slots
//!    to a slow lane of as many slots again (see `attempt.rs`).
//!
//! A client with a rate limit (`backchannel_logout_rate_limit`) is paced before its rows meet
//! their origin (see [`crate::pacing`]): a claimed row whose place comes within [`HORIZON`]
//! waits for it in memory holding no slot, and comes back to the loop then; the others go
//! back to the outbox, due shortly before their place, without counting an attempt. A paced
//! row never waits in memory for its origin either: that would let it go after its place.

pub(crate) mod attempt;
mod origin;
mod recorder;

pub use origin::MAX_DEFER;

use crate::clock::SharedClock;
use crate::config::DispatchSettings;
use crate::ids::{DeliveryId, Issuer, LeaseId};
use crate::keys::KeyRing;
use crate::metrics::ClientLabels;
use crate::metrics::{LabelText, Metrics, OutcomeLabels};
use crate::outbox::{AttemptRecord, ClaimedDelivery};
use crate::pacing::Pace;
use crate::retry::{Decision, RetryPolicy};
use crate::sender::Sender;
use crate::store::Queue;
use chrono::{DateTime, Utc};
use origin::{Admission, MIN_DEFER as SHORT_DEFER, Origins};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most rows claimed in one round trip.
pub(crate) const CLAIM_BATCH: usize = 128;

/// Free slots worth a claim while attempts are in flight: a quarter of the in-flight cap.
fn claim_step(max_in_flight: usize) -> u32 {
    u32::try_from((max_in_flight / 4).clamp(1, CLAIM_BATCH)).unwrap_or(1)
}

/// Longest idle wait before looking at the outbox again, in case a wake-up was missed.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Idle wait when rows are due but none could be claimed (e.g. their client is paused).
const BLOCKED_IDLE: Duration = Duration::from_secs(1);
/// How far ahead a rate-limited client's row may take its place: one whose place is nearer
/// waits for it in memory (holding its lease, far longer, and nothing else); the others go
/// back to the outbox, due this long before their place. At most a quarter of the lease.
pub(crate) const HORIZON: Duration = Duration::from_millis(100);
/// How late after its place a paced row may still go. A row the claim loop reaches later
/// (all slots busy, say) goes back to the outbox unattempted and takes a new place: sent
/// late, it would go closer to the rows after it than the pace allows. Its old place is
/// spent, which only slows the client.
const PLACE_TOLERANCE: Duration = Duration::from_millis(10);

/// What the dispatcher is built from.
pub struct DispatcherParts {
    /// The outbox.
    pub outbox: Arc<dyn Queue>,
    /// Signing keys (hot-reloadable).
    pub keys: Arc<KeyRing>,
    /// The HTTP sender.
    pub sender: Sender,
    /// Time.
    pub clock: SharedClock,
    /// The `iss` of every token.
    pub issuer: Issuer,
    /// Tuning.
    pub settings: DispatchSettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// State shared by the loop and its attempt tasks.
pub(crate) struct Inner {
    outbox: Arc<dyn Queue>,
    keys: Arc<KeyRing>,
    sender: Sender,
    /// The keys of clients whose tokens are encrypted, fetched through `sender`.
    client_keys: crate::jwe::ClientKeys,
    clock: SharedClock,
    issuer: Issuer,
    lease: chrono::Duration,
    token_lifetime: chrono::Duration,
    /// Whether tokens carry the end's `txn`.
    logout_token_txn: bool,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    slow_lane: Arc<Semaphore>,
    /// Places for rows waiting in memory for their origin (as many as `max_in_flight`).
    waiting: Arc<Semaphore>,
    max_in_flight: usize,
    max_per_origin: usize,
    /// How far ahead a paced row may take its place.
    horizon: Duration,
    /// Paced rows whose place has come, on their way back to the claim loop.
    ready: UnboundedSender<(ClaimedDelivery, DateTime<Utc>)>,
    /// Signalled when a paced row is sent to `ready`.
    ready_signal: Notify,
    shutdown: CancellationToken,
}

/// The dispatcher. Several may run against one store; leases keep them apart.
pub struct Dispatcher {
    inner: Arc<Inner>,
    attempts: Option<tokio::runtime::Handle>,
    max_idle: Duration,
    /// Woken after each batch of attempt results is written.
    recorded: Arc<Notify>,
    ready: Option<UnboundedReceiver<(ClaimedDelivery, DateTime<Utc>)>>,
}

/// Claims given back together: the rows' ids and leases.
type Leases = Vec<(DeliveryId, LeaseId)>;

/// Rows handed back gathered over claims before one write per due time: at most this many.
const HAND_BACK_BATCH: usize = 2 * CLAIM_BATCH;
/// ... and for at most this long. A handed-back row is due at least
/// [`origin::MIN_DEFER`] later, so a short wait delays no row, and during a backlog of rows of
/// full origins it saves a write transaction per claim.
const HAND_BACK_LINGER: Duration = Duration::from_millis(10);

/// Claimed rows to hand back unattempted, grouped by the time they are due again.
#[derive(Default)]
struct HandBack {
    groups: Vec<(DateTime<Utc>, Leases)>,
    /// Rows whose age budget ends before they would be due again: they fail unattempted, as
    /// a retry past the budget would (see [`crate::retry::decide`]), so a slow origin's
    /// backlog stays bounded by its arrival rate times the budget.
    spent: Leases,
    /// Rows held back by their client's rate limit, each with the time it is due again.
    paced: Vec<(DeliveryId, LeaseId, DateTime<Utc>)>,
    /// Rows held back by their client's rate limit whose age budget ends first.
    paced_spent: Leases,
    rows: usize,
    since: Option<tokio::time::Instant>,
}

impl HandBack {
    /// Gathers `row` to be due again at `due`. A row deferred because its origin has no room
    /// (`budget` is its age budget then) fails instead if its budget ends before `due`; a row
    /// given back for any other reason (no free slot, shutdown) is due at once and keeps the
    /// attempt it was claimed for.
    fn push(&mut self, row: &ClaimedDelivery, due: DateTime<Utc>, budget: Option<Duration>) {
        let lease = (row.delivery.id.clone(), row.lease.clone());
        if budget.is_some_and(|max_age| past_budget(row, due, max_age, AT_ORIGIN)) {
            self.spent.push(lease);
        } else {
            match self.groups.iter_mut().find(|(at, _)| *at == due) {
                Some((_, rows)) => rows.push(lease),
                None => self.groups.push((due, vec![lease])),
            }
        }
        self.rows += 1;
        self.since.get_or_insert_with(tokio::time::Instant::now);
    }

    /// Gathers `row`, held back by its client's rate limit, to be due again at `due`; it fails
    /// instead if its age budget (`max_age`) ends before then.
    fn push_paced(&mut self, row: &ClaimedDelivery, due: DateTime<Utc>, max_age: Duration) {
        let lease = (row.delivery.id.clone(), row.lease.clone());
        if past_budget(row, due, max_age, AT_RATE_LIMIT) {
            self.paced_spent.push(lease);
        } else {
            self.paced.push((lease.0, lease.1, due));
        }
        self.rows += 1;
        self.since.get_or_insert_with(tokio::time::Instant::now);
    }

    /// Whether the rows gathered should be written now.
    fn ripe(&self) -> bool {
        self.rows >= HAND_BACK_BATCH
            || self
                .since
                .is_some_and(|since| since.elapsed() >= HAND_BACK_LINGER)
    }
}

/// What a row failed by [`past_budget`] was waiting for: room at its RP's origin.
const AT_ORIGIN: &str = "room at the RP's origin";
/// ... or its place under its client's rate limit.
const AT_RATE_LIMIT: &str = "its place under the client's rate limit";

/// Whether `row`, due again at `due`, would be due after its age budget ends; logs it then.
/// `waiting` says what for ([`AT_ORIGIN`] or [`AT_RATE_LIMIT`]).
fn past_budget(
    row: &ClaimedDelivery,
    due: DateTime<Utc>,
    max_age: Duration,
    waiting: &str,
) -> bool {
    let deadline = row
        .budget_started_at
        .checked_add_signed(chrono_duration(max_age))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let past = due > deadline;
    if past {
        tracing::warn!(
            delivery_id = %row.delivery.id,
            client_id = %row.delivery.client_id,
            attempts = row.delivery.attempts,
            waiting,
            "delivery failed: its age budget ran out while it waited"
        );
    }
    past
}

/// The last error of a row failed by [`past_budget`] while `waiting`.
fn budget_reason(max_age: Duration, waiting: &str) -> String {
    format!(
        "age budget of {}s exhausted while waiting for {waiting}",
        max_age.as_secs()
    )
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Dispatcher {
    /// A dispatcher that stops claiming when `shutdown` is cancelled.
    pub fn new(parts: DispatcherParts, shutdown: CancellationToken) -> Self {
        let settings = parts.settings;
        let (ready, ready_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                outbox: parts.outbox,
                keys: parts.keys,
                client_keys: crate::jwe::ClientKeys::new(parts.sender.clone(), parts.clock.clone()),
                sender: parts.sender,
                clock: parts.clock,
                issuer: parts.issuer,
                lease: chrono_duration(settings.lease),
                token_lifetime: chrono_duration(settings.token_lifetime),
                logout_token_txn: settings.logout_token_txn,
                retry: settings.retry,
                metrics: parts.metrics,
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                slow_lane: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                waiting: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                max_in_flight: settings.max_in_flight.max(1),
                max_per_origin: settings.max_per_origin.max(1),
                horizon: HORIZON.min(settings.lease / 4),
                ready,
                ready_signal: Notify::new(),
                shutdown,
            }),
            attempts: None,
            max_idle: MAX_IDLE,
            recorded: Arc::new(Notify::new()),
            ready: Some(ready_rx),
        }
    }

    /// Wakes every waiter of `recorded` after each batch of attempt results is written, so a
    /// request waiting for its deliveries ([`crate::Waits`]) reads them again at once.
    pub fn signal_recorded(mut self, recorded: Arc<Notify>) -> Self {
        self.recorded = recorded;
        self
    }

    /// Sets the longest idle wait (5 s by default), the fallback for a missed
    /// wake-up. Tests lengthen it so that only a wake-up can start a delivery in time.
    pub fn max_idle(mut self, max_idle: Duration) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// Runs the attempts (minting, signing and the POST) on `runtime` rather than on the
    /// caller's. Claims, results and the API then stay on a runtime whose queue is short, so a
    /// store transaction or an API request is not polled behind hundreds of signing tasks.
    pub fn run_attempts_on(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.attempts = Some(runtime);
        self
    }

    /// Runs until shutdown, then waits for attempts in flight, hands back rows it could not
    /// start, and writes every result before returning.
    pub async fn run(mut self) {
        let Some(mut ready) = self.ready.take() else {
            return;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(recorder::CHANNEL);
        let recorder = tokio::spawn(recorder::run(
            self.inner.outbox.clone(),
            rx,
            self.recorded.clone(),
        ));
        let mut tasks = JoinSet::new();
        let mut origins = Origins::new(self.inner.max_per_origin);
        let mut handing = HandBack::default();
        let step = claim_step(self.inner.max_in_flight) as usize;
        while let Some(mut slots) = self.free_slots().await {
            while tasks.try_join_next().is_some() {}
            let placed = self.take_ready(&mut ready, slots.len(), &mut handing);
            if !placed.is_empty() {
                // Paced rows whose place has come go first, each on a slot.
                let rest = slots.split_off(placed.len());
                self.start(placed, slots, &mut origins, &mut tasks, &tx, &mut handing);
                slots = rest;
                if slots.is_empty() {
                    if handing.ripe() || self.inner.in_flight.available_permits() < step {
                        self.hand_back(&mut handing, &mut tasks);
                    }
                    continue;
                }
            }
            let claimed_at = self.inner.clock.now();
            let claimed = self.claim(claimed_at, slots.len()).await;
            if claimed.is_empty() {
                drop(slots);
                self.hand_back(&mut handing, &mut tasks);
                self.idle(claimed_at).await;
                continue;
            }
            let claimed_rows = claimed.len();
            let paced_before = handing.rows;
            let claimed = self.pace(claimed, &mut handing, &mut tasks).await;
            let before = handing.rows;
            let paced = before - paced_before;
            self.start(claimed, slots, &mut origins, &mut tasks, &tx, &mut handing);
            let deferred = handing.rows - before;
            tracing::debug!(
                claimed = claimed_rows,
                handed_back = deferred,
                paced,
                "claimed due deliveries"
            );
            self.inner.metrics.origin_deferrals.inc_by(deferred as u64);
            // Write now if the next wait for slots may be long.
            if handing.ripe() || self.inner.in_flight.available_permits() < step {
                self.hand_back(&mut handing, &mut tasks);
            }
        }
        self.hand_back(&mut handing, &mut tasks);
        while tasks.join_next().await.is_some() {}
        // Paced rows whose place came as the loop stopped: back at once, unattempted.
        let now = self.inner.clock.now();
        while let Ok((row, _)) = ready.try_recv() {
            handing.push(&row, now, None);
        }
        if handing.rows > 0 {
            self.inner
                .clone()
                .hand_back_all(std::mem::take(&mut handing))
                .await;
        }
        drop(tx);
        if recorder.await.is_err() {
            tracing::error!("result recorder stopped abnormally");
        }
        tracing::info!("dispatcher stopped");
    }

    /// Writes the rows gathered in `handing` back to the outbox, in the background.
    fn hand_back(&self, handing: &mut HandBack, tasks: &mut JoinSet<()>) {
        if handing.rows > 0 {
            let rows = std::mem::take(handing);
            tasks.spawn(self.inner.clone().hand_back_all(rows));
        }
    }

    /// Starts an attempt for each claimed row whose origin admits one, each with one of
    /// `slots` (those left over go back), or a wait for its origin; adds the other rows to
    /// `deferred`, due when their origin is likely to have room.
    fn start(
        &self,
        claimed: Vec<ClaimedDelivery>,
        slots: Vec<OwnedSemaphorePermit>,
        origins: &mut Origins,
        tasks: &mut JoinSet<()>,
        results: &tokio::sync::mpsc::Sender<crate::outbox::AttemptResult>,
        deferred: &mut HandBack,
    ) {
        let now = tokio::time::Instant::now();
        let due_now = self.inner.clock.now();
        let max_age = self.inner.retry.max_age();
        let mut slots = slots.into_iter();
        for row in claimed {
            let admission = match row.client.logout_url() {
                Some(url) => origins.admit(url, now),
                None => Admission::Full(Duration::ZERO),
            };
            match (admission, slots.next()) {
                (Admission::Admitted(origin), Some(slot)) => {
                    let attempt =
                        attempt::run(self.inner.clone(), row, slot, origin, results.clone());
                    self.spawn(tasks, attempt);
                }
                (Admission::Wait(wait), _) if row.client.rate_limit().is_some() => {
                    // A paced row goes at its place or not at all: a wait would let it go
                    // later, closer to the next row than the pace allows.
                    drop(wait);
                    let due = due_now + chrono_duration(SHORT_DEFER);
                    deferred.push(&row, due, Some(max_age));
                }
                (Admission::Wait(wait), _) => {
                    match self.inner.waiting.clone().try_acquire_owned() {
                        Ok(place) => {
                            let inner = self.inner.clone();
                            let waiting =
                                attempt::run_after_wait(inner, row, wait, place, results.clone());
                            self.spawn(tasks, waiting);
                        }
                        Err(_) => {
                            let due = due_now + chrono_duration(SHORT_DEFER);
                            deferred.push(&row, due, Some(max_age))
                        }
                    }
                }
                (Admission::Full(defer), _) => {
                    deferred.push(&row, due_now + chrono_duration(defer), Some(max_age));
                }
                (Admission::Admitted(_), None) => {
                    // Never more rows than slots; were it so, the row waits for the next look.
                    deferred.push(&row, due_now, None);
                }
            }
        }
    }

    /// Paces the claimed rows of rate-limited clients (one store round trip per such client;
    /// nothing at all when no row has a limit) and returns the rows that may go now. A row
    /// whose place is a little ahead waits for it in a task of its own (holding no slot) and
    /// then comes back through `ready`; the others are gathered in `handing`, due again
    /// shortly before their place.
    async fn pace(
        &self,
        claimed: Vec<ClaimedDelivery>,
        handing: &mut HandBack,
        tasks: &mut JoinSet<()>,
    ) -> Vec<ClaimedDelivery> {
        if !claimed.iter().any(|row| row.client.rate_limit().is_some()) {
            return claimed;
        }
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut clients = Vec::<PacedClient>::new();
        for row in claimed
            .iter()
            .filter(|row| row.client.rate_limit().is_some())
        {
            match clients
                .iter_mut()
                .find(|c| c.id() == row.client.client_id.as_str())
            {
                Some(client) => client.rows += 1,
                None => clients.push(PacedClient::new(row, now)),
            }
        }
        for client in &mut clients {
            let Some(limit) = client.row.rate_limit() else {
                continue;
            };
            let id = &client.row.client_id;
            client.pace = match inner
                .outbox
                .pace(id, limit, inner.clock.as_ref(), inner.horizon, client.rows)
                .await
            {
                Ok(pace) => pace,
                Err(err) => {
                    tracing::warn!(
                        client_id = %id,
                        error = %crate::error::chain(&err),
                        "could not read the client's pacing state; its rows are held back"
                    );
                    Pace::hold(now + chrono_duration(BLOCKED_IDLE))
                }
            };
        }
        let max_age = inner.retry.max_age();
        let now = inner.clock.now();
        let mut go = Vec::with_capacity(claimed.len());
        for row in claimed {
            let Some(client) = clients
                .iter_mut()
                .find(|c| c.id() == row.client.client_id.as_str())
            else {
                go.push(row);
                continue;
            };
            if client.placed < client.pace.go {
                let place = client.pace.slot(client.placed);
                client.placed += 1;
                if place <= now {
                    go.push(row);
                } else {
                    tasks.spawn(inner.clone().wait_for_place(row, place));
                }
            } else {
                let due = client.pace.due(client.held);
                client.held += 1;
                handing.push_paced(&row, due, max_age);
            }
        }
        for client in clients.iter().filter(|c| c.held > 0) {
            inner
                .metrics
                .pacing_deferrals
                .get_or_create(&ClientLabels {
                    client_id: LabelText::from(client.id()),
                })
                .inc_by(client.held as u64);
        }
        go
    }

    fn spawn(&self, tasks: &mut JoinSet<()>, attempt: impl Future<Output = ()> + Send + 'static) {
        match &self.attempts {
            Some(runtime) => tasks.spawn_on(attempt, runtime),
            None => tasks.spawn(attempt),
        };
    }

    /// Waits for free in-flight slots and takes up to a batch; `None` on shutdown. While
    /// attempts are in flight it waits for [`claim_step`] free slots rather than one, so that
    /// claims (one write transaction each) come in batches instead of one row per finished
    /// attempt, while at least three quarters of the slots stay busy.
    async fn free_slots(&self) -> Option<Vec<OwnedSemaphorePermit>> {
        let in_flight = &self.inner.in_flight;
        let step = claim_step(self.inner.max_in_flight);
        let mut first = tokio::select! {
            biased;
            _ = self.inner.shutdown.cancelled() => return None,
            permits = in_flight.clone().acquire_many_owned(step) => permits.ok()?,
        };
        let mut slots = Vec::with_capacity(CLAIM_BATCH);
        while first.num_permits() > 1 {
            slots.extend(first.split(1));
        }
        slots.push(first);
        while slots.len() < CLAIM_BATCH {
            match in_flight.clone().try_acquire_owned() {
                Ok(permit) => slots.push(permit),
                Err(_) => break,
            }
        }
        Some(slots)
    }

    async fn claim(&self, now: DateTime<Utc>, limit: usize) -> Vec<ClaimedDelivery> {
        let inner = &self.inner;
        match inner.outbox.claim_due(now, inner.lease, limit).await {
            Ok(rows) => {
                let reclaimed = rows.iter().filter(|r| r.reclaimed).count();
                inner.metrics.lease_reclaims.inc_by(reclaimed as u64);
                rows
            }
            Err(err) => {
                tracing::error!(error = %crate::error::chain(&err), "claiming due deliveries failed");
                tokio::select! {
                    _ = inner.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(BLOCKED_IDLE) => {}
                }
                Vec::new()
            }
        }
    }

    /// Sleeps until the next row is due, new rows are signalled, or shutdown. A row that
    /// became due after the empty claim at `claimed_at` (a row handed back a few milliseconds
    /// ahead, typically) is claimed at once; one that was due then but not claimable waits
    /// [`BLOCKED_IDLE`].
    async fn idle(&self, claimed_at: DateTime<Utc>) {
        let inner = &self.inner;
        let wakeup = inner.outbox.wakeup();
        let wait = match inner.outbox.next_due_at().await {
            Ok(Some(due)) => {
                let now = inner.clock.now();
                if due > now {
                    (due - now)
                        .to_std()
                        .unwrap_or(self.max_idle)
                        .min(self.max_idle)
                } else if due > crate::store::millis(claimed_at) {
                    return;
                } else {
                    BLOCKED_IDLE
                }
            }
            Ok(None) => self.max_idle,
            Err(_) => BLOCKED_IDLE,
        };
        tracing::debug!(wait_ms = wait.as_millis() as u64, "dispatcher idle");
        tokio::select! {
            _ = inner.shutdown.cancelled() => {}
            _ = wakeup.notified() => {}
            _ = inner.ready_signal.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Dispatcher {
    /// Up to `limit` paced rows whose place has come; those reached more than
    /// [`PLACE_TOLERANCE`] after their place go to `handing`, due at once.
    fn take_ready(
        &self,
        ready: &mut UnboundedReceiver<(ClaimedDelivery, DateTime<Utc>)>,
        limit: usize,
        handing: &mut HandBack,
    ) -> Vec<ClaimedDelivery> {
        let mut rows = Vec::new();
        let mut now = None;
        while rows.len() < limit {
            let Ok((row, place)) = ready.try_recv() else {
                break;
            };
            let now = *now.get_or_insert_with(|| self.inner.clock.now());
            if now - place > chrono_duration(PLACE_TOLERANCE) {
                handing.push(&row, now, None);
                self.inner
                    .metrics
                    .pacing_deferrals
                    .get_or_create(&ClientLabels {
                        client_id: LabelText::from(row.client.client_id.as_str()),
                    })
                    .inc();
            } else {
                rows.push(row);
            }
        }
        rows
    }
}

/// One rate-limited client among the rows of a claim: its pace and how it was used.
struct PacedClient {
    /// The registration, as claimed.
    row: Arc<crate::clients::RelyingParty>,
    rows: usize,
    pace: Pace,
    placed: usize,
    held: usize,
}

impl PacedClient {
    fn new(row: &ClaimedDelivery, now: DateTime<Utc>) -> Self {
        Self {
            row: row.client.clone(),
            rows: 1,
            pace: Pace::hold(now),
            placed: 0,
            held: 0,
        }
    }

    fn id(&self) -> &str {
        self.row.client_id.as_str()
    }
}

impl Inner {
    /// Waits, holding only its lease, until `place`, the time a paced row may go, then hands
    /// the row to the claim loop; hands it back unattempted on shutdown.
    async fn wait_for_place(self: Arc<Self>, row: ClaimedDelivery, place: DateTime<Utc>) {
        let wait = (place - self.clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {
                self.hand_back(&row, self.clock.now()).await;
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        match self.ready.send((row, place)) {
            Ok(()) => self.ready_signal.notify_one(),
            Err(unsent) => self.hand_back(&unsent.0.0, self.clock.now()).await,
        }
    }

    /// Returns claimed rows unattempted, one write per due time (one in all for paced rows).
    async fn hand_back_all(self: Arc<Self>, rows: HandBack) {
        if !rows.paced_spent.is_empty() {
            let reason = budget_reason(self.retry.max_age(), AT_RATE_LIMIT);
            let now = self.clock.now();
            if let Err(err) = self.outbox.give_up(&rows.paced_spent, &reason, now).await {
                tracing::warn!(
                    rows = rows.paced_spent.len(),
                    error = %crate::error::chain(&err),
                    "could not fail rows whose budget ran out; they return when their lease expires"
                );
            }
        }
        if let Err(err) = self.outbox.defer(&rows.paced).await {
            tracing::warn!(
                rows = rows.paced.len(),
                error = %crate::error::chain(&err),
                "could not hand paced rows back; they return when their lease expires"
            );
        }
        if !rows.spent.is_empty() {
            let reason = budget_reason(self.retry.max_age(), AT_ORIGIN);
            let now = self.clock.now();
            if let Err(err) = self.outbox.give_up(&rows.spent, &reason, now).await {
                tracing::warn!(
                    rows = rows.spent.len(),
                    error = %crate::error::chain(&err),
                    "could not fail rows whose budget ran out; they return when their lease expires"
                );
            }
        }
        for (due, leases) in rows.groups {
            if let Err(err) = self.outbox.release(&leases, due).await {
                tracing::warn!(
                    rows = leases.len(),
                    error = %crate::error::chain(&err),
                    "could not hand rows back; they return when their lease expires"
                );
            }
        }
    }

    /// Returns a claimed row unattempted, due at `due`.
    async fn hand_back(&self, row: &ClaimedDelivery, due: DateTime<Utc>) {
        self.give_back(row, due, false).await;
    }

    /// Returns a row whose origin had no room, due at `due`, or fails it if its age budget
    /// ends before then.
    async fn defer(&self, row: &ClaimedDelivery, due: DateTime<Utc>) {
        self.give_back(row, due, true).await;
    }

    async fn give_back(&self, row: &ClaimedDelivery, due: DateTime<Utc>, budget: bool) {
        let lease = [(row.delivery.id.clone(), row.lease.clone())];
        if budget && past_budget(row, due, self.retry.max_age(), AT_ORIGIN) {
            let reason = budget_reason(self.retry.max_age(), AT_ORIGIN);
            let now = self.clock.now();
            if let Err(err) = self.outbox.give_up(&lease, &reason, now).await {
                tracing::warn!(
                    delivery_id = %row.delivery.id,
                    error = %crate::error::chain(&err),
                    "could not fail a row whose budget ran out; it returns when its lease expires"
                );
            }
            return;
        }
        if let Err(err) = self.outbox.release(&lease, due).await {
            tracing::warn!(
                delivery_id = %row.delivery.id,
                error = %crate::error::chain(&err),
                "could not hand a row back; it returns when its lease expires"
            );
        }
    }

    /// Logs and counts one attempt. Never logs the token or metadata.
    fn observe(
        &self,
        row: &ClaimedDelivery,
        attempt: u32,
        record: &AttemptRecord,
        decision: &Decision,
        latency: Duration,
    ) {
        let outcome = attempt::outcome_label(decision);
        self.metrics
            .attempts
            .get_or_create(&OutcomeLabels {
                outcome,
                client_id: LabelText::from(row.client.client_id.as_str()),
            })
            .inc();
        self.metrics.attempt_seconds.observe(latency.as_secs_f64());
        tracing::info!(
            delivery_id = %row.delivery.id,
            client_id = %row.client.client_id,
            session_id = %row.delivery.session_id,
            initiator = %row.delivery.initiator,
            attempt,
            status = record.status,
            error = record.error.as_deref(),
            latency_ms = record.latency_ms,
            jti = %record.jti,
            outcome,
            "delivery attempt"
        );
    }
}
