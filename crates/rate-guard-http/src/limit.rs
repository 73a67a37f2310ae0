//! [`Limit`]: one rule as a front applies it. Its own module so that the front (which plans
//! with limits) and the routes (which hold them) both depend on it, not on each other.

use std::num::NonZeroU32;

use rate_guard_core::metrics::{self, Counters};
use rate_guard_core::Rule;

use crate::key_spec::KeySpec;

/// One rule as a front applies it: the rule, whose quota it counts ([`KeySpec`]), what a
/// request weighs, whether it only observes (`shadow`), and its metrics (registered here,
/// once, and carried by every request's plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub(crate) rule: Rule,
    pub(crate) key: KeySpec,
    pub(crate) cost: NonZeroU32,
    pub(crate) shadow: bool,
    /// Which of the request's custom keys a `custom` spec reads (0: [`RequestInfo::custom`](crate::RequestInfo::custom)).
    pub(crate) custom_slot: usize,
    /// The rule's metrics: labelled with its id, or once scoped to a route
    /// ([`Front::route`](crate::Front::route)) with the id it was scoped from and the route.
    pub(crate) counters: Counters,
}

impl Limit {
    /// `rule` per client address, cost 1, enforced.
    #[must_use]
    pub fn new(rule: Rule) -> Self {
        Self {
            counters: metrics::register(rule.id(), "", rule.algorithm()),
            rule,
            key: KeySpec::Ip,
            cost: NonZeroU32::MIN,
            shadow: false,
            custom_slot: 0,
        }
    }

    /// Whose quota the rule counts.
    #[must_use]
    pub fn key(mut self, key: KeySpec) -> Self {
        self.key = key;
        self
    }

    /// What one request weighs against the rule.
    #[must_use]
    pub fn cost(mut self, cost: NonZeroU32) -> Self {
        self.cost = cost;
        self
    }

    /// Count and report, never block.
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// For a `custom` key spec: which of the request's custom keys the rule counts by, when
    /// rules of one request are keyed by different functions (Python's stacked `key_func`s).
    /// Slot 0 (the default) is [`RequestInfo::custom`](crate::RequestInfo::custom); slot `n` is the `n`-th of the extra
    /// keys given to [`Front::plan_with_keys`](crate::Front::plan_with_keys).
    #[must_use]
    pub fn custom_slot(mut self, slot: usize) -> Self {
        self.custom_slot = slot;
        self
    }

    /// The rule.
    #[must_use]
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The key spec.
    #[must_use]
    pub fn key_spec(&self) -> &KeySpec {
        &self.key
    }

    /// The cost.
    #[must_use]
    pub fn weight(&self) -> NonZeroU32 {
        self.cost
    }

    /// Whether the limit only observes.
    #[must_use]
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }
}
