//! The axum equivalent of the Python quick start (`examples/fastapi_quickstart.py`): every
//! client IP gets 100 requests per minute across the service, and `/sensitive-data` 5 per
//! minute on top. The memory store, or Redis when `RATE_GUARD_REDIS_URL` is set (every
//! `RateGuardConfig` field reads `RATE_GUARD_<FIELD>`, as in Python). On one Redis with the
//! same key prefix, this service and the FastAPI quick start enforce one quota together.
//!
//! ```text
//! cargo run -p rate-guard-tower --example axum_quickstart -- [--host 127.0.0.1] [--port 8000]
//! ```

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use rate_guard_tower::{RateGuard, RateGuardConfig, RouteConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = RateGuard::builder()
        .config(RateGuardConfig::from_env()?)
        .global("100/minute")
        // FastAPI scopes `@app.get` routes by their method: GET here too, so both count alike.
        .route(
            RouteConfig::new("/sensitive-data")
                .method("GET")
                .rule("5/minute"),
        )
        .build()
        .await?;

    let app = Router::new()
        .route("/sensitive-data", get(get_data))
        // `Router::layer`: the layer sees each route's template (`MatchedPath`).
        .layer(guard.layer())
        // Added after the layer, so scrapes are not limited.
        .route("/metrics", get(rate_guard_tower::metrics::handler));

    let (host, port) = address()?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!("serving on http://{}", listener.local_addr()?);
    // The peer address, which `ip` keys count by.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}

async fn get_data() -> Json<serde_json::Value> {
    Json(serde_json::json!({"data": "..."}))
}

/// `--host` and `--port`, as the Python example takes them.
fn address() -> Result<(String, u16), String> {
    let (mut host, mut port) = ("127.0.0.1".to_owned(), 8000);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--host" => host = value,
            "--port" => port = value.parse().map_err(|e| format!("--port {value}: {e}"))?,
            _ => {
                return Err(format!(
                    "unknown argument {arg} (expected --host or --port)"
                ))
            }
        }
    }
    Ok((host, port))
}
