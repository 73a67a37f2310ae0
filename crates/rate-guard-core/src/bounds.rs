//! The range of every number a rule or a configuration takes, in one table.
//!
//! Each range is chosen so that no intermediate value of any algorithm leaves exact arithmetic
//! (integers below 2^53 in Lua doubles, `u64` in Rust) and no allocation is sized by an
//! unchecked input. Values are checked once, where they are written: the Python model calls
//! [`check_int`] and [`check_seconds`] through the native module, the tower configuration and
//! the builders of this crate call them directly. The docs' configuration reference lists the
//! same table.
//!
//! ```
//! use rate_guard_core::bounds;
//!
//! assert_eq!(bounds::check_int("redis_pool_size", 8), Ok(8));
//! let err = bounds::check_int("redis_pool_size", 1_000_000_000).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "redis_pool_size must be from 1 to 256, not 1000000000"
//! );
//! assert!(bounds::check_seconds("redis_timeout", 1e300).is_err());
//! ```

use std::fmt;
use std::time::Duration;

use crate::quota::Quota;

/// The largest count (`limit`), burst and cost: counts are `u32` everywhere.
pub const MAX_COUNT: u32 = u32::MAX;

/// The largest limit of a `sliding_log` rule: its state holds one entry per admitted unit of
/// cost (8 bytes in memory, a sorted-set member in Redis), and one request may write up to
/// `limit` of them. Above this, `sliding_window` is the O(1) choice.
pub const MAX_SLIDING_LOG_LIMIT: u32 = 10_000;

/// The longest time a token bucket may take to refill from empty (`burst × period / limit`),
/// in microseconds: 10,000 days, the longest period. It bounds a bucket's backlog, so that
/// timestamps plus backlogs stay below 2^52 microseconds.
pub const MAX_REFILL_MICROS: u64 = 10_000 * MICROS_PER_DAY;

/// How far ahead of `now` a stored state may lie and still count: one hour. A state lies ahead
/// when the clock that wrote it ran ahead of the one reading it (an NTP step, a failover to a
/// server whose clock lags). Further ahead, it is out of range and reads as no state, in every
/// store alike; so does a state that no rule could have written (a count above `u32::MAX`, a
/// token bucket's backlog above its capacity), which is how a corrupt Redis value heals.
pub const MAX_CLOCK_STEP_BACK_MICROS: u64 = 3_600 * 1_000_000;

const MICROS_PER_DAY: u64 = 86_400 * 1_000_000;

/// An integer setting's range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    /// The setting's name, as the configuration spells it.
    pub field: &'static str,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

/// A duration setting's range, both ends included, in whole milliseconds (the setting itself
/// is written in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondsRange {
    /// The setting's name, as the configuration spells it.
    pub field: &'static str,
    /// The shortest duration accepted, in milliseconds.
    pub min_ms: u64,
    /// The longest duration accepted, in milliseconds.
    pub max_ms: u64,
}

/// Every integer setting of a rule or a configuration.
pub const INTS: &[IntRange] = &[
    // 0 is a rule that refuses every request (`Rule::refuses_all`).
    IntRange {
        field: "limit",
        min: 0,
        max: MAX_COUNT as u64,
    },
    IntRange {
        field: "burst",
        min: 1,
        max: MAX_COUNT as u64,
    },
    IntRange {
        field: "cost",
        min: 1,
        max: MAX_COUNT as u64,
    },
    IntRange {
        field: "redis_pool_size",
        min: 1,
        max: 256,
    },
    IntRange {
        field: "instance_count",
        min: 1,
        max: 10_000,
    },
    IntRange {
        field: "deny_cache_size",
        min: 0,
        max: 10_000_000,
    },
    IntRange {
        field: "breaker_threshold",
        min: 1,
        max: 1_000_000,
    },
    IntRange {
        field: "memory_max_keys",
        min: 1,
        max: 100_000_000,
    },
    IntRange {
        field: "ipv6_prefix",
        min: 1,
        max: 128,
    },
    IntRange {
        field: "ipv4_prefix",
        min: 1,
        max: 32,
    },
];

/// Every duration setting of a configuration.
pub const SECONDS: &[SecondsRange] = &[
    SecondsRange {
        field: "redis_timeout",
        min_ms: 1,
        max_ms: 60_000,
    },
    SecondsRange {
        field: "redis_connect_timeout",
        min_ms: 1,
        max_ms: 60_000,
    },
    SecondsRange {
        field: "deny_cache_ttl",
        min_ms: 1,
        max_ms: 3_600_000,
    },
    SecondsRange {
        field: "breaker_cooldown",
        min_ms: 1,
        max_ms: 3_600_000,
    },
    SecondsRange {
        field: "breaker_max_cooldown",
        min_ms: 1,
        max_ms: 86_400_000,
    },
];

/// A real-valued setting's range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloatRange {
    /// The setting's name, as the configuration spells it.
    pub field: &'static str,
    /// The smallest value accepted.
    pub min: f64,
    /// The largest value accepted.
    pub max: f64,
}

/// Every real-valued setting that is not a duration.
pub const FLOATS: &[FloatRange] = &[FloatRange {
    field: "log_denials_per_second",
    min: 0.0,
    max: 1_000_000.0,
}];

/// A number outside its range, or a setting no range is known for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// An integer outside its range (`value` is the text given, so that any size prints).
    #[error("{field} must be from {min} to {max}, not {value}")]
    Int {
        /// The setting.
        field: &'static str,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
        /// The value given.
        value: String,
    },
    /// A duration outside its range.
    #[error("{field} must be from {} to {} seconds, not {value}", seconds(*min_ms), seconds(*max_ms))]
    Seconds {
        /// The setting.
        field: &'static str,
        /// The shortest duration accepted, in milliseconds.
        min_ms: u64,
        /// The longest duration accepted, in milliseconds.
        max_ms: u64,
        /// The value given, in seconds.
        value: String,
    },
    /// A real number outside its range.
    #[error("{field} must be from {min} to {max}, not {value}")]
    Float {
        /// The setting.
        field: &'static str,
        /// The smallest value accepted, as written.
        min: String,
        /// The largest value accepted, as written.
        max: String,
        /// The value given.
        value: String,
    },
    /// A `sliding_log` rule whose limit is above [`MAX_SLIDING_LOG_LIMIT`].
    #[error(
        "sliding_log limit {limit} is above {} (its state is one entry per request): use sliding_window",
        MAX_SLIDING_LOG_LIMIT
    )]
    SlidingLogLimit {
        /// The rule's limit (its count).
        limit: u32,
    },
    /// A token bucket that takes longer than [`MAX_REFILL_MICROS`] to refill from empty.
    #[error(
        "token_bucket burst {burst} with {quota} refills in {}; the longest allowed is {} (lower burst or raise the rate)",
        refill_days(*quota, *burst),
        refill_days(Quota::per_day(std::num::NonZeroU32::MIN), 10_000)
    )]
    Refill {
        /// The bucket's capacity.
        burst: u32,
        /// The rate it refills at.
        quota: Quota,
    },
    /// A name that is not in [`INTS`] or [`SECONDS`] (a bug in the caller).
    #[error("no range is known for the setting {0:?}")]
    Unknown(String),
}

/// Milliseconds written as seconds: `0.001`, `60`.
fn seconds(ms: u64) -> String {
    (ms as f64 / 1_000.0).to_string()
}

/// How long a bucket of `burst` refilling at `quota` takes to fill from empty, in days, rounded
/// **up** to a hundredth so that a time above the limit never prints as the limit: `200000
/// days`, `10000.01 days`, `1 day`.
fn refill_days(quota: Quota, burst: u32) -> String {
    let num = u128::from(burst) * u128::from(quota.period_micros()) * 100;
    let den = u128::from(quota.count().get()) * u128::from(MICROS_PER_DAY);
    let hundredths = num.div_ceil(den);
    let (whole, frac) = (hundredths / 100, hundredths % 100);
    let number = match frac {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    };
    if hundredths == 100 {
        "1 day".to_owned()
    } else {
        format!("{number} days")
    }
}

/// Checks a `sliding_log` rule's limit against [`MAX_SLIDING_LOG_LIMIT`].
///
/// ```
/// use rate_guard_core::bounds;
///
/// assert!(bounds::check_sliding_log_limit(10_000).is_ok());
/// assert_eq!(
///     bounds::check_sliding_log_limit(4_294_967_295).unwrap_err().to_string(),
///     "sliding_log limit 4294967295 is above 10000 (its state is one entry per request): use sliding_window"
/// );
/// ```
pub fn check_sliding_log_limit(limit: u32) -> Result<(), RangeError> {
    if limit > MAX_SLIDING_LOG_LIMIT {
        return Err(RangeError::SlidingLogLimit { limit });
    }
    Ok(())
}

/// Checks that a token bucket of capacity `burst` refilling at `quota` fills from empty within
/// [`MAX_REFILL_MICROS`] (`burst × period / count`, compared exactly).
///
/// ```
/// use rate_guard_core::{bounds, Quota};
///
/// let slow: Quota = "1/10000 days".parse()?;
/// assert!(bounds::check_refill(slow, 1).is_ok());
/// assert_eq!(
///     bounds::check_refill(slow, 20).unwrap_err().to_string(),
///     "token_bucket burst 20 with 1/10000 days refills in 200000 days; \
///      the longest allowed is 10000 days (lower burst or raise the rate)"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_refill(quota: Quota, burst: u32) -> Result<(), RangeError> {
    let refill = u128::from(burst) * u128::from(quota.period_micros());
    if refill > u128::from(MAX_REFILL_MICROS) * u128::from(quota.count().get()) {
        return Err(RangeError::Refill { burst, quota });
    }
    Ok(())
}

/// The range of the integer setting `field`.
#[must_use]
pub fn int_range(field: &str) -> Option<&'static IntRange> {
    INTS.iter().find(|r| r.field == field)
}

/// The range of the real-valued setting `field`.
#[must_use]
pub fn float_range(field: &str) -> Option<&'static FloatRange> {
    FLOATS.iter().find(|r| r.field == field)
}

/// The range of the duration setting `field`.
#[must_use]
pub fn seconds_range(field: &str) -> Option<&'static SecondsRange> {
    SECONDS.iter().find(|r| r.field == field)
}

impl IntRange {
    /// `value` when it is in range.
    pub fn check(&self, value: i128) -> Result<u64, RangeError> {
        match u64::try_from(value) {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ => Err(self.error(value)),
        }
    }

    /// The error for an out-of-range `value` of any size or form (`"2**70"`, `"-1"`).
    #[must_use]
    pub fn error(&self, value: impl fmt::Display) -> RangeError {
        RangeError::Int {
            field: self.field,
            min: self.min,
            max: self.max,
            value: value.to_string(),
        }
    }
}

impl FloatRange {
    /// `value` when in range (NaN never is).
    pub fn check(&self, value: f64) -> Result<f64, RangeError> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(RangeError::Float {
                field: self.field,
                min: self.min.to_string(),
                max: self.max.to_string(),
                value: format!("{value:?}"),
            })
        }
    }
}

impl SecondsRange {
    /// `value` seconds as a [`Duration`] when in range (NaN and infinities never are).
    pub fn check(&self, value: f64) -> Result<Duration, RangeError> {
        let min = self.min_ms as f64 / 1_000.0;
        let max = self.max_ms as f64 / 1_000.0;
        if (min..=max).contains(&value) {
            Ok(Duration::from_secs_f64(value))
        } else {
            Err(RangeError::Seconds {
                field: self.field,
                min_ms: self.min_ms,
                max_ms: self.max_ms,
                value: format!("{value:?}"),
            })
        }
    }

    /// The shortest duration accepted, in seconds.
    #[must_use]
    pub fn min_seconds(&self) -> f64 {
        self.min_ms as f64 / 1_000.0
    }

    /// The longest duration accepted, in seconds.
    #[must_use]
    pub fn max_seconds(&self) -> f64 {
        self.max_ms as f64 / 1_000.0
    }
}

/// Checks the integer setting `field`.
pub fn check_int(field: &str, value: i128) -> Result<u64, RangeError> {
    int_range(field)
        .ok_or_else(|| RangeError::Unknown(field.to_owned()))?
        .check(value)
}

/// Checks the real-valued setting `field`.
pub fn check_float(field: &str, value: f64) -> Result<f64, RangeError> {
    float_range(field)
        .ok_or_else(|| RangeError::Unknown(field.to_owned()))?
        .check(value)
}

/// Checks the duration setting `field`, in seconds.
pub fn check_seconds(field: &str, value: f64) -> Result<Duration, RangeError> {
    seconds_range(field)
        .ok_or_else(|| RangeError::Unknown(field.to_owned()))?
        .check(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_are_checked_at_both_ends() {
        for r in INTS {
            assert_eq!(r.check(i128::from(r.min)), Ok(r.min), "{}", r.field);
            assert_eq!(r.check(i128::from(r.max)), Ok(r.max), "{}", r.field);
            assert!(r.check(i128::from(r.max) + 1).is_err(), "{}", r.field);
            assert!(r.check(-1).is_err(), "{}", r.field);
            if r.min > 0 {
                assert!(r.check(i128::from(r.min) - 1).is_err(), "{}", r.field);
            }
        }
        let err = check_int("instance_count", 1 << 40).unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance_count must be from 1 to 10000, not 1099511627776"
        );
    }

    #[test]
    fn seconds_refuse_nan_infinities_and_huge_values() {
        for r in SECONDS {
            assert!(r.check(r.min_seconds()).is_ok());
            assert!(r.check(r.max_seconds()).is_ok());
            for bad in [
                0.0,
                -1.0,
                f64::NAN,
                f64::INFINITY,
                1e300,
                r.max_seconds() * 2.0,
            ] {
                assert!(r.check(bad).is_err(), "{} {bad}", r.field);
            }
        }
        assert_eq!(
            check_seconds("redis_timeout", 1e300)
                .unwrap_err()
                .to_string(),
            "redis_timeout must be from 0.001 to 60 seconds, not 1e300"
        );
    }

    #[test]
    fn refills_are_compared_exactly_and_printed_rounded_up() {
        let q = |s: &str| s.parse::<Quota>().unwrap();
        // At the limit: 10/day with a burst of 100,000 refills in exactly 10,000 days.
        assert!(check_refill(q("10/day"), 100_000).is_ok());
        assert!(check_refill(q("1/10000 days"), 1).is_ok());
        assert!(check_refill(q("4294967295/10000 days"), u32::MAX).is_ok());
        let over = |quota: &str, burst: u32| check_refill(q(quota), burst).unwrap_err().to_string();
        assert_eq!(
            over("10/day", 100_001),
            "token_bucket burst 100001 with 10/day refills in 10000.1 days; the longest allowed \
             is 10000 days (lower burst or raise the rate)"
        );
        // A hair above the limit never prints as the limit itself.
        assert!(check_refill(q("400000/day"), 4_000_000_000).is_ok());
        assert!(over("400000/day", 4_000_000_001).contains("refills in 10000.01 days;"));
        assert!(over("7/day", 70_001).contains("refills in 10000.15 days;"));
        assert!(over("1/second", u32::MAX).contains("refills in 49710.27 days;"));
    }

    #[test]
    fn sliding_logs_are_bounded() {
        assert_eq!(check_sliding_log_limit(MAX_SLIDING_LOG_LIMIT), Ok(()));
        assert_eq!(
            check_sliding_log_limit(MAX_SLIDING_LOG_LIMIT + 1),
            Err(RangeError::SlidingLogLimit { limit: 10_001 })
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        assert_eq!(
            check_int("nope", 1).unwrap_err(),
            RangeError::Unknown("nope".into())
        );
    }
}
