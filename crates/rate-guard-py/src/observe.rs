//! Observability for Python: the core's metrics as plain Python values, and a bounded queue of
//! the limiter's degradation [`Event`]s that Python drains into `logging`.
//!
//! - Metrics are counted by `rate_guard_core::metrics` with atomics; Python reads them only
//!   when scraped ([`metrics_snapshot`], [`metrics_text`]).
//! - Every `Guard`'s limiter calls [`record`] on each event, from whatever thread decided,
//!   without the GIL: one short lock and a push. The queue holds at most [`EVENT_CAPACITY`]
//!   events; beyond that, new events are dropped and counted, so a storm of store failures
//!   that nobody drains cannot grow memory. A Python thread waits in [`wait_events`] (GIL
//!   released) and takes the events with [`drain_events`] (`py_rate_guard.logs`).
//! - The queue is per process ([`ForkLocal`]): a child of `fork()` starts with an empty one,
//!   since a lock held by a thread of the parent at fork time would never be released there.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rate_guard_core::metrics::{self, ERROR_KINDS, LATENCY_BUCKETS};
use rate_guard_core::Event;

use crate::fork::ForkLocal;

/// The most events kept until Python drains them.
pub(crate) const EVENT_CAPACITY: usize = 1_000;

/// One event as recorded: what happened and when (Unix seconds).
struct Record {
    time: f64,
    kind: Kind,
}

enum Kind {
    StoreFailed {
        error: &'static str,
        message: String,
    },
    Breaker {
        from: &'static str,
        to: &'static str,
        failures: u32,
    },
    FallbackStarted,
    FallbackEnded,
    /// An event this module does not know yet (the core's enum is non-exhaustive).
    Other {
        message: String,
    },
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Record>,
    /// Events dropped because the queue was full, since the last drain.
    dropped: u64,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

static SHARED: ForkLocal<Shared> = ForkLocal::new();

fn shared() -> &'static Shared {
    match SHARED.get_or_try_init(|| Ok::<_, Infallible>(Shared::default())) {
        Ok(shared) => shared,
        Err(never) => match never {},
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock leaves a consistent queue (a push or a drain).
    shared.queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The limiter's event hook: queues `event` for Python (any thread, no GIL).
pub(crate) fn record(event: &Event) {
    let kind = match event {
        Event::StoreFailed { error } => Kind::StoreFailed {
            error: error.kind(),
            message: error.to_string(),
        },
        Event::Breaker { from, to, failures } => Kind::Breaker {
            from: from.name(),
            to: to.name(),
            failures: *failures,
        },
        Event::FallbackStarted => Kind::FallbackStarted,
        Event::FallbackEnded => Kind::FallbackEnded,
        other => Kind::Other {
            message: other.to_string(),
        },
    };
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let shared = shared();
    let mut queue = lock(shared);
    if queue.events.len() >= EVENT_CAPACITY {
        queue.dropped += 1;
        return;
    }
    let was_empty = queue.events.is_empty();
    queue.events.push_back(Record { time, kind });
    drop(queue);
    if was_empty {
        shared.ready.notify_all();
    }
}

impl Record {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("time", self.time)?;
        match &self.kind {
            Kind::StoreFailed { error, message } => {
                d.set_item("event", "store_failed")?;
                d.set_item("error_kind", *error)?;
                d.set_item("error", message)?;
            }
            Kind::Breaker { from, to, failures } => {
                d.set_item("event", "breaker")?;
                d.set_item("from_state", *from)?;
                d.set_item("to_state", *to)?;
                d.set_item("failures", *failures)?;
            }
            Kind::FallbackStarted => d.set_item("event", "fallback_started")?,
            Kind::FallbackEnded => d.set_item("event", "fallback_ended")?,
            Kind::Other { message } => {
                d.set_item("event", "other")?;
                d.set_item("error", message)?;
            }
        }
        Ok(d)
    }
}

/// Takes the queued events, oldest first: `(events, dropped)`, where each event is a dict
/// with `event` (`store_failed`, `breaker`, `fallback_started`, `fallback_ended`), `time`
/// (Unix seconds) and its fields (`error_kind` and `error`; `from_state`, `to_state` and
/// `failures`), and `dropped` counts the events lost to a full queue since the last drain.
#[pyfunction]
pub(crate) fn drain_events(py: Python<'_>) -> PyResult<(Bound<'_, PyList>, u64)> {
    let (events, dropped) = {
        let mut queue = lock(shared());
        (
            std::mem::take(&mut queue.events),
            std::mem::take(&mut queue.dropped),
        )
    };
    let list = PyList::empty(py);
    for event in &events {
        list.append(event.to_dict(py)?)?;
    }
    Ok((list, dropped))
}

/// Waits up to `timeout` seconds (the GIL released) for an event to be queued; True when
/// there is one to drain.
#[pyfunction]
pub(crate) fn wait_events(py: Python<'_>, timeout: f64) -> bool {
    let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
    py.detach(|| {
        let shared = shared();
        let queue = lock(shared);
        let (queue, _) = shared
            .ready
            .wait_timeout_while(queue, timeout, |q| q.events.is_empty() && q.dropped == 0)
            .unwrap_or_else(PoisonError::into_inner);
        !queue.events.is_empty() || queue.dropped > 0
    })
}

/// Turns metrics counting on or off for the whole process (on by default).
#[pyfunction]
pub(crate) fn set_metrics_enabled(enabled: bool) {
    metrics::set_enabled(enabled);
}

/// Whether metrics are counted.
#[pyfunction]
pub(crate) fn metrics_enabled() -> bool {
    metrics::enabled()
}

/// The metrics in the Prometheus text format (0.0.4).
#[pyfunction]
pub(crate) fn metrics_text() -> String {
    metrics::render_prometheus()
}

/// Every metric of this process as plain values: a dict with
/// - `requests`: `(rule, route, algorithm, allowed, blocked, shadow_blocked)` per label set;
/// - `latency_buckets`: `(upper bound in seconds, cumulative count)` pairs, `+Inf` excluded;
///   `latency_count`, `latency_sum` (seconds);
/// - `storage_errors`: `{kind: count}` for `timeout`, `unavailable`, `refused`, `rejected`;
/// - `deny_cache_hits`, `fallback_active` (0 or 1), `breaker_state` (0 closed, 1 half open,
///   2 open).
#[pyfunction]
pub(crate) fn metrics_snapshot(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let s = metrics::snapshot();
    let d = PyDict::new(py);
    let requests = PyList::empty(py);
    for c in &s.requests {
        let l = &c.labels;
        requests.append((
            &*l.rule,
            &*l.route,
            l.algorithm,
            c.allowed,
            c.blocked,
            c.shadow_blocked,
        ))?;
    }
    d.set_item("requests", requests)?;
    let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
        .iter()
        .copied()
        .zip(s.latency_buckets.iter().copied())
        .collect();
    d.set_item("latency_buckets", buckets)?;
    d.set_item("latency_count", s.latency_count)?;
    d.set_item("latency_sum", s.latency_sum)?;
    let errors = PyDict::new(py);
    for (kind, n) in ERROR_KINDS.iter().zip(&s.storage_errors) {
        errors.set_item(*kind, *n)?;
    }
    d.set_item("storage_errors", errors)?;
    d.set_item("deny_cache_hits", s.deny_cache_hits)?;
    d.set_item("fallback_active", s.fallback_active)?;
    d.set_item("breaker_state", s.breaker_state)?;
    Ok(d)
}
