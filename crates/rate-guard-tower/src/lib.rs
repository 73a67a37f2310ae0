//! The tower layer of py-rate-guard, for axum, hyper and tonic services: the rules, keys,
//! responses and degradation of the Python package, on the same engine and the same Redis key
//! schema, so that a Rust service and a Python service configured alike enforce **one** quota.
//!
//! - [`RateGuard`]: the limits of a service, its store (memory, or Redis standalone, Sentinel or
//!   Cluster) and how requests are keyed; built from a [`RateGuardConfig`] (serde: TOML,
//!   `RATE_GUARD_*` environment variables) or a [`RateGuardBuilder`].
//! - [`RateGuardLayer`] / [`RateGuardService`] / [`ResponseFuture`]: the middleware. The service
//!   is `Clone` and every clone shares the guard's limiter behind an `Arc`, so under axum (a
//!   clone per connection) the limit holds across connections, which tower's own `RateLimit`
//!   does not.
//! - Global rules apply to every request; route rules to the route whose template (axum's
//!   `MatchedPath`) they name. Every rule has its key: `ip` (the peer, or the right-most
//!   untrusted hop of the forwarding header when the peer is a trusted proxy; IPv6 by /64),
//!   `global`, `header:<Name>`, `jwt:<claim>` (verified), `user` and `custom` (closures).
//!   One store call per request decides them all, all-or-nothing.
//! - Responses: 429 with `Retry-After` and `{"detail": "Rate limit exceeded: 5 per 1 minute"}`,
//!   `X-RateLimit-Limit/Remaining/Reset` on every limited response, or the IETF
//!   `RateLimit` / `RateLimit-Policy` fields (`headers = "ietf"` or `"both"`); while Redis is
//!   down, the in-memory fallback, fail open, or 503 (fail closed).
//!
//! ```
//! use axum::{routing::get, Router};
//! use rate_guard_tower::{RateGuard, RateGuardConfig, RouteConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let guard = RateGuard::builder()
//!     // `RateGuardConfig::from_env()?` reads RATE_GUARD_REDIS_URL (Redis when set) and the rest.
//!     .config(RateGuardConfig::default())
//!     .global("100/minute")
//!     .route(RouteConfig::new("/sensitive-data").method("GET").rule("5/minute"))
//!     .build()
//!     .await?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/sensitive-data", get(|| async { "..." }))
//!     .layer(guard.layer());
//! // Serve with the peer address, which `ip` keys count by:
//! // axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The keys are `{prefix}:{rule id}:{identity}` exactly as the Python package builds them
//! (the HTTP front, `rate-guard-http`, is shared), and a route rule's id is scoped by its
//! template and method the same way. FastAPI scopes a route that serves one method by that
//! method, so give the same `method` to share a route's quota with a FastAPI service.

mod error;
mod extract;
mod future;
mod guard;
mod layer;
mod log;
pub mod metrics;
mod response;
pub mod service;

pub use error::Error;
pub use future::ResponseFuture;
pub use guard::{RateGuard, RateGuardBuilder, RequestFn};
pub use layer::RateGuardLayer;
pub use rate_guard_core::Algorithm;
/// The `RATE_GUARD_*` environment variables: [`RateGuardConfig::from_env`].
pub use rate_guard_http::settings::env;
/// Every setting of a guard: the one [`Settings`](rate_guard_http::Settings) type of the HTTP
/// front, which the Python package builds from too (same names, defaults and ranges). Load it
/// from TOML (serde) or with [`RateGuardConfig::from_env`].
///
/// ```
/// use rate_guard_tower::{HeaderStyle, RateGuardConfig};
///
/// let config: RateGuardConfig = toml::from_str(r#"
///     redis_url = "redis://127.0.0.1:6379/0"
///     trusted_proxies = ["10.0.0.0/8"]
///     headers = "both"
///     global_rules = [{ limit = "100/minute" }]
///
///     [[routes]]
///     path = "/sensitive-data"
///     method = "GET"
///     rules = [{ limit = "5/minute" }, { limit = "50/day", key = "header:X-Api-Key" }]
/// "#)?;
/// assert_eq!(config.global_rules[0].key, "ip");
/// assert_eq!(config.routes[0].rules[1].limit, "50/day");
/// assert_eq!(config.headers, HeaderStyle::Both);
/// assert!(config.fail_open); // the defaults are the Python package's
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use rate_guard_http::Settings as RateGuardConfig;
pub use rate_guard_http::{ForwardedHeader, Identities, RouteConfig, RuleConfig};
pub use service::RateGuardService;

pub use rate_guard_http::{HeaderStyle, Outcome, Plan, PlanItem};
