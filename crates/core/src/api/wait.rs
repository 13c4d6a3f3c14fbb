//! The bounded wait of an end request for its RPs (`wait_ms`): after the end and its rows are
//! committed, the request reads the rows of that end from the store until each has an answer
//! (a final state, or the outcome of a first attempt) or the time is up, and the 202 lists
//! where each stands.
//!
//! The rows are read from the store, not from this process's memory, because the node that
//! waits need not be the one delivering (several nodes on PostgreSQL). A read follows the
//! batches of results this node's dispatcher records (the [`Waits::recorded`] signal, at most
//! one read per [`MIN_READ_SPACING`]), and otherwise a re-check after [`RECHECK_INTERVAL`],
//! growing to [`MAX_RECHECK_INTERVAL`], for the progress of other nodes. At most
//! `max_waiting_requests` requests wait at once; one that finds no room answers at once.

use super::ApiError;
use crate::config::DEFAULT_MAX_WAITING_REQUESTS;
use crate::ids::{ClientId, DeliveryId, EventId};
use crate::outbox::{DeliveryProgress, DeliveryState};
use crate::store::Deliveries;
use crate::terminate::EndTarget;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

/// The longest wait a request may ask for, in milliseconds (`wait_ms` is 0 to this).
pub const MAX_WAIT_MS: u64 = 10_000;
/// How soon a waiting request first reads its rows again when this node records nothing: the
/// delay before it sees another node's progress. Each further re-check waits half as long
/// again, up to [`MAX_RECHECK_INTERVAL`], so a long wait on a slow RP costs few reads.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(25);
/// The longest gap between two re-checks of a waiting request.
pub(super) const MAX_RECHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The shortest gap between two reads of one waiting request, however often this node records
/// results: under a mass logout the recorder signals many times a second, and a request reads
/// at most once per this interval however many batches woke it.
pub(super) const MIN_READ_SPACING: Duration = Duration::from_millis(5);
/// Most deliveries listed in `results`; the wait covers every row all the same, and
/// `results_omitted` says how many were left out.
pub const MAX_LISTED_RESULTS: usize = 1000;

/// What the end requests that wait share: the bound on how many wait at once, and the signal
/// the dispatcher gives after each batch of results it records.
pub struct Waits {
    permits: Arc<Semaphore>,
    recorded: Arc<Notify>,
}

impl Default for Waits {
    /// [`DEFAULT_MAX_WAITING_REQUESTS`] at once.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WAITING_REQUESTS)
    }
}

impl Waits {
    /// At most `max` requests waiting at once (0: none ever waits).
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            recorded: Arc::new(Notify::new()),
        }
    }

    /// The signal to give after attempt results are recorded (see
    /// [`crate::Dispatcher::signal_recorded`]); it wakes every waiting request.
    pub fn recorded(&self) -> Arc<Notify> {
        self.recorded.clone()
    }

    /// A place to wait, or `None` when every one is taken.
    fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// How long an end request waits for its RPs, validated: 1 to [`MAX_WAIT_MS`] ms. `None`
/// (absent or 0) is no wait at all.
pub(super) type WaitFor = Option<Duration>;

/// The 400 for a `wait_ms` out of range or not an integer.
fn refusal(body: bool) -> ApiError {
    let message = format!("wait_ms must be an integer from 0 to {MAX_WAIT_MS}");
    if body {
        ApiError::invalid_body(message)
    } else {
        ApiError::invalid_query(message)
    }
}

/// `wait_ms` from a JSON body (already an integer of the right sign there).
pub(super) fn from_body(wait_ms: Option<u64>) -> Result<WaitFor, ApiError> {
    match wait_ms {
        None | Some(0) => Ok(None),
        Some(ms) if ms <= MAX_WAIT_MS => Ok(Some(Duration::from_millis(ms))),
        Some(_) => Err(refusal(true)),
    }
}

/// The query of the end routes other than `POST /logout-events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitQuery {
    /// Wait up to this many milliseconds (0 to 10000) for every delivery of this end to be
    /// delivered, failed, cancelled or attempted once, and list them in `results`. Absent or 0:
    /// answer as soon as the end is committed.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 10000)]
    wait_ms: Option<String>,
}

impl WaitQuery {
    /// The wait asked for: the decimal digits of an integer up to [`MAX_WAIT_MS`], nothing
    /// else (no sign, no fraction, no blank).
    pub(super) fn wait(&self) -> Result<WaitFor, ApiError> {
        let Some(text) = &self.wait_ms else {
            return Ok(None);
        };
        if text.is_empty() || text.len() > 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refusal(false));
        }
        let ms: u64 = text.parse().map_err(|_| refusal(false))?;
        match ms {
            0 => Ok(None),
            ms if ms <= MAX_WAIT_MS => Ok(Some(Duration::from_millis(ms))),
            _ => Err(refusal(false)),
        }
    }
}

/// One delivery of the end, as the wait last read it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryResult {
    /// The delivery (`GET /logout-deliveries/{id}` shows its history).
    id: DeliveryId,
    /// The RP it tells.
    client_id: ClientId,
    /// `delivered`, `failed` or `cancelled` when final; `pending` or `in_flight` while it goes
    /// on in the background (with `attempts` > 0 after a first answer or error that is retried).
    state: DeliveryState,
    /// Attempts made so far.
    attempts: u32,
    /// The HTTP status of the last attempt; `null` when it got none (no attempt yet, or a
    /// transport error).
    #[schema(required = true)]
    last_status: Option<u16>,
}

impl From<DeliveryProgress> for DeliveryResult {
    fn from(row: DeliveryProgress) -> Self {
        Self {
            id: row.id,
            client_id: row.client_id,
            state: row.state,
            attempts: row.attempts,
            last_status: row.last_status,
        }
    }
}

/// What a wait adds to the 202.
#[derive(Debug, Default)]
pub(super) struct WaitReport {
    /// Whether every row not held had an answer before the time was up. `false` too when the
    /// request found no room to wait (then `results` is `None`).
    pub complete: bool,
    /// The rows as last read, at most [`MAX_LISTED_RESULTS`]; `None` when it did not wait.
    pub results: Option<Vec<DeliveryResult>>,
    /// Rows left out of `results`.
    pub omitted: usize,
}

/// Waits up to `wait` for the rows of the end `event` of `target` (it wrote `deliveries` of
/// them), not waiting for those of the `held` (paused) clients, which cannot move.
pub(super) async fn wait_for_rps(
    waits: &Waits,
    deliveries: &dyn Deliveries,
    target: &EndTarget,
    event: &EventId,
    written: usize,
    held: &[ClientId],
    wait: Duration,
) -> WaitReport {
    if written == 0 {
        return WaitReport {
            complete: true,
            results: Some(Vec::new()),
            omitted: 0,
        };
    }
    let Some(_permit) = waits.try_enter() else {
        tracing::debug!(event_id = %event, "no room to wait for the RPs; answering at once");
        return WaitReport::default();
    };
    let deadline = Instant::now() + wait;
    let mut last = Vec::new();
    let mut interval = RECHECK_INTERVAL;
    loop {
        let read_at = Instant::now();
        // Registered before the read, so a batch recorded during the read still wakes us.
        let recorded = waits.recorded.notified();
        tokio::pin!(recorded);
        recorded.as_mut().enable();
        match deliveries.event_progress(target, event).await {
            Ok(rows) => {
                let complete = rows
                    .iter()
                    .all(|row| row.settled() || held.contains(&row.client_id));
                last = rows;
                if complete {
                    return report(last, true);
                }
            }
            Err(err) => tracing::warn!(
                event_id = %event,
                error = %crate::error::chain(&err),
                "reading the deliveries of a waiting request failed"
            ),
        }
        let now = Instant::now();
        if now >= deadline {
            return report(last, false);
        }
        let recheck = (read_at + interval).min(deadline);
        interval = (interval * 3 / 2).min(MAX_RECHECK_INTERVAL);
        tokio::select! {
            _ = recorded => {
                tokio::time::sleep_until((read_at + MIN_READ_SPACING).min(deadline)).await;
            }
            _ = tokio::time::sleep_until(recheck) => {}
        }
    }
}

/// The report of a wait that read `rows` last.
fn report(rows: Vec<DeliveryProgress>, complete: bool) -> WaitReport {
    let omitted = rows.len().saturating_sub(MAX_LISTED_RESULTS);
    WaitReport {
        complete,
        results: Some(
            rows.into_iter()
                .take(MAX_LISTED_RESULTS)
                .map(DeliveryResult::from)
                .collect(),
        ),
        omitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Delivery, DeliveryDetail, DeliveryFilter, DeliveryStats, OutboxStats};
    use crate::store::{Page, StoreError};
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Rows that change only when a case says so, and a count of the reads.
    #[derive(Default)]
    struct Rows {
        rows: Mutex<Vec<DeliveryProgress>>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl Deliveries for Rows {
        async fn list_deliveries(
            &self,
            _: &DeliveryFilter,
            _: Option<&str>,
            _: usize,
        ) -> Result<Page<Delivery>, StoreError> {
            unimplemented!()
        }

        async fn get_delivery(&self, _: &DeliveryId) -> Result<Option<DeliveryDetail>, StoreError> {
            unimplemented!()
        }

        async fn event_progress(
            &self,
            _: &EndTarget,
            _: &EventId,
        ) -> Result<Vec<DeliveryProgress>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.rows.lock().unwrap().clone())
        }

        async fn stats(&self, _: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
            unimplemented!()
        }

        async fn delivery_stats(
            &self,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<DeliveryStats, StoreError> {
            unimplemented!()
        }
    }

    fn progress(id: &str, client: &str, state: DeliveryState) -> DeliveryProgress {
        DeliveryProgress {
            id: DeliveryId::from(id),
            client_id: ClientId::new(client),
            state,
            attempts: 0,
            last_status: None,
        }
    }

    fn rows(rows: Vec<DeliveryProgress>) -> Arc<Rows> {
        Arc::new(Rows {
            rows: Mutex::new(rows),
            reads: AtomicUsize::new(0),
        })
    }

    async fn wait_on(
        waits: &Waits,
        store: &Rows,
        held: &[ClientId],
        ms: u64,
    ) -> (WaitReport, Duration) {
        let started = Instant::now();
        let target = EndTarget::Session(crate::ids::SessionId::new("s"));
        let n = store.rows.lock().unwrap().len();
        let report = wait_for_rps(
            waits,
            store,
            &target,
            &EventId::generate(),
            n,
            held,
            Duration::from_millis(ms),
        )
        .await;
        (report, started.elapsed())
    }

    /// The recorder's signal ends the wait at once, before the next re-check: one read before
    /// the row moved, one after.
    #[tokio::test(start_paused = true)]
    async fn the_recorders_signal_wakes_a_waiting_request() {
        let waits = Arc::new(Waits::new(4));
        let store = rows(vec![progress("d1", "c", DeliveryState::InFlight)]);
        let task = tokio::spawn({
            let (waits, store) = (waits.clone(), store.clone());
            async move { wait_on(&waits, &store, &[], 10_000).await }
        });
        while store.reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        {
            let mut rows = store.rows.lock().unwrap();
            rows[0].state = DeliveryState::Delivered;
            rows[0].attempts = 1;
            rows[0].last_status = Some(204);
        }
        waits.recorded.notify_waiters();
        let (report, took) = task.await.unwrap();
        assert!(report.complete);
        assert!(took < RECHECK_INTERVAL, "{took:?}");
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
        let results = report.results.unwrap();
        assert_eq!(results[0].last_status, Some(204));
    }

    /// Without progress the request re-reads on a growing interval until the time is up,
    /// then answers with the rows as they stand.
    #[tokio::test(start_paused = true)]
    async fn a_wait_without_progress_rechecks_on_the_interval_and_times_out() {
        let waits = Waits::new(4);
        let store = rows(vec![progress("d1", "c", DeliveryState::Pending)]);
        let (report, took) = wait_on(&waits, &store, &[], 200).await;
        assert!(!report.complete);
        assert_eq!(took, Duration::from_millis(200));
        // Reads at 0, 25, 62.5, 118.75 and (capped by the deadline) 200 ms.
        assert_eq!(store.reads.load(Ordering::SeqCst), 5);
        let results = report.results.unwrap();
        assert_eq!(results[0].state, DeliveryState::Pending);
        // The place is given back.
        assert!(waits.try_enter().is_some());
    }

    /// A recorder that signals every millisecond (a mass logout on this node) does not make a
    /// waiting request read every millisecond: at most once per `MIN_READ_SPACING`.
    #[tokio::test(start_paused = true)]
    async fn a_busy_recorder_does_not_multiply_reads() {
        let waits = Arc::new(Waits::new(4));
        let store = rows(vec![progress("d1", "c", DeliveryState::InFlight)]);
        let busy = tokio::spawn({
            let waits = waits.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    waits.recorded.notify_waiters();
                }
            }
        });
        let (report, took) = wait_on(&waits, &store, &[], 100).await;
        busy.abort();
        assert!(!report.complete);
        assert_eq!(took, Duration::from_millis(100));
        let reads = store.reads.load(Ordering::SeqCst);
        let most = 100 / MIN_READ_SPACING.as_millis() as usize + 2;
        assert!(reads > 5 && reads <= most, "{reads} reads");
    }

    /// Rows of held (paused) clients cannot move: the wait does not wait for them.
    #[tokio::test(start_paused = true)]
    async fn held_rows_are_not_waited_for() {
        let waits = Waits::new(4);
        let store = rows(vec![
            progress("d1", "held", DeliveryState::Pending),
            DeliveryProgress {
                attempts: 1,
                last_status: Some(503),
                ..progress("d2", "c", DeliveryState::Pending)
            },
        ]);
        let (report, took) = wait_on(&waits, &store, &[ClientId::new("held")], 5_000).await;
        assert!(report.complete);
        assert_eq!(took, Duration::ZERO);
        assert_eq!(report.results.unwrap().len(), 2);
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    }

    /// With every place taken the request answers at once, reading nothing.
    #[tokio::test(start_paused = true)]
    async fn a_full_server_answers_without_waiting_or_reading() {
        let waits = Waits::new(0);
        let store = rows(vec![progress("d1", "c", DeliveryState::Pending)]);
        let (report, took) = wait_on(&waits, &store, &[], 5_000).await;
        assert!(!report.complete);
        assert!(report.results.is_none());
        assert_eq!(took, Duration::ZERO);
        assert_eq!(store.reads.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn results_are_capped_and_say_how_many_were_left_out() {
        let many = (0..MAX_LISTED_RESULTS + 7)
            .map(|i| progress(&format!("d{i:05}"), "c", DeliveryState::Delivered))
            .collect();
        let report = report(many, true);
        assert_eq!(report.results.unwrap().len(), MAX_LISTED_RESULTS);
        assert_eq!(report.omitted, 7);
    }

    fn query(text: &str) -> Result<WaitFor, ApiError> {
        WaitQuery {
            wait_ms: Some(text.to_owned()),
        }
        .wait()
    }

    #[test]
    fn wait_ms_is_a_plain_integer_up_to_the_cap() {
        assert_eq!(query("0").unwrap(), None);
        assert_eq!(query("250").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(query("10000").unwrap(), Some(Duration::from_millis(10_000)));
        for bad in [
            "",
            "-1",
            "+5",
            "1.5",
            "10001",
            "1e3",
            " 5",
            "abc",
            "99999999999999999999",
        ] {
            assert!(query(bad).is_err(), "{bad:?}");
        }
        assert_eq!(from_body(None).unwrap(), None);
        assert_eq!(from_body(Some(0)).unwrap(), None);
        assert_eq!(
            from_body(Some(10_000)).unwrap(),
            Some(Duration::from_secs(10))
        );
        assert!(from_body(Some(10_001)).is_err());
    }

    #[test]
    fn a_row_is_settled_by_a_final_state_or_a_first_attempt() {
        let row = |state, attempts| DeliveryProgress {
            id: DeliveryId::from("d"),
            client_id: ClientId::new("c"),
            state,
            attempts,
            last_status: None,
        };
        assert!(!row(DeliveryState::Pending, 0).settled());
        assert!(!row(DeliveryState::InFlight, 0).settled());
        assert!(row(DeliveryState::Pending, 1).settled());
        assert!(row(DeliveryState::Cancelled, 0).settled());
        assert!(row(DeliveryState::Failed, 0).settled());
        assert!(row(DeliveryState::Delivered, 1).settled());
    }
}
