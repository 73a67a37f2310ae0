//! Degradation costs, side by side in one run on one redis-server:
//! decisions per second on one blocked key with the deny cache and without it, and the cost of
//! a decision while the circuit breaker is open (Redis killed).
//!
//! `make bench` (or `cargo bench -p rate-guard-redis --bench degradation`).

use std::time::{Duration, Instant};

use rate_guard_core::{Degradation, Limiter, Quota, Rule, Source};
use rate_guard_redis::RedisStore;
use rate_guard_testkit::RedisServer;

const RUN: Duration = Duration::from_secs(3);

fn rule() -> Rule {
    Rule::builder("3/hour".parse::<Quota>().unwrap())
        .build()
        .unwrap()
}

/// Hits `identity` sequentially for `RUN`; returns decisions per second and the mean latency.
async fn hammer(limiter: &Limiter, identity: &str) -> (f64, Duration) {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < RUN {
        for _ in 0..100 {
            std::hint::black_box(limiter.hit(identity).await.unwrap());
        }
        n += 100;
    }
    let elapsed = start.elapsed();
    (f64::from(n) / elapsed.as_secs_f64(), elapsed / n)
}

async fn blocked(url: &str, deny_cache: usize) -> (Limiter, Source) {
    let store = RedisStore::from_url(url).await.unwrap();
    let limiter = Limiter::builder()
        .rule(rule())
        .store(store)
        .degradation(Degradation::default().deny_cache_size(deny_cache))
        .build()
        .unwrap();
    for _ in 0..4 {
        limiter.hit("abuser").await.unwrap();
    }
    let source = limiter.hit("abuser").await.unwrap().source();
    (limiter, source)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and the suite should not run benchmarks.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut server = RedisServer::start().expect("redis-server starts");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("one blocked key (3/hour, already used), sequential requests, {}s each", RUN.as_secs());
        let (without, s1) = blocked(&server.url(), 0).await;
        let (with, s2) = blocked(&server.url(), 10_000).await;
        assert_eq!((s1, s2), (Source::Store, Source::DenyCache));
        server.cmd(&["CONFIG", "RESETSTAT"]).unwrap();
        let (rps_without, lat_without) = hammer(&without, "abuser").await;
        let calls_without = evalsha_calls(&server);
        server.cmd(&["CONFIG", "RESETSTAT"]).unwrap();
        let (rps_with, lat_with) = hammer(&with, "abuser").await;
        let calls_with = evalsha_calls(&server);
        println!("  without deny cache: {rps_without:>12.0} decisions/s  mean {lat_without:>10.2?}  EVALSHA calls {calls_without}");
        println!("  with deny cache:    {rps_with:>12.0} decisions/s  mean {lat_with:>10.2?}  EVALSHA calls {calls_with}");
        println!("  speed-up {:.0}x; Redis calls cut by {:.0}x", rps_with / rps_without, calls_without as f64 / calls_with.max(1) as f64);

        let store = RedisStore::from_url(&server.url()).await.unwrap();
        let open = Limiter::builder()
            .rule(rule())
            .store(store)
            .degradation(Degradation::default().failure_threshold(1).cooldown(Duration::from_secs(3_600), Duration::from_secs(3_600)))
            .build()
            .unwrap();
        server.stop().unwrap();
        let tripped = open.hit("client").await.unwrap();
        assert!(tripped.is_degraded());
        let (rps_open, lat_open) = hammer(&open, "client").await;
        println!("\nbreaker open (Redis killed), fail open: {rps_open:>12.0} decisions/s  mean {lat_open:>10.2?}");
    });
}

fn evalsha_calls(server: &RedisServer) -> u64 {
    let stats = server.cmd(&["INFO", "commandstats"]).unwrap_or_default();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
