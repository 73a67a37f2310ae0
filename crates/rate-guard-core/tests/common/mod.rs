//! Shared strategies for the property tests.
#![allow(dead_code, unreachable_pub)]

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rate_guard_core::{Algorithm, Quota, Rule};

/// Proptest settings: failing cases are kept in `<test file>.regressions`, committed.
/// `PROPTEST_CASES` raises the number of cases (the soak run does).
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// Periods worth testing: tiny, odd, round and long.
pub fn period() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::from_millis(1)),
        Just(Duration::from_millis(7)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_millis(1_500)),
        Just(Duration::from_secs(60)),
        Just(Duration::from_secs(3_600)),
        Just(Duration::from_secs(86_400 * 7)),
    ]
}

/// A rule of `algorithm` with a small count (dense decisions) or, sometimes, a large one.
pub fn rule(algorithm: Algorithm) -> impl Strategy<Value = Rule> {
    let count = prop_oneof![4 => 1u32..=12, 1 => 13u32..=1_000, 1 => Just(u32::MAX)];
    let count = if algorithm == Algorithm::SlidingLog {
        (1u32..=40).boxed()
    } else {
        count.boxed()
    };
    rule_with(algorithm, count)
}

/// Any algorithm's rule with a count of at most 200 (a capacity of at most 250).
pub fn small_rule() -> impl Strategy<Value = Rule> {
    prop::sample::select(Algorithm::ALL.to_vec())
        .prop_flat_map(|a| rule_with(a, prop_oneof![3 => 1u32..=12, 1 => 13u32..=200].boxed()))
}

fn rule_with(algorithm: Algorithm, count: BoxedStrategy<u32>) -> impl Strategy<Value = Rule> {
    (count, period(), 0u32..=3).prop_map(move |(count, period, burst_extra)| {
        let quota = Quota::new(NonZeroU32::new(count).unwrap(), period).unwrap();
        let mut b = Rule::builder(quota).algorithm(algorithm);
        if algorithm == Algorithm::TokenBucket && burst_extra > 0 {
            b = b.burst(
                count
                    .saturating_mul(burst_extra)
                    .min(count.saturating_add(50)),
            );
        }
        b.build().unwrap()
    })
}

/// Any algorithm's rule.
pub fn any_rule() -> impl Strategy<Value = Rule> {
    prop::sample::select(Algorithm::ALL.to_vec()).prop_flat_map(rule)
}

/// A step of a timeline: advance the clock by a fraction of the period, then send a request.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Microseconds to advance, as a fraction (per mille) of the period, plus a jitter.
    pub advance_permille: u32,
    pub jitter_micros: u64,
    /// The request's weight, relative to the rule's capacity.
    pub cost: u32,
}

pub fn steps(len: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop_oneof![3 => Just(0u32), 4 => 0u32..200, 2 => 200u32..1_200, 1 => 1_200u32..3_000],
            prop_oneof![Just(0u64), 0u64..1_000],
            prop_oneof![8 => Just(1u32), 3 => 2u32..5, 1 => 5u32..60],
        )
            .prop_map(|(advance_permille, jitter_micros, cost)| Step {
                advance_permille,
                jitter_micros,
                cost,
            }),
        1..len,
    )
}

impl Step {
    pub fn advance(&self, rule: &Rule) -> Duration {
        let micros =
            rule.period_micros() / 1_000 * u64::from(self.advance_permille) + self.jitter_micros;
        Duration::from_micros(micros)
    }
}

/// A fixed starting time: 2023-11-14, mid-window for most periods.
pub const START_MICROS: u64 = 1_700_000_000_123_456;
