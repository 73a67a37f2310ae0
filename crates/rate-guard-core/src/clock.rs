//! What time it is: an injected [`Clock`], so tests never sleep.
//!
//! Time is a [`Timestamp`]: whole microseconds since the Unix epoch. Microseconds are what
//! Redis `TIME` reports, and every timestamp of this century stays below 2^52, where an
//! `f64` (a Lua number) holds integers exactly — see [`crate::algorithm`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: whole microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The timestamp `micros` microseconds after the Unix epoch.
    #[must_use]
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// The timestamp `secs` seconds after the Unix epoch.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// This timestamp moved `by` later, saturating at the end of representable time.
    #[must_use]
    pub fn saturating_add(self, by: Duration) -> Self {
        Self(self.0.saturating_add(duration_micros(by)))
    }

    /// How long after `earlier` this timestamp is (zero if it is not later).
    #[must_use]
    pub const fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// A duration in whole microseconds, saturating at `u64::MAX`.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock (what Redis `TIME` reads on the server).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A clock set before 1970 reads as the epoch rather than failing a decision.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(duration_micros(since_epoch))
    }
}

/// A clock that moves only when told to. Clones share one time, across threads.
///
/// ```
/// use std::time::Duration;
/// use rate_guard_core::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_000));
/// let shared = clock.clone();
/// shared.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now(), Timestamp::from_micros(1_001_500_000));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self {
            micros: Arc::new(AtomicU64::new(start.0)),
        }
    }

    /// Moves the clock `by` later. (One atomic add: it wraps only after 584,000 years.)
    pub fn advance(&self, by: Duration) {
        self.micros.fetch_add(duration_micros(by), Ordering::AcqRel);
    }

    /// Sets the clock to `to`, which may be earlier than now (to test clocks that step back).
    pub fn set(&self, to: Timestamp) {
        self.micros.store(to.0, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.micros.load(Ordering::Acquire))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_across_threads() {
        let clock = ManualClock::new(Timestamp::from_secs(10));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = clock.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.advance(Duration::from_micros(1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(clock.now().as_micros(), 10_000_000 + 4_000);
    }

    #[test]
    fn system_clock_is_after_2020_and_below_2_pow_52() {
        let now = SystemClock.now().as_micros();
        assert!(now > 1_577_836_800_000_000);
        assert!(now < 1 << 52);
    }

    #[test]
    fn set_can_step_back() {
        let clock = ManualClock::new(Timestamp::from_secs(10));
        clock.set(Timestamp::from_secs(5));
        assert_eq!(clock.now(), Timestamp::from_secs(5));
    }
}
