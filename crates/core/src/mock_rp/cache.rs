//! Bounded memory for the mock RP: the `jti` replay cache (spec §2.6 step 7, §2.7) and the
//! per-session attempt counters.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Default cap on the entries of each cache.
pub(crate) const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// The `jti`s of accepted tokens, each kept until its token's `exp` plus leeway.
///
/// Expired entries are evicted on every insert; past the capacity, the entry closest to
/// expiry (in practice the oldest) is evicted.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    expiry_of: HashMap<String, i64>,
    by_expiry: BTreeSet<(i64, String)>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            expiry_of: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// True when `jti` was accepted before and has not expired at `now` (Unix seconds).
    pub(crate) fn contains(&self, jti: &str, now: i64) -> bool {
        self.expiry_of.get(jti).is_some_and(|expiry| *expiry > now)
    }

    /// Remembers `jti` until `expiry` (Unix seconds), evicting what has expired at `now`.
    pub(crate) fn insert(&mut self, jti: &str, expiry: i64, now: i64) {
        self.evict_expired(now);
        if let Some(old) = self.expiry_of.remove(jti) {
            self.by_expiry.remove(&(old, jti.to_owned()));
        }
        while self.expiry_of.len() >= self.capacity {
            let Some((_, evicted)) = self.by_expiry.pop_first() else {
                break;
            };
            self.expiry_of.remove(&evicted);
        }
        self.expiry_of.insert(jti.to_owned(), expiry);
        self.by_expiry.insert((expiry, jti.to_owned()));
    }

    /// The number of entries.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.expiry_of.len()
    }

    fn evict_expired(&mut self, now: i64) {
        while let Some((expiry, _)) = self.by_expiry.first() {
            if *expiry > now {
                break;
            }
            if let Some((_, jti)) = self.by_expiry.pop_first() {
                self.expiry_of.remove(&jti);
            }
        }
    }
}

/// Counts requests per key (`sid:…`, `sub:…` or `jti:…`); past the capacity the key
/// counted first is forgotten.
///
/// Keys come from tokens that may not have passed validation, so each is kept as its
/// SHA-256 digest: 32 bytes per entry however long the claim.
#[derive(Debug)]
pub(crate) struct AttemptCounter {
    capacity: usize,
    counts: HashMap<KeyDigest, u64>,
    order: VecDeque<KeyDigest>,
}

type KeyDigest = [u8; 32];

fn key_digest(key: &str) -> KeyDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl AttemptCounter {
    /// An empty counter holding at most `capacity` keys (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            counts: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Counts one more request for `key` and returns the 1-based count.
    pub(crate) fn next(&mut self, key: &str) -> u64 {
        let key = key_digest(key);
        if let Some(count) = self.counts.get_mut(&key) {
            *count += 1;
            return *count;
        }
        while self.counts.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.counts.remove(&oldest);
        }
        self.counts.insert(key, 1);
        self.order.push_back(key);
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_entries_expire_and_are_evicted() {
        let mut cache = ReplayCache::new(10);
        cache.insert("a", 100, 0);
        assert!(cache.contains("a", 99));
        assert!(!cache.contains("a", 100));
        cache.insert("b", 300, 150);
        assert_eq!(cache.len(), 1, "a expired and was evicted");
    }

    #[test]
    fn replay_cache_is_capped() {
        let mut cache = ReplayCache::new(2);
        cache.insert("a", 100, 0);
        cache.insert("b", 200, 0);
        cache.insert("c", 300, 0);
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains("a", 0));
        assert!(cache.contains("c", 0));
    }

    #[test]
    fn attempts_count_per_key_and_are_capped() {
        let mut counter = AttemptCounter::new(2);
        assert_eq!(counter.next("sid:1"), 1);
        assert_eq!(counter.next("sid:1"), 2);
        assert_eq!(counter.next("sid:2"), 1);
        assert_eq!(counter.next("sid:3"), 1);
        assert_eq!(counter.next("sid:1"), 1, "sid:1 was forgotten");
    }
}
