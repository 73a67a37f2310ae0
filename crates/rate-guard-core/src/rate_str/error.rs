//! [`ParseError`]: what a rate string got wrong, and where.

use std::fmt;

/// A rate string that does not parse: the input, where, and what is wrong.
///
/// Displays as `"10/fortnight": unknown unit "fortnight" (the units are ...) at column 4`. Every quoted part is
/// cut to [`MAX_QUOTED_CHARS`] characters (and marked `…`), so that a message stays short
/// whatever the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {kind} at column {column}", Quoted(input))]
pub struct ParseError {
    input: String,
    column: usize,
    kind: ParseErrorKind,
}

impl ParseError {
    /// An error about `input` whose bad part starts at `byte_offset`, a char boundary.
    pub(super) fn new(input: &str, byte_offset: usize, kind: ParseErrorKind) -> ParseError {
        let chars_before = input
            .char_indices()
            .take_while(|&(i, _)| i < byte_offset)
            .count();
        ParseError {
            input: input.to_owned(),
            column: chars_before + 1,
            kind,
        }
    }

    /// The whole rate string that failed.
    #[must_use]
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The 1-based column, counted in chars, where the bad part starts (one past the last char
    /// when the input ends too early).
    #[must_use]
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong.
    #[must_use]
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }
}

/// What is wrong with a rate string. `found` is `None` at the end of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    Empty,
    /// No digits where a limit's count belongs.
    ExpectedCount {
        /// What stands there instead.
        found: Option<String>,
    },
    /// A count of zero.
    CountZero,
    /// A count above `u32::MAX`.
    CountTooLarge {
        /// The count's digits as written.
        count: String,
    },
    /// Neither `/` nor `per` after the count.
    ExpectedSeparator {
        /// What stands there instead.
        found: Option<String>,
    },
    /// No unit after `/`, `per` or the multiplier.
    ExpectedUnit {
        /// What stands there instead.
        found: Option<String>,
    },
    /// A word that names no unit.
    UnknownUnit {
        /// The word as written.
        unit: String,
    },
    /// A multiplier of zero (`10/0 minutes`).
    MultiplierZero,
    /// A multiplier times its unit above [`Quota::MAX_PERIOD`](crate::Quota::MAX_PERIOD),
    /// 10,000 days.
    PeriodTooLarge {
        /// The multiplier and unit as written.
        period: String,
    },
    /// Nothing between a separator and the next one or the end of the input.
    EmptyLimit {
        /// The separator before the empty limit.
        separator: char,
    },
    /// Something after a complete limit that is not a separator.
    TrailingInput {
        /// The rest of the input.
        rest: String,
    },
    /// A separator where exactly one limit is expected ([`Quota`](crate::Quota)'s `FromStr`).
    ExpectedSingle {
        /// The separator found.
        separator: char,
    },
}

/// The units a rate string may name, with the fixed lengths of the calendar ones.
const UNITS: &str =
    "millisecond, second, minute, hour, day, week = 7 days, month = 30 days, year = 365 days";

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty rate string"),
            Self::ExpectedCount { found } => write!(f, "expected a count, found {}", Found(found)),
            Self::CountZero => f.write_str("count must be at least 1"),
            Self::CountTooLarge { count } => {
                write!(f, "count {} is too large (max {})", Quoted(count), u32::MAX)
            }
            Self::ExpectedSeparator { found } => {
                write!(
                    f,
                    "expected '/' or \"per\" after the count, found {}",
                    Found(found)
                )
            }
            Self::ExpectedUnit { found } => {
                write!(f, "expected a unit ({UNITS}), found {}", Found(found))
            }
            Self::UnknownUnit { unit } => {
                write!(f, "unknown unit {} (the units are {UNITS})", Quoted(unit))
            }
            Self::MultiplierZero => f.write_str("period multiplier must be at least 1"),
            Self::PeriodTooLarge { period } => {
                write!(f, "period {} is too long (max 10000 days)", Quoted(period))
            }
            Self::EmptyLimit { separator } => write!(f, "empty limit after {separator:?}"),
            Self::TrailingInput { rest } => {
                write!(f, "unexpected {} after the limit", Quoted(rest))
            }
            Self::ExpectedSingle { separator } => {
                write!(f, "expected a single limit, found {separator:?}")
            }
        }
    }
}

struct Found<'a>(&'a Option<String>);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(found) => Quoted(found).fmt(f),
            None => f.write_str("end of input"),
        }
    }
}

/// The most characters of the input an error message quotes.
pub const MAX_QUOTED_CHARS: usize = 80;

/// A part of the input in quotes (`Debug` escapes), cut to [`MAX_QUOTED_CHARS`] characters.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_QUOTED_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((end, _)) => write!(f, "{:?}…", &self.0[..end]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ParseErrorKind as K;
    use super::UNITS;
    use crate::rate_str::parse_quotas;
    use crate::Quota;

    /// Parses `input`, which must fail at `column` with `message`; returns the kind.
    fn error(input: &str, column: usize, message: &str) -> K {
        let err = parse_quotas(input).unwrap_err();
        assert_eq!(err.input(), input);
        assert_eq!(err.column(), column, "{input:?}");
        assert_eq!(
            err.to_string(),
            format!("{input:?}: {message} at column {column}")
        );
        err.kind().clone()
    }

    #[test]
    fn brief_and_readme_messages_verbatim() {
        let shown = |input: &str| parse_quotas(input).unwrap_err().to_string();
        let fortnight = format!(
            r#""10/fortnight": unknown unit "fortnight" (the units are {UNITS}) at column 4"#
        );
        assert_eq!(shown("10/fortnight"), fortnight);
        assert_eq!(
            shown("0/minute"),
            r#""0/minute": count must be at least 1 at column 1"#
        );
        assert_eq!(shown(""), r#""": empty rate string at column 1"#);
        assert_eq!(
            shown("10/minute;"),
            r#""10/minute;": empty limit after ';' at column 11"#
        );
        let too_large =
            r#""99999999999/s": count "99999999999" is too large (max 4294967295) at column 1"#;
        assert_eq!(shown("99999999999/s"), too_large);
    }

    #[test]
    fn messages_quote_at_most_80_characters() {
        let long = format!("10/{}", "x".repeat(100_000));
        let shown = parse_quotas(&long).unwrap_err().to_string();
        let cut = format!("10/{}", "x".repeat(77));
        assert_eq!(
            shown,
            format!(
                "{cut:?}…: unknown unit {:?}… (the units are {UNITS}) at column 4",
                "x".repeat(80)
            )
        );
        let exactly = "1".repeat(80);
        assert!(parse_quotas(&exactly)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("{exactly:?}: count")));
    }

    #[test]
    fn empty_input() {
        assert_eq!(error("", 1, "empty rate string"), K::Empty);
        assert_eq!(error(" \t\n", 1, "empty rate string"), K::Empty);
    }

    #[test]
    fn bad_counts() {
        let expected = |found: &str| K::ExpectedCount {
            found: Some(found.into()),
        };
        let msg = r#"expected a count, found "abc""#;
        assert_eq!(error("abc/s", 1, msg), expected("abc"));
        assert_eq!(
            error("  -5/s", 3, r#"expected a count, found "-""#),
            expected("-")
        );
        assert_eq!(
            error(";1/s", 1, r#"expected a count, found ";""#),
            expected(";")
        );
        assert_eq!(
            error("é1/s", 1, r#"expected a count, found "é1""#),
            expected("é1")
        );

        assert_eq!(
            error("0/minute", 1, "count must be at least 1"),
            K::CountZero
        );
        assert_eq!(
            error("1/s; 000 per s", 6, "count must be at least 1"),
            K::CountZero
        );

        let msg = r#"count "4294967296" is too large (max 4294967295)"#;
        let kind = K::CountTooLarge {
            count: "4294967296".into(),
        };
        assert_eq!(error(" 4294967296/s", 2, msg), kind);
        // 2^64 + 5: a wrapping accumulator would read it as 5.
        let msg = r#"count "18446744073709551621" is too large (max 4294967295)"#;
        let kind = K::CountTooLarge {
            count: "18446744073709551621".into(),
        };
        assert_eq!(error("18446744073709551621/s", 1, msg), kind);
        let digits = "1".repeat(40);
        let msg = format!("count {digits:?} is too large (max 4294967295)");
        assert_eq!(
            error(&format!("{digits}/s"), 1, &msg),
            K::CountTooLarge { count: digits }
        );
    }

    #[test]
    fn bad_separators() {
        let expected = |found| K::ExpectedSeparator { found };
        let msg = |found| format!(r#"expected '/' or "per" after the count, found {found}"#);
        assert_eq!(error("100", 4, &msg("end of input")), expected(None));
        assert_eq!(
            error("100 minute", 5, &msg(r#""minute""#)),
            expected(Some("minute".into()))
        );
        let kind = expected(Some("perminute".into()));
        assert_eq!(error("100 perminute", 5, &msg(r#""perminute""#)), kind);
        assert_eq!(
            error("1.5/s", 2, &msg(r#"".""#)),
            expected(Some(".".into()))
        );
    }

    #[test]
    fn bad_units() {
        let expected = |found| K::ExpectedUnit { found };
        let msg = |found| format!("expected a unit ({UNITS}), found {found}");
        assert_eq!(error("100/", 5, &msg("end of input")), expected(None));
        assert_eq!(
            error("10 per 5 ;", 10, &msg(r#"";""#)),
            expected(Some(";".into()))
        );
        assert_eq!(
            error("10/5 5s", 6, &msg(r#""5s""#)),
            expected(Some("5s".into()))
        );
        assert_eq!(
            error("1/😀s", 3, &msg(r#""😀""#)),
            expected(Some("😀".into()))
        );

        let unknown = |unit: &str| K::UnknownUnit { unit: unit.into() };
        let msg = &format!(r#"unknown unit "fortnight" (the units are {UNITS})"#);
        assert_eq!(error("10/fortnight", 4, msg), unknown("fortnight"));
        assert_eq!(
            error(
                "10/5 mïn",
                6,
                &format!(r#"unknown unit "mïn" (the units are {UNITS})"#)
            ),
            unknown("mïn")
        );
        assert_eq!(
            error(
                "10 per Minuten",
                8,
                &format!(r#"unknown unit "Minuten" (the units are {UNITS})"#)
            ),
            unknown("Minuten")
        );
    }

    #[test]
    fn bad_periods() {
        let msg = "period multiplier must be at least 1";
        assert_eq!(error("10/0 minutes", 4, msg), K::MultiplierZero);
        assert_eq!(error("10 per 000s", 8, msg), K::MultiplierZero);

        let too_large = |period: &str| K::PeriodTooLarge {
            period: period.into(),
        };
        let msg = r#"period "10001 days" is too long (max 10000 days)"#;
        assert_eq!(error("10/10001 days", 4, msg), too_large("10001 days"));
        let msg = r#"period "864000000001ms" is too long (max 10000 days)"#;
        assert_eq!(
            error("1/864000000001ms", 3, msg),
            too_large("864000000001ms")
        );
        // Multipliers whose product with the unit wraps past 2^64 to a small number.
        for (unit_ms, unit) in [
            (1_000, "s"),
            (60_000, "m"),
            (3_600_000, "h"),
            (86_400_000, "d"),
        ] {
            let period = format!("{}{unit}", (1u128 << 64).div_ceil(unit_ms));
            let msg = format!("period {period:?} is too long (max 10000 days)");
            assert_eq!(error(&format!("1/{period}"), 3, &msg), too_large(&period));
        }
        let period = format!("{} ms", "1".repeat(40));
        let msg = format!("period {period:?} is too long (max 10000 days)");
        let input = format!("1/s; 1 per {period}");
        assert_eq!(error(&input, 12, &msg), too_large(&period));
    }

    #[test]
    fn empty_limits() {
        let after = |separator| K::EmptyLimit { separator };
        assert_eq!(error("10/minute;", 11, "empty limit after ';'"), after(';'));
        assert_eq!(error("1/s;;2/m", 5, "empty limit after ';'"), after(';'));
        assert_eq!(error("1/s , | 2/m", 6, "empty limit after ','"), after(','));
        assert_eq!(error("1/s|  ", 5, "empty limit after '|'"), after('|'));
    }

    #[test]
    fn trailing_input() {
        let rest = |rest: &str| K::TrailingInput { rest: rest.into() };
        let msg = r#"unexpected "xyz" after the limit"#;
        assert_eq!(error("10/minute xyz", 11, msg), rest("xyz"));
        assert_eq!(
            error("10/ms2", 6, r#"unexpected "2" after the limit"#),
            rest("2")
        );
        assert_eq!(
            error("1/s 2/m ", 5, r#"unexpected "2/m" after the limit"#),
            rest("2/m")
        );
        let msg = r#"unexpected "\u{a0}" after the limit"#;
        assert_eq!(error("1/s;2/s\u{a0}", 8, msg), rest("\u{a0}"));
    }

    #[test]
    fn a_single_limit_refuses_separators() {
        for (input, separator, column) in
            [("1/s;2/m", ';', 4), ("1/s ,2/m", ',', 5), ("1/s|", '|', 4)]
        {
            let err = input.parse::<Quota>().unwrap_err();
            assert_eq!(err.kind(), &K::ExpectedSingle { separator }, "{input:?}");
            assert_eq!(err.column(), column);
        }
        let err = "1/s;2/m".parse::<Quota>().unwrap_err();
        let msg = r#""1/s;2/m": expected a single limit, found ';' at column 4"#;
        assert_eq!(err.to_string(), msg);
        let err = "1/s 2/m".parse::<Quota>().unwrap_err();
        assert_eq!(err.kind(), &K::TrailingInput { rest: "2/m".into() });
        let err = "  ".parse::<Quota>().unwrap_err();
        assert_eq!(err.to_string(), r#""  ": empty rate string at column 1"#);
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        assert_eq!(parse_quotas("1/s; 2/m; ééé").unwrap_err().column(), 11);
        let err = parse_quotas("1/s;😀").unwrap_err();
        assert_eq!(
            err.kind(),
            &K::ExpectedCount {
                found: Some("😀".into())
            }
        );
        assert_eq!(err.column(), 5);
    }

    #[test]
    fn control_chars_are_escaped_in_messages() {
        let err = parse_quotas("1/s\"\n\u{1b}[31m").unwrap_err();
        let msg = r#""1/s\"\n\u{1b}[31m": unexpected "\"\n\u{1b}[31m" after the limit at column 4"#;
        assert_eq!(err.to_string(), msg);
    }
}
