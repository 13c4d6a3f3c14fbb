//! Per-origin admission, so that slow or hung RPs cannot hold the slots that healthy ones need.
//!
//! Each origin (scheme, host, port) has a limit on its attempts in flight, learned from how
//! its attempts end, in the manner of TCP's congestion window (AIMD):
//!
//! - a new origin starts at [`INITIAL_LIMIT`], so that an origin nobody knows yet cannot take
//!   many slots before it has shown that it answers;
//! - every attempt it answers (any HTTP status but 429 and 503) raises its limit by one, up to
//!   `max_per_origin`: a fast origin doubles its limit with every round of answers;
//! - an attempt that times out, or a 429 or 503, halves it, down to [`MIN_LIMIT`];
//! - a connection error leaves it as it is.
//!
//! The claim loop asks [`Origins::admit`] for each claimed row and never waits for an origin:
//!
//! - under its limit, the attempt starts;
//! - at its limit but moving (an attempt started or ended within [`HOLD`]), the row may wait
//!   in memory, at most [`HOLD`] and without a global slot, for one of the origin's attempts
//!   to end ([`OriginWait`]); no more rows wait than the origin's limit (at least
//!   [`MIN_WAITING`]);
//! - otherwise the row goes back to the outbox, due after as long as the origin has been
//!   stuck (between [`MIN_DEFER`] and [`MAX_DEFER`]), so a hung origin's rows wait in the
//!   outbox, not in memory, and come back ever more rarely.
//!
//! The map is owned by the claim loop alone (no lock); attempts share only their origin's
//! counters, through [`OriginSlot`] and [`OriginWait`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use url::{Position, Url};

/// Attempts in flight a new origin may have.
pub(super) const INITIAL_LIMIT: u32 = 4;
/// Fewest attempts in flight an origin is ever limited to.
pub(super) const MIN_LIMIT: u32 = 1;
/// Shortest delay before a row of a full origin is due again.
pub(super) const MIN_DEFER: Duration = Duration::from_millis(20);
/// Longest delay before a row of a full origin is due again.
pub const MAX_DEFER: Duration = Duration::from_secs(10);
/// Rows that may wait in memory for a moving origin even while its limit is lower: enough
/// for the rows of a new origin claimed before its first answers raise its limit.
pub(super) const MIN_WAITING: u32 = 16;
/// Longest a claimed row waits in memory for its origin (which must have moved this
/// recently for the row to wait at all); it is then handed back to the outbox.
pub(super) const HOLD: Duration = Duration::from_millis(500);
/// Origins remembered before the idle ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

/// The map key of a URL's origin, a slice of the URL itself (no allocation): the serialized
/// URL up to its port, which the url crate writes without a default port, so one origin has
/// one key (a URL with user info gets a key of its own, which only splits its limit).
fn origin_key(url: &Url) -> &str {
    &url[..Position::AfterPort]
}

/// How an attempt ended, as far as its origin's limit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// The origin answered (any status but 429 and 503): raise the limit by one.
    Answered,
    /// A timeout, 429 or 503: halve the limit.
    Congested,
    /// Anything else (a refused connection, a signing error): leave it.
    Neutral,
}

/// One origin's counters.
#[derive(Debug)]
struct Origin {
    in_flight: AtomicU32,
    limit: AtomicU32,
    /// Rows waiting in memory for a slot.
    waiting: AtomicU32,
    max: u32,
    /// When it last made room (an attempt admitted or finished), in ms since `epoch`.
    progress_ms: AtomicU64,
    epoch: Instant,
    /// Signalled when an attempt ends.
    freed: Notify,
}

impl Origin {
    /// Takes a slot if the origin is under its limit.
    fn try_admit(self: &Arc<Self>, now: Instant) -> Option<OriginSlot> {
        let limit = self.limit.load(Ordering::Acquire);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.stamp(now);
        Some(OriginSlot {
            origin: self.clone(),
        })
    }

    fn stamp(&self, now: Instant) {
        let ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis());
        self.progress_ms
            .store(ms.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// How long a row handed back now should wait: as long as the origin has been stuck,
    /// rounded up to a power of two times [`MIN_DEFER`] (few distinct due times, so few
    /// writes), at most [`MAX_DEFER`]. Each look at a stuck origin thus at least doubles the
    /// wait of its rows, while a moving origin's rows come back within [`MIN_DEFER`].
    fn defer(&self, now: Instant) -> Duration {
        defer_for(self.stuck_for(now))
    }

    fn stuck_for(&self, now: Instant) -> Duration {
        let since = Duration::from_millis(self.progress_ms.load(Ordering::Acquire));
        now.saturating_duration_since(self.epoch + since)
    }
}

/// An admitted attempt's place in its origin; gives it back when dropped.
#[derive(Debug)]
pub(super) struct OriginSlot {
    origin: Arc<Origin>,
}

impl OriginSlot {
    /// Adjusts the origin's limit to how the attempt ended.
    pub(super) fn record(&self, signal: Signal) {
        let origin = &self.origin;
        let _ =
            origin
                .limit
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |limit| match signal {
                    Signal::Answered if limit < origin.max => Some(limit + 1),
                    Signal::Congested if limit > MIN_LIMIT => Some((limit / 2).max(MIN_LIMIT)),
                    _ => None,
                });
    }
}

impl Drop for OriginSlot {
    fn drop(&mut self) {
        self.origin.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.origin.stamp(Instant::now());
        self.origin.freed.notify_one();
    }
}

/// A row's place in the short queue of a full origin; leaves it when dropped.
#[derive(Debug)]
pub(super) struct OriginWait {
    origin: Arc<Origin>,
}

impl OriginWait {
    /// A slot of the origin, once one of its attempts has ended, if that takes at most
    /// [`HOLD`]; `Err` with the delay to hand the row back with otherwise.
    pub(super) async fn admitted(self) -> Result<OriginSlot, Duration> {
        let deadline = Instant::now() + HOLD;
        loop {
            let freed = self.origin.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.origin.try_admit(Instant::now()) {
                // Another waiter may be able to go too.
                self.origin.freed.notify_one();
                return Ok(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(self.origin.defer(Instant::now()));
            }
        }
    }
}

impl Drop for OriginWait {
    fn drop(&mut self) {
        self.origin.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`Origins::admit`] decided for one row.
#[derive(Debug)]
pub(super) enum Admission {
    /// The attempt may start; it holds this slot until it ends.
    Admitted(OriginSlot),
    /// The origin is full but moving: the row may wait for a slot.
    Wait(OriginWait),
    /// The origin is full and stuck: hand the row back, due after this delay.
    Full(Duration),
}

/// The origins the claim loop has seen, with their learned limits.
#[derive(Debug)]
pub(super) struct Origins {
    max: u32,
    epoch: Instant,
    map: HashMap<Box<str>, Arc<Origin>>,
}

impl Origins {
    /// At most `max_per_origin` attempts in flight per origin.
    pub(super) fn new(max_per_origin: usize) -> Self {
        Self {
            max: u32::try_from(max_per_origin.max(1)).unwrap_or(u32::MAX),
            epoch: Instant::now(),
            map: HashMap::new(),
        }
    }

    /// Admits one attempt to `url`'s origin if it is under its limit. Otherwise the row may
    /// wait for a slot if the origin moved within [`HOLD`] and fewer rows than its limit (at
    /// least [`MIN_WAITING`]) wait already; else it should be due again after as long as the
    /// origin has been stuck (since it last admitted or finished an attempt; see
    /// `Origin::defer`): a hung origin's rows come back ever more rarely.
    pub(super) fn admit(&mut self, url: &Url, now: Instant) -> Admission {
        let origin = self.origin(url, now);
        if let Some(slot) = origin.try_admit(now) {
            return Admission::Admitted(slot);
        }
        let stuck = origin.stuck_for(now);
        let room = origin.limit.load(Ordering::Acquire).max(MIN_WAITING);
        if stuck < HOLD
            && origin
                .waiting
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < room).then_some(n + 1)
                })
                .is_ok()
        {
            return Admission::Wait(OriginWait { origin });
        }
        Admission::Full(origin.defer(now))
    }

    fn origin(&mut self, url: &Url, now: Instant) -> Arc<Origin> {
        let key = origin_key(url);
        if let Some(origin) = self.map.get(key) {
            return origin.clone();
        }
        if self.map.len() >= PRUNE_ABOVE {
            // Forget origins with nothing in flight; they start over if seen again.
            self.map.retain(|_, origin| Arc::strong_count(origin) > 1);
        }
        let origin = Arc::new(Origin {
            in_flight: AtomicU32::new(0),
            limit: AtomicU32::new(INITIAL_LIMIT.min(self.max)),
            waiting: AtomicU32::new(0),
            max: self.max,
            progress_ms: AtomicU64::new(0),
            epoch: self.epoch,
            freed: Notify::new(),
        });
        origin.stamp(now);
        self.map.insert(key.into(), origin.clone());
        origin
    }

    /// The current limit of `url`'s origin, if it has been seen.
    #[cfg(test)]
    fn limit_of(&self, url: &Url) -> Option<u32> {
        self.map
            .get(origin_key(url))
            .map(|origin| origin.limit.load(Ordering::Acquire))
    }
}

/// `wait` rounded up to a power of two times [`MIN_DEFER`], at most [`MAX_DEFER`].
fn defer_for(wait: Duration) -> Duration {
    let mut defer = MIN_DEFER;
    while defer < wait && defer < MAX_DEFER {
        defer *= 2;
    }
    defer.min(MAX_DEFER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn admitted(origins: &mut Origins, target: &Url, now: Instant) -> Vec<OriginSlot> {
        let mut slots = Vec::new();
        while let Admission::Admitted(slot) = origins.admit(target, now) {
            slots.push(slot);
        }
        slots
    }

    #[test]
    fn one_origin_has_one_key_whatever_its_path_or_default_port() {
        let a = url("https://rp.example/a?x=1");
        let b = url("https://rp.example:443/b");
        assert_eq!(origin_key(&a), origin_key(&b));
        assert_ne!(
            origin_key(&a),
            origin_key(&url("https://rp.example:8443/a"))
        );
        assert_ne!(origin_key(&a), origin_key(&url("http://rp.example/a")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_origin_starts_small_then_rows_wait_then_go_back() {
        let mut origins = Origins::new(64);
        let now = Instant::now();
        let hung = url("http://127.0.0.1:1/bc");
        let held = admitted(&mut origins, &hung, now);
        assert_eq!(held.len(), INITIAL_LIMIT as usize);
        // It moved just now: a few rows may wait for a slot, no more.
        let waits: Vec<OriginWait> = (0..MIN_WAITING)
            .map(|_| match origins.admit(&hung, now) {
                Admission::Wait(wait) => wait,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(matches!(origins.admit(&hung, now), Admission::Full(d) if d == MIN_DEFER));
        let healthy = url("http://127.0.0.1:2/bc");
        assert!(matches!(
            origins.admit(&healthy, now),
            Admission::Admitted(_)
        ));
        drop(waits);
        // Stuck for as long as a row may wait: rows go straight back.
        tokio::time::advance(HOLD).await;
        assert!(matches!(
            origins.admit(&hung, Instant::now()),
            Admission::Full(_)
        ));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_row_takes_the_slot_an_attempt_frees_or_goes_back_after_hold() {
        let mut origins = Origins::new(1);
        let target = url("http://127.0.0.1:1/bc");
        let mut held = admitted(&mut origins, &target, Instant::now());
        let Admission::Wait(wait) = origins.admit(&target, Instant::now()) else {
            panic!("no wait")
        };
        let waiting = tokio::spawn(wait.admitted());
        tokio::task::yield_now().await;
        held.clear();
        let slot = waiting.await.unwrap().expect("the freed slot");
        let Admission::Wait(wait) = origins.admit(&target, Instant::now()) else {
            panic!("no wait")
        };
        let started = Instant::now();
        assert!(wait.admitted().await.is_err(), "admitted past the limit");
        assert_eq!(started.elapsed(), HOLD);
        drop(slot);
    }

    #[tokio::test]
    async fn answers_raise_the_limit_to_the_cap_and_timeouts_halve_it_to_one() {
        let mut origins = Origins::new(6);
        let target = url("http://127.0.0.1:1/bc");
        let now = Instant::now();
        for _ in 0..10 {
            for slot in admitted(&mut origins, &target, now) {
                slot.record(Signal::Answered);
            }
        }
        assert_eq!(origins.limit_of(&target), Some(6));
        let slots = admitted(&mut origins, &target, now);
        assert_eq!(slots.len(), 6);
        for slot in &slots[..2] {
            slot.record(Signal::Congested);
        }
        assert_eq!(origins.limit_of(&target), Some(1));
        drop(slots);
        let one = admitted(&mut origins, &target, now);
        assert_eq!(one.len(), 1);
        one[0].record(Signal::Neutral);
        assert_eq!(origins.limit_of(&target), Some(1));
    }

    #[tokio::test]
    async fn a_lower_limit_waits_for_attempts_in_flight_to_end() {
        let mut origins = Origins::new(8);
        let target = url("http://127.0.0.1:1/bc");
        let now = Instant::now();
        let mut slots = admitted(&mut origins, &target, now);
        assert_eq!(slots.len(), 4);
        slots[0].record(Signal::Congested); // limit 2, four still in flight
        slots.truncate(2);
        assert!(!matches!(
            origins.admit(&target, now),
            Admission::Admitted(_)
        ));
        slots.pop();
        assert!(matches!(
            origins.admit(&target, now),
            Admission::Admitted(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deferral_grows_with_how_long_the_origin_has_been_stuck() {
        let mut origins = Origins::new(1);
        let target = url("http://127.0.0.1:1/bc");
        let held = admitted(&mut origins, &target, Instant::now());
        let admit = |origins: &mut Origins| origins.admit(&target, Instant::now());
        tokio::time::advance(HOLD).await;
        assert!(
            matches!(admit(&mut origins), Admission::Full(d) if d == Duration::from_millis(640))
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(matches!(admit(&mut origins), Admission::Full(d) if d == MAX_DEFER));
        // Progress (an attempt ending) makes its rows wait in memory again.
        drop(held);
        let _again = admitted(&mut origins, &target, Instant::now());
        assert!(matches!(admit(&mut origins), Admission::Wait(_)));
    }
}
