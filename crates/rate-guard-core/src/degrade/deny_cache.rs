//! The deny cache: a request denied until T is answered locally until T, without a round
//! trip, so an abusive client hammering a blocked key costs the store (almost) nothing.
//!
//! Entries are keyed by the request's whole list of keys and costs (a request of another shape
//! or weight goes to the store), bounded in number, and dropped at their retry time or after
//! the cache's time to live, whichever comes first. A reset through the limiter clears the
//! cache; a reset made by another process does not reach it, so a client stays denied here for
//! one time to live (1 s by default) at most.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Timestamp;
use crate::decision::Verdict;

#[derive(Debug)]
struct Entry {
    /// The request's keys and costs, to rule out hash collisions.
    keys: Box<[(Box<str>, u32)]>,
    verdict: Verdict,
    decided_at: Timestamp,
    until: Timestamp,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct DenyCache {
    capacity: usize,
    ttl: Duration,
    hasher: RandomState,
    entries: Mutex<HashMap<u64, Entry>>,
}

impl DenyCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            hasher: RandomState::new(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn hash(&self, keys: &[(&str, u32)]) -> u64 {
        self.hasher.hash_one(keys)
    }

    /// The cached denial of this request at `now`, its times moved on by the time elapsed.
    pub(crate) fn get(&self, keys: &[(&str, u32)], now: Timestamp) -> Option<Verdict> {
        if self.capacity == 0 {
            return None;
        }
        let h = self.hash(keys);
        let mut entries = self.entries.lock();
        let entry = entries.get(&h)?;
        if now >= entry.until || now < entry.decided_at {
            entries.remove(&h);
            return None;
        }
        let same = entry.keys.len() == keys.len()
            && entry
                .keys
                .iter()
                .zip(keys)
                .all(|((k, c), (key, cost))| &**k == *key && c == cost);
        if !same {
            return None;
        }
        Some(entry.verdict.aged(now.saturating_since(entry.decided_at)))
    }

    /// Remembers a denied request until it may be retried. Denials that can never be retried
    /// (a cost above the limit) are not cached: they are cheap to decide and rare.
    pub(crate) fn insert(&self, keys: &[(&str, u32)], verdict: &Verdict, now: Timestamp) {
        let Some(retry) = verdict.decision().retry_after else {
            return;
        };
        if self.capacity == 0 || verdict.allowed() || retry.is_zero() {
            return;
        }
        let h = self.hash(keys);
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&h) {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.capacity {
                // Still full of live denials: forget the eighth that ends soonest, so that this
                // O(n) pass is paid once per capacity/8 insertions.
                let mut ends: Vec<Timestamp> = entries.values().map(|e| e.until).collect();
                let evict = self.capacity.div_ceil(8);
                let (_, &mut cut, _) = ends.select_nth_unstable(evict - 1);
                let mut left = evict;
                entries.retain(|_, e| {
                    let go = left > 0 && e.until <= cut;
                    left -= usize::from(go);
                    !go
                });
            }
        }
        entries.insert(
            h,
            Entry {
                keys: keys.iter().map(|&(k, c)| (Box::from(k), c)).collect(),
                verdict: verdict.clone(),
                decided_at: now,
                until: now.saturating_add(retry.min(self.ttl)),
            },
        );
    }

    pub(crate) fn clear(&self) {
        self.entries.lock().clear();
    }
}
