//! `py_rate_guard._native`: the PyO3 module under the Python package `py_rate_guard`.
//!
//! It only converts values and maps errors; every rule of rate limiting lives in
//! `rate-guard-core` and `rate-guard-redis`. Python-facing pieces:
//!
//! - `parse_rate(s)`: the core's rate string parser, for Pydantic validators;
//! - `Rules`: rules built once from `(limit, algorithm, burst, name, fail_open)` tuples;
//! - `Guard`: a limiter over the memory store or Redis whose sync calls release the GIL, with
//!   a runtime and connections rebuilt in each process after `fork()` ([`fork`]);
//! - `Decision`, and the exceptions `RateGuardError` → `ConfigError`, `StorageError`, raised
//!   from one place ([`errors`]).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

mod bridge;
mod decision;
mod errors;
mod fork;
mod front;
mod guard;
mod observe;
mod rules;
mod runtime;
mod thread_store;

create_exception!(
    py_rate_guard,
    RateGuardError,
    PyException,
    "Base class of py-rate-guard's errors (never raised for being rate limited)."
);
create_exception!(
    py_rate_guard,
    ConfigError,
    RateGuardError,
    "Invalid configuration: a bad rate string, rule, URL or setting."
);
create_exception!(
    py_rate_guard,
    StorageError,
    RateGuardError,
    "The store could not be set up or reached (Redis unreachable at construction)."
);

/// Parses a rate string (`"100/minute"`, `"10 per 5 seconds; 1000/hour"`) into
/// `(count, period_seconds)` pairs, in the order written. Raises `ConfigError` naming the bad
/// part.
#[pyfunction]
fn parse_rate(rate: &str) -> PyResult<Vec<(u32, f64)>> {
    let quotas = rate_guard_core::parse_quotas(rate).map_err(errors::Failure::from)?;
    Ok(quotas
        .iter()
        .map(|q| (q.count().get(), q.period().as_secs_f64()))
        .collect())
}

/// The native core of py-rate-guard (private: import from `py_rate_guard`).
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::{parse_rate, ConfigError, RateGuardError, StorageError};

    #[pymodule_export]
    use crate::bridge::{Drainer, Ready};
    #[pymodule_export]
    use crate::decision::Decision;
    #[pymodule_export]
    use crate::front::{Front, Outcome, Plan, RouteLimits};
    #[pymodule_export]
    use crate::guard::Guard;
    #[pymodule_export]
    use crate::observe::{
        drain_events, metrics_enabled, metrics_snapshot, metrics_text, set_metrics_enabled,
        wait_events,
    };
    #[pymodule_export]
    use crate::rules::Rules;

    /// How many event loops have a live async bridge in this process (tests of leaks).
    #[pyfunction]
    fn _bridges(py: Python<'_>) -> usize {
        crate::bridge::bridges(py)
    }

    use pyo3::exceptions::PyRuntimeError;
    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        crate::fork::register_handler().map_err(|rc| {
            PyRuntimeError::new_err(format!("pthread_atfork failed with error {rc}"))
        })?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
