//! Decision logs as `tracing` events (target `rate_guard`). What is logged is decided by
//! [`rate_guard_http::DecisionLog`], the one the Python package formats as `logging` records:
//!
//! - A refusal is a `rate_limited` event (`fail_closed` for a 503 while the store is down), and
//!   a shadow rule's would-be refusal one with `decision = "shadow_blocked"`: `rule`,
//!   `rule_name`, `route`, `decision`, `status`, `limit`, `remaining`, `retry_after` (whole
//!   seconds, rounded up), `identity`, `source`, `degraded`, `suppressed`. Sampled per rule: at
//!   most `log_denials_per_second` a second (a float, default 10; 0 turns them off), the
//!   others counted in the rule's next event's `suppressed`, or in a `rate_limited_suppressed`
//!   event (`rule`, `rule_name`, `route`, `suppressed`) at the next refusal of any rule once
//!   the rule has been quiet for a second.
//! - The client identity is `hashed` (default: a keyed `BLAKE2b` digest, keyed by
//!   `log_identity_salt` or random per process), `raw`, or `omit`ted (`log_identities`).
//! - A request the store could not decide is a `store_error` event (not sampled: the breaker
//!   bounds them).

use rate_guard_http::{
    DecisionLog, DenialRecord, Outcome, Plan, Record, RouteLimits, SuppressedRecord,
};

/// Logs what operators want to know about `outcome` of `plan`; `route` finds the limits of
/// the route a rule belongs to.
pub(crate) fn outcome<'r>(
    log: &DecisionLog,
    outcome: &Outcome,
    plan: &Plan,
    route: impl Fn(&str) -> Option<&'r RouteLimits>,
) {
    if let Some(error) = outcome.error() {
        tracing::warn!(target: "rate_guard", event = "store_error", %error, "request not decided by the store");
    }
    for record in log.outcome(outcome, plan, route) {
        match record {
            Record::Denial(denial) => denial_event(&denial),
            Record::Suppressed(suppressed) => suppressed_event(&suppressed),
        }
    }
}

fn denial_event(r: &DenialRecord) {
    tracing::warn!(
        target: "rate_guard",
        event = r.event,
        rule = r.rule.as_deref().unwrap_or(""),
        rule_name = r.rule_name.as_deref().unwrap_or(""),
        route = r.route.as_deref().unwrap_or(""),
        decision = r.decision.as_str(),
        status = r.status,
        limit = r.limit,
        remaining = r.remaining,
        retry_after = r.retry_after.map_or(0, |s| s.ceil() as u64),
        identity = r.identity.as_deref().unwrap_or(""),
        source = r.source,
        degraded = r.degraded,
        suppressed = r.suppressed,
        "request limited"
    );
}

fn suppressed_event(r: &SuppressedRecord) {
    tracing::warn!(
        target: "rate_guard",
        event = "rate_limited_suppressed",
        rule = r.rule.as_deref().unwrap_or(""),
        rule_name = r.rule_name.as_deref().unwrap_or(""),
        route = r.route.as_deref().unwrap_or(""),
        suppressed = r.suppressed,
        "denials not logged"
    );
}
