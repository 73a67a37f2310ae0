//! The crate's errors: [`ConfigError`] (a limiter that cannot be built) and [`StoreError`]
//! (a store that could not decide). Being limited is never an error: it is a [`Decision`].
//!
//! [`Decision`]: crate::Decision

use std::time::Duration;

use crate::algorithm::Algorithm;
use crate::bounds::RangeError;
use crate::quota::QuotaError;
use crate::rate_str::ParseError;

/// Configuration that cannot make a valid limiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A rate string that does not parse.
    #[error(transparent)]
    Rate(#[from] ParseError),
    /// A quota out of bounds.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// A burst given to an algorithm other than the token bucket.
    #[error("burst is only meaningful for token_bucket, not {algorithm}")]
    BurstWithoutTokenBucket {
        /// The rule's algorithm.
        algorithm: Algorithm,
    },
    /// A burst of zero.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// A rule name unfit for keys.
    #[error("invalid rule name {name:?}: {reason}")]
    InvalidRuleName {
        /// The name (cut short when huge).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two rules of one limiter with the same id would share their state.
    #[error("two rules share the id {id:?}; give one of them another name")]
    DuplicateRuleId {
        /// The shared id.
        id: String,
    },
    /// A limiter with no rule.
    #[error("a limiter needs at least one rule")]
    NoRules,
    /// A key prefix unfit for keys.
    #[error("invalid key prefix {prefix:?}: {reason}")]
    InvalidKeyPrefix {
        /// The prefix (cut short when huge).
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Degradation settings that cannot work.
    #[error("invalid degradation setting: {0}")]
    Degradation(&'static str),
    /// A memory store limit that cannot work.
    #[error("invalid memory store setting: {0}")]
    MemoryStore(&'static str),
    /// A number outside its documented range ([`bounds`](crate::bounds)).
    #[error(transparent)]
    Range(#[from] RangeError),
}

/// A store that could not decide a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No answer within the time allowed.
    #[error("store timed out after {0:?}")]
    Timeout(Duration),
    /// The store cannot be reached (connection refused, reset, closed).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refuses every request for now (out of memory, busy, loading, read-only, a
    /// missing permission): counts toward the circuit breaker like an outage.
    #[error("store refused the request: {0}")]
    Refused(String),
    /// The store could not decide this one request because of its own data or arguments (a
    /// script error, a key holding another type, an unexpected reply), while it serves others:
    /// the request is decided by its rules' failure policy and the circuit breaker is not
    /// touched.
    #[error("store rejected the request: {0}")]
    Rejected(String),
    /// A request that no store could decide (no rules, a bad cost).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
}

impl StoreError {
    /// Whether trying again later may succeed (timeouts and unreachable stores).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Timeout(_) | StoreError::Unavailable(_))
    }

    /// Whether this is a timeout (as opposed to a refusal or a failure to connect).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, StoreError::Timeout(_))
    }

    /// The kind, as logs and metrics name it: `timeout`, `unavailable`, `refused`, `rejected`
    /// or `invalid_request`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Refused(_) => "refused",
            StoreError::Rejected(_) => "rejected",
            StoreError::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// Anything a [`Limiter`](crate::Limiter) can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not decide.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_transient())
    }
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::Config(e.into())
    }
}
