//! What a [`Limiter`](crate::Limiter) does when its store is slow or gone.
//!
//! - **Timeout budget**: the store bounds each call (the Redis store's command timeout, 100 ms
//!   by default, covers connecting and the command). A call that fails or times out counts as a
//!   failure.
//! - **Circuit breaker**: after `failure_threshold` consecutive failures (default 5) no request
//!   waits on the store for `cooldown` (default 1 s); then one probe at a time goes through; a
//!   failed probe doubles the cool-down (up to `max_cooldown`, default 30 s), a successful one
//!   closes the breaker and the store decides again.
//! - **While the store is unavailable** (a failed call, or an open breaker): with
//!   `in_memory_fallback` an in-process memory store decides, each limit divided by
//!   `instance_count` so that a fleet of that many instances stays near its total; otherwise a
//!   rule fails open (allowed) or closed (denied) as its own `fail_open` or the limiter's says.
//!   Every such verdict is marked degraded ([`Verdict::is_degraded`](crate::Verdict::is_degraded)).
//! - **Recovery**: counts taken in the fallback stay in this process and are not replayed into
//!   the store; the store keeps what it had before the outage (its keys expire on their own), so
//!   right after an outage a client may get up to its store quota again on top of what the
//!   fallback admitted. That is the price of not blocking on a dead store.
//! - **A request the store rejects** (a script error or a wrong type caused by one key's data,
//!   an unexpected reply: [`StoreError::Rejected`]) is decided like a request during an outage
//!   (the fallback, else fail open / closed per rule), but the store is not unavailable: the
//!   breaker does not count it, no fallback period starts, and at most 10 such events per
//!   second are emitted.
//! - **Deny cache**: a request denied with a retry time is answered locally until then, without
//!   a round trip (bounded: `deny_cache_size` entries, default 10,000; 0 turns it off).
//! - **Events**: every breaker and fallback transition is an [`Event`] for hooks (metrics) and a
//!   `tracing` event (logs).

pub(crate) mod breaker;
pub(crate) mod deny_cache;
pub(crate) mod log_budget;

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

pub use breaker::BreakerState;

use crate::error::{ConfigError, StoreError};

/// Degradation settings; see the module docs. Built with its setters, checked by
/// [`LimiterBuilder::build`](crate::LimiterBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degradation {
    pub(crate) failure_threshold: u32,
    pub(crate) cooldown: Duration,
    pub(crate) max_cooldown: Duration,
    pub(crate) fail_open: bool,
    pub(crate) in_memory_fallback: bool,
    pub(crate) instance_count: NonZeroU32,
    pub(crate) deny_cache_size: usize,
    pub(crate) deny_cache_ttl: Duration,
}

impl Default for Degradation {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(30),
            fail_open: true,
            in_memory_fallback: false,
            instance_count: NonZeroU32::MIN,
            deny_cache_size: 10_000,
            deny_cache_ttl: Duration::from_secs(1),
        }
    }
}

impl Degradation {
    /// Consecutive failures that open the breaker (default 5).
    #[must_use]
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// How long an open breaker keeps requests off the store before a probe (default 1 s);
    /// doubled after each failed probe up to `max_cooldown` (default 30 s).
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration, max_cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self.max_cooldown = max_cooldown;
        self
    }

    /// Allow (true, the default) or deny requests while the store is unavailable and there is
    /// no fallback. A rule's own setting wins.
    #[must_use]
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// Decide on an in-process memory store while the store is unavailable, each limit divided
    /// by `instance_count` (the number of instances sharing the quota).
    #[must_use]
    pub fn in_memory_fallback(mut self, instance_count: NonZeroU32) -> Self {
        self.in_memory_fallback = true;
        self.instance_count = instance_count;
        self
    }

    /// How many denied requests the deny cache remembers (default 10,000; 0 turns it off).
    #[must_use]
    pub fn deny_cache_size(mut self, entries: usize) -> Self {
        self.deny_cache_size = entries;
        self
    }

    /// How long a denial is answered locally at most, even when its retry time is later
    /// (default 1 s). A reset made by another process is seen after this long; a flood on a
    /// blocked key still costs the store one call per key per `ttl`.
    #[must_use]
    pub fn deny_cache_ttl(mut self, ttl: Duration) -> Self {
        self.deny_cache_ttl = ttl;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.deny_cache_ttl.is_zero() {
            return Err(ConfigError::Degradation(
                "deny_cache_ttl must be longer than zero (use deny_cache_size 0 to turn the cache off)",
            ));
        }
        if self.failure_threshold == 0 {
            return Err(ConfigError::Degradation(
                "failure_threshold must be at least 1",
            ));
        }
        if self.cooldown.is_zero() {
            return Err(ConfigError::Degradation(
                "cooldown must be longer than zero",
            ));
        }
        if self.max_cooldown < self.cooldown {
            return Err(ConfigError::Degradation(
                "max_cooldown must be at least cooldown",
            ));
        }
        Ok(())
    }
}

/// Something the limiter's degradation machinery did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A store call failed or timed out, or the store rejected one request
    /// ([`StoreError::Rejected`]).
    StoreFailed {
        /// What went wrong.
        error: StoreError,
    },
    /// The breaker changed state.
    Breaker {
        /// Its state before.
        from: BreakerState,
        /// Its state now.
        to: BreakerState,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The store became unavailable: decisions are now degraded.
    FallbackStarted,
    /// The store decides again.
    FallbackEnded,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StoreFailed { error } => write!(f, "store failed: {error}"),
            Event::Breaker { from, to, failures } => write!(
                f,
                "circuit breaker {} -> {} after {failures} consecutive failures",
                from.name(),
                to.name()
            ),
            Event::FallbackStarted => f.write_str("store unavailable: degraded decisions start"),
            Event::FallbackEnded => f.write_str("store available again: degraded decisions end"),
        }
    }
}
