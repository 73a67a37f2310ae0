//! [`RuleConfig`] and [`RouteConfig`]: rules as data, and the one builder that turns a rule
//! config into core rules (one per rate of its rate string) and HTTP limits.

use std::num::NonZeroU32;

use rate_guard_core::{parse_rates, Algorithm, ConfigError, Rate, Rule};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::{KeySpec, Limit};

/// One limit: `limit` (a rate string such as `"100/minute"` or `"10/second; 1000/hour"`)
/// counted by `algorithm` for each value of `key`. The fields of the Python `RateLimitRule`.
///
/// A rate of 0 (`"0/minute"`) refuses every request it applies to, without a store call for
/// it and with no state ([`Rule::refuses_all`]). A rule always has a limit: "no limit" is no
/// rule (leave it out; the Python adapters drop a rule whose limit resolves to `None` for a
/// request).
///
/// `key` is `ip` (the client address, default), `global` (one bucket for everyone), `user`
/// (the authenticated user), `header:<Name>`, `jwt:<claim>` (of a verified bearer token) or
/// `custom` (a key function's value). A missing identity falls back to the client address.
///
/// ```
/// use rate_guard_core::Algorithm;
/// use rate_guard_http::RuleConfig;
///
/// let rule = RuleConfig::new("10/second")
///     .key("header:X-Api-Key")
///     .algorithm(Algorithm::TokenBucket)
///     .burst(20);
/// assert_eq!(rule, serde_json::from_str(r#"{
///     "limit": "10/second", "key": "header:X-Api-Key", "algorithm": "token_bucket", "burst": 20
/// }"#)?);
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
    #[serde(default, with = "algorithm")]
    pub algorithm: Algorithm,
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

/// Serde for [`Algorithm`] by its configuration name.
mod algorithm {
    use std::borrow::Cow;

    use rate_guard_core::Algorithm;
    use serde::{Deserialize, Deserializer, Serializer};

    // Serde's `with` hands the field over by reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(super) fn serialize<S: Serializer>(value: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(|_| {
            let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            serde::de::Error::custom(format_args!(
                "algorithm {} is not one of {}",
                crate::error::clip(&text, 40),
                names.join(", ")
            ))
        })
    }
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
            algorithm: Algorithm::default(),
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
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
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

    /// The core rules of this config: one per rate of `limit`, in order, a rate written twice
    /// counted once. A named limit of several rates names each `{name}.{count}.{period}`
    /// (`api.10.1s`), in both languages alike, which keeps their keys equal.
    pub fn rules(&self) -> Result<Vec<Rule>, ConfigError> {
        let rates = parse_rates(&self.limit)?;
        let several = rates.len() > 1;
        let mut rules: Vec<Rule> = Vec::with_capacity(rates.len());
        for rate in rates {
            let mut builder = Rule::builder_of(rate).algorithm(self.algorithm);
            if let Some(burst) = self.burst {
                builder = builder.burst(burst);
            }
            if let Some(name) = &self.name {
                builder = builder.name(if several {
                    rate_id(name, rate)
                } else {
                    name.clone()
                });
            }
            if let Some(fail_open) = self.fail_open {
                builder = builder.fail_open(fail_open);
            }
            let rule = builder.build()?;
            // "10/minute; 10 per minute" is one rule, counted once.
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        Ok(rules)
    }

    /// The HTTP limits of this config (its rules with key, cost and shadow flag); errors name
    /// the field under `field` (`global_rules[0].limit`).
    pub(crate) fn limits_at(&self, field: &str) -> Result<Vec<Limit>, Error> {
        let key: KeySpec = self
            .key
            .parse()
            .map_err(|e| Error::setting(format!("{field}.key"), e))?;
        let cost = NonZeroU32::new(self.cost)
            .ok_or_else(|| Error::setting(format!("{field}.cost"), "must be at least 1"))?;
        let rules = self.rules().map_err(|e| {
            let part = match e {
                ConfigError::Rate(_) | ConfigError::Quota(_) | ConfigError::NoRules => "limit",
                _ => "",
            };
            let named = if part.is_empty() {
                field.to_owned()
            } else {
                format!("{field}.{part}")
            };
            Error::setting(named, e)
        })?;
        Ok(rules
            .into_iter()
            .map(|rule| {
                Limit::new(rule)
                    .key(key.clone())
                    .cost(cost)
                    .shadow(self.shadow)
            })
            .collect())
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

/// The id of one rate of a named limit with several: `api.10.1s`, `api.100.60s`.
fn rate_id(name: &str, rate: Rate) -> String {
    let ms = rate.period().as_millis();
    if ms.is_multiple_of(1000) {
        format!("{name}.{}.{}s", rate.count(), ms / 1000)
    } else {
        format!("{name}.{}.{ms}ms", rate.count())
    }
}

/// The limits of one route: its path template as the router declares it (`/items/{id}`),
/// optionally one method, and its rules. They count apart from the same rules globally and on
/// other routes, and are decided together with the global rules. Rust only: Python declares
/// route limits with decorators.
///
/// A Python service shares a route's quota when it declares the same template and method:
/// FastAPI and Starlette scope a route that serves one method (`@app.get`) by that method, so
/// give `method = "GET"` here for such a route.
///
/// With a `scope`, the route's rules count in that named shared scope instead: every route
/// (here or in a Python service: `shared_limit(..., scope=...)`, Django's `group=`) that
/// declares the scope and a rule shares one quota of it, whatever its template and method.
///
/// ```
/// use rate_guard_http::RouteConfig;
///
/// let route = RouteConfig::new("/sensitive-data").method("GET").rule("5/minute");
/// assert_eq!(route.rules[0].limit, "5/minute");
/// let upload = RouteConfig::new("/upload").scope("uploads").rule("10/minute");
/// assert_eq!(upload.scope.as_deref(), Some("uploads"));
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
    /// The named shared scope the rules count in (`None`: this route's own quota).
    #[serde(default)]
    pub scope: Option<String>,
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
            scope: None,
            rules: Vec::new(),
        }
    }

    /// Only requests of `method`.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Counts the rules in the named shared `scope` (1 to 64 characters, no control
    /// characters): one quota with every other route of that scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Adds a rule.
    #[must_use]
    pub fn rule(mut self, rule: impl Into<RuleConfig>) -> Self {
        self.rules.push(rule.into());
        self
    }

    /// The limits of every rule of the route (not yet scoped); errors name the field under
    /// `field` (`routes[0]`).
    pub(crate) fn limits_at(&self, field: &str) -> Result<Vec<Limit>, Error> {
        let mut limits = Vec::new();
        for (j, rule) in self.rules.iter().enumerate() {
            limits.extend(rule.limits_at(&format!("{field}.rules[{j}]"))?);
        }
        if limits.is_empty() {
            return Err(Error::setting(field, "a route needs at least one rule"));
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_defaults_match_python() {
        let rule: RuleConfig = serde_json::from_str(r#"{"limit": "100/minute"}"#).unwrap();
        assert_eq!(rule, RuleConfig::new("100/minute"));
        assert_eq!(
            (rule.algorithm, rule.key.as_str(), rule.cost),
            (Algorithm::SlidingWindow, "ip", 1)
        );
        assert!(rule.burst.is_none() && rule.name.is_none() && rule.fail_open.is_none());
    }

    #[test]
    fn a_named_limit_of_several_rates_names_each() {
        let rules = RuleConfig::new("10/second; 100/minute; 10 per second")
            .name("api")
            .rules()
            .unwrap();
        let ids: Vec<&str> = rules.iter().map(Rule::id).collect();
        assert_eq!(ids, ["api.10.1s", "api.100.60s"]);
    }

    #[test]
    fn errors_name_the_part() {
        let err = |rule: RuleConfig| rule.limits_at("global_rules[2]").unwrap_err().to_string();
        assert!(err("1/fortnight".into()).contains("global_rules[2].limit"));
        assert!(err(RuleConfig::new("1/s").key("cookie")).contains("global_rules[2].key"));
        assert!(err(RuleConfig::new("1/s").cost(0)).contains("global_rules[2].cost"));
        assert!(err(RuleConfig::new("1/s").burst(5)).contains("burst"));
        let err = serde_json::from_str::<RuleConfig>(r#"{"limit": "1/s", "algorithm": "leaky"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("leaky"), "{err}");
    }
}
