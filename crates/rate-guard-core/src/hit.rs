//! [`Hit`]: one rule of a request, whose quota it counts, and what it weighs.

use std::num::NonZeroU32;

use crate::metrics::Counters;
use crate::rule::Rule;

/// One rule of a request and the identity it counts for (a client address, a user id,
/// `"global"`…), with the request's weight.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// The rule (one of the limiter's, or any other, such as a route's).
    pub rule: &'a Rule,
    /// Whose quota: escaped into the key by the limiter's [`KeyBuilder`](crate::KeyBuilder).
    pub identity: &'a str,
    /// The request's weight.
    pub cost: NonZeroU32,
    /// The rule's metrics, registered where it was configured
    /// ([`metrics::register`](crate::metrics::register)). `None`: the observer finds them by
    /// the rule's id (a registry lookup per decision; for rules made on the fly).
    pub counters: Option<&'a Counters>,
}

impl<'a> Hit<'a> {
    /// `rule` for `identity` at `cost`, its metrics found by the rule's id.
    #[must_use]
    pub fn new(rule: &'a Rule, identity: &'a str, cost: NonZeroU32) -> Self {
        Self {
            rule,
            identity,
            cost,
            counters: None,
        }
    }

    /// The same hit, counted in `counters` (registered once, where the rule was configured).
    #[must_use]
    pub fn counted_in(self, counters: &'a Counters) -> Self {
        Self {
            counters: Some(counters),
            ..self
        }
    }
}
