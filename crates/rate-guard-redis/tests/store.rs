//! `RedisStore` on real servers: exactness under concurrency across processes, all-or-nothing
//! requests (the cluster's refund path included), a flushed script cache, and failovers.

use std::num::NonZeroU32;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rate_guard_core::{
    Algorithm, Check, KeyBuilder, Quota, Request, Rule, Store, StoreError, Verdict,
};
use rate_guard_redis::RedisStore;
use rate_guard_testkit::{RedisCluster, RedisSentinel, RedisServer};

/// A store with a generous per-call budget: these tests check decisions, not latency, and run
/// beside a dozen other Redis processes on two cores.
async fn connect(url: &str) -> Result<RedisStore, rate_guard_redis::ConnectionError> {
    let config = rate_guard_redis::RedisConfig::from_url(url)?.timeout(Duration::from_secs(2));
    RedisStore::connect(&config).await
}

/// [`connect`], running the scripts with `EVALSHA` rather than the function library.
async fn connect_evalsha(url: &str) -> Result<RedisStore, rate_guard_redis::ConnectionError> {
    let config = rate_guard_redis::RedisConfig::from_url(url)?.timeout(Duration::from_secs(2));
    RedisStore::connect_with(&config, false).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn rule(rate: &str, algorithm: Algorithm) -> Rule {
    Rule::builder(rate.parse::<Quota>().unwrap())
        .algorithm(algorithm)
        .build()
        .unwrap()
}

/// A period long enough that nothing refills while a test runs (10,000 days).
const EXACT_RATE: &str = "1000 per 10000 days";

async fn hit(store: &RedisStore, checks: &[Check<'_>]) -> Result<Verdict, StoreError> {
    store.decide(Request::hit(checks)).await
}

/// Offers `offered` requests from `tasks` concurrent tasks on one key; returns how many passed.
async fn offer(
    store: &RedisStore,
    algorithm: Algorithm,
    key: &str,
    tasks: u64,
    offered: u64,
) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let rule = Arc::new(rule(EXACT_RATE, algorithm));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, rule, key) = (store.clone(), rule.clone(), key.to_owned());
            let (admitted, next) = (admitted.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < offered {
                    let check = [Check {
                        rule: &rule,
                        key: &key,
                        cost: NonZeroU32::MIN,
                    }];
                    if hit(&store, &check).await.unwrap().allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    admitted.load(Ordering::Relaxed)
}

/// Runs in a child process (see `exactness_across_processes`): 64 tasks offer 2,500 requests.
#[test]
#[ignore = "a worker the exactness test starts in its own process"]
fn exactness_worker() {
    let (Ok(url), Ok(algorithm), Ok(key)) = (
        std::env::var("RATE_GUARD_TEST_URL"),
        std::env::var("RATE_GUARD_TEST_ALGORITHM"),
        std::env::var("RATE_GUARD_TEST_KEY"),
    ) else {
        return;
    };
    let rt = runtime();
    let store = rt.block_on(connect(&url)).unwrap();
    let algorithm: Algorithm = algorithm.parse().unwrap();
    let admitted = rt.block_on(offer(&store, algorithm, &key, 64, 2_500));
    println!("ADMITTED={admitted}");
}

/// 2 processes × 64 tasks, 5,000 requests on one key with a limit of 1,000: exactly 1,000 pass.
fn exactness_across_processes(url: &str) {
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::SlidingLog,
        Algorithm::TokenBucket,
    ] {
        let key = format!("rate_guard:exact-{algorithm}:{{shared}}");
        let workers: Vec<_> = (0..2)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--ignored",
                        "--exact",
                        "exactness_worker",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("RATE_GUARD_TEST_URL", url)
                    .env("RATE_GUARD_TEST_ALGORITHM", algorithm.name())
                    .env("RATE_GUARD_TEST_KEY", &key)
                    .spawn_and_capture()
            })
            .collect();
        let total: u64 = workers
            .into_iter()
            .map(|w| {
                let out = w.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "worker failed: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                // The test harness prints its own words on the same line.
                let count = stdout.split("ADMITTED=").nth(1);
                let digits: String = count
                    .unwrap_or_default()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("no count in worker output: {stdout}"))
            })
            .sum();
        assert_eq!(total, 1_000, "{algorithm} on {url}");
    }
}

trait SpawnAndCapture {
    fn spawn_and_capture(&mut self) -> std::process::Child;
}

impl SpawnAndCapture for Command {
    fn spawn_and_capture(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn exact_across_processes_on_standalone() {
    let server = RedisServer::start().unwrap();
    exactness_across_processes(&server.url());
}

#[test]
fn exact_across_processes_on_cluster() {
    let cluster = RedisCluster::start().unwrap();
    exactness_across_processes(&cluster.url());
}

/// A request denied by its route rule consumes nothing from its global rule. On a cluster the
/// two keys (identities "global" and an address) live in different slots: the refund path.
async fn denied_requests_consume_nothing(store: &RedisStore) {
    let keys = KeyBuilder::default();
    for algorithm in Algorithm::ALL {
        let global = rule("100/hour", algorithm);
        let route = Rule::builder("2/hour".parse::<Quota>().unwrap())
            .algorithm(algorithm)
            .name(format!("route-{algorithm}"))
            .build()
            .unwrap();
        let global_key = keys.key(&global, "global");
        let route_key = keys.key(&route, "ip:203.0.113.7");
        let both = [
            Check {
                rule: &global,
                key: &global_key,
                cost: NonZeroU32::MIN,
            },
            Check {
                rule: &route,
                key: &route_key,
                cost: NonZeroU32::MIN,
            },
        ];
        for _ in 0..2 {
            assert!(hit(store, &both).await.unwrap().allowed(), "{algorithm}");
        }
        let only_global = [both[0]];
        let before = store
            .decide(Request::peek(&only_global))
            .await
            .unwrap()
            .decision();
        assert_eq!(before.remaining, 98, "{algorithm}");
        for _ in 0..5 {
            let v = hit(store, &both).await.unwrap();
            assert!(!v.allowed(), "{algorithm}");
            assert_eq!(v.deciding_rule(), 1, "{algorithm}: the route rule denies");
        }
        let after = store
            .decide(Request::peek(&only_global))
            .await
            .unwrap()
            .decision();
        assert_eq!(
            after.remaining, 98,
            "{algorithm}: the global rule lost quota to denied requests"
        );
        store.reset(&[&global_key, &route_key]).await.unwrap();
    }
}

#[test]
fn atomic_on_standalone() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&server.url())).unwrap();
    rt.block_on(denied_requests_consume_nothing(&store));
}

#[test]
fn atomic_on_sentinel() {
    let sentinel = RedisSentinel::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&sentinel.url())).unwrap();
    rt.block_on(denied_requests_consume_nothing(&store));
}

#[test]
fn atomic_on_cluster_through_refunds() {
    let cluster = RedisCluster::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&cluster.url())).unwrap();
    rt.block_on(denied_requests_consume_nothing(&store));
}

/// Hits `rule` every few milliseconds for `run`, calling `during` once midway; every decision
/// must come back, and the count admitted must be what the rule allows.
async fn keep_deciding(
    store: &RedisStore,
    key: &str,
    mut during: impl FnMut(),
    errors_allowed: Duration,
) -> (u64, u64) {
    let rule = rule("1000000/hour", Algorithm::FixedWindow);
    let check = [Check {
        rule: &rule,
        key,
        cost: NonZeroU32::MIN,
    }];
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut first_error: Option<Instant> = None;
    for i in 0..400 {
        if i == 200 {
            during();
        }
        match hit(store, &check).await {
            Ok(v) => {
                assert!(v.allowed());
                ok += 1;
                first_error = None;
            }
            Err(e) => {
                assert!(e.is_transient(), "a non-transient error: {e}");
                failed += 1;
                let since = *first_error.get_or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < errors_allowed,
                    "still failing after {errors_allowed:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (ok, failed)
}

/// The count of a fixed window's state (`lua/fixed_window.lua`: struct "<i8I4", the window's end
/// then its count).
fn fixed_window_count(server: &RedisServer, key: &str) -> u32 {
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let state: Vec<u8> = redis::cmd("GET").arg(key).query(&mut con).unwrap();
    assert_eq!(state.len(), 12, "{state:?}");
    u32::from_le_bytes(state[8..12].try_into().unwrap())
}

#[test]
fn script_flush_mid_run_loses_nothing() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect_evalsha(&server.url())).unwrap();
    let (ok, failed) = rt.block_on(keep_deciding(
        &store,
        "rate_guard:flush:{a}",
        || assert_eq!(server.cmd(&["SCRIPT", "FLUSH"]).unwrap(), "OK"),
        Duration::ZERO,
    ));
    assert_eq!((ok, failed), (400, 0));
    assert_eq!(fixed_window_count(&server, "rate_guard:flush:{a}"), 400);
    let stats = server.cmd(&["INFO", "commandstats"]).unwrap();
    assert!(stats.contains("cmdstat_script|load"), "{stats}");
}

#[test]
fn function_flush_mid_run_loses_nothing() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&server.url())).unwrap();
    assert!(store.uses_functions());
    let (ok, failed) = rt.block_on(keep_deciding(
        &store,
        "rate_guard:fflush:{a}",
        || assert_eq!(server.cmd(&["FUNCTION", "FLUSH"]).unwrap(), "OK"),
        Duration::ZERO,
    ));
    assert_eq!((ok, failed), (400, 0));
    assert!(store.uses_functions());
    assert_eq!(fixed_window_count(&server, "rate_guard:fflush:{a}"), 400);
    let stats = server.cmd(&["INFO", "commandstats"]).unwrap();
    // Loaded at connect and once more after the flush; never a script.
    assert!(stats.contains("cmdstat_function|load:calls=2,"), "{stats}");
    assert!(!stats.contains("cmdstat_evalsha"), "{stats}");
}

#[test]
fn function_flush_on_every_cluster_master_loses_nothing() {
    let cluster = RedisCluster::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&cluster.url())).unwrap();
    let flush = || {
        for master in cluster.masters().unwrap() {
            cluster
                .node(&master)
                .unwrap()
                .cmd(&["FUNCTION", "FLUSH"])
                .unwrap();
        }
    };
    let (ok, failed) = rt.block_on(keep_deciding(
        &store,
        "rate_guard:fflush:{b}",
        flush,
        Duration::ZERO,
    ));
    assert_eq!((ok, failed), (400, 0));
    assert!(store.uses_functions());
}

#[test]
fn atomic_on_cluster_through_refunds_with_evalsha() {
    let cluster = RedisCluster::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect_evalsha(&cluster.url())).unwrap();
    rt.block_on(denied_requests_consume_nothing(&store));
}

#[test]
fn script_flush_on_every_cluster_master_loses_nothing() {
    let cluster = RedisCluster::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect_evalsha(&cluster.url())).unwrap();
    let flush = || {
        for master in cluster.masters().unwrap() {
            cluster
                .node(&master)
                .unwrap()
                .cmd(&["SCRIPT", "FLUSH"])
                .unwrap();
        }
    };
    let (ok, failed) = rt.block_on(keep_deciding(
        &store,
        "rate_guard:flush:{b}",
        flush,
        Duration::ZERO,
    ));
    assert_eq!((ok, failed), (400, 0));
}

#[test]
fn decisions_continue_after_a_sentinel_failover() {
    let sentinel = RedisSentinel::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&sentinel.url())).unwrap();
    let old = sentinel.master_addr().unwrap();
    let (ok, _) = rt.block_on(keep_deciding(
        &store,
        "rate_guard:failover:{s}",
        || assert_ne!(sentinel.failover().unwrap(), old),
        Duration::from_secs(10),
    ));
    assert!(ok >= 390, "only {ok} decisions succeeded");
    let new = sentinel.master_addr().unwrap();
    assert_ne!(new, old);
    let check = [Check {
        rule: &rule("5/second", Algorithm::SlidingWindow),
        key: "rate_guard:after:{s}",
        cost: NonZeroU32::MIN,
    }];
    assert!(rt.block_on(hit(&store, &check)).unwrap().allowed());
}

#[test]
fn decisions_continue_after_a_cluster_failover() {
    let cluster = RedisCluster::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&cluster.url())).unwrap();
    let key = "rate_guard:failover:{c}";
    // Every replica takes over, so whichever master owned the key's slot is replaced.
    let replicas = cluster.replicas().unwrap();
    let failover = || {
        for replica in &replicas {
            cluster.failover(replica).unwrap();
        }
    };
    let (ok, _) = rt.block_on(keep_deciding(
        &store,
        key,
        failover,
        Duration::from_secs(10),
    ));
    assert!(ok >= 390, "only {ok} decisions succeeded");
    assert_eq!(cluster.masters().unwrap(), replicas);
}

#[test]
fn a_wrong_url_fails_at_construction() {
    let rt = runtime();
    let err = rt
        .block_on(RedisStore::from_url("redis://127.0.0.1:1/"))
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let err = rt
        .block_on(RedisStore::from_url("mongodb://x"))
        .unwrap_err();
    assert!(err.to_string().contains("mongodb"), "{err}");
}

#[test]
fn every_key_carries_a_ttl() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    let store = rt.block_on(connect(&server.url())).unwrap();
    for algorithm in Algorithm::ALL {
        let rule = rule("5/minute", algorithm);
        let key = KeyBuilder::default().key(&rule, "ip:198.51.100.9");
        let check = [Check {
            rule: &rule,
            key: &key,
            cost: NonZeroU32::MIN,
        }];
        assert!(rt.block_on(hit(&store, &check)).unwrap().allowed());
        let ttl: i64 = server.cmd(&["PTTL", &key]).unwrap().parse().unwrap();
        // The state matters for at most two periods (sliding window), never forever (-1).
        assert!(ttl > 0 && ttl <= 120_000, "{algorithm}: PTTL {ttl}");
    }
}
