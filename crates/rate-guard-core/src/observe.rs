//! [`Observer`]: what a [`Limiter`](crate::Limiter) tells about the requests it decides, and
//! [`Recorder`], the observer that counts them in the [`metrics`](crate::metrics).

use crate::hit::Hit;
use crate::metrics;

/// Told of the requests a limiter decides (see [`Action`](crate::Action)). The default,
/// [`Recorder`], counts them in the process's metrics.
pub trait Observer: Send + Sync {
    /// A request decided with [`Action::Hit`](crate::Action::Hit); `deciding` is the hit of
    /// the rule that decided it (the least remaining).
    fn decided(&self, deciding: &Hit<'_>, allowed: bool);

    /// A rule of a request decided with [`Action::Shadow`](crate::Action::Shadow) would have
    /// denied it (it was let through).
    fn shadow_denied(&self, hit: &Hit<'_>);
}

/// Counts requests in the [`metrics`]: allowed or blocked for the deciding rule, and each
/// shadow rule's would-be denials, in the counters the hit carries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recorder;

impl Recorder {
    fn with_counters(hit: &Hit<'_>, count: impl FnOnce(&metrics::Counters)) {
        if !metrics::enabled() {
            return;
        }
        match hit.counters {
            Some(counters) => count(counters),
            None => count(&metrics::register(hit.rule.id(), "", hit.rule.algorithm())),
        }
    }
}

impl Observer for Recorder {
    fn decided(&self, deciding: &Hit<'_>, allowed: bool) {
        Self::with_counters(deciding, |c| c.record(allowed));
    }

    fn shadow_denied(&self, hit: &Hit<'_>) {
        Self::with_counters(hit, metrics::Counters::record_shadow_denial);
    }
}
