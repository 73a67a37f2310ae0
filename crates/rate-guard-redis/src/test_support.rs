//! The door this crate's own integration tests and benches use to reach what the public API
//! keeps private: the script sources and a raw script call. Compiled only with the
//! `test-support` feature, which the crate's dev-dependency on itself turns on; no other crate
//! enables it.

use redis::Value;

use crate::connection::{script_call, Connection, ConnectionError};

use crate::script::LIBRARY;

/// The request script's source (`lua/request.lua` and the algorithms).
pub const REQUEST_SOURCE: &str = crate::script::REQUEST_SOURCE;

/// The refund script's source (`lua/refund.lua` and the algorithms).
pub const REFUND_SOURCE: &str = crate::script::REFUND_SOURCE;

/// The function library's source, for `FUNCTION LOAD` (its header names it and its functions).
#[must_use]
pub fn library_source() -> &'static str {
    &LIBRARY.source
}

/// The name of the library's request function, for `FCALL` (arguments as the request script).
#[must_use]
pub fn request_function() -> &'static str {
    &LIBRARY.request
}

/// Runs the script whose SHA1 is `sha` (and whose source is `body`) with `keys` and `args`
/// through [`Connection::eval_encoded`] (`EVALSHA`, reloading once on `NOSCRIPT`), the first
/// key routing it on a cluster.
pub async fn eval_script<A: AsRef<[u8]>>(
    conn: &Connection,
    sha: &str,
    body: &str,
    keys: &[&str],
    args: &[A],
) -> Result<Value, ConnectionError> {
    let command = script_call(b"EVALSHA", sha, keys, args);
    conn.eval_encoded(sha, body, keys.first().copied(), &command)
        .await
}
