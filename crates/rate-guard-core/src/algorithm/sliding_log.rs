//! Sliding log: the exact algorithm. Every admitted unit of cost is logged with its time; a
//! request is admitted when the log holds at most `limit - cost` entries younger than `period`.
//!
//! An entry logged at `t` counts while `t + period > now`. Integer arithmetic only. State is
//! O(limit) per key (8 bytes per admitted unit of cost still in the window).

use std::collections::VecDeque;
use std::time::Duration;

use super::{never, State};
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
        let period = rule.period_micros();
        let expired = self.first_live(period, now);
        self.entries.drain(..expired);
        // Times only go back when a clock steps back; keep the log sorted even then.
        let at = self.entries.partition_point(|&t| t <= now);
        for _ in 0..cost {
            self.entries.insert(at, now);
        }
        let newest = self.entries.back().copied().unwrap_or(now);
        self.expires_at = newest + period;
    }
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
