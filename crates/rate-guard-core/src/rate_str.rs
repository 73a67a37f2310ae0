//! The one parser for rate strings such as `"100/minute"` or `"10 per second; 1000/hour"`.
//!
//! Grammar (case-insensitive; ASCII whitespace is allowed around every token):
//!
//! ```text
//! rates      := limit (separator limit)*
//! separator  := ";" | "," | "|"
//! limit      := COUNT ("/" | "per") [MULTIPLIER] UNIT
//! COUNT      := decimal digits, 0 ..= 4294967295 (0 only through `parse_rates`: a rule
//!               that refuses every request)
//! MULTIPLIER := decimal digits, at least 1; MULTIPLIER × UNIT is at most 10000 days
//! UNIT       := second | seconds | sec | secs | s
//!             | minute | minutes | min | mins | m
//!             | hour | hours | hr | hrs | h
//!             | day | days | d
//!             | week | weeks | wk | wks | w            (7 days)
//!             | month | months | mo | mos             (30 days, as in `limits`)
//!             | year | years | yr | yrs | y            (365 days; `limits` counts 360)
//!             | millisecond | milliseconds | ms
//! ```
//!
//! Singular and plural are interchangeable (`10/5 minute`, `100/minutes`). Milliseconds are
//! there so that every [`Quota`]'s `Display` parses back. Weeks, months and years are fixed
//! lengths, not calendar ones: a month is 30 days whatever the month, a year 365 days, and
//! windows are aligned to the epoch like every other period; a quota prints them in days
//! (`1/month` prints as `1/30 days`). Any other word (`fortnight`, `quarter`, `decade`) is an
//! error that lists these units. Errors quote the input and give the
//! 1-based column, counted in chars, where the bad part starts.

use std::num::NonZeroU32;

use crate::quota::{Quota, Rate, Unit};

mod error;

pub use error::{ParseError, ParseErrorKind, MAX_QUOTED_CHARS};

/// Parses one or more limits joined by `;`, `,` or `|`, in the order written.
///
/// ```
/// use rate_guard_core::{parse_quotas, Quota};
/// use std::time::Duration;
///
/// let quotas = parse_quotas("10 per second; 1000/hour | 10/5m")?;
/// assert_eq!(quotas.len(), 3);
/// assert_eq!(quotas[2].count().get(), 10);
/// assert_eq!(quotas[2].period(), Duration::from_secs(300));
///
/// let err = parse_quotas("10/fortnight").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#""10/fortnight": unknown unit "fortnight" (the units are millisecond, second, "#.to_owned()
///         + "minute, hour, day, week = 7 days, month = 30 days, year = 365 days) at column 4"
/// );
/// assert_eq!(err.column(), 4);
/// # Ok::<(), rate_guard_core::ParseError>(())
/// ```
pub fn parse_quotas(input: &str) -> Result<Vec<Quota>, ParseError> {
    parse_list(input, Scanner::quota)
}

/// [`parse_quotas`] that also takes a count of 0 (`"0/minute"`: a rule that refuses every
/// request), as [`Rate`]s. What the configuration's rate strings are read with.
///
/// ```
/// use rate_guard_core::{parse_quotas, parse_rates};
///
/// assert_eq!(parse_rates("0/m; 10/s")?.len(), 2);
/// assert!(parse_quotas("0/m").is_err());
/// # Ok::<(), rate_guard_core::ParseError>(())
/// ```
pub fn parse_rates(input: &str) -> Result<Vec<Rate>, ParseError> {
    parse_list(input, Scanner::limit)
}

/// One or more items read by `item`, joined by separators (surrounding whitespace allowed).
fn parse_list<'a, T>(
    input: &'a str,
    item: impl Fn(&mut Scanner<'a>) -> Result<T, ParseError>,
) -> Result<Vec<T>, ParseError> {
    let mut scanner = Scanner::start(input)?;
    let mut items = vec![item(&mut scanner)?];
    loop {
        scanner.skip_whitespace();
        let separator_at = scanner.pos;
        match scanner.peek() {
            None => return Ok(items),
            Some(separator) if is_separator(separator) => {
                scanner.bump();
                scanner.skip_whitespace();
                if scanner.peek().is_none_or(is_separator) {
                    // Separators are ASCII: the byte after one starts a char.
                    let kind = ParseErrorKind::EmptyLimit { separator };
                    return Err(scanner.error_at(separator_at + 1, kind));
                }
                items.push(item(&mut scanner)?);
            }
            Some(_) => return Err(scanner.trailing_input()),
        }
    }
}

/// Parses exactly one limit: [`Quota`]'s `FromStr`.
pub(crate) fn parse_single(input: &str) -> Result<Quota, ParseError> {
    let mut scanner = Scanner::start(input)?;
    let quota = scanner.quota()?;
    scanner.skip_whitespace();
    match scanner.peek() {
        None => Ok(quota),
        Some(separator) if is_separator(separator) => {
            Err(scanner.error_here(ParseErrorKind::ExpectedSingle { separator }))
        }
        Some(_) => Err(scanner.trailing_input()),
    }
}

const UNIT_NAMES: [(Unit, &[&str]); 8] = [
    (Unit::Second, &["second", "seconds", "sec", "secs", "s"]),
    (Unit::Minute, &["minute", "minutes", "min", "mins", "m"]),
    (Unit::Hour, &["hour", "hours", "hr", "hrs", "h"]),
    (Unit::Day, &["day", "days", "d"]),
    (Unit::Week, &["week", "weeks", "wk", "wks", "w"]),
    (Unit::Month, &["month", "months", "mo", "mos"]),
    (Unit::Year, &["year", "years", "yr", "yrs", "y"]),
    (Unit::Millisecond, &["millisecond", "milliseconds", "ms"]),
];

fn unit_named(word: &str) -> Option<Unit> {
    UNIT_NAMES
        .iter()
        .find(|(_, names)| names.iter().any(|name| name.eq_ignore_ascii_case(word)))
        .map(|&(unit, _)| unit)
}

fn is_separator(c: char) -> bool {
    matches!(c, ';' | ',' | '|')
}

/// Decimal digits as a number; `None` when it does not fit in a `u64`.
fn decimal(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0u64, |n, digit| {
        n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// A cursor over the input. `pos` is a byte offset that only ever moves over whole chars, and
/// every read goes through `str::get`, so no input can make it slice inside a char.
struct Scanner<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn start(input: &'a str) -> Result<Self, ParseError> {
        let scanner = Scanner { input, pos: 0 };
        if input.trim_ascii().is_empty() {
            return Err(scanner.error_here(ParseErrorKind::Empty));
        }
        Ok(scanner)
    }

    fn rest(&self) -> &'a str {
        self.input.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) {
        self.pos += self.peek().map_or(0, char::len_utf8);
    }

    fn skip_whitespace(&mut self) {
        self.take_while(|c| c.is_ascii_whitespace());
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or_default()
    }

    /// What stands at the cursor, for an error message: a word, or a single other char.
    fn found(&self) -> Option<String> {
        let rest = self.rest();
        let first = rest.chars().next()?;
        if !first.is_alphanumeric() {
            return Some(first.to_string());
        }
        let len = rest
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(rest.len());
        rest.get(..len).map(str::to_owned)
    }

    /// `COUNT ("/" | "per") [MULTIPLIER] UNIT`, whitespace around each token; a count of 0
    /// allowed.
    fn limit(&mut self) -> Result<Rate, ParseError> {
        let count = self.count()?;
        self.per()?;
        let period = self.period(NonZeroU32::MIN)?;
        Ok(Rate::new(count, period))
    }

    /// [`limit`](Self::limit) with a count of at least 1.
    fn quota(&mut self) -> Result<Quota, ParseError> {
        self.skip_whitespace();
        let count_at = self.pos;
        let count = NonZeroU32::new(self.count()?)
            .ok_or_else(|| self.error_at(count_at, ParseErrorKind::CountZero))?;
        self.per()?;
        self.period(count)
    }

    fn count(&mut self) -> Result<u32, ParseError> {
        self.skip_whitespace();
        let count_at = self.pos;
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            let kind = ParseErrorKind::ExpectedCount {
                found: self.found(),
            };
            return Err(self.error_here(kind));
        }
        let Some(count) = decimal(digits).and_then(|n| u32::try_from(n).ok()) else {
            let kind = ParseErrorKind::CountTooLarge {
                count: digits.to_owned(),
            };
            return Err(self.error_at(count_at, kind));
        };
        Ok(count)
    }

    /// `/` or the word `per` (not merely a word that starts with it, like `perminute`).
    fn per(&mut self) -> Result<(), ParseError> {
        self.skip_whitespace();
        let rest = self.rest();
        let word_len = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        if rest.starts_with('/') {
            self.bump();
        } else if rest
            .get(..word_len)
            .is_some_and(|word| word.eq_ignore_ascii_case("per"))
        {
            self.pos += word_len;
        } else {
            let kind = ParseErrorKind::ExpectedSeparator {
                found: self.found(),
            };
            return Err(self.error_here(kind));
        }
        Ok(())
    }

    /// `[MULTIPLIER] UNIT`, making the quota once the period is known to be in bounds.
    fn period(&mut self, count: NonZeroU32) -> Result<Quota, ParseError> {
        self.skip_whitespace();
        let multiplier_at = self.pos;
        let digits = self.take_while(|c| c.is_ascii_digit());
        // `None` when the digits overflow: too long a period either way.
        let multiplier = if digits.is_empty() {
            Some(1)
        } else {
            decimal(digits)
        };
        if multiplier == Some(0) {
            return Err(self.error_at(multiplier_at, ParseErrorKind::MultiplierZero));
        }

        self.skip_whitespace();
        let unit_at = self.pos;
        let word = self.take_while(char::is_alphabetic);
        if word.is_empty() {
            let kind = ParseErrorKind::ExpectedUnit {
                found: self.found(),
            };
            return Err(self.error_here(kind));
        }
        let Some(unit) = unit_named(word) else {
            let kind = ParseErrorKind::UnknownUnit {
                unit: word.to_owned(),
            };
            return Err(self.error_at(unit_at, kind));
        };
        multiplier
            .and_then(|m| m.checked_mul(unit.millis()))
            .and_then(|period_ms| Quota::from_period_millis(count, period_ms))
            .ok_or_else(|| {
                let period = self.input.get(multiplier_at..self.pos).unwrap_or_default();
                let kind = ParseErrorKind::PeriodTooLarge {
                    period: period.to_owned(),
                };
                self.error_at(multiplier_at, kind)
            })
    }

    fn trailing_input(&self) -> ParseError {
        let rest = self.rest().trim_ascii_end().to_owned();
        self.error_here(ParseErrorKind::TrailingInput { rest })
    }

    fn error_here(&self, kind: ParseErrorKind) -> ParseError {
        self.error_at(self.pos, kind)
    }

    fn error_at(&self, byte_offset: usize, kind: ParseErrorKind) -> ParseError {
        ParseError::new(self.input, byte_offset, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn q(count: u32, period_ms: u64) -> Quota {
        Quota::new(
            NonZeroU32::new(count).unwrap(),
            Duration::from_millis(period_ms),
        )
        .unwrap()
    }

    const S: u64 = 1_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;

    #[test]
    fn documented_forms() {
        let cases = [
            ("100/minute", q(100, M)),
            ("100 per minute", q(100, M)),
            ("10/5 minutes", q(10, 5 * M)),
            ("10 per 2 hours", q(10, 2 * H)),
            ("10/5m", q(10, 5 * M)),
            ("5 / 2 s", q(5, 2 * S)),
            ("10/5 minute", q(10, 5 * M)),
            ("100/minutes", q(100, M)),
            ("100PER MINUTE", q(100, M)),
            ("100per2Hours", q(100, 2 * H)),
            (" \t100\n/\r\n5\x0cmin  ", q(100, 5 * M)),
            ("007/0003 s", q(7, 3 * S)),
            ("4294967295/s", q(u32::MAX, S)),
            ("1/10000 days", q(1, 10_000 * D)),
            ("1/240000h", q(1, 10_000 * D)),
            ("1/864000000000ms", q(1, 10_000 * D)),
            ("7/1500 milliseconds", q(7, 1_500)),
        ];
        for (input, quota) in cases {
            assert_eq!(parse_quotas(input), Ok(vec![quota]), "{input:?}");
            assert_eq!(input.parse::<Quota>(), Ok(quota), "{input:?}");
        }
    }

    #[test]
    fn every_unit_alias_in_any_case() {
        let aliases = [
            (1, "millisecond milliseconds ms"),
            (S, "second seconds sec secs s"),
            (M, "minute minutes min mins m"),
            (H, "hour hours hr hrs h"),
            (D, "day days d"),
            (7 * D, "week weeks wk wks w"),
            (30 * D, "month months mo mos"),
            (365 * D, "year years yr yrs y"),
        ];
        for (unit_ms, names) in aliases {
            for name in names.split(' ') {
                for written in [name.to_owned(), name.to_uppercase(), capitalized(name)] {
                    assert_eq!(
                        format!("3/{written}").parse(),
                        Ok(q(3, unit_ms)),
                        "{written}"
                    );
                    let many = format!("3 per 4 {written}");
                    assert_eq!(many.parse(), Ok(q(3, 4 * unit_ms)), "{many}");
                }
            }
        }
    }

    fn capitalized(word: &str) -> String {
        word.get(..1).unwrap().to_uppercase() + word.get(1..).unwrap()
    }

    #[test]
    fn separators_may_be_mixed() {
        let expected = vec![q(1, S), q(2, M), q(3, H), q(4, D)];
        for input in [
            "1/s;2/m;3/h;4/d",
            "1/s,2/m,3/h,4/d",
            "1/s|2/m|3/h|4/d",
            "1/s ; 2 per minute,3/hour |\t4/1 day",
        ] {
            assert_eq!(parse_quotas(input), Ok(expected.clone()), "{input:?}");
        }
        assert_eq!(parse_quotas("5/s;5/s"), Ok(vec![q(5, S), q(5, S)]));
    }

    #[test]
    fn calendar_units_are_fixed_lengths() {
        assert_eq!(parse_quotas("1/month"), Ok(vec![q(1, 30 * D)]));
        assert_eq!(parse_quotas("5 per 2 years"), Ok(vec![q(5, 730 * D)]));
        assert_eq!(parse_quotas("3/wk"), Ok(vec![q(3, 7 * D)]));
        // Printed in days, which parse back.
        assert_eq!(q(1, 30 * D).to_string(), "1/30 days");
        assert_eq!(q(1, 365 * D).to_string(), "1/365 days");
        // 27 years fit in 10,000 days, 28 do not.
        assert_eq!(parse_quotas("1/27 years"), Ok(vec![q(1, 27 * 365 * D)]));
        assert!(parse_quotas("1/28 years").is_err());
        assert!(parse_quotas("1/334 months").is_err());
        for word in ["fortnight", "quarter", "decade", "century", "weekly"] {
            let err = parse_quotas(&format!("1/{word}")).unwrap_err().to_string();
            assert!(
                err.contains("month = 30 days, year = 365 days"),
                "{word}: {err}"
            );
        }
    }

    #[test]
    fn rates_take_a_count_of_zero_and_quotas_do_not() {
        let rates = parse_rates("0/minute; 5 per 2 hours").unwrap();
        assert_eq!(rates[0].count(), 0);
        assert_eq!(rates[0].period(), Duration::from_secs(60));
        assert_eq!(rates[1].quota(), Some(q(5, 2 * H)));
        assert_eq!(rates[0].to_string(), "0/minute");
        assert_eq!(Rate::new(0, q(1, 90 * S)).to_string(), "0/90 seconds");
        let err = parse_quotas("0/minute").unwrap_err();
        assert_eq!(err.kind(), &ParseErrorKind::CountZero);
        assert!("0/m".parse::<Quota>().is_err());
        // The other errors are the same in both.
        for bad in [
            "",
            "1/",
            "1/0 s",
            "x/m",
            "1/fortnight",
            "1/s;",
            "4294967296/s",
        ] {
            assert_eq!(
                parse_rates(bad).unwrap_err(),
                parse_quotas(bad).unwrap_err(),
                "{bad:?}"
            );
        }
    }
}
