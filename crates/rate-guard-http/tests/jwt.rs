//! `jwt:<claim>` identities: only tokens that pass every check name a bucket; everything else
//! falls back to the client address.

use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use rate_guard_core::{Quota, Rule};
use rate_guard_http::{Front, Jwt, KeySpec, Limit, Peer, RequestInfo};
use serde_json::{json, Value};

mod common;
use common::b64url;

const SECRET: &str = "an HMAC secret of at least 32 bytes";
const RSA_PRIVATE: &str = include_str!("keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("keys/rsa_public.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("keys/rsa_other_private.pem");
const EC_PRIVATE: &str = include_str!("keys/ec_private.pem");
const EC_PUBLIC: &str = include_str!("keys/ec_public.pem");

fn front(jwt: Jwt) -> Front {
    let rule = Rule::builder("10/minute".parse::<Quota>().unwrap())
        .build()
        .unwrap();
    Front::builder()
        .global(Limit::new(rule).key("jwt:sub".parse::<KeySpec>().unwrap()))
        .jwt(jwt)
        .build()
        .unwrap()
}

fn identity(front: &Front, authorization: &[u8]) -> String {
    let headers = [(&b"Authorization"[..], authorization)];
    let request = RequestInfo::new(Peer::parse(Some("198.51.100.4")), &headers[..]);
    front.plan(&request, None).items()[0].identity().to_owned()
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn claims(extra: &Value) -> Value {
    let mut claims = json!({"sub": "alice", "exp": get_current_timestamp() + 600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn hmac_front() -> Front {
    front(Jwt::builder().key(SECRET).build().unwrap())
}

const FALLBACK: &str = "ip:198.51.100.4";

#[test]
fn a_valid_token_names_the_bucket() {
    let token = hs256(&claims(&json!({})), SECRET);
    assert_eq!(identity(&hmac_front(), &bearer(&token)), "jwt:sub:alice");
    let numeric = hs256(&claims(&json!({"sub": 42})), SECRET);
    assert_eq!(identity(&hmac_front(), &bearer(&numeric)), "jwt:sub:42");
}

#[test]
fn forged_tokens_fall_back_to_the_client_address() {
    let front = hmac_front();
    // Signed with another secret.
    let forged = hs256(&claims(&json!({})), "another secret, also 32 bytes long");
    assert_eq!(identity(&front, &bearer(&forged)), FALLBACK);
    // A valid token whose payload was swapped.
    let valid = hs256(&claims(&json!({})), SECRET);
    let parts: Vec<&str> = valid.split('.').collect();
    let swapped_payload = b64url(claims(&json!({"sub": "mallory"})).to_string().as_bytes());
    let tampered = format!("{}.{swapped_payload}.{}", parts[0], parts[2]);
    assert_eq!(identity(&front, &bearer(&tampered)), FALLBACK);
    // No signature at all.
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(identity(&front, &bearer(&unsigned)), FALLBACK);
}

#[test]
fn the_none_algorithm_is_refused() {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(claims(&json!({})).to_string().as_bytes());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_eq!(identity(&hmac_front(), &bearer(&token)), FALLBACK);
        // Not even unverified reading takes `none`: it is no algorithm jsonwebtoken knows.
        let unverified = front(Jwt::builder().verify(false).build().unwrap());
        assert_eq!(identity(&unverified, &bearer(&token)), FALLBACK);
    }
}

#[test]
fn expired_and_premature_tokens_are_refused() {
    let now = get_current_timestamp();
    let expired = hs256(&json!({"sub": "alice", "exp": now - 3600}), SECRET);
    assert_eq!(identity(&hmac_front(), &bearer(&expired)), FALLBACK);
    let early = hs256(&claims(&json!({"nbf": now + 3600})), SECRET);
    assert_eq!(identity(&hmac_front(), &bearer(&early)), FALLBACK);
    // `exp` is required when verifying.
    let forever = hs256(&json!({"sub": "alice"}), SECRET);
    assert_eq!(identity(&hmac_front(), &bearer(&forever)), FALLBACK);
    // Within the 60 s leeway.
    let just = hs256(&json!({"sub": "alice", "exp": now - 10}), SECRET);
    assert_eq!(identity(&hmac_front(), &bearer(&just)), "jwt:sub:alice");
}

#[test]
fn public_keys_verify_their_own_algorithms_only() {
    let rsa = front(
        Jwt::builder()
            .key(RSA_PUBLIC)
            .key(EC_PUBLIC)
            .algorithm("RS256")
            .algorithm("ES256")
            .build()
            .unwrap(),
    );
    let signed =
        |alg, key: EncodingKey| encode(&Header::new(alg), &claims(&json!({})), &key).unwrap();
    let rs = signed(
        Algorithm::RS256,
        EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    );
    assert_eq!(identity(&rsa, &bearer(&rs)), "jwt:sub:alice");
    let es = signed(
        Algorithm::ES256,
        EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    );
    assert_eq!(identity(&rsa, &bearer(&es)), "jwt:sub:alice");
    // The wrong key pair.
    let other = signed(
        Algorithm::RS256,
        EncodingKey::from_rsa_pem(RSA_OTHER_PRIVATE.as_bytes()).unwrap(),
    );
    assert_eq!(identity(&rsa, &bearer(&other)), FALLBACK);
    // An algorithm that is not allowed, though the key would verify it.
    let rs384 = signed(
        Algorithm::RS384,
        EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    );
    assert_eq!(identity(&rsa, &bearer(&rs384)), FALLBACK);
    // Key confusion: HS256 "signed" with the public key as the HMAC secret.
    let confused = hs256(&claims(&json!({})), RSA_PUBLIC);
    let both = front(
        Jwt::builder()
            .key(RSA_PUBLIC)
            .algorithm("RS256")
            .algorithm("HS256")
            .key(SECRET)
            .build()
            .unwrap(),
    );
    assert_eq!(identity(&both, &bearer(&confused)), FALLBACK);
}

#[test]
fn audience_and_issuer_are_required_when_configured() {
    let strict = front(
        Jwt::builder()
            .key(SECRET)
            .audience("api")
            .issuer("https://issuer.example")
            .build()
            .unwrap(),
    );
    let good = claims(&json!({"aud": "api", "iss": "https://issuer.example"}));
    assert_eq!(
        identity(&strict, &bearer(&hs256(&good, SECRET))),
        "jwt:sub:alice"
    );
    for bad in [
        json!({"aud": "other", "iss": "https://issuer.example"}),
        json!({"aud": "api", "iss": "https://evil.example"}),
        json!({"iss": "https://issuer.example"}),
        json!({"aud": "api"}),
    ] {
        let token = hs256(&claims(&bad), SECRET);
        assert_eq!(identity(&strict, &bearer(&token)), FALLBACK, "{bad}");
    }
}

#[test]
fn unverified_reading_must_be_asked_for_and_still_checks_times() {
    let unverified = front(Jwt::builder().verify(false).build().unwrap());
    let any_signature = hs256(&claims(&json!({})), "whoever signed this, we do not check");
    assert_eq!(
        identity(&unverified, &bearer(&any_signature)),
        "jwt:sub:alice"
    );
    let expired = hs256(
        &json!({"sub": "alice", "exp": get_current_timestamp() - 3600}),
        "k",
    );
    assert_eq!(identity(&unverified, &bearer(&expired)), FALLBACK);
    // A jwt: key spec with no way to check tokens is a configuration error.
    let rule = Rule::builder("1/s".parse::<Quota>().unwrap())
        .build()
        .unwrap();
    let err = Front::builder()
        .global(Limit::new(rule).key(KeySpec::Jwt("sub".into())))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("jwt:sub"), "{err}");
}

#[test]
fn missing_odd_and_huge_tokens_fall_back() {
    let front = hmac_front();
    let token = hs256(&claims(&json!({})), SECRET);
    let huge = format!("Bearer {}", "A".repeat(1 << 20));
    for authorization in [
        &b""[..],
        b"Bearer",
        b"Basic YWxpY2U6cGFzcw==",
        b"Bearer a.b.c",
        b"Bearer \xff\xfe.\x00.\x01",
        huge.as_bytes(),
        format!("Token {token}").as_bytes(),
    ] {
        assert_eq!(identity(&front, authorization), FALLBACK);
    }
    let no_sub = hs256(
        &json!({"exp": get_current_timestamp() + 60, "uid": "x"}),
        SECRET,
    );
    assert_eq!(identity(&front, &bearer(&no_sub)), FALLBACK);
    let object_sub = hs256(&claims(&json!({"sub": {"id": 1}})), SECRET);
    assert_eq!(identity(&front, &bearer(&object_sub)), FALLBACK);
}

#[test]
fn numeric_subjects_keep_their_exact_value() {
    let front = hmac_front();
    // Integers past 2^53 (and past u64) as the token writes them: never rounded into one.
    let token = |sub: &str| {
        let text = format!(r#"{{"sub":{sub},"exp":{}}}"#, get_current_timestamp() + 600);
        let raw = serde_json::value::RawValue::from_string(text).unwrap();
        encode(
            &Header::new(Algorithm::HS256),
            &raw,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let ids: Vec<String> = [
        "18446744073709551616",
        "18446744073709551617",
        "9007199254740993",
        "9007199254740992",
    ]
    .iter()
    .map(|sub| identity(&front, &bearer(&token(sub))))
    .collect();
    assert_eq!(ids[0], "jwt:sub:18446744073709551616");
    assert_eq!(ids[1], "jwt:sub:18446744073709551617");
    assert_eq!(ids[2], "jwt:sub:9007199254740993");
    assert_eq!(ids[3], "jwt:sub:9007199254740992");
}
