//! The settings of `Guard` and `Front`: the Python configuration's dump, read into the one
//! [`Settings`] type of `rate-guard-http`; and what Python asks of that type (its fields, for
//! the parity test and the model's validators, and the check of one field).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rate_guard_core::bounds;
use rate_guard_http::settings::{FieldClass, FieldRange};
use rate_guard_http::{RuleConfig, Settings};

use crate::args;
use crate::errors::Failure;

/// `value` as JSON text: a `str` as it is, anything else through `json.dumps`.
fn json_text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(text.to_str()?.to_owned());
    }
    let json = value.py().import("json")?;
    json.call_method1("dumps", (value,))?.extract()
}

/// The settings of a JSON string or a dict (`RateGuardConfig.engine_settings()`).
pub(crate) fn from_py(value: &Bound<'_, PyAny>) -> PyResult<Settings> {
    Ok(Settings::from_json(&json_text(value)?).map_err(Failure::from)?)
}

/// Every field of the engine's settings, for the Python model's parity test and validators:
/// `name`, `type` (`bool`, `int`, `float`, `str`, `enum`, `list[str]`, `optional[int]`,
/// `list[rule]`, ...), `variants` (of an enum), `default` (JSON text), `range` (`(min, max)`
/// or None), `secret`, `checked` (whether `check_setting` checks it) and `doc`.
#[pyfunction]
pub(crate) fn settings_fields(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let defaults =
        serde_json::to_value(Settings::default()).map_err(|e| Failure::Config(e.to_string()))?;
    let mut out = Vec::new();
    for field in Settings::fields() {
        let dict = PyDict::new(py);
        dict.set_item("name", field.name)?;
        dict.set_item("type", field.class.to_string())?;
        let variants = match &field.class {
            FieldClass::Enum(names) => Some(names.clone()),
            _ => None,
        };
        dict.set_item("variants", variants)?;
        dict.set_item("default", defaults[field.name].to_string())?;
        dict.set_item("range", field.range().map(FieldRange::ends))?;
        dict.set_item("secret", field.is_secret())?;
        dict.set_item("checked", field.is_checked())?;
        dict.set_item("doc", field.doc.trim())?;
        out.push(dict);
    }
    Ok(out)
}

/// Checks the setting `field` as the engine does (its range, or what the engine parses of
/// it) and returns `value`. Out of range, an int of any size names field, value and range; a
/// bad value raises `ConfigError` (a `ValueError`), never quoting a password.
#[pyfunction]
pub(crate) fn check_setting<'py>(
    field: &str,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    match FieldRange::of(field) {
        Some(FieldRange::Int(_)) if !value.is_none() => {
            args::int(field, value)?;
        }
        Some(FieldRange::Seconds(_)) => {
            crate::check_seconds(field, value.extract()?)?;
        }
        Some(FieldRange::Float(range)) => {
            let number: f64 = value.extract()?;
            if let Err(bounds::RangeError::Float { min, max, .. }) = range.check(number) {
                return Err(Failure::Config(format!(
                    "{field} must be from {min} to {max}, not {}",
                    crate::python_float(number)
                ))
                .into());
            }
        }
        _ => {
            let one = PyDict::new(value.py());
            one.set_item(field, value)?;
            let settings = from_py(one.as_any())?;
            settings.check_field(field).map_err(Failure::from)?;
        }
    }
    Ok(value.clone())
}

/// Checks the fields of `settings` (the model's dump) that go together
/// (`Settings::check_relations`): a `ConfigError` naming the field otherwise.
#[pyfunction]
pub(crate) fn check_relations(settings: &Bound<'_, PyAny>) -> PyResult<()> {
    Ok(from_py(settings)?
        .check_relations()
        .map_err(Failure::from)?)
}

/// The fields of a rule config (`RuleConfig`) and their defaults as JSON text; `limit` has none
/// (it is required).
#[pyfunction]
pub(crate) fn rule_defaults() -> PyResult<Vec<(String, Option<String>)>> {
    let rule = serde_json::to_value(RuleConfig::new(String::new()))
        .map_err(|e| Failure::Config(e.to_string()))?;
    let fields = rule.as_object().map(|o| {
        o.iter()
            .map(|(name, value)| {
                let default = (name != "limit").then(|| value.to_string());
                (name.clone(), default)
            })
            .collect()
    });
    Ok(fields.unwrap_or_default())
}
