//! An [`Outcome`] as HTTP: headers added to an admitted request's response, or the whole
//! refusal (429, or 503 when the store is down and a rule fails closed) with its JSON body.
//! The header names, values and bodies are the HTTP front's, byte for byte what the Python
//! adapters send (see [`rate_guard_http::response`]).

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use rate_guard_http::Outcome;

/// The outcome's headers as typed pairs. A name or value that HTTP refuses cannot come from the
/// front (it writes fixed names, numbers and rule ids); it would be skipped rather than panic.
fn typed(outcome: &Outcome) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
    outcome
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((header_name(name)?, HeaderValue::from_str(value).ok()?)))
}

/// The front's header names, built at compile time (no allocation per response).
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

/// Sets the rate limit headers of an admitted request on its response (replacing any the
/// application set under the same names: the guard's count is the one that holds).
pub(crate) fn add_headers(headers: &mut HeaderMap, outcome: &Outcome) {
    for (name, value) in typed(outcome) {
        headers.insert(name, value);
    }
}

/// The response that refuses a request.
pub(crate) fn refusal<B: From<String>>(outcome: &Outcome) -> Response<B> {
    let mut response = Response::new(B::from(outcome.body().to_owned()));
    *response.status_mut() =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers_mut();
    for (name, value) in typed(outcome) {
        headers.append(name, value);
    }
    response
}
