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
//! - Searches are bounded: one step either way from the estimate, then galloping and bisection,
//!   at most ~130 predicate calls whatever the inputs. The predicates are monotone, so the
//!   answer is their unique boundary, found alike by Rust and Lua.
//!
//! # Ranges (why every value above stays exact)
//!
//! The builders refuse what would break these ([`bounds`](crate::bounds)); `now` is the
//! reading of a real clock, about 1.7 × 10^15 µs in 2023. With `P` the period and
//! `A` = [`MAX_CLOCK_STEP_BACK_MICROS`] (one hour):
//!
//! | value | bound | why |
//! |---|---|---|
//! | `P` | ≤ 10,000 days = 8.64 × 10^14 µs < 2^50 | `Quota` |
//! | counts, costs, `limit`, `burst` | ≤ `u32::MAX`; sums of two ≤ 2^33 | `u32` |
//! | a stored time (window end, GCRA `at`, newest log entry) | ≤ `now + 2P + A` | out of range reads as none |
//! | token bucket `capacity × P / count` | ≤ 8.64 × 10^14 µs | `RuleBuilder::build` |
//! | token bucket backlog (`debt`) | in `[0, (capacity + 1) × interval]` ≤ 2^50 | out of range reads as none |
//! | sliding log entries per key (one write adds at most `cost` ≤ `limit`) | ≤ 10,000 | `RuleBuilder::build` |
//! | `reset_after`, `retry_after`, a key's lifetime | in `[0, 2P + A + 10,000 days]` | the above |
//!
//! So every timestamp, window bound and lifetime is below `now + 2^51`: below 2^52 until 2057,
//! and below 2^53 for any `now` below 2^52 (the year 2112; the Redis scripts refuse a test's
//! own `now` beyond). Every reply fits an `i64` and is non-negative, and every lifetime the
//! Redis store turns into a TTL is a positive whole number of milliseconds far below what
//! `SET PX` accepts. A
//! state out of range (a clock that stepped back more than `A`, or a corrupt Redis value) reads
//! as no state in Rust and Lua alike, and the Redis scripts then overwrite or delete it.
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

use crate::bounds::MAX_CLOCK_STEP_BACK_MICROS;
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::rule::Rule;

/// How far ahead of `now` a state may lie (a clock stepped back) and still count.
const MAX_AHEAD: u64 = MAX_CLOCK_STEP_BACK_MICROS;

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

/// Whether `state` is one `rule` could have written by `now` (see [`bounds`](crate::bounds)):
/// every algorithm reads a state out of range as none, and a store drops it on touch, as the
/// Redis scripts delete or overwrite it.
pub(crate) fn in_range(rule: &Rule, state: &State, now: u64) -> bool {
    match (rule.algorithm(), state) {
        (Algorithm::FixedWindow, State::FixedWindow(s)) => fixed_window::in_range(rule, s, now),
        (Algorithm::SlidingWindow, State::SlidingWindow(s)) => {
            sliding_window::in_range(rule, s, now)
        }
        (Algorithm::TokenBucket, State::TokenBucket(s)) => token_bucket::in_range(rule, s, now),
        (Algorithm::SlidingLog, State::SlidingLog(s)) => sliding_log::in_range(rule, s, now),
        _ => false,
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
    // The token bucket computes the decision and the new state together: the hot path of a
    // single-rule request. An expired bucket decides as no bucket (its backlog has run out), so
    // expiry matters only for whether a denied slot is kept.
    if let (Algorithm::TokenBucket, State::TokenBucket(s)) = (rule.algorithm(), &mut *slot) {
        let usable = token_bucket::in_range(rule, s, micros);
        let (decision, next) = token_bucket::hit(rule, usable.then_some(&*s), micros, cost);
        return match next {
            Some(next) => {
                *s = next;
                (decision, true)
            }
            None => (decision, usable && s.expires_at() > micros),
        };
    }
    let live = slot.expires_at().as_micros() > micros && in_range(rule, slot, micros);
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

/// `x as f64`, the same value. Converting a `u64` is a slow five-instruction sequence on
/// baseline x86-64 (and the compiler turns an `i64` detour back into it); times and counts here
/// are below 2^52, where placing `x` in the mantissa of 2^52 and subtracting 2^52 is exact and
/// takes two.
#[inline]
fn u64_to_f64(x: u64) -> f64 {
    if x < 1 << 52 {
        f64::from_bits(TWO_POW_52.to_bits() | x) - TWO_POW_52
    } else {
        x as f64
    }
}

/// 2^52: from here up, every double is an integer.
const TWO_POW_52: f64 = 4_503_599_627_370_496.0;

/// For `0 <= x < 2^52`: `x` rounded to the nearest integer, as an integer and as a double.
///
/// Adding 2^52 leaves no bits for a fraction, so the sum is `x` correctly rounded, plus 2^52,
/// exactly; its bit pattern less that of 2^52 is the rounded integer. Four instructions, where
/// the saturating `as u64` is a dozen and a half on x86-64, and this sits on the hot path.
#[inline]
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
/// `pred` must hold up to some point and fail after it; it is never called with 0. Returns 0
/// when it never holds. Estimates come from the same doubles as `pred`, so the answer is
/// usually the estimate or its neighbour: two calls. Whatever the estimate, at most ~130.
fn largest_satisfying(hi: u64, estimate: f64, pred: impl Fn(u64) -> bool) -> u64 {
    if hi == 0 {
        return 0;
    }
    // Negative and NaN estimates read as 0. The answer is one less than the first `k` in
    // `1..=hi + 1` at which `pred` fails (it "fails" at `hi + 1`, which is never called).
    let k = floor_u64(estimate).min(hi);
    first_true(1, hi + 1, k + 1, |k| !pred(k)) - 1
}

/// The smallest `e` in `lo..=hi` for which `pred` holds, searched from `estimate`.
///
/// `pred` must fail up to some point and hold after it, and is taken to hold at `hi` (it is
/// never called there). Two calls when the estimate is right or one off; at most ~130.
fn smallest_satisfying(lo: u64, hi: u64, estimate: f64, pred: impl Fn(u64) -> bool) -> u64 {
    first_true(lo, hi, ceil_u64(estimate), pred)
}

/// The smallest `x` in `lo..=hi` for which the monotone `f` holds (false, then true), taken to
/// hold at `hi` without calling it, searched from `start`.
///
/// One step either way from `start`, then (rarely) galloping away from it with doubling steps
/// and a bisection of the last step: at most 2 + 64 + 63 calls whatever the inputs, where
/// stepping by one could run for ever (beyond 2^53 a double step by one does not even move).
/// The answer is the unique boundary of `f`, so the Lua scripts, which search the same way,
/// agree with it even if an estimate differed in its last bit.
#[inline]
fn first_true(lo: u64, hi: u64, start: u64, f: impl Fn(u64) -> bool) -> u64 {
    // Not `clamp`, which panics if `lo > hi`: a caller's slip must not take a store down.
    let x = start.max(lo).min(hi);
    if x == hi || f(x) {
        if x <= lo || !f(x - 1) {
            return x;
        }
        gallop_down(lo, x - 1, &f)
    } else if x + 1 == hi || f(x + 1) {
        x + 1
    } else {
        gallop_up(x + 1, hi, &f)
    }
}

/// [`first_true`] below `known_true`, where `f` holds, down to `lo`.
#[cold]
#[inline(never)]
fn gallop_down(lo: u64, mut known_true: u64, f: &impl Fn(u64) -> bool) -> u64 {
    let mut step = 1u64;
    while known_true > lo {
        let probe = known_true.saturating_sub(step).max(lo);
        if !f(probe) {
            return bisect(probe, known_true, f);
        }
        known_true = probe;
        step = step.saturating_mul(2);
    }
    lo
}

/// [`first_true`] above `known_false`, where `f` fails, up to `hi`, where it holds.
#[cold]
#[inline(never)]
fn gallop_up(mut known_false: u64, hi: u64, f: &impl Fn(u64) -> bool) -> u64 {
    let mut step = 1u64;
    loop {
        let probe = known_false.saturating_add(step).min(hi);
        if probe == hi || f(probe) {
            return bisect(known_false, probe, f);
        }
        known_false = probe;
        step = step.saturating_mul(2);
    }
}

/// The first `x` in `(no, yes]` at which `f` holds, `f` failing at `no` and holding at `yes`.
fn bisect(mut no: u64, mut yes: u64, f: &impl Fn(u64) -> bool) -> u64 {
    while yes - no > 1 {
        let mid = no + (yes - no) / 2;
        if f(mid) {
            yes = mid;
        } else {
            no = mid;
        }
    }
    yes
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

    /// Runs a search with a predicate that counts its calls and checks it is never called
    /// outside `domain`.
    fn counted<R>(
        domain: std::ops::RangeInclusive<u64>,
        search: impl FnOnce(&dyn Fn(u64) -> bool) -> R,
        pred: impl Fn(u64) -> bool,
    ) -> (R, usize) {
        let calls = std::cell::Cell::new(0);
        let counting = |x: u64| {
            assert!(domain.contains(&x), "called at {x}, outside {domain:?}");
            calls.set(calls.get() + 1);
            pred(x)
        };
        let result = search(&counting);
        (result, calls.get())
    }

    #[test]
    fn searches_are_bounded_whatever_the_estimate_and_the_range() {
        let estimates = [
            -1e300,
            -1.0,
            0.0,
            0.5,
            1.0,
            1e3,
            1e15,
            TWO_POW_52,
            9.007_199_254_740_993e15,
            1.844_674_407_370_955_2e19,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        // Boundaries at either end, next to them, in the middle, and beyond 2^53, where a double
        // step by one does not move.
        let his = [
            1u64,
            2,
            3,
            1_000,
            u64::from(u32::MAX),
            1 << 52,
            (1 << 53) + 7,
            u64::MAX - 1,
        ];
        let mut worst = 0;
        for &hi in &his {
            let mut bounds = vec![0, 1, hi / 3, hi / 2 + 1, hi.saturating_sub(1), hi];
            bounds.dedup();
            for &b in &bounds {
                for &est in &estimates {
                    // The largest k <= hi with k <= b (and 0 when b is 0).
                    let (k, calls) =
                        counted(1..=hi, |p| largest_satisfying(hi, est, p), |k| k <= b);
                    assert_eq!(
                        k,
                        b.min(hi),
                        "largest, hi {hi}, boundary {b}, estimate {est}"
                    );
                    worst = worst.max(calls);
                    // The smallest e in lo..=hi with e >= b (taken to hold at hi).
                    let lo = b.min(7).min(hi);
                    let (e, calls) = counted(
                        lo..=hi - 1,
                        |p| smallest_satisfying(lo, hi, est, p),
                        |e| e >= b,
                    );
                    assert_eq!(
                        e,
                        b.clamp(lo, hi),
                        "smallest, lo {lo} hi {hi}, boundary {b}, estimate {est}"
                    );
                    worst = worst.max(calls);
                }
            }
        }
        assert!(worst <= 130, "{worst} predicate calls");
        // Predicates that never or always hold.
        assert_eq!(largest_satisfying(u64::MAX - 1, 1e10, |_| false), 0);
        assert_eq!(
            largest_satisfying(u64::MAX - 1, 1e10, |_| true),
            u64::MAX - 1
        );
        assert_eq!(smallest_satisfying(3, u64::MAX, 1e10, |_| false), u64::MAX);
        assert_eq!(smallest_satisfying(3, u64::MAX, 1e10, |_| true), 3);
        assert_eq!(largest_satisfying(0, 5.0, |_| unreachable!()), 0);
        assert_eq!(smallest_satisfying(4, 4, 0.0, |_| unreachable!()), 4);
        // An empty range (a caller's slip) answers its end rather than panic.
        assert_eq!(smallest_satisfying(5, 0, 3.0, |_| unreachable!()), 0);
    }

    #[test]
    fn searches_from_a_good_estimate_take_one_or_two_calls() {
        for b in [0u64, 1, 5, 999, 1_000] {
            let est = b as f64;
            let (_, calls) = counted(1..=1_000, |p| largest_satisfying(1_000, est, p), |k| k <= b);
            assert!(calls <= 2, "largest at {b}: {calls}");
            for off in [-1.0, 1.0] {
                let (_, calls) = counted(
                    1..=1_000,
                    |p| largest_satisfying(1_000, est + off, p),
                    |k| k <= b,
                );
                assert!(calls <= 3, "largest at {b}, estimate off by {off}: {calls}");
            }
            let (_, calls) = counted(
                0..=999,
                |p| smallest_satisfying(0, 1_000, est, p),
                |e| e >= b,
            );
            assert!(calls <= 2, "smallest at {b}: {calls}");
            for off in [-1.0, 1.0] {
                let (_, calls) = counted(
                    0..=999,
                    |p| smallest_satisfying(0, 1_000, est + off, p),
                    |e| e >= b,
                );
                assert!(
                    calls <= 3,
                    "smallest at {b}, estimate off by {off}: {calls}"
                );
            }
        }
    }

    #[test]
    fn states_out_of_range_read_as_none() {
        let now = 1_796_000_000_123_456u64;
        let at = Timestamp::from_micros(now);
        let build = |a: Algorithm| {
            Rule::builder("3/minute".parse().unwrap())
                .algorithm(a)
                .build()
                .unwrap()
        };
        let minute = 60_000_000;
        let fw = build(Algorithm::FixedWindow);
        let sw = build(Algorithm::SlidingWindow);
        let tb = build(Algorithm::TokenBucket);
        let fixed = |window_end, count| State::FixedWindow(FixedWindowState { window_end, count });
        let sliding = |expires_at| {
            State::SlidingWindow(SlidingWindowState {
                expires_at,
                current: 3,
                previous: 3,
            })
        };
        let bucket = |at, debt| State::TokenBucket(TokenBucketState { at, debt });
        let interval = 20_000_000.0;
        let cases = [
            // (rule, state, in range)
            (&fw, fixed(now + minute + MAX_AHEAD, 3), true),
            (&fw, fixed(now + minute + MAX_AHEAD + 1, 3), false),
            (&fw, fixed(u64::MAX, 3), false),
            (&sw, sliding(now + 2 * minute + MAX_AHEAD), true),
            (&sw, sliding(now + 2 * minute + MAX_AHEAD + 1), false),
            (&tb, bucket(now + MAX_AHEAD, 3.0 * interval), true),
            (&tb, bucket(now + MAX_AHEAD + 1, 0.0), false),
            (&tb, bucket(now, 4.0 * interval), true),
            (&tb, bucket(now, 4.0 * interval + 1.0), false),
            (&tb, bucket(now, -1.0), false),
            (&tb, bucket(now, f64::NAN), false),
            (&tb, bucket(now, f64::INFINITY), false),
            // A state of another algorithm.
            (&tb, fixed(now + 1, 3), false),
        ];
        for (rule, state, expected) in cases {
            assert_eq!(in_range(rule, &state, now), expected, "{state:?}");
            let with = evaluate(rule, Some(&state), at, 1);
            let without = evaluate(rule, None, at, 1);
            if expected {
                assert!(!with.0.allowed, "{state:?} counts");
            } else {
                assert_eq!(with, without, "{state:?}");
                assert!(with.1.unwrap().expires_at().as_micros() <= now + 2 * minute);
            }
        }
        // A log with more entries than the limit, or one from beyond the slack.
        let sl = build(Algorithm::SlidingLog);
        let mut log = None;
        consume(&sl, &mut log, at, 3);
        let full = log.clone().unwrap();
        assert!(in_range(&sl, &full, now));
        assert!(!evaluate(&sl, Some(&full), at, 1).0.allowed);
        let early = Timestamp::from_micros(now - MAX_AHEAD - 1);
        assert!(!in_range(&sl, &full, early.as_micros()));
        assert_eq!(
            evaluate(&sl, Some(&full), early, 1),
            evaluate(&sl, None, early, 1)
        );
        let two = Rule::builder("2/minute".parse().unwrap())
            .algorithm(Algorithm::SlidingLog)
            .build()
            .unwrap();
        assert!(!in_range(&two, &full, now));
        assert_eq!(
            evaluate(&two, Some(&full), at, 1),
            evaluate(&two, None, at, 1)
        );
    }

    #[test]
    fn a_log_written_after_a_clock_step_back_grows_at_its_end() {
        let rule = Rule::builder("3/minute".parse().unwrap())
            .algorithm(Algorithm::SlidingLog)
            .build()
            .unwrap();
        let t = 1_796_000_000_000_000;
        let back = Timestamp::from_micros(t - 5_000_000);
        let mut state = None;
        consume(&rule, &mut state, Timestamp::from_micros(t), 1);
        consume(&rule, &mut state, back, 2);
        let Some(State::SlidingLog(log)) = &state else {
            panic!("{state:?}")
        };
        // Logged at the newest entry's time, not before it: the log stays sorted by time.
        assert_eq!(log.entries().collect::<Vec<_>>(), [t, t, t]);
        let denied = decide(&rule, state.as_ref(), back, 1);
        assert_eq!(denied.retry_after, Some(Duration::from_secs(65)));
        assert_eq!(denied.reset_after, Duration::from_secs(65));
    }

    #[test]
    fn u64_to_f64_is_the_cast() {
        let edges = [
            0,
            1,
            2,
            (1 << 52) - 1,
            1 << 52,
            (1 << 52) + 1,
            (1 << 53) + 1,
            u64::MAX,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let random = std::iter::repeat_with(move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed >> (seed % 64)
        });
        for x in edges.into_iter().chain(random.take(100_000)) {
            assert_eq!(u64_to_f64(x).to_bits(), (x as f64).to_bits(), "{x}");
        }
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
