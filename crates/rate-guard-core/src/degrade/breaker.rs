//! The circuit breaker around the store: after `threshold` consecutive failures no request
//! waits on the store until a cool-down has passed; then one probe at a time goes through, and
//! a success closes the breaker. Each failed probe doubles the cool-down, up to a maximum.

use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::{duration_micros, Timestamp};

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Requests go to the store.
    Closed,
    /// Requests do not go to the store.
    Open,
    /// The cool-down has passed: one probe goes to the store.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What the breaker lets a request do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Go to the store.
    Call,
    /// Go to the store as the probe of a half-open breaker.
    Probe,
    /// Do not wait on the store.
    Reject,
}

/// A state change, for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    pub(crate) failures: u32,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    /// While open: when a probe may go.
    retry_at: u64,
    /// The cool-down to wait after the next opening.
    cooldown: u64,
    probe_in_flight: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    base_cooldown: u64,
    max_cooldown: u64,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration, max_cooldown: Duration) -> Self {
        let base = duration_micros(cooldown).max(1);
        Self {
            threshold: threshold.max(1),
            base_cooldown: base,
            max_cooldown: duration_micros(max_cooldown).max(base),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                retry_at: 0,
                cooldown: base,
                probe_in_flight: false,
            }),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.inner.lock().state
    }

    /// How long until the open breaker lets a probe through (zero unless open).
    pub(crate) fn retry_in(&self, now: Timestamp) -> Duration {
        let inner = self.inner.lock();
        match inner.state {
            BreakerState::Open => {
                Duration::from_micros(inner.retry_at.saturating_sub(now.as_micros()))
            }
            _ => Duration::ZERO,
        }
    }

    pub(crate) fn permit(&self, now: Timestamp) -> (Permit, Option<Transition>) {
        let mut inner = self.inner.lock();
        match inner.state {
            BreakerState::Closed => (Permit::Call, None),
            BreakerState::Open if now.as_micros() < inner.retry_at => (Permit::Reject, None),
            BreakerState::Open => {
                inner.state = BreakerState::HalfOpen;
                inner.probe_in_flight = true;
                let t = Transition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                    failures: inner.failures,
                };
                (Permit::Probe, Some(t))
            }
            BreakerState::HalfOpen if inner.probe_in_flight => (Permit::Reject, None),
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                (Permit::Probe, None)
            }
        }
    }

    pub(crate) fn on_success(&self) -> Option<Transition> {
        let mut inner = self.inner.lock();
        inner.failures = 0;
        inner.probe_in_flight = false;
        if inner.state == BreakerState::Closed {
            return None;
        }
        let from = inner.state;
        inner.state = BreakerState::Closed;
        inner.cooldown = self.base_cooldown;
        Some(Transition {
            from,
            to: BreakerState::Closed,
            failures: 0,
        })
    }

    /// The store answered without deciding (it rejected one request): neither a success nor
    /// a failure, but a probe's slot is free again.
    pub(crate) fn release_probe(&self, permit: Permit) {
        if permit == Permit::Probe {
            self.inner.lock().probe_in_flight = false;
        }
    }

    pub(crate) fn on_failure(&self, now: Timestamp) -> Option<Transition> {
        let mut inner = self.inner.lock();
        inner.failures = inner.failures.saturating_add(1);
        inner.probe_in_flight = false;
        let from = inner.state;
        let open = match from {
            BreakerState::Closed => inner.failures >= self.threshold,
            // A failed probe opens again, for longer.
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
        };
        if !open {
            return None;
        }
        let cooldown = inner.cooldown;
        inner.retry_at = now.as_micros().saturating_add(cooldown);
        inner.cooldown = cooldown.saturating_mul(2).min(self.max_cooldown);
        inner.state = BreakerState::Open;
        Some(Transition {
            from,
            to: BreakerState::Open,
            failures: inner.failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1_000)
    }

    #[test]
    fn opens_after_threshold_probes_after_cooldown_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_millis(100), Duration::from_secs(1));
        assert!(b.on_failure(t(0)).is_none());
        assert!(b.on_failure(t(1)).is_none());
        assert_eq!(b.on_failure(t(2)).unwrap().to, BreakerState::Open);
        assert_eq!(b.permit(t(50)).0, Permit::Reject);
        assert_eq!(b.retry_in(t(50)), Duration::from_millis(52));
        let (permit, transition) = b.permit(t(102));
        assert_eq!(permit, Permit::Probe);
        assert_eq!(transition.unwrap().to, BreakerState::HalfOpen);
        // One probe at a time.
        assert_eq!(b.permit(t(103)).0, Permit::Reject);
        assert_eq!(b.on_success().unwrap().to, BreakerState::Closed);
        assert_eq!(b.permit(t(104)).0, Permit::Call);
    }

    #[test]
    fn failed_probes_back_off_up_to_the_maximum() {
        let b = Breaker::new(1, Duration::from_millis(100), Duration::from_millis(300));
        b.on_failure(t(0));
        assert_eq!(b.retry_in(t(0)), Duration::from_millis(100));
        assert_eq!(b.permit(t(100)).0, Permit::Probe);
        b.on_failure(t(100));
        assert_eq!(b.retry_in(t(100)), Duration::from_millis(200));
        assert_eq!(b.permit(t(300)).0, Permit::Probe);
        b.on_failure(t(300));
        assert_eq!(b.retry_in(t(300)), Duration::from_millis(300));
        assert_eq!(b.permit(t(600)).0, Permit::Probe);
        b.on_success();
        // Closing resets the cool-down.
        b.on_failure(t(700));
        assert_eq!(b.retry_in(t(700)), Duration::from_millis(100));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let b = Breaker::new(2, Duration::from_millis(100), Duration::from_secs(1));
        b.on_failure(t(0));
        b.on_success();
        assert!(b.on_failure(t(1)).is_none());
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
