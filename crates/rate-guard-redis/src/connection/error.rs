//! [`ConnectionError`] and the classification of the redis crate's errors into it.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why a connection could not be made or a call did not get an answer.
///
/// A [`Timeout`](Self::Timeout) (Redis too slow or frozen) is told apart from
/// [`Unavailable`](Self::Unavailable) (nothing to talk to) and from
/// [`Refused`](Self::Refused) (Redis answered with an error). Messages never contain a password.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// A URL that does not parse.
    #[error("invalid Redis URL `{url_redacted}`: {reason}")]
    InvalidUrl {
        /// The URL, its password replaced by `***`.
        url_redacted: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer within the time allowed (the command timeout for a call, the connect timeout
    /// for a connection).
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Nothing to talk to: connection refused, reset or closed, no master known.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error: a script error, a refused password, a wrong type.
    #[error("Redis refused the request: {0}")]
    Refused(String),
}

impl ConnectionError {
    /// Whether trying again later may succeed (timeouts and unreachable servers).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Unavailable(_))
    }

    /// Whether this is a timeout (as opposed to a refusal or a failure to connect).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl From<ConnectionError> for rate_guard_core::StoreError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Timeout(d) => Self::Timeout(d),
            ConnectionError::Unavailable(m) => Self::Unavailable(m),
            ConnectionError::Refused(m) => Self::Refused(m),
            e @ ConnectionError::InvalidUrl { .. } => Self::Refused(e.to_string()),
        }
    }
}

/// What to do with the connection after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aftermath {
    /// The connection is fine (the server answered with an error).
    Keep,
    /// The connection is broken, or reaches a server that is no longer the master: replace it.
    Replace,
}

/// The server answered that it is a replica: nothing was written, so the call may be repeated
/// on the new master.
pub(crate) fn is_read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// The server does not know the script's SHA1.
pub(crate) fn is_no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Whether the connection that produced `e` should be replaced.
pub(crate) fn aftermath(e: &RedisError) -> Aftermath {
    if e.is_io_error()
        || e.is_unrecoverable_error()
        || is_read_only(e)
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading)
        )
    {
        Aftermath::Replace
    } else {
        Aftermath::Keep
    }
}

/// Classifies `e`, which `server` (an address, or a description) produced; `timeout` is the
/// bound that was in force. `secret` is scrubbed from the message, in case a server or the
/// driver ever quotes it.
pub(crate) fn classify(
    e: &RedisError,
    server: &str,
    timeout: Duration,
    secret: Option<&str>,
) -> ConnectionError {
    if e.is_timeout() {
        return ConnectionError::Timeout(timeout);
    }
    let message = scrub(format!("{server}: {e}"), secret);
    let unavailable = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::Parse
                | ErrorKind::Server(
                    ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        );
    if unavailable {
        ConnectionError::Unavailable(message)
    } else {
        ConnectionError::Refused(message)
    }
}

/// Replaces every occurrence of a non-empty `secret` in `message` with `***`.
pub(crate) fn scrub(message: String, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() && message.contains(s) => message.replace(s, "***"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_unavailable_and_replace_the_connection() {
        let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(
            classify(&e, "h:1", Duration::from_millis(5), None),
            ConnectionError::Unavailable(_)
        ));
        assert_eq!(aftermath(&e), Aftermath::Replace);
    }

    #[test]
    fn io_timeouts_are_timeouts() {
        let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(
            classify(&e, "h:1", Duration::from_millis(5), None),
            ConnectionError::Timeout(Duration::from_millis(5))
        );
    }

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(scrub("a pw b".into(), Some("pw")), "a *** b");
        assert_eq!(scrub("a pw b".into(), Some("")), "a pw b");
        assert_eq!(scrub("a pw b".into(), None), "a pw b");
    }
}
