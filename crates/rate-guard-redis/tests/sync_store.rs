//! The blocking store of sync calls ([`SyncStore`]): it decides as [`RedisStore`] does, threads
//! share its connections (pipelined) and decide exactly, and every call returns within its
//! budget when Redis hangs or goes away, then works again once Redis is back.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use rate_guard_core::{Algorithm, Check, Mode, Quota, Request, Rule, Store, StoreError, Timestamp};
use rate_guard_redis::connection::SyncStore;
use rate_guard_redis::{RedisConfig, RedisStore};
use rate_guard_testkit::RedisServer;

const BUDGET: Duration = Duration::from_millis(50);
/// Generous: a loaded 2-core machine must not make this flaky; a hang would blow far past it.
const MARGIN: Duration = Duration::from_millis(400);

fn rule(rate: &str, algorithm: Algorithm) -> Rule {
    Rule::builder(rate.parse::<Quota>().unwrap())
        .algorithm(algorithm)
        .build()
        .unwrap()
}

fn config(url: &str, timeout: Duration, pool_size: usize) -> RedisConfig {
    RedisConfig::from_url(url)
        .unwrap()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_size(pool_size)
}

/// The async store (which loads the library), the runtime it lives on, and a blocking store
/// beside it.
fn stores(
    url: &str,
    timeout: Duration,
    pool_size: usize,
) -> (tokio::runtime::Runtime, RedisStore, SyncStore) {
    let config = config(url, timeout, pool_size);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shared = runtime.block_on(RedisStore::connect(&config)).unwrap();
    let blocking = SyncStore::new(&config, shared.uses_functions()).expect("a standalone URL");
    (runtime, shared, blocking)
}

fn hit(store: &SyncStore, rule: &Rule, key: &str) -> Result<bool, StoreError> {
    let checks = [Check {
        rule,
        key,
        cost: NonZeroU32::MIN,
    }];
    Ok(store.decide(Request::hit(&checks))?.allowed())
}

fn client_count(server: &RedisServer) -> usize {
    // Without the redis-cli connection that asks.
    server.cmd(&["CLIENT", "LIST"]).unwrap().lines().count() - 1
}

/// The decisions of one timeline (explicit times), each rule alone then all together.
fn timeline(
    rules: &[Rule],
    prefix: &str,
    decide: impl Fn(Request<'_>) -> rate_guard_core::Verdict,
) -> Vec<String> {
    let keys: Vec<String> = (0..rules.len()).map(|i| format!("{prefix}:{i}")).collect();
    let start = 1_800_000_000_000_000u64;
    let mut seen = Vec::new();
    for step in 0..40u64 {
        let now = Timestamp::from_micros(start + step * 700_000);
        for group in [&[0usize][..], &[1], &[2], &[3], &[0, 1, 2, 3]] {
            let checks: Vec<Check<'_>> = group
                .iter()
                .map(|&i| Check {
                    rule: &rules[i],
                    key: &keys[i],
                    cost: NonZeroU32::MIN,
                })
                .collect();
            let mode = if step % 5 == 4 { Mode::Peek } else { Mode::Hit };
            let verdict = decide(Request {
                checks: &checks,
                mode,
                now: Some(now),
            });
            seen.push(format!("{:?}", verdict.decision()));
        }
    }
    seen
}

#[test]
fn decides_as_the_async_store_on_one_timeline() {
    let server = RedisServer::start().unwrap();
    let (runtime, shared, blocking) = stores(&server.url(), Duration::from_secs(2), 1);
    let rules: Vec<Rule> = [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::TokenBucket,
        Algorithm::SlidingLog,
    ]
    .into_iter()
    .map(|a| rule("4/10 seconds", a))
    .collect();
    let through_async = timeline(&rules, "async", |request| {
        runtime.block_on(shared.decide(request)).unwrap()
    });
    let through_blocking = timeline(&rules, "sync", |request| blocking.decide(request).unwrap());
    assert_eq!(through_blocking, through_async);
    let checks = [Check {
        rule: &rules[0],
        key: "reset-me",
        cost: NonZeroU32::MIN,
    }];
    for _ in 0..4 {
        assert!(blocking.decide(Request::hit(&checks)).unwrap().allowed());
    }
    assert!(!blocking.decide(Request::hit(&checks)).unwrap().allowed());
    blocking.reset(&["reset-me"]).unwrap();
    assert!(blocking.decide(Request::hit(&checks)).unwrap().allowed());
}

#[test]
fn threads_share_one_connection_and_decide_exactly() {
    const THREADS: u32 = 16;
    const HITS: u32 = 60;
    const LIMIT: u32 = 500;
    let server = RedisServer::start().unwrap();
    let (_runtime, _shared, blocking) = stores(&server.url(), Duration::from_secs(5), 1);
    let before = client_count(&server);
    let rule = rule(&format!("{LIMIT}/hour"), Algorithm::FixedWindow);
    let admitted = AtomicU32::new(0);
    let barrier = Barrier::new(THREADS as usize);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..HITS {
                    if hit(&blocking, &rule, "everyone").unwrap() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), LIMIT);
    assert_eq!(
        client_count(&server) - before,
        1,
        "one connection for every thread"
    );
}

#[test]
fn a_pool_opens_at_most_its_size() {
    let server = RedisServer::start().unwrap();
    let (_runtime, _shared, blocking) = stores(&server.url(), Duration::from_secs(5), 3);
    let before = client_count(&server);
    let rule = rule("100000/hour", Algorithm::SlidingWindow);
    thread::scope(|s| {
        for t in 0..12 {
            let (blocking, rule) = (&blocking, &rule);
            s.spawn(move || {
                for i in 0..200 {
                    assert!(hit(blocking, rule, &format!("k{t}-{i}")).unwrap());
                }
            });
        }
    });
    let opened = client_count(&server) - before;
    assert!((1..=3).contains(&opened), "{opened} connections");
}

#[test]
fn a_frozen_server_times_every_thread_out_within_the_budget_then_recovers() {
    let server = RedisServer::start().unwrap();
    let (_runtime, _shared, blocking) = stores(&server.url(), BUDGET, 1);
    let rule = rule("100000/hour", Algorithm::FixedWindow);
    assert!(hit(&blocking, &rule, "k").unwrap());
    server.pause().unwrap();
    let outcomes: Vec<(Duration, Result<bool, StoreError>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (blocking, rule) = (&blocking, &rule);
                s.spawn(move || {
                    let start = Instant::now();
                    let outcome = hit(blocking, rule, &format!("k{i}"));
                    (start.elapsed(), outcome)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    server.resume().unwrap();
    for (took, outcome) in &outcomes {
        assert!(
            matches!(outcome, Err(StoreError::Timeout(_))),
            "{outcome:?}"
        );
        assert!(*took < BUDGET + MARGIN, "took {took:?}");
    }
    // The replies of the frozen calls may still arrive: they must not be taken for others'.
    let mut ok = false;
    for _ in 0..50 {
        if hit(&blocking, &rule, "after").is_ok() {
            ok = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "calls work again once the server is back");
    for i in 0..20 {
        assert!(hit(&blocking, &rule, &format!("again{i}")).unwrap());
    }
}

#[test]
fn a_restarted_server_is_reconnected_to_and_its_library_reloaded() {
    let mut server = RedisServer::start().unwrap();
    let (_runtime, _shared, blocking) = stores(&server.url(), Duration::from_millis(500), 1);
    let rule = rule("3/hour", Algorithm::TokenBucket);
    assert!(hit(&blocking, &rule, "k").unwrap());
    server.stop().unwrap();
    let start = Instant::now();
    assert!(matches!(
        hit(&blocking, &rule, "k"),
        Err(StoreError::Unavailable(_) | StoreError::Timeout(_))
    ));
    assert!(start.elapsed() < Duration::from_millis(500) + MARGIN);
    // A restart without persistence: no keys, no library.
    server.restart().unwrap();
    let mut admitted = 0;
    for _ in 0..5 {
        match hit(&blocking, &rule, "k") {
            Ok(allowed) => admitted += u32::from(allowed),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(admitted, 3);
    server.cmd(&["FUNCTION", "FLUSH"]).unwrap();
    assert!(
        !hit(&blocking, &rule, "k").unwrap(),
        "reloaded, still limited"
    );
}

#[test]
fn evalsha_where_functions_are_refused_and_a_flushed_script_is_reloaded() {
    let server = RedisServer::builder()
        .args(["--rename-command", "FUNCTION", ""])
        .args(["--rename-command", "FCALL", ""])
        .start()
        .unwrap();
    let (_runtime, shared, blocking) = stores(&server.url(), Duration::from_secs(2), 1);
    assert!(!shared.uses_functions());
    let rule = rule("2/hour", Algorithm::FixedWindow);
    assert!(hit(&blocking, &rule, "k").unwrap());
    server.cmd(&["SCRIPT", "FLUSH"]).unwrap();
    assert!(hit(&blocking, &rule, "k").unwrap());
    assert!(!hit(&blocking, &rule, "k").unwrap());
    // A store that believed in functions learns otherwise on its first call.
    let config = config(&server.url(), Duration::from_secs(2), 1);
    let believer = SyncStore::new(&config, true).unwrap();
    assert!(!hit(&believer, &rule, "k").unwrap());
    assert!(hit(&believer, &rule, "other").unwrap());
}

#[test]
fn password_and_database_are_used() {
    let server = RedisServer::builder().password("s3cret").start().unwrap();
    let url = format!("redis://:s3cret@127.0.0.1:{}/3", server.port());
    let (_runtime, _shared, blocking) = stores(&url, Duration::from_secs(2), 1);
    let rule = rule("2/hour", Algorithm::FixedWindow);
    assert!(hit(&blocking, &rule, "in-db-3").unwrap());
    assert_eq!(server.cmd(&["-n", "3", "EXISTS", "in-db-3"]).unwrap(), "1");
    let wrong = format!("redis://:wrong@127.0.0.1:{}/3", server.port());
    let config = config(&wrong, Duration::from_secs(2), 1);
    let refused = SyncStore::new(&config, true).unwrap();
    let e = hit(&refused, &rule, "k").unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e:?}");
    assert!(!format!("{e}").contains("wrong"), "{e}");
}

#[test]
fn tls_sentinel_and_cluster_urls_keep_the_async_connection() {
    for url in [
        "rediss://127.0.0.1:6380",
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis+cluster://127.0.0.1:7000",
    ] {
        let config = RedisConfig::from_url(url).unwrap();
        assert!(SyncStore::new(&config, true).is_none(), "{url}");
    }
}
