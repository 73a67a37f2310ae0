//! Sliding log: the exact algorithm. Every admitted unit of cost is logged with its time; a
//! request is admitted when the log holds at most `limit - cost` entries younger than `period`.
//!
//! An entry logged at `t` counts while `t + period > now`. Integer arithmetic only. State is
//! O(limit) per key (8 bytes per admitted unit of cost still in the window; the limit is at most
//! [`MAX_SLIDING_LOG_LIMIT`](crate::bounds::MAX_SLIDING_LOG_LIMIT)).
//!
//! A request is logged at `max(now, newest entry)`: the same as `now` unless the clock stepped
//! back, when its units then expire no earlier than those before them. So the log only ever
//! grows at its end, which lets the Redis script keep one member per request (with the running
//! total of units) instead of one per unit, and still count in O(log n).

use std::collections::VecDeque;
use std::time::Duration;

use super::{never, State, MAX_AHEAD};
use crate::decision::Decision;
use crate::rule::Rule;

/// The times of the admitted units still in the window, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingLogState {
    entries: VecDeque<u64>,
    expires_at: u64,
}

impl SlidingLogState {
    /// The logged times, in microseconds since the epoch, oldest first.
    #[must_use]
    pub fn entries(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.entries.iter().copied()
    }

    pub(super) fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Index of the oldest entry still in the window at `now`.
    fn first_live(&self, period: u64, now: u64) -> usize {
        self.entries.partition_point(|&t| t + period <= now)
    }

    pub(super) fn record(&mut self, rule: &Rule, now: u64, cost: u32) {
        if !in_range(rule, self, now) {
            self.entries.clear();
        }
        let period = rule.period_micros();
        let expired = self.first_live(period, now);
        self.entries.drain(..expired);
        // A clock that stepped back logs at the newest entry's time, keeping the log sorted.
        let stamp = self.entries.back().map_or(now, |&t| t.max(now));
        self.entries
            .extend(std::iter::repeat_n(stamp, cost as usize));
        self.expires_at = stamp + period;
    }
}

/// Whether a rule could have written `s` by `now`: at most `limit` live entries (a write trims
/// the expired ones, then adds at most what fits), the newest at most the clock slack ahead.
/// Out of range, it reads as no state.
pub(super) fn in_range(rule: &Rule, s: &SlidingLogState, now: u64) -> bool {
    let live = s.entries.len() - s.first_live(rule.period_micros(), now);
    live <= rule.count() as usize && s.entries.back().is_none_or(|&t| t <= now + MAX_AHEAD)
}

pub(super) fn of(state: Option<&State>) -> Option<&SlidingLogState> {
    match state {
        Some(State::SlidingLog(s)) => Some(s),
        _ => None,
    }
}

pub(super) fn decide(
    rule: &Rule,
    state: Option<&SlidingLogState>,
    now: u64,
    cost: u32,
) -> Decision {
    let period = rule.period_micros();
    let limit = u64::from(rule.count());
    let cost = u64::from(cost);
    let state = state.filter(|s| in_range(rule, s, now));
    let first = state.map_or(0, |s| s.first_live(period, now));
    let count = state.map_or(0, |s| s.entries.len() - first) as u64;
    let newest = state.and_then(|s| s.entries.back().copied()).unwrap_or(now);
    let reset_after = |count: u64, newest: u64| if count > 0 { newest + period - now } else { 0 };
    if cost > limit {
        return never(
            rule.count(),
            limit.saturating_sub(count) as u32,
            reset_after(count, newest),
        );
    }
    let allowed = count + cost <= limit;
    // A hit logs entries at `now`; a zero-cost observation logs nothing.
    let (after, newest) = if allowed && cost > 0 {
        (count + cost, newest.max(now))
    } else {
        (count, newest)
    };
    let retry_after = match state {
        // The request fits once the oldest `count - (limit - cost)` live entries have expired.
        Some(s) if !allowed => {
            let expiring = s.entries[first + (count - (limit - cost)) as usize - 1];
            Some(Duration::from_micros(expiring + period - now))
        }
        _ => None,
    };
    Decision {
        allowed,
        limit: rule.count(),
        remaining: limit.saturating_sub(after) as u32,
        reset_after: Duration::from_micros(reset_after(after, newest)),
        retry_after,
    }
}
