//! The Prometheus export: the process's rate-guard metrics (requests allowed and blocked per
//! rule and route template, store latency, failures, deny cache hits, degradation gauges; see
//! [`rate_guard_core::metrics`]) in the text exposition format.
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{routing::get, Router};
//!
//! let app: Router = Router::new().route("/metrics", get(rate_guard_tower::metrics::handler));
//! # }
//! ```

use http::{header, Response, StatusCode};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A `200` response with the metrics as its body.
#[must_use]
pub fn response() -> Response<String> {
    let mut response = Response::new(rate_guard_core::metrics::render_prometheus());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// An axum handler serving [`response`]: `.route("/metrics", get(metrics::handler))`.
#[cfg(feature = "axum")]
#[allow(clippy::unused_async)] // axum handlers are async functions
pub async fn handler() -> axum::response::Response {
    axum::response::IntoResponse::into_response(response())
}
