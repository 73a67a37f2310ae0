//! The one place where Rust errors become Python exceptions: everything that can fail converts
//! into a [`Failure`], and `From<Failure> for PyErr` picks the exception class.

use pyo3::{PyErr, Python};
use rate_guard_core::bounds::RangeError;
use rate_guard_core::{ConfigError as CoreConfigError, Error, ParseError, StoreError};
use rate_guard_redis::ConnectionError;

use crate::StorageError;

/// Why a call into the module failed, by the Python exception it raises.
#[derive(Debug)]
pub(crate) enum Failure {
    /// `ConfigError`: invalid configuration or a request that no store could decide.
    Config(String),
    /// `StorageError`: the store (Redis) or the I/O runtime could not be set up.
    Storage(String),
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Config(message) => {
                Python::attach(|py| PyErr::from_type(crate::config_error(py).clone(), message))
            }
            Failure::Storage(message) => StorageError::new_err(message),
        }
    }
}

impl From<CoreConfigError> for Failure {
    fn from(e: CoreConfigError) -> Self {
        Failure::Config(e.to_string())
    }
}

impl From<rate_guard_http::Error> for Failure {
    fn from(e: rate_guard_http::Error) -> Self {
        match e {
            // Redis unreachable when building: the store's problem, not the configuration's.
            rate_guard_http::Error::Redis { .. } => Failure::Storage(e.to_string()),
            e => Failure::Config(e.to_string()),
        }
    }
}

impl From<RangeError> for Failure {
    fn from(e: RangeError) -> Self {
        Failure::Config(e.to_string())
    }
}

impl From<ParseError> for Failure {
    fn from(e: ParseError) -> Self {
        Failure::Config(e.to_string())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            // A key twice, no rule, a bad cost: the caller's mistake, not the store's.
            Error::Store(StoreError::InvalidRequest(reason)) => {
                Failure::Config(format!("invalid request: {reason}"))
            }
            Error::Store(store) => Failure::Storage(store.to_string()),
            other => Failure::Config(other.to_string()),
        }
    }
}

impl From<ConnectionError> for Failure {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::InvalidUrl { .. } => Failure::Config(e.to_string()),
            other => Failure::Storage(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Storage(format!("cannot start the I/O runtime: {e}"))
    }
}
