//! Real Redis servers for py-rate-guard's tests: a standalone [`RedisServer`], a
//! [`RedisCluster`] of 3 masters and 3 replicas, and a [`RedisSentinel`] deployment.
//!
//! Every process runs `redis-server` on a free port of 127.0.0.1 (never 6379), without
//! persistence, with its log and working files in its own temporary directory; dropping a fixture
//! kills its processes and removes the directories. Fixtures are safe to start from parallel
//! tests in one process (a port is never handed out twice) and in parallel processes (a start
//! whose port was taken in the meantime retries on another, and a probe checks that the server
//! answering is the process it spawned).
//!
//! The binaries are `redis-server` and `redis-cli` from `PATH`, or the paths in
//! `RATE_GUARD_REDIS_SERVER` and `RATE_GUARD_REDIS_CLI`. Waits are bounded: 10 s for one server,
//! 30 s for a cluster or sentinel deployment to settle or fail over; a failed start reports the
//! tail of the server's log.
//!
//! Fault tests can [`stop`](RedisServer::stop) (SIGKILL), [`restart`](RedisServer::restart),
//! [`pause`](RedisServer::pause) (SIGSTOP) and [`resume`](RedisServer::resume) any process, fail
//! a cluster replica over with [`RedisCluster::failover`], and move the sentinel master with
//! [`RedisSentinel::failover`]. A [`FaultProxy`] in front of any of them injects network faults:
//! it forwards, swallows every byte while keeping connections open ([`Fault::Blackhole`]), or
//! refuses connections ([`Fault::Refuse`]).
//!
//! ```
//! use std::time::Duration;
//! use rate_guard_testkit::RedisServer;
//!
//! let mut server = RedisServer::start()?;
//! assert_ne!(server.port(), 6379);
//! server.cmd(&["SET", "hits", "1"])?;
//! assert_eq!(server.cmd(&["INCR", "hits"])?, "2");
//!
//! server.pause()?;
//! assert!(server.ping(Duration::from_millis(100)).is_err());
//! server.resume()?;
//! server.ping(Duration::from_secs(1))?;
//!
//! server.stop()?;
//! server.restart()?; // same port, empty data
//! assert_eq!(server.cmd(&["EXISTS", "hits"])?, "0");
//! # Ok::<(), std::io::Error>(())
//! ```

mod cluster;
mod ports;
mod process;
mod proxy;
mod resp;
mod sentinel;
mod server;
mod tls;

pub use cluster::RedisCluster;
pub use proxy::{Fault, FaultProxy};
pub use sentinel::RedisSentinel;
pub use server::{RedisServer, RedisServerBuilder};
pub use tls::TestCertificates;
