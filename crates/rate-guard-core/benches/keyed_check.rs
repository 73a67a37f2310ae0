//! Keyed check on `MemoryStore` (token bucket) against governor's keyed limiter, side by side:
//! 1,000 and 1,000,000 keys, one and two threads, with fake clocks (what governor's own
//! benches use: the clock's cost stays out) and with each library's real clock.
//!
//! `make bench` (or `cargo bench -p rate-guard-core --bench keyed_check`).

use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use governor::clock::FakeRelativeClock;
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter};
use rate_guard_core::{
    Algorithm, Check, ManualClock, MemoryStore, Quota, Request, Rule, SystemClock, Timestamp,
};

const PER_SECOND: u32 = 100;
const STEP: Duration = Duration::from_micros(10);

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "rate_guard:token_bucket.100.1s:{{ip:10.{}.{}.{}}}",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect()
}

/// A visiting order over `n` keys that defeats the prefetcher (a multiplicative walk).
fn order(n: usize) -> Vec<usize> {
    let len = n.max(1 << 16);
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761)) % n)
        .collect()
}

/// Runs `iters` checks on `threads` threads and returns the wall time.
fn run(threads: usize, iters: u64, check: &(dyn Fn(u64) + Sync)) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        for i in 0..iters {
            check(i);
        }
        return start.elapsed();
    }
    let barrier = Barrier::new(threads + 1);
    let per_thread = iters / threads as u64;
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    check(t * 7_919 + i * threads as u64);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn rule() -> Rule {
    let quota = Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap());
    Rule::builder(quota)
        .algorithm(Algorithm::TokenBucket)
        .build()
        .unwrap()
}

/// Key counts to measure. Under `cargo test --all-targets` (no `--bench`) criterion runs each
/// routine once: the million-key stores are not built there.
fn sizes() -> &'static [usize] {
    if std::env::args().any(|a| a == "--bench") {
        &[1_000, 1_000_000]
    } else {
        &[1_000]
    }
}

fn keyed_check(c: &mut Criterion) {
    for &n in sizes() {
        let keys = keys(n);
        let order = order(n);
        let key = |i: u64| &keys[order[i as usize % order.len()]];
        let mut group = c.benchmark_group(format!("keyed_check/{n}_keys"));
        group.throughput(Throughput::Elements(1));
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        if n > 1_000 {
            group.sample_size(30);
        }
        let rule = rule();
        let cost = NonZeroU32::MIN;

        // Fake clocks, moved 10 µs per check.
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let store = MemoryStore::builder()
            .max_keys(2 * n)
            .clock(clock.clone())
            .build()
            .unwrap();
        let ours = |i: u64| {
            clock.advance(STEP);
            let check = [Check {
                rule: &rule,
                key: key(i),
                cost,
            }];
            std::hint::black_box(store.decide_now(Request::hit(&check)).unwrap().allowed());
        };
        let fake = FakeRelativeClock::default();
        let quota = GovernorQuota::per_second(NonZeroU32::new(PER_SECOND).unwrap());
        let theirs_limiter = RateLimiter::dashmap_with_clock(quota, fake.clone());
        let theirs = |i: u64| {
            fake.advance(STEP);
            std::hint::black_box(theirs_limiter.check_key(key(i)).is_ok());
        };
        // Both warm: every key exists before measuring (steady-state lookups, not inserts).
        for i in 0..n as u64 {
            ours(i);
            theirs(i);
        }
        for threads in [1, 2] {
            group.bench_function(
                BenchmarkId::new("fake_clock/rate_guard", format!("{threads}_threads")),
                |b| {
                    b.iter_custom(|iters| run(threads, iters, &ours));
                },
            );
            group.bench_function(
                BenchmarkId::new("fake_clock/governor", format!("{threads}_threads")),
                |b| {
                    b.iter_custom(|iters| run(threads, iters, &theirs));
                },
            );
        }

        // Real clocks: the SystemClock against governor's DefaultKeyedRateLimiter as shipped.
        let real_store = MemoryStore::builder()
            .max_keys(2 * n)
            .clock(SystemClock)
            .build()
            .unwrap();
        let ours_real = |i: u64| {
            let check = [Check {
                rule: &rule,
                key: key(i),
                cost,
            }];
            std::hint::black_box(
                real_store
                    .decide_now(Request::hit(&check))
                    .unwrap()
                    .allowed(),
            );
        };
        let default_limiter: DefaultKeyedRateLimiter<String> = RateLimiter::keyed(quota);
        let theirs_real = |i: u64| {
            std::hint::black_box(default_limiter.check_key(key(i)).is_ok());
        };
        for i in 0..n as u64 {
            ours_real(i);
            theirs_real(i);
        }
        for threads in [1, 2] {
            group.bench_function(
                BenchmarkId::new("real_clock/rate_guard", format!("{threads}_threads")),
                |b| {
                    b.iter_custom(|iters| run(threads, iters, &ours_real));
                },
            );
            group.bench_function(
                BenchmarkId::new("real_clock/governor", format!("{threads}_threads")),
                |b| {
                    b.iter_custom(|iters| run(threads, iters, &theirs_real));
                },
            );
        }
        group.finish();
    }
}

// criterion's macros generate undocumented items.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::keyed_check);
}
criterion_main!(harness::benches);
