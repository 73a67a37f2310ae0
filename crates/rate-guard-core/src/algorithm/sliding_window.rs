//! Sliding window: the two-window weighted counter (Cloudflare's).
//!
//! Windows are epoch-aligned as in the fixed window. Within the current window, `elapsed`
//! microseconds after its start, the estimate is `prev * ((period - elapsed) / period) + cur`,
//! computed in doubles in exactly this order:
//!
//! ```text
//! weight   = (period - elapsed) / period        -- exactly 1 at the start, 0 at the end
//! weighted = prev * weight
//! admits n = weighted + n <= limit              -- n = cur + cost, an integer
//! ```
//!
//! Evaluating the weight first (rather than `prev * (period - elapsed) / period`) keeps the
//! window boundaries exact, which is what makes `retry_after` reliable.

use super::{largest_satisfying, never, smallest_satisfying, State, MAX_AHEAD};
use crate::decision::Decision;
use crate::rule::Rule;
use std::time::Duration;

/// Counts of the current and previous window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindowState {
    /// End of the window after the counted one (`current` start + 2 × period): when the state
    /// stops mattering. Microseconds since the epoch.
    pub expires_at: u64,
    /// Cost admitted in the current window.
    pub current: u32,
    /// Cost admitted in the window before it.
    pub previous: u32,
}

impl SlidingWindowState {
    pub(super) fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

pub(super) fn of(state: Option<&State>) -> Option<&SlidingWindowState> {
    match state {
        Some(State::SlidingWindow(s)) => Some(s),
        _ => None,
    }
}

/// Whether a rule could have written `s` by `now`: its counted window starts at most the clock
/// slack ahead. Out of range, it reads as no state.
pub(super) fn in_range(rule: &Rule, s: &SlidingWindowState, now: u64) -> bool {
    s.expires_at.saturating_sub(2 * rule.period_micros()) <= now + MAX_AHEAD
}

/// The windows in force at `now`.
struct View {
    period: u64,
    limit: u64,
    /// Start of the current window (ahead of `now` only when the clock stepped back).
    start: u64,
    cur: u64,
    prev: u64,
}

impl View {
    fn new(rule: &Rule, state: Option<&SlidingWindowState>, now: u64) -> Self {
        let period = rule.period_micros();
        let start = now - now % period;
        let (start, cur, prev) = match state {
            Some(s) if in_range(rule, s, now) => {
                let stored = s.expires_at.saturating_sub(2 * period);
                if stored >= start {
                    // Same window, or one ahead of a clock that stepped back: keep its counts.
                    (stored, u64::from(s.current), u64::from(s.previous))
                } else if stored + period == start {
                    (start, 0, u64::from(s.current))
                } else {
                    (start, 0, 0)
                }
            }
            _ => (start, 0, 0),
        };
        Self {
            period,
            limit: u64::from(rule.count()),
            start,
            cur,
            prev,
        }
    }

    /// `prev`'s weighted share `elapsed` microseconds into the current window.
    fn weighted(&self, prev: u64, elapsed: u64) -> f64 {
        let p = self.period as f64;
        prev as f64 * ((p - elapsed as f64) / p)
    }

    fn admits(&self, weighted: f64, n: u64) -> bool {
        weighted + n as f64 <= self.limit as f64
    }

    fn remaining(&self, weighted: f64, count: u64) -> u64 {
        let hi = self.limit.saturating_sub(count);
        largest_satisfying(hi, self.limit as f64 - weighted - count as f64, |k| {
            self.admits(weighted, count + k)
        })
    }

    fn reset_after(&self, now: u64, count: u64) -> u64 {
        if count > 0 {
            self.start + 2 * self.period - now
        } else if self.prev > 0 {
            self.start + self.period - now
        } else {
            0
        }
    }

    /// Microseconds from `now` until a request of `cost` (<= limit) is admitted.
    fn retry_after(&self, now: u64, elapsed: u64, cost: u64) -> u64 {
        let p = self.period as f64;
        if self.cur + cost <= self.limit {
            // Still this window: wait for `prev`'s share to shrink. At the window's end the
            // share is 0 and the request fits.
            let room = (self.limit - self.cur - cost) as f64;
            let estimate = p - room * p / self.prev as f64;
            let e = smallest_satisfying(elapsed + 1, self.period, estimate, |e| {
                self.admits(self.weighted(self.prev, e), self.cur + cost)
            });
            self.start + e - now
        } else {
            // The next window, where `cur` becomes the weighted previous count. Two windows on,
            // nothing is counted and the request fits.
            let room = (self.limit - cost) as f64;
            let estimate = p - room * p / self.cur as f64;
            let e = smallest_satisfying(0, self.period, estimate, |e| {
                self.admits(self.weighted(self.cur, e), cost)
            });
            self.start + self.period + e - now
        }
    }
}

pub(super) fn decide(
    rule: &Rule,
    state: Option<&SlidingWindowState>,
    now: u64,
    cost: u32,
) -> Decision {
    let view = View::new(rule, state, now);
    let cost = u64::from(cost);
    let elapsed = now.saturating_sub(view.start);
    let weighted = view.weighted(view.prev, elapsed);
    if cost > view.limit {
        let remaining = view.remaining(weighted, view.cur);
        return never(
            rule.count(),
            remaining as u32,
            view.reset_after(now, view.cur),
        );
    }
    let allowed = view.admits(weighted, view.cur + cost);
    let count = if allowed { view.cur + cost } else { view.cur };
    Decision {
        allowed,
        limit: rule.count(),
        remaining: view.remaining(weighted, count) as u32,
        reset_after: Duration::from_micros(view.reset_after(now, count)),
        retry_after: (!allowed)
            .then(|| Duration::from_micros(view.retry_after(now, elapsed, cost))),
    }
}

pub(super) fn consume(
    rule: &Rule,
    state: Option<&SlidingWindowState>,
    now: u64,
    cost: u32,
) -> SlidingWindowState {
    let view = View::new(rule, state, now);
    SlidingWindowState {
        expires_at: view.start + 2 * view.period,
        current: (view.cur + u64::from(cost)).min(u64::from(u32::MAX)) as u32,
        previous: view.prev as u32,
    }
}
