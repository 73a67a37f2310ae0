//! `Front::decide` over a memory store and a manual clock: one store call for global and
//! route rules, all-or-nothing across them, shadow rules that never block, exact headers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rate_guard_core::{
    Algorithm, BoxFuture, Degradation, Limiter, ManualClock, MemoryStore, Quota, Request, Rule,
    Source, Store, StoreError, Timestamp, Verdict,
};
use rate_guard_http::{
    Front, FrontBuilder, HeaderStyle, KeySpec, Limit, Outcome, Peer, Plan, RequestInfo, RouteLimits,
};

/// A memory store that counts its calls and can be made to fail.
#[derive(Debug)]
struct Counting {
    inner: MemoryStore,
    calls: AtomicUsize,
    down: AtomicBool,
}

impl Store for Counting {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("test: store down".into())) });
        }
        self.inner.decide(request)
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.reset(keys)
    }
}

struct Harness {
    store: Arc<Counting>,
    clock: ManualClock,
    limiter: Limiter,
}

impl Harness {
    fn new() -> Self {
        Self::with(Degradation::default().deny_cache_size(0))
    }

    fn with(degradation: Degradation) -> Self {
        // A minute boundary, so fixed windows start now.
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_040));
        let store = Arc::new(Counting {
            inner: MemoryStore::builder().build().unwrap(),
            calls: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let limiter = Limiter::builder()
            .rule(rule("1/s"))
            .shared_store(store.clone())
            .clock(clock.clone())
            .degradation(degradation)
            .build()
            .unwrap();
        Self {
            store,
            clock,
            limiter,
        }
    }

    fn calls(&self) -> usize {
        self.store.calls.load(Ordering::SeqCst)
    }

    fn decide(&self, front: &Front, route: Option<&RouteLimits>, peer: &str) -> Outcome {
        let plan = plan(front, route, peer);
        block_on(front.decide(&self.limiter, &plan))
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn rule(limit: &str) -> Rule {
    Rule::builder(limit.parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .build()
        .unwrap()
}

fn named(limit: &str, name: &str) -> Rule {
    Rule::builder(limit.parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .name(name)
        .build()
        .unwrap()
}

fn plan(front: &Front, route: Option<&RouteLimits>, peer: &str) -> Plan {
    let headers: [(&[u8], &[u8]); 0] = [];
    front.plan(
        &RequestInfo::new(Peer::parse(Some(peer)), &headers[..]),
        route,
    )
}

fn front(builder: FrontBuilder) -> Front {
    builder.build().unwrap()
}

fn header<'o>(outcome: &'o Outcome, name: &str) -> Option<&'o str> {
    outcome
        .headers()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

const PEER: &str = "203.0.113.9";

#[test]
fn global_and_route_rules_are_one_store_call() {
    let h = Harness::new();
    let front = front(
        Front::builder()
            .global(Limit::new(rule("100/minute")))
            .global(Limit::new(named("1000/hour", "hourly"))),
    );
    let route = front
        .route("/items/{id}", None, [Limit::new(rule("5/minute"))])
        .unwrap();
    let outcome = h.decide(&front, Some(&route), PEER);
    assert_eq!(h.calls(), 1);
    assert!(outcome.allowed());
    assert_eq!(outcome.status(), 200);
    assert_eq!(outcome.verdict().unwrap().rules().len(), 3);
    // The route rule has the least remaining.
    assert_eq!(
        outcome.headers(),
        [
            ("x-ratelimit-limit", "5".to_owned()),
            ("x-ratelimit-remaining", "4".to_owned()),
            ("x-ratelimit-reset", "60".to_owned()),
        ]
    );
    assert_eq!(outcome.body(), "");
    assert!(outcome.rule().unwrap().starts_with("rt."));
    assert!(outcome.shadow_denied().is_empty() && outcome.error().is_none());
}

#[test]
fn a_route_denial_consumes_no_global_quota() {
    let h = Harness::new();
    let front = front(Front::builder().global(Limit::new(rule("3/minute"))));
    let route = front
        .route("/login", Some("POST"), [Limit::new(rule("1/minute"))])
        .unwrap();
    assert!(h.decide(&front, Some(&route), PEER).allowed());
    let denied = h.decide(&front, Some(&route), PEER);
    assert_eq!(denied.status(), 429);
    assert_eq!(h.calls(), 2);
    // Global: 3 - 1 (first request) - 1 (this one); the denied request took nothing.
    let elsewhere = h.decide(&front, None, PEER);
    assert_eq!(header(&elsewhere, "x-ratelimit-remaining"), Some("1"));
}

#[test]
fn a_global_denial_consumes_no_route_quota() {
    let h = Harness::new();
    let front = front(Front::builder().global(Limit::new(rule("1/minute"))));
    let route = front
        .route("/a", None, [Limit::new(rule("5/minute"))])
        .unwrap();
    assert!(h.decide(&front, None, PEER).allowed());
    assert!(!h.decide(&front, Some(&route), PEER).allowed());
    h.clock.advance(Duration::from_secs(60));
    let next = h.decide(&front, Some(&route), PEER);
    assert!(next.allowed());
    assert_eq!(next.verdict().unwrap().rules()[1].remaining, 4);
}

#[test]
fn a_rule_counts_apart_on_each_route_and_globally() {
    let h = Harness::new();
    let five = rule("2/minute");
    let front = front(Front::builder().global(Limit::new(five.clone())));
    let a = front
        .route("/a/{id}", None, [Limit::new(five.clone())])
        .unwrap();
    let b = front
        .route("/b/{id}", None, [Limit::new(five.clone())])
        .unwrap();
    let a_get = front
        .route("/a/{id}", Some("GET"), [Limit::new(five)])
        .unwrap();
    // Global: 2 requests (one per route), the route rules 1 each: nobody is at 0.
    assert!(h.decide(&front, Some(&a), PEER).allowed());
    let second = h.decide(&front, Some(&b), PEER);
    let rules = second.verdict().unwrap().rules();
    assert_eq!((rules[0].remaining, rules[1].remaining), (0, 1));
    // The global rule is spent now, whatever the route.
    assert!(!h.decide(&front, Some(&a_get), PEER).allowed());
    let keys: Vec<String> = [&a, &b, &a_get]
        .iter()
        .map(|r| plan(&front, Some(r), PEER).keys(h.limiter.keys())[1].clone())
        .collect();
    assert!(
        keys[0] != keys[1] && keys[0] != keys[2] && keys[1] != keys[2],
        "{keys:?}"
    );
}

#[test]
fn shadow_rules_count_and_report_but_never_block() {
    let h = Harness::new();
    let front = front(
        Front::builder()
            .global(Limit::new(named("5/minute", "enforced")))
            .global(Limit::new(named("1/minute", "observed")).shadow(true)),
    );
    let first = h.decide(&front, None, PEER);
    assert!(first.allowed() && first.shadow_denied().is_empty());
    assert_eq!(h.calls(), 2, "enforced, then shadow");
    let second = h.decide(&front, None, PEER);
    assert!(second.allowed());
    assert_eq!(second.shadow_denied(), ["observed"]);
    // Headers describe enforced rules only.
    assert_eq!(header(&second, "x-ratelimit-limit"), Some("5"));
    assert_eq!(header(&second, "x-ratelimit-remaining"), Some("3"));
    assert_eq!(h.calls(), 4);
    // Once the enforced rule denies, the shadow call is skipped.
    for _ in 0..3 {
        h.decide(&front, None, PEER);
    }
    let calls = h.calls();
    let blocked = h.decide(&front, None, PEER);
    assert_eq!(blocked.status(), 429);
    assert_eq!(h.calls(), calls + 1);
    assert!(blocked.shadow().is_none() && blocked.shadow_denied().is_empty());
}

#[test]
fn shadow_mode_never_blocks_and_makes_one_call() {
    let h = Harness::new();
    let front = front(
        Front::builder()
            .global(Limit::new(named("1/minute", "tight")))
            .shadow_mode(true),
    );
    let route = front
        .route("/r", None, [Limit::new(rule("1/minute"))])
        .unwrap();
    for i in 0..3 {
        let outcome = h.decide(&front, Some(&route), PEER);
        assert!(outcome.allowed() && outcome.status() == 200);
        assert!(outcome.headers().is_empty() && outcome.verdict().is_none());
        assert_eq!(
            outcome.shadow_denied().len(),
            if i == 0 { 0 } else { 2 },
            "{i}"
        );
    }
    assert_eq!(h.calls(), 3);
}

#[test]
fn denial_headers_and_body_are_exact_for_every_style() {
    let cases = [
        (
            HeaderStyle::Legacy,
            vec![
                ("x-ratelimit-limit", "2"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "60"),
                ("retry-after", "60"),
                ("content-type", "application/json"),
            ],
        ),
        (
            HeaderStyle::Ietf,
            vec![
                (
                    "ratelimit-policy",
                    r#""api";q=100;w=3600, "login";q=2;w=60"#,
                ),
                // The hour started 840 s ago; a denied request reports what the others would have left.
                ("ratelimit", r#""api";r=97;t=2760, "login";r=0;t=60"#),
                ("retry-after", "60"),
                ("content-type", "application/json"),
            ],
        ),
        (
            HeaderStyle::None,
            vec![("retry-after", "60"), ("content-type", "application/json")],
        ),
    ];
    for (style, expected) in cases {
        let h = Harness::new();
        let front = front(
            Front::builder()
                .global(Limit::new(named("100/hour", "api")))
                .global(Limit::new(named("2/minute", "login")))
                .header_style(style),
        );
        h.decide(&front, None, PEER);
        h.decide(&front, None, PEER);
        h.clock.advance(Duration::from_millis(300));
        let denied = h.decide(&front, None, PEER);
        let got: Vec<(&str, &str)> = denied
            .headers()
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        assert_eq!(got, expected, "{style}");
        assert_eq!(
            denied.body(),
            r#"{"detail": "Rate limit exceeded: 2 per 1 minute"}"#
        );
        assert_eq!(denied.rule(), Some("login"));
    }
    let both = Harness::new();
    let front = front(
        Front::builder()
            .global(Limit::new(named("100/hour", "api")))
            .header_style(HeaderStyle::Both),
    );
    let names: Vec<&str> = both
        .decide(&front, None, PEER)
        .headers()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        names,
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "ratelimit-policy",
            "ratelimit"
        ]
    );
}

#[test]
fn waiting_retry_after_is_enough_for_every_algorithm() {
    for algorithm in Algorithm::ALL {
        let h = Harness::new();
        let limit = Rule::builder("3 per 10 seconds".parse::<Quota>().unwrap())
            .algorithm(algorithm)
            .build()
            .unwrap();
        let front = front(Front::builder().global(Limit::new(limit)));
        h.clock.advance(Duration::from_millis(1_234));
        let mut denied = h.decide(&front, None, PEER);
        while denied.allowed() {
            h.clock.advance(Duration::from_millis(700));
            denied = h.decide(&front, None, PEER);
        }
        let wait: u64 = header(&denied, "retry-after").unwrap().parse().unwrap();
        h.clock.advance(Duration::from_secs(wait));
        assert!(
            h.decide(&front, None, PEER).allowed(),
            "{algorithm}: waited {wait}s"
        );
    }
}

#[test]
fn a_store_down_fails_open_by_default_and_closed_when_asked() {
    let h = Harness::new();
    h.store.down.store(true, Ordering::SeqCst);
    let open = front(Front::builder().global(Limit::new(rule("1/minute"))));
    for _ in 0..3 {
        let outcome = h.decide(&open, None, PEER);
        assert!(outcome.allowed() && outcome.is_degraded());
        assert_eq!(outcome.verdict().unwrap().source(), Source::FailOpen);
        // A quota nobody counted is not advertised.
        assert!(outcome.headers().is_empty());
    }
    let closed_rule = Rule::builder("1/minute".parse::<Quota>().unwrap())
        .name("login")
        .fail_open(false)
        .build()
        .unwrap();
    let closed = front(Front::builder().global(Limit::new(closed_rule)));
    let outcome = h.decide(&closed, None, PEER);
    assert!(!outcome.allowed());
    assert_eq!(outcome.status(), 503);
    assert_eq!(
        outcome.body(),
        r#"{"detail": "Service temporarily unavailable"}"#
    );
    assert_eq!(
        outcome.headers(),
        [
            ("retry-after", "1".to_owned()),
            ("content-type", "application/json".to_owned())
        ]
    );
    // Shadow rules never block, even failing closed.
    let shadow_closed = front(
        Front::builder().global(
            Limit::new(
                Rule::builder("1/minute".parse::<Quota>().unwrap())
                    .fail_open(false)
                    .build()
                    .unwrap(),
            )
            .shadow(true),
        ),
    );
    assert!(h.decide(&shadow_closed, None, PEER).allowed());
}

#[test]
fn the_fallback_store_decides_while_the_store_is_down() {
    let h = Harness::with(
        Degradation::default()
            .deny_cache_size(0)
            .in_memory_fallback(1.try_into().unwrap()),
    );
    h.store.down.store(true, Ordering::SeqCst);
    let front = front(Front::builder().global(Limit::new(rule("1/minute"))));
    let first = h.decide(&front, None, PEER);
    assert!(first.allowed() && first.is_degraded());
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some("0"));
    let second = h.decide(&front, None, PEER);
    assert_eq!(second.status(), 429);
    assert_eq!(second.verdict().unwrap().source(), Source::Fallback);
}

#[test]
fn clients_count_apart_and_global_keys_are_shared() {
    let h = Harness::new();
    let front = front(
        Front::builder()
            .global(Limit::new(rule("1/minute")))
            .global(Limit::new(named("3/minute", "everyone")).key(KeySpec::Global)),
    );
    assert!(h.decide(&front, None, "198.51.100.1").allowed());
    assert!(h.decide(&front, None, "198.51.100.2").allowed());
    assert!(!h.decide(&front, None, "198.51.100.1").allowed());
    assert!(h.decide(&front, None, "198.51.100.3").allowed());
    let last = h.decide(&front, None, "198.51.100.4");
    assert_eq!(last.status(), 429);
    assert_eq!(last.rule(), Some("everyone"));
}

#[test]
fn configuration_mistakes_are_refused() {
    let err = Front::builder()
        .global(Limit::new(named("1/s", "same")))
        .global(Limit::new(named("2/s", "same")))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("\"same\""), "{err}");
    let err = Front::builder()
        .global(Limit::new(named("1/s", "rt.mine")))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let many: Vec<Limit> = (0..60)
        .map(|i| Limit::new(named("1/s", &format!("r{i}"))))
        .collect();
    let mut builder = Front::builder();
    for limit in many {
        builder = builder.global(limit);
    }
    let front = builder.build().unwrap();
    let route: Vec<Limit> = (0..5)
        .map(|i| Limit::new(named("1/s", &format!("x{i}"))))
        .collect();
    let err = front.route("/x", None, route).unwrap_err();
    assert!(err.to_string().contains("65 rules"), "{err}");
}

#[test]
fn limits_of_one_rule_on_one_identity_are_one_bucket() {
    let h = Harness::new();
    let two = rule("2/minute");
    let front = front(
        Front::builder()
            .global(Limit::new(two.clone()).key(KeySpec::User))
            .global(Limit::new(two).key("header:X-Key".parse().unwrap())),
    );
    // No user and no header: both fall back to the address, one bucket counted once.
    let plan = plan(&front, None, PEER);
    assert_eq!(plan.items().len(), 1);
    assert!(block_on(front.decide(&h.limiter, &plan)).allowed());
    assert!(h.decide(&front, None, PEER).allowed());
    let third = h.decide(&front, None, PEER);
    assert_eq!(third.status(), 429);
    assert!(third.error().is_none());
    // With a user, two identities, two buckets.
    let headers: [(&[u8], &[u8]); 0] = [];
    let mut request = RequestInfo::new(Peer::parse(Some(PEER)), &headers[..]);
    request.user = Some("42");
    assert_eq!(front.plan(&request, None).items().len(), 2);
}

/// The metrics of one label set: (allowed, blocked, shadow blocked).
fn counted(rule: &str, route: &str) -> (u64, u64, u64) {
    rate_guard_core::metrics::snapshot()
        .requests
        .iter()
        .find(|c| &*c.labels.rule == rule && &*c.labels.route == route)
        .map_or((0, 0, 0), |c| (c.allowed, c.blocked, c.shadow_blocked))
}

#[test]
fn metrics_count_requests_once_with_route_labels_and_shadow_denials_apart() {
    let h = Harness::new();
    let front = front(
        Front::builder()
            .global(Limit::new(named("100/minute", "m-global")))
            .global(Limit::new(named("1/minute", "m-observed")).shadow(true)),
    );
    let route = front
        .route("/m/{id}", None, [Limit::new(named("2/minute", "m-route"))])
        .unwrap();
    for _ in 0..3 {
        h.decide(&front, Some(&route), PEER);
    }
    // Every request is decided by the route rule (least remaining): 2 allowed, 1 blocked,
    // counted under the rule's own name with the route's template as a label.
    assert_eq!(counted("m-route", "/m/{id}"), (2, 1, 0));
    assert_eq!(counted("m-global", ""), (0, 0, 0));
    // The shadow rule is not a request of its own: it counts only what it would have blocked
    // (the second admitted request; the third was blocked before the shadow call).
    assert_eq!(counted("m-observed", ""), (0, 0, 1));
}

#[test]
fn decide_now_answers_like_decide_on_the_memory_store_and_defers_otherwise() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_040));
    let limiter = |clock: &ManualClock| {
        Limiter::builder()
            .store(MemoryStore::builder().clock(clock.clone()).build().unwrap())
            .build()
            .unwrap()
    };
    let (now, later) = (limiter(&clock), limiter(&clock));
    let front = front(
        Front::builder()
            .global(Limit::new(named("3/minute", "g")))
            .global(Limit::new(named("1/minute", "s")).shadow(true)),
    );
    let route = front
        .route("/x/{id}", None, [Limit::new(named("2/minute", "r"))])
        .unwrap();
    for _ in 0..4 {
        let p = plan(&front, Some(&route), PEER);
        let a = front
            .decide_now(&now, &p)
            .expect("the memory store answers at once");
        let b = block_on(front.decide(&later, &p));
        assert_eq!(
            (a.allowed(), a.status(), a.headers(), a.shadow_denied()),
            (b.allowed(), b.status(), b.headers(), b.shadow_denied())
        );
    }
    // A store that may wait (here, one without `decide_now`) leaves it to `decide`.
    let h = Harness::new();
    assert!(front
        .decide_now(&h.limiter, &plan(&front, None, PEER))
        .is_none());
    assert_eq!(h.calls(), 0);
}

#[test]
fn custom_rules_count_by_the_key_of_their_own_slot() {
    let front = Front::builder()
        .global(Limit::new(rule("100/minute")).key(KeySpec::Custom))
        .build()
        .unwrap();
    let route = front
        .route(
            "/r",
            None,
            [
                Limit::new(rule("5/minute"))
                    .key(KeySpec::Custom)
                    .custom_slot(1),
                Limit::new(rule("7/minute"))
                    .key(KeySpec::Custom)
                    .custom_slot(2),
            ],
        )
        .unwrap();
    let headers: [(&[u8], &[u8]); 0] = [];
    let mut request = RequestInfo::new(Peer::parse(Some("192.0.2.1")), &headers[..]);
    request.custom = Some("everyone");
    let identities = |plan: Plan| -> Vec<String> {
        plan.items()
            .iter()
            .map(|i| i.identity().to_owned())
            .collect()
    };
    let plan = front.plan_with_keys(&request, Some(&route), &[Some("tenant-1"), Some("team-a")]);
    assert_eq!(
        identities(plan),
        ["custom:everyone", "custom:tenant-1", "custom:team-a"]
    );
    // A missing or empty key falls back to the client address, slot by slot.
    let plan = front.plan_with_keys(&request, Some(&route), &[Some("")]);
    assert_eq!(
        identities(plan),
        ["custom:everyone", "ip:192.0.2.1", "ip:192.0.2.1"]
    );
    // `plan` reads slot 0 only.
    let plan = front.plan(&request, Some(&route));
    assert_eq!(
        identities(plan),
        ["custom:everyone", "ip:192.0.2.1", "ip:192.0.2.1"]
    );
}
