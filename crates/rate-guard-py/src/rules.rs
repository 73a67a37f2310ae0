//! [`Rules`]: rules built once from Python specs, then passed to every call.

use std::hash::{Hash, Hasher};
use std::str::FromStr;

use pyo3::prelude::*;
use rate_guard_core::{parse_quotas, Algorithm, ConfigError, Quota, Rule};

use crate::errors::Failure;

/// One rule as Python passes it: `(limit, algorithm, burst, name, fail_open)`.
pub(crate) type RuleSpec = (String, String, Option<i64>, Option<String>, Option<bool>);

/// Rules decided together (all-or-nothing), built from `(limit, algorithm, burst, name,
/// fail_open)` tuples. A limit with several rates (`"10/second; 100/minute"`) makes one rule per
/// rate. Build once and reuse: calls never parse again.
#[pyclass(frozen, module = "py_rate_guard._native", name = "Rules")]
pub(crate) struct Rules {
    rules: Box<[Rule]>,
}

impl Rules {
    /// The rules, in the order given.
    pub(crate) fn as_slice(&self) -> &[Rule] {
        &self.rules
    }

    fn build(specs: &[RuleSpec]) -> Result<Self, Failure> {
        let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
        for (limit, algorithm, burst, name, fail_open) in specs {
            let algorithm =
                Algorithm::from_str(algorithm).map_err(|e| Failure::Config(e.to_string()))?;
            let burst = burst
                .map(|b| {
                    u32::try_from(b).map_err(|_| {
                        Failure::Config(format!("burst must be from 1 to {}, not {b}", u32::MAX))
                    })
                })
                .transpose()?;
            let quotas = parse_quotas(limit)?;
            let several = quotas.len() > 1;
            for quota in quotas {
                let mut builder = Rule::builder(quota).algorithm(algorithm);
                if let Some(burst) = burst {
                    builder = builder.burst(burst);
                }
                if let Some(name) = name {
                    builder = builder.name(if several {
                        rate_id(name, quota)
                    } else {
                        name.clone()
                    });
                }
                if let Some(fail_open) = fail_open {
                    builder = builder.fail_open(*fail_open);
                }
                push_unique(&mut rules, builder.build()?)?;
            }
        }
        if rules.is_empty() {
            return Err(ConfigError::NoRules.into());
        }
        Ok(Self {
            rules: rules.into_boxed_slice(),
        })
    }
}

/// The id of one rate of a named limit with several: `api.10.1s`, `api.100.60s`.
fn rate_id(name: &str, quota: Quota) -> String {
    let ms = quota.period().as_millis();
    if ms.is_multiple_of(1000) {
        format!("{name}.{}.{}s", quota.count(), ms / 1000)
    } else {
        format!("{name}.{}.{ms}ms", quota.count())
    }
}

/// Adds `rule` unless an equal rule is there already (one bucket, counted once); two different
/// rules with one id would share a key, so that is an error.
fn push_unique(rules: &mut Vec<Rule>, rule: Rule) -> Result<(), Failure> {
    match rules.iter().find(|r| r.id() == rule.id()) {
        None => rules.push(rule),
        Some(same) if *same == rule => {}
        Some(_) => {
            return Err(ConfigError::DuplicateRuleId {
                id: rule.id().to_owned(),
            }
            .into())
        }
    }
    Ok(())
}

#[pymethods]
impl Rules {
    // PyO3 extracts a list into a `Vec`.
    #[allow(clippy::needless_pass_by_value)]
    #[new]
    fn new(specs: Vec<RuleSpec>) -> PyResult<Self> {
        Ok(Self::build(&specs)?)
    }

    /// The rules' ids, which name their keys.
    #[getter]
    fn ids(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.id().to_owned()).collect()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().rules == self.rules)
    }

    fn __hash__(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        self.rules.hash(&mut hasher);
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
