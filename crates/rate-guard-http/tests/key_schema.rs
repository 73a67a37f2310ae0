//! The cross-language key schema, pinned: a Python service and a Rust service configured alike
//! read and write exactly these keys. Changing one of these strings splits every deployed
//! quota in two; do it only with a version bump of the scoping scheme.

use jsonwebtoken::{encode, get_current_timestamp, Algorithm as JwtAlg, EncodingKey, Header};
use rate_guard_core::{Algorithm, KeyBuilder, Quota, Rule};
use rate_guard_http::{ClientIp, ForwardedHeader, Front, Jwt, KeySpec, Limit, Peer, RequestInfo};
use serde_json::json;

fn rule(limit: &str) -> Rule {
    Rule::builder(limit.parse::<Quota>().unwrap())
        .build()
        .unwrap()
}

fn limit(limit: &str, key: &str) -> Limit {
    Limit::new(rule(limit)).key(key.parse::<KeySpec>().unwrap())
}

#[test]
fn keys_of_every_kind_are_pinned() {
    let secret = "a secret for the key schema test!";
    let front = Front::builder()
        .client_ip(ClientIp::new(["10.0.0.0/8"], ForwardedHeader::XForwardedFor, 64).unwrap())
        .jwt(Jwt::builder().key(secret).build().unwrap())
        .global(limit("100/minute", "ip"))
        .global(limit("1000/hour", "global"))
        .global(limit("50/minute", "user"))
        .global(limit("20/minute", "header:X-Api-Key"))
        .global(limit("30/minute", "jwt:sub"))
        .global(limit("40/minute", "custom"))
        .build()
        .unwrap();
    let route = front
        .route(
            "/items/{item_id}",
            None,
            [Limit::new(rule("5/minute")), limit("7/minute", "user")],
        )
        .unwrap();
    let login = front
        .route(
            "/login",
            Some("post"),
            [Limit::new(
                Rule::builder("3/minute".parse::<Quota>().unwrap())
                    .algorithm(Algorithm::TokenBucket)
                    .burst(2)
                    .name("login")
                    .build()
                    .unwrap(),
            )],
        )
        .unwrap();
    let token = encode(
        &Header::new(JwtAlg::HS256),
        &json!({"sub": "alice", "exp": get_current_timestamp() + 600}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let authorization = format!("Bearer {token}");
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b"X-Forwarded-For", b"6.6.6.6, 203.0.113.9"),
        (b"x-api-key", b" k-123 "),
        (b"authorization", authorization.as_bytes()),
    ];
    let mut request = RequestInfo::new(Peer::parse(Some("10.1.2.3")), &headers[..]);
    request.user = Some("42");
    request.custom = Some("tenant:7");
    let keys = KeyBuilder::default();
    assert_eq!(
        front.plan(&request, Some(&route)).keys(&keys),
        [
            "rate_guard:sliding_window.100.60s:{ip:203.0.113.9}",
            "rate_guard:sliding_window.1000.3600s:{global}",
            "rate_guard:sliding_window.50.60s:{user:42}",
            "rate_guard:sliding_window.20.60s:{header:x-api-key:k-123}",
            "rate_guard:sliding_window.30.60s:{jwt:sub:alice}",
            "rate_guard:sliding_window.40.60s:{custom:tenant:7}",
            "rate_guard:rt.67276a996a53c04d.sliding_window.5.60s:{ip:203.0.113.9}",
            "rate_guard:rt.eab8326f866ebea6.sliding_window.7.60s:{user:42}",
        ]
    );
    assert_eq!(
        front.plan(&request, Some(&login)).keys(&keys)[6],
        "rate_guard:rt.2322e0b40e9d4bb1.login:{ip:203.0.113.9}"
    );

    // Missing identities fall back to the client address; IPv6 is grouped by /64; odd bytes
    // are escaped here, and percent-encoded by the core.
    let headers: Vec<(&[u8], &[u8])> = vec![(b"X-API-KEY", b"a}b\xff")];
    let v6 = RequestInfo::new(Peer::parse(Some("2001:db8:1:2:3:4:5:6")), &headers[..]);
    assert_eq!(
        front.plan(&v6, None).keys(&KeyBuilder::new("app").unwrap()),
        [
            "app:sliding_window.100.60s:{ip:2001:db8:1:2::/64}",
            "app:sliding_window.1000.3600s:{global}",
            "app:sliding_window.50.60s:{ip:2001:db8:1:2::/64}",
            "app:sliding_window.20.60s:{header:x-api-key:a%7Db%5Cxff}",
            "app:sliding_window.30.60s:{ip:2001:db8:1:2::/64}",
            "app:sliding_window.40.60s:{ip:2001:db8:1:2::/64}",
        ]
    );
}

#[test]
fn huge_and_binary_values_make_bounded_keys() {
    let front = Front::builder()
        .global(limit("1/s", "header:X-Key"))
        .build()
        .unwrap();
    let huge = vec![b'k'; 1 << 20];
    let binary: Vec<u8> = (0..=255).collect();
    let keys = KeyBuilder::default();
    let mut seen = Vec::new();
    for value in [&huge[..], &binary[..]] {
        let headers = [(&b"x-key"[..], value)];
        let request = RequestInfo::new(Peer::parse(Some("192.0.2.1")), &headers[..]);
        let key = front.plan(&request, None).keys(&keys).remove(0);
        assert!(
            key.len() <= "rate_guard:sliding_window.1.1s:{}".len() + 65,
            "{key}"
        );
        assert!(key.contains("{#"), "hashed: {key}");
        seen.push(key);
    }
    assert_ne!(seen[0], seen[1]);
}
