//! The four algorithms, as pure functions of `(state, now, rule, cost) -> (decision, new state)`.
//!
//! # Arithmetic (the contract with the Lua scripts)
//!
//! Redis evaluates the same algorithms in Lua 5.1, whose only number type is the IEEE-754
//! double, and the Redis store is tested against this module decision for decision. So the
//! arithmetic is fixed as follows, and the Lua scripts repeat it operation for operation:
//!
//! - Time is whole **microseconds** (`u64`); periods are whole milliseconds, at most 10,000
//!   days. Timestamps, window starts and ends, counts and every sum of them stay below 2^52,
//!   where a double holds integers exactly, and integer division `floor(a / b)` of such values
//!   is exact in doubles too. Fixed window and sliding log use only such integer arithmetic.
//! - Sliding window and token bucket need fractions. They use `f64` with the exact order of
//!   operations written in their modules (each `+ - * /` is correctly rounded, so the same
//!   sequence gives the same bits in Rust and in Lua on x86-64 and aarch64). Results that leave
//!   the algorithm are integers: `remaining` comes from a monotone predicate searched from an
//!   estimate (`largest_satisfying`), waits are rounded **up** to the next microsecond and then
//!   checked against the very predicate that admits (`smallest_satisfying`), so a client that
//!   waits `retry_after` is admitted.
//! - A token bucket stores its backlog as an `f64` beside a whole-microsecond timestamp; in Redis
//!   the backlog is written with 17 significant digits (`%.17g`), which round-trips an `f64`
//!   exactly.
//!
//! A cost of `0` observes: it is always allowed, changes nothing, and reports what remains
//! (this is what [`peek`] is built on).

mod fixed_window;
mod sliding_log;
mod sliding_window;
mod token_bucket;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use fixed_window::FixedWindowState;
pub use sliding_log::SlidingLogState;
pub use sliding_window::SlidingWindowState;
pub use token_bucket::TokenBucketState;

use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::rule::Rule;

/// How a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// Two-window weighted counter (Cloudflare): `prev * (period - elapsed) / period + cur`.
    /// O(1) state; the default.
    #[default]
    SlidingWindow,
    /// Epoch-aligned windows of `period`; at most `limit` per window.
    FixedWindow,
    /// GCRA: capacity `burst` (default `limit`), refilled at `limit` per `period`.
    TokenBucket,
    /// Exact log: never more than `limit` in any interval of length `period`.
    /// O(limit) state per key.
    SlidingLog,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::TokenBucket,
        Algorithm::SlidingLog,
    ];

    /// The configuration name: `sliding_window`, `fixed_window`, `token_bucket`, `sliding_log`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::SlidingLog => "sliding_log",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An algorithm name that is not one of [`Algorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown algorithm {0:?} (expected sliding_window, fixed_window, token_bucket or sliding_log)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// The state one rule keeps for one key. Which variant is stored follows the rule's algorithm;
/// a variant that does not match the rule reads as no state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum State {
    /// State of [`Algorithm::FixedWindow`].
    FixedWindow(FixedWindowState),
    /// State of [`Algorithm::SlidingWindow`].
    SlidingWindow(SlidingWindowState),
    /// State of [`Algorithm::TokenBucket`].
    TokenBucket(TokenBucketState),
    /// State of [`Algorithm::SlidingLog`] (boxed: it grows with the limit).
    SlidingLog(Box<SlidingLogState>),
}

impl State {
    /// When this state becomes equivalent to no state at all, so a store may drop it.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_micros(match self {
            State::FixedWindow(s) => s.expires_at(),
            State::SlidingWindow(s) => s.expires_at(),
            State::TokenBucket(s) => s.expires_at(),
            State::SlidingLog(s) => s.expires_at(),
        })
    }
}

/// Decides a request of `cost` against `rule` at `now`, without changing `state`.
///
/// Pair it with [`consume`] when the request (and every other rule of it) is allowed.
#[must_use]
pub fn decide(rule: &Rule, state: Option<&State>, now: Timestamp, cost: u32) -> Decision {
    let now = now.as_micros();
    match rule.algorithm() {
        Algorithm::FixedWindow => fixed_window::decide(rule, fixed_window::of(state), now, cost),
        Algorithm::SlidingWindow => {
            sliding_window::decide(rule, sliding_window::of(state), now, cost)
        }
        Algorithm::TokenBucket => token_bucket::decide(rule, token_bucket::of(state), now, cost),
        Algorithm::SlidingLog => sliding_log::decide(rule, sliding_log::of(state), now, cost),
    }
}

/// Records an admitted request of `cost` in `state` (creating it when absent).
///
/// Call it only for a request that [`decide`] allowed with the same arguments.
pub fn consume(rule: &Rule, state: &mut Option<State>, now: Timestamp, cost: u32) {
    if cost == 0 {
        return;
    }
    match state {
        Some(slot) => consume_in_place(rule, slot, now, cost),
        None => *state = Some(fresh(rule, now, cost)),
    }
}

/// [`consume`] on a stored state, updating it where it lies (a log can hold `limit` entries).
pub(crate) fn consume_in_place(rule: &Rule, slot: &mut State, now: Timestamp, cost: u32) {
    let now = now.as_micros();
    match (rule.algorithm(), slot) {
        (Algorithm::FixedWindow, State::FixedWindow(s)) => {
            *s = fixed_window::consume(rule, Some(s), now, cost);
        }
        (Algorithm::SlidingWindow, State::SlidingWindow(s)) => {
            *s = sliding_window::consume(rule, Some(s), now, cost);
        }
        (Algorithm::TokenBucket, State::TokenBucket(s)) => {
            *s = token_bucket::consume(rule, Some(s), now, cost);
        }
        (Algorithm::SlidingLog, State::SlidingLog(log)) => log.record(rule, now, cost),
        // State of another algorithm reads as none (see `State`).
        (_, slot) => *slot = fresh(rule, Timestamp::from_micros(now), cost),
    }
}

/// The state after admitting `cost` with no state before.
pub(crate) fn fresh(rule: &Rule, now: Timestamp, cost: u32) -> State {
    let now = now.as_micros();
    match rule.algorithm() {
        Algorithm::FixedWindow => State::FixedWindow(fixed_window::consume(rule, None, now, cost)),
        Algorithm::SlidingWindow => {
            State::SlidingWindow(sliding_window::consume(rule, None, now, cost))
        }
        Algorithm::TokenBucket => State::TokenBucket(token_bucket::consume(rule, None, now, cost)),
        Algorithm::SlidingLog => {
            let mut log = SlidingLogState::default();
            log.record(rule, now, cost);
            State::SlidingLog(Box::new(log))
        }
    }
}

/// A hit on a stored state (expired or not) decided and, when admitted, consumed in place:
/// what [`decide`] then [`consume_in_place`] do, or on an expired state [`decide`] on none then
/// [`fresh`]. Returns whether the slot still holds state; when not (an expired state and a
/// denial), the caller drops it. `cost` must not be 0.
#[inline]
pub(crate) fn hit_in_place(
    rule: &Rule,
    slot: &mut State,
    now: Timestamp,
    cost: u32,
) -> (Decision, bool) {
    let micros = now.as_micros();
    let live = slot.expires_at().as_micros() > micros;
    // The token bucket computes the decision and the new state together: the hot path of a
    // single-rule request.
    if let (Algorithm::TokenBucket, State::TokenBucket(s)) = (rule.algorithm(), &mut *slot) {
        let (decision, next) = token_bucket::hit(rule, live.then_some(&*s), micros, cost);
        return match next {
            Some(next) => {
                *s = next;
                (decision, true)
            }
            None => (decision, live),
        };
    }
    if live {
        let decision = decide(rule, Some(slot), now, cost);
        if decision.allowed {
            consume_in_place(rule, slot, now, cost);
        }
        return (decision, true);
    }
    let decision = decide(rule, None, now, cost);
    if decision.allowed {
        *slot = fresh(rule, now, cost);
    }
    (decision, decision.allowed)
}

/// A hit with no state before: the decision and, when admitted, the state to store.
/// `cost` must not be 0.
pub(crate) fn hit_fresh(rule: &Rule, now: Timestamp, cost: u32) -> (Decision, Option<State>) {
    if rule.algorithm() == Algorithm::TokenBucket {
        let (decision, next) = token_bucket::hit(rule, None, now.as_micros(), cost);
        return (decision, next.map(State::TokenBucket));
    }
    let decision = decide(rule, None, now, cost);
    (decision, decision.allowed.then(|| fresh(rule, now, cost)))
}

/// The pure form: the decision and, when it admits a non-zero cost, the new state.
///
/// ```
/// use std::time::Duration;
/// use rate_guard_core::{algorithm, Algorithm, Quota, Rule, Timestamp};
///
/// let rule = Rule::builder("3/second".parse::<Quota>()?).algorithm(Algorithm::FixedWindow).build()?;
/// let mut state = None;
/// let now = Timestamp::from_secs(1_700_000_000);
/// for expected in [true, true, true, false] {
///     let (decision, next) = algorithm::evaluate(&rule, state.as_ref(), now, 1);
///     assert_eq!(decision.allowed, expected);
///     if let Some(next) = next { state = Some(next); }
/// }
/// let (denied, _) = algorithm::evaluate(&rule, state.as_ref(), now, 1);
/// assert_eq!(denied.retry_after, Some(Duration::from_secs(1)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn evaluate(
    rule: &Rule,
    state: Option<&State>,
    now: Timestamp,
    cost: u32,
) -> (Decision, Option<State>) {
    let decision = decide(rule, state, now, cost);
    if !decision.allowed || cost == 0 {
        return (decision, None);
    }
    let mut next = state.cloned();
    consume(rule, &mut next, now, cost);
    (decision, next)
}

/// Whether a request of `cost` would be admitted (and when, if not), and what remains now,
/// without consuming anything.
#[must_use]
pub fn peek(rule: &Rule, state: Option<&State>, now: Timestamp, cost: u32) -> Decision {
    let unit = decide(rule, state, now, cost);
    let current = decide(rule, state, now, 0);
    Decision {
        allowed: unit.allowed,
        retry_after: unit.retry_after,
        ..current
    }
}

/// A decision for a cost no rule state could ever admit: denied, never retryable.
fn never(limit: u32, remaining: u32, reset_after: u64) -> Decision {
    Decision {
        allowed: false,
        limit,
        remaining,
        reset_after: Duration::from_micros(reset_after),
        retry_after: None,
    }
}

/// `x as f64`, the same value: converting a `u64` is a branchy sequence on x86-64 and an `i64`
/// one instruction, and times and counts here are far below 2^63.
fn u64_to_f64(x: u64) -> f64 {
    match i64::try_from(x) {
        Ok(x) => x as f64,
        Err(_) => x as f64,
    }
}

/// 2^52: from here up, every double is an integer.
const TWO_POW_52: f64 = 4_503_599_627_370_496.0;

/// For `0 <= x < 2^52`: `x` rounded to the nearest integer, as an integer and as a double.
///
/// Adding 2^52 leaves no bits for a fraction, so the sum is `x` correctly rounded, plus 2^52,
/// exactly; its bit pattern less that of 2^52 is the rounded integer. Four instructions, where
/// the saturating `as u64` is a dozen and a half on x86-64, and this sits on the hot path.
fn nearest(x: f64) -> Option<(u64, f64)> {
    (0.0..TWO_POW_52).contains(&x).then(|| {
        let sum = x + TWO_POW_52;
        (sum.to_bits() - TWO_POW_52.to_bits(), sum - TWO_POW_52)
    })
}

/// `ceil(x)` as an integer (0 for negative or NaN `x`, saturating above `u64::MAX`).
/// `f64::ceil` is a libm call on baseline x86-64.
pub(crate) fn ceil_u64(x: f64) -> u64 {
    if let Some((n, nf)) = nearest(x) {
        return n + u64::from(nf < x);
    }
    let t = x as u64;
    if (t as f64) < x {
        t.saturating_add(1)
    } else {
        t
    }
}

/// `floor(x)` as an integer, as `x as u64` gives it (0 for negative or NaN `x`, saturating).
fn floor_u64(x: f64) -> u64 {
    match nearest(x) {
        Some((n, nf)) => n - u64::from(nf > x),
        None => x as u64,
    }
}

/// The largest `k` in `0..=hi` for which `pred` holds, searched from `estimate`.
///
/// `pred` must hold up to some point and fail after it. Returns 0 when it never holds.
/// Estimates come from the same doubles as `pred`, so the search moves a step or two.
fn largest_satisfying(hi: u64, estimate: f64, pred: impl Fn(u64) -> bool) -> u64 {
    // Negative and NaN estimates read as 0.
    let mut k = floor_u64(estimate).min(hi);
    // The loops run once or twice. `black_box` keeps LLVM from vectorizing them into a
    // thousand instructions that cost more than the steps they save.
    while k > 0 && !pred(k) {
        k = std::hint::black_box(k - 1);
    }
    while k < hi && pred(k + 1) {
        k = std::hint::black_box(k + 1);
    }
    k
}

/// The smallest `e` in `lo..=hi` for which `pred` holds, searched from `estimate`.
///
/// `pred` must fail up to some point and hold after it, and must hold at `hi`.
fn smallest_satisfying(lo: u64, hi: u64, estimate: f64, pred: impl Fn(u64) -> bool) -> u64 {
    let mut e = ceil_u64(estimate).clamp(lo, hi);
    // As in `largest_satisfying`: a step or two, kept from being vectorized.
    while e > lo && pred(e - 1) {
        e = std::hint::black_box(e - 1);
    }
    while e < hi && !pred(e) {
        e = std::hint::black_box(e + 1);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        }
        let err = "leaky".parse::<Algorithm>().unwrap_err();
        assert!(err.to_string().contains("\"leaky\""));
    }

    #[test]
    fn searches_find_the_boundary_from_bad_estimates() {
        for est in [-5.0, 0.0, 3.0, 7.0, 1e30, f64::NAN] {
            assert_eq!(largest_satisfying(10, est, |k| k <= 7), 7);
            assert_eq!(smallest_satisfying(2, 10, est, |e| e >= 4), 4);
        }
        assert_eq!(largest_satisfying(10, 3.0, |_| false), 0);
    }

    #[test]
    fn roundings_match_the_saturating_casts() {
        let slow_ceil = |x: f64| {
            let t = x as u64;
            if (t as f64) < x {
                t.saturating_add(1)
            } else {
                t
            }
        };
        let edges = [
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.0,
            0.999_999_999,
            1e-300,
            f64::MIN_POSITIVE,
            TWO_POW_52 - 0.5,
            TWO_POW_52 - 1.0,
            TWO_POW_52,
            TWO_POW_52 + 1.0,
            1e19,
            1e30,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let random = std::iter::repeat_with(move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let scale = [1.0, 1e3, 1e6, 1e9, 1e12, 1e15][(seed % 6) as usize];
            (seed >> 11) as f64 / (1u64 << 53) as f64 * scale
        });
        for x in edges.into_iter().chain(random.take(100_000)) {
            assert_eq!(ceil_u64(x), slow_ceil(x), "ceil of {x:e}");
            assert_eq!(floor_u64(x), x as u64, "floor of {x:e}");
        }
    }
}
