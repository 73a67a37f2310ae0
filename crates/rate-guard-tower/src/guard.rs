//! [`RateGuard`]: the limits of a service, the store they are counted in, and how requests are
//! keyed; built once, shared by every clone of the [`RateGuardService`](crate::RateGuardService).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::header::HeaderValue;
use http::request::Parts;
use http::Method;
use rate_guard_core::{BoxFuture, Clock, Event, EventHook, Limiter, Store};
use rate_guard_http::{
    DecisionLog, Front, KeySpec, Outcome, Plan, RequestInfo, RouteConfig, RouteLimits, RuleConfig,
};

use crate::error::Error;
use crate::extract::{self, HeaderMapHeaders};
use crate::response::{self, RateHeaders};
use crate::RateGuardConfig;

/// Route limits by template, then by method (`None`: every method).
type Routes = HashMap<String, Vec<(Option<Method>, RouteLimits)>>;

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
    routes: Routes,
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
        config.check()?;
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
        let front = config.front()?;
        let routes = routes(config, &front)?;
        let exempt = config
            .exempt_paths
            .iter()
            .map(|path| (path.clone(), format!("{}/", path.trim_end_matches('/'))))
            .collect();
        let store = match self.store {
            Some(store) => store,
            None => config.store(self.clock.clone()).await?,
        };
        let mut limiter = config.limiter(store)?;
        if let Some(clock) = self.clock.clone() {
            limiter = limiter.clock(clock);
        }
        for hook in self.hooks {
            limiter = limiter.on_event(move |event| hook(event));
        }
        rate_guard_core::metrics::set_enabled(config.metrics_enabled);
        let log = config.decision_log(self.clock.clone())?;
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

/// The route limits of `config` by template, then by method (`None`: every method).
fn routes(config: &RateGuardConfig, front: &Front) -> Result<Routes, Error> {
    let mut methods = Vec::with_capacity(config.routes.len());
    for (i, route) in config.routes.iter().enumerate() {
        let method = route
            .method
            .as_deref()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|e| Error::setting(format!("routes[{i}].method"), e))
            })
            .transpose()?;
        methods.push(method);
    }
    let mut routes = Routes::new();
    let scoped = config.route_limits(front)?;
    for (i, ((route, method), scoped)) in config.routes.iter().zip(methods).zip(scoped).enumerate()
    {
        let same_route = routes.entry(route.path.clone()).or_default();
        if same_route.iter().any(|(m, _)| *m == method) {
            return Err(Error::setting(
                format!("routes[{i}]"),
                format!(
                    "{} {} is listed twice; give it one entry with all its rules",
                    method.as_ref().map_or("*", Method::as_str),
                    route.path
                ),
            ));
        }
        same_route.push((method, scoped));
    }
    Ok(routes)
}

/// The `x-ratelimit-limit` value of every limit a rule of `front` or `routes` can report
/// (its count, or its burst), each made once.
fn limit_values(front: &Front, routes: &Routes) -> Vec<(u32, HeaderValue)> {
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
