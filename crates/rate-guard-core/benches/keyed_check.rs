//! Keyed check on `MemoryStore` (token bucket) against governor's keyed limiter, side by side:
//! 1,000 and 1,000,000 keys, one and two threads, with fake clocks (what governor's own
//! benches use: the clock's cost stays out) and with each library's real clock.
//!
//! `make bench` (or `cargo bench -p rate-guard-core --bench keyed_check`). After criterion's
//! figures, each pair is measured once more **interleaved** (see [`interleave`]), which is what
//! BENCHMARKS.md quotes: the VM this runs on swings 3–4× under other load, and criterion measures
//! one library after the other. `-- interleaved` runs only that part.

use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use governor::clock::FakeRelativeClock;
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter};
use rate_guard_core::{
    Algorithm, Check, ManualClock, MemoryStore, Quota, Request, Rule, SystemClock, Timestamp,
};

mod keyed;

use keyed::{keys, order, PER_SECOND, STEP};

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

/// Whether to print the interleaved comparison: under `cargo bench`, with no filter or the
/// filter `interleaved` (which matches no criterion benchmark, so only this part runs).
fn interleaving() -> bool {
    let mut args = std::env::args().skip(1);
    let bench = std::env::args().any(|a| a == "--bench");
    bench && args.all(|a| a.starts_with('-') || a == "interleaved")
}

/// Ours and governor's alternately, `ROUNDS` rounds of `batch` checks each, the order swapped
/// every round, so that a swing in the machine's load hits both alike. Prints the median time
/// per check of each and the median (and quartiles) of the ratios of two consecutive rounds
/// (ours over governor's, each side summed over both orders: whichever runs first in a round may
/// pay for the other's traces in the caches, and at a million keys that skews a single round's
/// ratio either way).
///
/// Batches are short (about a millisecond on one thread at 1,000 keys, a few at a million) so
/// that most pairs run between two preemptions of a loaded machine; the medians drop the pairs
/// that did not. Two threads take longer batches, since spawning them costs tens of
/// microseconds.
fn interleave(
    label: &str,
    keys: usize,
    threads: usize,
    ours: &(dyn Fn(u64) + Sync),
    theirs: &(dyn Fn(u64) + Sync),
) {
    const ROUNDS: usize = 302;
    let batch: u64 = match (keys <= 10_000, threads) {
        (true, 1) => 2_000,
        (false, 1) => 5_000,
        (true, _) => 50_000,
        (false, _) => 20_000,
    };
    let per_check = |d: Duration| d.as_secs_f64() * 1e9 / batch as f64;
    let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut pair = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let base = round as u64 * batch;
        let offset = |f: &(dyn Fn(u64) + Sync)| run(threads, batch, &|i| f(base + i));
        let (x, y) = if round % 2 == 0 {
            let x = offset(ours);
            (x, offset(theirs))
        } else {
            let y = offset(theirs);
            (offset(ours), y)
        };
        a.push(per_check(x));
        b.push(per_check(y));
        pair = (pair.0 + x, pair.1 + y);
        if round % 2 == 1 {
            ratio.push(pair.0.as_secs_f64() / pair.1.as_secs_f64());
            pair = (Duration::ZERO, Duration::ZERO);
        }
    }
    for v in [&mut a, &mut b, &mut ratio] {
        v.sort_by(f64::total_cmp);
    }
    let q = |v: &[f64], k: usize| v[(v.len() - 1) * k / 4];
    println!(
        "interleaved {label}/{threads}_threads: rate_guard {:.1} ns, governor {:.1} ns, \
         ratio {:.2}x (quartiles {:.2}-{:.2}, {ROUNDS} rounds of {batch})",
        q(&a, 2),
        q(&b, 2),
        q(&ratio, 2),
        q(&ratio, 1),
        q(&ratio, 3)
    );
}

fn rule(per_second: u32) -> Rule {
    let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap());
    Rule::builder(quota)
        .algorithm(Algorithm::TokenBucket)
        .build()
        .unwrap()
}

/// Key counts to measure: `KEYED_CHECK_KEYS` (comma-separated) if set, else 1,000 and
/// 1,000,000. Under `cargo test --all-targets` (no `--bench`) criterion runs each routine once:
/// the million-key stores are not built there.
fn sizes() -> Vec<usize> {
    if let Ok(list) = std::env::var("KEYED_CHECK_KEYS") {
        return list.split(',').map(|n| n.trim().parse().unwrap()).collect();
    }
    if std::env::args().any(|a| a == "--bench") {
        vec![1_000, 1_000_000]
    } else {
        vec![1_000]
    }
}

fn keyed_check(c: &mut Criterion) {
    for n in sizes() {
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
        let rule = rule(PER_SECOND);
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
        bench_pair(&mut group, "fake_clock", &ours, &theirs);

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
        bench_pair(&mut group, "real_clock", &ours_real, &theirs_real);
        group.finish();
        if interleaving() {
            interleaved_rows(
                n,
                &|i| key(i),
                [(&ours, &theirs), (&ours_real, &theirs_real)],
            );
        }
    }
}

/// Criterion's measurement of one pair, on one and two threads.
fn bench_pair(
    group: &mut BenchmarkGroup<'_, WallTime>,
    clock: &str,
    ours: Check1<'_>,
    theirs: Check1<'_>,
) {
    for threads in [1, 2] {
        for (name, check) in [("rate_guard", ours), ("governor", theirs)] {
            group.bench_function(
                BenchmarkId::new(format!("{clock}/{name}"), format!("{threads}_threads")),
                |b| {
                    b.iter_custom(|iters| run(threads, iters, check));
                },
            );
        }
    }
}

type Check1<'a> = &'a (dyn Fn(u64) + Sync);

/// The interleaved comparison of one key count: the fake and real clock pairs, and both
/// libraries on fake clocks that never move. With real clocks nearly every check is a denial at
/// 1,000 keys (a key comes round every few tens of microseconds, its bucket refills 100 per
/// second), with fake ones moved 10 µs per check most are admitted; the frozen pair (a limit of
/// 1 per second, every check after a key's first denied) tells the decision's cost from the
/// clock's.
fn interleaved_rows<'k>(
    n: usize,
    key: &(dyn Fn(u64) -> &'k String + Sync),
    [(ours, theirs), (ours_real, theirs_real)]: [(Check1<'_>, Check1<'_>); 2],
) {
    let rule = rule(1);
    let cost = NonZeroU32::MIN;
    let frozen = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let frozen_store = MemoryStore::builder()
        .max_keys(2 * n)
        .clock(frozen)
        .build()
        .unwrap();
    let ours_frozen = |i: u64| {
        let check = [Check {
            rule: &rule,
            key: key(i),
            cost,
        }];
        std::hint::black_box(
            frozen_store
                .decide_now(Request::hit(&check))
                .unwrap()
                .allowed(),
        );
    };
    let quota = GovernorQuota::per_second(NonZeroU32::MIN);
    let theirs_limiter = RateLimiter::dashmap_with_clock(quota, FakeRelativeClock::default());
    let theirs_frozen = |i: u64| {
        std::hint::black_box(theirs_limiter.check_key(key(i)).is_ok());
    };
    for i in 0..n as u64 {
        ours_frozen(i);
        theirs_frozen(i);
    }
    for threads in [1, 2] {
        let label = format!("keyed_check/{n}_keys");
        interleave(&format!("{label}/fake_clock"), n, threads, ours, theirs);
        interleave(
            &format!("{label}/real_clock"),
            n,
            threads,
            ours_real,
            theirs_real,
        );
        interleave(
            &format!("{label}/frozen_clock"),
            n,
            threads,
            &ours_frozen,
            &theirs_frozen,
        );
    }
}

// criterion's macros generate undocumented items.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::keyed_check);
}
criterion_main!(harness::benches);
