//! The crate's one error type: configuration that cannot make a [`Front`](crate::Front).
//!
//! Requests never fail: a hostile header, a forged token or a store that is down all end in an
//! [`Outcome`](crate::Outcome), never in an [`Error`].

/// Configuration that cannot make a [`Front`](crate::Front) or a
/// [`RouteLimits`](crate::RouteLimits). Every variant names the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key spec that does not parse (`"ip"`, `"header:X-Api-Key"`, ...).
    #[error("invalid key spec {spec:?}: {reason}")]
    KeySpec {
        /// The spec (cut short when huge).
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A trusted proxy that is neither an address, a CIDR block nor `unix`.
    #[error("invalid trusted proxy {value:?}: {reason}")]
    TrustedProxy {
        /// The entry (cut short when huge).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An IPv6 grouping prefix above 128.
    #[error("invalid ipv6_prefix {0}: expected a prefix length from 0 to 128")]
    Ipv6Prefix(u32),
    /// An IPv4 grouping prefix outside 1 to 32.
    #[error("invalid ipv4_prefix {0}: expected a prefix length from 1 to 32")]
    Ipv4Prefix(u32),
    /// A header style other than `legacy`, `ietf`, `both` or `none`.
    #[error("invalid header style {0:?}: expected legacy, ietf, both or none")]
    HeaderStyle(String),
    /// A forwarded header other than `x-forwarded-for` or `forwarded`.
    #[error("invalid forwarded header {0:?}: expected x-forwarded-for or forwarded")]
    ForwardedHeader(String),
    /// A JWT setting that cannot work (an unknown algorithm, a key that does not parse, a
    /// `jwt:` key spec with no key to verify with).
    #[error("invalid JWT setting: {0}")]
    Jwt(String),
    /// A route template or method unfit for scoping.
    #[error("invalid route {route:?}: {reason}")]
    Route {
        /// The template or method (cut short when huge).
        route: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A shared scope name unfit for keys (empty, too long, control characters).
    #[error("invalid shared scope {scope:?}: {reason}")]
    Scope {
        /// The scope (cut short when huge).
        scope: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Per-request costs that do not fit the route: more or fewer than its limits, or one out
    /// of range.
    #[error("invalid costs for this request: {0}")]
    Costs(String),
    /// A cost of zero.
    #[error("cost must be at least 1")]
    ZeroCost,
    /// Two different rules under one id: they would share their keys.
    #[error(
        "two different rules share the id {id:?}: {first} and {second}; give one of them \
             another name"
    )]
    DuplicateRule {
        /// The shared id.
        id: String,
        /// The first rule's definition (`2/minute (sliding_window, id api)`).
        first: String,
        /// The second rule's definition.
        second: String,
    },
    /// A global rule whose name is reserved for route-scoped (`rt.`) or shared (`sc.`) rules.
    #[error(
        "rule name {id:?} starts with {prefix:?}, which is reserved for route-scoped (rt.) \
         and shared-scope (sc.) rules"
    )]
    ReservedRuleName {
        /// The rule's id.
        id: String,
        /// The reserved prefix it starts with.
        prefix: &'static str,
    },
    /// More rules on one request than a store decides at once.
    #[error("a request would carry {count} rules; at most {max} are decided together")]
    TooManyRules {
        /// The global and route rules of the request.
        count: usize,
        /// [`rate_guard_core::MAX_CHECKS`].
        max: usize,
    },
    /// A decision log setting out of its range (`log_denials_per_second`, `log_identities`).
    #[error("invalid {field}: {reason}")]
    Log {
        /// The setting.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A rule the core rejects (a scoped rule id, say).
    #[error(transparent)]
    Rule(#[from] rate_guard_core::ConfigError),
    /// A [`Settings`](crate::Settings) field out of range or inconsistent with another.
    #[error("invalid setting {field}: {reason}")]
    Setting {
        /// The field, as the settings name it (`global_rules[1].limit`, `redis_timeout`).
        field: String,
        /// What is wrong with it (never a secret, nor a URL's password).
        reason: String,
    },
    /// An environment variable whose value does not fit its field.
    #[error("invalid environment variable {var}: {reason}")]
    Env {
        /// The variable (`RATE_GUARD_GLOBAL_RULES`, ...).
        var: String,
        /// What is wrong with its value (never the value itself: it may be a secret).
        reason: String,
    },
    /// Redis could not be reached, or its URL does not parse (the password is never shown).
    #[error("cannot use Redis at {url}: {reason}")]
    Redis {
        /// The URL, its password replaced by `***`.
        url: String,
        /// Why.
        reason: String,
        /// Whether trying again later may succeed.
        transient: bool,
    },
}

impl Error {
    /// Two different rules of one id, both described.
    pub(crate) fn duplicate(first: &rate_guard_core::Rule, second: &rate_guard_core::Rule) -> Self {
        let describe = |rule: &rate_guard_core::Rule| match rule.fail_open() {
            None => rule.to_string(),
            Some(open) => format!("{rule} failing {}", if open { "open" } else { "closed" }),
        };
        Error::DuplicateRule {
            id: first.id().to_owned(),
            first: describe(first),
            second: describe(second),
        }
    }

    /// Whether building again later may succeed: only when Redis was unreachable
    /// (configuration does not heal by waiting).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Redis {
                transient: true,
                ..
            }
        )
    }

    /// A setting out of range or inconsistent with another.
    pub(crate) fn setting(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Setting {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// `value` cut to at most `max` characters, for error messages about huge input.
pub(crate) fn clip(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}
