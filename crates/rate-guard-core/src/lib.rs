//! The rate limiting engine of py-rate-guard: rate strings, algorithms, decisions, the
//! [`Store`] contract, an in-memory store and the [`Limiter`] facade. No Redis and no Python
//! here: `rate-guard-redis` implements [`Store`] on Redis with the same semantics, and the Python
//! package and the tower layer are fronts over [`Limiter`].
//!
//! ```
//! use rate_guard_core::{parse_quotas, Algorithm, Limiter, ManualClock, Rule, Timestamp};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
//! let rules = parse_quotas("5 per second; 100/minute")?
//!     .into_iter()
//!     .map(|q| Rule::builder(q).algorithm(Algorithm::SlidingLog).build())
//!     .collect::<Result<Vec<_>, _>>()?;
//! let limiter = Limiter::builder().rules(rules).clock(clock.clone()).build()?;
//!
//! for _ in 0..5 {
//!     assert!(limiter.hit("client").await?.allowed());
//! }
//! let denied = limiter.hit("client").await?;
//! assert!(!denied.allowed());
//! assert_eq!(denied.decision().retry_after, Some(Duration::from_secs(1)));
//! clock.advance(Duration::from_secs(1));
//! assert!(limiter.hit("client").await?.allowed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod algorithm;
pub mod bounds;
mod clock;
mod decision;
pub mod degrade;
mod error;
mod hit;
mod key;
mod limiter;
pub mod metrics;
pub mod observe;
pub mod quota;
pub mod rate_str;
mod rule;
mod store;

pub use algorithm::{Algorithm, State};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use decision::{Decision, Source, Verdict};
pub use degrade::{BreakerState, Degradation, Event};
pub use error::{ConfigError, Error, StoreError};
pub use hit::Hit;
pub use key::{escape_identity, KeyBuilder, MAX_IDENTITY_LEN, MAX_PREFIX_LEN};
pub use limiter::{Action, EventHook, Limiter, LimiterBuilder};
pub use observe::Observer;
pub use quota::{Quota, QuotaError, Rate};
pub use rate_str::{parse_quotas, parse_rates, ParseError, ParseErrorKind};
pub use rule::{Rule, RuleBuilder, MAX_RULE_ID_LEN};
pub use store::{
    BoxFuture, Check, MemoryStore, MemoryStoreBuilder, Mode, Request, Store, MAX_CHECKS,
};
