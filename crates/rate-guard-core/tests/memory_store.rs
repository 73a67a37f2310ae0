//! The memory store under threads, under a flood of keys, and over time.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rate_guard_core::{
    Action, Algorithm, Check, ConfigError, Hit, Limiter, ManualClock, MemoryStore, Quota, Request,
    Rule, StoreError, Timestamp,
};

const START: u64 = 1_700_000_000_000_000;

fn rule(s: &str, algorithm: Algorithm) -> Rule {
    Rule::builder(s.parse::<Quota>().unwrap())
        .algorithm(algorithm)
        .build()
        .unwrap()
}

#[test]
fn eight_threads_on_one_key_never_admit_more_than_the_limit() {
    for algorithm in Algorithm::ALL {
        let rule = Arc::new(rule("1000/hour", algorithm));
        let clock = ManualClock::new(Timestamp::from_micros(START));
        let store = Arc::new(MemoryStore::builder().clock(clock.clone()).build().unwrap());
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (rule, store, admitted, clock) =
                    (rule.clone(), store.clone(), admitted.clone(), clock.clone());
                std::thread::spawn(move || {
                    let check = [Check {
                        rule: &rule,
                        key: "shared",
                        cost: NonZeroU32::MIN,
                    }];
                    for i in 0..10_000 {
                        if t == 0 && i % 1_000 == 0 {
                            // Time moves, but stays within one hour of the first request.
                            clock.advance(Duration::from_millis(1));
                        }
                        if store.decide_now(Request::hit(&check)).unwrap().allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let admitted = admitted.load(Ordering::Relaxed);
        // Every algorithm admits the whole quota once within the hour, and never more.
        assert_eq!(admitted, 1_000, "{algorithm}");
    }
}

/// Requests on two keys, named in opposite orders by different threads, over few shards (so
/// that most pairs lock two shards each, in contention): the shard locks neither deadlock nor
/// let a request consume on one key while another consumes past the limit on the other.
#[test]
fn threads_locking_several_shards_in_any_order_neither_deadlock_nor_over_admit() {
    let rule = Arc::new(rule("300/hour", Algorithm::TokenBucket));
    let clock = ManualClock::new(Timestamp::from_micros(START));
    let store = Arc::new(
        MemoryStore::builder()
            .shards(4)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let keys: Arc<[String]> = (0..6).map(|k| format!("k{k}")).collect();
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (rule, store, admitted, keys) =
                (rule.clone(), store.clone(), admitted.clone(), keys.clone());
            std::thread::spawn(move || {
                for i in 0..5_000usize {
                    let (a, b) = ((i + t) % 6, (i * 5 + t + 1) % 6);
                    if a == b {
                        continue;
                    }
                    // Even threads name the lower key first, odd ones the higher.
                    let (a, b) = if t % 2 == 0 {
                        (a.min(b), a.max(b))
                    } else {
                        (a.max(b), a.min(b))
                    };
                    let checks = [a, b].map(|k| Check {
                        rule: &rule,
                        key: &keys[k],
                        cost: NonZeroU32::MIN,
                    });
                    if store.decide_now(Request::hit(&checks)).unwrap().allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Each admitted request took one from two of the six keys: at most 6 × 300 / 2 of them.
    let admitted = admitted.load(Ordering::Relaxed);
    assert!(admitted <= 900, "{admitted} admitted");
    // And every key's quota was honoured: a single-key hit on each now finds what is left.
    let mut left = 0;
    for key in keys.iter() {
        let check = [Check {
            rule: &rule,
            key,
            cost: NonZeroU32::MIN,
        }];
        let verdict = store.decide_now(Request::peek(&check)).unwrap();
        left += u64::from(verdict.decision().remaining);
    }
    assert_eq!(
        left + 2 * admitted,
        6 * 300,
        "what was taken is what was admitted"
    );
}

#[test]
fn a_flood_of_distinct_keys_stays_within_max_keys() {
    for algorithm in Algorithm::ALL {
        let max_keys = 4_096;
        let rule = rule("10/hour", algorithm);
        let store = MemoryStore::builder().max_keys(max_keys).build().unwrap();
        let now = Timestamp::from_micros(START);
        for i in 0..5 * max_keys {
            let key = format!("client-{i}");
            let check = [Check {
                rule: &rule,
                key: &key,
                cost: NonZeroU32::MIN,
            }];
            assert!(store
                .decide_now(Request::hit(&check).at(now))
                .unwrap()
                .allowed());
            assert!(
                store.len() <= max_keys,
                "{algorithm}: {} keys after {i}",
                store.len()
            );
        }
        assert!(store.evictions() >= (4 * max_keys) as u64, "{algorithm}");
    }
}

#[test]
fn tiny_max_keys_is_honoured_exactly() {
    let rule = rule("10/hour", Algorithm::FixedWindow);
    let store = MemoryStore::builder().max_keys(3).build().unwrap();
    for i in 0..50 {
        let key = i.to_string();
        let check = [Check {
            rule: &rule,
            key: &key,
            cost: NonZeroU32::MIN,
        }];
        store
            .decide_now(Request::hit(&check).at(Timestamp::from_micros(START)))
            .unwrap();
        assert!(store.len() <= 3);
    }
}

#[test]
fn eviction_keeps_the_keys_that_expire_last() {
    // A blocked client (long state) survives a flood of short-lived keys.
    let long = rule("1/day", Algorithm::FixedWindow);
    let short = rule("5/second", Algorithm::FixedWindow);
    let store = MemoryStore::builder()
        .max_keys(64)
        .shards(1)
        .build()
        .unwrap();
    let now = Timestamp::from_micros(START);
    let blocked = [Check {
        rule: &long,
        key: "abuser",
        cost: NonZeroU32::MIN,
    }];
    assert!(store
        .decide_now(Request::hit(&blocked).at(now))
        .unwrap()
        .allowed());
    for i in 0..1_000 {
        let key = format!("flood-{i}");
        let check = [Check {
            rule: &short,
            key: &key,
            cost: NonZeroU32::MIN,
        }];
        store.decide_now(Request::hit(&check).at(now)).unwrap();
    }
    assert!(!store
        .decide_now(Request::hit(&blocked).at(now))
        .unwrap()
        .allowed());
}

#[test]
fn expired_state_is_dropped_on_touch_and_by_the_sweep() {
    let rule = rule("5/second", Algorithm::SlidingWindow);
    let clock = ManualClock::new(Timestamp::from_micros(START));
    let store = MemoryStore::builder()
        .clock(clock.clone())
        // One shard: any request is due to sweep the whole store.
        .shards(1)
        .sweep_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    for i in 0..100 {
        let key = format!("k{i}");
        let check = [Check {
            rule: &rule,
            key: &key,
            cost: NonZeroU32::MIN,
        }];
        store.decide_now(Request::hit(&check)).unwrap();
    }
    assert_eq!(store.len(), 100);
    clock.advance(Duration::from_secs(3));
    // Touching a key drops it (and the request starts afresh).
    let check = [Check {
        rule: &rule,
        key: "k0",
        cost: NonZeroU32::MIN,
    }];
    let peek = store.decide_now(Request::peek(&check)).unwrap();
    assert_eq!(peek.decision().remaining, 5);
    assert_eq!(store.len(), 99);
    store.sweep();
    assert_eq!(store.len(), 0);
    // The periodic sweep runs on its own once the interval has passed.
    for i in 0..100 {
        let key = format!("k{i}");
        let check = [Check {
            rule: &rule,
            key: &key,
            cost: NonZeroU32::MIN,
        }];
        store.decide_now(Request::hit(&check)).unwrap();
    }
    clock.advance(Duration::from_secs(61));
    let other = [Check {
        rule: &rule,
        key: "fresh",
        cost: NonZeroU32::MIN,
    }];
    for _ in 0..200 {
        store.decide_now(Request::peek(&other)).unwrap();
    }
    assert!(store.len() < 100, "{} keys left", store.len());
}

#[test]
fn invalid_requests_and_settings_are_errors() {
    let store = MemoryStore::default();
    assert!(matches!(
        store.decide_now(Request::hit(&[])),
        Err(StoreError::InvalidRequest(_))
    ));
    let rule = rule("1/s", Algorithm::FixedWindow);
    let many: Vec<Check<'_>> = (0..65)
        .map(|_| Check {
            rule: &rule,
            key: "k",
            cost: NonZeroU32::MIN,
        })
        .collect();
    assert!(matches!(
        store.decide_now(Request::hit(&many)),
        Err(StoreError::InvalidRequest(_))
    ));
    assert!(matches!(
        MemoryStore::builder().max_keys(0).build(),
        Err(ConfigError::MemoryStore(_))
    ));
    assert!(matches!(
        MemoryStore::builder().shards(0).build(),
        Err(ConfigError::MemoryStore(_))
    ));
}

#[test]
fn reset_forgets_a_key() {
    let rule = rule("1/hour", Algorithm::TokenBucket);
    let store = MemoryStore::default();
    let check = [Check {
        rule: &rule,
        key: "k",
        cost: NonZeroU32::MIN,
    }];
    let now = Timestamp::from_micros(START);
    assert!(store
        .decide_now(Request::hit(&check).at(now))
        .unwrap()
        .allowed());
    assert!(!store
        .decide_now(Request::hit(&check).at(now))
        .unwrap()
        .allowed());
    store.reset_now(&["k"]);
    assert!(store
        .decide_now(Request::hit(&check).at(now))
        .unwrap()
        .allowed());
}

#[tokio::test]
async fn the_limiter_ties_rules_store_and_clock() {
    let clock = ManualClock::new(Timestamp::from_micros(START));
    let limiter = Limiter::builder()
        .rule(rule("2/second", Algorithm::FixedWindow))
        .rule(rule("3/minute", Algorithm::SlidingLog))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut log = Vec::new();
    for _ in 0..4 {
        log.push(limiter.hit("a").await.unwrap().allowed());
        clock.advance(Duration::from_secs(1));
    }
    // The per-second rule never binds; the per-minute rule stops the 4th.
    assert_eq!(log, [true, true, true, false]);
    assert!(limiter.hit("b").await.unwrap().allowed());
    assert_eq!(limiter.peek("a").await.unwrap().decision().remaining, 0);
    limiter.reset("a").await.unwrap();
    assert_eq!(limiter.peek("a").await.unwrap().decision().remaining, 2);
}

#[tokio::test]
async fn a_limiter_without_rules_decides_only_the_hits_it_is_given() {
    // A front (HTTP adapters) brings the rules of each request itself.
    let limiter = Limiter::builder().build().unwrap();
    let err = limiter.hit("a").await.unwrap_err();
    assert!(err.to_string().contains("at least one rule"), "{err}");
    let r = rule("1/s", Algorithm::FixedWindow);
    let hit = Hit::new(&r, "a", NonZeroU32::MIN);
    assert!(limiter.decide(&[hit], Action::Hit).await.unwrap().allowed());
}

#[test]
fn the_builder_refuses_invalid_limiters() {
    let r = rule("1/s", Algorithm::FixedWindow);
    let err = Limiter::builder()
        .rule(r.clone())
        .rule(r)
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::DuplicateRuleId { .. }));
    let err = Limiter::builder()
        .rule(rule("1/s", Algorithm::FixedWindow))
        .key_prefix("a:b")
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid key prefix \"a:b\""),
        "{err}"
    );
}

#[tokio::test]
async fn decide_now_is_decide_without_a_future_on_the_memory_store() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let twin = |clock: &ManualClock| {
        Limiter::builder()
            .store(MemoryStore::builder().clock(clock.clone()).build().unwrap())
            .build()
            .unwrap()
    };
    let (now, later) = (twin(&clock), twin(&clock));
    let rules = [
        rule("3/minute", Algorithm::SlidingWindow),
        rule("5/hour", Algorithm::TokenBucket),
    ];
    let hits: Vec<Hit<'_>> = rules
        .iter()
        .map(|rule| Hit::new(rule, "a", NonZeroU32::MIN))
        .collect();
    for step in 0..8 {
        let mode = if step % 3 == 2 {
            Action::Peek
        } else {
            Action::Hit
        };
        let a = now.decide_now(&hits, mode).unwrap().unwrap();
        let b = later.decide(&hits, mode).await.unwrap();
        assert_eq!(a, b, "step {step}");
        clock.advance(Duration::from_secs(7));
    }
    // A request no store could decide is the same error both ways.
    let twice = [hits[0], hits[0]];
    assert_eq!(
        now.decide_now(&twice, Action::Hit).unwrap().unwrap_err(),
        later.decide(&twice, Action::Hit).await.unwrap_err()
    );
}
