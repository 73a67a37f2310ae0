//! Metrics: one count per request for the deciding rule, store latency and failures, deny
//! cache hits, degradation gauges, and the Prometheus text format. The registry is
//! process-wide, so every test uses rule names of its own, the gauges are checked in one
//! test only, and the tests that decide run one at a time ([`SERIAL`]): the store latency
//! histogram counts every remote call of the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rate_guard_core::metrics::{self, RequestCounts};
use rate_guard_core::{
    Action, Algorithm, BoxFuture, Degradation, Hit, Limiter, ManualClock, MemoryStore, Quota,
    Request, Rule, Store, StoreError, Timestamp, Verdict,
};

/// A remote-looking store that fails on demand.
#[derive(Debug, Default)]
struct Flaky {
    store: MemoryStore,
    down: AtomicBool,
}

impl Store for Flaky {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        let result = if self.down.load(Ordering::Relaxed) {
            Err(StoreError::Timeout(Duration::from_millis(50)))
        } else {
            self.store.decide_now(request)
        };
        Box::pin(std::future::ready(result))
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.store.reset(keys)
    }

    fn is_remote(&self) -> bool {
        true
    }
}

/// Taken by every test that decides, so that one test's store calls never show in another's
/// latency count.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rule(name: &str, rate: &str) -> Rule {
    Rule::builder(rate.parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .name(name)
        .build()
        .unwrap()
}

fn counts(name: &str, route: &str) -> (u64, u64, u64) {
    metrics::snapshot()
        .requests
        .iter()
        .find(|c: &&RequestCounts| &*c.labels.rule == name && &*c.labels.route == route)
        .map_or((0, 0, 0), |c| (c.allowed, c.blocked, c.shadow_blocked))
}

fn limiter(store: Arc<Flaky>, degradation: Degradation) -> Limiter {
    Limiter::builder()
        .rule(rule("m-unused", "1/s"))
        .shared_store(store)
        .clock(ManualClock::new(Timestamp::from_micros(
            1_700_000_000_000_000,
        )))
        .degradation(degradation)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_request_counts_once_for_its_deciding_rule() {
    let _serial = SERIAL.lock().await;
    let wide = rule("m-wide", "100/hour");
    let narrow = rule("m-narrow", "2/hour");
    // Registered once, as a front does for a route's rule: its id and its route as labels.
    let narrow_counters = metrics::register("m-narrow", "/items/{id}", Algorithm::FixedWindow);
    let limiter = limiter(Arc::default(), Degradation::default());
    let hits = [
        Hit::new(&wide, "a", 1.try_into().unwrap()),
        Hit::new(&narrow, "a", 1.try_into().unwrap()).counted_in(&narrow_counters),
    ];
    for _ in 0..5 {
        limiter.decide(&hits, Action::Hit).await.unwrap();
    }
    // Peeks are not requests.
    limiter.decide(&hits, Action::Peek).await.unwrap();
    // The narrow rule has the least remaining: it decides every request (2 allowed, 3 blocked;
    // the last two blocked from the deny cache count all the same).
    assert_eq!(counts("m-narrow", "/items/{id}"), (2, 3, 0));
    assert_eq!(counts("m-wide", ""), (0, 0, 0));
    // A shadow decision is not a request: only the rules that would have denied count.
    let verdict = limiter.decide(&hits, Action::Shadow).await.unwrap();
    assert!(!verdict.allowed());
    assert_eq!(counts("m-narrow", "/items/{id}"), (2, 3, 1));
    assert_eq!(counts("m-wide", ""), (0, 0, 0));
}

#[tokio::test]
async fn rules_built_alike_share_their_counters() {
    let _serial = SERIAL.lock().await;
    let limiter = limiter(Arc::default(), Degradation::default());
    for i in 0..3 {
        let r = rule("m-alike", "10/hour");
        let identity = format!("c{i}");
        let hit = Hit::new(&r, &identity, 1.try_into().unwrap());
        limiter.decide(&[hit], Action::Hit).await.unwrap();
    }
    assert_eq!(counts("m-alike", ""), (3, 0, 0));
}

#[tokio::test]
async fn store_latency_failures_and_the_degradation_gauges() {
    let _serial = SERIAL.lock().await;
    let store = Arc::new(Flaky::default());
    let limiter = limiter(store.clone(), Degradation::default().failure_threshold(2));
    let r = rule("m-gauges", "10/hour");
    let hit = [Hit::new(&r, "g", 1.try_into().unwrap())];
    let before = metrics::snapshot();
    limiter.decide(&hit, Action::Hit).await.unwrap();
    let after = metrics::snapshot();
    assert_eq!(after.latency_count, before.latency_count + 1);
    assert_eq!(after.fallback_active, 0);

    store.down.store(true, Ordering::Relaxed);
    for _ in 0..2 {
        assert!(limiter
            .decide(&hit, Action::Hit)
            .await
            .unwrap()
            .is_degraded());
    }
    let down = metrics::snapshot();
    assert_eq!(down.storage_errors[0], after.storage_errors[0] + 2); // timeouts
    assert_eq!(down.fallback_active, 1);
    assert_eq!(down.breaker_state, 2); // open
                                       // Fail-open decisions count as allowed requests.
    assert_eq!(counts("m-gauges", ""), (3, 0, 0));

    // A limiter that goes away takes its share of the gauges with it.
    drop(limiter);
    let gone = metrics::snapshot();
    assert_eq!((gone.fallback_active, gone.breaker_state), (0, 0));
}

#[test]
fn the_text_format_lists_each_family_once_with_its_samples() {
    let _quoted = metrics::register("m-text", "/say/\"{word}\"", Algorithm::SlidingWindow);
    let text = metrics::render_prometheus();
    for family in [
        "rate_guard_requests_allowed_total",
        "rate_guard_requests_blocked_total",
        "rate_guard_shadow_blocked_total",
        "rate_guard_redis_latency_seconds",
        "rate_guard_storage_errors_total",
        "rate_guard_deny_cache_hits_total",
        "rate_guard_fallback_active",
        "rate_guard_breaker_state",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family}"
        );
    }
    // Samples of a family follow its TYPE line, before the next family starts.
    let mut current = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap();
        } else if !line.starts_with('#') {
            assert!(line.starts_with(current), "{line} outside {current}");
        }
    }
    assert!(text.contains("rate_guard_redis_latency_seconds_bucket{le=\"+Inf\"}"));
    assert!(text.contains("rate_guard_storage_errors_total{kind=\"timeout\"}"));
    assert!(text.contains("route=\"/say/\\\"{word}\\\"\""), "{text}");
}
