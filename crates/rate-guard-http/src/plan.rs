//! [`Plan`]: what one request will be decided on, built by [`Front::plan`](crate::Front::plan).

use std::num::NonZeroU32;

use rate_guard_core::metrics::Counters;
use rate_guard_core::{KeyBuilder, Rule};
use smallvec::SmallVec;

/// Every rule that applies to one request, with the identity it counts for: the global limits
/// first, then the route's, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Inline up to two rules (a global rule and a route's): no allocation for most requests.
    pub(crate) items: SmallVec<[PlanItem; 2]>,
}

/// One rule of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    pub(crate) rule: Rule,
    pub(crate) identity: String,
    pub(crate) cost: NonZeroU32,
    pub(crate) shadow: bool,
    pub(crate) counters: Counters,
}

impl Plan {
    /// The rules, in order.
    #[must_use]
    pub fn items(&self) -> &[PlanItem] {
        &self.items
    }

    /// Whether no rule applies.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The storage key of each rule, in order, as `keys` builds them: what a service in any
    /// language configured alike reads and writes.
    #[must_use]
    pub fn keys(&self, keys: &KeyBuilder) -> Vec<String> {
        self.items
            .iter()
            .map(|item| keys.key(&item.rule, &item.identity))
            .collect()
    }
}

impl PlanItem {
    /// The rule (route rules under their scoped id).
    #[must_use]
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The route template the rule is scoped to (a metrics and log label); empty for a
    /// global rule.
    #[must_use]
    pub fn route(&self) -> &str {
        &self.counters.labels().route
    }

    /// The rule's metrics.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whose quota: `ip:203.0.113.9`, `global`, `user:42`, ...
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The identity without its kind tag (see [`identity::value`](crate::identity::value)):
    /// `203.0.113.9`, `42`, a header's value.
    #[must_use]
    pub fn value(&self) -> &str {
        crate::identity::value(&self.identity)
    }

    /// What the request weighs.
    #[must_use]
    pub fn cost(&self) -> NonZeroU32 {
        self.cost
    }

    /// Whether the rule only observes.
    #[must_use]
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }
}
