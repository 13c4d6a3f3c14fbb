//! Per-client pacing (`backchannel_logout_rate_limit`), by the generic cell rate algorithm
//! (GCRA): a client's state is one "theoretical arrival time" (`tat`), kept in the store and
//! changed atomically, so every node paces the client against the same state.
//!
//! With `T` = 1 / `per_second` and `tau` = (`burst` - 1) x `T`, a delivery may go at `t` when
//! `tat - tau <= t`; it then moves `tat` to `max(tat, t) + T`. Over any window of length `w`
//! at most `burst + w x per_second` deliveries go.
//!
//! The dispatcher asks for places for the rows of one client it has just claimed
//! ([`plan`]). Rows whose place comes within the horizon `h` (a fraction of a second, far
//! below the lease) take it: at once, or after a short wait in memory that holds neither an
//! in-flight slot nor an origin slot. The other rows take no place: they go back to the
//! outbox without counting an attempt, each due `h` before the place it would have, one
//! interval apart after the rows already sent back (`queued_until`), so they are not claimed
//! again before they can go.

use crate::clients::RateLimit;
use chrono::{DateTime, Utc};

/// One client's pacing state as the store keeps it; times in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaceState {
    /// The interval the state was kept with; a changed limit starts afresh.
    pub interval_us: i64,
    /// The burst the state was kept with.
    pub burst: i64,
    /// The theoretical arrival time.
    pub tat_us: i64,
    /// Where the place of the next row sent back to the outbox begins at the earliest.
    pub queued_until_us: i64,
}

/// What pacing allows a claim of one client's rows: the first [`Pace::go`] rows have a place
/// each ([`Pace::slot`]); the others go back to the outbox, due at [`Pace::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// How many rows took a place.
    pub go: usize,
    now_us: i64,
    base_us: i64,
    first_due_us: i64,
    every_us: i64,
}

impl Pace {
    /// A pace that lets no row go and sends every row back at `due` (the state could not be
    /// read).
    pub fn hold(due: DateTime<Utc>) -> Self {
        Self {
            go: 0,
            now_us: 0,
            base_us: 0,
            first_due_us: due.timestamp_micros(),
            every_us: 0,
        }
    }

    /// When the `i`-th row that took a place (`i < go`) may be sent.
    pub fn slot(&self, i: usize) -> DateTime<Utc> {
        let at = self.base_us.saturating_add(times(self.every_us, i));
        micros(at.max(self.now_us))
    }

    /// When the `j`-th row sent back is due again, rounded up to the millisecond the store
    /// keeps (so never before its place less the horizon).
    pub fn due(&self, j: usize) -> DateTime<Utc> {
        let at = self.first_due_us.saturating_add(times(self.every_us, j));
        let ms = at.saturating_add(999).div_euclid(1000);
        DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

fn times(every_us: i64, n: usize) -> i64 {
    every_us.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX))
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Places for `rows` rows of a client limited to `limit`, claimed at `now`, given its stored
/// state (`None` for a client never paced): the new state to store and the [`Pace`].
/// Rows whose place begins within `horizon` of `now` take it.
pub(crate) fn plan(
    stored: Option<PaceState>,
    limit: &RateLimit,
    now: DateTime<Utc>,
    horizon: std::time::Duration,
    rows: usize,
) -> (PaceState, Pace) {
    let every = limit.interval_us();
    let burst = i64::from(limit.burst.max(1));
    let tau = every.saturating_mul(burst - 1);
    let now_us = now.timestamp_micros();
    let horizon_us = i64::try_from(horizon.as_micros()).unwrap_or(i64::MAX);
    let state = stored
        .filter(|s| s.interval_us == every && s.burst == burst)
        .unwrap_or_default();
    // Where the next place begins: `tat - tau`, never in the past.
    let base = state.tat_us.max(now_us).saturating_sub(tau);
    let reach = now_us.saturating_add(horizon_us);
    let within = if base > reach {
        0
    } else {
        usize::try_from((reach - base) / every + 1).unwrap_or(usize::MAX)
    };
    let go = within.min(rows);
    let next = base.saturating_add(times(every, go));
    let tat = next.saturating_add(tau);
    let rest = rows - go;
    let start = state.queued_until_us.max(next);
    let queued_until = if rest > 0 {
        start.saturating_add(times(every, rest))
    } else {
        state.queued_until_us
    };
    let pace = Pace {
        go,
        now_us,
        base_us: base,
        first_due_us: start.saturating_sub(horizon_us).max(now_us),
        every_us: every,
    };
    let state = PaceState {
        interval_us: every,
        burst,
        tat_us: tat,
        queued_until_us: queued_until,
    };
    (state, pace)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    const H: Duration = Duration::from_millis(100);

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    fn ms(t: DateTime<Utc>) -> i64 {
        t.timestamp_millis() - 1_700_000_000_000
    }

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit::new(per_second, Some(burst)).unwrap()
    }

    /// Drives a client through claims at the given times, each sending every row with a
    /// place at its slot and sending the rest back; returns the send times.
    struct Client {
        state: Option<PaceState>,
        limit: RateLimit,
        /// Every send time, in microseconds.
        log: Vec<i64>,
    }

    impl Client {
        fn claim(&mut self, now: i64, rows: usize) -> (Vec<i64>, Vec<i64>) {
            let (state, pace) = plan(self.state, &self.limit, at(now), H, rows);
            self.state = Some(state);
            let sent = (0..pace.go).map(|i| ms(pace.slot(i))).collect();
            self.log
                .extend((0..pace.go).map(|i| pace.slot(i).timestamp_micros()));
            let back = (0..rows - pace.go).map(|j| ms(pace.due(j))).collect();
            (sent, back)
        }
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_at_the_pace() {
        let mut c = Client {
            state: None,
            log: Vec::new(),
            limit: limit(20.0, 5),
        };
        let (sent, back) = c.claim(0, 40);
        // Five at once, then one every 50 ms within the 100 ms horizon.
        assert_eq!(sent, vec![0, 0, 0, 0, 0, 50, 100]);
        // The others are due 100 ms before their places: 150 - 100, 200 - 100, ...
        assert_eq!(back.len(), 33);
        assert_eq!(&back[..3], &[50, 100, 150]);
        assert_eq!(*back.last().unwrap(), 1650);
        // A later claim of new rows queues after them.
        let (sent, back) = c.claim(10, 2);
        assert!(sent.is_empty());
        assert_eq!(back, vec![1700, 1750]);
    }

    #[test]
    fn rows_sent_back_find_their_place_when_due() {
        let mut c = Client {
            state: None,
            log: Vec::new(),
            limit: limit(20.0, 5),
        };
        let (mut times, back) = c.claim(0, 40);
        // Each row comes back when due (claimed one by one, a few ms late) and goes.
        for due in back {
            let (sent, again) = c.claim(due + 3, 1);
            assert!(again.is_empty(), "row due at {due} sent back again");
            times.extend(sent);
        }
        assert_eq!(times.len(), 40);
        assert_window_bound(&c.log, 20.0, 5);
        // Not slower than the pace either: the last goes at (40 - 5) x 50 ms.
        assert_eq!(*times.iter().max().unwrap(), 1750);
    }

    #[test]
    fn fractional_rates_and_a_burst_of_one() {
        let mut c = Client {
            state: None,
            log: Vec::new(),
            limit: limit(0.5, 1),
        };
        let (sent, back) = c.claim(0, 3);
        assert_eq!(sent, vec![0]);
        assert_eq!(back, vec![1900, 3900]);
        // Early by more than the horizon: no place, sent back to its place.
        let (sent, back) = c.claim(1000, 1);
        assert!(sent.is_empty());
        assert_eq!(back, vec![5900]);
        let (sent, _) = c.claim(1950, 1);
        assert_eq!(sent, vec![2000]);
    }

    #[test]
    fn a_quiet_client_gets_its_burst_back_and_no_more() {
        let mut c = Client {
            state: None,
            log: Vec::new(),
            limit: limit(10.0, 3),
        };
        c.claim(0, 3);
        let (sent, _) = c.claim(10_000, 10);
        assert_eq!(sent, vec![10_000, 10_000, 10_000, 10_100]);
    }

    #[test]
    fn a_changed_limit_starts_afresh() {
        let mut c = Client {
            state: None,
            log: Vec::new(),
            limit: limit(1.0, 1),
        };
        c.claim(0, 100);
        c.limit = limit(100.0, 2);
        let (sent, _) = c.claim(5, 2);
        assert_eq!(sent, vec![5, 5]);
    }

    #[test]
    fn random_claims_never_exceed_the_bound() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for (rate, burst) in [(20.0, 5), (3.0, 1), (0.7, 2), (250.0, 10)] {
            let mut c = Client {
                state: None,
                log: Vec::new(),
                limit: limit(rate, burst),
            };
            let mut now = 0;
            for _ in 0..300 {
                now += (next() % 40) as i64;
                c.claim(now, (next() % 6) as usize);
            }
            assert!(c.log.len() > 3);
            assert_window_bound(&c.log, rate, burst);
        }
    }

    #[test]
    fn the_default_burst_is_one_second_s_worth() {
        assert_eq!(RateLimit::new(0.5, None).unwrap().burst, 1);
        assert_eq!(RateLimit::new(20.0, None).unwrap().burst, 20);
        assert_eq!(RateLimit::new(2.5, None).unwrap().burst, 3);
        assert!(RateLimit::new(0.0, None).is_err());
        assert!(RateLimit::new(1000.5, None).is_err());
        assert!(RateLimit::new(f64::NAN, None).is_err());
        assert!(RateLimit::new(1.0, Some(0)).is_err());
        assert!(RateLimit::new(1.0, Some(1001)).is_err());
        assert_eq!(limit(3.0, 1).interval_us(), 333_334);
    }

    /// Every window `[t, t + w]` holds at most `burst + w x rate` of `times` (µs).
    fn assert_window_bound(times: &[i64], rate: f64, burst: u32) {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        for (i, &start) in sorted.iter().enumerate() {
            for (j, &end) in sorted.iter().enumerate().skip(i) {
                let count = (j - i + 1) as f64;
                let window = (end - start) as f64 / 1e6;
                assert!(
                    count <= f64::from(burst) + window * rate + 1e-9,
                    "{count} sends in {window} s at {rate}/s burst {burst}: {sorted:?}"
                );
            }
        }
    }
}
