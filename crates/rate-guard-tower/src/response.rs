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
    outcome.headers().iter().filter_map(|(name, value)| {
        Some((
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        ))
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
