//! What [`Settings`] build: the limiter (store, degradation, key prefix) and the HTTP front
//! (client addresses, JWT, headers, global and route limits), each piece once for both fronts.

use std::num::NonZeroU32;
use std::sync::Arc;

use rate_guard_core::{
    bounds, Clock, Degradation, Limiter, LimiterBuilder, MemoryStore, Store, SystemClock,
};

use super::Settings;
use crate::error::Error;
use crate::{DecisionLog, Front, FrontBuilder, Jwt, Limit, RouteLimits};

/// An engine built from [`Settings`] in one call ([`Settings::build`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Engine {
    /// The limiter: store, degradation, key prefix.
    pub limiter: Limiter,
    /// The HTTP front, global limits included.
    pub front: Front,
    /// The limits of each of [`Settings::routes`], in order, scoped to its template and method.
    pub routes: Vec<RouteLimits>,
}

/// `url` with its password replaced by `***` (the Redis crate's rule, when it is built in).
pub(super) fn redact_url(url: &str) -> String {
    #[cfg(feature = "redis")]
    {
        rate_guard_redis::redact_url(url)
    }
    #[cfg(not(feature = "redis"))]
    {
        // Without the Redis crate nothing parses the URL here: show none of it.
        let _ = url;
        "(hidden)".to_owned()
    }
}

/// Seconds as a [`Duration`](std::time::Duration), within the field's range.
fn seconds(field: &str, value: f64) -> Result<std::time::Duration, Error> {
    bounds::check_seconds(field, value).map_err(|e| Error::setting(field, e))
}

/// A client certificate and its key go together.
pub(super) fn tls_pair(settings: &Settings) -> Result<(), Error> {
    match (&settings.redis_tls_cert_file, &settings.redis_tls_key_file) {
        (Some(_), None) => Err(Error::setting(
            "redis_tls_cert_file",
            "needs redis_tls_key_file",
        )),
        (None, Some(_)) => Err(Error::setting(
            "redis_tls_key_file",
            "needs redis_tls_cert_file",
        )),
        _ => Ok(()),
    }
}

/// The Redis URL parses (nothing is connected).
// Without the Redis crate nothing can fail: the build refuses the URL instead.
#[cfg_attr(not(feature = "redis"), allow(clippy::unnecessary_wraps))]
pub(super) fn check_redis_url(settings: &Settings) -> Result<(), Error> {
    #[cfg(feature = "redis")]
    if let Some(url) = settings.redis_url() {
        rate_guard_redis::RedisConfig::from_url(url).map_err(|e| Error::setting("redis_url", e))?;
    }
    #[cfg(not(feature = "redis"))]
    let _ = settings;
    Ok(())
}

impl Settings {
    /// The Redis URL, when one is set and not empty.
    #[must_use]
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref().filter(|url| !url.is_empty())
    }

    /// The degradation settings: breaker, deny cache, failure policy, in-memory fallback.
    pub fn degradation(&self) -> Result<Degradation, Error> {
        for field in ["breaker_threshold", "deny_cache_size", "instance_count"] {
            self.check_field(field)?;
        }
        let mut degradation = Degradation::default()
            .failure_threshold(self.breaker_threshold)
            .cooldown(
                seconds("breaker_cooldown", self.breaker_cooldown)?,
                seconds("breaker_max_cooldown", self.breaker_max_cooldown)?,
            )
            .fail_open(self.fail_open)
            .deny_cache_size(self.deny_cache_size)
            .deny_cache_ttl(seconds("deny_cache_ttl", self.deny_cache_ttl)?);
        if self.in_memory_fallback {
            let instances = NonZeroU32::new(self.instance_count)
                .ok_or_else(|| Error::setting("instance_count", "must be at least 1"))?;
            degradation = degradation.in_memory_fallback(instances);
        }
        Ok(degradation)
    }

    /// The JWT verifier of `jwt:<claim>` keys, when keys are set or verification is off.
    pub fn jwt(&self) -> Result<Option<Jwt>, Error> {
        if self.jwt_keys.is_empty() && self.jwt_verify {
            return Ok(None);
        }
        self.check_field("jwt_algorithms")?;
        let mut jwt = Jwt::builder().verify(self.jwt_verify);
        for key in &self.jwt_keys {
            jwt = jwt.key(key.clone());
        }
        for algorithm in &self.jwt_algorithms {
            jwt = jwt.algorithm(algorithm.clone());
        }
        if let Some(audience) = &self.jwt_audience {
            jwt = jwt.audience(audience.clone());
        }
        if let Some(issuer) = &self.jwt_issuer {
            jwt = jwt.issuer(issuer.clone());
        }
        // The error never quotes a key.
        jwt.build()
            .map(Some)
            .map_err(|e| Error::setting("jwt_keys", e))
    }

    /// The HTTP front without its global limits: client addresses, JWT, header style, shadow
    /// mode. For fronts that add the global limits themselves (the Python adapters give each
    /// a custom key slot).
    pub fn front_builder(&self) -> Result<FrontBuilder, Error> {
        let mut builder = Front::builder()
            .client_ip(self.client_ip()?)
            .header_style(self.headers)
            .shadow_mode(self.shadow_mode);
        if let Some(jwt) = self.jwt()? {
            builder = builder.jwt(jwt);
        }
        Ok(builder)
    }

    /// The limits of each global rule, in order (a rule of several rates gives several).
    pub fn global_limits(&self) -> Result<Vec<Vec<Limit>>, Error> {
        self.global_rules
            .iter()
            .enumerate()
            .map(|(i, rule)| rule.limits_at(&format!("global_rules[{i}]")))
            .collect()
    }

    /// The HTTP front with the global limits.
    pub fn front(&self) -> Result<Front, Error> {
        let mut builder = self.front_builder()?;
        for limit in self.global_limits()?.into_iter().flatten() {
            builder = builder.global(limit);
        }
        builder.build()
    }

    /// The limits of each route of [`routes`](Self::routes), scoped by `front` (to a shared
    /// scope when the route names one). Routes of one scope that give one rule id two
    /// definitions are refused: they would share keys.
    pub fn route_limits(&self, front: &Front) -> Result<Vec<RouteLimits>, Error> {
        let mut out: Vec<RouteLimits> = Vec::with_capacity(self.routes.len());
        for (i, route) in self.routes.iter().enumerate() {
            let field = format!("routes[{i}]");
            let limits = route.limits_at(&field)?;
            let scoped = front
                .route_in(
                    &route.path,
                    route.method.as_deref(),
                    route.scope.as_deref(),
                    limits,
                )
                .map_err(|e| match e {
                    Error::Scope { .. } => Error::setting(format!("{field}.scope"), e),
                    Error::DuplicateRule { .. } => Error::setting(field, e),
                    e => e,
                })?;
            out.push(scoped);
        }
        Ok(out)
    }

    /// The memory store, bounded by `memory_max_keys`, reading `clock` when given.
    pub fn memory_store(&self, clock: Option<Arc<dyn Clock>>) -> Result<MemoryStore, Error> {
        self.check_field("memory_max_keys")?;
        let mut builder = MemoryStore::builder();
        if let Some(max_keys) = self.memory_max_keys {
            builder = builder.max_keys(max_keys);
        }
        if let Some(clock) = clock {
            builder = builder.shared_clock(clock);
        }
        Ok(builder.build()?)
    }

    /// The Redis connection settings (URL, timeouts, pool, TLS files read and checked now), or
    /// `None` without a Redis URL.
    #[cfg(feature = "redis")]
    pub fn redis_config(&self) -> Result<Option<rate_guard_redis::RedisConfig>, Error> {
        let Some(url) = self.redis_url() else {
            return Ok(None);
        };
        self.check_field("redis_pool_size")?;
        tls_pair(self)?;
        let mut redis = rate_guard_redis::RedisConfig::from_url(url)
            .map_err(|e| Error::setting("redis_url", e))?
            .timeout(seconds("redis_timeout", self.redis_timeout)?)
            .connect_timeout(seconds(
                "redis_connect_timeout",
                self.redis_connect_timeout,
            )?)
            .pool_size(self.redis_pool_size);
        if let Some(ca) = &self.redis_tls_ca_file {
            redis = redis.tls_ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.redis_tls_cert_file, &self.redis_tls_key_file) {
            redis = redis.tls_client_cert(cert, key);
        }
        if !self.redis_tls_verify_hostname {
            redis = redis.tls_verify_hostname(false);
        }
        redis
            .check_tls()
            .map_err(|e| Error::setting("redis_tls", e))?;
        Ok(Some(redis))
    }

    /// The store: Redis (connected now, so an unreachable server fails here) when
    /// `redis_url` is set, else the memory store reading `clock`.
    pub async fn store(&self, clock: Option<Arc<dyn Clock>>) -> Result<Arc<dyn Store>, Error> {
        if self.redis_url().is_none() {
            return Ok(Arc::new(self.memory_store(clock)?));
        }
        self.redis_store().await
    }

    #[cfg(feature = "redis")]
    async fn redis_store(&self) -> Result<Arc<dyn Store>, Error> {
        let redis = self.redis_config()?.expect("a Redis URL is set");
        let store = rate_guard_redis::RedisStore::connect(&redis)
            .await
            .map_err(|e| Error::Redis {
                url: redis.url_redacted().to_owned(),
                transient: e.is_transient(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "redis"))]
    // The same signature with or without the feature.
    #[allow(clippy::unused_async)]
    async fn redis_store(&self) -> Result<Arc<dyn Store>, Error> {
        Err(Error::setting(
            "redis_url",
            "this build has no Redis support (feature \"redis\" of rate-guard-http)",
        ))
    }

    /// The decision log: denials sampled per rule at `log_denials_per_second`, identities as
    /// `log_identities` says (hashed with `log_identity_salt`), timed by `clock` or the system's.
    pub fn decision_log(&self, clock: Option<Arc<dyn Clock>>) -> Result<DecisionLog, Error> {
        self.check_field("log_denials_per_second")?;
        DecisionLog::new(
            self.log_denials_per_second,
            self.log_identities,
            self.log_identity_salt.as_deref(),
            clock.unwrap_or_else(|| Arc::new(SystemClock)),
        )
    }

    /// The limiter over `store` with the key prefix and degradation, no rules of its own
    /// (every request brings its rules); a builder, for clocks and event hooks.
    pub fn limiter(&self, store: Arc<dyn Store>) -> Result<LimiterBuilder, Error> {
        self.check_field("key_prefix")?;
        Ok(Limiter::builder()
            .shared_store(store)
            .key_prefix(self.key_prefix.clone())
            .degradation(self.degradation()?))
    }

    /// Everything checked, then the engine: the store (Redis connected now), the limiter and
    /// the HTTP front with the global and route limits.
    ///
    /// ```
    /// use rate_guard_http::Settings;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let settings: Settings = serde_json::from_str(r#"{"global_rules": [{"limit": "100/minute"}]}"#)?;
    /// let engine = settings.build().await?;
    /// assert_eq!(engine.front.global_limits().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn build(&self) -> Result<Engine, Error> {
        self.check()?;
        let front = self.front()?;
        let routes = self.route_limits(&front)?;
        let store = self.store(None).await?;
        Ok(Engine {
            limiter: self.limiter(store)?.build()?,
            front,
            routes,
        })
    }
}
