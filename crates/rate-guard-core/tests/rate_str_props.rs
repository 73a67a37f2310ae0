//! Property tests of the rate string parser: every `Quota` round-trips through its `Display`,
//! every spelling the grammar allows parses to the quota it names, and no input panics.

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use rate_guard_core::{parse_quotas, ParseErrorKind, Quota};

const MAX_PERIOD_MS: u64 = 10_000 * 86_400_000;

/// Each unit's length in milliseconds and every name the grammar gives it.
const UNITS: [(u64, &[&str]); 8] = [
    (1, &["millisecond", "milliseconds", "ms"]),
    (1_000, &["second", "seconds", "sec", "secs", "s"]),
    (60_000, &["minute", "minutes", "min", "mins", "m"]),
    (3_600_000, &["hour", "hours", "hr", "hrs", "h"]),
    (86_400_000, &["day", "days", "d"]),
    (7 * 86_400_000, &["week", "weeks", "wk", "wks", "w"]),
    (30 * 86_400_000, &["month", "months", "mo", "mos"]),
    (365 * 86_400_000, &["year", "years", "yr", "yrs", "y"]),
];

/// A count, biased towards the edges.
fn count() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..=100, Just(1), Just(u32::MAX), 1u32..=u32::MAX]
}

/// `(unit index, multiplier)` with `multiplier × unit` within bounds, biased towards exact units.
fn period() -> impl Strategy<Value = (usize, u64)> {
    (0..UNITS.len()).prop_flat_map(|unit| {
        let max = MAX_PERIOD_MS / UNITS[unit].0;
        let multiplier = prop_oneof![Just(1), 1..=100u64.min(max), Just(max), 1..=max];
        (Just(unit), multiplier)
    })
}

fn quota() -> impl Strategy<Value = Quota> {
    (count(), period()).prop_map(|(count, (unit, multiplier))| {
        let period = Duration::from_millis(multiplier * UNITS[unit].0);
        Quota::new(NonZeroU32::new(count).unwrap(), period).unwrap()
    })
}

/// Optional ASCII whitespace, as allowed around every token.
fn ws() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,2}"
}

/// `word` with each letter's case picked by `upper`.
fn recase(word: &str, upper: &[bool]) -> String {
    word.chars()
        .zip(upper.iter().chain(std::iter::repeat(&false)))
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// One limit spelled any way the grammar allows, with the quota it must parse to.
fn spelled_limit() -> impl Strategy<Value = (String, Quota)> {
    let spelling = (
        prop::collection::vec(ws(), 5),
        prop::sample::select(vec!["/", "per"]),
        "0{0,3}",
        any::<bool>(),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<bool>(), 12),
    );
    (count(), period(), spelling).prop_map(
        |(count, (unit, multiplier), (ws, slash, zeros, show_one, alias, upper))| {
            let (unit_ms, names) = UNITS[unit];
            let name = recase(names[alias.index(names.len())], &upper);
            let slash = recase(slash, &upper);
            let multiplier_text = if multiplier == 1 && !show_one {
                String::new()
            } else {
                format!("{zeros}{multiplier}")
            };
            // "per" needs something that is not a letter between it and the unit's name.
            let gap = if slash.len() == 3 && multiplier_text.is_empty() && ws[2].is_empty() {
                " "
            } else {
                &ws[2]
            };
            let text = format!(
                "{}{zeros}{count}{}{slash}{gap}{multiplier_text}{}{name}{}",
                ws[0], ws[1], ws[3], ws[4]
            );
            let period = Duration::from_millis(multiplier * unit_ms);
            (
                text,
                Quota::new(NonZeroU32::new(count).unwrap(), period).unwrap(),
            )
        },
    )
}

/// Strings made of the grammar's own alphabet.
fn grammar_alphabet() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9/ ;,|a-z]{0,40}", "[0-9/ ;,|a-zA-Z\t\u{a0}é😀]{0,40}"]
}

/// Mostly `valid`, sometimes nothing, sometimes junk: near misses reach every error.
fn piece(valid: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let junk = prop_oneof!["[0-9]{10,25}", "[a-z]{1,4}", "[;,|/ 0]", "."];
    prop_oneof![8 => valid, 1 => Just(String::new()), 1 => junk]
}

/// Limits joined by separators, each token possibly missing or mangled.
fn token_soup() -> impl Strategy<Value = String> {
    let names: Vec<String> = UNITS
        .iter()
        .flat_map(|(_, names)| names.iter().map(|name| (*name).to_owned()))
        .collect();
    let per = prop::sample::select(vec!["/".to_owned(), "per".to_owned(), "PER".to_owned()]);
    let limit = (
        piece("[0-9]{1,4}"),
        ws(),
        piece(per),
        " ?",
        piece("[0-9]{0,3}"),
        ws(),
        piece(prop::sample::select(names)),
        ws(),
    )
        .prop_map(|(count, a, per, b, multiplier, c, unit, d)| {
            [count, a, per, b, multiplier, c, unit, d].concat()
        });
    prop::collection::vec((limit, piece("[;,|]")), 1..4).prop_map(|limits| {
        let mut text = String::new();
        for (i, (limit, separator)) in limits.iter().enumerate() {
            if i > 0 {
                text.push_str(separator);
            }
            text.push_str(limit);
        }
        text
    })
}

/// What every error must satisfy: it quotes the input (its first 80 characters) and points
/// inside it (or just past it).
fn check_error(input: &str, err: &rate_guard_core::ParseError) {
    assert_eq!(err.input(), input);
    let chars = input.chars().count();
    assert!(
        (1..=chars + 1).contains(&err.column()),
        "column {} of {input:?}",
        err.column()
    );
    let shown = err.to_string();
    let quoted = if chars > rate_guard_core::rate_str::MAX_QUOTED_CHARS {
        let cut: String = input
            .chars()
            .take(rate_guard_core::rate_str::MAX_QUOTED_CHARS)
            .collect();
        format!("{cut:?}…: ")
    } else {
        format!("{input:?}: ")
    };
    assert!(shown.starts_with(&quoted), "{shown}");
    assert!(
        shown.ends_with(&format!(" at column {}", err.column())),
        "{shown}"
    );
}

/// Parses `input` both ways and checks that the two parsers and `Display` agree.
fn parse_and_check(input: &str) {
    let many = parse_quotas(input);
    let single = input.parse::<Quota>();
    match &many {
        Ok(quotas) => {
            assert!(!quotas.is_empty());
            for q in quotas {
                assert_eq!(q.to_string().parse::<Quota>(), Ok(*q));
            }
            if let [q] = quotas.as_slice() {
                assert_eq!(single, Ok(*q));
            } else {
                let err = single.as_ref().unwrap_err();
                assert!(
                    matches!(err.kind(), ParseErrorKind::ExpectedSingle { .. }),
                    "{err}"
                );
            }
        }
        Err(err) => {
            check_error(input, err);
            assert!(single.is_err(), "{input:?} parses alone but not as a list");
        }
    }
    if let Err(err) = &single {
        check_error(input, err);
    }
}

/// Digits of any length, including numbers just past `u64::MAX`, which wrap to small ones.
fn big_number() -> impl Strategy<Value = String> {
    let past_u64 = (1u128 << 64)..(1u128 << 64) + (1u128 << 40);
    prop_oneof![
        "[0-9]{1,45}",
        past_u64.prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
    ]
}

/// Decimal digits as a `u128`, `None` when they do not fit.
fn big(digits: &str) -> Option<u128> {
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        None
    } else {
        Some(digits.parse().unwrap_or(0))
    }
}

proptest! {
    #![proptest_config(common::config(1_000))]

    #[test]
    fn display_round_trips(q in quota()) {
        let shown = q.to_string();
        prop_assert_eq!(shown.parse::<Quota>(), Ok(q));
        prop_assert_eq!(parse_quotas(&shown), Ok(vec![q]));
    }

    #[test]
    fn joined_displays_round_trip(
        parts in prop::collection::vec(
            (quota(), ws(), prop::sample::select(vec![';', ',', '|']), ws()),
            1..6,
        ),
        lead in ws(),
        tail in ws(),
    ) {
        let mut text = lead;
        for (i, (q, before, separator, after)) in parts.iter().enumerate() {
            if i > 0 {
                text.push_str(before);
                text.push(*separator);
                text.push_str(after);
            }
            text.push_str(&q.to_string());
        }
        text.push_str(&tail);
        let quotas: Vec<Quota> = parts.iter().map(|part| part.0).collect();
        prop_assert_eq!(parse_quotas(&text), Ok(quotas));
    }

    #[test]
    fn every_spelling_parses_to_its_quota((text, q) in spelled_limit()) {
        prop_assert_eq!(text.parse::<Quota>(), Ok(q), "{:?}", text);
    }

    #[test]
    fn huge_numbers_are_judged_exactly(
        count in big_number(),
        multiplier in big_number(),
        unit in 0..UNITS.len(),
    ) {
        let (unit_ms, names) = UNITS[unit];
        let text = format!("{count}/{multiplier} {}", names[0]);
        let period_ms = big(&multiplier).and_then(|m| m.checked_mul(u128::from(unit_ms)));
        let expected = match (big(&count), period_ms) {
            (Some(0), _) => Err(ParseErrorKind::CountZero),
            (Some(c), _) if c > u128::from(u32::MAX) => {
                Err(ParseErrorKind::CountTooLarge { count: count.clone() })
            }
            (None, _) => Err(ParseErrorKind::CountTooLarge { count: count.clone() }),
            (_, Some(0)) => Err(ParseErrorKind::MultiplierZero),
            (Some(c), Some(ms)) if ms <= u128::from(MAX_PERIOD_MS) => Ok((c, ms)),
            _ => {
                let period = format!("{multiplier} {}", names[0]);
                Err(ParseErrorKind::PeriodTooLarge { period })
            }
        };
        let parsed = text
            .parse::<Quota>()
            .map(|q| (u128::from(q.count().get()), q.period().as_millis()))
            .map_err(|err| err.kind().clone());
        prop_assert_eq!(parsed, expected, "{:?}", text);
    }

    #[test]
    fn any_unicode_never_panics(input in any::<String>()) {
        parse_and_check(&input);
    }

    #[test]
    fn grammar_alphabet_never_panics(input in grammar_alphabet()) {
        parse_and_check(&input);
    }

    #[test]
    fn token_soup_never_panics(input in token_soup()) {
        parse_and_check(&input);
    }
}
