//! Call arguments checked in Rust, so that a bad one is a `ConfigError` naming the argument,
//! the value and the range, never an `OverflowError` or `TypeError` from the conversion.

use std::num::NonZeroU32;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyInt, PyString};
use rate_guard_core::bounds;

use crate::errors::Failure;

/// The integer setting `field` from any Python object: an int of any size in its range.
pub(crate) fn int(field: &str, value: &Bound<'_, PyAny>) -> Result<u64, Failure> {
    let range = bounds::int_range(field)
        .ok_or_else(|| Failure::from(bounds::RangeError::Unknown(field.to_owned())))?;
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        return match value.extract::<i128>() {
            Ok(v) => Ok(range.check(v)?),
            // Beyond 128 bits: out of range whatever the range; printed as Python prints it.
            Err(_) => Err(range.error(shown(value)).into()),
        };
    }
    Err(Failure::Config(format!(
        "{field} must be an integer from {} to {}, not {} {}",
        range.min,
        range.max,
        type_name(value),
        shown(value)
    )))
}

/// A request's cost: `None` when not given (each rule's own cost applies).
pub(crate) fn cost(value: Option<&Bound<'_, PyAny>>) -> Result<Option<NonZeroU32>, Failure> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let cost = int("cost", value)?;
    // In range: from 1 to u32::MAX.
    Ok(u32::try_from(cost).ok().and_then(NonZeroU32::new))
}

/// An identity: a non-empty `str` of valid Unicode. An empty identity would be one bucket
/// shared by every caller that passes it, so it is refused rather than counted.
pub(crate) fn identity(value: &Bound<'_, PyAny>) -> Result<PyBackedStr, Failure> {
    let Ok(text) = value.cast::<PyString>() else {
        return Err(Failure::Config(format!(
            "identity must be a non-empty str, not {} {}",
            type_name(value),
            shown(value)
        )));
    };
    let Ok(identity) = text.extract::<PyBackedStr>() else {
        return Err(Failure::Config(
            "identity must be valid Unicode text: it holds a lone surrogate".to_owned(),
        ));
    };
    if identity.is_empty() {
        return Err(Failure::Config(
            "identity must be a non-empty str: an empty one would be one bucket shared by \
             every caller that passes it"
                .to_owned(),
        ));
    }
    Ok(identity)
}

/// `repr(value)`, cut short when huge.
fn shown(value: &Bound<'_, PyAny>) -> String {
    let text = value.repr().map_or_else(
        |_| "<unprintable>".to_owned(),
        |r| r.to_string_lossy().into_owned(),
    );
    if text.chars().count() > 80 {
        let head: String = text.chars().take(77).collect();
        format!("{head}...")
    } else {
        text
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |n| n.to_string())
}
