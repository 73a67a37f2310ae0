//! `py_rate_guard._native`: the PyO3 module under the Python package `py_rate_guard`.
//!
//! It only converts values and maps errors; every rule of rate limiting lives in
//! `rate-guard-core` and `rate-guard-redis`. Python-facing pieces:
//!
//! - `parse_rate(s)`, `parse_key_spec(s)`, `check_int(field, n)` and `check_setting(field,
//!   value)`: the engine's own validators, for Pydantic validators, so that whatever the model
//!   accepts the engine accepts ([`args`] checks call arguments alike); `settings_fields()`:
//!   the engine's settings, field by field, for the model's parity test ([`settings`]);
//! - `Rules`: rules built once from `(limit, algorithm, burst, name, fail_open)` tuples;
//! - `Guard` and `Front`, built from the configuration's dump (one JSON document read into
//!   `rate_guard_http::Settings`): a limiter over the memory store or Redis whose sync calls
//!   release the GIL, with a runtime and connections rebuilt in each process after `fork()`
//!   ([`fork`]), and the HTTP front;
//! - `DecisionLog`: the engine's decision log (denials sampled per rule, identities hashed),
//!   whose records `py_rate_guard.logs` formats ([`decision_log`]);
//! - `Decision`, and the exceptions `RateGuardError` → `ConfigError`, `StorageError`, raised
//!   from one place ([`errors`]).

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyTuple, PyType};
use pyo3::PyTypeInfo;
use rate_guard_core::bounds;
use rate_guard_http as http;

/// mimalloc: every async call allocates on one thread what another frees (the job, its task,
/// its reply), and glibc's malloc takes the owning arena's lock for each such free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod bridge;
mod decision;
mod decision_log;
mod errors;
mod fork;
mod front;
mod guard;
mod observe;
mod rules;
mod runtime;
mod settings;
mod thread_store;

create_exception!(
    py_rate_guard,
    RateGuardError,
    PyException,
    "Base class of py-rate-guard's errors (never raised for being rate limited)."
);
/// `ConfigError(RateGuardError, ValueError)`: invalid configuration, or an argument out of
/// range. A `ValueError` too, so that code catching bad values (pydantic validators among
/// them) catches it. `create_exception!` takes one base, so the class is made here.
pub(crate) fn config_error(py: Python<'_>) -> &Bound<'_, PyType> {
    static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    TYPE.get_or_init(py, || {
        let bases = PyTuple::new(
            py,
            [
                py.get_type::<RateGuardError>(),
                py.get_type::<PyValueError>(),
            ],
        )
        .expect("a tuple of two types");
        let doc = "Invalid configuration: a bad rate string, rule, URL or setting, or a call \
                   argument out of range (also a ValueError).";
        PyType::type_object(py)
            .call1((
                "ConfigError",
                bases,
                [("__module__", "py_rate_guard"), ("__doc__", doc)]
                    .into_py_dict(py)
                    .expect("a dict of strings"),
            ))
            .and_then(|t| Ok(t.cast_into::<PyType>()?))
            .expect("the ConfigError class")
            .unbind()
    })
    .bind(py)
}
create_exception!(
    py_rate_guard,
    StorageError,
    RateGuardError,
    "The store could not be set up or reached (Redis unreachable at construction)."
);

/// Parses a rate string (`"100/minute"`, `"10 per 5 seconds; 1000/hour"`, `"0/minute"`:
/// every request refused) into `(count, period_seconds)` pairs, in the order written. Raises
/// `ConfigError` naming the bad part.
#[pyfunction]
fn parse_rate(rate: &str) -> PyResult<Vec<(u32, f64)>> {
    let rates = rate_guard_core::parse_rates(rate).map_err(errors::Failure::from)?;
    Ok(rates
        .iter()
        .map(|r| (r.count(), r.period().as_secs_f64()))
        .collect())
}

/// Checks the integer setting `field` (`cost`, `redis_pool_size`, ...; see `int_ranges`) and
/// returns it. `value` is any Python int, however large; out of range is a `ConfigError`
/// naming the field, the value and the range.
#[pyfunction]
fn check_int(field: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(args::int(field, value)?)
}

/// Checks the duration setting `field` (`redis_timeout`, ...; see `seconds_ranges`), in seconds,
/// and returns it, the error written with the value as Python writes it.
pub(crate) fn check_seconds(field: &str, value: f64) -> PyResult<f64> {
    match bounds::check_seconds(field, value) {
        Ok(_) => Ok(value),
        // Written as Python writes floats (`1e+300`, `inf`), not as sixty digits.
        Err(bounds::RangeError::Seconds { .. }) => {
            let range = bounds::seconds_range(field).expect("a range was found");
            Err(errors::Failure::Config(format!(
                "{field} must be from {} to {} seconds, not {}",
                range.min_seconds(),
                range.max_seconds(),
                python_float(value)
            ))
            .into())
        }
        Err(e) => Err(errors::Failure::from(e).into()),
    }
}

/// `value` as Python's `repr` writes it: `1e+300`, `inf`, `nan`, `0.5`.
fn python_float(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if value != 0.0 && !(1e-4..1e16).contains(&value.abs()) {
        let text = format!("{value:e}");
        // Rust writes `1e300`; Python `1e+300`.
        match text.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => text,
        }
    } else {
        format!("{value:?}")
    }
}

/// The range of every integer setting: `(field, min, max)`, both ends included.
#[pyfunction]
fn int_ranges() -> Vec<(&'static str, u64, u64)> {
    bounds::INTS
        .iter()
        .map(|r| (r.field, r.min, r.max))
        .collect()
}

/// The range of every duration setting: `(field, min_seconds, max_seconds)`.
#[pyfunction]
fn seconds_ranges() -> Vec<(&'static str, f64, f64)> {
    bounds::SECONDS
        .iter()
        .map(|r| (r.field, r.min_seconds(), r.max_seconds()))
        .collect()
}

/// Parses a rule's key spec (`"ip"`, `"header:X-Api-Key"`, `"jwt:sub"`, ...) as the HTTP front
/// does and returns it as the front prints it (header names lowercased). Raises `ConfigError`.
#[pyfunction]
fn parse_key_spec(spec: &str) -> PyResult<String> {
    let spec: http::KeySpec = spec
        .parse()
        .map_err(|e: http::Error| errors::Failure::Config(e.to_string()))?;
    Ok(spec.to_string())
}

/// Checks a shared scope's name (1 to 64 characters, no control character) and returns it;
/// `ConfigError` saying what is wrong. The adapters check a declared scope with it, so that a
/// bad name fails where it is written rather than on every request.
#[pyfunction]
fn check_scope(scope: &str) -> PyResult<String> {
    http::route::check_scope(scope).map_err(|e| errors::Failure::Config(e.to_string()))?;
    Ok(scope.to_owned())
}

/// The native core of py-rate-guard (private: import from `py_rate_guard`).
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::{
        check_int, check_scope, int_ranges, parse_key_spec, parse_rate, seconds_ranges,
        RateGuardError, StorageError,
    };

    #[pymodule_export]
    use crate::bridge::{Call, Drainer, Flusher, Ready};
    #[pymodule_export]
    use crate::decision::Decision;
    #[pymodule_export]
    use crate::decision_log::{DecisionLog, ManualClock};
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
    #[pymodule_export]
    use crate::settings::{check_relations, check_setting, rule_defaults, settings_fields};

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
        m.add("ConfigError", crate::config_error(m.py()))?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
