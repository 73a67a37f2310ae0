//! Bytes per key at 1,000,000 keys: `MemoryStore` for each algorithm, and governor's keyed
//! limiter beside it. Heap bytes are counted by a wrapping global allocator.
//!
//! `make bench` (or `cargo bench -p rate-guard-core --bench memory_per_key`).
// A global allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter};
use rate_guard_core::{Algorithm, Check, MemoryStore, Quota, Request, Rule, Timestamp};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments, and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEYS: usize = 1_000_000;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn key(buf: &mut String, i: usize) -> &str {
    buf.clear();
    let _ = write!(
        buf,
        "rate_guard:bench:{{ip:10.{}.{}.{}}}",
        i >> 16,
        (i >> 8) & 255,
        i & 255
    );
    buf
}

fn ours(algorithm: Algorithm, count: u32) -> f64 {
    let quota = Quota::per_hour(NonZeroU32::new(count).unwrap());
    let rule = Rule::builder(quota).algorithm(algorithm).build().unwrap();
    let now = Timestamp::from_secs(1_700_000_000);
    let mut buf = String::with_capacity(64);
    let before = live();
    let store = MemoryStore::builder().max_keys(4 * KEYS).build().unwrap();
    for i in 0..KEYS {
        let check = [Check {
            rule: &rule,
            key: key(&mut buf, i),
            cost: NonZeroU32::MIN,
        }];
        assert!(store
            .decide_now(Request::hit(&check).at(now))
            .unwrap()
            .allowed());
    }
    assert_eq!(store.len(), KEYS);
    let bytes = live().saturating_sub(before);
    drop(store);
    bytes as f64 / KEYS as f64
}

fn governor() -> f64 {
    let before = live();
    let limiter: DefaultKeyedRateLimiter<String> =
        RateLimiter::keyed(GovernorQuota::per_hour(NonZeroU32::new(100).unwrap()));
    let mut buf = String::with_capacity(64);
    for i in 0..KEYS {
        assert!(limiter.check_key(&key(&mut buf, i).to_owned()).is_ok());
    }
    assert_eq!(limiter.len(), KEYS);
    let bytes = live().saturating_sub(before);
    drop(limiter);
    bytes as f64 / KEYS as f64
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and the suite should not run benchmarks.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("heap bytes per key at {KEYS} keys (one admitted request each)");
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::TokenBucket,
    ] {
        println!(
            "  rate_guard {:<15} {:>6.1}",
            algorithm.name(),
            ours(algorithm, 100)
        );
    }
    println!(
        "  rate_guard {:<15} {:>6.1}  (O(limit): one 8-byte entry per admitted unit, here 1)",
        "sliding_log",
        ours(Algorithm::SlidingLog, 100)
    );
    println!(
        "  governor   {:<15} {:>6.1}  (DefaultKeyedRateLimiter<String>, keys included)",
        "gcra",
        governor()
    );
}
