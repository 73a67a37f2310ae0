//! What a rate limiter answers: a [`Decision`] per rule, and the combined [`Verdict`] of a request.
//!
//! Being limited is a value here, never an error.

use std::cmp::Ordering;
use std::time::Duration;

use smallvec::SmallVec;

/// The answer of one rule (or, combined, of a whole request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The most the rule admits at once: its count, or the burst of a token bucket.
    pub limit: u32,
    /// How many more unit-cost requests the rule would admit right now, after this one.
    pub remaining: u32,
    /// How long until the rule is back to `limit` remaining if no other request arrives.
    pub reset_after: Duration,
    /// For a denied request: how long to wait until the same request would be admitted.
    /// `None` when allowed, and when the cost exceeds what the rule can ever admit.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `reset_after` in whole seconds, rounded up (for `X-RateLimit-Reset`).
    #[must_use]
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }

    /// `retry_after` in whole seconds, rounded up (for `Retry-After`): waiting this long is
    /// always enough.
    #[must_use]
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(ceil_secs)
    }

    /// How much more restrictive `self` is than `other`: `Greater` means `self` should be the
    /// one reported.
    ///
    /// A denial beats an admission; among denials the longest wait wins (a request that can
    /// never be admitted waits longest); among admissions the least remaining wins, then the
    /// longest reset.
    fn restrictiveness(&self, other: &Decision) -> Ordering {
        match (self.allowed, other.allowed) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => match (self.retry_after, other.retry_after) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(&b),
            },
            (true, true) => other
                .remaining
                .cmp(&self.remaining)
                .then(self.reset_after.cmp(&other.reset_after)),
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The decision of a whole request: every rule's decision, and which one is reported.
///
/// All rules of a request are decided together: if any rule denies, none consumes, so either
/// every entry of [`rules`](Self::rules) is allowed or the request is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    rules: SmallVec<[Decision; 4]>,
    deciding: usize,
    source: Source,
}

/// Who decided a request: the store, or the limiter on its behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Source {
    /// The store (Redis or memory), as configured.
    #[default]
    Store,
    /// The deny cache: the same request was denied moments ago, until a time not yet reached.
    DenyCache,
    /// The store was unavailable; the in-memory fallback decided.
    Fallback,
    /// The store was unavailable; the request was allowed (fail open).
    FailOpen,
    /// The store was unavailable; the request was denied (fail closed).
    FailClosed,
}

impl Source {
    /// `store`, `deny_cache`, `fallback`, `fail_open` or `fail_closed`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Source::Store => "store",
            Source::DenyCache => "deny_cache",
            Source::Fallback => "fallback",
            Source::FailOpen => "fail_open",
            Source::FailClosed => "fail_closed",
        }
    }

    /// Whether the store was unavailable and the decision is a stand-in.
    #[must_use]
    pub const fn is_degraded(self) -> bool {
        matches!(
            self,
            Source::Fallback | Source::FailOpen | Source::FailClosed
        )
    }
}

impl Verdict {
    /// Combines the decisions of a request's rules, in the request's order.
    ///
    /// Returns `None` for an empty list.
    #[must_use]
    pub fn from_rules(rules: SmallVec<[Decision; 4]>) -> Option<Self> {
        let mut deciding = 0;
        for (i, d) in rules.iter().enumerate().skip(1) {
            if d.restrictiveness(&rules[deciding]) == Ordering::Greater {
                deciding = i;
            }
        }
        (!rules.is_empty()).then_some(Self {
            rules,
            deciding,
            source: Source::Store,
        })
    }

    /// The verdict of `rules` (one per rule, in request order) reporting rule `deciding`
    /// (a request refused by a rule that refuses all reports that rule, whatever the others
    /// say); `deciding` must index `rules`.
    pub(crate) fn reporting(rules: SmallVec<[Decision; 4]>, deciding: usize) -> Self {
        debug_assert!(deciding < rules.len());
        Self {
            rules,
            deciding,
            source: Source::Store,
        }
    }

    /// The verdict of a one-rule request.
    #[must_use]
    #[inline]
    pub fn single(decision: Decision) -> Self {
        let mut rules = SmallVec::new();
        rules.push(decision);
        Self {
            rules,
            deciding: 0,
            source: Source::Store,
        }
    }

    /// The combined decision: the most restrictive rule's decision. Its `allowed` is true only
    /// when every rule allowed.
    #[must_use]
    #[inline]
    pub fn decision(&self) -> Decision {
        self.rules[self.deciding]
    }

    /// Whether the request was admitted (by every rule).
    #[must_use]
    #[inline]
    pub fn allowed(&self) -> bool {
        self.rules[self.deciding].allowed
    }

    /// The index (in request order) of the rule whose decision is reported.
    #[must_use]
    #[inline]
    pub fn deciding_rule(&self) -> usize {
        self.deciding
    }

    /// Who decided: the store, or the limiter standing in for it.
    #[must_use]
    #[inline]
    pub fn source(&self) -> Source {
        self.source
    }

    /// Whether the store was unavailable and this verdict is a stand-in (fallback, fail open,
    /// fail closed).
    #[must_use]
    #[inline]
    pub fn is_degraded(&self) -> bool {
        self.source.is_degraded()
    }

    /// The same verdict, attributed to `source`.
    #[must_use]
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// The same verdict `elapsed` later: waits and resets shortened by it (the deny cache).
    #[must_use]
    pub(crate) fn aged(&self, elapsed: Duration) -> Self {
        let mut aged = self.clone();
        for d in &mut aged.rules {
            d.reset_after = d.reset_after.saturating_sub(elapsed);
            d.retry_after = d.retry_after.map(|r| r.saturating_sub(elapsed));
        }
        aged.source = Source::DenyCache;
        aged
    }

    /// Every rule's decision, in request order.
    #[must_use]
    #[inline]
    pub fn rules(&self) -> &[Decision] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::smallvec;

    fn d(allowed: bool, remaining: u32, reset: u64, retry: Option<u64>) -> Decision {
        Decision {
            allowed,
            limit: 10,
            remaining,
            reset_after: Duration::from_millis(reset),
            retry_after: retry.map(Duration::from_millis),
        }
    }

    #[test]
    fn seconds_round_up() {
        let x = d(false, 0, 1_001, Some(1));
        assert_eq!(x.reset_after_secs(), 2);
        assert_eq!(x.retry_after_secs(), Some(1));
        assert_eq!(d(true, 0, 2_000, None).reset_after_secs(), 2);
        assert_eq!(d(true, 0, 0, None).reset_after_secs(), 0);
    }

    #[test]
    fn least_remaining_is_reported_when_all_allow() {
        let v = Verdict::from_rules(smallvec![
            d(true, 5, 10, None),
            d(true, 2, 1, None),
            d(true, 2, 9, None)
        ])
        .unwrap();
        assert!(v.allowed());
        assert_eq!(v.deciding_rule(), 2);
    }

    #[test]
    fn longest_denial_is_reported() {
        let v = Verdict::from_rules(smallvec![
            d(true, 0, 10, None),
            d(false, 0, 10, Some(300)),
            d(false, 0, 10, Some(900)),
            d(true, 3, 10, None),
        ])
        .unwrap();
        assert!(!v.allowed());
        assert_eq!(v.deciding_rule(), 2);
        let never =
            Verdict::from_rules(smallvec![d(false, 0, 1, Some(5)), d(false, 0, 1, None)]).unwrap();
        assert_eq!(never.deciding_rule(), 1);
    }

    #[test]
    fn empty_has_no_verdict() {
        assert!(Verdict::from_rules(SmallVec::new()).is_none());
    }
}
