//! Fuzz-style properties of every parser that reads configuration or client input, over
//! arbitrary bytes: rate strings, key specs, `X-Forwarded-For`, `Forwarded` and bearer tokens.
//! Each must never panic, keep its output bounded whatever the input's size, and reject by
//! value rather than by failure. Inputs reach 64 KiB so that anything quadratic shows up as a
//! suite that does not finish, and outputs are measured against fixed bounds.

use proptest::prelude::*;
use rate_guard_core::{parse_quotas, KeyBuilder, Quota, Rule, MAX_IDENTITY_LEN};
use rate_guard_http::{ClientIp, ForwardedHeader, Front, Jwt, KeySpec, Limit, Peer, RequestInfo};

mod common;
use common::b64url;

/// The longest error message any parser may produce: errors quote the input, cut short.
const MAX_MESSAGE_LEN: usize = 512;

/// Raw bytes, mostly short, sometimes up to 64 KiB.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => proptest::collection::vec(any::<u8>(), 0..65_536),
    ]
}

/// Bytes drawn from the characters the parsers give meaning to, so that the input gets past
/// the first check more often than uniform bytes would.
fn meaningful(alphabet: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(proptest::sample::select(alphabet), 0..200),
        1 => proptest::collection::vec(proptest::sample::select(alphabet), 0..40_000),
    ]
}

fn rule() -> Rule {
    Rule::builder(Quota::per_second(1.try_into().unwrap()))
        .build()
        .unwrap()
}

fn jwt_front(verify: bool) -> Front {
    let jwt = Jwt::builder()
        .key("a secret of some length")
        .algorithm("HS256")
        .verify(verify)
        .build()
        .unwrap();
    Front::builder()
        .jwt(jwt)
        .global(Limit::new(rule()).key("jwt:sub".parse::<KeySpec>().unwrap()))
        .build()
        .unwrap()
}

fn check_identity_bounded(front: &Front, headers: &[(Vec<u8>, Vec<u8>)]) {
    let plan = front.plan(
        &RequestInfo::new(Peer::parse(Some("192.0.2.7")), headers),
        None,
    );
    for key in plan.keys(&KeyBuilder::default()) {
        assert!(
            key.len() <= "rate_guard:sliding_window.1.1s:{}".len() + MAX_IDENTITY_LEN,
            "{key}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rate_strings_from_any_bytes(input in prop_oneof![bytes(), meaningful(b"0123456789/ ;,|persecondminutehourday")]) {
        let text = String::from_utf8_lossy(&input);
        match parse_quotas(&text) {
            Ok(quotas) => {
                prop_assert!(!quotas.is_empty());
                for q in quotas {
                    prop_assert_eq!(q.to_string().parse::<Quota>().unwrap(), q);
                }
            }
            Err(e) => prop_assert!(e.to_string().len() <= MAX_MESSAGE_LEN, "{} bytes", e.to_string().len()),
        }
    }

    #[test]
    fn key_specs_from_any_bytes(input in prop_oneof![bytes(), meaningful(b"ipglobalusercustomheaderjwt:-_X\x00 \xc3\xa9")]) {
        let text = String::from_utf8_lossy(&input);
        match text.parse::<KeySpec>() {
            Ok(spec) => {
                let shown = spec.to_string();
                prop_assert!(shown.len() <= 7 + rate_guard_http::MAX_KEY_NAME_LEN);
                prop_assert_eq!(shown.parse::<KeySpec>().unwrap(), spec);
            }
            Err(e) => prop_assert!(e.to_string().len() <= MAX_MESSAGE_LEN, "{} bytes", e.to_string().len()),
        }
    }

    #[test]
    fn forwarding_fields_from_any_bytes(
        header in prop_oneof![Just(ForwardedHeader::XForwardedFor), Just(ForwardedHeader::Forwarded)],
        values in proptest::collection::vec(
            prop_oneof![bytes(), meaningful(b"0123456789abcdef.:[]\",;= for=by=proto unix_")],
            1..4,
        ),
    ) {
        // Everything trusted, so the parser walks every hop a client could send.
        let ips = ClientIp::new(["0.0.0.0/0", "::/0", "unix"], header, 64).unwrap();
        let headers: Vec<(Vec<u8>, Vec<u8>)> = values
            .into_iter()
            .map(|v| (header.name().as_bytes().to_vec(), v))
            .collect();
        let client = ips.resolve(Peer::parse(Some("10.1.2.3")), &headers);
        let identity = ips.identity(&client);
        prop_assert!(identity.starts_with("ip:"), "{}", identity);
        prop_assert!(identity.len() <= 3 + 39 + 4, "{}", identity);
    }

    #[test]
    fn authorization_fields_from_any_bytes(
        verify in any::<bool>(),
        value in prop_oneof![
            bytes(),
            bytes().prop_map(|b| [b"Bearer ".as_slice(), &b].concat()),
            meaningful(b"Bearer eyJhbGciOiJIUzI1NiJ9.-_="),
        ],
    ) {
        let headers = vec![(b"authorization".to_vec(), value)];
        check_identity_bounded(&jwt_front(verify), &headers);
    }

    #[test]
    fn tokens_with_any_json_inside(
        verify in any::<bool>(),
        header_json in prop_oneof![
            Just(br#"{"alg":"HS256","typ":"JWT"}"#.to_vec()),
            bytes(),
        ],
        payload in prop_oneof![
            bytes(),
            ".{0,300}".prop_map(|sub| format!(r#"{{"sub":{}}}"#, serde_json::Value::String(sub)).into_bytes()),
            "-?[0-9]{1,400}(\\.[0-9]{1,40})?(e[+-]?[0-9]{1,5})?".prop_map(|n| format!(r#"{{"sub":{n}}}"#).into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|n| format!(r#"{{"sub":{}}}"#, "[".repeat(n.len() * 64)).into_bytes()),
        ],
        signature in bytes(),
    ) {
        let token = format!("Bearer {}.{}.{}", b64url(&header_json), b64url(&payload), b64url(&signature));
        let headers = vec![(b"authorization".to_vec(), token.into_bytes())];
        check_identity_bounded(&jwt_front(verify), &headers);
    }
}

#[test]
fn the_base64url_helper_is_right() {
    assert_eq!(b64url(b""), "");
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn an_unverified_numeric_subject_keys_its_own_bucket() {
    // The same path the properties take, with a well-formed token, so that they are known to
    // reach the claim: two subjects, two keys.
    let front = jwt_front(false);
    let key_of = |sub: &str| {
        let token = format!(
            "Bearer {}.{}.{}",
            b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64url(format!(r#"{{"sub":{sub}}}"#).as_bytes()),
            b64url(b"sig")
        );
        let headers = vec![(b"authorization".to_vec(), token.into_bytes())];
        front
            .plan(
                &RequestInfo::new(Peer::parse(Some("192.0.2.7")), &headers),
                None,
            )
            .keys(&KeyBuilder::default())
            .remove(0)
    };
    assert!(
        key_of("\"alice\"").contains("jwt"),
        "{}",
        key_of("\"alice\"")
    );
    assert_ne!(key_of("\"alice\""), key_of("\"bob\""));
}
