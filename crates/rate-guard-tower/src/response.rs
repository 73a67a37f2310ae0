//! An [`Outcome`] as HTTP: headers added to an admitted request's response, or the whole
//! refusal (429, or 503 when the store is down and a rule fails closed) with its JSON body.
//! The header names, values and bodies are the HTTP front's, byte for byte what the Python
//! adapters send (see [`rate_guard_http::response`]).
//!
//! Per admitted request this costs no allocation beyond the response's own header map: names
//! are built at compile time and small numbers (counts, seconds) come from a table.

use std::sync::LazyLock;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use rate_guard_http::Outcome;
use smallvec::SmallVec;

/// The rate limit headers of an admitted request, ready to set on its response.
#[derive(Debug, Default)]
pub(crate) struct RateHeaders(SmallVec<[(HeaderName, HeaderValue); 4]>);

impl RateHeaders {
    /// The headers of `outcome`. A name or value that HTTP refuses cannot come from the front
    /// (it writes fixed names, numbers and rule ids); it would be skipped rather than panic.
    pub(crate) fn of(outcome: &Outcome) -> Self {
        Self(
            outcome
                .headers()
                .iter()
                .filter_map(|(name, value)| Some((header_name(name)?, header_value(value)?)))
                .collect(),
        )
    }

    /// Sets the headers on an admitted request's response (replacing any the application set
    /// under the same names: the guard's count is the one that holds).
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.reserve(self.0.len());
        for (name, value) in self.0 {
            headers.insert(name, value);
        }
    }
}

/// The response that refuses a request.
pub(crate) fn refusal<B: From<String>>(outcome: &Outcome) -> Response<B> {
    let mut response = Response::new(B::from(outcome.body().to_owned()));
    *response.status_mut() =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers_mut();
    for (name, value) in RateHeaders::of(outcome).0 {
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
