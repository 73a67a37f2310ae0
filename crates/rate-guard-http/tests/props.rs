//! Properties over hostile input: forwarding fields never panic and never let a client pick a
//! bucket, identities stay bounded, route scoping is distinct and stable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rate_guard_core::{KeyBuilder, Quota, Rule, MAX_IDENTITY_LEN};
use rate_guard_http::{
    scoped_rule_id, ClientIp, ForwardedHeader, Front, KeySpec, Limit, Peer, RequestInfo,
};

fn ips(header: ForwardedHeader) -> ClientIp {
    ClientIp::new(["10.0.0.0/8", "2001:db8:ffff::/48", "unix"], header, 64).unwrap()
}

fn identity(ips: &ClientIp, peer: Peer<'_>, headers: &[(Vec<u8>, Vec<u8>)]) -> String {
    ips.identity(&ips.resolve(peer, headers))
}

fn headers_of(name: &str, values: &[Vec<u8>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    values
        .iter()
        .map(|v| (name.as_bytes().to_vec(), v.clone()))
        .collect()
}

/// Public addresses, never inside the trusted blocks.
fn untrusted_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (11u8..=223, any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_map(|(a, b, c, d)| IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
        any::<[u16; 8]>().prop_map(|mut s| {
            s[0] = 0x2400 | (s[0] & 0x00ff);
            IpAddr::V6(Ipv6Addr::from(s))
        }),
    ]
}

fn trusted_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[b, c, d]| IpAddr::V4(Ipv4Addr::new(10, b, c, d))),
        any::<[u16; 5]>().prop_map(|t| IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0xffff, t[0], t[1], t[2], t[3], t[4]
        ))),
    ]
}

/// How a proxy writes an address in each field.
fn node(ip: IpAddr, header: ForwardedHeader) -> String {
    match (header, ip) {
        (ForwardedHeader::Forwarded, IpAddr::V4(v4)) => format!("for={v4}"),
        (ForwardedHeader::Forwarded, IpAddr::V6(v6)) => format!("for=\"[{v6}]\""),
        // X-Forwarded-For
        (_, ip) => ip.to_string(),
    }
}

fn expected(ips: &ClientIp, ip: IpAddr) -> String {
    ips.identity(&rate_guard_http::Client::Ip(ip))
}

fn header_kind() -> impl Strategy<Value = ForwardedHeader> {
    prop_oneof![
        Just(ForwardedHeader::XForwardedFor),
        Just(ForwardedHeader::Forwarded)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_fields_never_panic_and_name_an_ip_identity(
        kind in header_kind(),
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..4),
        peer in proptest::option::of("[ -~]{0,40}"),
    ) {
        let ips = ips(kind);
        let headers = headers_of(kind.name(), &values);
        let id = identity(&ips, Peer::parse(peer.as_deref()), &headers);
        prop_assert!(id.starts_with("ip:"));
        let key = KeyBuilder::default().key(&Rule::builder(Quota::per_second(1.try_into().unwrap())).build().unwrap(), &id);
        prop_assert!(key.len() <= 64 + MAX_IDENTITY_LEN);
    }

    #[test]
    fn structured_garbage_never_panics(
        kind in header_kind(),
        parts in proptest::collection::vec(
            prop_oneof![
                Just("for=".to_owned()), Just("\"".to_owned()), Just(",".to_owned()),
                Just(";".to_owned()), Just("\\".to_owned()), Just("[".to_owned()),
                Just("]".to_owned()), Just(":".to_owned()), Just("%".to_owned()),
                Just(" ".to_owned()), "[0-9a-f.:]{0,12}",
            ],
            0..40,
        ),
    ) {
        let ips = ips(kind);
        let headers = headers_of(kind.name(), &[parts.concat().into_bytes()]);
        let id = identity(&ips, Peer::parse(Some("10.0.0.1")), &headers);
        prop_assert!(id.starts_with("ip:"));
    }

    #[test]
    fn untrusted_peers_are_their_own_client_whatever_they_send(
        kind in header_kind(),
        peer in untrusted_ip(),
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..3),
    ) {
        let ips = ips(kind);
        let headers = headers_of(kind.name(), &values);
        prop_assert_eq!(identity(&ips, Peer::Ip(peer), &headers), expected(&ips, peer));
    }

    #[test]
    fn behind_trusted_proxies_a_client_cannot_pick_its_bucket(
        kind in header_kind(),
        forged in proptest::collection::vec(any::<u8>(), 0..120),
        client in untrusted_ip(),
        proxies in proptest::collection::vec(trusted_ip(), 0..4),
        peer in trusted_ip(),
    ) {
        let ips = ips(kind);
        // The client's own field comes first, as it sent it; each proxy appends what it saw.
        let mut chain = vec![node(client, kind)];
        chain.extend(proxies.iter().map(|&p| node(p, kind)));
        let headers = headers_of(kind.name(), &[forged, chain.join(", ").into_bytes()]);
        prop_assert_eq!(identity(&ips, Peer::Ip(peer), &headers), expected(&ips, client));
    }

    #[test]
    fn xff_prepended_garbage_cannot_change_the_client(
        forged in proptest::collection::vec(any::<u8>(), 0..120),
        client in untrusted_ip(),
        proxy in trusted_ip(),
    ) {
        // The client's bytes and the proxy's addition in one field, as nginx writes it.
        let ips = ips(ForwardedHeader::XForwardedFor);
        let mut field = forged;
        field.extend_from_slice(format!(", {client}, {proxy}").as_bytes());
        let headers = headers_of("x-forwarded-for", &[field]);
        prop_assert_eq!(identity(&ips, Peer::Ip(proxy), &headers), expected(&ips, client));
    }

    #[test]
    fn ipv6_clients_of_one_64_share_a_bucket(prefix in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
        let ips = ips(ForwardedHeader::XForwardedFor);
        let addr = |host: u64| IpAddr::V6(Ipv6Addr::from((u128::from(prefix | (1 << 62)) << 64) | u128::from(host)));
        prop_assert_eq!(identity(&ips, Peer::Ip(addr(a)), &[]), identity(&ips, Peer::Ip(addr(b)), &[]));
    }

    #[test]
    fn header_identities_are_bounded_in_keys(value in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let front = Front::builder()
            .global(Limit::new(Rule::builder(Quota::per_second(1.try_into().unwrap())).build().unwrap())
                .key("header:X-Key".parse::<KeySpec>().unwrap()))
            .build()
            .unwrap();
        let headers = vec![(b"x-key".to_vec(), value)];
        let plan = front.plan(&RequestInfo::new(Peer::parse(Some("192.0.2.1")), &headers), None);
        let key = &plan.keys(&KeyBuilder::default())[0];
        prop_assert!(key.len() <= "rate_guard:sliding_window.1.1s:{}".len() + MAX_IDENTITY_LEN, "{}", key);
    }

    #[test]
    fn scoped_ids_are_distinct_valid_and_stable(
        a in "/[ -~]{0,60}", b in "/[ -~]{0,60}",
        ma in proptest::option::of("[A-Z]{3,7}"), mb in proptest::option::of("[A-Z]{3,7}"),
    ) {
        let rule = Rule::builder("5/minute".parse::<Quota>().unwrap()).build().unwrap();
        let front = Front::builder().build().unwrap();
        let route_a = front.route(&a, ma.as_deref(), [Limit::new(rule.clone())]).unwrap();
        let id_a = route_a.limits()[0].rule().id().to_owned();
        prop_assert_eq!(&id_a, &scoped_rule_id(&rule, &a, ma.as_deref()));
        prop_assert_eq!(&id_a, &scoped_rule_id(&rule, &a, ma.as_deref()));
        prop_assert!(id_a.starts_with("rt.") && id_a != rule.id());
        let id_b = scoped_rule_id(&rule, &b, mb.as_deref());
        prop_assert_eq!(id_a == id_b, a == b && ma == mb);
    }
}
