//! The Redis store of py-rate-guard: [`RedisStore`] implements
//! [`rate_guard_core::Store`] with Lua scripts (`lua/*.lua`), one round trip per request, on
//! standalone Redis, Sentinel and Cluster. Decisions equal the core crate's bit for bit: the
//! scripts repeat its arithmetic operation for operation (see `rate_guard_core::algorithm`).
//!
//! ```no_run
//! use rate_guard_core::{Limiter, Quota, Rule};
//! use rate_guard_redis::RedisStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::from_url("redis://127.0.0.1:6379/0").await?;
//! let limiter = Limiter::builder()
//!     .rule(Rule::builder("100/minute".parse::<Quota>()?).build()?)
//!     .store(store)
//!     .build()?;
//! let verdict = limiter.hit("ip:203.0.113.7").await?;
//! # Ok(())
//! # }
//! ```

pub mod connection;
pub mod resp;
mod script;
mod store;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use connection::{
    defer_wakeups, redact_url, wake_deferred, Connection, ConnectionError, RedisConfig,
};
pub use store::{encode_request, Head, RedisStore};

/// The README's Rust snippets (they use this crate and the core), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
