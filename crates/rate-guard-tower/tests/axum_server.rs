//! The whole path: an axum app served over a real socket (`ConnectInfo`, `MatchedPath`, a
//! service clone per connection), and Redis from the testkit (a real `redis-server` on a free
//! port).

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use rate_guard_core::{ManualClock, Timestamp};
use rate_guard_testkit::RedisServer;
use rate_guard_tower::{RateGuard, RateGuardBuilder, RouteConfig, RuleConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `guard` in front of `/`, `/limited`, `/items/{item_id}` and `/other` on a free port.
async fn serve(guard: RateGuard) -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/limited", get(|| async { "limited" }))
        .route("/items/{item_id}", get(|| async { "item" }))
        .route("/other", get(|| async { "other" }))
        .layer(guard.layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A response as the client saw it.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One GET on a connection of its own.
async fn get_on_new_connection(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Time stands still for the limiter: what is counted is the clones, not the clock.
fn frozen() -> ManualClock {
    ManualClock::new(Timestamp::from_secs(1_800_000_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_connections_against_five_per_second_admit_five() {
    let guard = RateGuard::builder()
        .route(RouteConfig::new("/limited").rule("5/second"))
        .clock(frozen())
        .build()
        .await
        .unwrap();
    let addr = serve(guard).await;
    let replies: Vec<Reply> = futures_join(
        (0..50).map(|_| tokio::spawn(async move { get_on_new_connection(addr, "/limited").await })),
    )
    .await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!((admitted, refused), (5, 45));
    for reply in replies.iter().filter(|r| r.status == 429) {
        assert_eq!(
            reply.body,
            r#"{"detail": "Rate limit exceeded: 5 per 1 second"}"#
        );
        // A sliding window full at the start of a second admits again after 1.2 s.
        assert_eq!(reply.header("retry-after"), Some("2"));
    }
    // The route's limit is its own: other routes are not limited.
    assert_eq!(get_on_new_connection(addr, "/other").await.status, 200);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let handles: Vec<_> = handles.collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_route_template_is_one_quota_for_every_url_it_matches() {
    let guard = RateGuard::builder()
        .global("100/minute")
        .route(RouteConfig::new("/items/{item_id}").rule("2/minute"))
        .clock(frozen())
        .build()
        .await
        .unwrap();
    let addr = serve(guard).await;
    let first = get_on_new_connection(addr, "/items/1").await;
    assert_eq!((first.status, first.body.as_str()), (200, "item"));
    assert_eq!(first.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(get_on_new_connection(addr, "/items/2").await.status, 200);
    let third = get_on_new_connection(addr, "/items/3").await;
    assert_eq!(third.status, 429);
    assert_eq!(third.header("content-type"), Some("application/json"));
    let other = get_on_new_connection(addr, "/other").await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-ratelimit-limit"), Some("100"));
    // 100 - 2 admitted item requests - this one: the refused request took no global quota.
    assert_eq!(other.header("x-ratelimit-remaining"), Some("97"));
}

fn on_redis(server: &RedisServer, prefix: &str) -> RateGuardBuilder {
    let (url, prefix) = (server.url(), prefix.to_owned());
    RateGuard::builder().with_config(move |c| {
        c.redis_url = Some(url);
        c.key_prefix = prefix;
        // Generous: the machine is shared with other test processes.
        c.redis_timeout = 2.0;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_on_one_redis_enforce_one_quota_under_the_python_keys() {
    let server = RedisServer::start().unwrap();
    let rules = || {
        on_redis(&server, "rate_guard").global("100/minute").route(
            RouteConfig::new("/items/{item_id}")
                .method("GET")
                .rule("5/minute"),
        )
    };
    let a = serve(rules().build().await.unwrap()).await;
    let b = serve(rules().build().await.unwrap()).await;
    let mut admitted = 0;
    for i in 0..12 {
        let addr = if i % 2 == 0 { a } else { b };
        let reply = get_on_new_connection(addr, &format!("/items/{i}")).await;
        admitted += usize::from(reply.status == 200);
    }
    assert_eq!(admitted, 5);
    // The keys a Python service configured alike reads and writes (see rate-guard-http's
    // route docs: `/items/{item_id}`, GET).
    let mut keys: Vec<String> = server
        .cmd(&["KEYS", "rate_guard:*"])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    let route_id = rate_guard_http::scoped_rule_id(
        &rate_guard_core::Rule::builder("5/minute".parse().unwrap())
            .build()
            .unwrap(),
        "/items/{item_id}",
        Some("GET"),
    );
    assert_eq!(
        keys,
        [
            format!("rate_guard:{route_id}:{{ip:127.0.0.1}}"),
            "rate_guard:sliding_window.100.60s:{ip:127.0.0.1}".to_owned(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_gives_the_degraded_answers() {
    let server = RedisServer::start().unwrap();
    let fail_closed = on_redis(&server, "closed")
        .global("1/minute")
        .with_config(|c| {
            c.fail_open = false;
            c.redis_timeout = 0.2;
        })
        .build()
        .await
        .unwrap();
    let fallback = on_redis(&server, "fallback")
        .global(RuleConfig::new("2/minute").key("global"))
        .with_config(|c| {
            c.in_memory_fallback = true;
            c.redis_timeout = 0.2;
        })
        .build()
        .await
        .unwrap();
    let closed = serve(fail_closed).await;
    let memory = serve(fallback).await;
    assert_eq!(get_on_new_connection(closed, "/").await.status, 200);

    server.pause().unwrap();
    let refused = get_on_new_connection(closed, "/").await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.body,
        r#"{"detail": "Service temporarily unavailable"}"#
    );
    let statuses = [
        get_on_new_connection(memory, "/").await.status,
        get_on_new_connection(memory, "/").await.status,
        get_on_new_connection(memory, "/").await.status,
    ];
    assert_eq!(statuses, [200, 200, 429]);
    server.resume().unwrap();
    server.ping(Duration::from_secs(5)).unwrap();
}

#[tokio::test]
async fn the_metrics_route_shows_requests_per_rule_and_route_template() {
    let guard = RateGuard::builder()
        .route(RouteConfig::new("/metrics-test/{id}").rule("2/minute"))
        .clock(frozen())
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/metrics-test/{id}", get(|| async { "m" }))
        .layer(guard.layer())
        // After the layer: the scrape itself is not limited.
        .route("/metrics", get(rate_guard_tower::metrics::handler));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    for id in 1..=3 {
        get_on_new_connection(addr, &format!("/metrics-test/{id}")).await;
    }
    let scrape = get_on_new_connection(addr, "/metrics").await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.header("content-type"),
        Some(rate_guard_tower::metrics::CONTENT_TYPE)
    );
    let labels =
        r#"{rule="sliding_window.2.60s",route="/metrics-test/{id}",algorithm="sliding_window"}"#;
    assert!(
        scrape
            .body
            .contains(&format!("rate_guard_requests_allowed_total{labels} 2")),
        "{}",
        scrape.body
    );
    assert!(scrape
        .body
        .contains(&format!("rate_guard_requests_blocked_total{labels} 1")));
}
