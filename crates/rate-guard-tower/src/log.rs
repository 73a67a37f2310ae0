//! Decision logs: `tracing` events with fields, the Rust twin of Python's `py_rate_guard.logs`.
//!
//! - A refusal is a `rate_limited` event (`rule`, `route`, `status`, `retry_after`,
//!   `identity`, `suppressed`), sampled: at most `log_denials_per_second` a second (default 10;
//!   0 turns them off), the others counted and reported in the next event's `suppressed`, so
//!   an attack cannot flood the logs.
//! - The client identity is `hashed` (default: a keyed hash, stable within the process, never
//!   the raw address), `raw`, or `omit`ted (`log_identities`).
//! - A request the store could not decide is a `store_error` event (not sampled: the breaker
//!   bounds them).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rate_guard_http::{Outcome, Plan};

use crate::error::Error;

/// How client identities appear in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identities {
    Hashed,
    Raw,
    Omit,
}

impl Identities {
    pub(crate) fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "hashed" => Ok(Self::Hashed),
            "raw" => Ok(Self::Raw),
            "omit" => Ok(Self::Omit),
            _ => Err(Error::setting(
                "log_identities",
                "must be \"hashed\", \"raw\" or \"omit\"",
            )),
        }
    }
}

/// The decision log of one guard.
#[derive(Debug)]
pub(crate) struct DecisionLog {
    identities: Identities,
    per_second: u64,
    hasher: RandomState,
    /// The current second and how many refusals were logged in it, packed: second << 20 | n.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl DecisionLog {
    pub(crate) fn new(identities: Identities, per_second: u64) -> Self {
        Self {
            identities,
            per_second: per_second.min((1 << 20) - 1),
            hasher: RandomState::new(),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs what operators want to know about `outcome`.
    pub(crate) fn outcome(&self, outcome: &Outcome, plan: &Plan) {
        if let Some(error) = outcome.error() {
            tracing::warn!(target: "rate_guard", event = "store_error", %error, "request not decided by the store");
        }
        if outcome.allowed() || !self.admit() {
            return;
        }
        let rule = outcome.rule().unwrap_or("");
        let item = plan.items().iter().find(|i| i.rule().id() == rule);
        let identity = match (self.identities, item) {
            (Identities::Omit, _) | (_, None) => String::new(),
            (Identities::Raw, Some(item)) => item.identity().to_owned(),
            (Identities::Hashed, Some(item)) => {
                format!("{:016x}", self.hasher.hash_one(item.identity()))
            }
        };
        let retry_after = outcome
            .verdict()
            .and_then(|v| v.decision().retry_after_secs())
            .unwrap_or(0);
        tracing::warn!(
            target: "rate_guard",
            event = "rate_limited",
            rule,
            route = item.and_then(|i| i.rule().route()).unwrap_or(""),
            status = outcome.status(),
            retry_after,
            identity,
            suppressed = self.suppressed.swap(0, Ordering::Relaxed),
            "request limited"
        );
    }

    /// Whether this refusal may be logged (at most `per_second` a second).
    fn admit(&self) -> bool {
        if self.per_second == 0 {
            return false;
        }
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (at, n) = (current >> 20, current & ((1 << 20) - 1));
            let next = if at == second {
                if n >= self.per_second {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                current + 1
            } else {
                (second << 20) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_per_second_refusals_are_logged_and_the_rest_counted() {
        let log = DecisionLog::new(Identities::Hashed, 3);
        let admitted = (0..10).filter(|_| log.admit()).count();
        // All within one second (or two, if the test straddles a boundary).
        assert!((3..=6).contains(&admitted), "{admitted}");
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 10 - admitted as u64);
        assert!(!DecisionLog::new(Identities::Raw, 0).admit());
    }

    #[test]
    fn identity_modes_parse_and_bad_ones_are_named() {
        assert_eq!(Identities::parse("omit").unwrap(), Identities::Omit);
        let err = Identities::parse("plain").unwrap_err().to_string();
        assert!(err.contains("log_identities"), "{err}");
    }
}
