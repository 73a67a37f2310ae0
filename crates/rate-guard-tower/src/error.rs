//! The crate's one error type: a guard that cannot be built.
//!
//! Requests never fail because of the guard: a hostile header, a forged token or a store that
//! is down all end in a response (see [`crate::service`]), never in an [`Error`].

/// Configuration that cannot make a [`RateGuard`](crate::RateGuard), or a store that cannot be
/// reached when it is built. Every variant names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting out of range or inconsistent with another (`field` names it as in
    /// [`RateGuardConfig`](crate::RateGuardConfig)).
    #[error("invalid setting {field}: {reason}")]
    Setting {
        /// The field, as named in the configuration (`global_rules[1].limit`, ...).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An environment variable whose value does not fit its field.
    #[error("invalid environment variable {var}: {reason}")]
    Env {
        /// The variable (`RATE_GUARD_GLOBAL_RULES`, ...).
        var: String,
        /// What is wrong with its value (never the value itself: it may be a secret).
        reason: String,
    },
    /// A key spec, trusted proxy, JWT setting or route the HTTP front refuses.
    #[error(transparent)]
    Front(rate_guard_http::Error),
    /// A rule or limiter setting the core refuses.
    #[error(transparent)]
    Core(#[from] rate_guard_core::ConfigError),
    /// Redis could not be reached, or its URL does not parse (the password is never shown).
    #[error("cannot use Redis at {url}: {reason}")]
    Redis {
        /// The URL, its password replaced by `***`.
        url: String,
        /// Why.
        reason: String,
        /// Whether trying again later may succeed.
        transient: bool,
    },
}

impl From<rate_guard_http::Error> for Error {
    // The settings' own errors keep this crate's variants, so that callers match one set.
    fn from(e: rate_guard_http::Error) -> Self {
        match e {
            rate_guard_http::Error::Setting { field, reason } => Error::Setting { field, reason },
            rate_guard_http::Error::Env { var, reason } => Error::Env { var, reason },
            rate_guard_http::Error::Redis {
                url,
                reason,
                transient,
            } => Error::Redis {
                url,
                reason,
                transient,
            },
            e => Error::Front(e),
        }
    }
}

impl Error {
    /// Whether building the guard again later may succeed: only when Redis was unreachable.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Redis {
                transient: true,
                ..
            }
        )
    }

    pub(crate) fn setting(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Setting {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}
