//! Helpers shared by the TLS tests.

use std::time::Duration;

use rate_guard_redis::connection::RedisConfig;

/// `url` with generous timeouts: TLS handshakes on a loaded machine.
pub(crate) fn config(url: &str) -> RedisConfig {
    RedisConfig::from_url(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
}

/// A query parameter naming `path`, percent-encoded where a path needs it.
pub(crate) fn param(name: &str, path: &std::path::Path) -> String {
    format!(
        "{name}={}",
        path.display()
            .to_string()
            .replace('%', "%25")
            .replace('&', "%26")
    )
}
