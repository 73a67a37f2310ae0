//! [`LogBudget`]: at most a few events per second, for failures that nothing else bounds.
//!
//! A store failure is bounded by the breaker (`failure_threshold` calls, then one probe per
//! cool-down), but a request the store rejects leaves the breaker alone, so a client that keeps
//! hitting a corrupt key could otherwise write one log record per request.

use parking_lot::Mutex;

use crate::clock::Timestamp;

/// Events let through per second.
const PER_SECOND: u32 = 10;

/// Lets [`PER_SECOND`] events through per second of the limiter's clock.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    /// The current second and how many events it let through.
    window: Mutex<(u64, u32)>,
}

impl LogBudget {
    /// Whether an event at `now` may be emitted.
    pub(crate) fn admit(&self, now: Timestamp) -> bool {
        let second = now.as_micros() / 1_000_000;
        let mut window = self.window.lock();
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 < PER_SECOND {
            window.1 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_per_second_then_a_new_second() {
        let budget = LogBudget::default();
        let t = Timestamp::from_secs(100);
        assert_eq!((0..15).filter(|_| budget.admit(t)).count(), 10);
        assert!(budget.admit(Timestamp::from_secs(101)));
    }
}
