//! [`SyncStore`]: the request function on blocking connections ([`SyncPool`]), for sync calls
//! that do their Redis I/O on the calling thread.
//!
//! It sends what [`RedisStore`](crate::RedisStore) sends (`FCALL` of the request function, or
//! `EVALSHA` of the request script where functions are refused), written by the same
//! [`encode_request`] straight from the request, with the same reload on a lost library or
//! script and the same reply, so the two decide alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rate_guard_core::{Request, StoreError, Verdict};
use redis::Value;

use super::config::RedisConfig;
use super::error::{is_no_function, is_no_script, ConnectionError};
use super::sync::{command, SyncConn, SyncPool};
use crate::resp;
use crate::script::{LIBRARY, REQUEST};
use crate::store::{encode_request, parse_reply, refuses_functions, verdict, Head};

/// Decides requests on a standalone server over blocking connections (see the module docs).
#[derive(Debug)]
pub struct SyncStore {
    pool: SyncPool,
    /// Whether calls go through the function library (`FCALL`) rather than `EVALSHA`.
    functions: AtomicBool,
}

/// What a reply to a call of the request function or script says.
enum Outcome {
    Reply(Value),
    Missing,
    FunctionsRefused,
}

impl SyncStore {
    /// A store for `config`'s server, with `functions` as the
    /// [`RedisStore`](crate::RedisStore) connected to it found them (it loaded the library or
    /// the script there); `None` where blocking connections do not serve (TLS, Sentinel,
    /// Cluster). Connects on first use.
    #[must_use]
    pub fn new(config: &RedisConfig, functions: bool) -> Option<Self> {
        Some(Self {
            pool: SyncPool::new(config)?,
            functions: AtomicBool::new(functions),
        })
    }

    /// Decides `request` (one call of the request function), within the command timeout.
    pub fn decide(&self, request: Request<'_>) -> Result<Verdict, StoreError> {
        request.validate()?;
        let deadline = Instant::now() + self.pool.timeout();
        let conn = self.pool.pick();
        let mut command = Vec::with_capacity(256);
        let mut reloaded = false;
        loop {
            let functions = self.functions.load(Ordering::Relaxed);
            command.clear();
            let head = if functions {
                Head::Function(&LIBRARY.request)
            } else {
                Head::Script(&REQUEST.sha)
            };
            encode_request(
                &mut command,
                head,
                request.mode,
                request.now,
                request.checks,
            );
            match self.outcome(conn.call(&command, deadline)?, functions)? {
                Outcome::Reply(reply) => {
                    let (_, rules) = parse_reply(&reply, request.checks.len())?;
                    return verdict(rules);
                }
                Outcome::FunctionsRefused => {
                    self.functions.store(false, Ordering::Relaxed);
                }
                Outcome::Missing if !reloaded => {
                    reloaded = true;
                    self.reload(conn, functions, deadline)?;
                }
                Outcome::Missing => {
                    let what = if functions { "function" } else { "script" };
                    return Err(StoreError::Refused(format!(
                        "{}: the request {what} is still missing after loading it",
                        self.pool.server()
                    )));
                }
            }
        }
    }

    /// `DEL` of `keys`; no keys, no round trip.
    pub fn reset(&self, keys: &[&str]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.pool.timeout();
        let mut command = Vec::with_capacity(64);
        resp::array(&mut command, 1 + keys.len());
        resp::bulk(&mut command, b"DEL");
        for key in keys {
            resp::bulk(&mut command, key.as_bytes());
        }
        let reply = self.pool.pick().call(&command, deadline)?;
        match reply.extract_error() {
            Ok(_) => Ok(()),
            Err(e) => Err(self.pool.classify(&e).into()),
        }
    }

    fn outcome(&self, reply: Value, functions: bool) -> Result<Outcome, ConnectionError> {
        let e = match reply.extract_error() {
            Ok(reply) => return Ok(Outcome::Reply(reply)),
            Err(e) => e,
        };
        if (functions && is_no_function(&e)) || (!functions && is_no_script(&e)) {
            return Ok(Outcome::Missing);
        }
        match self.pool.classify(&e) {
            ConnectionError::Refused(message) if functions && refuses_functions(&message) => {
                Ok(Outcome::FunctionsRefused)
            }
            other => Err(other),
        }
    }

    /// Loads the library (`FUNCTION LOAD REPLACE`) or the script (`SCRIPT LOAD`) again.
    fn reload(
        &self,
        conn: &SyncConn,
        functions: bool,
        deadline: Instant,
    ) -> Result<(), ConnectionError> {
        let mut load = Vec::new();
        if functions {
            command(
                &mut load,
                &[
                    &b"FUNCTION"[..],
                    b"LOAD",
                    b"REPLACE",
                    LIBRARY.source.as_bytes(),
                ],
            );
        } else {
            command(
                &mut load,
                &[&b"SCRIPT"[..], b"LOAD", REQUEST.source.as_bytes()],
            );
        }
        match conn.call(&load, deadline)?.extract_error() {
            Ok(_) => Ok(()),
            Err(e) => Err(self.pool.classify(&e)),
        }
    }
}
