//! One side of `keyed_check`, alone, for a profiler: the same keys, order, rule and clocks,
//! `checks` checks on one thread after every key is created.
//!
//! ```text
//! cargo bench -p rate-guard-core --bench keyed_profile --no-run
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/deps/keyed_profile-<hash> <ours|governor> <fake|frozen|real> <keys> <checks>
//! target/release/deps/keyed_profile-<hash> clocks
//! ```
//!
//! Instructions per check are the `measured` function's inclusive count divided by `checks`
//! (BENCHMARKS.md, keyed check). `fake` moves a manual clock 10 µs per check (most checks
//! admitted), `frozen` never moves it (a limit of 1 per second: every check after a key's first
//! is denied), `real` is each library's own clock (under valgrind, slowed fifty-fold, most
//! checks are admitted). `clocks` times each library's real clock alone, read in a loop.
//! Without arguments (as `cargo bench` and `cargo test --all-targets` run it) it does a few
//! checks of each kind and exits.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter};
use rate_guard_core::{
    Algorithm, Check, ManualClock, MemoryStore, Quota, Request, Rule, SystemClock, Timestamp,
};

mod keyed;

use keyed::{keys, order, PER_SECOND, STEP};

/// The loop a profiler counts (kept out of line so that `--toggle-collect` finds it).
#[inline(never)]
fn measured(checks: u64, check: &dyn Fn(u64)) {
    for i in 0..checks {
        check(i);
    }
}

fn run(library: &str, clock: &str, n: usize, checks: u64) {
    let keys = keys(n);
    let order = order(n);
    let key = |i: u64| &keys[order[i as usize % order.len()]];
    // As in `keyed_check`: 100 per second, 1 per second for the frozen clocks (every check
    // after a key's first is denied).
    let per_second = if clock == "frozen" { 1 } else { PER_SECOND };
    let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap());
    let rule = Rule::builder(quota)
        .algorithm(Algorithm::TokenBucket)
        .build()
        .unwrap();
    let theirs_quota = GovernorQuota::per_second(NonZeroU32::new(per_second).unwrap());
    let cost = NonZeroU32::MIN;
    let check: Box<dyn Fn(u64)> = match (library, clock) {
        ("ours", "fake" | "frozen") => {
            // A frozen clock denies every check after the first 100 of a key.
            let step = if clock == "fake" {
                STEP
            } else {
                Duration::ZERO
            };
            let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
            let store = MemoryStore::builder()
                .max_keys(2 * n)
                .clock(clock.clone())
                .build()
                .unwrap();
            let rule = rule.clone();
            Box::new(move |i| {
                clock.advance(step);
                let check = [Check {
                    rule: &rule,
                    key: key(i),
                    cost,
                }];
                std::hint::black_box(store.decide_now(Request::hit(&check)).unwrap().allowed());
            })
        }
        ("ours", "real") => {
            let store = MemoryStore::builder()
                .max_keys(2 * n)
                .clock(SystemClock)
                .build()
                .unwrap();
            let rule = rule.clone();
            Box::new(move |i| {
                let check = [Check {
                    rule: &rule,
                    key: key(i),
                    cost,
                }];
                std::hint::black_box(store.decide_now(Request::hit(&check)).unwrap().allowed());
            })
        }
        ("governor", "fake" | "frozen") => {
            let step = if clock == "fake" {
                STEP
            } else {
                Duration::ZERO
            };
            let fake = FakeRelativeClock::default();
            let limiter = RateLimiter::dashmap_with_clock(theirs_quota, fake.clone());
            Box::new(move |i| {
                fake.advance(step);
                std::hint::black_box(limiter.check_key(key(i)).is_ok());
            })
        }
        ("governor", "real") => {
            let limiter: DefaultKeyedRateLimiter<String> = RateLimiter::keyed(theirs_quota);
            Box::new(move |i| {
                std::hint::black_box(limiter.check_key(key(i)).is_ok());
            })
        }
        _ => panic!("usage: keyed_profile <ours|governor> <fake|frozen|real> <keys> <checks>"),
    };
    for i in 0..n as u64 {
        check(i);
    }
    measured(checks, &check);
}

/// Nanoseconds per read of our `SystemClock` (directly and through `Arc<dyn Clock>`, as the
/// store holds it) and of governor's `QuantaClock`, five times.
fn time_clocks() {
    use governor::clock::{Clock as _, QuantaClock, Reference as _};
    use rate_guard_core::Clock;
    use std::sync::Arc;
    use std::time::Instant;
    const READS: u32 = 10_000_000;
    let time = |read: &dyn Fn() -> u64| {
        let start = Instant::now();
        let mut sum = 0u64;
        for _ in 0..READS {
            sum = sum.wrapping_add(read());
        }
        std::hint::black_box(sum);
        start.elapsed() / READS
    };
    let shared: Arc<dyn Clock> = Arc::new(SystemClock);
    let theirs = QuantaClock::default();
    let start = theirs.now();
    for _ in 0..5 {
        let direct = time(&|| SystemClock.now().as_micros());
        let dynamic = time(&|| shared.now().as_micros());
        let governor = time(&|| theirs.now().duration_since(start).as_u64());
        println!("SystemClock {direct:?}, Arc<dyn Clock> {dynamic:?}, governor {governor:?}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [clocks] if clocks == "clocks" => time_clocks(),
        [library, clock, n, checks] => {
            run(library, clock, n.parse().unwrap(), checks.parse().unwrap());
        }
        _ => {
            for library in ["ours", "governor"] {
                for clock in ["fake", "frozen", "real"] {
                    run(library, clock, 10, 10);
                }
            }
        }
    }
}
