//! Fixed window: epoch-aligned windows of `period`, at most `limit` admitted in each.
//!
//! Integer arithmetic only. The window holding `now` starts at `now - now % period`.

use super::{never, State, MAX_AHEAD};
use crate::decision::Decision;
use crate::rule::Rule;
use std::time::Duration;

/// The count of the window ending at `window_end` (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedWindowState {
    /// End of the counted window, microseconds since the epoch.
    pub window_end: u64,
    /// Cost admitted in that window.
    pub count: u32,
}

impl FixedWindowState {
    pub(super) fn expires_at(&self) -> u64 {
        self.window_end
    }
}

pub(super) fn of(state: Option<&State>) -> Option<&FixedWindowState> {
    match state {
        Some(State::FixedWindow(s)) => Some(s),
        _ => None,
    }
}

/// Whether a rule could have written `s` by `now`: its window ends at most a period (and the
/// clock slack) ahead. Out of range, it reads as no state.
pub(super) fn in_range(rule: &Rule, s: &FixedWindowState, now: u64) -> bool {
    s.window_end <= now + rule.period_micros() + MAX_AHEAD
}

/// The window in force and its count. A stored window that has not ended is kept even when
/// it lies ahead of `now` (a clock stepped back, within the slack): counting it can only admit
/// less.
fn current(rule: &Rule, state: Option<&FixedWindowState>, now: u64) -> (u64, u64) {
    let period = rule.period_micros();
    match state {
        Some(s) if s.window_end > now && s.window_end <= now + period + MAX_AHEAD => {
            (s.window_end, u64::from(s.count))
        }
        _ => (now - now % period + period, 0),
    }
}

pub(super) fn decide(
    rule: &Rule,
    state: Option<&FixedWindowState>,
    now: u64,
    cost: u32,
) -> Decision {
    let limit = u64::from(rule.count());
    let cost = u64::from(cost);
    let (window_end, count) = current(rule, state, now);
    let reset_if = |count: u64| if count > 0 { window_end - now } else { 0 };
    if cost > limit {
        return never(
            rule.count(),
            limit.saturating_sub(count) as u32,
            reset_if(count),
        );
    }
    let allowed = count + cost <= limit;
    let after = if allowed { count + cost } else { count };
    Decision {
        allowed,
        limit: rule.count(),
        remaining: limit.saturating_sub(after) as u32,
        reset_after: Duration::from_micros(reset_if(after)),
        // The next window starts empty, and `cost <= limit`.
        retry_after: (!allowed).then(|| Duration::from_micros(window_end - now)),
    }
}

pub(super) fn consume(
    rule: &Rule,
    state: Option<&FixedWindowState>,
    now: u64,
    cost: u32,
) -> FixedWindowState {
    let (window_end, count) = current(rule, state, now);
    FixedWindowState {
        window_end,
        count: (count + u64::from(cost)).min(u64::from(u32::MAX)) as u32,
    }
}
