//! [`Jwt`]: claims of a bearer token, for `jwt:<claim>` key specs.
//!
//! - The token is read from `Authorization: Bearer <token>` (the first `Authorization` field,
//!   scheme case-insensitive) and ignored when longer than [`MAX_TOKEN_LEN`] bytes, so a
//!   megabyte header costs a length check, not a base64 and JSON decode.
//! - By default the signature is verified with the configured keys (HMAC secrets, or PEM
//!   RSA / EC / Ed25519 public keys) under the allowed algorithms only: a token whose header
//!   names another algorithm (`none`, or `HS256` when only `RS256` is allowed) is rejected, and a
//!   key is only ever used for its own family, so a public key is never taken as an HMAC secret.
//!   `exp` is required and checked, `nbf` checked when present, both with 60 s of leeway; the
//!   audience and issuer are required and checked when configured.
//! - Reading claims without verification (`verify = false`, for services behind a gateway that
//!   has verified the token already) must be asked for; `exp`, `nbf`, audience and issuer are
//!   still checked when present.
//! - Any failure yields `None`, and the caller counts the request by client address.
//! - Claims are kept as the JSON text the token carries, so that a numeric claim keeps its
//!   exact value in keys: `2^64` and `2^64 + 1` are two identities, not one rounded double.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use jsonwebtoken::{decode, decode_header, Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::Error;
use crate::headers::{trim_ows, Headers};

/// The longest token read; longer ones are ignored (real tokens are well under 8 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 60;

/// The claims of a token that passed every check: each claim's JSON text, as the token
/// carries it (see [`claim_value`]).
pub type Claims = BTreeMap<String, Box<RawValue>>;

/// How bearer tokens are checked; see the module docs. Built once, shared by every request.
///
/// ```
/// use rate_guard_http::Jwt;
///
/// let jwt = Jwt::builder().key("a secret of 32 bytes or more....").algorithm("HS256").build()?;
/// let headers = [(&b"authorization"[..], &b"Bearer not.a.token"[..])];
/// assert!(jwt.claims(&headers[..]).is_none());
/// assert!(Jwt::builder().algorithm("none").build().is_err());
/// # Ok::<(), rate_guard_http::Error>(())
/// ```
#[derive(Clone)]
pub struct Jwt {
    keys: Vec<DecodingKey>,
    algorithms: Vec<Algorithm>,
    /// The checks of each allowed algorithm, built once.
    validations: Vec<Validation>,
    verify: bool,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for Jwt {
    // Keys are secrets: only their number is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("keys", &self.keys.len())
            .field("algorithms", &self.algorithms)
            .field("verify", &self.verify)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Jwt`]; see [`Jwt::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct JwtBuilder {
    keys: Vec<String>,
    algorithms: Vec<String>,
    unverified: bool,
    audience: Option<String>,
    issuer: Option<String>,
}

impl JwtBuilder {
    /// Adds a key: a PEM public key (`-----BEGIN PUBLIC KEY-----`...) or an HMAC secret.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Allows an algorithm (`HS256`, `RS256`, `ES256`, `EdDSA`, ...). Default: `HS256` only.
    pub fn algorithm(mut self, algorithm: impl Into<String>) -> Self {
        self.algorithms.push(algorithm.into());
        self
    }

    /// Whether signatures are verified (default true). `false` reads claims unverified: only
    /// behind a gateway that verifies tokens itself.
    pub fn verify(mut self, verify: bool) -> Self {
        self.unverified = !verify;
        self
    }

    /// Requires this audience (`aud`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Requires this issuer (`iss`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The checker, or what is wrong with its settings. Errors name keys by position, never by
    /// content: they are secrets.
    pub fn build(self) -> Result<Jwt, Error> {
        let names = if self.algorithms.is_empty() {
            vec!["HS256".to_owned()]
        } else {
            self.algorithms
        };
        let mut algorithms = Vec::with_capacity(names.len());
        for name in &names {
            let alg = Algorithm::from_str(name.trim()).map_err(|_| {
                Error::Jwt(format!(
                    "unknown algorithm {:?}: expected HS256, HS384, HS512, RS256, RS384, RS512, \
                     PS256, PS384, PS512, ES256, ES384 or EdDSA",
                    crate::error::clip(name, 32)
                ))
            })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        let allowed = |family: AlgorithmFamily| algorithms.iter().any(|a| a.family() == family);
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, key) in self.keys.iter().enumerate() {
            let n = i + 1;
            let key = if key.trim_start().starts_with("-----BEGIN") {
                let pem = key.trim().as_bytes();
                DecodingKey::from_rsa_pem(pem)
                    .or_else(|_| DecodingKey::from_ec_pem(pem))
                    .or_else(|_| DecodingKey::from_ed_pem(pem))
                    .map_err(|_| {
                        Error::Jwt(format!(
                            "JWT key {n} is PEM but not an RSA, EC or Ed25519 public key"
                        ))
                    })?
            } else if key.is_empty() {
                return Err(Error::Jwt(format!("JWT key {n} is an empty HMAC secret")));
            } else {
                DecodingKey::from_secret(key.as_bytes())
            };
            if !allowed(key.family()) {
                return Err(Error::Jwt(format!(
                    "JWT key {n} is a {:?} key but no algorithm of that family is allowed \
                     (algorithms: {})",
                    key.family(),
                    names.join(", ")
                )));
            }
            keys.push(key);
        }
        if !self.unverified && keys.is_empty() {
            return Err(Error::Jwt(
                "verifying tokens needs at least one key (or verify=false to read them \
                 unverified)"
                    .to_owned(),
            ));
        }
        let validations = algorithms
            .iter()
            .map(|&alg| validation(alg, self.audience.as_deref(), self.issuer.as_deref()))
            .collect();
        Ok(Jwt {
            keys,
            algorithms,
            validations,
            verify: !self.unverified,
            audience: self.audience,
            issuer: self.issuer,
        })
    }
}

impl Jwt {
    /// Starts a checker: HS256, verified, no audience or issuer required.
    pub fn builder() -> JwtBuilder {
        JwtBuilder::default()
    }

    /// Whether signatures are verified.
    #[must_use]
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// The claims of the request's bearer token, when it passes every check.
    pub fn claims<H: Headers + ?Sized>(&self, headers: &H) -> Option<Claims> {
        let token = bearer_token(headers.first_value("authorization")?)?;
        // The token is hostile input handed to a third-party decoder: a panic there must not
        // cross into the application (or through FFI).
        catch_unwind(AssertUnwindSafe(|| self.check(token)))
            .ok()
            .flatten()
    }

    fn check(&self, token: &str) -> Option<Claims> {
        let header = decode_header(token).ok()?;
        let allowed = self.algorithms.iter().position(|&a| a == header.alg)?;
        if !self.verify {
            let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
                .ok()?
                .claims;
            return self.unverified_checks(&claims).then_some(claims);
        }
        let validation = &self.validations[allowed];
        let family = header.alg.family();
        self.keys
            .iter()
            .filter(|key| key.family() == family)
            .find_map(|key| decode::<Claims>(token, key, validation).ok())
            .map(|data| data.claims)
    }

    /// `exp`, `nbf`, `aud` and `iss` of an unverified token, checked when present.
    fn unverified_checks(&self, claims: &Claims) -> bool {
        let now = jsonwebtoken::get_current_timestamp();
        let value = |name: &str| {
            claims
                .get(name)
                .map(|raw| serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null))
        };
        let number = |name: &str| value(name).map(|v| v.as_u64());
        let exp_ok = match number("exp") {
            None => true,
            Some(Some(exp)) => exp.saturating_add(LEEWAY_SECS) >= now,
            Some(None) => false,
        };
        let nbf_ok = match number("nbf") {
            None => true,
            Some(Some(nbf)) => nbf <= now.saturating_add(LEEWAY_SECS),
            Some(None) => false,
        };
        let aud_ok = self
            .audience
            .as_deref()
            .is_none_or(|want| match value("aud") {
                Some(Value::String(aud)) => aud == want,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(want)),
                _ => false,
            });
        let iss_ok = self
            .issuer
            .as_deref()
            .is_none_or(|want| value("iss").as_ref().and_then(Value::as_str) == Some(want));
        exp_ok && nbf_ok && aud_ok && iss_ok
    }
}

/// The checks of a verified token signed with `alg`; see the module docs.
fn validation(alg: Algorithm, audience: Option<&str>, issuer: Option<&str>) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_aud = audience.is_some();
    let mut required = vec!["exp"];
    if let Some(aud) = audience {
        validation.set_audience(&[aud]);
        required.push("aud");
    }
    if let Some(iss) = issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// A claim as an identity value: strings as they are (empty ones are missing), numbers in
/// JSON form; anything else (objects, arrays, booleans, null) is missing.
///
/// An integer is written exactly as the token writes it, however large (`-0` as `0`): two
/// different numbers are never one identity. A number with a fraction or an exponent is
/// written as its double prints (`1.5`, `100.0` for `1e2`).
#[must_use]
pub fn claim_value(claims: &Claims, claim: &str) -> Option<String> {
    let raw = claims.get(claim)?.get();
    if is_integer(raw) {
        return Some(if raw == "-0" { "0" } else { raw }.to_owned());
    }
    match serde_json::from_str::<Value>(raw).ok()? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `raw` (JSON text the parser accepted) is an integer literal: `-?[0-9]+`.
fn is_integer(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The token of `Bearer <token>`, when it is one and not too long.
fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = trim_ows(value);
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bearer") || value[6] != b' ' {
        return None;
    }
    let token = trim_ows(&value[7..]);
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return None;
    }
    std::str::from_utf8(token).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_found_and_bounded() {
        assert_eq!(bearer_token(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token(b"  bearer   abc  "), Some("abc"));
        assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Bearer \xff\xfe"), None);
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(bearer_token(long.as_bytes()), None);
    }

    #[test]
    fn settings_are_checked() {
        let err = |b: JwtBuilder| b.build().unwrap_err().to_string();
        assert!(err(Jwt::builder()).contains("at least one key"));
        assert!(err(Jwt::builder().key("s").algorithm("none")).contains("\"none\""));
        assert!(err(Jwt::builder().key("")).contains("key 1 is an empty"));
        assert!(err(Jwt::builder().key("s").algorithm("RS256")).contains("key 1 is a Hmac key"));
        let bad_pem = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----";
        let message = err(Jwt::builder().key("s").key(bad_pem).algorithm("RS256"));
        assert!(message.contains("key 1"), "{message}");
        let message = err(Jwt::builder().key(bad_pem).algorithm("RS256"));
        assert!(
            message.contains("key 1 is PEM") && !message.contains("nope"),
            "{message}"
        );
        assert!(Jwt::builder().verify(false).build().is_ok());
    }

    #[test]
    fn integer_claims_keep_their_exact_value() {
        // 2^64 and 2^64 + 1 are one double: read as doubles, they would share a bucket.
        let two_64: Claims = serde_json::from_str(r#"{"sub":18446744073709551616}"#).unwrap();
        let next: Claims = serde_json::from_str(r#"{"sub":18446744073709551617}"#).unwrap();
        let huge: Claims =
            serde_json::from_str(&format!(r#"{{"sub":-{}}}"#, "9".repeat(40))).unwrap();
        assert_eq!(
            claim_value(&two_64, "sub").as_deref(),
            Some("18446744073709551616")
        );
        assert_eq!(
            claim_value(&next, "sub").as_deref(),
            Some("18446744073709551617")
        );
        assert_eq!(
            claim_value(&huge, "sub"),
            Some(format!("-{}", "9".repeat(40)))
        );
    }

    #[test]
    fn claim_values_are_strings_or_numbers() {
        let claims: Claims = serde_json::from_str(
            r#"{"sub":"alice","uid":42,"f":1.5,"admin":true,"o":{},"e":"","n":null,
                "esc":"a\u0062","z":-0,"x":1e2}"#,
        )
        .unwrap();
        assert_eq!(claim_value(&claims, "sub").as_deref(), Some("alice"));
        assert_eq!(claim_value(&claims, "uid").as_deref(), Some("42"));
        assert_eq!(claim_value(&claims, "f").as_deref(), Some("1.5"));
        assert_eq!(claim_value(&claims, "esc").as_deref(), Some("ab"));
        assert_eq!(claim_value(&claims, "z").as_deref(), Some("0"));
        assert_eq!(claim_value(&claims, "x").as_deref(), Some("100.0"));
        for missing in ["admin", "o", "e", "n", "absent"] {
            assert_eq!(claim_value(&claims, missing), None, "{missing}");
        }
    }
}
