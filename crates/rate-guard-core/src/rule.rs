//! A [`Rule`]: a quota, the algorithm that enforces it, and the id that names its keys.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::algorithm::Algorithm;
use crate::bounds;
use crate::error::ConfigError;
use crate::quota::{Quota, Rate};

/// The longest rule id accepted.
pub const MAX_RULE_ID_LEN: usize = 64;

/// One limit to enforce: `quota` counted by `algorithm`, its state stored under keys named by
/// `id`. Built only through [`Rule::builder`], so every `Rule` is valid.
///
/// ```
/// use rate_guard_core::{Algorithm, Quota, Rule};
///
/// let rule = Rule::builder("100/minute".parse::<Quota>()?)
///     .algorithm(Algorithm::TokenBucket)
///     .burst(20)
///     .name("api")
///     .build()?;
/// assert_eq!(rule.capacity(), 20);
/// assert_eq!(rule.id(), "api");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    id: Arc<str>,
    quota: Quota,
    algorithm: Algorithm,
    burst: Option<NonZeroU32>,
    fail_open: Option<bool>,
    /// A rate of 0 (`"0/minute"`): every request refused, by the limiter, without a store.
    refuses: bool,
    /// [`capacity`](Self::capacity), worked out once: every decision reads it, and the
    /// branches that work it out (burst or count, refusing or not) measured 10-15 % of the
    /// memory store's check (BENCHMARKS.md, issue 13, session 6).
    capacity: u32,
    period_micros: u64,
    interval_micros: f64,
    /// `count / period`: tokens per microsecond, so that estimates multiply instead of divide.
    rate_per_micro: f64,
}

impl Rule {
    /// Starts a rule enforcing `quota` (sliding window, id derived from the definition).
    pub fn builder(quota: Quota) -> RuleBuilder {
        RuleBuilder {
            quota,
            algorithm: Algorithm::default(),
            burst: None,
            name: None,
            fail_open: None,
            refuses: false,
        }
    }

    /// Starts a rule enforcing `rate`, which may be `0/<period>`: a rule that refuses every
    /// request (see [`refuses_all`](Self::refuses_all)).
    pub fn builder_of(rate: Rate) -> RuleBuilder {
        match rate.quota() {
            Some(quota) => Self::builder(quota),
            None => RuleBuilder {
                refuses: true,
                ..Self::builder(rate.period_quota())
            },
        }
    }

    /// Whether the rule's rate is 0 (`"0/minute"`): it refuses every request, and the
    /// [`Limiter`](crate::Limiter) answers it without a store. A request it applies to is
    /// denied as a whole (nothing consumed), its decision `limit` 0, `remaining` 0,
    /// `reset_after` 0 and no `retry_after`; it has no state, and its [`quota`](Self::quota)
    /// holds only its period (with a count of 1).
    #[must_use]
    pub const fn refuses_all(&self) -> bool {
        self.refuses
    }

    /// The rate as written: the quota, or `0/<period>` for a rule that refuses all.
    #[must_use]
    pub fn rate(&self) -> Rate {
        Rate::new(self.count(), self.quota)
    }

    /// The id used in this rule's keys: its name, or one derived from its definition
    /// (`sliding_window.100.60s`), so that services configured alike share state.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the rule admits: `count` per `period`.
    #[must_use]
    pub const fn quota(&self) -> Quota {
        self.quota
    }

    /// How the rule counts.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The token bucket's capacity, when set.
    #[must_use]
    pub const fn burst(&self) -> Option<NonZeroU32> {
        self.burst
    }

    /// What this rule does while the store is unavailable and there is no in-memory fallback:
    /// `Some(true)` allow, `Some(false)` deny, `None` follow the limiter's setting.
    #[must_use]
    pub const fn fail_open(&self) -> Option<bool> {
        self.fail_open
    }

    /// The quota's count (0 for a rule that refuses all).
    #[must_use]
    pub const fn count(&self) -> u32 {
        if self.refuses {
            0
        } else {
            self.quota.count().get()
        }
    }

    /// The quota's period in microseconds.
    #[must_use]
    pub const fn period_micros(&self) -> u64 {
        self.period_micros
    }

    /// `period / count` in microseconds (a double): the token bucket's emission interval, computed
    /// once here exactly as the Lua scripts compute it.
    #[must_use]
    pub const fn interval_micros(&self) -> f64 {
        self.interval_micros
    }

    /// `count / period`, tokens per microsecond: for estimates only (the Lua scripts divide by
    /// the interval instead, so no decision may depend on this value's last bit).
    pub(crate) const fn rate_per_micro(&self) -> f64 {
        self.rate_per_micro
    }

    /// The most one key can be admitted at once: the burst of a token bucket (default: the
    /// count), the count otherwise.
    #[must_use]
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }
}

// The derived fields (period, interval) follow from the quota.
impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.id,
            self.quota,
            self.algorithm,
            self.burst,
            self.fail_open,
            self.refuses,
        ) == (
            &other.id,
            other.quota,
            other.algorithm,
            other.burst,
            other.fail_open,
            other.refuses,
        )
    }
}

impl Eq for Rule {}

impl std::hash::Hash for Rule {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (
            &self.id,
            self.quota,
            self.algorithm,
            self.burst,
            self.fail_open,
            self.refuses,
        )
            .hash(state);
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.rate(), self.algorithm)?;
        if let Some(b) = self.burst {
            write!(f, ", burst {b}")?;
        }
        write!(f, ", id {})", self.id)
    }
}

/// Builds a [`Rule`]; see [`Rule::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RuleBuilder {
    quota: Quota,
    algorithm: Algorithm,
    burst: Option<u32>,
    name: Option<String>,
    fail_open: Option<bool>,
    refuses: bool,
}

impl RuleBuilder {
    /// The algorithm (default: sliding window).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The token bucket's capacity (default: the count). Only token buckets take a burst.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The rule's id in keys. Letters, digits and `_ - . /` only, at most
    /// [`MAX_RULE_ID_LEN`] characters.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Overrides the limiter's `fail_open` for this rule (a login route may fail closed while
    /// the rest of the service fails open).
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = Some(fail_open);
        self
    }

    /// The rule, or what is wrong with it.
    pub fn build(self) -> Result<Rule, ConfigError> {
        let burst = match self.burst {
            None => None,
            Some(_) if self.algorithm != Algorithm::TokenBucket => {
                return Err(ConfigError::BurstWithoutTokenBucket {
                    algorithm: self.algorithm,
                })
            }
            Some(b) => Some(NonZeroU32::new(b).ok_or(ConfigError::ZeroBurst)?),
        };
        // The ranges that keep every algorithm's arithmetic exact and its state small
        // (`bounds`); a token bucket's default burst, its count, refills in one period.
        match self.algorithm {
            // A rule that refuses all has no state to bound.
            _ if self.refuses => {}
            Algorithm::SlidingLog => bounds::check_sliding_log_limit(self.quota.count().get())?,
            Algorithm::TokenBucket => {
                let capacity = burst.unwrap_or(self.quota.count()).get();
                bounds::check_refill(self.quota, capacity)?;
            }
            _ => {}
        }
        let id = match self.name {
            Some(name) => {
                validate_id(&name)?;
                name
            }
            None => derived_id(self.quota, self.refuses, self.algorithm, burst),
        };
        Ok(Rule {
            id: id.into(),
            quota: self.quota,
            algorithm: self.algorithm,
            burst,
            fail_open: self.fail_open,
            refuses: self.refuses,
            capacity: match burst {
                _ if self.refuses => 0,
                Some(b) => b.get(),
                None => self.quota.count().get(),
            },
            period_micros: self.quota.period_micros(),
            interval_micros: self.quota.period_micros() as f64
                / f64::from(self.quota.count().get()),
            rate_per_micro: f64::from(self.quota.count().get()) / self.quota.period_micros() as f64,
        })
    }
}

fn validate_id(id: &str) -> Result<(), ConfigError> {
    let bad = |reason: &'static str| ConfigError::InvalidRuleName {
        name: id.chars().take(MAX_RULE_ID_LEN + 8).collect(),
        reason,
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.chars().count() > MAX_RULE_ID_LEN {
        return Err(bad("it is longer than 64 characters"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return Err(bad("only letters, digits and _ - . / are allowed"));
    }
    Ok(())
}

/// `sliding_window.100.60s`, `token_bucket.10.1s.b5`, `fixed_window.7.1500ms`,
/// `sliding_window.0.60s` (a rule that refuses all: no key is ever made of it).
fn derived_id(
    quota: Quota,
    refuses: bool,
    algorithm: Algorithm,
    burst: Option<NonZeroU32>,
) -> String {
    let count = if refuses { 0 } else { quota.count().get() };
    let ms = quota.period().as_millis();
    let period = if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    };
    match burst {
        Some(b) => format!("{algorithm}.{count}.{period}.b{b}"),
        None => format!("{algorithm}.{count}.{period}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(s: &str) -> Quota {
        s.parse().unwrap()
    }

    #[test]
    fn a_zero_rate_makes_a_rule_that_refuses_all() {
        let rate = crate::parse_rates("0/minute").unwrap()[0];
        let zero = Rule::builder_of(rate).build().unwrap();
        assert!(zero.refuses_all());
        assert_eq!((zero.count(), zero.capacity()), (0, 0));
        assert_eq!(zero.id(), "sliding_window.0.60s");
        assert_eq!(
            zero.to_string(),
            "0/minute (sliding_window, id sliding_window.0.60s)"
        );
        // No state, so no state bound: a sliding log or a token bucket of 0 is fine.
        let log = Rule::builder_of(rate)
            .algorithm(Algorithm::SlidingLog)
            .build()
            .unwrap();
        assert!(log.refuses_all());
        // Not equal to the rule of 1 per minute its quota carries the period of.
        let one = Rule::builder(quota("1/minute"))
            .name("sliding_window.0.60s")
            .build()
            .unwrap();
        assert_ne!(zero, one);
        let kept = Rule::builder_of(crate::parse_rates("3/s").unwrap()[0])
            .build()
            .unwrap();
        assert!(!kept.refuses_all() && kept == Rule::builder(quota("3/s")).build().unwrap());
    }

    #[test]
    fn derived_ids_name_the_definition() {
        let r = Rule::builder(quota("100/minute")).build().unwrap();
        assert_eq!(r.id(), "sliding_window.100.60s");
        let r = Rule::builder(quota("10/second"))
            .algorithm(Algorithm::TokenBucket)
            .burst(5)
            .build()
            .unwrap();
        assert_eq!(r.id(), "token_bucket.10.1s.b5");
        assert_eq!(r.capacity(), 5);
    }

    #[test]
    fn burst_needs_a_token_bucket_and_a_positive_value() {
        let err = Rule::builder(quota("1/s")).burst(3).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "burst is only meaningful for token_bucket, not sliding_window"
        );
        let err = Rule::builder(quota("1/s"))
            .algorithm(Algorithm::TokenBucket)
            .burst(0)
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "burst must be at least 1");
    }

    #[test]
    fn out_of_range_rules_are_refused_with_the_value_the_field_and_the_range() {
        let bucket = |rate: &str, burst: u32| {
            Rule::builder(quota(rate))
                .algorithm(Algorithm::TokenBucket)
                .burst(burst)
                .build()
        };
        // Issue 12: this rule hung a shared Redis.
        assert_eq!(
            bucket("1/10000 days", 20).unwrap_err().to_string(),
            "token_bucket burst 20 with 1/10000 days refills in 200000 days; the longest \
             allowed is 10000 days (lower burst or raise the rate)"
        );
        assert_eq!(
            bucket("1/day", 1_000_000_000).unwrap_err().to_string(),
            "token_bucket burst 1000000000 with 1/day refills in 1000000000 days; the longest \
             allowed is 10000 days (lower burst or raise the rate)"
        );
        // The largest valid neighbours build.
        assert_eq!(bucket("1/10000 days", 1).unwrap().capacity(), 1);
        assert_eq!(bucket("10/day", 100_000).unwrap().capacity(), 100_000);
        assert!(bucket("10/day", 100_001).is_err());
        // Without a burst a bucket refills in one period, never too long.
        let default = Rule::builder(quota("1/10000 days"))
            .algorithm(Algorithm::TokenBucket)
            .build();
        assert!(default.is_ok());
        // Other algorithms take no burst, so any count builds but a sliding log's.
        let log = |rate: &str| {
            Rule::builder(quota(rate))
                .algorithm(Algorithm::SlidingLog)
                .build()
        };
        assert!(log("10000/hour").is_ok());
        let err = log("4294967295/hour").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sliding_log limit 4294967295 is above 10000 (its state is one entry per request): \
             use sliding_window"
        );
        assert!(matches!(
            err,
            ConfigError::Range(bounds::RangeError::SlidingLogLimit {
                limit: 4_294_967_295
            })
        ));
        assert!(log("10001/hour").is_err());
        for a in [Algorithm::SlidingWindow, Algorithm::FixedWindow] {
            let r = Rule::builder(quota("4294967295/10000 days"))
                .algorithm(a)
                .build();
            assert!(r.is_ok(), "{a}");
        }
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "a:b", "x{y}", "sp ace", &"n".repeat(65), "é"] {
            let err = Rule::builder(quota("1/s")).name(bad).build().unwrap_err();
            assert!(err.to_string().starts_with("invalid rule name"), "{err}");
        }
        let ok = Rule::builder(quota("1/s"))
            .name("api/v1-login.x_y")
            .build()
            .unwrap();
        assert_eq!(ok.id(), "api/v1-login.x_y");
    }
}
