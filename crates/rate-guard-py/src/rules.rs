//! [`Rules`]: rules built once from Python specs, then passed to every call.

use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::str::FromStr;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rate_guard_core::metrics::{self, Counters};
use rate_guard_core::{Algorithm, ConfigError, Rule};
use rate_guard_http::RuleConfig;

use crate::args;
use crate::errors::Failure;

/// One rule as Python passes it: `(limit, algorithm, burst, name, fail_open[, cost])`, read
/// into the rule config both fronts build rules from.
struct RuleSpec {
    config: RuleConfig,
    cost: NonZeroU32,
}

impl RuleSpec {
    fn extract(spec: &Bound<'_, PyAny>) -> Result<Self, Failure> {
        let bad = || {
            Failure::Config(
                "a rule spec is a tuple (limit, algorithm, burst, name, fail_open[, cost])"
                    .to_owned(),
            )
        };
        let tuple = spec.cast::<PyTuple>().map_err(|_| bad())?;
        if !(5..=6).contains(&tuple.len()) {
            return Err(bad());
        }
        let item = |i| tuple.get_item(i).map_err(|_| bad());
        let burst = item(2)?;
        let burst = if burst.is_none() {
            None
        } else {
            // In range: from 1 to u32::MAX.
            u32::try_from(args::int("burst", &burst)?).ok()
        };
        let cost = if tuple.len() == 6 {
            args::cost(Some(&item(5)?))?
        } else {
            None
        };
        let limit: String = item(0)?.extract().map_err(|_| bad())?;
        let algorithm: String = item(1)?.extract().map_err(|_| bad())?;
        let algorithm =
            Algorithm::from_str(&algorithm).map_err(|e| Failure::Config(e.to_string()))?;
        let name: Option<String> = item(3)?.extract().map_err(|_| bad())?;
        let fail_open: Option<bool> = item(4)?.extract().map_err(|_| bad())?;
        let mut config = RuleConfig::new(limit).algorithm(algorithm);
        if let Some(burst) = burst {
            config = config.burst(burst);
        }
        if let Some(name) = name {
            config = config.name(name);
        }
        if let Some(fail_open) = fail_open {
            config = config.fail_open(fail_open);
        }
        Ok(Self {
            config,
            cost: cost.unwrap_or(NonZeroU32::MIN),
        })
    }
}

/// Rules decided together (all-or-nothing), built from `(limit, algorithm, burst, name,
/// fail_open[, cost])` tuples. A limit with several rates (`"10/second; 100/minute"`) makes one
/// rule per rate. Build once and reuse: calls never parse again.
///
/// Each rule keeps its own cost (default 1): what a call weighs against it when the call does
/// not say.
#[pyclass(frozen, module = "py_rate_guard._native", name = "Rules")]
#[allow(clippy::struct_field_names)] // `rules` is what the Python class holds; the name stays
pub(crate) struct Rules {
    rules: Box<[Rule]>,
    costs: Box<[NonZeroU32]>,
    /// Each rule's metrics, registered here once rather than found per call.
    counters: Box<[Counters]>,
}

impl Rules {
    /// The rules, in the order given.
    pub(crate) fn as_slice(&self) -> &[Rule] {
        &self.rules
    }

    /// What a call weighs against each rule (in order) when it gives no cost.
    pub(crate) fn costs(&self) -> &[NonZeroU32] {
        &self.costs
    }

    /// Each rule's metrics, in order.
    pub(crate) fn counters(&self) -> &[Counters] {
        &self.counters
    }

    fn build(specs: &[RuleSpec]) -> Result<Self, Failure> {
        let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
        let mut costs: Vec<NonZeroU32> = Vec::with_capacity(specs.len());
        for spec in specs {
            for rule in spec.config.rules()? {
                match rules.iter().position(|r| r.id() == rule.id()) {
                    None => {
                        rules.push(rule);
                        costs.push(spec.cost);
                    }
                    // One bucket, counted once, at the larger cost.
                    Some(i) if rules[i] == rule => costs[i] = costs[i].max(spec.cost),
                    Some(i) => return Err(conflict(&rules[i], &rule)),
                }
            }
        }
        if rules.is_empty() {
            return Err(ConfigError::NoRules.into());
        }
        let counters = rules
            .iter()
            .map(|r| metrics::register(r.id(), "", r.algorithm()))
            .collect();
        Ok(Self {
            rules: rules.into_boxed_slice(),
            costs: costs.into_boxed_slice(),
            counters,
        })
    }
}

/// Two different rules under one id would share their keys (and one algorithm would read the
/// other's state): the error names both definitions.
fn conflict(first: &Rule, second: &Rule) -> Failure {
    Failure::Config(format!(
        "two different rules are named {:?}: {} and {}; rules of one name share their state, \
         so give one of them another name",
        first.id(),
        describe(first),
        describe(second)
    ))
}

/// `rule` as one line: `2 per 1 minute (sliding_window, id api)`, and its failure policy when
/// it has its own.
fn describe(rule: &Rule) -> String {
    match rule.fail_open() {
        None => rule.to_string(),
        Some(open) => format!("{rule} failing {}", if open { "open" } else { "closed" }),
    }
}

#[pymethods]
impl Rules {
    // PyO3 extracts a list into a `Vec`.
    #[allow(clippy::needless_pass_by_value)]
    #[new]
    fn new(specs: Vec<Bound<'_, PyAny>>) -> PyResult<Self> {
        let specs = specs
            .iter()
            .map(RuleSpec::extract)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::build(&specs)?)
    }

    /// Each rule's own cost, in order: what a call weighs when it does not say.
    #[getter(costs)]
    fn py_costs(&self) -> Vec<u32> {
        self.costs.iter().map(|c| c.get()).collect()
    }

    /// Each rule as one line (`2 per 1 minute (sliding_window, id api)`), in order: what two
    /// rules of one id are compared by.
    #[getter]
    fn definitions(&self) -> Vec<String> {
        self.rules.iter().map(describe).collect()
    }

    /// The rules' ids, which name their keys.
    #[getter]
    fn ids(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.id().to_owned()).collect()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().rules == self.rules && o.get().costs == self.costs)
    }

    fn __hash__(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        self.rules.hash(&mut hasher);
        self.costs.hash(&mut hasher);
        hasher.finish()
    }

    fn __len__(&self) -> usize {
        self.rules.len()
    }

    fn __repr__(&self) -> String {
        let rules: Vec<String> = self.rules.iter().map(ToString::to_string).collect();
        format!("Rules([{}])", rules.join(", "))
    }
}
