//! [`MemoryStore`]: the in-process store, and the fallback when Redis is down.
//!
//! - **Sharded**: a power of two of locked maps; a request locks only the shards of its keys, in
//!   ascending order (so requests on several keys cannot deadlock). The locks spin and yield
//!   rather than park: see `ShardLock`.
//! - **Fixed-size entries**: a key is stored as two polynomial hashes under random per-store
//!   points ([`keyhash`](super::keyhash)), not as a string. Entries take no allocation of their
//!   own (a sliding log aside), which keeps a key near 40 bytes. Two live keys share state only
//!   if both hashes collide: a chosen key meets a given other one with probability below
//!   2⁻¹¹¹ (keys up to ~300 bytes), whatever the chooser knows short of the secret points.
//! - **Bounded**: an entry past its expiry is dropped when touched; each shard sweeps its expired
//!   entries when a request finds the sweep interval elapsed; and a shard at its share of
//!   `max_keys` first sweeps, then evicts the entries closest to expiry, down to 7/8 of its
//!   share. Eviction forgets quota (the cost of a memory bound), so it is counted:
//!   [`MemoryStore::evictions`].

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;
use spin::mutex::{SpinMutex, SpinMutexGuard as MutexGuard};

use super::keyhash::KeyHasher;
use super::{BoxFuture, Check, Mode, Request, Store};
use crate::algorithm::{self, State};
use crate::clock::{duration_micros, Clock, SystemClock, Timestamp};
use crate::decision::{Decision, Verdict};
use crate::error::{ConfigError, StoreError};
use crate::rule::Rule;

/// The state of many keys, in this process.
///
/// ```
/// use rate_guard_core::{Check, MemoryStore, Quota, Request, Rule, Timestamp};
///
/// let store = MemoryStore::builder().max_keys(10_000).build()?;
/// let rule = Rule::builder("2/second".parse::<Quota>()?).build()?;
/// let check = [Check { rule: &rule, key: "k", cost: 1.try_into()? }];
/// let now = Timestamp::from_secs(1_700_000_000);
/// let verdicts: Vec<bool> = (0..3)
///     .map(|_| store.decide_now(Request::hit(&check).at(now)).map(|v| v.allowed()))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(verdicts, [true, true, false]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[ShardLock]>,
    shard_mask: u64,
    shard_capacity: usize,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    sweep_interval: u64,
    evictions: AtomicU64,
}

/// Builds a [`MemoryStore`]; see [`MemoryStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_keys: usize,
    shards: usize,
    sweep_interval: Duration,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// The most keys held at once (default 1,000,000). Memory stays near 40–80 bytes a key for
    /// the O(1) algorithms.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// How many independently locked shards (default 64, rounded up to a power of two, and
    /// reduced so that every shard holds at least one key).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// How often each shard drops its expired entries (default 10 s).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The clock for requests that carry no time (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, shared.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store, or what is wrong with the settings.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::MemoryStore("max_keys must be at least 1"));
        }
        if self.shards == 0 || self.shards > 1 << 16 {
            return Err(ConfigError::MemoryStore(
                "shards must be between 1 and 65536",
            ));
        }
        let mut shards = self.shards.next_power_of_two();
        while shards > self.max_keys {
            shards /= 2;
        }
        // The first reading of a `SystemClock` calibrates its counter (up to 200 ms): here, not
        // in the first decision.
        let _ = self.clock.now();
        // std seeds every `RandomState` from the OS; two hashes of it make the secret points.
        let seed = RandomState::new();
        Ok(MemoryStore {
            shards: (0..shards).map(|_| ShardLock::default()).collect(),
            shard_mask: shards as u64 - 1,
            shard_capacity: self.max_keys / shards,
            hasher: KeyHasher::new([seed.hash_one(0x5eed_u64), seed.hash_one(0x00c0_ffee_u64)]),
            clock: self.clock,
            sweep_interval: duration_micros(self.sweep_interval).max(1),
            evictions: AtomicU64::new(0),
        })
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::builder()
            .build()
            .expect("default memory store settings are valid")
    }
}

/// A key's identity as two words (8-byte aligned, which keeps a map entry at 40 bytes). The
/// first is the first hash mixed with the second (a bijection for a given second word, so the
/// pair is as unique as the two hashes), and places the key: its bits 32 and up pick the shard,
/// its low bits the table slot, its top 7 the table's tag (a hash modulo `2^61 - 1` alone
/// leaves the top bits empty). Placement is the one trace hashes leave outside the process
/// (through timing), so it shows neither hash as it is.
///
/// Two fields rather than an array: a pair of integers comes back from `hash` in two registers,
/// where an array is returned through memory and the shard's lock waited for that round trip
/// (3–5 % of a keyed check, BENCHMARKS.md, issue 13, session 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyHash(u64, u64);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// Passes the already uniform key hash through to the map.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only key hashes are hashed");
    }
    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }
}

/// A shard's lock, on a cache line of its own: neighbouring shards locked by other threads
/// would otherwise take the line away on every lock and unlock.
///
/// A flag taken by one compare-exchange and released by a plain store: on x86-64 the release is
/// an ordinary `mov`, where `parking_lot`'s mutex releases with a second locked compare-exchange
/// (to find parked waiters), a full barrier that held every check behind it (5–8 % of a
/// keyed check, BENCHMARKS.md, issue 13, session 7). What it gives up is parking: a thread that
/// finds the shard taken yields its time slice until the flag clears. Every hold here is one
/// decision (tens of nanoseconds) or, once per sweep interval or `max_keys / 8` new keys, one
/// pass over a shard (`max_keys / shards` entries); a waiter then yields instead of sleeping,
/// and gets the lock as soon as the holder runs again, as it would from a futex.
#[derive(Debug, Default)]
#[repr(align(64))]
struct ShardLock(SpinMutex<Shard, spin::relax::Yield>);

impl std::ops::Deref for ShardLock {
    type Target = SpinMutex<Shard, spin::relax::Yield>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<KeyHash, State, BuildHasherDefault<PassThrough>>,
    next_sweep: u64,
}

impl Shard {
    /// The live state of `key` for `rule`, dropping it when expired or out of range (as the
    /// Redis scripts delete a state that reads as none).
    fn live(&mut self, key: KeyHash, rule: &Rule, now: u64) -> Option<&State> {
        if self.map.get(&key).is_some_and(|s| {
            s.expires_at().as_micros() <= now || !algorithm::in_range(rule, s, now)
        }) {
            self.map.remove(&key);
        }
        self.map.get(&key)
    }

    fn sweep(&mut self, now: u64) {
        self.map.retain(|_, s| s.expires_at().as_micros() > now);
    }

    fn sweep_if_due(&mut self, now: u64, interval: u64) {
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now.saturating_add(interval);
        }
    }

    /// Decides one check and, on a hit it allows, consumes: one table lookup in the usual case.
    #[inline]
    fn decide_one(
        &mut self,
        store: &MemoryStore,
        check: &Check<'_>,
        key: KeyHash,
        mode: Mode,
        now: Timestamp,
    ) -> Decision {
        let micros = now.as_micros();
        let cost = check.cost.get();
        if mode == Mode::Hit {
            if let Some(state) = self.map.get_mut(&key) {
                let (decision, kept) = algorithm::hit_in_place(check.rule, state, now, cost);
                if !kept {
                    self.map.remove(&key);
                }
                return decision;
            }
            let (decision, state) = algorithm::hit_fresh(check.rule, now, cost);
            if let Some(state) = state {
                self.insert(store, key, state, micros);
            }
            return decision;
        }
        let state = self.live(key, check.rule, micros);
        decide(mode, check, state, now)
    }

    /// Stores `state` under `key`, making room first when the shard is full.
    fn insert(&mut self, store: &MemoryStore, key: KeyHash, state: State, now: u64) {
        if self.map.len() >= store.shard_capacity && !self.map.contains_key(&key) {
            let evicted = self.make_room(store.shard_capacity, now);
            store.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        self.map.insert(key, state);
    }

    /// Makes room for one more key; returns how many live keys were evicted.
    fn make_room(&mut self, capacity: usize, now: u64) -> u64 {
        if self.map.len() < capacity {
            return 0;
        }
        self.sweep(now);
        if self.map.len() < capacity {
            return 0;
        }
        // Evict the entries closest to expiry (they would be forgotten soonest anyway), down to
        // 7/8 of capacity so that the O(n) pass is paid once per capacity/8 new keys.
        let keep = capacity - capacity.div_ceil(8);
        let evict = self.map.len() - keep;
        let mut expiries: Vec<u64> = self
            .map
            .values()
            .map(|s| s.expires_at().as_micros())
            .collect();
        let (_, &mut threshold, _) = expiries.select_nth_unstable(evict - 1);
        // Everything expiring before the threshold goes, then as many ties as still needed.
        self.map
            .retain(|_, s| s.expires_at().as_micros() >= threshold);
        let mut ties = self.map.len() - keep;
        self.map.retain(|_, s| {
            let tie = ties > 0 && s.expires_at().as_micros() == threshold;
            ties -= usize::from(tie);
            !tie
        });
        evict as u64
    }
}

impl MemoryStore {
    /// Starts a store with default settings.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_keys: 1_000_000,
            shards: 64,
            sweep_interval: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
        }
    }

    /// The most keys this store holds at once (its `max_keys`, rounded down to a multiple of
    /// the shard count).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// How many keys are held (expired ones included until touched or swept).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many live keys were evicted to stay within `max_keys` since the store was built.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Drops every expired entry now.
    pub fn sweep(&self) {
        let now = self.clock.now().as_micros();
        for shard in &*self.shards {
            shard.lock().sweep(now);
        }
    }

    fn hash(&self, key: &str) -> KeyHash {
        let [h1, h2] = self.hasher.hash(key.as_bytes());
        KeyHash(
            (h1 ^ h2.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            h2,
        )
    }

    fn shard_of(&self, key: KeyHash) -> usize {
        ((key.0 >> 32) & self.shard_mask) as usize
    }

    /// Decides `request` on the calling thread; what [`Store::decide`] does, without a future.
    // Inlined so that a one-rule verdict is built in the caller's frame: returned from here it
    // is a 200-byte copy, read for one `bool`.
    #[inline]
    pub fn decide_now(&self, request: Request<'_>) -> Result<Verdict, StoreError> {
        if let [check] = request.checks {
            // One check is always a valid request: no key can be named twice.
            debug_assert!(request.validate().is_ok());
            let now = request.now.unwrap_or_else(|| self.clock.now());
            let decision = self.decide_single(check, request.mode, now);
            return Ok(Verdict::single(decision));
        }
        self.decide_many(request)
    }

    /// One rule: one shard, one lookup, nothing to undo.
    fn decide_single(&self, check: &Check<'_>, mode: Mode, now: Timestamp) -> Decision {
        let key = self.hash(check.key);
        let mut shard = self.shards[self.shard_of(key)].lock();
        shard.sweep_if_due(now.as_micros(), self.sweep_interval);
        shard.decide_one(self, check, key, mode, now)
    }

    fn decide_many(&self, request: Request<'_>) -> Result<Verdict, StoreError> {
        request.validate()?;
        let now = request.now.unwrap_or_else(|| self.clock.now());
        let hashes: SmallVec<[KeyHash; 4]> =
            request.checks.iter().map(|c| self.hash(c.key)).collect();
        let mut order: SmallVec<[usize; 4]> = hashes.iter().map(|&h| self.shard_of(h)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: SmallVec<[(usize, MutexGuard<'_, Shard>); 4]> =
            order.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let mut locked = Locked {
            store: self,
            guards: &mut guards,
            now,
        };
        locked.sweep_if_due();
        let rules = locked.decide_together(request, &hashes);
        Verdict::from_rules(rules).ok_or(StoreError::InvalidRequest(
            "a request needs at least one rule",
        ))
    }

    /// Forgets `keys` on the calling thread.
    pub fn reset_now(&self, keys: &[&str]) {
        for key in keys {
            let h = self.hash(key);
            self.shards[self.shard_of(h)].lock().map.remove(&h);
        }
    }
}

/// The shards of one request, locked.
struct Locked<'s, 'g> {
    store: &'s MemoryStore,
    guards: &'g mut SmallVec<[(usize, MutexGuard<'s, Shard>); 4]>,
    now: Timestamp,
}

impl Locked<'_, '_> {
    fn shard(&mut self, key: KeyHash) -> &mut Shard {
        let i = self.store.shard_of(key);
        let slot = self.guards.iter().position(|(s, _)| *s == i);
        // Every key's shard was locked when the request began.
        &mut self.guards[slot.expect("shard of a request key is locked")].1
    }

    fn sweep_if_due(&mut self) {
        let now = self.now.as_micros();
        for (_, shard) in self.guards.iter_mut() {
            shard.sweep_if_due(now, self.store.sweep_interval);
        }
    }

    /// Decides every check against the stored states, then consumes in place only if all
    /// allowed. (Keys are distinct: [`Request::validate`] saw to it.)
    fn decide_together(
        &mut self,
        request: Request<'_>,
        hashes: &[KeyHash],
    ) -> SmallVec<[Decision; 4]> {
        let now = self.now;
        let micros = now.as_micros();
        let rules: SmallVec<[Decision; 4]> = request
            .checks
            .iter()
            .zip(hashes)
            .map(|(c, &h)| {
                let state = self.shard(h).live(h, c.rule, micros);
                decide(request.mode, c, state, now)
            })
            .collect();
        if request.mode == Mode::Hit && rules.iter().all(|d| d.allowed) {
            for (c, &h) in request.checks.iter().zip(hashes) {
                self.consume(c, h);
            }
        }
        rules
    }

    fn consume(&mut self, check: &Check<'_>, key: KeyHash) {
        let (store, now) = (self.store, self.now);
        let shard = self.shard(key);
        if let Some(state) = shard.map.get_mut(&key) {
            algorithm::consume_in_place(check.rule, state, now, check.cost.get());
        } else {
            let state = algorithm::fresh(check.rule, now, check.cost.get());
            shard.insert(store, key, state, now.as_micros());
        }
    }
}

fn decide(mode: Mode, check: &Check<'_>, state: Option<&State>, now: Timestamp) -> Decision {
    match mode {
        Mode::Hit => algorithm::decide(check.rule, state, now, check.cost.get()),
        Mode::Peek => algorithm::peek(check.rule, state, now, check.cost.get()),
    }
}

impl Store for MemoryStore {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        let verdict = MemoryStore::decide_now(self, request);
        Box::pin(std::future::ready(verdict))
    }

    fn decide_now(&self, request: Request<'_>) -> Option<Result<Verdict, StoreError>> {
        Some(MemoryStore::decide_now(self, request))
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.reset_now(keys);
        Box::pin(std::future::ready(Ok(())))
    }
}
