//! The layer's logic, without sockets: `tower_test::mock` for the inner service and a limiter
//! clock that follows tokio's paused time, so windows pass with `time::advance`, never a sleep.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Request, Response, StatusCode};
use rate_guard_core::{
    BoxFuture, Clock, MemoryStore, Request as StoreRequest, Store, StoreError, Timestamp, Verdict,
};
use rate_guard_tower::{
    Algorithm, HeaderStyle, PlanItem, RateGuard, RateGuardBuilder, RateGuardConfig, RateGuardLayer,
    RouteConfig, RuleConfig,
};
use tokio::time;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{service_fn, Layer, ServiceExt};
use tower_test::mock;

/// The limiter's time: a fixed epoch plus tokio's (paused) elapsed time.
#[derive(Debug)]
struct TokioClock {
    start: time::Instant,
    base: Timestamp,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            start: time::Instant::now(),
            // A whole minute, so fixed windows start with the test.
            base: Timestamp::from_secs(1_800_000_000 / 60 * 60),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base.saturating_add(self.start.elapsed())
    }
}

async fn build(builder: RateGuardBuilder) -> RateGuard {
    builder.clock(TokioClock::new()).build().await.unwrap()
}

fn request(path: &str, peer: &str) -> Request<String> {
    let mut request = Request::get(path).body(String::new()).unwrap();
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn header<'r>(response: &'r Response<String>, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

type Mocked =
    mock::Spawn<rate_guard_tower::RateGuardService<mock::Mock<Request<String>, Response<String>>>>;
type MockHandle = mock::Handle<Request<String>, Response<String>>;

/// Sends `request` through the guarded mock; answers "ok" when the inner service gets it.
async fn send(
    service: &mut Mocked,
    handle: &mut MockHandle,
    request: Request<String>,
) -> Response<String> {
    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(service.call(request));
    if let std::task::Poll::Ready(result) = response.poll() {
        // Refused without reaching the inner service.
        assert_pending!(handle.poll_request());
        return result.unwrap();
    }
    let (_, reply) = handle
        .next_request()
        .await
        .expect("the inner service is called");
    reply.send_response(Response::new("ok".to_owned()));
    response.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn admits_the_limit_then_refuses_with_the_python_response() {
    let guard = build(
        RateGuard::builder().global(RuleConfig::new("2/second").algorithm(Algorithm::FixedWindow)),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));

    let first = send(&mut service, &mut handle, request("/", "203.0.113.9")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.body(), "ok");
    assert_eq!(header(&first, "x-ratelimit-limit"), Some("2"));
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-reset"), Some("1"));
    let second = send(&mut service, &mut handle, request("/", "203.0.113.9")).await;
    assert_eq!(header(&second, "x-ratelimit-remaining"), Some("0"));

    let third = send(&mut service, &mut handle, request("/", "203.0.113.9")).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        third.body(),
        r#"{"detail": "Rate limit exceeded: 2 per 1 second"}"#
    );
    assert_eq!(header(&third, "content-type"), Some("application/json"));
    assert_eq!(header(&third, "retry-after"), Some("1"));
    assert_eq!(header(&third, "x-ratelimit-remaining"), Some("0"));

    // Another client has its own quota; the first one gets more when the window turns.
    let other = send(&mut service, &mut handle, request("/", "203.0.113.10")).await;
    assert_eq!(other.status(), StatusCode::OK);
    time::advance(Duration::from_secs(1)).await;
    let later = send(&mut service, &mut handle, request("/", "203.0.113.9")).await;
    assert_eq!(later.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn clones_of_the_service_share_one_limit() {
    let guard = build(RateGuard::builder().global(RuleConfig::new("5/second").key("global"))).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |_: Request<String>| {
        counted.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
    });
    let service = RateGuardLayer::new(guard.clone()).layer(inner);
    // What axum does: one clone per connection; and a second layer from the same guard.
    let mut admitted = 0;
    for i in 0..20 {
        let clone = if i % 2 == 0 {
            service.clone()
        } else {
            guard.layer().layer(service.get_ref().clone())
        };
        let response = clone
            .oneshot(request("/", &format!("198.51.100.{i}")))
            .await
            .unwrap();
        admitted += usize::from(response.status() == StatusCode::OK);
    }
    assert_eq!(admitted, 5);
    assert_eq!(calls.load(Ordering::Relaxed), 5);
}

/// The statuses of `requests`, sent in order.
async fn statuses(
    service: &mut Mocked,
    handle: &mut MockHandle,
    requests: Vec<Request<String>>,
) -> Vec<u16> {
    let mut out = Vec::new();
    for request in requests {
        out.push(send(service, handle, request).await.status().as_u16());
    }
    out
}

fn with_header(name: &'static str, value: &str, peer: &str) -> Request<String> {
    let mut r = request("/", peer);
    r.headers_mut().insert(name, value.parse().unwrap());
    r
}

#[tokio::test(start_paused = true)]
async fn header_keys_count_per_value_and_fall_back_to_the_address() {
    let rule = RuleConfig::new("1/minute").key("header:X-Api-Key");
    let guard = build(RateGuard::builder().global(rule)).await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));
    let requests = vec![
        with_header("x-api-key", "a", "192.0.2.1"),
        // The same key from elsewhere: the key's quota is spent.
        with_header("x-api-key", "a", "192.0.2.2"),
        with_header("x-api-key", "b", "192.0.2.1"),
        // No key: the client address, one quota per address.
        request("/", "192.0.2.1"),
        request("/", "192.0.2.1"),
    ];
    assert_eq!(
        statuses(&mut service, &mut handle, requests).await,
        [200, 429, 200, 200, 429]
    );
}

#[tokio::test(start_paused = true)]
async fn ip_keys_group_ipv6_and_believe_trusted_proxies_only() {
    let guard = build(
        RateGuard::builder()
            .global("1/minute")
            .with_config(|c| c.trusted_proxies = vec!["10.0.0.0/8".to_owned()]),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));
    let requests = vec![
        // IPv6 clients are grouped by /64.
        request("/", "[2001:db8:1:2::1]"),
        request("/", "[2001:db8:1:2::99]"),
        request("/", "[2001:db8:1:3::1]"),
        // Behind a trusted proxy the right-most untrusted hop is the client, whatever a
        // client prepends and however many trusted proxies there are.
        with_header("x-forwarded-for", "6.6.6.6, 203.0.113.50", "10.0.0.1"),
        with_header(
            "x-forwarded-for",
            "7.7.7.7, 203.0.113.50, 10.0.0.9",
            "10.0.0.2",
        ),
        // From an untrusted peer the header is ignored: the peer is the client.
        with_header("x-forwarded-for", "203.0.113.60", "192.0.2.77"),
        with_header("x-forwarded-for", "203.0.113.61", "192.0.2.77"),
    ];
    assert_eq!(
        statuses(&mut service, &mut handle, requests).await,
        [200, 429, 200, 200, 429, 200, 429]
    );
}

#[tokio::test(start_paused = true)]
async fn the_peer_may_come_as_a_plain_socket_addr_or_not_at_all() {
    let guard = build(RateGuard::builder().global("1/minute")).await;
    let plain = |ip: &str| {
        let mut r = Request::get("/").body(String::new()).unwrap();
        r.extensions_mut()
            .insert(format!("{ip}:1").parse::<SocketAddr>().unwrap());
        r
    };
    let keys = |r: Request<String>| {
        let (parts, _) = r.into_parts();
        guard.plan(&parts).unwrap().keys(guard.limiter().keys())
    };
    assert_eq!(
        keys(plain("192.0.2.5")),
        ["rate_guard:sliding_window.1.60s:{ip:192.0.2.5}"]
    );
    let unknown = Request::get("/").body(String::new()).unwrap();
    assert_eq!(
        keys(unknown),
        ["rate_guard:sliding_window.1.60s:{ip:unknown}"]
    );
}

#[tokio::test(start_paused = true)]
async fn jwt_keys_use_verified_claims_only() {
    use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
    let secret = "a secret of thirty-two bytes or more";
    let token = |sub: &str, secret: &str| {
        let claims = serde_json::json!({"sub": sub, "exp": get_current_timestamp() + 3600});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let guard = build(
        RateGuard::builder()
            .global(RuleConfig::new("1/minute").key("jwt:sub"))
            .with_config(|c| c.jwt_keys = vec![secret.to_owned()]),
    )
    .await;
    let bearer = |token: String| {
        let mut r = request("/", "192.0.2.1");
        r.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (parts, _) = r.into_parts();
        guard.plan(&parts).unwrap().items()[0].identity().to_owned()
    };
    assert_eq!(bearer(token("alice", secret)), "jwt:sub:alice");
    // A forged token (signed with another key) counts by address, not as alice.
    assert_eq!(
        bearer(token("alice", "another secret of thirty-two bytes")),
        "ip:192.0.2.1"
    );
    assert_eq!(bearer("not.a.token".to_owned()), "ip:192.0.2.1");

    let err = RateGuard::builder()
        .global(RuleConfig::new("1/minute").key("jwt:sub"))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("jwt"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn custom_and_user_keys_come_from_closures() {
    let guard = build(
        RateGuard::builder()
            .global(RuleConfig::new("1/minute").key("custom"))
            .global(RuleConfig::new("10/minute").key("user"))
            .key_fn(|parts| {
                parts
                    .headers
                    .get("x-tenant")?
                    .to_str()
                    .ok()
                    .map(str::to_owned)
            })
            .user_fn(|parts| parts.extensions.get::<String>().cloned()),
    )
    .await;
    let mut r = request("/", "192.0.2.1");
    r.headers_mut().insert("x-tenant", "acme".parse().unwrap());
    r.extensions_mut().insert("user-42".to_owned());
    let (parts, _) = r.into_parts();
    let plan = guard.plan(&parts).unwrap();
    let identities: Vec<&str> = plan.items().iter().map(PlanItem::identity).collect();
    assert_eq!(identities, ["custom:acme", "user:user-42"]);

    let (bare, _) = request("/", "192.0.2.1").into_parts();
    let plan = guard.plan(&bare).unwrap();
    let identities: Vec<&str> = plan.items().iter().map(PlanItem::identity).collect();
    assert_eq!(identities, ["ip:192.0.2.1", "ip:192.0.2.1"]);

    for (key, needs) in [("custom", "key_fn"), ("user", "user_fn")] {
        let err = RateGuard::builder()
            .global(RuleConfig::new("1/minute").key(key))
            .build()
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needs), "{err}");
    }
}

/// A store that counts its calls and, optionally, answers only after a (paused-time) delay.
#[derive(Debug)]
struct Counting {
    inner: MemoryStore,
    calls: Arc<AtomicUsize>,
    delay: Option<Duration>,
}

impl Store for Counting {
    fn decide<'a>(
        &'a self,
        request: StoreRequest<'a>,
    ) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            if let Some(delay) = self.delay {
                time::sleep(delay).await;
            }
            self.inner.decide(request).await
        })
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.reset(keys)
    }
}

fn counting(delay: Option<Duration>) -> (Counting, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let store = Counting {
        inner: MemoryStore::builder().build().unwrap(),
        calls: calls.clone(),
        delay,
    };
    (store, calls)
}

#[tokio::test(start_paused = true)]
async fn route_limits_use_the_template_and_decide_with_the_globals_in_one_call() {
    let (store, calls) = counting(None);
    let guard = build(
        RateGuard::builder()
            .global(RuleConfig::new("3/minute").algorithm(Algorithm::FixedWindow))
            .route(
                RouteConfig::new("/items/{id}")
                    .rule(RuleConfig::new("1/minute").algorithm(Algorithm::FixedWindow)),
            )
            // Without axum's router, the path is the template.
            .route_fn(|parts| Some(parts.uri.path().to_owned()))
            .store(store),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));
    let route = send(
        &mut service,
        &mut handle,
        request("/items/{id}", "192.0.2.1"),
    )
    .await;
    assert_eq!(route.status(), 200);
    // The header reports the rule with the least remaining: the route's.
    assert_eq!(header(&route, "x-ratelimit-limit"), Some("1"));
    let denied = send(
        &mut service,
        &mut handle,
        request("/items/{id}", "192.0.2.1"),
    )
    .await;
    assert_eq!(denied.status(), 429);
    assert_eq!(
        denied.body(),
        r#"{"detail": "Rate limit exceeded: 1 per 1 minute"}"#
    );
    // All-or-nothing: the denied request took nothing from the global quota (3 - 1 = 2 left).
    for remaining in ["1", "0"] {
        let other = send(&mut service, &mut handle, request("/other", "192.0.2.1")).await;
        assert_eq!(other.status(), 200);
        assert_eq!(header(&other, "x-ratelimit-remaining"), Some(remaining));
    }
    assert_eq!(
        send(&mut service, &mut handle, request("/other", "192.0.2.1"))
            .await
            .status(),
        429
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        5,
        "one store call per request"
    );
}

#[tokio::test(start_paused = true)]
async fn a_decision_that_waits_on_the_store_calls_the_ready_inner_service_later() {
    let (store, calls) = counting(Some(Duration::from_millis(5)));
    let guard = build(RateGuard::builder().global("1/minute").store(store)).await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call(request("/", "192.0.2.1")));
    assert_pending!(first.poll());
    // Deciding: the inner service has not seen the request yet.
    assert_pending!(handle.poll_request());
    time::advance(Duration::from_millis(5)).await;
    assert_pending!(first.poll());
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response(Response::new("ok".to_owned()));
    let response = assert_ready_ok!(first.poll());
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-remaining"), Some("0"));

    // The mock panics when called without poll_ready: the service keeps a clone to ready.
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call(request("/", "192.0.2.1")));
    assert_pending!(second.poll());
    time::advance(Duration::from_millis(5)).await;
    let refused = assert_ready_ok!(second.poll());
    assert_eq!(refused.status(), 429);
    assert_pending!(handle.poll_request());
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn exempt_paths_and_a_disabled_guard_skip_the_store() {
    let (store, calls) = counting(None);
    let guard = build(
        RateGuard::builder()
            .global("1/minute")
            .with_config(|c| c.exempt_paths = vec!["/health".to_owned()])
            .store(store),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));
    for path in ["/health", "/health/deep", "/health", "/health/"] {
        let response = send(&mut service, &mut handle, request(path, "192.0.2.1")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit"), None);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    // A path that only starts like an exempt one is limited.
    send(&mut service, &mut handle, request("/healthz", "192.0.2.1")).await;
    assert_eq!(
        send(&mut service, &mut handle, request("/healthz", "192.0.2.1"))
            .await
            .status(),
        429
    );

    let (store, calls) = counting(None);
    let off = build(
        RateGuard::builder()
            .global("1/minute")
            .with_config(|c| c.enabled = false)
            .store(store),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(off));
    for _ in 0..3 {
        assert_eq!(
            send(&mut service, &mut handle, request("/", "192.0.2.1"))
                .await
                .status(),
            200
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn ietf_headers_and_shadow_mode() {
    let guard = build(
        RateGuard::builder()
            .global(
                RuleConfig::new("1/minute")
                    .name("per-ip")
                    .algorithm(Algorithm::FixedWindow),
            )
            .with_config(|c| c.headers = HeaderStyle::Both),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));
    let first = send(&mut service, &mut handle, request("/", "192.0.2.1")).await;
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some(r#""per-ip";q=1;w=60"#)
    );
    assert_eq!(header(&first, "ratelimit"), Some(r#""per-ip";r=0;t=60"#));
    assert_eq!(header(&first, "x-ratelimit-limit"), Some("1"));
    let denied = send(&mut service, &mut handle, request("/", "192.0.2.1")).await;
    assert_eq!(denied.status(), 429);
    assert!(header(&denied, "ratelimit")
        .unwrap()
        .starts_with(r#""per-ip";r=0;t="#));

    let shadow = build(
        RateGuard::builder()
            .global("1/minute")
            .with_config(|c| c.shadow_mode = true),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(shadow));
    for _ in 0..3 {
        let response = send(&mut service, &mut handle, request("/", "192.0.2.1")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-ratelimit-limit"),
            None,
            "shadow rules send no headers"
        );
    }
}

/// A store that is down.
#[derive(Debug)]
struct Down;

impl Store for Down {
    fn decide<'a>(&'a self, _: StoreRequest<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".to_owned())) })
    }

    fn reset<'a>(&'a self, _: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".to_owned())) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_is_down_gives_the_configured_degraded_answer() {
    // Fail open (the default): allowed, and no rate limit headers (nobody counted).
    let open = build(RateGuard::builder().global("1/minute").store(Down)).await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(open));
    for _ in 0..3 {
        let response = send(&mut service, &mut handle, request("/", "192.0.2.1")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit"), None);
    }

    // Fail closed: 503 with Retry-After, the inner service never called.
    let closed = build(
        RateGuard::builder()
            .global("1/minute")
            .with_config(|c| c.fail_open = false)
            .store(Down),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(closed));
    let response = send(&mut service, &mut handle, request("/", "192.0.2.1")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.body(),
        r#"{"detail": "Service temporarily unavailable"}"#
    );
    assert!(header(&response, "retry-after").is_some());

    // A rule's own fail_open wins over the guard's.
    let login = build(
        RateGuard::builder()
            .global(RuleConfig::new("1/minute").fail_open(false))
            .store(Down),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(login));
    assert_eq!(
        send(&mut service, &mut handle, request("/", "192.0.2.1"))
            .await
            .status(),
        503
    );

    // In-memory fallback: the limit still holds, in this process.
    let fallback = build(
        RateGuard::builder()
            .global("2/minute")
            .with_config(|c| c.in_memory_fallback = true)
            .store(Down),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(fallback));
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(
                send(&mut service, &mut handle, request("/", "192.0.2.1"))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        out
    };
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn configuration_errors_name_the_field() {
    let err = |b: RateGuardBuilder| async move { b.build().await.unwrap_err().to_string() };
    let cases = [
        (
            RateGuard::builder().global("100/fortnight"),
            "global_rules[0].limit",
        ),
        (
            RateGuard::builder()
                .global("1/s")
                .global(RuleConfig::new("1/s").key("cookie")),
            "global_rules[1].key",
        ),
        (
            RateGuard::builder().global(RuleConfig::new("1/s").cost(0)),
            "global_rules[0].cost",
        ),
        (
            RateGuard::builder().global(RuleConfig::new("1/s").burst(5)),
            "burst",
        ),
        (
            RateGuard::builder().route(RouteConfig::new("/x").method("G E T").rule("1/s")),
            "routes[0].method",
        ),
        (
            RateGuard::builder().route(RouteConfig::new("/x")),
            "routes[0]",
        ),
        (
            RateGuard::builder()
                .route(RouteConfig::new("/x").rule("1/s"))
                .route(RouteConfig::new("/x").rule("2/s")),
            "listed twice",
        ),
        (
            RateGuard::builder()
                .with_config(|c| c.trusted_proxies = vec!["10.0.0.0/33".to_owned()]),
            "trusted_proxies",
        ),
        (
            RateGuard::builder().with_config(|c| c.exempt_paths = vec!["health".to_owned()]),
            "exempt_paths[0]",
        ),
        (
            RateGuard::builder().with_config(|c| c.deny_cache_ttl = 0.0),
            "deny_cache_ttl",
        ),
        (
            RateGuard::builder().with_config(|c| c.redis_timeout = 1e300),
            "redis_timeout must be from 0.001 to 60 seconds, not 1e300",
        ),
        (
            RateGuard::builder().with_config(|c| c.redis_pool_size = 1_000_000_000),
            "redis_pool_size must be from 1 to 256, not 1000000000",
        ),
        (
            RateGuard::builder().with_config(|c| c.breaker_threshold = 1 << 31),
            "breaker_threshold must be from 1 to 1000000, not 2147483648",
        ),
        (
            RateGuard::builder().with_config(|c| c.memory_max_keys = Some(usize::MAX)),
            "memory_max_keys must be from 1 to 100000000",
        ),
        (
            RateGuard::builder().with_config(|c| c.instance_count = 0),
            "instance_count must be from 1 to 10000, not 0",
        ),
        (
            RateGuard::builder().with_config(|c| c.key_prefix = "bad prefix".to_owned()),
            "prefix",
        ),
        (
            RateGuard::builder().with_config(|c| c.redis_url = Some("http://x".to_owned())),
            "http://x",
        ),
    ];
    for (builder, expected) in cases {
        let message = err(builder).await;
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
    // Typed fields (algorithm, header style) refuse a bad name when the configuration is read.
    let cases = [
        (
            "global_rules = [{ limit = '1/s', algorithm = 'leaky' }]",
            "algorithm",
        ),
        ("headers = 'fancy'", "headers"),
    ];
    for (text, expected) in cases {
        let message = toml::from_str::<RateGuardConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_redis_fails_at_build_without_showing_the_password() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RateGuard::builder()
        .with_config(|c| {
            c.redis_url = Some(format!("redis://:hunter2@127.0.0.1:{port}/0"));
            c.redis_connect_timeout = 0.5;
        })
        .build()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(err.is_transient(), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && !message.contains("hunter2"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_response_future_is_ready_at_once_for_the_memory_store() {
    let guard = build(RateGuard::builder().global("1/minute")).await;
    let (mut service, _handle) =
        mock::spawn_layer::<Request<String>, Response<String>, _>(RateGuardLayer::new(guard));
    assert_ready_ok!(service.poll_ready());
    let mut allowed = task::spawn(service.call(request("/", "192.0.2.1")));
    assert_pending!(allowed.poll(), "waiting on the inner service only");
    assert_ready_ok!(service.poll_ready());
    let mut refused = task::spawn(service.call(request("/", "192.0.2.1")));
    let response = assert_ready!(refused.poll()).unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn route_limits_are_chosen_by_method_as_in_python() {
    let guard = RateGuard::builder()
        .route(RouteConfig::new("/x").method("get").rule("1/minute"))
        .route(RouteConfig::new("/x").method("POST").rule("2/minute"))
        .route(RouteConfig::new("/y").rule("3/minute"))
        .build()
        .await
        .unwrap();
    let ids = |path: &str, method: http::Method| {
        guard.route_limits(path, &method).map(|r| {
            format!(
                "{} {}",
                r.method().unwrap_or("*"),
                r.limits()[0].rule().id()
            )
        })
    };
    let get = ids("/x", http::Method::GET).unwrap();
    assert!(
        get.starts_with("GET rt.") && get.ends_with(".sliding_window.1.60s"),
        "{get}"
    );
    // HEAD is answered by the GET route (as axum and Starlette do).
    assert_eq!(ids("/x", http::Method::HEAD), Some(get.clone()));
    assert!(ids("/x", http::Method::POST)
        .unwrap()
        .starts_with("POST rt."));
    assert_eq!(ids("/x", http::Method::PUT), None);
    // A route for every method.
    assert!(ids("/y", http::Method::DELETE)
        .unwrap()
        .starts_with("* rt."));
    assert_eq!(ids("/z", http::Method::GET), None);
}

#[tokio::test(start_paused = true)]
async fn routes_of_one_shared_scope_count_against_one_quota() {
    let limit = || RuleConfig::new("3/minute").algorithm(Algorithm::FixedWindow);
    let guard = build(
        RateGuard::builder()
            .route(RouteConfig::new("/upload").scope("uploads").rule(limit()))
            .route(
                RouteConfig::new("/bulk/{id}")
                    .method("POST")
                    .scope("uploads")
                    .rule(limit()),
            )
            .route(RouteConfig::new("/own").rule(limit()))
            .route_fn(|parts| Some(parts.uri.path().to_owned())),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));
    let mut statuses = Vec::new();
    for path in ["/upload", "/bulk/{id}", "/upload", "/bulk/{id}"] {
        let mut req = request(path, "192.0.2.1");
        if path.starts_with("/bulk") {
            *req.method_mut() = http::Method::POST;
        }
        statuses.push(send(&mut service, &mut handle, req).await.status());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // A route without the scope keeps its own quota.
    let own = send(&mut service, &mut handle, request("/own", "192.0.2.1")).await;
    assert_eq!(own.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_zero_rate_refuses_without_retry_after() {
    let guard = build(
        RateGuard::builder()
            .route(RouteConfig::new("/closed").rule("0/minute"))
            .route_fn(|parts| Some(parts.uri.path().to_owned())),
    )
    .await;
    let (mut service, mut handle) = mock::spawn_layer(RateGuardLayer::new(guard));
    for _ in 0..2 {
        let refused = send(&mut service, &mut handle, request("/closed", "192.0.2.1")).await;
        assert_eq!(refused.status(), 429);
        assert_eq!(header(&refused, "x-ratelimit-limit"), Some("0"));
        assert_eq!(header(&refused, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header(&refused, "retry-after"), None);
        assert_eq!(
            refused.body(),
            r#"{"detail": "Rate limit exceeded: 0 per 1 minute"}"#
        );
    }
}
