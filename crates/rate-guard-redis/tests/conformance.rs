//! Conformance: the same `ManualClock` timelines replayed on `MemoryStore` and on `RedisStore`
//! (standalone and cluster) give identical decisions, for every algorithm — fixed timelines and
//! random ones. Real servers from the testkit.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use rate_guard_core::{
    Algorithm, Check, KeyBuilder, MemoryStore, Mode, Quota, Request, Rule, Store, Timestamp,
};
use rate_guard_redis::RedisStore;
use rate_guard_testkit::{RedisCluster, RedisServer};

const START: u64 = 1_700_000_000_123_456;

/// One request of a timeline.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Microseconds since the previous step.
    advance: u64,
    cost: u32,
    peek: bool,
}

/// A store with a generous per-call budget: these tests check decisions, not latency, and run
/// beside a dozen other Redis processes on two cores.
async fn connect(url: &str) -> Result<RedisStore, rate_guard_redis::ConnectionError> {
    let config = rate_guard_redis::RedisConfig::from_url(url)?.timeout(Duration::from_secs(2));
    let store = RedisStore::connect(&config).await?;
    assert!(
        store.uses_functions(),
        "the servers of these tests run functions"
    );
    Ok(store)
}

/// [`connect`], with `EVALSHA` of the scripts rather than `FCALL` of the function library.
async fn connect_evalsha(url: &str) -> Result<RedisStore, rate_guard_redis::ConnectionError> {
    let config = rate_guard_redis::RedisConfig::from_url(url)?.timeout(Duration::from_secs(2));
    let store = RedisStore::connect_with(&config, false).await?;
    assert!(!store.uses_functions());
    Ok(store)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Keys unique to one replay, sharing the identity (one slot on a cluster).
fn keys(rules: &[Rule]) -> Vec<String> {
    static REPLAY: AtomicU64 = AtomicU64::new(0);
    let identity = format!("client-{}", REPLAY.fetch_add(1, Ordering::Relaxed));
    rules
        .iter()
        .map(|r| KeyBuilder::default().key(r, &identity))
        .collect()
}

/// Replays `steps` on a fresh memory store and on `redis`; panics on the first difference.
async fn replay(redis: &RedisStore, rules: &[Rule], steps: &[Step]) -> Result<(), String> {
    let memory = MemoryStore::default();
    let keys = keys(rules);
    let mut now = START;
    for (i, step) in steps.iter().enumerate() {
        now += step.advance;
        let cost = NonZeroU32::new(step.cost).unwrap();
        let checks: Vec<Check<'_>> = rules
            .iter()
            .zip(&keys)
            .map(|(rule, key)| Check { rule, key, cost })
            .collect();
        let mode = if step.peek { Mode::Peek } else { Mode::Hit };
        let request = Request {
            checks: &checks,
            mode,
            now: Some(Timestamp::from_micros(now)),
        };
        let expected = memory.decide_now(request).map_err(|e| e.to_string())?;
        let actual = redis.decide(request).await.map_err(|e| e.to_string())?;
        if expected != actual {
            return Err(format!(
                "step {i} ({step:?}) at {now}:\n memory {:?}\n redis  {:?}",
                expected.rules(),
                actual.rules()
            ));
        }
    }
    Ok(())
}

fn rule(rate: &str, algorithm: Algorithm, burst: Option<u32>) -> Rule {
    let mut b = Rule::builder(rate.parse::<Quota>().unwrap()).algorithm(algorithm);
    if let Some(burst) = burst {
        b = b.burst(burst);
    }
    b.build().unwrap()
}

/// Deterministic timelines: a linear congruential walk over gaps, costs and peeks.
fn fixed_steps(seed: u64, period: u64, len: usize) -> Vec<Step> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = x >> 33;
            Step {
                advance: match r % 4 {
                    0 => 0,
                    1 => r % 1_000,
                    2 => period / 10 + r % (period / 3 + 1),
                    _ => period * (r % 3) / 2 + r % 997,
                },
                cost: 1 + u32::from(r.is_multiple_of(7)) * (1 + (r % 5) as u32),
                peek: r.is_multiple_of(11),
            }
        })
        .collect()
}

fn fixed_rule_sets() -> Vec<Vec<Rule>> {
    let mut sets: Vec<Vec<Rule>> = Algorithm::ALL
        .into_iter()
        .flat_map(|a| {
            let burst = (a == Algorithm::TokenBucket).then_some(7);
            [
                vec![rule("5/second", a, None)],
                vec![rule("3 per 7 seconds", a, burst)],
                vec![rule("100/minute", a, None)],
                vec![rule("7/1500 milliseconds", a, None)],
            ]
        })
        .collect();
    // Several rules decided together, all-or-nothing.
    sets.push(vec![
        rule("10/minute", Algorithm::SlidingWindow, None),
        rule("3/second", Algorithm::FixedWindow, None),
        rule("4/second", Algorithm::TokenBucket, Some(6)),
        rule("5 per 2 seconds", Algorithm::SlidingLog, None),
    ]);
    sets
}

fn run_fixed(rt: &tokio::runtime::Runtime, redis: &RedisStore) {
    for (n, rules) in fixed_rule_sets().iter().enumerate() {
        let period = rules[0].period_micros();
        let steps = fixed_steps(n as u64 + 1, period, 300);
        rt.block_on(replay(redis, rules, &steps))
            .unwrap_or_else(|e| panic!("{rules:?}: {e}"));
    }
}

fn random_rules() -> impl Strategy<Value = Vec<Rule>> {
    let one = (
        prop::sample::select(Algorithm::ALL.to_vec()),
        1u32..=12,
        prop::sample::select(vec![1u64, 7, 1_000, 1_500, 60_000, 3_600_000]),
        0u32..=2,
    )
        .prop_map(|(algorithm, count, period_ms, burst_extra)| {
            let quota = Quota::new(
                NonZeroU32::new(count).unwrap(),
                Duration::from_millis(period_ms),
            )
            .unwrap();
            let mut b = Rule::builder(quota).algorithm(algorithm);
            if algorithm == Algorithm::TokenBucket && burst_extra > 0 {
                b = b.burst(count + burst_extra * 3);
            }
            b.build().unwrap()
        });
    prop::collection::vec(one, 1..=3).prop_filter("distinct rule ids", |rules| {
        let mut ids: Vec<&str> = rules.iter().map(Rule::id).collect();
        ids.sort_unstable();
        ids.windows(2).all(|w| w[0] != w[1])
    })
}

fn random_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop_oneof![3 => Just(0u64), 3 => 0u64..2_000, 2 => 0u64..2_000_000, 1 => 0u64..7_200_000_000],
            prop_oneof![6 => Just(1u32), 2 => 2u32..6, 1 => 6u32..20],
            prop::bool::weighted(0.1),
        )
            .prop_map(|(advance, cost, peek)| Step { advance, cost, peek }),
        1..60,
    )
}

fn run_random(rt: &tokio::runtime::Runtime, redis: &RedisStore, cases: u32) {
    // PROPTEST_CASES raises the count (the soak run does).
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    });
    runner
        .run(&(random_rules(), random_steps()), |(rules, steps)| {
            rt.block_on(replay(redis, &rules, &steps))
                .map_err(TestCaseError::fail)
        })
        .unwrap();
}

#[test]
fn fixed_timelines_match_on_standalone() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    let redis = rt.block_on(connect(&server.url())).unwrap();
    run_fixed(&rt, &redis);
}

#[test]
fn random_timelines_match_on_standalone() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    let redis = rt.block_on(connect(&server.url())).unwrap();
    run_random(&rt, &redis, 96);
}

#[test]
fn fixed_and_random_timelines_match_on_cluster() {
    let cluster = RedisCluster::start().unwrap();
    let rt = runtime();
    let redis = rt.block_on(connect(&cluster.url())).unwrap();
    run_fixed(&rt, &redis);
    run_random(&rt, &redis, 32);
}

#[test]
fn fixed_and_random_timelines_match_with_evalsha() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    let redis = rt.block_on(connect_evalsha(&server.url())).unwrap();
    run_fixed(&rt, &redis);
    run_random(&rt, &redis, 48);
}

#[test]
fn fixed_timelines_match_with_evalsha_on_cluster() {
    let cluster = RedisCluster::start().unwrap();
    let rt = runtime();
    let redis = rt.block_on(connect_evalsha(&cluster.url())).unwrap();
    run_fixed(&rt, &redis);
}
