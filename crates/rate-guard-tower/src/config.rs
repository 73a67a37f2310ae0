//! [`RateGuardConfig`]: the guard's settings as data, with the field names and defaults of the
//! Python package's `RateGuardConfig`, so that one TOML file or one set of `RATE_GUARD_*`
//! environment variables configures a Rust service and a Python service alike.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Everything a [`RateGuard`](crate::RateGuard) is built from.
///
/// ```
/// use rate_guard_tower::RateGuardConfig;
///
/// let config: RateGuardConfig = toml::from_str(r#"
///     redis_url = "redis://127.0.0.1:6379/0"
///     trusted_proxies = ["10.0.0.0/8"]
///     global_rules = [{ limit = "100/minute" }]
///
///     [[routes]]
///     path = "/sensitive-data"
///     method = "GET"
///     rules = [{ limit = "5/minute" }, { limit = "50/day", key = "header:X-Api-Key" }]
/// "#)?;
/// assert_eq!(config.global_rules[0].key, "ip");
/// assert_eq!(config.routes[0].rules[1].limit, "50/day");
/// assert!(config.fail_open); // the defaults are the Python package's
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Fields and defaults are those of the Python `RateGuardConfig`, plus [`routes`](Self::routes)
/// (Python declares route limits with decorators) and [`forwarded_header`](Self::forwarded_header).
/// Durations are seconds, as in Python and its environment variables. Nothing is checked until
/// [`RateGuardBuilder::build`](crate::RateGuardBuilder::build), which parses every rate string
/// and key spec once and names the field of the first bad value.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
// The flags are the Python configuration's, one field each, so that one file serves both.
#[allow(clippy::struct_excessive_bools)]
pub struct RateGuardConfig {
    /// Off: every request goes through undecided.
    pub enabled: bool,
    /// While the store is unavailable (and without fallback): allow (true) or deny with 503.
    pub fail_open: bool,
    /// While Redis is unavailable, decide in process, each limit divided by `instance_count`.
    pub in_memory_fallback: bool,
    /// Rules applied to every request, each with its own key (per client address by default).
    pub global_rules: Vec<RuleConfig>,
    /// Rules of one route (its path template) each.
    pub routes: Vec<RouteConfig>,
    /// `redis://`, `rediss://`, `redis+sentinel://h1:p1,h2:p2/<master>`,
    /// `redis+cluster://h1:p1,h2:p2`; `None` (or empty): the in-process memory store.
    pub redis_url: Option<String>,
    /// The first part of every key (`{prefix}:{rule id}:{identity}`).
    pub key_prefix: String,
    /// Addresses or CIDR blocks of the proxies whose forwarding header is believed (`unix`
    /// for a proxy on a Unix socket); the client is the right-most hop that is not one of them.
    pub trusted_proxies: Vec<String>,
    /// The one forwarding field trusted proxies write: `x-forwarded-for` or `forwarded`.
    pub forwarded_header: String,
    /// IPv6 clients are counted per network of this prefix length (a /64 is one client).
    pub ipv6_prefix: u32,
    /// Every rule observes only: counts and reports, never denies.
    pub shadow_mode: bool,
    /// Rate limit response headers: `legacy`, `ietf`, `both` or `none`.
    pub headers: String,
    /// Paths never limited: `/health` exempts `/health` and `/health/...`.
    pub exempt_paths: Vec<String>,
    /// Keys that verify the tokens of `jwt:<claim>` rules: HMAC secrets or PEM public keys.
    pub jwt_keys: Vec<String>,
    /// Algorithms a token may be signed with.
    pub jwt_algorithms: Vec<String>,
    /// False reads claims from unverified tokens: only behind a gateway that verified them.
    pub jwt_verify: bool,
    /// The audience (`aud`) tokens must carry.
    pub jwt_audience: Option<String>,
    /// The issuer (`iss`) tokens must carry.
    pub jwt_issuer: Option<String>,
    /// Seconds one Redis call may take, every round trip included.
    pub redis_timeout: f64,
    /// Seconds a Redis connection may take to open.
    pub redis_connect_timeout: f64,
    /// Redis connections per process.
    pub redis_pool_size: usize,
    /// Instances sharing the quota: the in-memory fallback divides limits by it.
    pub instance_count: u32,
    /// Denied requests answered locally until their retry time (0 turns it off).
    pub deny_cache_size: usize,
    /// Seconds a denial is answered locally at most.
    pub deny_cache_ttl: f64,
    /// Consecutive Redis failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// Seconds an open breaker keeps requests off Redis before a probe.
    pub breaker_cooldown: f64,
    /// The longest cool-down, which doubles after each failed probe.
    pub breaker_max_cooldown: f64,
    /// Bound on the memory store's keys (`None`: the core's default).
    pub memory_max_keys: Option<usize>,
    /// For `rediss://`: PEM bundle of the CAs that sign the server's certificate (a private
    /// CA) instead of the built-in web roots.
    pub redis_tls_ca_file: Option<String>,
    /// For `rediss://`: PEM client certificate for mutual TLS (with `redis_tls_key_file`).
    pub redis_tls_cert_file: Option<String>,
    /// For `rediss://`: the PEM private key of `redis_tls_cert_file`.
    pub redis_tls_key_file: Option<String>,
    /// False accepts a server certificate that names another host (still signed by a trusted
    /// CA).
    pub redis_tls_verify_hostname: bool,
    /// Count the Prometheus metrics ([`crate::metrics`]); process-wide, the last guard built
    /// decides.
    pub metrics_enabled: bool,
    /// How client identities appear in denial logs: `hashed` (default), `raw` or `omit`.
    pub log_identities: String,
    /// Key of the identity hash: set it to compare hashes across processes and restarts
    /// (`None`: random per process).
    pub log_identity_salt: Option<String>,
    /// Denial log events per second and rule at most, from 0 (none) to 1,000,000; the others
    /// are counted.
    pub log_denials_per_second: f64,
}

impl Default for RateGuardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            fail_open: true,
            in_memory_fallback: false,
            global_rules: Vec::new(),
            routes: Vec::new(),
            redis_url: None,
            key_prefix: "rate_guard".to_owned(),
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".to_owned(),
            ipv6_prefix: 64,
            shadow_mode: false,
            headers: "legacy".to_owned(),
            exempt_paths: Vec::new(),
            jwt_keys: Vec::new(),
            jwt_algorithms: vec!["HS256".to_owned()],
            jwt_verify: true,
            jwt_audience: None,
            jwt_issuer: None,
            redis_timeout: 0.1,
            redis_connect_timeout: 1.0,
            redis_pool_size: 1,
            instance_count: 1,
            deny_cache_size: 10_000,
            deny_cache_ttl: 1.0,
            breaker_threshold: 5,
            breaker_cooldown: 1.0,
            breaker_max_cooldown: 30.0,
            memory_max_keys: None,
            redis_tls_ca_file: None,
            redis_tls_cert_file: None,
            redis_tls_key_file: None,
            redis_tls_verify_hostname: true,
            metrics_enabled: true,
            log_identities: "hashed".to_owned(),
            log_identity_salt: None,
            log_denials_per_second: rate_guard_http::DEFAULT_DENIALS_PER_SECOND,
        }
    }
}

impl fmt::Debug for RateGuardConfig {
    // JWT keys are secrets and a Redis URL may hold a password: neither is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateGuardConfig")
            .field("enabled", &self.enabled)
            .field("fail_open", &self.fail_open)
            .field("in_memory_fallback", &self.in_memory_fallback)
            .field("global_rules", &self.global_rules)
            .field("routes", &self.routes)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("shadow_mode", &self.shadow_mode)
            .field("headers", &self.headers)
            .field("exempt_paths", &self.exempt_paths)
            .field(
                "jwt_keys",
                &format_args!("[{} hidden]", self.jwt_keys.len()),
            )
            .field("jwt_algorithms", &self.jwt_algorithms)
            .field("jwt_verify", &self.jwt_verify)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("redis_timeout", &self.redis_timeout)
            .field("redis_connect_timeout", &self.redis_connect_timeout)
            .field("redis_pool_size", &self.redis_pool_size)
            .field("instance_count", &self.instance_count)
            .field("deny_cache_size", &self.deny_cache_size)
            .field("deny_cache_ttl", &self.deny_cache_ttl)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("breaker_max_cooldown", &self.breaker_max_cooldown)
            .field("memory_max_keys", &self.memory_max_keys)
            .field("redis_tls_ca_file", &self.redis_tls_ca_file)
            .field("redis_tls_cert_file", &self.redis_tls_cert_file)
            .field("redis_tls_key_file", &self.redis_tls_key_file)
            .field("redis_tls_verify_hostname", &self.redis_tls_verify_hostname)
            .field("metrics_enabled", &self.metrics_enabled)
            .field("log_identities", &self.log_identities)
            .field(
                "log_identity_salt",
                &self.log_identity_salt.as_ref().map(|_| "<hidden>"),
            )
            .field("log_denials_per_second", &self.log_denials_per_second)
            .finish()
    }
}

/// `url` with the password of its user info replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            // `user:password@`, or a lone `secret@` that some clients take as the password.
            let shown = match rest[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// One limit: `limit` (a rate string such as `"100/minute"` or `"10/second; 1000/hour"`)
/// counted by `algorithm` for each value of `key`. The fields of the Python `RateLimitRule`.
///
/// `key` is `ip` (the client address, default), `global` (one bucket for everyone), `user`
/// (the id [`RateGuardBuilder::user_fn`](crate::RateGuardBuilder::user_fn) returns),
/// `header:<Name>`, `jwt:<claim>` (of a verified bearer token) or `custom` (the value of
/// [`RateGuardBuilder::key_fn`](crate::RateGuardBuilder::key_fn)). A missing identity falls
/// back to the client address.
///
/// ```
/// use rate_guard_tower::RuleConfig;
///
/// let rule = RuleConfig::new("10/second").key("header:X-Api-Key").algorithm("token_bucket").burst(20);
/// assert_eq!(rule, toml::from_str(r#"
///     limit = "10/second"
///     key = "header:X-Api-Key"
///     algorithm = "token_bucket"
///     burst = 20
/// "#)?);
/// let short: RuleConfig = "5/minute".into();
/// assert_eq!(short, RuleConfig::new("5/minute"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleConfig {
    /// The rate string; several rates joined by `;`, `,` or `|` are decided together.
    pub limit: String,
    /// `sliding_window` (default), `fixed_window`, `token_bucket` or `sliding_log`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// Whose quota the rule counts (default `ip`).
    #[serde(default = "default_key")]
    pub key: String,
    /// The token bucket's capacity (default: the limit). Token buckets only.
    #[serde(default)]
    pub burst: Option<u32>,
    /// What one request weighs (default 1).
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// The rule's id in keys (default: derived from the limit and algorithm).
    #[serde(default)]
    pub name: Option<String>,
    /// Count and report, never deny.
    #[serde(default)]
    pub shadow: bool,
    /// Overrides the guard's `fail_open` for this rule.
    #[serde(default)]
    pub fail_open: Option<bool>,
}

fn default_algorithm() -> String {
    "sliding_window".to_owned()
}

fn default_key() -> String {
    "ip".to_owned()
}

fn default_cost() -> u32 {
    1
}

impl RuleConfig {
    /// `limit` per client address, sliding window, cost 1, enforced.
    #[must_use]
    pub fn new(limit: impl Into<String>) -> Self {
        Self {
            limit: limit.into(),
            algorithm: default_algorithm(),
            key: default_key(),
            burst: None,
            cost: default_cost(),
            name: None,
            shadow: false,
            fail_open: None,
        }
    }

    /// Whose quota the rule counts (`ip`, `global`, `user`, `header:<Name>`, `jwt:<claim>`,
    /// `custom`).
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(mut self, algorithm: impl Into<String>) -> Self {
        self.algorithm = algorithm.into();
        self
    }

    /// The token bucket's capacity.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// What one request weighs.
    #[must_use]
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// The rule's id in keys.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Count and report, never deny.
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Allow (true) or deny (false) while the store is unavailable, whatever the guard says.
    #[must_use]
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = Some(fail_open);
        self
    }
}

impl From<&str> for RuleConfig {
    fn from(limit: &str) -> Self {
        Self::new(limit)
    }
}

impl From<String> for RuleConfig {
    fn from(limit: String) -> Self {
        Self::new(limit)
    }
}

/// The limits of one route: its path template as the router declares it (`/items/{id}`, read
/// from axum's `MatchedPath`), optionally one method, and its rules. They count apart from the
/// same rules globally and on other routes, and are decided together with the global rules.
///
/// A Python service shares a route's quota when it declares the same template and method:
/// FastAPI and Starlette scope a route that serves one method (`@app.get`) by that method, so
/// give `method = "GET"` here for such a route.
///
/// ```
/// use rate_guard_tower::RouteConfig;
///
/// let route = RouteConfig::new("/sensitive-data").method("GET").rule("5/minute");
/// assert_eq!(route.rules[0].limit, "5/minute");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// The path template (`/items/{id}`), never a raw URL.
    pub path: String,
    /// Only requests of this method (HEAD requests count as GET when no HEAD route is
    /// configured); `None`: every method.
    #[serde(default)]
    pub method: Option<String>,
    /// The route's rules.
    pub rules: Vec<RuleConfig>,
}

impl RouteConfig {
    /// A route template with no rule yet, for every method.
    #[must_use]
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            method: None,
            rules: Vec::new(),
        }
    }

    /// Only requests of `method`.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Adds a rule.
    #[must_use]
    pub fn rule(mut self, rule: impl Into<RuleConfig>) -> Self {
        self.rules.push(rule.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_python_packages() {
        let config: RateGuardConfig = toml::from_str("").unwrap();
        assert_eq!(config, RateGuardConfig::default());
        assert!(config.enabled && config.fail_open && config.jwt_verify);
        assert!(!config.in_memory_fallback && !config.shadow_mode);
        assert_eq!(config.key_prefix, "rate_guard");
        assert_eq!(config.headers, "legacy");
        assert_eq!(config.ipv6_prefix, 64);
        assert_eq!(config.jwt_algorithms, ["HS256"]);
        assert!((config.redis_timeout - 0.1).abs() < f64::EPSILON);
        assert_eq!(config.deny_cache_size, 10_000);
        assert_eq!(config.breaker_threshold, 5);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = toml::from_str::<RateGuardConfig>("redis_uri = 'x'").unwrap_err();
        assert!(err.to_string().contains("redis_uri"), "{err}");
        let err =
            toml::from_str::<RateGuardConfig>("global_rules = [{ limt = '1/s' }]").unwrap_err();
        assert!(err.to_string().contains("limt"), "{err}");
    }

    #[test]
    fn rule_defaults_match_python() {
        let rule: RuleConfig = serde_json::from_str(r#"{"limit": "100/minute"}"#).unwrap();
        assert_eq!(rule, RuleConfig::new("100/minute"));
        assert_eq!(
            (rule.algorithm.as_str(), rule.key.as_str(), rule.cost),
            ("sliding_window", "ip", 1)
        );
        assert!(rule.burst.is_none() && rule.name.is_none() && rule.fail_open.is_none());
    }

    #[test]
    fn debug_hides_secrets() {
        let config = RateGuardConfig {
            jwt_keys: vec!["s3cret-signing-key".to_owned()],
            redis_url: Some("redis://app:hunter2@redis.internal:6379/0".to_owned()),
            ..RateGuardConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(
            shown.contains("redis://app:***@redis.internal:6379/0"),
            "{shown}"
        );
    }

    #[test]
    fn redaction_leaves_urls_without_password_alone() {
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(
            redact_url("rediss://u:p@h/0?x=a@b"),
            "rediss://u:***@h/0?x=a@b"
        );
        assert_eq!(redact_url("redis://secret@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
