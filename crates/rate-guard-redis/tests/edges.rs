//! The documented ranges at their edges (issue 12): every algorithm driven through the memory
//! store and Redis with counts, periods, bursts, costs and timestamps drawn from the whole range,
//! ends included. The two stores agree decision for decision, neither admits more than the rule
//! allows, every key keeps a TTL, and no script call is slow (the server logs any call above
//! 50 ms; the test asserts that log stays empty instead of timing calls itself).
//! Then the reproductions of issue 12 on both stores. Real servers from the testkit.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use rate_guard_core::bounds::{
    MAX_CLOCK_STEP_BACK_MICROS, MAX_REFILL_MICROS, MAX_SLIDING_LOG_LIMIT,
};
use rate_guard_core::{
    Algorithm, Check, ConfigError, Decision, KeyBuilder, MemoryStore, Mode, Quota, Request, Rule,
    Store, Timestamp,
};
use rate_guard_redis::RedisStore;
use rate_guard_testkit::{RedisCluster, RedisServer};

/// About 2026-11: timestamps near today's.
const START: u64 = 1_796_000_000_123_456;
/// The latest time a timeline reaches (2096): ten-thousand-day periods add up fast.
const LATEST: u64 = 4_000_000_000_000_000;
const MAX_PERIOD_MS: u64 = 10_000 * 86_400_000;
/// What the servers log as slow, in microseconds: half a second. A search is bounded to ~130
/// steps (microseconds of Lua); an unbounded one runs until Redis's busy-script limit (seconds).
/// 50 ms was within reach of a preempted server on this 2-core VM at load 10+ (a flaky test).
const SLOW_MICROS: &str = "500000";

/// A store with a generous per-call budget: these tests check decisions, not latency (the slow
/// log does), and run beside a dozen other Redis processes on two cores.
async fn connect(url: &str) -> RedisStore {
    let config = rate_guard_redis::RedisConfig::from_url(url)
        .unwrap()
        .timeout(Duration::from_secs(5));
    RedisStore::connect(&config).await.unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A standalone server that logs every call slower than 50 ms.
fn server() -> RedisServer {
    RedisServer::builder()
        .args([
            "--slowlog-log-slower-than",
            SLOW_MICROS,
            "--slowlog-max-len",
            "64",
        ])
        .start()
        .unwrap()
}

/// A plain connection for inspecting keys and the slow log.
fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn slow_calls(con: &mut redis::Connection) -> (i64, String) {
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(con).unwrap();
    let entries: redis::Value = redis::cmd("SLOWLOG").arg("GET").query(con).unwrap();
    (len, format!("{entries:?}"))
}

fn pttl(con: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(con).unwrap()
}

/// A fresh identity per replay (one slot on a cluster).
fn identity() -> String {
    static REPLAY: AtomicU64 = AtomicU64::new(0);
    format!("edge-{}", REPLAY.fetch_add(1, Ordering::Relaxed))
}

fn keys(rules: &[Rule]) -> Vec<String> {
    let identity = identity();
    rules
        .iter()
        .map(|r| KeyBuilder::default().key(r, &identity))
        .collect()
}

fn rule(rate: &str, algorithm: Algorithm, burst: Option<u32>) -> Result<Rule, ConfigError> {
    let mut b = Rule::builder(rate.parse::<Quota>().unwrap()).algorithm(algorithm);
    if let Some(burst) = burst {
        b = b.burst(burst);
    }
    b.build()
}

/// The largest burst a token bucket of `count` per `period_ms` may have.
fn max_burst(count: u32, period_ms: u64) -> u32 {
    let most = u128::from(MAX_REFILL_MICROS) * u128::from(count) / (u128::from(period_ms) * 1_000);
    u32::try_from(most).unwrap_or(u32::MAX).max(1)
}

/// Both stores, deciding at a replayed `now`.
struct Pair<'a> {
    memory: MemoryStore,
    redis: &'a RedisStore,
    rt: &'a tokio::runtime::Runtime,
}

impl<'a> Pair<'a> {
    fn new(redis: &'a RedisStore, rt: &'a tokio::runtime::Runtime) -> Self {
        Self {
            memory: MemoryStore::default(),
            redis,
            rt,
        }
    }

    /// One request on both stores; the decisions of every rule, which must agree.
    fn decide(
        &self,
        rules: &[Rule],
        keys: &[String],
        now: u64,
        cost: u32,
        mode: Mode,
    ) -> Result<Vec<Decision>, String> {
        let cost = NonZeroU32::new(cost).unwrap();
        let checks: Vec<Check<'_>> = rules
            .iter()
            .zip(keys)
            .map(|(rule, key)| Check { rule, key, cost })
            .collect();
        let request = Request {
            checks: &checks,
            mode,
            now: Some(Timestamp::from_micros(now)),
        };
        let expected = self.memory.decide_now(request).map_err(|e| e.to_string())?;
        let actual = self
            .rt
            .block_on(self.redis.decide(request))
            .map_err(|e| format!("at {now}, cost {cost}, {mode:?}: redis failed: {e}"))?;
        if expected != actual {
            return Err(format!(
                "at {now}, cost {cost}, {mode:?}:\n memory {:?}\n redis  {:?}",
                expected.rules(),
                actual.rules()
            ));
        }
        Ok(expected.rules().to_vec())
    }

    fn hit(&self, rule: &Rule, key: &str, now: u64, cost: u32) -> Decision {
        self.decide(
            std::slice::from_ref(rule),
            &[key.to_owned()],
            now,
            cost,
            Mode::Hit,
        )
        .unwrap()[0]
    }
}

// ---------------------------------------------------------------------------------------------
// The property test.

#[derive(Debug, Clone, Copy)]
enum Advance {
    /// Microseconds.
    By(u64),
    /// A fraction of the period, per mille.
    Permille(u64),
    /// To the end of the window holding now, plus -1, 0 or 1 microsecond.
    WindowEnd(i8),
}

#[derive(Debug, Clone, Copy)]
enum Cost {
    One,
    Capacity,
    AboveCapacity,
    Max,
    /// A fraction of the capacity, per mille (at least 1).
    Permille(u32),
}

#[derive(Debug, Clone, Copy)]
struct Step {
    advance: Advance,
    cost: Cost,
    peek: bool,
}

impl Step {
    fn now_after(&self, now: u64, period: u64) -> u64 {
        match self.advance {
            Advance::By(d) => now + d,
            Advance::Permille(p) => now + period / 1_000 * p + period % 1_000 * p / 1_000,
            Advance::WindowEnd(delta) => {
                let end = now - now % period + period;
                end.saturating_add_signed(i64::from(delta)).max(now)
            }
        }
    }

    fn cost(&self, capacity: u32) -> u32 {
        match self.cost {
            Cost::One => 1,
            Cost::Capacity => capacity,
            Cost::AboveCapacity => capacity.saturating_add(1),
            Cost::Max => u32::MAX,
            Cost::Permille(p) => u32::try_from(u64::from(capacity) * u64::from(p) / 1_000)
                .unwrap()
                .max(1),
        }
    }
}

fn count_for(algorithm: Algorithm) -> BoxedStrategy<u32> {
    if algorithm == Algorithm::SlidingLog {
        prop_oneof![
            Just(1u32),
            Just(MAX_SLIDING_LOG_LIMIT),
            1..=20u32,
            1..=MAX_SLIDING_LOG_LIMIT
        ]
        .boxed()
    } else {
        prop_oneof![
            Just(1u32),
            Just(2u32),
            Just(u32::MAX),
            Just(u32::MAX - 1),
            1..=20u32,
            1..=u32::MAX
        ]
        .boxed()
    }
}

fn period_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1u64),
        Just(MAX_PERIOD_MS),
        Just(MAX_PERIOD_MS - 1),
        Just(1_000u64),
        1..=5_000u64,
        1..=MAX_PERIOD_MS,
    ]
}

/// A rule from the whole documented range: a token bucket's burst absent, 1, at the refill
/// limit, or in between.
fn edge_rule() -> impl Strategy<Value = Rule> {
    prop::sample::select(Algorithm::ALL.to_vec())
        .prop_flat_map(|a| (Just(a), count_for(a), period_ms(), 0u8..4, any::<u32>()))
        .prop_map(|(algorithm, count, period_ms, burst_kind, pick)| {
            let quota = Quota::new(
                NonZeroU32::new(count).unwrap(),
                Duration::from_millis(period_ms),
            )
            .unwrap();
            let mut b = Rule::builder(quota).algorithm(algorithm);
            if algorithm == Algorithm::TokenBucket {
                let most = max_burst(count, period_ms);
                match burst_kind {
                    1 => b = b.burst(most),
                    2 => b = b.burst(1),
                    3 => b = b.burst(1 + pick % most),
                    _ => {}
                }
            }
            b.build().unwrap()
        })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let advance = prop_oneof![
        2 => Just(Advance::By(0)),
        2 => (0u64..2_000).prop_map(Advance::By),
        2 => (0u64..3_000).prop_map(Advance::Permille),
        3 => (-1i8..=1).prop_map(Advance::WindowEnd),
        1 => (0u64..MAX_CLOCK_STEP_BACK_MICROS * 2).prop_map(Advance::By),
    ];
    let cost = prop_oneof![
        4 => Just(Cost::One),
        2 => Just(Cost::Capacity),
        1 => Just(Cost::AboveCapacity),
        1 => Just(Cost::Max),
        3 => (0u32..=1_000).prop_map(Cost::Permille),
    ];
    prop::collection::vec(
        (advance, cost, prop::bool::weighted(0.1)).prop_map(|(advance, cost, peek)| Step {
            advance,
            cost,
            peek,
        }),
        1..20,
    )
}

/// What the rule admitted never exceeds what it allows: per window (fixed and sliding window),
/// per sliding period (log), `burst + rate × t` in any interval `t` (bucket).
fn check_admitted(rule: &Rule, admitted: &[(u64, u64)]) -> Result<(), String> {
    let period = rule.period_micros();
    let limit = u64::from(rule.count());
    let over = |what: String| Err(format!("{rule}: admitted {what}"));
    match rule.algorithm() {
        Algorithm::FixedWindow | Algorithm::SlidingWindow => {
            let mut per_window = std::collections::BTreeMap::<u64, u64>::new();
            for &(at, cost) in admitted {
                *per_window.entry(at / period).or_default() += cost;
            }
            if let Some((w, n)) = per_window.iter().find(|(_, &n)| n > limit) {
                return over(format!("{n} in window {w}"));
            }
        }
        Algorithm::SlidingLog => {
            for &(t, _) in admitted {
                let n: u64 = admitted
                    .iter()
                    .filter(|&&(u, _)| u <= t && u + period > t)
                    .map(|&(_, c)| c)
                    .sum();
                if n > limit {
                    return over(format!("{n} in the period ending {t}"));
                }
            }
        }
        _ => {
            let burst = f64::from(rule.capacity());
            let rate = f64::from(rule.count()) / period as f64;
            for i in 0..admitted.len() {
                let mut n = 0u64;
                for (j, &(t, cost)) in admitted.iter().enumerate().skip(i) {
                    n += cost;
                    let allowed = burst + rate * (t - admitted[i].0) as f64;
                    // The bucket's tolerance: a millionth of a token per admission.
                    if n as f64 > allowed * (1.0 + 1e-12) + 1e-6 * (j - i + 1) as f64 {
                        return over(format!(
                            "{n} between {} and {t} (at most {allowed})",
                            admitted[i].0
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Plays `steps` on both stores: same decisions, nothing over-admitted, every key with a TTL.
fn play(
    pair: &Pair<'_>,
    ttl: &mut dyn FnMut(&str) -> i64,
    rules: &[Rule],
    start: u64,
    steps: &[Step],
) -> Result<(), String> {
    let keys = keys(rules);
    let period = rules[0].period_micros();
    let capacity = rules.iter().map(Rule::capacity).max().unwrap();
    let mut now = start;
    let mut admitted: Vec<Vec<(u64, u64)>> = vec![Vec::new(); rules.len()];
    for (i, step) in steps.iter().enumerate() {
        now = step.now_after(now, period).min(LATEST);
        let cost = step.cost(capacity);
        let mode = if step.peek { Mode::Peek } else { Mode::Hit };
        let decisions = pair
            .decide(rules, &keys, now, cost, mode)
            .map_err(|e| format!("step {i} {step:?}: {e}"))?;
        let all = decisions.iter().all(|d| d.allowed);
        for ((key, log), d) in keys.iter().zip(&mut admitted).zip(&decisions) {
            if mode == Mode::Hit && all {
                log.push((now, u64::from(cost)));
            }
            let ms = ttl(key);
            // -2: no key (never written, or deleted); -1 would be a key that lingers for ever.
            if ms == -1 || ms == 0 || (ms == -2 && mode == Mode::Hit && all) {
                return Err(format!(
                    "step {i} {step:?}: {key} has PTTL {ms} after {d:?}"
                ));
            }
            if d.remaining > d.limit {
                return Err(format!("step {i}: remaining above limit: {d:?}"));
            }
        }
    }
    for (rule, log) in rules.iter().zip(&admitted) {
        check_admitted(rule, log)?;
    }
    Ok(())
}

fn cases(default: u32) -> u32 {
    // PROPTEST_CASES raises the count (the soak run does).
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    })
}

fn rule_sets() -> impl Strategy<Value = Vec<Rule>> {
    prop_oneof![
        4 => edge_rule().prop_map(|r| vec![r]),
        1 => prop::collection::vec(edge_rule(), 2..=3).prop_filter("distinct ids", |rules| {
            let mut ids: Vec<&str> = rules.iter().map(Rule::id).collect();
            ids.sort_unstable();
            ids.windows(2).all(|w| w[0] != w[1])
        }),
    ]
}

#[test]
fn every_algorithm_at_the_edges_of_its_ranges_on_standalone() {
    let server = server();
    let rt = runtime();
    let redis = rt.block_on(connect(&server.url()));
    let con = std::cell::RefCell::new(raw(&server));
    let mut runner = runner(cases(128));
    runner
        .run(
            &(rule_sets(), 0u64..MAX_PERIOD_MS * 1_000, steps()),
            |(rules, phase, steps)| {
                let pair = Pair::new(&redis, &rt);
                let mut ttl = |key: &str| pttl(&mut con.borrow_mut(), key);
                play(
                    &pair,
                    &mut ttl,
                    &rules,
                    START + phase % rules[0].period_micros(),
                    &steps,
                )
                .map_err(TestCaseError::fail)
            },
        )
        .unwrap();
    let (slow, entries) = slow_calls(&mut con.borrow_mut());
    assert_eq!(slow, 0, "slow script calls: {entries}");
    assert_eq!(server.cmd(&["PING"]).unwrap(), "PONG");
}

#[test]
fn every_algorithm_at_the_edges_of_its_ranges_on_cluster() {
    let cluster = RedisCluster::start().unwrap();
    for node in cluster.nodes() {
        node.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", SLOW_MICROS])
            .unwrap();
    }
    let rt = runtime();
    let redis = rt.block_on(connect(&cluster.url()));
    let mut runner = runner(cases(24));
    runner
        .run(&(rule_sets(), steps()), |(rules, steps)| {
            let pair = Pair::new(&redis, &rt);
            // TTLs are checked on the standalone server; here every key is said to have one.
            let mut ttl = |_: &str| 1;
            play(&pair, &mut ttl, &rules, START, &steps).map_err(TestCaseError::fail)
        })
        .unwrap();
    for node in cluster.nodes() {
        let slow = node.cmd(&["SLOWLOG", "LEN"]).unwrap();
        let entries = node.cmd(&["SLOWLOG", "GET"]).unwrap();
        assert_eq!(slow, "0", "slow script calls on {}: {entries}", node.addr());
    }
}

/// Clocks that step back, by less and by more than the slack a stored state may lie ahead:
/// both stores read a state too far ahead as none, and drop it alike.
#[test]
fn clocks_stepping_back_are_decided_alike() {
    let server = server();
    let rt = runtime();
    let redis = rt.block_on(connect(&server.url()));
    let mut con = raw(&server);
    let slack = i64::try_from(MAX_CLOCK_STEP_BACK_MICROS).unwrap();
    let jumps = [
        0,
        -1,
        -slack,
        -slack - 1,
        slack + 1,
        -2 * slack,
        2 * slack,
        -slack + 1,
        -10,
        1,
        slack,
        -3 * slack,
        3 * slack + 7,
    ];
    for algorithm in Algorithm::ALL {
        for rate in ["3/second", "5/hour", "4/day", "2/10000 days"] {
            let rules = [rule(rate, algorithm, None).unwrap()];
            let keys = keys(&rules);
            let pair = Pair::new(&redis, &rt);
            let mut now = START;
            for (i, jump) in jumps.iter().cycle().take(3 * jumps.len()).enumerate() {
                now = now.saturating_add_signed(*jump);
                let mode = if i % 5 == 4 { Mode::Peek } else { Mode::Hit };
                pair.decide(&rules, &keys, now, 1 + (i % 3) as u32, mode)
                    .unwrap_or_else(|e| panic!("{algorithm} {rate} step {i}: {e}"));
                let ms = pttl(&mut con, &keys[0]);
                assert!(ms > 0 || ms == -2, "{algorithm} {rate} step {i}: PTTL {ms}");
            }
        }
    }
}

/// The Lua searches (common.lua) on their own: the boundary whatever the estimate, from either
/// end of ranges up to 2^53, in at most ~130 predicate calls (stepping by one from a bad
/// estimate hung a shared Redis). Conformance only reaches their fast path.
#[test]
fn lua_searches_are_bounded_whatever_the_estimate() {
    let driver = r"
        local calls = 0
        local function below(k, b) calls = calls + 1; return k <= b end
        local function above(e, b) calls = calls + 1; return e >= b end
        local out = {}
        for i = 1, #ARGV, 4 do
          local lo, hi, b, est = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
          calls = 0
          out[#out + 1] = largest_satisfying(hi, est, below, b)
          out[#out + 1] = calls
          calls = 0
          out[#out + 1] = smallest_satisfying(lo, hi, est, above, b)
          out[#out + 1] = calls
        end
        return out
    ";
    let script = format!("{}\n{driver}", include_str!("../lua/common.lua"));
    let server = server();
    let mut con = raw(&server);
    let top: u64 = (1 << 53) - 1;
    let estimates = [
        "-inf",
        "-1",
        "0",
        "0.5",
        "3",
        "1e6",
        "4503599627370496",
        "1e300",
        "inf",
        "nan",
    ];
    for hi in [1u64, 2, 1_000, u64::from(u32::MAX), 1 << 52, top] {
        for b in [0, 1, hi / 3, hi / 2 + 1, hi - 1, hi] {
            let lo = b.min(7);
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(&script).arg(0);
            for est in estimates {
                cmd.arg(lo).arg(hi).arg(b).arg(est);
            }
            let out: Vec<i64> = cmd.query(&mut con).unwrap();
            for (est, r) in estimates.iter().zip(out.chunks(4)) {
                let what = format!("hi {hi}, boundary {b}, estimate {est}");
                assert_eq!(r[0], i64::try_from(b).unwrap(), "largest: {what}");
                assert_eq!(r[2], i64::try_from(b.max(lo)).unwrap(), "smallest: {what}");
                assert!(r[1] <= 130 && r[3] <= 130, "{r:?} calls: {what}");
            }
        }
    }
    let (slow, entries) = slow_calls(&mut con);
    assert_eq!(slow, 0, "{entries}");
}

// ---------------------------------------------------------------------------------------------
// Issue 12's reproductions.

/// The rule that hung a shared Redis is refused; its largest valid neighbours decide correctly
/// on both stores, and Redis still answers.
#[test]
fn the_hanging_token_bucket_is_refused_and_its_neighbours_decide() {
    let err = rule("1/10000 days", Algorithm::TokenBucket, Some(20)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "token_bucket burst 20 with 1/10000 days refills in 200000 days; the longest allowed is \
         10000 days (lower burst or raise the rate)"
    );
    let server = server();
    let rt = runtime();
    let redis = rt.block_on(connect(&server.url()));
    let mut con = raw(&server);
    let pair = Pair::new(&redis, &rt);
    let day = 86_400_000_000u64;

    let slow = rule("1/10000 days", Algorithm::TokenBucket, Some(1)).unwrap();
    let key = &keys(std::slice::from_ref(&slow))[0];
    assert!(pair.hit(&slow, key, START, 1).allowed);
    let denied = pair.hit(&slow, key, START, 1);
    assert!(!denied.allowed);
    // Ten thousand days, less the bucket's tolerance of a millionth of a token (864 s).
    assert_eq!(
        denied.retry_after,
        Some(Duration::from_micros(10_000 * day - 864_000_000))
    );
    let never = pair.hit(&slow, key, START, 20);
    assert_eq!((never.allowed, never.retry_after), (false, None));
    assert!(pair.hit(&slow, key, START + 10_000 * day, 1).allowed);
    assert!(pttl(&mut con, key) > 0);

    // 10/day with the largest burst: 100,000 tokens that take 10,000 days to come back.
    let big = rule("10/day", Algorithm::TokenBucket, Some(100_000)).unwrap();
    let key = &keys(std::slice::from_ref(&big))[0];
    assert!(pair.hit(&big, key, START, 20).allowed);
    assert!(pair.hit(&big, key, START, 11).allowed);
    let full = pair.hit(&big, key, START, 99_969);
    assert!(full.allowed, "{full:?}");
    assert_eq!(full.remaining, 0);
    assert_eq!(full.reset_after, Duration::from_micros(10_000 * day));
    let denied = pair.hit(&big, key, START, 11);
    // 11 intervals of 8.64e9 µs, less the bucket's tolerance of a millionth of one.
    assert_eq!(
        denied.retry_after,
        Some(Duration::from_micros(11 * day / 10 - 8_640))
    );
    assert!(pttl(&mut con, key) > 0);
    assert_eq!(server.cmd(&["PING"]).unwrap(), "PONG");
    let (slow, entries) = slow_calls(&mut con);
    assert_eq!(slow, 0, "{entries}");
}

/// Backlogs beyond `u64` microseconds made the memory store over-admit: the rules that did are
/// refused, and their largest valid neighbours admit exactly what fits.
#[test]
fn long_backlogs_admit_exactly_what_fits() {
    assert!(rule("1/10000 days", Algorithm::TokenBucket, Some(100_000)).is_err());
    assert!(rule("1/day", Algorithm::TokenBucket, Some(1_000_000_000)).is_err());
    let server = server();
    let rt = runtime();
    let redis = rt.block_on(connect(&server.url()));
    let mut con = raw(&server);
    let pair = Pair::new(&redis, &rt);
    for (rate, burst, cost) in [("1/day", 10_000, 3_000), ("10/day", 100_000, 30_000)] {
        let bucket = rule(rate, Algorithm::TokenBucket, Some(burst)).unwrap();
        let key = &keys(std::slice::from_ref(&bucket))[0];
        let admitted: Vec<bool> = (0..4)
            .map(|i| pair.hit(&bucket, key, START + i, cost).allowed)
            .collect();
        assert_eq!(admitted, [true, true, true, false], "{bucket}");
        assert!(pttl(&mut con, key) > 0);
    }
}

/// A sliding log's state is one entry per admitted unit: its limit is bounded, a request above
/// it is denied at once on Redis, and a full-size request is not slow.
#[test]
fn sliding_logs_are_bounded_and_fast() {
    let err = rule("4294967295/hour", Algorithm::SlidingLog, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sliding_log limit 4294967295 is above 10000 (its state is one entry per request): use \
         sliding_window"
    );
    let server = server();
    let rt = runtime();
    let redis = rt.block_on(connect(&server.url()));
    let mut con = raw(&server);
    let pair = Pair::new(&redis, &rt);
    let log = rule("10000/hour", Algorithm::SlidingLog, None).unwrap();
    let key = &keys(std::slice::from_ref(&log))[0];
    let huge = pair.hit(&log, key, START, 200_000);
    assert_eq!((huge.allowed, huge.retry_after), (false, None));
    assert_eq!(pttl(&mut con, key), -2, "a denied request consumes nothing");
    assert!(pair.hit(&log, key, START, 9_999).allowed);
    assert!(pair.hit(&log, key, START + 1, 1).allowed);
    assert!(!pair.hit(&log, key, START + 2, 1).allowed);
    assert!(!pair.hit(&log, key, START + 3_600_000_000, 10_000).allowed);
    assert!(pair.hit(&log, key, START + 3_600_000_001, 10_000).allowed);
    let card: i64 = redis::cmd("ZCARD").arg(key).query(&mut con).unwrap();
    assert_eq!(card, 1, "one member per request, whatever its cost");
    assert!(pttl(&mut con, key) > 0);

    // Requests of several units: the time a denied request fits is found among them, alike.
    let mixed = rule("40/minute", Algorithm::SlidingLog, None).unwrap();
    let key = &keys(std::slice::from_ref(&mixed))[0];
    let (second, minute) = (1_000_000, 60_000_000);
    let mut units = Vec::new();
    for (i, cost) in [3, 1, 5, 1, 1, 7, 2, 9, 1, 4, 6].into_iter().enumerate() {
        let at = START + second * i as u64;
        assert!(pair.hit(&mixed, key, at, cost).allowed, "{i}");
        units.extend(std::iter::repeat_n(at, cost as usize));
    }
    let rules = [mixed];
    for now in [
        START + 20 * second,
        START + minute + 1,
        START + minute + 4 * second,
    ] {
        let live: Vec<u64> = units.iter().copied().filter(|t| t + minute > now).collect();
        for cost in 1..=41u32 {
            let peek = pair
                .decide(&rules, std::slice::from_ref(key), now, cost, Mode::Peek)
                .unwrap()[0];
            let room = 40 - live.len();
            let expected = match cost as usize {
                41 => None,
                c if c <= room => None,
                c => Some(Duration::from_micros(live[c - room - 1] + minute - now)),
            };
            assert_eq!(peek.retry_after, expected, "cost {cost} at {now}");
        }
    }
    let (slow, entries) = slow_calls(&mut con);
    assert_eq!(slow, 0, "{entries}");
}
