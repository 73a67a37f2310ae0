//! [`RateGuardLayer`]: puts a [`RateGuard`] in front of a service.

use tower_layer::Layer;

use crate::guard::RateGuard;
use crate::service::RateGuardService;

/// Applies a [`RateGuard`] to a service. Cheap to clone; every service it makes shares the
/// guard's limiter, so the limits hold across connections and clones.
///
/// ```
/// use axum::{routing::get, Router};
/// use rate_guard_tower::{RateGuard, RateGuardLayer, RouteConfig};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let guard = RateGuard::builder()
///     .global("100/minute")
///     .route(RouteConfig::new("/sensitive-data").method("GET").rule("5/minute"))
///     .build()
///     .await?;
/// let app: Router = Router::new()
///     .route("/sensitive-data", get(|| async { "..." }))
///     // `Router::layer`, so that the layer sees the route template (`MatchedPath`).
///     .layer(RateGuardLayer::new(guard));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RateGuardLayer {
    guard: RateGuard,
}

impl RateGuardLayer {
    /// A layer applying `guard`.
    #[must_use]
    pub fn new(guard: RateGuard) -> Self {
        Self { guard }
    }

    /// The guard.
    #[must_use]
    pub fn guard(&self) -> &RateGuard {
        &self.guard
    }
}

impl<S> Layer<S> for RateGuardLayer {
    type Service = RateGuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateGuardService::new(inner, self.guard.clone())
    }
}
