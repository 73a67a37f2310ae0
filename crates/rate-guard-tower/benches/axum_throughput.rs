//! Throughput of an axum hello-world without the layer, with it on the memory store, and with it
//! on Redis (a `redis-server` of the testkit), measured by one small keep-alive HTTP/1.1 load
//! generator in the same run, in interleaved rounds (bare, memory, redis, bare, ...) so that the
//! variants share the machine's conditions.
//!
//! ```text
//! cargo bench -p rate-guard-tower --bench axum_throughput \
//!     [-- --connections 64 --seconds 3 --rounds 5 --threads 1 --only bare,memory,redis]
//! ```
//!
//! The guard applies one global rule per client IP (`1000000000/minute`: never limiting, so
//! every request does the full decide path and gets its `X-RateLimit-*` headers). The server
//! runtime and the load generator's each get `--threads` worker threads (default 1 each,
//! which on a 2-core box keeps them from fighting over cores).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use rate_guard_testkit::RedisServer;
use rate_guard_tower::{RateGuard, RateGuardBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

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

fn runtime(threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn serve(guard: Option<RateGuard>) -> SocketAddr {
    let mut app = Router::new().route("/", get(|| async { "Hello, World!" }));
    if let Some(guard) = guard {
        app = app.layer(guard.layer());
    }
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

fn guard() -> RateGuardBuilder {
    RateGuard::builder().global("1000000000/minute")
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

/// Requests per second answered 200 by `addr` under `connections` keep-alive clients.
fn measure(client_rt: &Runtime, addr: SocketAddr, connections: usize, seconds: f64) -> f64 {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
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
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "every request must be admitted"
    );
    ok.load(Ordering::Relaxed) as f64 / elapsed
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and the suite should not run benchmarks.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let options = Options::from_args();
    let server_rt = runtime(options.threads);
    let client_rt = runtime(options.threads);
    let redis = RedisServer::start().expect("redis-server starts");
    let url = redis.url();
    let mut targets: Vec<(&str, SocketAddr)> = server_rt.block_on(async {
        let memory = guard().build().await.expect("a memory guard");
        // The same, without rate-limit headers: what the larger responses cost.
        let quiet = guard()
            .with_config(|c| "none".clone_into(&mut c.headers))
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
        vec![
            ("bare", serve(None).await),
            ("memory", serve(Some(memory)).await),
            ("memory-no-headers", serve(Some(quiet)).await),
            ("redis", serve(Some(on_redis)).await),
        ]
    });
    if let Some(only) = &options.only {
        targets.retain(|(name, _)| only.split(',').any(|o| o == *name));
    }
    println!(
        "axum hello-world, {} keep-alive connections, {} s x {} rounds, {} server + {} client threads",
        options.connections, options.seconds, options.rounds, options.threads, options.threads
    );
    for (_, addr) in &targets {
        measure(&client_rt, *addr, options.connections, 0.5); // warm-up
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..options.rounds {
        for (i, (name, addr)) in targets.iter().enumerate() {
            let rate = measure(&client_rt, *addr, options.connections, options.seconds);
            println!("  round {round} {name:>6}: {rate:>9.0} req/s");
            rates[i].push(rate);
        }
    }
    // Ratios to the bare server when it was measured, else to the first variant.
    let reference = targets
        .iter()
        .position(|(name, _)| *name == "bare")
        .unwrap_or(0);
    let reference_rate = median(&mut rates[reference].clone());
    println!("median of {} rounds:", options.rounds);
    for (i, (name, _)) in targets.iter().enumerate() {
        let rate = median(&mut rates[i]);
        println!(
            "  {name:>17}: {rate:>9.0} req/s  ({:.2}x bare)",
            rate / reference_rate
        );
    }
}
