//! Per-origin concurrency caps, so one slow RP cannot take every in-flight slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

/// The origin of a URL: scheme, host and port (RFC 6454).
pub fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

struct Slot {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// One semaphore per origin, created on first use.
pub struct OriginLimits {
    cap: usize,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl OriginLimits {
    /// At most `cap` attempts in flight per origin, and at most `cap` more waiting.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, origin: &str) -> Arc<Slot> {
        let mut slots = match self.slots.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(slot) = slots.get(origin) {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            permits: Arc::new(Semaphore::new(self.cap)),
            waiting: AtomicUsize::new(0),
        });
        slots.insert(origin.to_owned(), slot.clone());
        slot
    }

    /// A permit for `origin`, waiting while it is busy. `None` when the origin already has a
    /// full queue of waiters: the caller should hand the row back for later instead of holding
    /// a global slot.
    pub async fn acquire(&self, origin: &str) -> Option<OwnedSemaphorePermit> {
        let slot = self.slot(origin);
        if let Ok(permit) = slot.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if slot.waiting.fetch_add(1, Ordering::AcqRel) >= self.cap {
            slot.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = slot.permits.clone().acquire_owned().await.ok();
        slot.waiting.fetch_sub(1, Ordering::AcqRel);
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_includes_default_port() {
        let url = Url::parse("https://rp.example.com/logout?x=1").unwrap();
        assert_eq!(origin_of(&url), "https://rp.example.com:443");
        let url = Url::parse("http://127.0.0.1:9000/a").unwrap();
        assert_eq!(origin_of(&url), "http://127.0.0.1:9000");
    }

    #[tokio::test]
    async fn a_full_origin_queue_refuses_instead_of_waiting() {
        let limits = Arc::new(OriginLimits::new(1));
        let held = limits.acquire("o").await.unwrap();
        let waiter = {
            let limits = limits.clone();
            tokio::spawn(async move { limits.acquire("o").await.is_some() })
        };
        tokio::task::yield_now().await;
        while limits.slot("o").waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(limits.acquire("o").await.is_none(), "queue of one is full");
        assert!(
            limits.acquire("other").await.is_some(),
            "other origins unaffected"
        );
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
