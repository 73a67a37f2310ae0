//! `DecisionLog`: the engine's decision log ([`rate_guard_http::DecisionLog`], the tower
//! layer's too) for `py_rate_guard.logs`, which only formats the records it hands out; and
//! `ManualClock`, the time of a log under test.
//!
//! A denial is answered at once, with its records or `None`: no queue to drain, and the record
//! is logged in the request's own context (its thread, its `contextvars`). A denial left out by
//! sampling allocates no Python object.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rate_guard_core::{Clock, SystemClock, Timestamp};
use rate_guard_http as http;

use crate::errors::Failure;
use crate::front::{Outcome, Plan, RouteLimits};

/// A clock that moves only when told (`advance`): the time of a `DecisionLog` under test.
#[pyclass(frozen, module = "py_rate_guard._native", name = "ManualClock")]
pub(crate) struct ManualClock {
    inner: rate_guard_core::ManualClock,
}

fn seconds(value: f64, what: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Failure::Config(format!(
            "{what} must be a number of seconds >= 0, not {value}"
        ))
    })
}

#[pymethods]
impl ManualClock {
    /// A clock reading `start` seconds after the Unix epoch.
    #[new]
    #[pyo3(signature = (start=0.0))]
    fn new(start: f64) -> PyResult<Self> {
        let start = seconds(start, "start")?;
        Ok(Self {
            inner: rate_guard_core::ManualClock::new(
                Timestamp::from_micros(0).saturating_add(start),
            ),
        })
    }

    /// Moves the clock `seconds` later.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.inner.advance(self::seconds(seconds, "advance")?);
        Ok(())
    }

    /// Seconds since the Unix epoch.
    fn now(&self) -> f64 {
        self.inner.now().as_micros() as f64 / 1e6
    }
}

/// Which denials are logged (sampled per rule) and how identities appear in them.
#[pyclass(frozen, module = "py_rate_guard._native", name = "DecisionLog")]
pub(crate) struct DecisionLog {
    inner: http::DecisionLog,
}

#[pymethods]
impl DecisionLog {
    /// At most `per_second` records a second per rule (0 to 1,000,000; 0: none); identities
    /// `hashed` (keyed by `salt`, or random per process), `raw` or `omit`; `clock` for tests.
    #[new]
    #[pyo3(signature = (per_second=http::DEFAULT_DENIALS_PER_SECOND, identities="hashed", salt=None, clock=None))]
    fn new(
        per_second: f64,
        identities: &str,
        salt: Option<&str>,
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let clock: Arc<dyn Clock> = match clock {
            Some(clock) => Arc::new(clock.inner.clone()),
            None => Arc::new(SystemClock),
        };
        let identities = identities.parse().map_err(config)?;
        let inner = http::DecisionLog::new(per_second, identities, salt, clock).map_err(config)?;
        Ok(Self { inner })
    }

    /// The records of `outcome` to log: a dict per denial or shadow denial that sampling keeps
    /// (`event`, `rule`, `rule_name`, `route`, `decision`, `status`, `source`, `degraded`,
    /// `suppressed`, `identity` unless omitted, `limit`, `remaining` and `retry_after` for a
    /// decided refusal), and once a second the `rate_limited_suppressed` records of quiet
    /// rules; `None` when there is nothing to log. `plan` defaults to the outcome's; `route`
    /// is the limits of the request's route.
    #[pyo3(signature = (outcome, plan=None, route=None))]
    fn outcome<'py>(
        &self,
        py: Python<'py>,
        outcome: &Outcome,
        plan: Option<&Plan>,
        route: Option<&RouteLimits>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(plan) = plan.map(|p| &p.inner).or(outcome.plan.as_ref()) else {
            return Ok(None);
        };
        let route = route.map(|r| &r.inner);
        let records = self.inner.outcome(&outcome.inner, plan, |_| route);
        if records.is_empty() {
            return Ok(None);
        }
        let list = PyList::empty(py);
        for record in records {
            list.append(self.dict(py, &record)?)?;
        }
        Ok(Some(list))
    }

    /// The `rate_limited_suppressed` records of rules with denials left out and no record
    /// for a second.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for record in self.inner.flush() {
            list.append(self.dict(py, &http::Record::Suppressed(record))?)?;
        }
        Ok(list)
    }

    /// `identity` as records show it: itself (`raw`), its keyed digest (`hashed`: 16 hex
    /// digits), or None (`omit`).
    fn render_identity(&self, identity: &str) -> Option<String> {
        self.inner.render_identity(identity)
    }

    /// Records per second and rule.
    #[getter]
    fn per_second(&self) -> f64 {
        self.inner.per_second()
    }

    /// `hashed`, `raw` or `omit`.
    #[getter]
    fn identities(&self) -> &'static str {
        self.inner.identities().as_str()
    }

    fn __repr__(&self) -> String {
        format!(
            "DecisionLog(per_second={}, identities='{}')",
            self.inner.per_second(),
            self.inner.identities().as_str()
        )
    }
}

impl DecisionLog {
    fn dict<'py>(&self, py: Python<'py>, record: &http::Record) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        match record {
            http::Record::Denial(r) => {
                d.set_item("event", r.event)?;
                d.set_item("rule", r.rule.as_deref())?;
                d.set_item("rule_name", r.rule_name.as_deref())?;
                d.set_item("route", r.route.as_deref())?;
                d.set_item("decision", r.decision.as_str())?;
                d.set_item("status", r.status)?;
                d.set_item("source", r.source)?;
                d.set_item("degraded", r.degraded)?;
                d.set_item("suppressed", r.suppressed)?;
                if self.inner.identities() != http::Identities::Omit {
                    d.set_item("identity", r.identity.as_deref())?;
                }
                if let Some(limit) = r.limit {
                    d.set_item("limit", limit)?;
                    d.set_item("remaining", r.remaining)?;
                    d.set_item("retry_after", r.retry_after)?;
                }
            }
            http::Record::Suppressed(r) => {
                d.set_item("event", "rate_limited_suppressed")?;
                d.set_item("rule", r.rule.as_deref())?;
                d.set_item("rule_name", r.rule_name.as_deref())?;
                d.set_item("route", r.route.as_deref())?;
                d.set_item("suppressed", r.suppressed)?;
            }
        }
        Ok(d)
    }
}

fn config(e: impl std::fmt::Display) -> PyErr {
    Failure::Config(e.to_string()).into()
}
