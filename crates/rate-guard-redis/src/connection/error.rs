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
    /// Redis refuses every call for now (out of memory, busy, read-only, a password or a
    /// permission refused, a command renamed away): as bad as an outage.
    #[error("Redis refused the request: {0}")]
    Refused(String),
    /// TLS settings that cannot work: an unreadable or empty PEM file, a certificate without
    /// its key.
    #[error("invalid Redis TLS setting: {0}")]
    Tls(String),
    /// Redis could not run this one call because of its own keys or arguments (a script error,
    /// a key holding another type) while it serves others.
    #[error("Redis rejected the request: {0}")]
    Rejected(String),
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
            ConnectionError::Rejected(m) => Self::Rejected(m),
            e @ (ConnectionError::InvalidUrl { .. } | ConnectionError::Tls(_)) => {
                Self::Refused(e.to_string())
            }
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

/// The server does not know the function (its library was never loaded there, or was lost to
/// a restart or `FUNCTION FLUSH`).
pub(crate) fn is_no_function(e: &RedisError) -> bool {
    e.code() == Some("ERR")
        && e.detail()
            .is_some_and(|d| d.starts_with("Function not found"))
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
///
/// Only what affects every call is [`Unavailable`](ConnectionError::Unavailable) or
/// [`Refused`](ConnectionError::Refused): transport failures, a server that is loading,
/// busy, out of memory, read-only, failing over or refusing our credentials, permissions or
/// commands. Any other error reply (a script error, `WRONGTYPE`, a bad argument) concerns this
/// call only and is [`Rejected`](ConnectionError::Rejected).
///
/// A server's message is reduced to its code and its words ([`reduce`]): Redis echoes the
/// arguments of a refused command, and the keys among them carry client identities.
pub(crate) fn classify(
    e: &RedisError,
    server: &str,
    timeout: Duration,
    secret: Option<&str>,
) -> ConnectionError {
    if e.is_timeout() {
        return ConnectionError::Timeout(timeout);
    }
    let reply = e.code().map(|code| reduce(code, e.detail().unwrap_or("")));
    let message = scrub(
        match &reply {
            Some(reply) => format!("{server}: {reply}"),
            None => format!("{server}: {e}"),
        },
        secret,
    );
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
    } else if e
        .code()
        .is_some_and(|code| !is_server_wide(code, e.detail().unwrap_or("")))
    {
        ConnectionError::Rejected(message)
    } else {
        ConnectionError::Refused(message)
    }
}

/// Whether an error reply with this `code` and `detail` means that the server refuses every
/// call, not just this one. A `NOSCRIPT` gets here only when it outlived the reload.
fn is_server_wide(code: &str, detail: &str) -> bool {
    match code {
        "LOADING" | "BUSY" | "OOM" | "READONLY" | "NOPERM" | "MASTERDOWN" | "CLUSTERDOWN"
        | "TRYAGAIN" | "NOAUTH" | "WRONGPASS" | "NOSCRIPT" | "MISCONF" | "NOREPLICAS" | "MOVED"
        | "ASK" => true,
        "ERR" => {
            detail.starts_with("unknown command")
                // Like NOSCRIPT: it gets here only when it outlived the reload.
                || detail.starts_with("Function not found")
                || detail.starts_with("max number of clients")
                || detail.starts_with("Protocol error")
        }
        _ => false,
    }
}

/// The most characters of a server's message kept.
const MAX_REPLY_CHARS: usize = 200;

/// An error reply reduced to its code and the words of its message: the arguments Redis
/// echoes after `with args beginning with:` are cut, a quoted span is kept only when it is a
/// plain word (a command name such as `'EVALSHA'`), and so is an unquoted one (a storage key
/// `prefix:rule:identity` has two colons and goes, a script's location `user_script:1:` stays).
/// What is dropped shows as `…`.
///
/// ```text
/// ERR unknown command 'EVALSHA', with args beginning with: '<sha>' '1' 'rate_guard:r:alice'
///   -> ERR unknown command 'EVALSHA'
/// ERR user_script:1: boom rate_guard:r:alice script: <sha>, on @user_script:1.
///   -> ERR user_script:1: boom … script: <sha>, on @user_script:1.
/// ```
pub(crate) fn reduce(code: &str, detail: &str) -> String {
    let detail = match detail.find("with args beginning with") {
        Some(i) => detail[..i].trim_end().trim_end_matches(','),
        None => detail,
    };
    let mut out = String::with_capacity(detail.len().min(MAX_REPLY_CHARS) + 8);
    out.push_str(if is_word(code) { code } else { "…" });
    let mut rest = detail.trim();
    if !rest.is_empty() {
        out.push(' ');
    }
    while !rest.is_empty() && out.chars().count() < MAX_REPLY_CHARS {
        let start = rest.len() - rest.trim_start().len();
        if start > 0 {
            out.push(' ');
            rest = &rest[start..];
            continue;
        }
        let (token, after) =
            if let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
                // A quoted span, up to its closing quote (or the end).
                match rest[1..].find(quote) {
                    Some(end) => {
                        let inner = &rest[1..=end];
                        let tail = &rest[end + 2..];
                        let kept = if is_name(inner) { inner } else { "…" };
                        out.push(quote);
                        out.push_str(kept);
                        out.push(quote);
                        rest = tail;
                        continue;
                    }
                    None => (rest, ""),
                }
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
        out.push_str(if is_word(token) { token } else { "…" });
        rest = after;
    }
    if !rest.is_empty() {
        out.push('…');
    }
    out.trim_end().to_owned()
}

/// A command or ACL category name: letters, `|`, `_`, `-`, at most 32 of them. A storage key
/// always has colons, so it is never one.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, '|' | '_' | '-'))
}

/// A word of a message: letters, digits and punctuation, at most one colon, and that one at
/// the end (`script:`, `rate_guard:`), or a script's location (`user_script:12:`,
/// `@user_script:12.`).
fn is_word(s: &str) -> bool {
    let plain = |s: &str| {
        s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | ',' | '(' | ')' | '#' | '=' | '>' | '<')
        })
    };
    if let Some(location) = s
        .trim_start_matches('@')
        .strip_prefix("user_script:")
        .map(|l| l.trim_end_matches([':', '.', ',']))
    {
        return location.bytes().all(|b| b.is_ascii_digit());
    }
    !s.is_empty() && s.len() <= 64 && plain(s.strip_suffix(':').unwrap_or(s))
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
    use redis::Value;

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

    /// The error `line` (without its `-`) as the redis crate reads it off the wire.
    fn reply(line: &str) -> RedisError {
        let wire = format!("-{line}\r\n");
        redis::parse_redis_value(wire.as_bytes())
            .and_then(Value::extract_error)
            .expect_err("an error reply")
    }

    fn classified(line: &str) -> ConnectionError {
        classify(&reply(line), "h:1", Duration::from_millis(5), None)
    }

    const KEY: &str = "rate_guard:api:alice@example.com";

    /// Messages as Redis 7.0 writes them (collected from redis-server 7.0.15).
    #[test]
    fn script_errors_and_wrong_types_concern_the_request() {
        for line in [
            "WRONGTYPE Operation against a key holding the wrong kind of value script: \
             61636018f4e6b5817b89791bbed242f93fa089e3, on @user_script:1.",
            "ERR user_script:1: attempt to perform arithmetic on local 'x' (a nil value) \
             script: 42dd61424422d70c4a7f3ebd77a75954394eff97, on @user_script:1.",
            &format!(
                "ERR user_script:1: boom {KEY} script: c30b8d9f79efdb56f614875d25b2efa2986a40ef, \
                 on @user_script:1."
            ),
            "ERR Error running script (call to f_1234): @user_script:1: oops",
            "rate_guard: expected 5 arguments per key",
            "ERR value is not an integer or out of range",
        ] {
            let e = classified(line);
            assert!(matches!(e, ConnectionError::Rejected(_)), "{line}: {e:?}");
            assert!(!e.to_string().contains("alice"), "{e}");
        }
    }

    #[test]
    fn server_wide_refusals_count_as_outages() {
        for line in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "OOM command not allowed when used memory > 'maxmemory'. script: \
             219bb33e7c6773035c720850383aa2ebb63d9904, on @user_script:1.",
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            "NOPERM this user has no permissions to access one of the keys used as arguments",
            "NOPERM this user has no permissions to run the 'evalsha' command",
            "NOSCRIPT No matching script. Please use EVAL.",
            "NOAUTH Authentication required.",
            "WRONGPASS invalid username-password pair or user is disabled.",
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
            &format!("ERR unknown command 'EVALSHA', with args beginning with: \
                      '61636018f4e6b5817b89791bbed242f93fa089e3' '1' '{KEY}' "),
            "ERR max number of clients reached",
            "ERR Function not found",
        ] {
            let e = classified(line);
            assert!(matches!(e, ConnectionError::Refused(_)), "{line}: {e:?}");
        }
        for line in [
            "LOADING Redis is loading the dataset in memory",
            "READONLY You can't write against a read only replica.",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            let e = classified(line);
            assert!(
                matches!(e, ConnectionError::Unavailable(_)),
                "{line}: {e:?}"
            );
        }
    }

    #[test]
    fn messages_keep_the_code_and_drop_arguments_and_keys() {
        let unknown = format!(
            "ERR unknown command 'EVALSHA', with args beginning with: \
             '61636018f4e6b5817b89791bbed242f93fa089e3' '1' '{KEY}' "
        );
        assert_eq!(
            classified(&unknown).to_string(),
            "Redis refused the request: h:1: ERR unknown command 'EVALSHA'"
        );
        assert_eq!(
            classified("NOPERM this user has no permissions to run the 'evalsha' command")
                .to_string(),
            "Redis refused the request: h:1: NOPERM this user has no permissions to run the \
             'evalsha' command"
        );
        assert_eq!(
            classified(&format!(
                "ERR user_script:1: boom {KEY} script: c30b, on @user_script:1."
            ))
            .to_string(),
            "Redis rejected the request: h:1: ERR user_script:1: boom … script: c30b, on \
             @user_script:1."
        );
        assert_eq!(
            reduce("ERR", &format!("attempt to index '{KEY}' \"{KEY}\" {KEY}")),
            "ERR attempt to index '…' \"…\" …"
        );
        assert_eq!(reduce(KEY, "x"), "… x");
        assert!(reduce("ERR", &"word ".repeat(100)).chars().count() <= MAX_REPLY_CHARS + 6);
    }

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(scrub("a pw b".into(), Some("pw")), "a *** b");
        assert_eq!(scrub("a pw b".into(), Some("")), "a pw b");
        assert_eq!(scrub("a pw b".into(), None), "a pw b");
    }
}
