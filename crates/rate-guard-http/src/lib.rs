//! The framework-neutral HTTP front of py-rate-guard: from a request's peer, headers, route and
//! user to one decision and the response headers that describe it. The Python adapters
//! (through `py_rate_guard._native`) and the tower layer are thin shells over this crate, so
//! a Python service and a Rust service configured alike build the **same keys** and enforce
//! one quota together.
//!
//! - [`KeySpec`]: whose quota a rule counts (`ip`, `global`, `user`, `header:<Name>`,
//!   `jwt:<claim>`, `custom`), and the [`identity`] strings they resolve to;
//! - [`ClientIp`]: the client address behind trusted proxies only (`X-Forwarded-For` or
//!   RFC 7239 `Forwarded`), IPv6 grouped by /64;
//! - [`Jwt`]: verified bearer-token claims;
//! - [`route`]: route scoping, and the scoped rule ids that are part of the key schema;
//! - [`Front`]: global and route limits, a [`Plan`] per request, and [`Front::decide`], one
//!   store call for the enforced rules, giving an [`Outcome`] with [`response`] headers;
//! - [`DecisionLog`]: which denials are logged (sampled per rule) and how identities appear in
//!   them, for both fronts.
//! - [`Settings`]: every setting of the engine and the front (serde, with defaults, ranges and
//!   docs), which builds both in one call; the Python package and the tower layer build
//!   from it.
//!
//! # The key schema
//!
//! Keys are `{prefix}:{rule id}:{{identity}}`, built by the core's
//! [`KeyBuilder`](rate_guard_core::KeyBuilder). This crate supplies the identity and, for
//! route limits, the scoped rule id:
//!
//! ```
//! use rate_guard_core::{KeyBuilder, Quota, Rule};
//! use rate_guard_http::{Front, KeySpec, Limit, Peer, RequestInfo};
//!
//! let rule = |s: &str| Rule::builder(s.parse::<Quota>().unwrap()).build().unwrap();
//! let front = Front::builder()
//!     .global(Limit::new(rule("100/minute")))
//!     .global(Limit::new(rule("1000/hour")).key(KeySpec::Global))
//!     .build()?;
//! let items = front.route("/items/{item_id}", None, [Limit::new(rule("5/minute"))])?;
//!
//! let headers: [(&[u8], &[u8]); 0] = [];
//! let request = RequestInfo::new(Peer::parse(Some("203.0.113.9")), &headers[..]);
//! let plan = front.plan(&request, Some(&items));
//! assert_eq!(
//!     plan.keys(&KeyBuilder::default()),
//!     [
//!         "rate_guard:sliding_window.100.60s:{ip:203.0.113.9}",
//!         "rate_guard:sliding_window.1000.3600s:{global}",
//!         "rate_guard:rt.67276a996a53c04d.sliding_window.5.60s:{ip:203.0.113.9}",
//!     ]
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cidr;
mod client_ip;
mod decision_log;
mod error;
mod forwarded;
mod front;
mod headers;
pub mod identity;
mod jwt;
mod key_spec;
mod limit;
mod outcome;
mod plan;
pub mod response;
pub mod route;
pub mod settings;

pub use cidr::{normalize, parse_addr, Cidr};
pub use client_ip::{Client, ClientIp, ForwardedHeader, Peer};
pub use decision_log::{
    DecisionKind, DecisionLog, Denial, DenialRecord, Identities, Record, SuppressedRecord,
    DEFAULT_DENIALS_PER_SECOND, MAX_DENIALS_PER_SECOND, MAX_LOGGED_RULES,
};
pub use error::Error;
pub use forwarded::MAX_HOPS;
pub use front::{Front, FrontBuilder, RequestInfo};
pub use headers::Headers;
pub use jwt::{claim_value, Claims, Jwt, JwtBuilder, MAX_TOKEN_LEN};
pub use key_spec::{KeySpec, MAX_KEY_NAME_LEN};
pub use limit::Limit;
pub use outcome::Outcome;
pub use plan::{Plan, PlanItem};
pub use response::{human_quota, HeaderStyle, LegacyHeaders};
pub use route::{scoped_rule_id, RouteLimits};
pub use settings::{Engine, RouteConfig, RuleConfig, Settings};
