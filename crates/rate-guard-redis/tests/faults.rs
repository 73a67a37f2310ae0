//! The fault suite: a limiter on a real Redis that is killed, frozen (SIGSTOP), put to sleep
//! (`DEBUG SLEEP`), paused for clients (`CLIENT PAUSE`), or cut off by a proxy that swallows
//! every byte — under each policy (in-memory fallback, fail open, fail closed). Each asserts:
//! no error reaches the caller; every decision returns within the budget plus a margin; the
//! outcome is the configured one (and the fallback still enforces the limit); and decisions are
//! back on Redis within twice the cool-down once it returns.

use std::num::NonZeroU32;
use std::process::Command;
use std::time::{Duration, Instant};

use rate_guard_core::{Algorithm, Degradation, Limiter, Quota, Rule, Source};
use rate_guard_redis::{RedisConfig, RedisStore};
use rate_guard_testkit::{Fault, FaultProxy, RedisServer};

/// The store's budget per call.
const BUDGET: Duration = Duration::from_millis(50);
/// Generous: a loaded 2-core machine must not make this flaky; a hang would blow far past it.
const MARGIN: Duration = Duration::from_millis(400);
const COOLDOWN: Duration = Duration::from_millis(200);
const MAX_COOLDOWN: Duration = Duration::from_millis(400);
const FAULT_FOR: Duration = Duration::from_millis(1_200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Fallback,
    FailOpen,
    FailClosed,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn limiter(url: &str, policy: Policy) -> Limiter {
    let config = RedisConfig::from_url(url)
        .unwrap()
        .timeout(BUDGET)
        .connect_timeout(BUDGET);
    // The first connection is setup, not the fault under test: on a loaded machine one
    // attempt may miss the 50 ms budget, so a few are allowed.
    let mut attempts = 0;
    let store = loop {
        match RedisStore::connect(&config).await {
            Ok(store) => break store,
            Err(e) if attempts < 20 => {
                attempts += 1;
                eprintln!("setup connect failed ({e}), trying again");
            }
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    };
    let degradation = Degradation::default()
        .failure_threshold(3)
        .cooldown(COOLDOWN, MAX_COOLDOWN)
        .deny_cache_size(0);
    let degradation = match policy {
        Policy::Fallback => degradation.in_memory_fallback(NonZeroU32::MIN),
        Policy::FailOpen => degradation.fail_open(true),
        Policy::FailClosed => degradation.fail_open(false),
    };
    let rule = Rule::builder("5/hour".parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .build()
        .unwrap();
    Limiter::builder()
        .rule(rule)
        .store(store)
        .degradation(degradation)
        .build()
        .unwrap()
}

/// What a fault does to the server, and how it ends.
trait FaultKind {
    fn begin(&mut self, server: &mut RedisServer);
    fn end(&mut self, server: &mut RedisServer);
}

struct Kill;
impl FaultKind for Kill {
    fn begin(&mut self, server: &mut RedisServer) {
        server.stop().unwrap();
    }
    fn end(&mut self, server: &mut RedisServer) {
        server.restart().unwrap();
    }
}

struct Freeze;
impl FaultKind for Freeze {
    fn begin(&mut self, server: &mut RedisServer) {
        server.pause().unwrap();
    }
    fn end(&mut self, server: &mut RedisServer) {
        server.resume().unwrap();
    }
}

/// `DEBUG SLEEP` blocks the server (and the redis-cli that sent it) for the whole fault.
struct Sleep(Option<std::thread::JoinHandle<()>>);
impl FaultKind for Sleep {
    fn begin(&mut self, server: &mut RedisServer) {
        let port = server.port().to_string();
        let secs = format!("{:.1}", FAULT_FOR.as_secs_f64());
        self.0 = Some(std::thread::spawn(move || {
            let _ = Command::new("redis-cli")
                .args(["-p", &port, "DEBUG", "SLEEP", &secs])
                .output();
        }));
        std::thread::sleep(Duration::from_millis(50));
    }
    fn end(&mut self, _: &mut RedisServer) {
        if let Some(sleeper) = self.0.take() {
            sleeper.join().unwrap();
        }
    }
}

/// `CLIENT PAUSE ... ALL`: the server holds every client's commands.
struct Pause;
impl FaultKind for Pause {
    fn begin(&mut self, server: &mut RedisServer) {
        let ms = FAULT_FOR.as_millis().to_string();
        assert_eq!(server.cmd(&["CLIENT", "PAUSE", &ms, "ALL"]).unwrap(), "OK");
    }
    fn end(&mut self, server: &mut RedisServer) {
        // Unpause is what ends it on time (the pause would end by itself too).
        let _ = server.cmd(&["CLIENT", "UNPAUSE"]);
    }
}

/// A proxy between the limiter and Redis that swallows every byte.
struct Blackhole(FaultProxy);
impl FaultKind for Blackhole {
    fn begin(&mut self, _: &mut RedisServer) {
        self.0.set_fault(Fault::Blackhole);
    }
    fn end(&mut self, _: &mut RedisServer) {
        self.0.set_fault(Fault::None);
    }
}

async fn scenario(policy: Policy, server: &mut RedisServer, url: &str, fault: &mut dyn FaultKind) {
    let limiter = limiter(url, policy).await;
    let first = limiter.hit("client").await.unwrap();
    assert_eq!(first.source(), Source::Store);

    fault.begin(server);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut admitted = 0;
    let mut sources = Vec::new();
    while started.elapsed() < FAULT_FOR.saturating_sub(Duration::from_millis(200)) {
        let t = Instant::now();
        let verdict = limiter
            .hit("client")
            .await
            .expect("no error reaches the caller");
        slowest = slowest.max(t.elapsed());
        assert!(
            t.elapsed() <= BUDGET + MARGIN,
            "{policy:?}: a decision took {:?}",
            t.elapsed()
        );
        sources.push(verdict.source());
        admitted += u32::from(verdict.allowed());
        match policy {
            Policy::FailOpen => assert!(
                verdict.allowed() && verdict.source() == Source::FailOpen,
                "{verdict:?}"
            ),
            Policy::FailClosed => assert!(
                !verdict.allowed() && verdict.source() == Source::FailClosed,
                "{verdict:?}"
            ),
            Policy::Fallback => assert_eq!(verdict.source(), Source::Fallback),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sources.len() >= 20,
        "{policy:?}: only {} decisions during the fault",
        sources.len()
    );
    if policy == Policy::Fallback {
        // The fallback enforces the limit on its own: 5 per hour.
        assert_eq!(admitted, 5, "{policy:?}");
    }
    assert!(limiter.is_degraded());

    fault.end(server);
    let back = Instant::now();
    loop {
        let verdict = limiter
            .hit("recovering")
            .await
            .expect("no error reaches the caller");
        if verdict.source() == Source::Store {
            break;
        }
        assert!(
            back.elapsed() <= 2 * MAX_COOLDOWN + MARGIN,
            "{policy:?}: still degraded {:?} after Redis returned",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!limiter.is_degraded());
    eprintln!(
        "{policy:?}: slowest decision during the fault {slowest:?}, back on Redis after {:?}",
        back.elapsed()
    );
}

fn run(policy: Policy, make: impl Fn(&RedisServer) -> (Box<dyn FaultKind>, String)) {
    let mut server = RedisServer::builder()
        .arg("--enable-debug-command")
        .arg("yes")
        .start()
        .unwrap();
    let (mut fault, url) = make(&server);
    runtime().block_on(scenario(policy, &mut server, &url, fault.as_mut()));
}

fn direct(
    kind: fn() -> Box<dyn FaultKind>,
) -> impl Fn(&RedisServer) -> (Box<dyn FaultKind>, String) {
    move |server| (kind(), server.url())
}

fn proxied(server: &RedisServer) -> (Box<dyn FaultKind>, String) {
    let proxy = FaultProxy::start(&server.addr()).unwrap();
    let url = proxy.url();
    (Box::new(Blackhole(proxy)), url)
}

macro_rules! fault_tests {
    ($($name:ident: $policy:expr, $make:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run($policy, $make);
            }
        )*
    };
}

fault_tests! {
    killed_and_restarted_with_fallback: Policy::Fallback, direct(|| Box::new(Kill));
    killed_and_restarted_failing_open: Policy::FailOpen, direct(|| Box::new(Kill));
    killed_and_restarted_failing_closed: Policy::FailClosed, direct(|| Box::new(Kill));
    frozen_with_fallback: Policy::Fallback, direct(|| Box::new(Freeze));
    frozen_failing_open: Policy::FailOpen, direct(|| Box::new(Freeze));
    frozen_failing_closed: Policy::FailClosed, direct(|| Box::new(Freeze));
    debug_sleep_with_fallback: Policy::Fallback, direct(|| Box::new(Sleep(None)));
    debug_sleep_failing_open: Policy::FailOpen, direct(|| Box::new(Sleep(None)));
    debug_sleep_failing_closed: Policy::FailClosed, direct(|| Box::new(Sleep(None)));
    client_pause_with_fallback: Policy::Fallback, direct(|| Box::new(Pause));
    client_pause_failing_open: Policy::FailOpen, direct(|| Box::new(Pause));
    client_pause_failing_closed: Policy::FailClosed, direct(|| Box::new(Pause));
    swallowed_packets_with_fallback: Policy::Fallback, proxied;
    swallowed_packets_failing_open: Policy::FailOpen, proxied;
    swallowed_packets_failing_closed: Policy::FailClosed, proxied;
}

#[test]
fn the_deny_cache_keeps_a_blocked_key_off_redis() {
    let server = RedisServer::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::from_url(&server.url()).await.unwrap();
        let rule = Rule::builder("3/hour".parse::<Quota>().unwrap())
            .build()
            .unwrap();
        let limiter = Limiter::builder().rule(rule).store(store).build().unwrap();
        for _ in 0..3 {
            assert!(limiter.hit("abuser").await.unwrap().allowed());
        }
        server.cmd(&["CONFIG", "RESETSTAT"]).unwrap();
        for _ in 0..10_000 {
            assert!(!limiter.hit("abuser").await.unwrap().allowed());
        }
    });
    let stats = server.cmd(&["INFO", "commandstats"]).unwrap();
    // The request function (FCALL), or the script where functions are refused (EVALSHA).
    let calls: u64 = stats
        .lines()
        .filter_map(|l| {
            l.strip_prefix("cmdstat_fcall:calls=")
                .or_else(|| l.strip_prefix("cmdstat_evalsha:calls="))
        })
        .filter_map(|rest| rest.split(',').next())
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(
        (1..=3).contains(&calls),
        "10,000 requests on a blocked key reached Redis {calls} times"
    );
}
