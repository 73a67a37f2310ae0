//! [`Quota`]: how many requests per period, validated once, written back in canonical form.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use crate::rate_str::{self, ParseError};

const MILLIS_PER_DAY: u64 = 86_400_000;
const MAX_PERIOD_MILLIS: u64 = 10_000 * MILLIS_PER_DAY;

/// `count` requests per `period`: what a rule admits.
///
/// The period is a whole number of milliseconds between 1 ms and [`Quota::MAX_PERIOD`], so its
/// microseconds stay far below 2^52 and the algorithms can compute with them in `f64` exactly.
/// A `Quota` prints in a canonical form that parses back to the same value.
///
/// ```
/// use rate_guard_core::Quota;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let quota: Quota = "10 per 2 hours".parse()?;
/// assert_eq!(quota.count().get(), 10);
/// assert_eq!(quota.period(), Duration::from_secs(7_200));
/// assert_eq!(quota.to_string(), "10/2 hours");
///
/// let per_minute = Quota::per_minute(NonZeroU32::new(100).unwrap());
/// assert_eq!(per_minute.to_string(), "100/minute");
/// assert_eq!(per_minute.to_string().parse::<Quota>()?, per_minute);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: NonZeroU32,
    period_ms: u64,
}

impl Quota {
    /// The longest period accepted: 10,000 days.
    pub const MAX_PERIOD: Duration = Duration::from_millis(MAX_PERIOD_MILLIS);

    /// `count` per `period`, where `period` is a whole number of milliseconds from 1 ms to
    /// [`Quota::MAX_PERIOD`].
    pub fn new(count: NonZeroU32, period: Duration) -> Result<Quota, QuotaError> {
        if period < Duration::from_millis(1) {
            return Err(QuotaError::PeriodTooShort { period });
        }
        if period > Self::MAX_PERIOD {
            return Err(QuotaError::PeriodTooLong { period });
        }
        if !period.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(QuotaError::PeriodNotWholeMilliseconds { period });
        }
        let period_ms = period.as_secs() * 1_000 + u64::from(period.subsec_millis());
        Ok(Quota { count, period_ms })
    }

    /// `count` per second.
    #[must_use]
    pub const fn per_second(count: NonZeroU32) -> Quota {
        Quota {
            count,
            period_ms: Unit::Second.millis(),
        }
    }

    /// `count` per minute.
    #[must_use]
    pub const fn per_minute(count: NonZeroU32) -> Quota {
        Quota {
            count,
            period_ms: Unit::Minute.millis(),
        }
    }

    /// `count` per hour.
    #[must_use]
    pub const fn per_hour(count: NonZeroU32) -> Quota {
        Quota {
            count,
            period_ms: Unit::Hour.millis(),
        }
    }

    /// `count` per day.
    #[must_use]
    pub const fn per_day(count: NonZeroU32) -> Quota {
        Quota {
            count,
            period_ms: Unit::Day.millis(),
        }
    }

    /// The rate string parser's constructor: `None` when `period_ms` is out of bounds, so the
    /// bounds are checked in this one place.
    pub(crate) const fn from_period_millis(count: NonZeroU32, period_ms: u64) -> Option<Quota> {
        if period_ms == 0 || period_ms > MAX_PERIOD_MILLIS {
            None
        } else {
            Some(Quota { count, period_ms })
        }
    }

    /// How many requests the quota admits per period.
    #[must_use]
    pub const fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period the count applies to.
    #[must_use]
    pub const fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// The period in whole microseconds (always a multiple of 1000, at most 8.64 × 10^14).
    #[must_use]
    pub const fn period_micros(&self) -> u64 {
        self.period_ms * 1_000
    }
}

/// `100/minute` when the period is one unit, else the largest unit that divides it exactly:
/// `10/5 minutes`, `3/90 seconds`, `7/1500 milliseconds`.
impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = Unit::LARGEST_FIRST
            .into_iter()
            .find(|unit| self.period_ms.is_multiple_of(unit.millis()))
            .unwrap_or(Unit::Millisecond);
        let units = self.period_ms / unit.millis();
        if units == 1 {
            write!(f, "{}/{}", self.count, unit.singular())
        } else {
            write!(f, "{}/{units} {}", self.count, unit.plural())
        }
    }
}

/// Parses exactly one limit (`"100/minute"`, `"10 per 2 hours"`); see [`rate_str`] for the
/// grammar. Several limits are an error: use [`parse_quotas`](crate::parse_quotas) for those.
impl FromStr for Quota {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Quota, ParseError> {
        rate_str::parse_single(s)
    }
}

/// A rate as written in a rate string: `count` per `period`, where, unlike a [`Quota`], the
/// count may be 0. `"0/minute"` is a rule that refuses every request (django-ratelimit's
/// reading): a [`Rule`](crate::Rule) built from it ([`Rule::builder_of`](crate::Rule::builder_of))
/// never reaches a store and holds no state.
///
/// ```
/// use rate_guard_core::parse_rates;
///
/// let rates = parse_rates("0/minute; 5/second")?;
/// assert_eq!(rates[0].count(), 0);
/// assert!(rates[0].quota().is_none());
/// assert_eq!(rates[1].quota().unwrap().to_string(), "5/second");
/// assert_eq!(rates[0].to_string(), "0/minute");
/// # Ok::<(), rate_guard_core::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    /// `count` replaced by 1 when it is 0: the period, checked once by [`Quota`].
    period: Quota,
}

impl Rate {
    /// A rate of `count` (0 included) per the period of `period`.
    #[must_use]
    pub const fn new(count: u32, period: Quota) -> Rate {
        Rate { count, period }
    }

    /// How many requests the rate admits per period (0: none).
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    #[must_use]
    pub const fn period(&self) -> Duration {
        self.period.period()
    }

    /// The quota of a rate that admits something; `None` for a count of 0.
    #[must_use]
    pub fn quota(&self) -> Option<Quota> {
        NonZeroU32::new(self.count).map(|count| Quota {
            count,
            period_ms: self.period.period_ms,
        })
    }

    /// A quota of the same period and a count of 1 (what a refusing rule carries).
    pub(crate) const fn period_quota(&self) -> Quota {
        Quota {
            count: NonZeroU32::MIN,
            period_ms: self.period.period_ms,
        }
    }
}

impl From<Quota> for Rate {
    fn from(quota: Quota) -> Rate {
        Rate {
            count: quota.count.get(),
            period: quota,
        }
    }
}

/// As [`Quota`] prints: `0/minute`, `10/5 minutes`.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.period_quota().to_string();
        // The period's text follows the count: `1/minute` -> `0/minute`.
        let (_, period) = shown.split_once('/').unwrap_or(("", &shown));
        write!(f, "{}/{period}", self.count)
    }
}

/// A period unit: what rate strings are written in and what [`Quota`]'s `Display` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    /// 7 days; read, never printed (a quota prints in days).
    Week,
    /// 30 days, as in `limits`; read, never printed.
    Month,
    /// 365 days (`limits` counts 360); read, never printed.
    Year,
}

impl Unit {
    const LARGEST_FIRST: [Unit; 5] = [
        Unit::Day,
        Unit::Hour,
        Unit::Minute,
        Unit::Second,
        Unit::Millisecond,
    ];

    pub(crate) const fn millis(self) -> u64 {
        match self {
            Unit::Millisecond => 1,
            Unit::Second => 1_000,
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => MILLIS_PER_DAY,
            Unit::Week => 7 * MILLIS_PER_DAY,
            Unit::Month => 30 * MILLIS_PER_DAY,
            Unit::Year => 365 * MILLIS_PER_DAY,
        }
    }

    const fn singular(self) -> &'static str {
        match self {
            Unit::Millisecond => "millisecond",
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    const fn plural(self) -> &'static str {
        match self {
            Unit::Millisecond => "milliseconds",
            Unit::Second => "seconds",
            Unit::Minute => "minutes",
            Unit::Hour => "hours",
            Unit::Day => "days",
            Unit::Week => "weeks",
            Unit::Month => "months",
            Unit::Year => "years",
        }
    }
}

/// A period that [`Quota::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// A period below one millisecond.
    #[error("quota period {period:?} is too short: the minimum is 1ms")]
    PeriodTooShort {
        /// The period given.
        period: Duration,
    },
    /// A period with a fraction of a millisecond.
    #[error("quota period {period:?} is not a whole number of milliseconds")]
    PeriodNotWholeMilliseconds {
        /// The period given.
        period: Duration,
    },
    /// A period above [`Quota::MAX_PERIOD`].
    #[error("quota period {period:?} is too long: the maximum is 10000 days (864000000s)")]
    PeriodTooLong {
        /// The period given.
        period: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(count: u32) -> NonZeroU32 {
        NonZeroU32::new(count).unwrap()
    }

    fn quota(count: u32, period: Duration) -> Quota {
        Quota::new(n(count), period).unwrap()
    }

    #[test]
    fn constructors_agree_with_new() {
        assert_eq!(Quota::per_second(n(5)), quota(5, Duration::from_secs(1)));
        assert_eq!(Quota::per_minute(n(5)), quota(5, Duration::from_secs(60)));
        assert_eq!(Quota::per_hour(n(5)), quota(5, Duration::from_secs(3_600)));
        assert_eq!(Quota::per_day(n(5)), quota(5, Duration::from_secs(86_400)));
    }

    #[test]
    fn accessors() {
        let q = quota(7, Duration::from_millis(1_500));
        assert_eq!(q.count(), n(7));
        assert_eq!(q.period(), Duration::from_millis(1_500));
        assert_eq!(q.period_micros(), 1_500_000);
        let longest = quota(u32::MAX, Quota::MAX_PERIOD);
        assert_eq!(longest.period_micros(), 864_000_000_000_000);
        assert_eq!(Quota::MAX_PERIOD, Duration::from_secs(10_000 * 86_400));
    }

    #[test]
    fn bounds_are_inclusive() {
        assert!(Quota::new(n(1), Duration::from_millis(1)).is_ok());
        assert!(Quota::new(n(1), Quota::MAX_PERIOD).is_ok());
        assert_eq!(Quota::from_period_millis(n(1), 0), None);
        assert_eq!(Quota::from_period_millis(n(1), MAX_PERIOD_MILLIS + 1), None);
        assert_eq!(
            Quota::from_period_millis(n(1), MAX_PERIOD_MILLIS),
            Some(quota(1, Quota::MAX_PERIOD))
        );
    }

    #[test]
    fn errors_name_the_value_and_the_bound() {
        let cases = [
            (
                Duration::ZERO,
                "quota period 0ns is too short: the minimum is 1ms",
            ),
            (
                Duration::from_micros(999),
                "quota period 999µs is too short: the minimum is 1ms",
            ),
            (
                Duration::from_micros(1_500),
                "quota period 1.5ms is not a whole number of milliseconds",
            ),
            (
                Duration::from_nanos(60_000_000_001),
                "quota period 60.000000001s is not a whole number of milliseconds",
            ),
            (
                Quota::MAX_PERIOD + Duration::from_millis(1),
                "quota period 864000000.001s is too long: the maximum is 10000 days (864000000s)",
            ),
            (
                Duration::MAX,
                "quota period 18446744073709551615.999999999s is too long: \
                 the maximum is 10000 days (864000000s)",
            ),
        ];
        for (period, message) in cases {
            let err = Quota::new(n(1), period).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        assert_eq!(
            Quota::new(n(1), Duration::from_micros(10)),
            Err(QuotaError::PeriodTooShort {
                period: Duration::from_micros(10)
            })
        );
        assert!(matches!(
            Quota::new(n(1), Duration::from_micros(2_001)),
            Err(QuotaError::PeriodNotWholeMilliseconds { .. })
        ));
        assert!(matches!(
            Quota::new(n(1), Duration::from_secs(864_000_001)),
            Err(QuotaError::PeriodTooLong { .. })
        ));
    }

    #[test]
    fn display_uses_the_largest_exact_unit() {
        let cases = [
            (100, 1_000, "100/second"),
            (100, 60_000, "100/minute"),
            (100, 3_600_000, "100/hour"),
            (100, 86_400_000, "100/day"),
            (3, 1, "3/millisecond"),
            (10, 300_000, "10/5 minutes"),
            (10, 7_200_000, "10/2 hours"),
            (10, 172_800_000, "10/2 days"),
            (3, 90_000, "3/90 seconds"),
            (7, 1_500, "7/1500 milliseconds"),
            (1, 5_400_000, "1/90 minutes"),
            (1, 90_000_000, "1/25 hours"),
            (u32::MAX, MAX_PERIOD_MILLIS, "4294967295/10000 days"),
            (1, MAX_PERIOD_MILLIS - 1, "1/863999999999 milliseconds"),
        ];
        for (count, period_ms, shown) in cases {
            let q = quota(count, Duration::from_millis(period_ms));
            assert_eq!(q.to_string(), shown);
            assert_eq!(shown.parse::<Quota>(), Ok(q), "{shown}");
        }
    }

    #[test]
    fn from_str_takes_one_limit() {
        assert_eq!("5 per second".parse::<Quota>(), Ok(Quota::per_second(n(5))));
        let err = "1/s;2/m".parse::<Quota>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#""1/s;2/m": expected a single limit, found ';' at column 4"#
        );
    }
}
