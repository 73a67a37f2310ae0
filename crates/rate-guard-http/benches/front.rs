//! The HTTP front's own cost per request, on the memory store with a manual clock (the store's
//! cost is measured by rate-guard-core's benches): resolving keys (`plan`) for a typical request
//! behind a proxy, a request with an HS256 bearer token, and `plan` + `decide` of two global
//! rules and a route rule, next to the same store call made directly on the limiter.
//!
//! Limits are far above what a run consumes (the clock stands still), so every request is
//! admitted by the store rather than answered by the deny cache.
//!
//! `cargo bench -p rate-guard-http --bench front`.

use std::time::Duration;

use criterion::{criterion_main, Criterion};
use jsonwebtoken::{encode, get_current_timestamp, Algorithm as JwtAlg, EncodingKey, Header};
use rate_guard_core::{Action, Hit, Limiter, ManualClock, Quota, Rule, Timestamp};
use rate_guard_http::{ClientIp, ForwardedHeader, Front, Jwt, KeySpec, Limit, Peer, RequestInfo};

const SECRET: &str = "a secret for the front benchmark!";

fn rule(limit: &str) -> Rule {
    Rule::builder(limit.parse::<Quota>().unwrap())
        .build()
        .unwrap()
}

fn front(c: &mut Criterion) {
    let front = Front::builder()
        .client_ip(ClientIp::new(["10.0.0.0/8"], ForwardedHeader::XForwardedFor, 64).unwrap())
        .jwt(Jwt::builder().key(SECRET).build().unwrap())
        .global(Limit::new(rule("4000000000/day")))
        .global(Limit::new(rule("4000000000/hour")).key(KeySpec::Global))
        .build()
        .unwrap();
    let route = front
        .route(
            "/items/{item_id}",
            Some("GET"),
            [Limit::new(rule("4000000000/minute"))],
        )
        .unwrap();
    let token = encode(
        &Header::new(JwtAlg::HS256),
        &serde_json::json!({"sub": "alice", "exp": get_current_timestamp() + 3600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let authorization = format!("Bearer {token}");
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b"host", b"api.example"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"203.0.113.9, 10.0.0.7"),
        (b"authorization", authorization.as_bytes()),
    ];
    let request = RequestInfo::new(Peer::parse(Some("10.0.0.1")), &headers[..]);

    let mut group = c.benchmark_group("front");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("plan/ip+global+route", |b| {
        b.iter(|| front.plan(&request, Some(&route)));
    });
    let jwt_front = Front::builder()
        .jwt(Jwt::builder().key(SECRET).build().unwrap())
        .global(Limit::new(rule("4000000000/day")).key("jwt:sub".parse().unwrap()))
        .build()
        .unwrap();
    group.bench_function("plan/jwt:sub (HS256 verify)", |b| {
        b.iter(|| jwt_front.plan(&request, None));
    });
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let limiter = Limiter::builder()
        .rule(rule("1/s"))
        .clock(clock)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    group.bench_function("plan+decide/3 rules, memory store", |b| {
        b.iter(|| {
            let plan = front.plan(&request, Some(&route));
            runtime.block_on(front.decide(&limiter, &plan))
        });
    });
    let planned = front.plan(&request, Some(&route));
    group.bench_function("decide/3 rules, memory store", |b| {
        b.iter(|| runtime.block_on(front.decide(&limiter, &planned)));
    });
    // The same store call without the front, to tell the front's share.
    let plan = front.plan(&request, Some(&route));
    let items = plan.items();
    group.bench_function("limiter.decide alone/3 rules, memory store", |b| {
        b.iter(|| {
            let hits: Vec<Hit<'_>> = items
                .iter()
                .map(|i| Hit::new(i.rule(), i.identity(), i.cost()).counted_in(i.counters()))
                .collect();
            runtime.block_on(limiter.decide(&hits, Action::Hit))
        });
    });
    group.finish();
}

// criterion's macros generate undocumented items.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::front);
}
criterion_main!(harness::benches);
