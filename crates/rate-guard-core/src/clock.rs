//! What time it is: an injected [`Clock`], so tests never sleep.
//!
//! Time is a [`Timestamp`]: whole microseconds since the Unix epoch. Microseconds are what
//! Redis `TIME` reports, and every timestamp of this century stays below 2^52, where an
//! `f64` (a Lua number) holds integers exactly — see [`crate::algorithm`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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

/// The operating system's wall clock (what Redis `TIME` reads on the server), read cheaply.
///
/// A `SystemTime::now()` is a `clock_gettime` (tens of nanoseconds on a VM, more than the rest of
/// a memory-store decision); this clock reads the CPU's counter instead (the TSC through
/// [`quanta`], as governor does) and adds the offset to the wall clock measured when it was
/// anchored. Every clone shares one process-wide anchor, set on first use (which calibrates the
/// counter: up to 200 ms once per process; [`MemoryStore`](crate::MemoryStore)'s builder pays it
/// at construction).
///
/// **When the wall clock is stepped** (an admin, NTP's first sync, a VM resumed), the clock
/// follows within a second: every second, the first reader re-anchors against
/// `SystemTime`. Between anchors it runs at the counter's rate, so an NTP slew (at most 500 ppm)
/// shows as a step of at most 0.5 ms at the next anchor, forward or back — the algorithms take a
/// clock that steps back as `SystemTime` itself may. Without an invariant counter, `quanta` reads
/// the OS monotonic clock instead, and the same anchoring applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// How often [`SystemClock`] re-reads the wall clock to follow its steps.
const ANCHOR_INTERVAL: Duration = Duration::from_secs(1);

/// [`SystemClock`]'s shared state: the counter and its offset to the wall clock.
struct Anchor {
    counter: quanta::Clock,
    /// The counter's reading at construction: `monotonic` counts from here.
    origin: u64,
    /// Microseconds per counter tick, times 2^64: one multiplication turns ticks into
    /// microseconds (quanta's own scaling to nanoseconds, then a division by 1,000, is a longer
    /// chain on every read).
    micros_per_tick: u64,
    /// Wall-clock microseconds minus monotonic microseconds, as of the last anchoring.
    offset: AtomicU64,
    /// The monotonic microsecond at which the next reader re-anchors.
    reanchor_at: AtomicU64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

impl Anchor {
    fn new() -> Self {
        // quanta's calibration, read once over 2^40 ticks (minutes to days of them): exact to
        // parts in 10^11, far below the anchoring's own error (see `SystemClock`).
        const TICKS_LOG2: u32 = 40;
        let counter = quanta::Clock::new();
        let origin = counter.raw();
        let nanos = u128::from(counter.delta_as_nanos(0, 1 << TICKS_LOG2));
        // Fits unless a tick is longer than a microsecond: quanta counts the TSC (GHz) or, without
        // one, nanoseconds.
        let micros_per_tick =
            u64::try_from((nanos << (64 - TICKS_LOG2)) / 1_000).unwrap_or(u64::MAX);
        let anchor = Anchor {
            counter,
            origin,
            micros_per_tick,
            offset: AtomicU64::new(0),
            reanchor_at: AtomicU64::new(0),
        };
        anchor.anchor(anchor.monotonic());
        anchor
    }

    /// Microseconds since `origin` on the counter (0 if the counter reads before it, as a
    /// counter not synchronised across cores may).
    #[inline]
    fn monotonic(&self) -> u64 {
        self.micros(self.counter.raw().saturating_sub(self.origin))
    }

    /// `ticks` of the counter in whole microseconds.
    #[inline]
    fn micros(&self, ticks: u64) -> u64 {
        ((u128::from(ticks) * u128::from(self.micros_per_tick)) >> 64) as u64
    }

    /// Measures the offset again; returns the wall time now.
    #[cold]
    fn anchor(&self, monotonic: u64) -> u64 {
        let wall = wall_micros();
        self.offset
            .store(wall.wrapping_sub(monotonic), Ordering::Relaxed);
        self.reanchor_at.store(
            monotonic.saturating_add(duration_micros(ANCHOR_INTERVAL)),
            Ordering::Relaxed,
        );
        wall
    }

    #[inline]
    fn now(&self) -> u64 {
        let monotonic = self.monotonic();
        let next = self.reanchor_at.load(Ordering::Relaxed);
        if monotonic >= next
            && self
                .reanchor_at
                .compare_exchange(next, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // One reader re-anchors; the others keep the previous offset meanwhile.
            return self.anchor(monotonic);
        }
        monotonic.wrapping_add(self.offset.load(Ordering::Relaxed))
    }
}

/// `SystemTime::now()` in microseconds; a clock set before 1970 reads as the epoch rather than
/// failing a decision.
fn wall_micros() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    duration_micros(since_epoch)
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp(ANCHOR.get_or_init(Anchor::new).now())
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
    fn system_clock_follows_the_wall_clock() {
        let before = wall_micros();
        let now = SystemClock.now().as_micros();
        let after = wall_micros();
        // Within the counter's drift since the last anchor (under a second ago: ≤ 0.5 ms).
        assert!(
            now + 1_000 >= before && now <= after + 1_000,
            "{before} {now} {after}"
        );
    }

    #[test]
    fn ticks_convert_as_quanta_scales_them() {
        let anchor = Anchor::new();
        for ticks in [0, 1, 999, 1 << 20, 3_000_000_000, 1 << 40, 1 << 50] {
            let quanta = anchor.counter.delta_as_nanos(0, ticks) / 1_000;
            let ours = anchor.micros(ticks);
            // Within a microsecond per ~10^11 ticks (a minute of TSC), plus rounding.
            assert!(
                ours.abs_diff(quanta) <= 1 + ticks / 100_000_000_000,
                "{ticks}: {ours} {quanta}"
            );
        }
    }

    #[test]
    fn a_stepped_wall_clock_is_followed_at_the_reanchor_at() {
        let anchor = Anchor::new();
        // As if the wall clock had been stepped an hour back since anchoring.
        let hour = duration_micros(Duration::from_secs(3_600));
        anchor.offset.fetch_add(hour, Ordering::Relaxed);
        assert!(anchor.now() > wall_micros() + hour / 2);
        anchor.reanchor_at.store(0, Ordering::Relaxed);
        let now = anchor.now();
        assert!(now.abs_diff(wall_micros()) < 1_000);
        assert!(anchor.now().abs_diff(wall_micros()) < 1_000);
    }

    #[test]
    fn set_can_step_back() {
        let clock = ManualClock::new(Timestamp::from_secs(10));
        clock.set(Timestamp::from_secs(5));
        assert_eq!(clock.now(), Timestamp::from_secs(5));
    }
}
