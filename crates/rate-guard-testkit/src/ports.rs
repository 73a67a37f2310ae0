//! Free TCP ports on 127.0.0.1, never handed out twice within one process.
//!
//! The kernel picks a free port when we bind port 0; we close the socket and give the number to
//! `redis-server`. Between the close and redis' own bind another process may take the port, so
//! callers retry a start whose bind failed. Inside this process a global set guarantees that two
//! fixtures started in parallel never receive the same number.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// The system Redis listens here; a fixture must never use it.
const SYSTEM_REDIS_PORT: u16 = 6379;

/// How many kernel-assigned ports to try before giving up.
const ATTEMPTS: usize = 100;

static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port reserved for this process until the value is dropped.
#[derive(Debug)]
pub(crate) struct ReservedPort(u16);

impl ReservedPort {
    /// Asks the kernel for a free port that no live reservation in this process holds.
    pub(crate) fn new() -> io::Result<Self> {
        for _ in 0..ATTEMPTS {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            if port == SYSTEM_REDIS_PORT {
                continue;
            }
            if RESERVED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(port)
            {
                return Ok(Self(port));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no free port on 127.0.0.1 after {ATTEMPTS} attempts"),
        ))
    }

    /// The port number.
    pub(crate) fn get(&self) -> u16 {
        self.0
    }
}

impl Drop for ReservedPort {
    fn drop(&mut self) {
        RESERVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::ReservedPort;

    #[test]
    fn live_reservations_are_distinct_and_never_6379() {
        let ports: Vec<ReservedPort> = (0..50).map(|_| ReservedPort::new().unwrap()).collect();
        let mut numbers: Vec<u16> = ports.iter().map(ReservedPort::get).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), ports.len());
        assert!(!numbers.contains(&6379));
    }
}
