//! An axum service configured entirely as data: from a TOML file given as the first argument,
//! else from `RATE_GUARD_*` environment variables (the Python package reads the same ones):
//!
//! ```text
//! RATE_GUARD_REDIS_URL=redis://127.0.0.1:6379/0 \
//! RATE_GUARD_GLOBAL_RULES='[{"limit": "10/minute", "key": "header:X-Api-Key"}]' \
//! RATE_GUARD_ROUTES='[{"path": "/items/{item_id}", "method": "GET", "rules": [{"limit": "3/minute"}]}]' \
//!   cargo run -p rate-guard-tower --example axum_from_config -- --port 8001
//!
//! cargo run -p rate-guard-tower --example axum_from_config -- rate_guard.toml --port 8001
//! ```
//!
//! It serves `/` and `/items/{item_id}`.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use rate_guard_tower::{RateGuard, RateGuardConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut file = None;
    let mut port = 8000_u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--port" {
            port = args.next().ok_or("--port needs a value")?.parse()?;
        } else {
            file = Some(arg);
        }
    }
    let config = match file {
        Some(path) => toml::from_str::<RateGuardConfig>(&std::fs::read_to_string(path)?)?,
        None => RateGuardConfig::from_env()?,
    };
    let guard = RateGuard::from_config(config).await?;

    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/items/{item_id}",
            get(|Path(item_id): Path<String>| async move { item_id }),
        )
        .layer(guard.layer());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("serving on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
