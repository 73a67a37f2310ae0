//! [`SyncStore`]: the request function on blocking connections ([`SyncPool`]), for sync calls
//! that do their Redis I/O on the calling thread.
//!
//! It sends what [`RedisStore`](crate::RedisStore) sends (`FCALL` of the request function, or
//! `EVALSHA` of the request script where functions are refused), with the same reload on a
//! lost library or script and the same reply, so the two decide alike; the command's bytes are
//! written once, straight from the request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rate_guard_core::{Mode, Request, StoreError, Verdict};
use redis::Value;

use super::config::RedisConfig;
use super::error::{is_no_function, is_no_script, ConnectionError};
use super::sync::{write_bulk, write_command, write_header, write_uint, SyncConn, SyncPool};
use crate::script::{LIBRARY, REQUEST};
use crate::store::{algorithm_code, parse_reply, refuses_functions, verdict};

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
            encode_request(&mut command, functions, &request);
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
        write_header(&mut command, 1 + keys.len());
        write_bulk(&mut command, b"DEL");
        for key in keys {
            write_bulk(&mut command, key.as_bytes());
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
        let mut command = Vec::new();
        if functions {
            write_command(
                &mut command,
                &[b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY.source.as_bytes()],
            );
        } else {
            write_command(
                &mut command,
                &[b"SCRIPT", b"LOAD", REQUEST.source.as_bytes()],
            );
        }
        match conn.call(&command, deadline)?.extract_error() {
            Ok(_) => Ok(()),
            Err(e) => Err(self.pool.classify(&e)),
        }
    }
}

/// Appends the call of the request function (`FCALL`, or `EVALSHA` of the request script) for
/// `request` to `out`: the keys, then the arguments of `lua/request.lua` (mode, time, and five
/// per rule as [`RedisStore`](crate::RedisStore) sends them).
fn encode_request(out: &mut Vec<u8>, functions: bool, request: &Request<'_>) {
    let checks = request.checks;
    write_header(out, 3 + checks.len() + 2 + 5 * checks.len());
    if functions {
        write_bulk(out, b"FCALL");
        write_bulk(out, LIBRARY.request.as_bytes());
    } else {
        write_bulk(out, b"EVALSHA");
        write_bulk(out, REQUEST.sha.as_bytes());
    }
    write_uint(out, checks.len() as u64);
    for check in checks {
        write_bulk(out, check.key.as_bytes());
    }
    write_bulk(
        out,
        match request.mode {
            Mode::Peek => b"peek",
            _ => b"hit",
        },
    );
    match request.now {
        Some(now) => write_uint(out, now.as_micros()),
        None => write_bulk(out, b""),
    }
    for check in checks {
        let rule = check.rule;
        write_bulk(out, algorithm_code(rule.algorithm()).as_bytes());
        write_uint(out, u64::from(rule.count()));
        write_uint(out, rule.period_micros());
        write_uint(out, u64::from(rule.capacity()));
        write_uint(out, u64::from(check.cost.get()));
    }
}
