//! [`Decision`]: the answer to a request, as Python sees it.

use pyo3::prelude::*;
use rate_guard_core::{Source, Verdict};

use crate::errors::Failure;

const SOURCES: [Source; 5] = [
    Source::Store,
    Source::DenyCache,
    Source::Fallback,
    Source::FailOpen,
    Source::FailClosed,
];

/// The answer to a request: the most restrictive rule's decision.
///
/// `reset_after` and `retry_after` are seconds (floats); `retry_after` is `None` when allowed,
/// and when the cost exceeds what a rule can ever admit. `source` says who decided: `store`,
/// `deny_cache`, `fallback`, `fail_open` or `fail_closed`.
#[pyclass(frozen, module = "py_rate_guard._native", name = "Decision")]
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    #[pyo3(get)]
    allowed: bool,
    #[pyo3(get)]
    limit: u32,
    #[pyo3(get)]
    remaining: u32,
    #[pyo3(get)]
    reset_after: f64,
    #[pyo3(get)]
    retry_after: Option<f64>,
    source: Source,
}

impl From<&Verdict> for Decision {
    fn from(verdict: &Verdict) -> Self {
        let d = verdict.decision();
        Self {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            reset_after: d.reset_after.as_secs_f64(),
            retry_after: d.retry_after.map(|r| r.as_secs_f64()),
            source: verdict.source(),
        }
    }
}

#[pymethods]
impl Decision {
    /// A decision made by hand (tests, adapters that answer without a store).
    #[new]
    #[pyo3(signature = (allowed, limit, remaining, reset_after, retry_after=None, source="store"))]
    fn new(
        allowed: bool,
        limit: u32,
        remaining: u32,
        reset_after: f64,
        retry_after: Option<f64>,
        source: &str,
    ) -> PyResult<Self> {
        let source = SOURCES
            .into_iter()
            .find(|s| s.name() == source)
            .ok_or_else(|| {
                Failure::Config(format!(
                    "source must be store, deny_cache, fallback, fail_open or fail_closed, not {source:?}"
                ))
            })?;
        Ok(Self {
            allowed,
            limit,
            remaining,
            reset_after,
            retry_after,
            source,
        })
    }

    /// Who decided: `store`, `deny_cache`, `fallback`, `fail_open` or `fail_closed`.
    #[getter]
    fn source(&self) -> &'static str {
        self.source.name()
    }

    /// `not allowed`: the name a soft decision is read by (`request.state.rate_limit.limited`,
    /// as Django's `request.limited`).
    #[getter]
    fn limited(&self) -> bool {
        !self.allowed
    }

    /// Whether the store was unavailable and this decision is a stand-in.
    #[getter]
    fn degraded(&self) -> bool {
        self.source.is_degraded()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Self>().is_ok_and(|o| {
            let o = o.get();
            (
                self.allowed,
                self.limit,
                self.remaining,
                self.reset_after,
                self.retry_after,
                self.source,
            ) == (
                o.allowed,
                o.limit,
                o.remaining,
                o.reset_after,
                o.retry_after,
                o.source,
            )
        })
    }

    fn __repr__(&self) -> String {
        let retry = self
            .retry_after
            .map_or_else(|| "None".to_owned(), |r| r.to_string());
        format!(
            "Decision(allowed={}, limit={}, remaining={}, reset_after={}, retry_after={retry}, source={:?})",
            if self.allowed { "True" } else { "False" },
            self.limit,
            self.remaining,
            self.reset_after,
            self.source.name()
        )
    }
}
