//! Throughput and CPU per request of an axum hello-world without the layer, with it on the
//! memory store (with and without rate limit headers), with `tower_governor` (its keyed limiter
//! by peer IP, headers on), and with the layer on Redis (a `redis-server` of the testkit),
//! measured by one small keep-alive HTTP/1.1 load generator in the same run, in interleaved
//! rounds (bare, memory, ..., bare, ...) so that the variants share the machine's conditions.
//!
//! ```text
//! cargo bench -p rate-guard-tower --bench axum_throughput \
//!     [-- --connections 64 --seconds 3 --rounds 5 --threads 1
//!         --only bare,memory,memory-no-headers,governor,redis]
//! ```
//!
//! The guard applies one global rule per client IP (`1000000000/minute`: never limiting, so
//! every request does the full decide path and gets its `X-RateLimit-*` headers);
//! `tower_governor` gets the same quota (one cell per 60 ns, a burst of 10^9) per peer IP. The
//! server runtime and the load generator's each get `--threads` worker threads (default 1 each,
//! which on a 2-core box keeps them from fighting over cores).
//!
//! Besides requests per second, each round reports the CPU time per request of the server's
//! threads, of the load generator's threads and (Redis variant) of `redis-server`, read from
//! `/proc/<pid>/task/*/schedstat` (nanoseconds on CPU) before and after the round. On a shared,
//! noisy machine the server's CPU per request is the steadier figure: throughput swings with
//! whatever else runs, the work per request does not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use rate_guard_testkit::RedisServer;
use rate_guard_tower::{HeaderStyle, RateGuard, RateGuardBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

/// Thread names of the two runtimes, so that their CPU can be told apart.
const SERVER_THREADS: &str = "bench-server";
const CLIENT_THREADS: &str = "bench-client";

struct Options {
    connections: usize,
    seconds: f64,
    rounds: usize,
    threads: usize,
    /// Only these variants (`--only memory`), for profiling one.
    only: Option<String>,
}

impl Options {
    fn from_args() -> Self {
        let mut options = Self {
            connections: 64,
            seconds: 3.0,
            rounds: 5,
            threads: 1,
            only: None,
        };
        let args: Vec<String> = std::env::args().collect();
        for pair in args.windows(2) {
            let value = &pair[1];
            match pair[0].as_str() {
                "--connections" => options.connections = value.parse().expect("--connections N"),
                "--seconds" => options.seconds = value.parse().expect("--seconds S"),
                "--rounds" => options.rounds = value.parse().expect("--rounds N"),
                "--threads" => options.threads = value.parse().expect("--threads N"),
                "--only" => options.only = Some(value.clone()),
                _ => {}
            }
        }
        options
    }
}

fn runtime(threads: usize, name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the server runs");
    });
    addr
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}

fn guarded(guard: &RateGuard) -> Router {
    hello().layer(guard.layer())
}

/// `tower_governor`'s keyed limiter by peer IP with its rate limit headers, on the guard's
/// quota: 10^9 a minute is one cell per 60 ns, with the whole minute as burst.
fn governed() -> Router {
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_nanos(60))
        .burst_size(1_000_000_000)
        .use_headers()
        .finish()
        .expect("a governor configuration");
    hello().layer(GovernorLayer::new(config))
}

fn guard() -> RateGuardBuilder {
    RateGuard::builder().global("1000000000/minute")
}

/// Nanoseconds on CPU of the threads of process `pid` whose name starts with `name` (every
/// thread when `name` is empty), from the scheduler's per-thread accounting.
fn cpu_ns(pid: &str, name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with(name) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// CPU of the server's threads, the load generator's, and Redis's, in nanoseconds.
#[derive(Clone, Copy, Default)]
struct Cpu {
    server: u64,
    client: u64,
    redis: u64,
}

impl Cpu {
    fn now(redis_pid: &str) -> Self {
        Self {
            server: cpu_ns("self", SERVER_THREADS),
            client: cpu_ns("self", CLIENT_THREADS),
            redis: cpu_ns(redis_pid, ""),
        }
    }
}

/// One round of one variant: requests answered 200, seconds, CPU used.
#[derive(Clone, Copy)]
struct Round {
    requests: u64,
    seconds: f64,
    cpu: Cpu,
}

impl Round {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Microseconds of CPU per request.
    fn per_request(&self, ns: u64) -> f64 {
        ns as f64 / 1000.0 / self.requests.max(1) as f64
    }
}

/// Keep-alive GETs on one connection until `deadline`; counts 200s in `ok`, others in `bad`.
async fn client(addr: SocketAddr, deadline: Instant, ok: Arc<AtomicU64>, bad: Arc<AtomicU64>) {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut stream = TcpStream::connect(addr).await.expect("a connection");
    stream.set_nodelay(true).expect("nodelay");
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0_u8; 4096];
    while Instant::now() < deadline {
        stream.write_all(REQUEST).await.expect("a write");
        // Read one response: its head, then `content-length` bytes of body.
        let mut from = 0;
        let (head_end, body_len) = loop {
            let found = buffer[from..].windows(4).position(|w| w == b"\r\n\r\n");
            if let Some(end) = found.map(|i| from + i) {
                let head = std::str::from_utf8(&buffer[..end]).expect("an ASCII head");
                let body_len = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                break (end + 4, body_len);
            }
            // Only the new bytes (and the 3 before them) can complete the blank line.
            from = buffer.len().saturating_sub(3);
            let n = stream.read(&mut chunk).await.expect("a read");
            assert!(n > 0, "the server closed the connection");
            buffer.extend_from_slice(&chunk[..n]);
        };
        while buffer.len() < head_end + body_len {
            let n = stream.read(&mut chunk).await.expect("a read");
            assert!(n > 0, "the server closed the connection");
            buffer.extend_from_slice(&chunk[..n]);
        }
        let counter = if buffer.starts_with(b"HTTP/1.1 200") {
            &ok
        } else {
            &bad
        };
        counter.fetch_add(1, Ordering::Relaxed);
        buffer.drain(..head_end + body_len);
    }
}

/// One round against `addr` under `connections` keep-alive clients.
fn measure(
    client_rt: &Runtime,
    addr: SocketAddr,
    connections: usize,
    seconds: f64,
    redis_pid: &str,
) -> Round {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let before = Cpu::now(redis_pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    client_rt.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(client(addr, deadline, ok.clone(), bad.clone())))
            .collect();
        for task in tasks {
            task.await.expect("a client task");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = Cpu::now(redis_pid);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "every request must be admitted"
    );
    Round {
        requests: ok.load(Ordering::Relaxed),
        seconds: elapsed,
        cpu: Cpu {
            server: after.server - before.server,
            client: after.client - before.client,
            redis: after.redis - before.redis,
        },
    }
}

/// Nanoseconds on CPU of the calling thread.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU per request of `app` called in-process, one request after the other, without a
/// connection: the application's own cost (router, handler, response; with the layer, the
/// layer's), free of the HTTP/1 codec, the kernel and the load generator.
fn in_process_ns(rt: &Runtime, app: &Router, requests: u32) -> f64 {
    let peer = axum::extract::ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000)));
    rt.block_on(async {
        let call = || async {
            let request = http::Request::get("/")
                .extension(peer)
                .body(axum::body::Body::empty())
                .expect("a request");
            let response = app.clone().oneshot(request).await.expect("a response");
            assert!(response.status().is_success());
        };
        for _ in 0..requests / 10 {
            call().await;
        }
        let started = thread_cpu_ns();
        for _ in 0..requests {
            call().await;
        }
        (thread_cpu_ns() - started) as f64 / f64::from(requests)
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs [`in_process_ns`] for every app, interleaved like the HTTP rounds so that every
/// variant sees the same machine, and prints the medians.
fn report_in_process(targets: &[(&str, Router, SocketAddr)]) {
    let in_process = runtime(1, "bench-direct");
    // Interleaved like the HTTP rounds, so that every variant sees the same machine.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for _ in 0..15 {
        for ((_, app, _), samples) in targets.iter().zip(&mut samples) {
            samples.push(in_process_ns(&in_process, app, 20_000));
        }
    }
    println!("in-process, one request at a time (ns of CPU per request, median of 15 x 20,000):");
    for ((name, _, _), samples) in targets.iter().zip(samples) {
        println!("  {name:>17}: {:>6.0} ns", median(samples));
    }
}

/// The medians of every variant's rounds, with ratios to the bare server when it was measured
/// (else to the first variant).
fn report(targets: &[(&str, SocketAddr)], rounds: &[Vec<Round>]) {
    let reference = targets
        .iter()
        .position(|(name, _)| *name == "bare")
        .unwrap_or(0);
    let medians: Vec<[f64; 4]> = rounds
        .iter()
        .map(|rs| {
            let of = |f: &dyn Fn(&Round) -> f64| median(rs.iter().map(f).collect());
            [
                of(&Round::rate),
                of(&|r| r.per_request(r.cpu.server)),
                of(&|r| r.per_request(r.cpu.client)),
                of(&|r| r.per_request(r.cpu.redis)),
            ]
        })
        .collect();
    let [bare_rate, bare_server, _, _] = medians[reference];
    println!(
        "median of {} rounds (CPU per request in µs; server CPU ratio: bare's / this one's):",
        rounds[0].len()
    );
    for ((name, _), [rate, server, client, redis]) in targets.iter().zip(&medians) {
        println!(
            "  {name:>17}: {rate:>7.0} req/s  {:.2}x bare   server {server:>5.2} ({:.2}x)  client {client:>5.2}  redis {redis:>5.2}",
            rate / bare_rate,
            bare_server / server,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and the suite should not run benchmarks.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let options = Options::from_args();
    let server_rt = runtime(options.threads, SERVER_THREADS);
    let client_rt = runtime(options.threads, CLIENT_THREADS);
    let redis = RedisServer::start().expect("redis-server starts");
    let redis_pid = redis.pid().map_or_else(String::new, |pid| pid.to_string());
    let url = redis.url();
    let mut targets = server_rt.block_on(async {
        let memory = guard().build().await.expect("a memory guard");
        // The same, without rate-limit headers: what the larger responses cost.
        let quiet = guard()
            .with_config(|c| c.headers = HeaderStyle::None)
            .build()
            .await
            .expect("a memory guard without headers");
        let on_redis = guard()
            .with_config(|c| {
                c.redis_url = Some(url);
                c.redis_timeout = 1.0;
            })
            .build()
            .await
            .expect("a Redis guard");
        let apps = vec![
            ("bare", hello()),
            ("memory", guarded(&memory)),
            ("memory-no-headers", guarded(&quiet)),
            ("governor", governed()),
            ("redis", guarded(&on_redis)),
        ];
        let mut targets = Vec::new();
        for (name, app) in apps {
            targets.push((name, app.clone(), serve(app).await));
        }
        targets
    });
    if let Some(only) = &options.only {
        targets.retain(|(name, _, _)| only.split(',').any(|o| o == *name));
    }
    report_in_process(&targets);
    let targets: Vec<(&str, SocketAddr)> = targets
        .into_iter()
        .map(|(name, _, addr)| (name, addr))
        .collect();
    println!(
        "axum hello-world, {} keep-alive connections, {} s x {} rounds, {} server + {} client threads",
        options.connections, options.seconds, options.rounds, options.threads, options.threads
    );
    println!("CPU per request (µs): server threads / load generator threads / redis-server");
    for (_, addr) in &targets {
        measure(&client_rt, *addr, options.connections, 0.5, &redis_pid); // warm-up
    }
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); targets.len()];
    for round in 0..options.rounds {
        for (i, (name, addr)) in targets.iter().enumerate() {
            let r = measure(
                &client_rt,
                *addr,
                options.connections,
                options.seconds,
                &redis_pid,
            );
            println!(
                "  round {round} {name:>17}: {:>7.0} req/s  cpu {:>5.2} / {:>5.2} / {:>5.2}",
                r.rate(),
                r.per_request(r.cpu.server),
                r.per_request(r.cpu.client),
                r.per_request(r.cpu.redis),
            );
            rounds[i].push(r);
        }
    }
    report(&targets, &rounds);
}
