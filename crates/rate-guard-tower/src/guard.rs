//! [`RateGuard`]: the limits of a service, the store they are counted in, and how requests are
//! keyed; built once, shared by every clone of the [`RateGuardService`](crate::RateGuardService).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::request::Parts;
use http::Method;
use rate_guard_core::{
    bounds, parse_quotas, Algorithm, BoxFuture, Clock, Degradation, Event, EventHook, Limiter,
    MemoryStore, Quota, Rule, Store, SystemClock,
};
use rate_guard_http::{
    ClientIp, DecisionLog, ForwardedHeader, Front, HeaderStyle, Jwt, KeySpec, Limit, Outcome, Plan,
    RequestInfo, RouteLimits,
};

use crate::config::{redact_url, RateGuardConfig, RouteConfig, RuleConfig};
use crate::error::Error;
use crate::extract::{self, HeaderMapHeaders};
use crate::response::{self, RateHeaders};

/// A value read from a request for key resolution: a user id, a custom key, a route template.
pub type RequestFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The rate limits of a service and everything needed to decide a request on them. Cheap to
/// clone: clones share one limiter, so every clone of the service (one per connection under
/// axum) enforces the same limits.
///
/// ```
/// use rate_guard_tower::{RateGuard, RouteConfig};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let guard = RateGuard::builder()
///     .global("100/minute")
///     .route(RouteConfig::new("/sensitive-data").method("GET").rule("5/minute"))
///     .build()
///     .await?;
///
/// let request = http::Request::get("/anything").body(())?;
/// let (parts, ()) = request.into_parts();
/// let outcome = guard.check(&parts).await.expect("a global rule applies");
/// assert!(outcome.allowed());
/// assert_eq!(outcome.headers()[0], ("x-ratelimit-limit", "100".to_owned()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RateGuard {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    front: Front,
    limiter: Limiter,
    /// Route limits by template, then by method (`None`: every method).
    routes: HashMap<String, Vec<(Option<Method>, RouteLimits)>>,
    /// Exempt paths, and the same with a trailing `/` for their subpaths.
    exempt: Vec<(String, String)>,
    user_fn: Option<RequestFn>,
    key_fn: Option<RequestFn>,
    route_fn: Option<RequestFn>,
    has_global: bool,
    log: DecisionLog,
    /// The `x-ratelimit-limit` value of each limit a rule can report, made once.
    limit_values: Vec<(u32, HeaderValue)>,
}

/// A decided request, as the service acts on it.
pub(crate) enum Answer {
    /// Call the inner service, and add these headers to its response.
    Admitted(RateHeaders),
    /// Do not call it: refuse with this outcome.
    Refused(Box<Outcome>),
}

impl fmt::Debug for RateGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("RateGuard")
            .field("enabled", &i.enabled)
            .field("front", &i.front)
            .field("limiter", &i.limiter)
            .field("routes", &i.routes.keys().collect::<Vec<_>>())
            .field(
                "exempt",
                &i.exempt.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RateGuard {
    /// Starts a guard from the default configuration (no rule, memory store).
    pub fn builder() -> RateGuardBuilder {
        RateGuardBuilder::default()
    }

    /// The guard `config` describes (connecting to Redis when it names one).
    pub async fn from_config(config: RateGuardConfig) -> Result<Self, Error> {
        Self::builder().config(config).build().await
    }

    /// The layer that puts this guard in front of a service.
    #[must_use]
    pub fn layer(&self) -> crate::RateGuardLayer {
        crate::RateGuardLayer::new(self.clone())
    }

    /// The HTTP front: key specs, client addresses, response headers.
    #[must_use]
    pub fn front(&self) -> &Front {
        &self.inner.front
    }

    /// The limiter: the store, its degradation, the key prefix.
    #[must_use]
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// The limits of a request to the route `template` with `method`: the route's limits for
    /// that method, else (for HEAD) for GET, else for every method.
    #[must_use]
    pub fn route_limits(&self, template: &str, method: &Method) -> Option<&RouteLimits> {
        let candidates = self.inner.routes.get(template)?;
        let find = |m: Option<&Method>| {
            candidates
                .iter()
                .find(|(own, _)| own.as_ref() == m)
                .map(|(_, limits)| limits)
        };
        find(Some(method))
            .or_else(|| (method == Method::HEAD).then(|| find(Some(&Method::GET)))?)
            .or_else(|| find(None))
    }

    /// Every rule that applies to the request and the identity it counts for; `None` when the
    /// request is not limited (the guard is off, the path is exempt, or no rule applies).
    /// Never fails: a missing or unusable identity falls back to the client address.
    #[must_use]
    pub fn plan(&self, parts: &Parts) -> Option<Plan> {
        let inner = &*self.inner;
        if !inner.enabled || self.is_exempt(parts.uri.path()) {
            return None;
        }
        let own_template;
        let template = match &inner.route_fn {
            Some(route_fn) => {
                own_template = route_fn(parts);
                own_template.as_deref()
            }
            None => extract::matched_path(parts),
        };
        let route = template.and_then(|t| self.route_limits(t, &parts.method));
        if route.is_none() && !inner.has_global {
            return None;
        }
        let user = inner.user_fn.as_ref().and_then(|f| f(parts));
        let custom = inner.key_fn.as_ref().and_then(|f| f(parts));
        let headers = HeaderMapHeaders(&parts.headers);
        let request = RequestInfo {
            peer: extract::peer(parts),
            headers: &headers,
            user: user.as_deref(),
            custom: custom.as_deref(),
        };
        let plan = inner.front.plan(&request, route);
        (!plan.is_empty()).then_some(plan)
    }

    /// Decides `plan`: one store call for its enforced rules, all-or-nothing. Never fails: a
    /// store that is down gives the configured degraded answer.
    pub async fn decide(&self, plan: &Plan) -> Outcome {
        let outcome = self.inner.front.decide(&self.inner.limiter, plan).await;
        self.inner.log(&outcome, plan);
        outcome
    }

    /// [`plan`](Self::plan) and [`decide`](Self::decide): the outcome of a request, or `None`
    /// when it is not limited.
    pub async fn check(&self, parts: &Parts) -> Option<Outcome> {
        let plan = self.plan(parts)?;
        Some(self.decide(&plan).await)
    }

    /// [`decide`](Self::decide) at once, without a future, when the store answers at once
    /// (the memory store); `None` when it may wait (Redis).
    pub(crate) fn decide_now(&self, plan: &Plan) -> Option<Answer> {
        let outcome = self.inner.front.decide_now(&self.inner.limiter, plan)?;
        self.inner.log(&outcome, plan);
        Some(self.inner.answer(outcome))
    }

    /// [`decide`](Self::decide) as a future that owns what it needs.
    pub(crate) fn decide_owned(&self, plan: Plan) -> BoxFuture<'static, Answer> {
        let inner = Arc::clone(&self.inner);
        // The front's future directly (not through `decide`): one nesting less to move.
        Box::pin(async move {
            let outcome = inner.front.decide(&inner.limiter, &plan).await;
            inner.log(&outcome, &plan);
            inner.answer(outcome)
        })
    }

    fn is_exempt(&self, path: &str) -> bool {
        self.inner
            .exempt
            .iter()
            .any(|(exact, under)| path == exact || path.starts_with(under.as_str()))
    }
}

impl Inner {
    fn log(&self, outcome: &Outcome, plan: &Plan) {
        crate::log::outcome(&self.log, outcome, plan, |rule| self.route_of(rule));
    }

    /// The route limits that hold the rule of id `rule` (a scan: only for what is logged).
    fn route_of(&self, rule: &str) -> Option<&RouteLimits> {
        self.routes
            .values()
            .flatten()
            .map(|(_, limits)| limits)
            .find(|limits| limits.declared_id(rule).is_some())
    }

    fn answer(&self, outcome: Outcome) -> Answer {
        if !outcome.allowed() {
            return Answer::Refused(Box::new(outcome));
        }
        Answer::Admitted(RateHeaders::of(
            &outcome,
            self.front.header_style(),
            |limit| {
                self.limit_values
                    .iter()
                    .find(|(n, _)| *n == limit)
                    .map_or_else(|| response::number(u64::from(limit)), |(_, v)| v.clone())
            },
        ))
    }
}

/// Builds a [`RateGuard`] from a [`RateGuardConfig`] plus what only code can give: functions
/// that read a user or a custom key from the request, a store of your own, a clock, event
/// hooks. Nothing is checked before [`build`](Self::build).
///
/// ```
/// use rate_guard_tower::{RateGuard, RateGuardConfig, RuleConfig};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let guard = RateGuard::builder()
///     // Or `RateGuardConfig::from_env()?`: RATE_GUARD_REDIS_URL, RATE_GUARD_KEY_PREFIX, ...
///     .config(RateGuardConfig::default())
///     .global("100/minute")
///     .global(RuleConfig::new("1000/hour").key("custom"))
///     .key_fn(|parts| parts.headers.get("x-tenant")?.to_str().ok().map(str::to_owned))
///     .with_config(|c| c.fail_open = false)
///     .build()
///     .await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
#[must_use]
pub struct RateGuardBuilder {
    config: RateGuardConfig,
    user_fn: Option<RequestFn>,
    key_fn: Option<RequestFn>,
    route_fn: Option<RequestFn>,
    store: Option<Arc<dyn Store>>,
    clock: Option<Arc<dyn Clock>>,
    hooks: Vec<EventHook>,
}

impl fmt::Debug for RateGuardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateGuardBuilder")
            .field("config", &self.config)
            .field("user_fn", &self.user_fn.is_some())
            .field("key_fn", &self.key_fn.is_some())
            .field("route_fn", &self.route_fn.is_some())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl RateGuardBuilder {
    /// Replaces the whole configuration (rules added before are dropped).
    pub fn config(mut self, config: RateGuardConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes the configuration in place.
    pub fn with_config(mut self, change: impl FnOnce(&mut RateGuardConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Adds a rule applied to every request (`"100/minute"`, or a [`RuleConfig`]).
    pub fn global(mut self, rule: impl Into<RuleConfig>) -> Self {
        self.config.global_rules.push(rule.into());
        self
    }

    /// Adds the limits of a route.
    pub fn route(mut self, route: RouteConfig) -> Self {
        self.config.routes.push(route);
        self
    }

    /// The store (default: Redis when `redis_url` is set, else a memory store).
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The store, shared with others.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Decide at this clock's time instead of the store's (tests, replays).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Calls `hook` on every degradation [`Event`] (breaker and fallback transitions).
    pub fn on_event(mut self, hook: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Reads the authenticated user's id, for rules keyed `user` (typically from an
    /// extension an authentication layer inserted). `None` counts by client address.
    pub fn user_fn(
        mut self,
        user_fn: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.user_fn = Some(Arc::new(user_fn));
        self
    }

    /// Computes the key of rules keyed `custom` (Python's `key_func`). `None` counts by
    /// client address.
    pub fn key_fn(
        mut self,
        key_fn: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key_fn = Some(Arc::new(key_fn));
        self
    }

    /// Finds the route template of a request (default: axum's `MatchedPath`). For services
    /// without path parameters (tonic: `/package.Service/Method`) the path itself will do.
    pub fn route_fn(
        mut self,
        route_fn: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.route_fn = Some(Arc::new(route_fn));
        self
    }

    /// The guard, or the first thing wrong with its configuration; connects to Redis when
    /// `redis_url` is set and no store was given, so an unreachable server fails here.
    pub async fn build(self) -> Result<RateGuard, Error> {
        let config = &self.config;
        check_ranges(config)?;
        let front = front(config)?;
        let uses = |spec: &KeySpec| {
            config
                .global_rules
                .iter()
                .chain(config.routes.iter().flat_map(|r| &r.rules))
                .any(|r| r.key.parse::<KeySpec>().is_ok_and(|k| k == *spec))
        };
        if uses(&KeySpec::Custom) && self.key_fn.is_none() {
            return Err(Error::setting(
                "key",
                "rules keyed \"custom\" need RateGuardBuilder::key_fn",
            ));
        }
        if uses(&KeySpec::User) && self.user_fn.is_none() {
            return Err(Error::setting(
                "key",
                "rules keyed \"user\" need RateGuardBuilder::user_fn",
            ));
        }
        let mut routes: HashMap<String, Vec<(Option<Method>, RouteLimits)>> = HashMap::new();
        for (i, route) in config.routes.iter().enumerate() {
            let field = format!("routes[{i}]");
            let method = route
                .method
                .as_deref()
                .map(|m| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|e| Error::setting(format!("{field}.method"), e))
                })
                .transpose()?;
            let mut limits = Vec::new();
            for (j, rule) in route.rules.iter().enumerate() {
                limits.extend(limits_of(rule, &format!("{field}.rules[{j}]"))?);
            }
            if limits.is_empty() {
                return Err(Error::setting(field, "a route needs at least one rule"));
            }
            let scoped = front.route(&route.path, method.as_ref().map(Method::as_str), limits)?;
            let same_route = routes.entry(route.path.clone()).or_default();
            if same_route.iter().any(|(m, _)| *m == method) {
                return Err(Error::setting(
                    field,
                    format!(
                        "{} {} is listed twice; give it one entry with all its rules",
                        method.as_ref().map_or("*", Method::as_str),
                        route.path
                    ),
                ));
            }
            same_route.push((method, scoped));
        }
        let mut exempt = Vec::with_capacity(config.exempt_paths.len());
        for (i, path) in config.exempt_paths.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(Error::setting(
                    format!("exempt_paths[{i}]"),
                    "an exempt path starts with '/'",
                ));
            }
            exempt.push((path.clone(), format!("{}/", path.trim_end_matches('/'))));
        }
        let degradation = degradation(config)?;
        let store = match self.store {
            Some(store) => store,
            None => store(config, self.clock.clone()).await?,
        };
        let mut limiter = Limiter::builder()
            // No rules of its own: every request brings its rules.
            .shared_store(store)
            .key_prefix(config.key_prefix.clone())
            .degradation(degradation);
        if let Some(clock) = self.clock.clone() {
            limiter = limiter.clock(clock);
        }
        for hook in self.hooks {
            limiter = limiter.on_event(move |event| hook(event));
        }
        let log = decision_log(config, self.clock.clone())?;
        Ok(RateGuard {
            inner: Arc::new(Inner {
                // Before `front` and `routes` move in.
                has_global: !front.global_limits().is_empty(),
                limit_values: limit_values(&front, &routes),
                enabled: config.enabled,
                limiter: limiter.build()?,
                front,
                routes,
                exempt,
                user_fn: self.user_fn,
                key_fn: self.key_fn,
                route_fn: self.route_fn,
                log,
            }),
        })
    }
}

/// The decision log of `config`, timed by `clock` (the limiter's) or the system's.
fn decision_log(
    config: &RateGuardConfig,
    clock: Option<Arc<dyn Clock>>,
) -> Result<DecisionLog, Error> {
    Ok(DecisionLog::new(
        config.log_denials_per_second,
        config.log_identities.parse()?,
        config.log_identity_salt.as_deref(),
        clock.unwrap_or_else(|| Arc::new(SystemClock)),
    )?)
}

/// The HTTP front of `config`: global limits, client addresses, JWT, response headers.
fn front(config: &RateGuardConfig) -> Result<Front, Error> {
    let header: ForwardedHeader = config
        .forwarded_header
        .parse()
        .map_err(|e| Error::setting("forwarded_header", e))?;
    let client_ip = ClientIp::new(&config.trusted_proxies, header, config.ipv6_prefix)
        .map_err(|e| Error::setting("trusted_proxies / ipv6_prefix", e))?;
    let style: HeaderStyle = config
        .headers
        .parse()
        .map_err(|e| Error::setting("headers", e))?;
    let mut builder = Front::builder()
        .client_ip(client_ip)
        .header_style(style)
        .shadow_mode(config.shadow_mode);
    if !config.jwt_keys.is_empty() || !config.jwt_verify {
        let mut jwt = Jwt::builder().verify(config.jwt_verify);
        for key in &config.jwt_keys {
            jwt = jwt.key(key.clone());
        }
        for algorithm in &config.jwt_algorithms {
            jwt = jwt.algorithm(algorithm.clone());
        }
        if let Some(audience) = &config.jwt_audience {
            jwt = jwt.audience(audience.clone());
        }
        if let Some(issuer) = &config.jwt_issuer {
            jwt = jwt.issuer(issuer.clone());
        }
        builder = builder.jwt(jwt.build().map_err(|e| Error::setting("jwt_keys", e))?);
    }
    for (i, rule) in config.global_rules.iter().enumerate() {
        for limit in limits_of(rule, &format!("global_rules[{i}]"))? {
            builder = builder.global(limit);
        }
    }
    Ok(builder.build()?)
}

/// The `x-ratelimit-limit` value of every limit a rule of `front` or `routes` can report
/// (its count, or its burst), each made once.
fn limit_values(
    front: &Front,
    routes: &HashMap<String, Vec<(Option<Method>, RouteLimits)>>,
) -> Vec<(u32, HeaderValue)> {
    let mut values: Vec<(u32, HeaderValue)> = Vec::new();
    let all_limits = front
        .global_limits()
        .iter()
        .chain(routes.values().flatten().flat_map(|(_, r)| r.limits()));
    for limit in all_limits {
        for n in [limit.rule().count(), limit.rule().capacity()] {
            if !values.iter().any(|(m, _)| *m == n) {
                values.push((n, response::number(u64::from(n))));
            }
        }
    }
    values
}

/// The limits of one configured rule: one per rate of its rate string.
fn limits_of(rule: &RuleConfig, field: &str) -> Result<Vec<Limit>, Error> {
    let algorithm: Algorithm = rule
        .algorithm
        .parse()
        .map_err(|e| Error::setting(format!("{field}.algorithm"), e))?;
    let key: KeySpec = rule
        .key
        .parse()
        .map_err(|e| Error::setting(format!("{field}.key"), e))?;
    let cost = NonZeroU32::new(rule.cost)
        .ok_or_else(|| Error::setting(format!("{field}.cost"), "must be at least 1"))?;
    let quotas =
        parse_quotas(&rule.limit).map_err(|e| Error::setting(format!("{field}.limit"), e))?;
    let several = quotas.len() > 1;
    let mut limits: Vec<Limit> = Vec::with_capacity(quotas.len());
    for quota in quotas {
        let mut builder = Rule::builder(quota).algorithm(algorithm);
        if let Some(burst) = rule.burst {
            builder = builder.burst(burst);
        }
        if let Some(name) = &rule.name {
            builder = builder.name(if several {
                rate_id(name, quota)
            } else {
                name.clone()
            });
        }
        if let Some(fail_open) = rule.fail_open {
            builder = builder.fail_open(fail_open);
        }
        let built = builder.build().map_err(|e| Error::setting(field, e))?;
        // "10/minute; 10 per minute" is one rule, counted once.
        if limits.iter().all(|l| *l.rule() != built) {
            limits.push(
                Limit::new(built)
                    .key(key.clone())
                    .cost(cost)
                    .shadow(rule.shadow),
            );
        }
    }
    Ok(limits)
}

/// The id of one rate of a named limit with several: `api.10.1s`, `api.100.60s`. The Python
/// bindings name them the same way (`rate-guard-py`, `rules.rs`), which keeps the keys equal.
fn rate_id(name: &str, quota: Quota) -> String {
    let ms = quota.period().as_millis();
    if ms.is_multiple_of(1000) {
        format!("{name}.{}.{}s", quota.count(), ms / 1000)
    } else {
        format!("{name}.{}.{ms}ms", quota.count())
    }
}

/// Seconds from the configuration as a [`Duration`], within the setting's documented range.
fn seconds(field: &str, value: f64) -> Result<Duration, Error> {
    bounds::check_seconds(field, value).map_err(|e| Error::setting(field, e))
}

/// Every integer setting against its documented range ([`bounds`]), before anything is built.
fn check_ranges(config: &RateGuardConfig) -> Result<(), Error> {
    let ints = [
        ("redis_pool_size", Some(config.redis_pool_size as u64)),
        ("instance_count", Some(u64::from(config.instance_count))),
        ("deny_cache_size", Some(config.deny_cache_size as u64)),
        (
            "breaker_threshold",
            Some(u64::from(config.breaker_threshold)),
        ),
        ("memory_max_keys", config.memory_max_keys.map(|n| n as u64)),
        ("ipv6_prefix", Some(u64::from(config.ipv6_prefix))),
    ];
    for (field, value) in ints {
        if let Some(value) = value {
            bounds::check_int(field, i128::from(value)).map_err(|e| Error::setting(field, e))?;
        }
    }
    // Checked whatever the store, so that a bad value never waits for the day Redis is set.
    let durations = [
        ("redis_timeout", config.redis_timeout),
        ("redis_connect_timeout", config.redis_connect_timeout),
        ("deny_cache_ttl", config.deny_cache_ttl),
        ("breaker_cooldown", config.breaker_cooldown),
        ("breaker_max_cooldown", config.breaker_max_cooldown),
    ];
    for (field, value) in durations {
        seconds(field, value)?;
    }
    Ok(())
}

fn degradation(config: &RateGuardConfig) -> Result<Degradation, Error> {
    let mut degradation = Degradation::default()
        .failure_threshold(config.breaker_threshold)
        .cooldown(
            seconds("breaker_cooldown", config.breaker_cooldown)?,
            seconds("breaker_max_cooldown", config.breaker_max_cooldown)?,
        )
        .fail_open(config.fail_open)
        .deny_cache_size(config.deny_cache_size)
        .deny_cache_ttl(seconds("deny_cache_ttl", config.deny_cache_ttl)?);
    rate_guard_core::metrics::set_enabled(config.metrics_enabled);
    if config.in_memory_fallback {
        let instances = NonZeroU32::new(config.instance_count)
            .ok_or_else(|| Error::setting("instance_count", "must be at least 1"))?;
        degradation = degradation.in_memory_fallback(instances);
    }
    Ok(degradation)
}

/// The store `config` names: Redis for a non-empty `redis_url`, else memory.
async fn store(
    config: &RateGuardConfig,
    clock: Option<Arc<dyn Clock>>,
) -> Result<Arc<dyn Store>, Error> {
    if let Some(url) = config.redis_url.as_deref().filter(|url| !url.is_empty()) {
        return redis_store(config, url).await;
    }
    let mut builder = MemoryStore::builder();
    if let Some(max_keys) = config.memory_max_keys {
        if max_keys == 0 {
            return Err(Error::setting("memory_max_keys", "must be at least 1"));
        }
        builder = builder.max_keys(max_keys);
    }
    if let Some(clock) = clock {
        builder = builder.shared_clock(clock);
    }
    Ok(Arc::new(builder.build()?))
}

#[cfg(feature = "redis")]
async fn redis_store(config: &RateGuardConfig, url: &str) -> Result<Arc<dyn Store>, Error> {
    use rate_guard_redis::{RedisConfig, RedisStore};

    let failed = |e: rate_guard_redis::ConnectionError| Error::Redis {
        url: redact_url(url),
        transient: e.is_transient(),
        reason: e.to_string(),
    };
    if config.redis_pool_size == 0 {
        return Err(Error::setting("redis_pool_size", "must be at least 1"));
    }
    let redis = RedisConfig::from_url(url)
        .map_err(failed)?
        .timeout(seconds("redis_timeout", config.redis_timeout)?)
        .connect_timeout(seconds(
            "redis_connect_timeout",
            config.redis_connect_timeout,
        )?)
        .pool_size(config.redis_pool_size);
    let redis = redis_tls(config, redis)?;
    Ok(Arc::new(RedisStore::connect(&redis).await.map_err(failed)?))
}

/// `redis` with the `redis_tls_*` settings of `config`.
#[cfg(feature = "redis")]
fn redis_tls(
    config: &RateGuardConfig,
    mut redis: rate_guard_redis::RedisConfig,
) -> Result<rate_guard_redis::RedisConfig, Error> {
    if let Some(ca) = &config.redis_tls_ca_file {
        redis = redis.tls_ca_file(ca);
    }
    match (&config.redis_tls_cert_file, &config.redis_tls_key_file) {
        (Some(cert), Some(key)) => redis = redis.tls_client_cert(cert, key),
        (None, None) => {}
        (Some(_), None) => {
            return Err(Error::setting(
                "redis_tls_cert_file",
                "needs redis_tls_key_file",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::setting(
                "redis_tls_key_file",
                "needs redis_tls_cert_file",
            ))
        }
    }
    Ok(redis.tls_verify_hostname(config.redis_tls_verify_hostname))
}

#[cfg(not(feature = "redis"))]
async fn redis_store(_config: &RateGuardConfig, url: &str) -> Result<Arc<dyn Store>, Error> {
    Err(Error::setting(
        "redis_url",
        format!(
            "{}: this build of rate-guard-tower has no Redis support (feature \"redis\")",
            redact_url(url)
        ),
    ))
}
