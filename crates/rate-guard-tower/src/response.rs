//! An [`Outcome`] as HTTP: headers added to an admitted request's response, or the whole
//! refusal (429, or 503 when the store is down and a rule fails closed) with its JSON body.
//! The header names, values and bodies are the HTTP front's, byte for byte what the Python
//! adapters send (see [`rate_guard_http::response`]).
//!
//! Per admitted request with the legacy headers (the default) this costs no string: the
//! numbers go from the decision straight into header values; names are built at compile
//! time, small numbers (counts, seconds) come from a table and the limit from the guard's.

use std::sync::LazyLock;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use rate_guard_http::response::{X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET};
use rate_guard_http::{HeaderStyle, Outcome};
use smallvec::SmallVec;

/// The rate limit headers of an admitted request, ready to set on its response. Small, since
/// it rides in the response future while the inner service runs.
#[derive(Debug, Default)]
pub(crate) enum RateHeaders {
    /// None (header style `none`, or a degraded answer).
    #[default]
    None,
    /// `x-ratelimit-*`: the limit's value (made once per guard), remaining and reset.
    Legacy {
        limit: HeaderValue,
        remaining: u32,
        reset: u64,
    },
    /// Any other style, as the front wrote them.
    List(Box<SmallVec<[(HeaderName, HeaderValue); 4]>>),
}

impl RateHeaders {
    /// The headers of an admitted `outcome` under `style`; `limit_value` gives the value of a
    /// limit (the guard keeps those of its rules).
    pub(crate) fn of(
        outcome: &Outcome,
        style: HeaderStyle,
        limit_value: impl FnOnce(u32) -> HeaderValue,
    ) -> Self {
        if style == HeaderStyle::Legacy {
            return match outcome.legacy_headers() {
                Some(legacy) => Self::Legacy {
                    limit: limit_value(legacy.limit),
                    remaining: legacy.remaining,
                    reset: legacy.reset,
                },
                None => Self::None,
            };
        }
        let list = list(outcome);
        if list.is_empty() {
            Self::None
        } else {
            Self::List(Box::new(list))
        }
    }

    /// Sets the headers on an admitted request's response (replacing any the application set
    /// under the same names: the guard's count is the one that holds).
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        match self {
            Self::None => {}
            Self::Legacy {
                limit,
                remaining,
                reset,
            } => {
                headers.insert(const { HeaderName::from_static(X_RATELIMIT_LIMIT) }, limit);
                headers.insert(
                    const { HeaderName::from_static(X_RATELIMIT_REMAINING) },
                    number(u64::from(remaining)),
                );
                headers.insert(
                    const { HeaderName::from_static(X_RATELIMIT_RESET) },
                    number(reset),
                );
            }
            Self::List(list) => {
                for (name, value) in *list {
                    headers.insert(name, value);
                }
            }
        }
    }
}

/// `outcome`'s headers as HTTP names and values. A name or value that HTTP refuses cannot
/// come from the front (it writes fixed names, numbers and rule ids); it would be skipped
/// rather than panic.
fn list(outcome: &Outcome) -> SmallVec<[(HeaderName, HeaderValue); 4]> {
    outcome
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((header_name(name)?, header_value(value)?)))
        .collect()
}

/// The response that refuses a request.
pub(crate) fn refusal<B: From<String>>(outcome: &Outcome) -> Response<B> {
    let mut response = Response::new(B::from(outcome.body().to_owned()));
    *response.status_mut() =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers_mut();
    for (name, value) in list(outcome) {
        headers.append(name, value);
    }
    response
}

/// The front's header names, built at compile time.
fn header_name(name: &str) -> Option<HeaderName> {
    use rate_guard_http::response::{
        CONTENT_TYPE, RATELIMIT, RATELIMIT_POLICY, RETRY_AFTER, X_RATELIMIT_LIMIT,
        X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
    };
    Some(match name {
        X_RATELIMIT_LIMIT => const { HeaderName::from_static(X_RATELIMIT_LIMIT) },
        X_RATELIMIT_REMAINING => const { HeaderName::from_static(X_RATELIMIT_REMAINING) },
        X_RATELIMIT_RESET => const { HeaderName::from_static(X_RATELIMIT_RESET) },
        RATELIMIT => const { HeaderName::from_static(RATELIMIT) },
        RATELIMIT_POLICY => const { HeaderName::from_static(RATELIMIT_POLICY) },
        RETRY_AFTER => http::header::RETRY_AFTER,
        CONTENT_TYPE => http::header::CONTENT_TYPE,
        other => return HeaderName::from_bytes(other.as_bytes()).ok(),
    })
}

/// Numbers below this come from [`SMALL_NUMBERS`].
const SMALL: usize = 1024;

/// `"0"` to `"1023"` as static header values, made once per process: cloning one copies a
/// pointer, where making a value allocates.
static SMALL_NUMBERS: LazyLock<Box<[HeaderValue]>> = LazyLock::new(|| {
    (0..SMALL)
        .map(|n| HeaderValue::from_static(Box::leak(n.to_string().into_boxed_str())))
        .collect()
});

/// `n` as a header value: from the table when small, else made (one small allocation).
pub(crate) fn number(n: u64) -> HeaderValue {
    match usize::try_from(n) {
        Ok(small) if small < SMALL => SMALL_NUMBERS[small].clone(),
        _ => HeaderValue::from(n),
    }
}

fn header_value(value: &str) -> Option<HeaderValue> {
    let small = (value.len() <= 4 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<usize>().ok())
        .flatten()
        .filter(|&n| n < SMALL && (n == 0 || !value.starts_with('0')));
    match small {
        Some(n) => Some(SMALL_NUMBERS[n].clone()),
        None => HeaderValue::from_str(value).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_text_given() {
        for text in [
            "0",
            "7",
            "99",
            "1023",
            "1024",
            "3600",
            "007",
            "",
            "\"r\";r=1;t=60",
        ] {
            assert_eq!(header_value(text).unwrap(), text);
        }
        assert!(header_value("a\nb").is_none());
    }

    #[test]
    fn numbers_are_decimal() {
        for n in [0, 9, 1023, 1024, 60_000, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(number(n), n.to_string().as_str());
        }
    }

    #[test]
    fn names_are_the_fronts() {
        for name in [
            "x-ratelimit-limit",
            "ratelimit-policy",
            "retry-after",
            "x-other",
        ] {
            assert_eq!(header_name(name).unwrap().as_str(), name);
        }
        assert!(header_name("bad name").is_none());
    }
}
