//! Redis decisions side by side with `redis-benchmark` on the same server, in one run:
//! single-rule decisions at 1, 16 and 64 in flight against `redis-benchmark` sending the same
//! `EVALSHA` at the same concurrency, then a 4-rule request against a 1-rule request at 64.
//! Throughput, p50 and p99 latency.
//!
//! `make bench` (or `cargo bench -p rate-guard-redis --bench redis_throughput`).

use std::num::NonZeroU32;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rate_guard_core::{Algorithm, Check, KeyBuilder, Quota, Request, Rule, Store};
use rate_guard_redis::test_support::REQUEST_SOURCE;
use rate_guard_redis::RedisStore;
use rate_guard_testkit::RedisServer;

const RUN: Duration = Duration::from_secs(3);
const KEYS: u64 = 100_000;

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn rule(name: &str) -> Rule {
    let quota = Quota::new(
        NonZeroU32::new(1_000_000).unwrap(),
        Duration::from_secs(1_000),
    )
    .unwrap();
    Rule::builder(quota)
        .algorithm(Algorithm::SlidingWindow)
        .name(name)
        .build()
        .unwrap()
}

/// `in_flight` tasks deciding requests of `rules` rules for `RUN`.
async fn ours(store: &RedisStore, rules: usize, in_flight: u64) -> Figures {
    let rules: Arc<Vec<Rule>> = Arc::new((0..rules).map(|i| rule(&format!("bench{i}"))).collect());
    let deadline = Instant::now() + RUN;
    let tasks: Vec<_> = (0..in_flight)
        .map(|t| {
            let (store, rules) = (store.clone(), rules.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                while Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let identity = (x % KEYS).to_string();
                    let keys: Vec<String> = rules
                        .iter()
                        .map(|r| KeyBuilder::default().key(r, &identity))
                        .collect();
                    let checks: Vec<Check<'_>> = rules
                        .iter()
                        .zip(&keys)
                        .map(|(rule, key)| Check {
                            rule,
                            key,
                            cost: NonZeroU32::MIN,
                        })
                        .collect();
                    let start = Instant::now();
                    store.decide(Request::hit(&checks)).await.unwrap();
                    latencies.push(start.elapsed());
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().max(RUN);
    all.sort_unstable();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    Figures {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// redis-benchmark sending the request script's EVALSHA for one sliding-window rule.
fn theirs(server: &RedisServer, sha: &str, in_flight: u64, requests: u64) -> Figures {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &server.port().to_string(),
            "-c",
            &in_flight.to_string(),
        ])
        .args([
            "-n",
            &requests.to_string(),
            "-r",
            &KEYS.to_string(),
            "--csv",
            "--precision",
            "3",
        ])
        .args(["EVALSHA", sha, "1", "rate_guard:bench0:{__rand_int__}"])
        .args(["hit", "", "sw", "1000000", "1000000000", "1000000", "1"])
        .output()
        .expect("redis-benchmark runs (package redis-tools)");
    let csv = String::from_utf8_lossy(&out.stdout);
    let row = csv.lines().last().unwrap_or_default();
    let fields: Vec<f64> = row
        .split("\",\"")
        .skip(1)
        .map(|f| f.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    // rps, avg, min, p50, p95, p99, max
    Figures {
        rps: fields[0],
        p50_ms: fields[3],
        p99_ms: fields[5],
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and the suite should not run benchmarks.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let server = RedisServer::start().expect("redis-server starts");
    // One worker thread: redis-benchmark is one thread too, and Redis needs the other core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(RedisStore::from_url(&server.url())).unwrap();
    let sha = redis::Script::new(REQUEST_SOURCE).get_hash().to_owned();

    println!(
        "single-rule decisions, {}s each, same redis-server ({}), sliding window, {KEYS} keys",
        RUN.as_secs(),
        server.addr()
    );
    println!(
        "{:>9}  {:>12} {:>9} {:>9}  {:>12} {:>9} {:>9}  {:>6}",
        "in flight", "ours rps", "p50 ms", "p99 ms", "bench rps", "p50 ms", "p99 ms", "ratio"
    );
    for in_flight in [1, 16, 64] {
        let o = rt.block_on(ours(&store, 1, in_flight));
        let t = theirs(
            &server,
            &sha,
            in_flight,
            (o.rps * RUN.as_secs_f64()) as u64 + 1_000,
        );
        println!(
            "{in_flight:>9}  {:>12.0} {:>9.3} {:>9.3}  {:>12.0} {:>9.3} {:>9.3}  {:>6.2}",
            o.rps,
            o.p50_ms,
            o.p99_ms,
            t.rps,
            t.p50_ms,
            t.p99_ms,
            o.rps / t.rps
        );
    }
    println!("\n4-rule requests (one EVALSHA each) against 1-rule requests");
    println!(
        "{:>9}  {:>12} {:>9} {:>9}  {:>12} {:>9} {:>9}  {:>6}",
        "in flight", "1-rule rps", "p50 ms", "p99 ms", "4-rule rps", "p50 ms", "p99 ms", "ratio"
    );
    for in_flight in [1, 16, 64] {
        let one = rt.block_on(ours(&store, 1, in_flight));
        let four = rt.block_on(ours(&store, 4, in_flight));
        println!(
            "{in_flight:>9}  {:>12.0} {:>9.3} {:>9.3}  {:>12.0} {:>9.3} {:>9.3}  {:>6.2}",
            one.rps,
            one.p50_ms,
            one.p99_ms,
            four.rps,
            four.p50_ms,
            four.p99_ms,
            four.rps / one.rps
        );
    }
    let stats = server.cmd(&["INFO", "commandstats"]).unwrap_or_default();
    let evalsha = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha"))
        .unwrap_or("");
    println!("server: {evalsha}");
}
