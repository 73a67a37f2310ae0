//! Token bucket as GCRA: per key, the time of the last admission and the backlog then.
//!
//! The theoretical arrival time (`tat`) of GCRA is kept as `at + debt`: `at` a whole
//! microsecond, `debt` (an `f64`, at most `burst × interval`) the backlog of admitted work at
//! `at`. Keeping the fractional part small, instead of adding fractions to a timestamp near 2^51,
//! keeps every sum exact to far below a microsecond. With `interval = period / limit`, in this
//! order:
//!
//! ```text
//! n        = max(now, at)                          -- a clock that steps back waits for `at`
//! backlog  = max(debt - (n - at), 0)
//! excess k = backlog - (burst - k) * interval      -- how long until cost k fits, from n
//! admits k = excess k <= interval * 1e-6
//! new at   = n;  new debt = backlog + cost * interval
//! ```
//!
//! The tolerance (a millionth of a token) absorbs the last-bit differences between adding the
//! interval k times and multiplying it by k, so that `remaining` unit requests in a row are
//! admitted exactly as reported; it can never add up to an extra admission. A denied request
//! waits the first whole microsecond at which the same predicate holds.

use std::time::Duration;

use super::{
    ceil_u64, largest_satisfying, nearest, never, smallest_satisfying, u64_to_f64, State, MAX_AHEAD,
};
use crate::decision::Decision;
use crate::rule::Rule;

/// Fraction of an interval by which `excess` may exceed zero and still admit.
const TOLERANCE: f64 = 1e-6;

/// GCRA state: the theoretical arrival time is `at + debt`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucketState {
    /// When the last request was admitted, microseconds since the epoch.
    pub at: u64,
    /// The backlog at `at`, in microseconds: how long until the bucket is full again.
    pub debt: f64,
}

impl TokenBucketState {
    pub(super) fn expires_at(&self) -> u64 {
        self.at.saturating_add(ceil_u64(self.debt))
    }
}

/// Whether a rule could have written `s` by `now`: admitted at most the clock slack ahead, with
/// a backlog of at most `capacity` intervals (plus one for rounding; an admission leaves at
/// most `capacity` intervals and the tolerance). Out of range (NaN included), it reads as no
/// state.
pub(super) fn in_range(rule: &Rule, s: &TokenBucketState, now: u64) -> bool {
    let most = (f64::from(rule.capacity()) + 1.0) * rule.interval_micros();
    s.at <= now + MAX_AHEAD && s.debt >= 0.0 && s.debt <= most
}

pub(super) fn of(state: Option<&State>) -> Option<&TokenBucketState> {
    match state {
        Some(State::TokenBucket(s)) => Some(s),
        _ => None,
    }
}

struct Bucket {
    interval: f64,
    /// `1 / interval`, near enough for estimates.
    rate: f64,
    burst: u32,
    /// `max(now, at)`.
    n: u64,
    /// `n - now`: non-zero only when the clock stepped back.
    ahead: u64,
    /// `debt - (n - at)`, not yet floored at zero.
    raw_backlog: f64,
}

impl Bucket {
    fn new(rule: &Rule, state: Option<&TokenBucketState>, now: u64) -> Self {
        let (at, debt) = state.map_or((now, 0.0), |s| (s.at, s.debt));
        let n = now.max(at);
        Self {
            interval: rule.interval_micros(),
            rate: rule.rate_per_micro(),
            burst: rule.capacity(),
            n,
            ahead: n - now,
            raw_backlog: debt - u64_to_f64(n - at),
        }
    }

    fn backlog(&self) -> f64 {
        self.raw_backlog.max(0.0)
    }

    // Token counts are `u32`: converting one to `f64` is a single instruction, a `u64` is a
    // branchy sequence on x86-64, and both give the same exact value.
    fn admits(&self, backlog: f64, cost: u32) -> bool {
        backlog - f64::from(self.burst - cost) * self.interval <= self.interval * TOLERANCE
    }

    /// The largest `k` in `0..=most` that [`admits`](Self::admits) at `backlog`; `most` is
    /// `burst`, or less when the answer is known to be below it.
    fn remaining(&self, backlog: f64, most: u32) -> u32 {
        let estimate = f64::from(self.burst) - backlog * self.rate;
        let k = largest_satisfying(u64::from(most), estimate, |k| {
            self.admits(backlog, k as u32)
        });
        k as u32
    }

    /// Microseconds from `now` until the backlog is gone.
    fn reset_after(&self, backlog: f64) -> u64 {
        self.ahead + ceil_u64(backlog)
    }

    /// Microseconds from `now` until a request of `cost` fits; `full` is `ceil(backlog)`, the
    /// microseconds until the backlog is gone.
    ///
    /// The wait is the first whole `d` at which `admits` holds at the backlog `d` from now,
    /// `max(raw_backlog - d, 0) - taken <= tolerance`. Here `taken >= 0` (`cost <= burst`) and
    /// `tolerance > 0`, so where `raw_backlog - d` rounds below zero both that and
    /// `raw_backlog - d - taken` are at most 0 and admit: the `max` changes no answer and is
    /// left out of the checks below (each one was a 4-cycle step in a chain of dependent ones).
    #[inline]
    fn retry_after(&self, cost: u32, full: u64) -> u64 {
        let taken = f64::from(self.burst - cost) * self.interval;
        let tolerance = self.interval * TOLERANCE;
        let estimate = self.raw_backlog - (taken + tolerance);
        // Once the backlog is gone any cost up to `burst` fits, so the search ends by then.
        let hi = full + 1;
        // The usual case, without a search: the estimate's ceiling is the first wait that
        // admits (the one before it does not; 0 never does, the request was just denied). The
        // ceiling is the nearest integer or the one above it: the predicate is evaluated at the
        // nearest and both its neighbours at once, so that no check waits for the rounding's
        // direction.
        if let Some((near, nearf)) = nearest(estimate) {
            let admits_in = |d: f64| self.raw_backlog - d - taken <= tolerance;
            let (below, at, above) = (
                admits_in(nearf - 1.0),
                admits_in(nearf),
                admits_in(nearf + 1.0),
            );
            let (wait, first) = if nearf < estimate {
                (near + 1, above && !at)
            } else {
                (near, at && !below)
            };
            if first && (1..hi).contains(&wait) {
                return self.ahead + wait;
            }
        }
        self.ahead + self.search_retry(taken, tolerance, estimate, hi)
    }

    /// [`retry_after`](Self::retry_after)'s wait when the estimate's ceiling is not it.
    #[cold]
    #[inline(never)]
    fn search_retry(&self, taken: f64, tolerance: f64, estimate: f64, hi: u64) -> u64 {
        let admits_in = |d: f64| (self.raw_backlog - d).max(0.0) - taken <= tolerance;
        smallest_satisfying(0, hi, estimate, |d| admits_in(u64_to_f64(d)))
    }
}

pub(super) fn decide(
    rule: &Rule,
    state: Option<&TokenBucketState>,
    now: u64,
    cost: u32,
) -> Decision {
    hit(rule, state.filter(|s| in_range(rule, s, now)), now, cost).0
}

/// [`decide`] and, when it admits, the state [`consume`] would store, computed once. `state`
/// must be in range ([`in_range`]; the memory store has checked it already).
#[inline]
pub(super) fn hit(
    rule: &Rule,
    state: Option<&TokenBucketState>,
    now: u64,
    cost: u32,
) -> (Decision, Option<TokenBucketState>) {
    let bucket = Bucket::new(rule, state, now);
    let backlog = bucket.backlog();
    if cost > bucket.burst {
        let remaining = bucket.remaining(backlog, bucket.burst);
        let decision = never(bucket.burst, remaining, bucket.reset_after(backlog));
        return (decision, None);
    }
    if bucket.admits(backlog, cost) {
        // The very sum `consume` stores, so that the state is the one reported on.
        let after = backlog + f64::from(cost) * bucket.interval;
        let decision = Decision {
            allowed: true,
            limit: bucket.burst,
            remaining: bucket.remaining(after, bucket.burst),
            reset_after: Duration::from_micros(bucket.reset_after(after)),
            retry_after: None,
        };
        let next = TokenBucketState {
            at: bucket.n,
            debt: after,
        };
        return (decision, Some(next));
    }
    // A denial leaves fewer than `cost` (the search's predicate just failed at `cost`): a denied
    // unit request has none left without searching.
    let remaining = match cost {
        1 => 0,
        _ => bucket.remaining(backlog, cost - 1),
    };
    let full = ceil_u64(backlog);
    let decision = Decision {
        allowed: false,
        limit: bucket.burst,
        remaining,
        reset_after: Duration::from_micros(bucket.ahead + full),
        retry_after: Some(Duration::from_micros(bucket.retry_after(cost, full))),
    };
    (decision, None)
}

pub(super) fn consume(
    rule: &Rule,
    state: Option<&TokenBucketState>,
    now: u64,
    cost: u32,
) -> TokenBucketState {
    let bucket = Bucket::new(rule, state.filter(|s| in_range(rule, s, now)), now);
    TokenBucketState {
        at: bucket.n,
        debt: bucket.backlog() + f64::from(cost) * bucket.interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Quota, Rule};
    use proptest::prelude::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    /// The definition of the wait, apart from the code under test: the first whole `d` in
    /// `0..=full` at which the admission predicate (with its `max`, as the Lua scripts write
    /// it) holds at the backlog `d` from now, found by plain bisection.
    fn reference(bucket: &Bucket, cost: u32, full: u64) -> u64 {
        let taken = f64::from(bucket.burst - cost) * bucket.interval;
        let tolerance = bucket.interval * TOLERANCE;
        let admits_in = |d: u64| (bucket.raw_backlog - d as f64).max(0.0) - taken <= tolerance;
        let (mut no, mut yes) = (0u64, full + 1);
        assert!(!admits_in(no), "the request was denied at 0");
        while yes - no > 1 {
            let mid = no + (yes - no) / 2;
            if admits_in(mid) {
                yes = mid;
            } else {
                no = mid;
            }
        }
        bucket.ahead + yes
    }

    /// A token-bucket rule anywhere in the accepted ranges: counts 1 to `u32::MAX` (spread over
    /// their magnitudes), periods 1 ms to 10,000 days, a burst up to 4× the count.
    fn any_bucket_rule() -> impl Strategy<Value = Rule> {
        let count = prop_oneof![
            1u32..=16,
            17u32..=100_000,
            any::<u32>().prop_map(|c| c.max(1))
        ];
        let period_ms = prop_oneof![1u64..=2_000, 2_000u64..=864_000_000_000];
        (count, period_ms, 0u32..=4).prop_filter_map("out of range", |(count, ms, k)| {
            let quota = Quota::new(NonZeroU32::new(count)?, Duration::from_millis(ms)).ok()?;
            let mut builder = Rule::builder(quota).algorithm(crate::Algorithm::TokenBucket);
            if k > 0 {
                builder = builder.burst(count.saturating_mul(k));
            }
            builder.build().ok()
        })
    }

    /// Checks the wait of every denied bucket against the definition.
    fn check(rule: &Rule, at: u64, debt: f64, now: u64, cost: u32) -> Result<(), TestCaseError> {
        let state = TokenBucketState { at, debt };
        prop_assume!(in_range(rule, &state, now));
        let bucket = Bucket::new(rule, Some(&state), now);
        let backlog = bucket.backlog();
        prop_assume!(!bucket.admits(backlog, cost));
        let full = ceil_u64(backlog);
        prop_assert_eq!(
            bucket.retry_after(cost, full),
            reference(&bucket, cost, full),
            "{:?}, state {:?}, now {}, cost {}",
            rule,
            state,
            now,
            cost
        );
        Ok(())
    }

    const NOW: u64 = 1_796_000_000_123_456;

    proptest! {
        // Rules out of the accepted ranges and states that admit are skipped, not failed.
        #![proptest_config(ProptestConfig {
            cases: 20_000,
            max_global_rejects: 1_000_000,
            max_local_rejects: 1_000_000,
            ..ProptestConfig::default()
        })]

        /// Any state a rule could have written, any clock step back within the slack.
        #[test]
        fn retry_after_is_the_first_admitting_microsecond(
            rule in any_bucket_rule(),
            fill in prop_oneof![0.0f64..=1.0, 0.9f64..=1.0],
            elapsed_frac in prop_oneof![Just(0.0f64), 0.0f64..=1.0],
            ahead in prop_oneof![3 => Just(0u64), 1 => 0..=MAX_AHEAD],
            cost_frac in 0.0f64..=1.0,
        ) {
            let capacity = rule.capacity();
            let most = (f64::from(capacity) + 1.0) * rule.interval_micros();
            let debt = fill * most;
            let elapsed = (elapsed_frac * debt) as u64;
            let cost = ((cost_frac * f64::from(capacity)) as u32).clamp(1, capacity);
            check(&rule, NOW + ahead - elapsed, debt, NOW, cost)?;
        }

        /// States whose wait lands next to a whole microsecond, give or take a few units in the
        /// last place: where the estimate's rounding and the checks of its ceiling matter.
        #[test]
        fn retry_after_at_the_edges_of_a_microsecond(
            rule in any_bucket_rule(),
            wait in prop_oneof![1u64..=3, 4u64..=1_000_000],
            wait_frac in prop_oneof![Just(0.0f64), 0.0f64..=1.0],
            ulps in -4i64..=4,
            cost_frac in 0.0f64..=1.0,
        ) {
            let capacity = rule.capacity();
            let cost = ((cost_frac * f64::from(capacity)) as u32).clamp(1, capacity);
            let interval = rule.interval_micros();
            // A wait of up to `cost` intervals keeps the state in range.
            let wait = wait + (wait_frac * f64::from(cost) * interval) as u64;
            let edge = f64::from(capacity - cost) * interval + interval * TOLERANCE + wait as f64;
            let debt = f64::from_bits(edge.to_bits().wrapping_add_signed(ulps));
            check(&rule, NOW, debt, NOW, cost)?;
        }
    }
}
