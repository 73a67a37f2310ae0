//! Process-wide metrics, counted with atomics on the hot path and read when scraped.
//!
//! - Requests: one count per decided request (mode hit), allowed or blocked, labelled by the
//!   deciding rule (its id, the route it is scoped to, its algorithm), plus shadow denials.
//!   A label set's [`Counters`] are registered once, where a rule is configured ([`register`]:
//!   a limiter's rules when it is built, a front's limits when they are added), and travel with
//!   each request's [`Hit`](crate::Hit), so counting is one relaxed atomic add with no lookup.
//!   Label sets come from configuration, never from clients, and are capped at
//!   [`MAX_LABEL_SETS`] (rules beyond share one `_other` set). The limiter counts through its
//!   [`Observer`](crate::Observer); [`Recorder`](crate::observe::Recorder) is the one that
//!   writes here.
//! - The store: latency of remote store calls (a histogram from 50 µs to 1 s), failures by
//!   kind, answers from the deny cache.
//! - Degradation: how many limiters decide degraded now (`fallback_active`) and the worst
//!   breaker state among them.
//!
//! [`snapshot`] reads everything for an exporter (the Python collector); [`render_prometheus`]
//! writes the Prometheus text format. [`set_enabled`]`(false)` stops the counting.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::algorithm::Algorithm;
use crate::degrade::BreakerState;
use crate::error::StoreError;

/// The most label sets kept; rules beyond share the `_other` set.
pub const MAX_LABEL_SETS: usize = 10_000;

/// Upper bounds of the latency histogram's buckets, in seconds (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The store failure kinds counted, in order.
pub const ERROR_KINDS: [&str; 4] = ["timeout", "unavailable", "refused", "rejected"];

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns counting on or off for the process (on by default).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether counting is on.
#[must_use]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What a request count is labelled with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    /// The deciding rule's id.
    pub rule: Arc<str>,
    /// The route template the rule is scoped to; empty for global rules.
    pub route: Arc<str>,
    /// The rule's algorithm.
    pub algorithm: &'static str,
}

/// Counters are striped over this many cache lines, so threads counting for the same rule
/// do not fight over one line.
const STRIPES: usize = 4;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Stripe {
    allowed: AtomicU64,
    blocked: AtomicU64,
    shadow_blocked: AtomicU64,
}

/// One label set's request counters, from [`register`]. Cheap to clone; clones count
/// together, and so do the counters of every registration with the same labels.
#[derive(Debug, Clone)]
pub struct Counters(Arc<Entry>);

#[derive(Debug)]
struct Entry {
    labels: Labels,
    stripes: [Stripe; STRIPES],
}

// Counters are their label set: two registrations alike are one set.
impl PartialEq for Counters {
    fn eq(&self, other: &Self) -> bool {
        self.0.labels == other.0.labels
    }
}

impl Eq for Counters {}

/// This thread's stripe, assigned round-robin on first use.
fn stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        #[allow(clippy::cast_possible_truncation)] // the remainder is below STRIPES
        static STRIPE: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES as u64) as usize;
    }
    STRIPE.with(|s| *s)
}

impl Counters {
    /// What these counters are labelled with.
    #[must_use]
    pub fn labels(&self) -> &Labels {
        &self.0.labels
    }

    /// Counts a request these counters' rule decided.
    pub fn record(&self, allowed: bool) {
        if enabled() {
            let stripe = &self.0.stripes[stripe()];
            let counter = if allowed {
                &stripe.allowed
            } else {
                &stripe.blocked
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request this (shadow) rule would have blocked but let through.
    pub fn record_shadow_denial(&self) {
        if enabled() {
            self.0.stripes[stripe()]
                .shadow_blocked
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sum(&self, field: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.0
            .stripes
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }
}

/// The counters of the rule named `rule` (its id, or for a route-scoped rule the id it was
/// scoped from), scoped to `route` (empty: not scoped), counted by `algorithm`: the same
/// counters for every registration alike. Call it where a rule is configured, not per request
/// (it takes the registry's lock).
#[must_use]
pub fn register(rule: &str, route: &str, algorithm: Algorithm) -> Counters {
    let mut sets = REGISTRY.rules.lock();
    let labels = Labels {
        rule: rule.into(),
        route: route.into(),
        algorithm: algorithm.name(),
    };
    if let Some(counters) = sets.get(&labels) {
        return counters.clone();
    }
    let labels = if sets.len() >= MAX_LABEL_SETS {
        Labels {
            rule: "_other".into(),
            route: "".into(),
            algorithm: "_other",
        }
    } else {
        labels
    };
    sets.entry(labels.clone())
        .or_insert_with(|| {
            Counters(Arc::new(Entry {
                labels,
                stripes: Default::default(),
            }))
        })
        .clone()
}

#[derive(Default)]
struct Registry {
    rules: Mutex<HashMap<Labels, Counters>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    deny_cache_hits: AtomicU64,
    degraded_limiters: AtomicI64,
    open_breakers: AtomicI64,
    half_open_breakers: AtomicI64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

pub(crate) fn observe_store_latency(elapsed: Duration) {
    if !enabled() {
        return;
    }
    let r = &*REGISTRY;
    let seconds = elapsed.as_secs_f64();
    if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
        r.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
    }
    r.latency_count.fetch_add(1, Ordering::Relaxed);
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    r.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
}

pub(crate) fn count_store_error(error: &StoreError) {
    let kind = match error {
        StoreError::Timeout(_) => 0,
        StoreError::Unavailable(_) => 1,
        StoreError::Refused(_) => 2,
        StoreError::Rejected(_) => 3,
        StoreError::InvalidRequest(_) => return,
    };
    if enabled() {
        REGISTRY.errors[kind].fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn count_deny_cache_hit() {
    if enabled() {
        REGISTRY.deny_cache_hits.fetch_add(1, Ordering::Relaxed);
    }
}

/// A limiter started (+1) or stopped (-1) deciding degraded. Always counted: a gauge must not
/// drift when counting is switched on later.
pub(crate) fn degraded_changed(delta: i64) {
    REGISTRY
        .degraded_limiters
        .fetch_add(delta, Ordering::Relaxed);
}

/// A breaker went from `from` to `to` (or a limiter with a breaker in `from` went away, with
/// `to == Closed`).
pub(crate) fn breaker_changed(from: BreakerState, to: BreakerState) {
    let gauge = |state| match state {
        BreakerState::Open => Some(&REGISTRY.open_breakers),
        BreakerState::HalfOpen => Some(&REGISTRY.half_open_breakers),
        _ => None,
    };
    if let Some(g) = gauge(from) {
        g.fetch_sub(1, Ordering::Relaxed);
    }
    if let Some(g) = gauge(to) {
        g.fetch_add(1, Ordering::Relaxed);
    }
}

/// Request counts of one label set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCounts {
    /// The labels.
    pub labels: Labels,
    /// Requests allowed.
    pub allowed: u64,
    /// Requests blocked.
    pub blocked: u64,
    /// Requests a shadow rule would have blocked (they were let through).
    pub shadow_blocked: u64,
}

/// Everything counted so far in this process.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Per label set, sorted by labels.
    pub requests: Vec<RequestCounts>,
    /// Cumulative counts per latency bucket (same order as [`LATENCY_BUCKETS`]).
    pub latency_buckets: Vec<u64>,
    /// Observations of the latency histogram.
    pub latency_count: u64,
    /// Their sum, in seconds.
    pub latency_sum: f64,
    /// Store failures per kind (same order as [`ERROR_KINDS`]).
    pub storage_errors: Vec<u64>,
    /// Answers from the deny cache.
    pub deny_cache_hits: u64,
    /// 1 when a limiter decides degraded (fallback, fail open or closed) now, else 0.
    pub fallback_active: u64,
    /// The worst breaker state: 0 closed, 1 half open, 2 open.
    pub breaker_state: u64,
}

/// Reads every metric.
#[must_use]
pub fn snapshot() -> Snapshot {
    let r = &*REGISTRY;
    let mut requests: Vec<RequestCounts> = r
        .rules
        .lock()
        .iter()
        .map(|(labels, c)| RequestCounts {
            labels: labels.clone(),
            allowed: c.sum(|s| &s.allowed),
            blocked: c.sum(|s| &s.blocked),
            shadow_blocked: c.sum(|s| &s.shadow_blocked),
        })
        .collect();
    requests.sort_by(|a, b| {
        (&a.labels.rule, &a.labels.route, a.labels.algorithm).cmp(&(
            &b.labels.rule,
            &b.labels.route,
            b.labels.algorithm,
        ))
    });
    let mut cumulative = 0;
    let latency_buckets = r
        .latency_buckets
        .iter()
        .map(|b| {
            cumulative += b.load(Ordering::Relaxed);
            cumulative
        })
        .collect();
    let breaker_state = if r.open_breakers.load(Ordering::Relaxed) > 0 {
        2
    } else {
        u64::from(r.half_open_breakers.load(Ordering::Relaxed) > 0)
    };
    #[allow(clippy::cast_precision_loss)] // nanoseconds as f64 seconds: precise to 2^53 ns
    let latency_sum = r.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    Snapshot {
        requests,
        latency_buckets,
        latency_count: r.latency_count.load(Ordering::Relaxed),
        latency_sum,
        storage_errors: r.errors.iter().map(|e| e.load(Ordering::Relaxed)).collect(),
        deny_cache_hits: r.deny_cache_hits.load(Ordering::Relaxed),
        fallback_active: u64::from(r.degraded_limiters.load(Ordering::Relaxed) > 0),
        breaker_state,
    }
}

/// Which count of a label set a family shows.
type Pick = fn(&RequestCounts) -> u64;

/// The metrics in the Prometheus text exposition format (version 0.0.4).
#[must_use]
pub fn render_prometheus() -> String {
    let s = snapshot();
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let requests: [(&str, &str, Pick); 3] = [
        (
            "rate_guard_requests_allowed_total",
            "Requests allowed, by deciding rule.",
            |c| c.allowed,
        ),
        (
            "rate_guard_requests_blocked_total",
            "Requests blocked, by deciding rule.",
            |c| c.blocked,
        ),
        (
            "rate_guard_shadow_blocked_total",
            "Requests a shadow rule would have blocked.",
            |c| c.shadow_blocked,
        ),
    ];
    for (name, help, pick) in requests {
        family(&mut out, name, "counter", help);
        for c in &s.requests {
            let l = &c.labels;
            let _ = writeln!(
                out,
                "{name}{{rule=\"{}\",route=\"{}\",algorithm=\"{}\"}} {}",
                escape(&l.rule),
                escape(&l.route),
                l.algorithm,
                pick(c)
            );
        }
    }
    family(
        &mut out,
        "rate_guard_redis_latency_seconds",
        "histogram",
        "Latency of store (Redis) calls.",
    );
    for (bound, count) in LATENCY_BUCKETS.iter().zip(&s.latency_buckets) {
        let _ = writeln!(
            out,
            "rate_guard_redis_latency_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "rate_guard_redis_latency_seconds_bucket{{le=\"+Inf\"}} {count}\n\
         rate_guard_redis_latency_seconds_sum {sum}\n\
         rate_guard_redis_latency_seconds_count {count}",
        count = s.latency_count,
        sum = s.latency_sum,
    );
    family(
        &mut out,
        "rate_guard_storage_errors_total",
        "counter",
        "Store failures, by kind.",
    );
    for (kind, n) in ERROR_KINDS.iter().zip(&s.storage_errors) {
        let _ = writeln!(
            out,
            "rate_guard_storage_errors_total{{kind=\"{kind}\"}} {n}"
        );
    }
    for (name, kind, help, value) in [
        (
            "rate_guard_deny_cache_hits_total",
            "counter",
            "Requests answered by the deny cache.",
            s.deny_cache_hits,
        ),
        (
            "rate_guard_fallback_active",
            "gauge",
            "1 while decisions are degraded (Redis unavailable).",
            s.fallback_active,
        ),
        (
            "rate_guard_breaker_state",
            "gauge",
            "Circuit breaker: 0 closed, 1 half open, 2 open.",
            s.breaker_state,
        ),
    ] {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
