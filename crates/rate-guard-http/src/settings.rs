//! [`Settings`]: every setting of the engine and the HTTP front, with its default, range and
//! documentation, in one serde type that both fronts build from. The Python package's
//! `RateGuardConfig` (pydantic) is its Python face: a test compares the two field by field
//! (name, type, default, range), and the Python model hands its dump to the native module,
//! which deserializes it into this type.
//!
//! ```
//! use rate_guard_http::{HeaderStyle, Settings};
//!
//! let settings: Settings = serde_json::from_str(r#"{
//!     "global_rules": [{"limit": "100/minute"}],
//!     "trusted_proxies": ["10.0.0.0/8"],
//!     "headers": "both"
//! }"#)?;
//! assert_eq!(settings.headers, HeaderStyle::Both);
//! assert!(settings.fail_open); // every field has its default
//! settings.check()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Adding a setting touches three places: the field here (with its doc comment, default, and
//! range in [`rate_guard_core::bounds`] when it is a number), the pydantic field in
//! `python/py_rate_guard/models/config.py`, and `docs/configuration.md`.

mod build;
pub mod env;
mod fields;
mod rule;

use std::fmt;

use rate_guard_core::{bounds, KeyBuilder};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::{ClientIp, ForwardedHeader, HeaderStyle, Identities};

pub use build::Engine;
pub use fields::{FieldClass, FieldInfo, FieldRange};
pub use rule::{RouteConfig, RuleConfig};

use fields::Field;

/// Serde for the enums of the settings, by the names their `FromStr` and `Display` use.
macro_rules! by_name {
    ($($ty:ty => $name:ident),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.$name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            // The value is named unquoted: error messages of settings drop quoted values (a
            // secret's), and a name is never one.
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(|_| {
                    let names: Vec<&str> = <$ty>::ALL.iter().map(|v| v.$name()).collect();
                    serde::de::Error::custom(format_args!(
                        "{} is not one of {}",
                        crate::error::clip(&text, 40),
                        names.join(", ")
                    ))
                })
            }
        }
    )*};
}

by_name!(HeaderStyle => name, ForwardedHeader => name, Identities => as_str);

/// Declares [`Settings`], its defaults and its field list from one list of fields.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// Every field, in order: its name, type class and documentation (its default is
            /// [`Settings::default`]'s, its range [`FieldInfo::range`]).
            #[must_use]
            pub fn fields() -> Vec<FieldInfo> {
                vec![$(
                    FieldInfo::new(
                        stringify!($field),
                        <$ty as Field>::class(),
                        concat!($($doc, "\n"),+),
                    ),
                )*]
            }
        }
    };
}

settings! {
    /// Every setting of a rate guard: rules, store, keys, degradation, responses, logs. Field
    /// names and defaults are those of the Python `RateGuardConfig`, so one TOML file or one
    /// set of `RATE_GUARD_*` variables configures services in both languages. Durations are
    /// seconds. Nothing is checked on deserialization beyond types; [`check`](Self::check)
    /// (and every builder) checks ranges and values and names the field of the first bad one.
    #[derive(Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[non_exhaustive]
    // The flags are the Python configuration's, one field each, so that one file serves both.
    #[allow(clippy::struct_excessive_bools)]
    pub struct Settings {
        /// Off: every request goes through undecided (HTTP fronts).
        enabled: bool = true,
        /// While the store is unavailable (and without fallback): allow (true) or deny.
        fail_open: bool = true,
        /// While Redis is unavailable, decide in process, each limit divided by
        /// `instance_count`.
        in_memory_fallback: bool = false,
        /// Rules applied to every request, each with its own key (per client address by
        /// default).
        global_rules: Vec<RuleConfig> = Vec::new(),
        /// Rules of one route (its path template) each. Rust only: Python declares route
        /// limits with decorators.
        routes: Vec<RouteConfig> = Vec::new(),
        /// `redis://`, `rediss://`, `redis+sentinel://h1:p1,h2:p2/<master>`,
        /// `redis+cluster://h1:p1,h2:p2`; `None` (or empty): the in-process memory store.
        redis_url: Option<String> = None,
        /// The first part of every key (`{prefix}:{rule id}:{identity}`).
        key_prefix: String = "rate_guard".to_owned(),
        /// Addresses or CIDR blocks of the proxies whose forwarding header is believed
        /// (`unix` for a proxy on a Unix socket); the client is the right-most hop that is not
        /// one of them. Empty: the peer address.
        trusted_proxies: Vec<String> = Vec::new(),
        /// The one field trusted proxies forward the client in: `x-forwarded-for` or RFC 7239
        /// `forwarded`. Only one is read: a proxy passes the other on untouched, so reading
        /// both would let a client pick its address.
        forwarded_header: ForwardedHeader = ForwardedHeader::XForwardedFor,
        /// IPv6 clients are counted per network of this prefix length (a /64 is one client).
        ipv6_prefix: u32 = 64,
        /// IPv4 clients are counted per network of this prefix length (32: each address; 24:
        /// a /24 is one client).
        ipv4_prefix: u32 = 32,
        /// Every rule observes only: counts and reports, never denies.
        shadow_mode: bool = false,
        /// Rate limit response headers: `legacy`, `ietf`, `both` or `none`.
        headers: HeaderStyle = HeaderStyle::Legacy,
        /// Paths never limited: `/health` exempts `/health` and `/health/...`.
        exempt_paths: Vec<String> = Vec::new(),
        /// Keys that verify the tokens of `jwt:<claim>` rules: HMAC secrets or PEM public keys.
        jwt_keys: Vec<String> = Vec::new(),
        /// Algorithms a token may be signed with.
        jwt_algorithms: Vec<String> = vec!["HS256".to_owned()],
        /// False reads claims from unverified tokens: only behind a gateway that verified them.
        jwt_verify: bool = true,
        /// The audience (`aud`) tokens must carry.
        jwt_audience: Option<String> = None,
        /// The issuer (`iss`) tokens must carry.
        jwt_issuer: Option<String> = None,
        /// Seconds one Redis call may take, every round trip included.
        redis_timeout: f64 = 0.1,
        /// Seconds a Redis connection may take to open.
        redis_connect_timeout: f64 = 1.0,
        /// Redis connections per process.
        redis_pool_size: usize = 1,
        /// Instances sharing the quota: the in-memory fallback divides limits by it.
        instance_count: u32 = 1,
        /// Denied requests answered locally until their retry time (0 turns it off).
        deny_cache_size: usize = 10_000,
        /// Seconds a denial is answered locally at most, so that a reset made by another
        /// process is seen within it.
        deny_cache_ttl: f64 = 1.0,
        /// Consecutive Redis failures that open the circuit breaker.
        breaker_threshold: u32 = 5,
        /// Seconds an open breaker keeps requests off Redis before a probe.
        breaker_cooldown: f64 = 1.0,
        /// The longest cool-down, which doubles after each failed probe.
        breaker_max_cooldown: f64 = 30.0,
        /// Bound on the memory store's keys (`None`: the core's default).
        memory_max_keys: Option<usize> = None,
        /// For `rediss://`: PEM bundle of the CAs that sign the server's certificate (a private
        /// CA) instead of the built-in web roots.
        redis_tls_ca_file: Option<String> = None,
        /// For `rediss://`: PEM client certificate for mutual TLS (with `redis_tls_key_file`).
        redis_tls_cert_file: Option<String> = None,
        /// For `rediss://`: the PEM private key of `redis_tls_cert_file`.
        redis_tls_key_file: Option<String> = None,
        /// False accepts a server certificate that names another host (still signed by a
        /// trusted CA).
        redis_tls_verify_hostname: bool = true,
        /// Count the Prometheus metrics (process-wide: the last guard built decides).
        metrics_enabled: bool = true,
        /// How client identities appear in denial logs: `hashed` (default), `raw` or `omit`.
        log_identities: Identities = Identities::Hashed,
        /// Key of the identity hash; set it to compare hashes across processes and restarts
        /// (default: random per process).
        log_identity_salt: Option<String> = None,
        /// Denial log records per second and rule at most (0: none); the others are counted.
        log_denials_per_second: f64 = crate::DEFAULT_DENIALS_PER_SECOND,
    }
}

/// The fields that hold secrets: never shown by `Debug`, never quoted by an error.
pub const SECRET_FIELDS: [&str; 2] = ["jwt_keys", "log_identity_salt"];

/// The fields [`Settings::check_field`] checks beyond a range (those with a range in
/// [`bounds`] are checked too); `global_rules` and `routes` are checked rule by rule.
pub const CHECKED_FIELDS: [&str; 6] = [
    "key_prefix",
    "redis_url",
    "trusted_proxies",
    "forwarded_header",
    "exempt_paths",
    "jwt_algorithms",
];

// Every field is shown, through the field list and the serialized values.
#[allow(clippy::missing_fields_in_debug)]
impl fmt::Debug for Settings {
    // Secrets are hidden and a Redis URL's password is redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        let mut out = f.debug_struct("Settings");
        for field in Self::fields() {
            let value = &values[field.name];
            match field.name {
                name if SECRET_FIELDS.contains(&name) => {
                    out.field(name, &format_args!("[hidden]"));
                }
                "redis_url" => {
                    out.field(
                        "redis_url",
                        &self.redis_url.as_deref().map(build::redact_url),
                    );
                }
                name => {
                    out.field(name, &format_args!("{value}"));
                }
            }
        }
        out.finish()
    }
}

impl Settings {
    /// Settings from JSON (the Python model's dump, a file): every field optional, unknown
    /// fields refused by name; a value of the wrong type is named by its field, never shown
    /// (it may be a secret). Nothing else is checked until [`check`](Self::check).
    pub fn from_json(json: &str) -> Result<Self, Error> {
        serde_json::from_str(json)
            .map_err(|e| Error::setting("settings", env::strip_value(&e.to_string())))
    }

    /// Checks every field (ranges from [`bounds`], rate strings, key specs, proxies, the key
    /// prefix, the Redis URL) and the fields that go together; the error names the field of
    /// the first bad value.
    pub fn check(&self) -> Result<(), Error> {
        for field in Self::fields() {
            self.check_field(field.name)?;
        }
        self.check_relations()?;
        build::tls_pair(self)?;
        Ok(())
    }

    /// Checks the fields that go together, each valid on its own: the breaker's cool-downs,
    /// and `jwt:<claim>` global rules with the keys that verify their tokens. What the Python
    /// model's whole-model validator calls.
    pub fn check_relations(&self) -> Result<(), Error> {
        if self.breaker_max_cooldown < self.breaker_cooldown {
            return Err(Error::setting(
                "breaker_max_cooldown",
                "must be at least breaker_cooldown",
            ));
        }
        let unverifiable = self
            .global_rules
            .iter()
            .find(|rule| rule.key.starts_with("jwt:"));
        if let Some(rule) = unverifiable.filter(|_| self.jwt_verify && self.jwt_keys.is_empty()) {
            return Err(Error::setting(
                "jwt_keys",
                format!(
                    "rule key {:?} needs jwt_keys to verify tokens (or jwt_verify=false to read \
                     them unverified)",
                    rule.key
                ),
            ));
        }
        Ok(())
    }

    /// Checks the one field `name` on its own: its range, and what the engine parses of it.
    /// What the Python model's validators call.
    pub fn check_field(&self, name: &str) -> Result<(), Error> {
        let range_error = |e: bounds::RangeError| Error::setting(name, e);
        if let Some(range) = FieldRange::of(name) {
            let values = serde_json::to_value(self).map_err(|e| Error::setting(name, e))?;
            match (&values[name], range) {
                (serde_json::Value::Null, _) => {}
                (value, FieldRange::Int(r)) => {
                    let n = value.as_u64().unwrap_or(u64::MAX);
                    r.check(i128::from(n)).map_err(range_error)?;
                }
                (value, FieldRange::Seconds(r)) => {
                    r.check(value.as_f64().unwrap_or(f64::NAN))
                        .map_err(range_error)?;
                }
                (value, FieldRange::Float(r)) => {
                    r.check(value.as_f64().unwrap_or(f64::NAN))
                        .map_err(range_error)?;
                }
            }
        }
        match name {
            "key_prefix" => {
                KeyBuilder::new(self.key_prefix.clone()).map_err(|e| Error::setting(name, e))?;
            }
            "redis_url" => build::check_redis_url(self)?,
            "trusted_proxies" | "forwarded_header" | "ipv6_prefix" | "ipv4_prefix" => {
                self.client_ip()?;
            }
            "exempt_paths" => {
                for (i, path) in self.exempt_paths.iter().enumerate() {
                    if !path.starts_with('/') {
                        return Err(Error::setting(
                            format!("exempt_paths[{i}]"),
                            "an exempt path starts with '/'",
                        ));
                    }
                }
            }
            "jwt_algorithms" if self.jwt_algorithms.is_empty() => {
                return Err(Error::setting(name, "at least one algorithm is needed"));
            }
            "global_rules" => {
                for (i, rule) in self.global_rules.iter().enumerate() {
                    rule.limits_at(&format!("global_rules[{i}]"))?;
                }
            }
            "routes" => {
                for (i, route) in self.routes.iter().enumerate() {
                    route.limits_at(&format!("routes[{i}]"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Client addresses: trusted proxies, the forwarding header, IPv6 and IPv4 grouping.
    fn client_ip(&self) -> Result<ClientIp, Error> {
        bounds::check_int("ipv6_prefix", i128::from(self.ipv6_prefix))
            .map_err(|e| Error::setting("ipv6_prefix", e))?;
        bounds::check_int("ipv4_prefix", i128::from(self.ipv4_prefix))
            .map_err(|e| Error::setting("ipv4_prefix", e))?;
        ClientIp::new(
            &self.trusted_proxies,
            self.forwarded_header,
            self.ipv6_prefix,
        )
        .map_err(|e| Error::setting("trusted_proxies", e))?
        .with_ipv4_prefix(self.ipv4_prefix)
        .map_err(|e| Error::setting("ipv4_prefix", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_python_packages() {
        let settings: Settings = toml::from_str("").unwrap();
        assert_eq!(settings, Settings::default());
        assert!(settings.enabled && settings.fail_open && settings.jwt_verify);
        assert!(!settings.in_memory_fallback && !settings.shadow_mode);
        assert_eq!(settings.key_prefix, "rate_guard");
        assert_eq!(settings.headers, HeaderStyle::Legacy);
        assert_eq!(settings.ipv6_prefix, 64);
        assert_eq!(settings.jwt_algorithms, ["HS256"]);
        assert!((settings.redis_timeout - 0.1).abs() < f64::EPSILON);
        assert_eq!(settings.deny_cache_size, 10_000);
        assert_eq!(settings.breaker_threshold, 5);
        settings.check().unwrap();
    }

    #[test]
    fn every_field_is_listed_once_in_order() {
        let values = serde_json::to_value(Settings::default()).unwrap();
        let names: Vec<&str> = values
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut listed: Vec<&str> = Settings::fields().iter().map(|f| f.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        listed.sort_unstable();
        assert_eq!(sorted, listed);
    }

    #[test]
    fn enums_use_their_lowercase_names() {
        let settings: Settings = toml::from_str(
            "headers = 'ietf'\nforwarded_header = 'forwarded'\nlog_identities = 'omit'",
        )
        .unwrap();
        assert_eq!(settings.headers, HeaderStyle::Ietf);
        assert_eq!(settings.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(settings.log_identities, Identities::Omit);
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["headers"], "ietf");
        assert_eq!(json["forwarded_header"], "forwarded");
        assert_eq!(json["log_identities"], "omit");
        let err = toml::from_str::<Settings>("headers = 'fancy'").unwrap_err();
        assert!(err.to_string().contains("headers"), "{err}");
    }

    #[test]
    fn json_errors_name_the_field_and_hide_the_value() {
        let err = Settings::from_json(r#"{"jwt_keys": "s3cret"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = Settings::from_json(r#"{"redis_uri": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis_uri"), "{err}");
    }

    #[test]
    fn the_decision_logs_range_is_the_bounds_table() {
        let range = bounds::float_range("log_denials_per_second").unwrap();
        assert!((range.max - crate::MAX_DENIALS_PER_SECOND).abs() < f64::EPSILON);
        assert!(range.min.abs() < f64::EPSILON);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = toml::from_str::<Settings>("redis_uri = 'x'").unwrap_err();
        assert!(err.to_string().contains("redis_uri"), "{err}");
        let err = toml::from_str::<Settings>("global_rules = [{ limt = '1/s' }]").unwrap_err();
        assert!(err.to_string().contains("limt"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let settings = Settings {
            jwt_keys: vec!["s3cret-signing-key".to_owned()],
            log_identity_salt: Some("s3cret-salt".to_owned()),
            redis_url: Some("redis://app:hunter2@redis.internal:6379/0".to_owned()),
            ..Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        // Without the Redis crate the URL is hidden whole.
        let url = if cfg!(feature = "redis") {
            "redis://app:***@redis.internal:6379/0"
        } else {
            "(hidden)"
        };
        assert!(shown.contains(url), "{shown}");
    }

    #[test]
    fn checks_name_field_value_and_range() {
        let bad = |change: fn(&mut Settings)| {
            let mut settings = Settings::default();
            change(&mut settings);
            settings.check().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|s| s.redis_pool_size = 1_000_000_000),
            "invalid setting redis_pool_size: redis_pool_size must be from 1 to 256, not 1000000000"
        );
        assert!(bad(|s| s.redis_timeout = 1e300).contains("0.001 to 60 seconds, not 1e300"));
        assert!(bad(|s| s.log_denials_per_second = -1.0)
            .contains("log_denials_per_second must be from 0 to 1000000, not -1.0"));
        assert!(bad(|s| s.breaker_max_cooldown = 0.5).contains("breaker_max_cooldown"));
        assert!(bad(|s| s.exempt_paths = vec!["health".into()]).contains("exempt_paths[0]"));
        assert!(bad(|s| s.key_prefix = "bad prefix".into()).contains("key_prefix"));
        assert!(
            bad(|s| s.global_rules = vec!["1/fortnight".into()]).contains("global_rules[0].limit")
        );
        assert!(bad(|s| s.jwt_algorithms = Vec::new()).contains("jwt_algorithms"));
        let jwt_rule = |s: &mut Settings| {
            let mut rule = RuleConfig::new("5/minute".to_owned());
            rule.key = "jwt:sub".to_owned();
            s.global_rules = vec![rule];
        };
        let unverifiable = bad(jwt_rule);
        assert!(
            unverifiable.contains(r#"rule key "jwt:sub" needs jwt_keys"#),
            "{unverifiable}"
        );
        let mut settings = Settings::default();
        jwt_rule(&mut settings);
        settings.jwt_verify = false;
        settings.check().unwrap();
        settings.jwt_verify = true;
        settings.jwt_keys = vec!["k".into()];
        settings.check().unwrap();
    }
}
