//! The limiter when its store fails: breaker, fallback, fail open/closed, deny cache, events.
//! The store here is the memory store behind a switch that makes it fail on demand; the fault
//! suite against real Redis processes is in rate-guard-redis/tests/faults.rs.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rate_guard_core::BreakerState::{Closed, HalfOpen, Open};
use rate_guard_core::{
    Algorithm, BoxFuture, BreakerState, Degradation, Event, Limiter, ManualClock, MemoryStore,
    Quota, Request, Rule, Source, Store, StoreError, Timestamp, Verdict,
};

const START: u64 = 1_700_000_000_000_000;

/// A memory store that fails with `Unavailable` while `down`, and counts the calls it gets.
#[derive(Debug, Default)]
struct Switch {
    store: MemoryStore,
    down: AtomicBool,
    calls: AtomicU64,
}

impl Store for Switch {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = if self.down.load(Ordering::Relaxed) {
            Err(StoreError::Unavailable("switched off".into()))
        } else {
            self.store.decide_now(request)
        };
        Box::pin(std::future::ready(result))
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.store.reset(keys)
    }

    // It stands for Redis: the deny cache serves remote stores only.
    fn is_remote(&self) -> bool {
        true
    }
}

struct Setup {
    limiter: Limiter,
    store: Arc<Switch>,
    clock: ManualClock,
    events: Arc<Mutex<Vec<Event>>>,
}

fn setup(rules: Vec<Rule>, degradation: Degradation) -> Setup {
    let clock = ManualClock::new(Timestamp::from_micros(START));
    let store = Arc::new(Switch::default());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let limiter = Limiter::builder()
        .rules(rules)
        .shared_store(store.clone())
        .clock(clock.clone())
        .degradation(degradation)
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    Setup {
        limiter,
        store,
        clock,
        events,
    }
}

fn rule(rate: &str) -> Rule {
    Rule::builder(rate.parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .build()
        .unwrap()
}

async fn hit(s: &Setup, identity: &str) -> Verdict {
    s.limiter.hit(identity).await.unwrap()
}

#[tokio::test]
async fn the_breaker_opens_keeps_requests_off_the_store_then_probes_and_closes() {
    let s = setup(
        vec![rule("100/hour")],
        Degradation::default()
            .failure_threshold(3)
            .cooldown(Duration::from_secs(1), Duration::from_secs(8)),
    );
    s.store.down.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(hit(&s, "a").await.source(), Source::FailOpen);
    }
    assert_eq!(s.limiter.breaker_state(), BreakerState::Open);
    let calls = s.store.calls.load(Ordering::Relaxed);
    for _ in 0..100 {
        assert!(hit(&s, "a").await.is_degraded());
    }
    assert_eq!(
        s.store.calls.load(Ordering::Relaxed),
        calls,
        "an open breaker called the store"
    );
    // After the cool-down, one probe; it fails, and the cool-down doubles.
    s.clock.advance(Duration::from_secs(1));
    hit(&s, "a").await;
    assert_eq!(s.store.calls.load(Ordering::Relaxed), calls + 1);
    s.clock.advance(Duration::from_millis(1_500));
    hit(&s, "a").await;
    assert_eq!(
        s.store.calls.load(Ordering::Relaxed),
        calls + 1,
        "probed before the doubled cool-down"
    );
    // The store is back: the next probe closes the breaker.
    s.store.down.store(false, Ordering::Relaxed);
    s.clock.advance(Duration::from_millis(500));
    let v = hit(&s, "a").await;
    assert_eq!(v.source(), Source::Store);
    assert_eq!(s.limiter.breaker_state(), BreakerState::Closed);
    assert!(!s.limiter.is_degraded());
    let events = s.events.lock().unwrap().clone();
    let transitions: Vec<(BreakerState, BreakerState)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Breaker { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == Event::FallbackStarted)
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == Event::FallbackEnded)
            .count(),
        1
    );
}

#[tokio::test]
async fn fail_closed_denies_and_a_rule_can_override() {
    let s = setup(
        vec![rule("100/hour")],
        Degradation::default().fail_open(false),
    );
    s.store.down.store(true, Ordering::Relaxed);
    let v = hit(&s, "a").await;
    assert!(!v.allowed());
    assert_eq!(v.source(), Source::FailClosed);
    assert!(v.decision().retry_after.is_some());

    let open_rule = Rule::builder("100/hour".parse::<Quota>().unwrap())
        .fail_open(true)
        .build()
        .unwrap();
    let s = setup(vec![open_rule], Degradation::default().fail_open(false));
    s.store.down.store(true, Ordering::Relaxed);
    assert_eq!(hit(&s, "a").await.source(), Source::FailOpen);
}

#[tokio::test]
async fn the_fallback_enforces_each_instances_share() {
    let instances = NonZeroU32::new(4).unwrap();
    let s = setup(
        vec![rule("20/hour")],
        Degradation::default().in_memory_fallback(instances),
    );
    s.store.down.store(true, Ordering::Relaxed);
    let allowed: Vec<bool> = hits(&s, "a", 7).await;
    // 20 per hour across 4 instances: 5 here.
    assert_eq!(allowed, [true, true, true, true, true, false, false]);
    let v = hit(&s, "a").await;
    assert_eq!(v.source(), Source::Fallback);
    assert_eq!(v.decision().limit, 5);
    // Another client has its own fallback quota.
    assert!(hit(&s, "b").await.allowed());
}

async fn hits(s: &Setup, identity: &str, n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(hit(s, identity).await.allowed());
    }
    out
}

#[tokio::test]
async fn the_deny_cache_answers_a_blocked_request_without_the_store() {
    let s = setup(vec![rule("3/hour")], Degradation::default());
    for _ in 0..3 {
        assert!(hit(&s, "abuser").await.allowed());
    }
    let calls = s.store.calls.load(Ordering::Relaxed);
    let first = hit(&s, "abuser").await;
    assert_eq!(first.source(), Source::Store);
    for _ in 0..10_000 {
        let v = hit(&s, "abuser").await;
        assert!(!v.allowed());
        assert_eq!(v.source(), Source::DenyCache);
    }
    assert_eq!(s.store.calls.load(Ordering::Relaxed), calls + 1);
    // After its time to live (1 s by default) the store is asked again, so that a reset made
    // by another process is seen; the fresh denial is cached again.
    s.clock.advance(Duration::from_millis(999));
    assert_eq!(hit(&s, "abuser").await.source(), Source::DenyCache);
    s.clock.advance(Duration::from_millis(1));
    assert_eq!(hit(&s, "abuser").await.source(), Source::Store);
    assert_eq!(hit(&s, "abuser").await.source(), Source::DenyCache);
    assert_eq!(s.store.calls.load(Ordering::Relaxed), calls + 2);
    // Its waits shrink with time, and it lets the request through once the wait is over.
    s.clock.advance(Duration::from_secs(59));
    let later = hit(&s, "abuser").await;
    assert_eq!(
        later.decision().retry_after,
        first
            .decision()
            .retry_after
            .map(|r| r.saturating_sub(Duration::from_secs(60)))
    );
    s.clock.advance(first.decision().retry_after.unwrap());
    assert!(hit(&s, "abuser").await.allowed());
    // A reset clears it.
    s.limiter.reset("abuser").await.unwrap();
    assert!(hit(&s, "abuser").await.allowed());
}

#[tokio::test]
async fn a_cost_above_the_limit_is_never_cached() {
    let s = setup(vec![rule("3/hour")], Degradation::default());
    let big = NonZeroU32::new(4).unwrap();
    let before = s.store.calls.load(Ordering::Relaxed);
    for _ in 0..3 {
        assert!(!s.limiter.hit_cost("a", big).await.unwrap().allowed());
    }
    assert_eq!(s.store.calls.load(Ordering::Relaxed), before + 3);
    assert!(s.limiter.hit("a").await.unwrap().allowed());
}

#[test]
fn bad_degradation_settings_are_refused() {
    for bad in [
        Degradation::default().failure_threshold(0),
        Degradation::default().cooldown(Duration::ZERO, Duration::from_secs(1)),
        Degradation::default().cooldown(Duration::from_secs(2), Duration::from_secs(1)),
        Degradation::default().deny_cache_ttl(Duration::ZERO),
    ] {
        let err = Limiter::builder()
            .rule(rule("1/s"))
            .degradation(bad)
            .build()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid degradation setting"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_local_store_is_not_fronted_by_the_deny_cache() {
    // The memory store answers as fast as the cache would, and the cache would only delay a
    // reset made through the store.
    let limiter = Limiter::builder().rule(rule("1/hour")).build().unwrap();
    assert!(limiter.hit("a").await.unwrap().allowed());
    for _ in 0..3 {
        assert_eq!(limiter.hit("a").await.unwrap().source(), Source::Store);
    }
}
