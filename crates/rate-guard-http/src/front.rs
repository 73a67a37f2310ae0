//! [`Front`]: the configured limits of a service, turned into a [`Plan`] per request and
//! decided in one store call ([`Front::decide`] says how).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use std::num::NonZeroU32;

use rate_guard_core::{bounds, Action, Hit, Limiter, Rule, Verdict, MAX_CHECKS};
use smallvec::SmallVec;

use crate::client_ip::{ClientIp, Peer};
use crate::error::Error;
use crate::headers::{trim_ows, Headers};
use crate::identity;
use crate::jwt::{claim_value, Claims, Jwt};
use crate::key_spec::KeySpec;
use crate::limit::Limit;
use crate::outcome::Outcome;
use crate::plan::{Plan, PlanItem};
use crate::response::HeaderStyle;
use crate::route::{reserved_prefix, RouteLimits};

/// What a request brings to key resolution: its peer, its headers, and the identities the
/// application resolved (an authenticated user, a `key_func` value).
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a, H: ?Sized> {
    /// The remote end of the connection.
    pub peer: Peer<'a>,
    /// The request's header fields.
    pub headers: &'a H,
    /// The authenticated user's id, for `user` specs.
    pub user: Option<&'a str>,
    /// The application's own key, for `custom` specs.
    pub custom: Option<&'a str>,
}

impl<'a, H: Headers + ?Sized> RequestInfo<'a, H> {
    /// A request from `peer` with `headers`, no user and no custom key.
    pub fn new(peer: Peer<'a>, headers: &'a H) -> Self {
        Self {
            peer,
            headers,
            user: None,
            custom: None,
        }
    }
}

/// The limits of a service and how requests are keyed and answered. Cheap to clone; clones
/// share everything. See [`Front::decide`] for how a request is decided.
///
/// ```
/// use rate_guard_core::{Limiter, ManualClock, Quota, Rule, Timestamp};
/// use rate_guard_http::{Front, Limit, Peer, RequestInfo};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let rule = |s: &str| Rule::builder(s.parse::<Quota>().unwrap()).build().unwrap();
/// let front = Front::builder().global(Limit::new(rule("100/minute"))).build()?;
/// let login = front.route("/login", Some("POST"), [Limit::new(rule("2/minute"))])?;
/// let limiter = Limiter::builder().rule(rule("1/s")).clock(ManualClock::new(Timestamp::from_secs(1))).build()?;
///
/// let headers: [(&[u8], &[u8]); 0] = [];
/// let request = RequestInfo::new(Peer::parse(Some("203.0.113.9")), &headers[..]);
/// for _ in 0..2 {
///     assert!(front.decide(&limiter, &front.plan(&request, Some(&login))).await.allowed());
/// }
/// let third = front.decide(&limiter, &front.plan(&request, Some(&login))).await;
/// assert_eq!(third.status(), 429);
/// assert_eq!(third.body(), r#"{"detail": "Rate limit exceeded: 2 per 1 minute"}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Front {
    inner: Arc<FrontInner>,
}

struct FrontInner {
    global: Vec<Limit>,
    client_ip: ClientIp,
    jwt: Option<Jwt>,
    header_style: HeaderStyle,
    shadow_mode: bool,
    /// The rule of each scoped id that a shared route of this front declared (at most
    /// [`MAX_SCOPED_IDS`]): one scoped id, one definition, whichever route declares it.
    scoped: Mutex<HashMap<String, Rule>>,
}

/// How many scoped rule ids a front remembers to refuse a second definition of one
/// (a limit chosen per request may name a new one per distinct rate: the table stays bounded,
/// and an id seen once the table is full is not checked).
const MAX_SCOPED_IDS: usize = 4096;

impl fmt::Debug for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Front")
            .field("global", &i.global)
            .field("client_ip", &i.client_ip)
            .field("jwt", &i.jwt)
            .field("header_style", &i.header_style)
            .field("shadow_mode", &i.shadow_mode)
            .finish()
    }
}

/// Builds a [`Front`]; see [`Front::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct FrontBuilder {
    global: Vec<Limit>,
    client_ip: Option<ClientIp>,
    jwt: Option<Jwt>,
    header_style: HeaderStyle,
    shadow_mode: bool,
}

impl FrontBuilder {
    /// Adds a limit applied to every request.
    pub fn global(mut self, limit: Limit) -> Self {
        self.global.push(limit);
        self
    }

    /// How client addresses are found (default: the peer, no trusted proxy, IPv6 by /64).
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = Some(client_ip);
        self
    }

    /// How bearer tokens are checked, for `jwt:` key specs (default: none, and a `jwt:` spec
    /// is a configuration error).
    pub fn jwt(mut self, jwt: Jwt) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Which rate limit headers responses carry (default: legacy `X-RateLimit-*`).
    pub fn header_style(mut self, style: HeaderStyle) -> Self {
        self.header_style = style;
        self
    }

    /// Every rule observes only: counts and reports, never blocks.
    pub fn shadow_mode(mut self, shadow_mode: bool) -> Self {
        self.shadow_mode = shadow_mode;
        self
    }

    /// The front, or what is wrong with its configuration.
    pub fn build(self) -> Result<Front, Error> {
        for (i, limit) in self.global.iter().enumerate() {
            let id = limit.rule.id();
            if let Some(prefix) = reserved_prefix(id) {
                return Err(Error::ReservedRuleName {
                    id: id.to_owned(),
                    prefix,
                });
            }
            // One id, one definition: equal rules are one bucket (counted once per identity).
            if let Some(first) = self.global[..i]
                .iter()
                .find(|l| l.rule.id() == id && l.rule != limit.rule)
            {
                return Err(Error::duplicate(&first.rule, &limit.rule));
            }
        }
        check_count(self.global.len())?;
        let front = Front {
            inner: Arc::new(FrontInner {
                client_ip: self.client_ip.unwrap_or_default(),
                jwt: self.jwt,
                header_style: self.header_style,
                shadow_mode: self.shadow_mode,
                global: self.global,
                scoped: Mutex::new(HashMap::new()),
            }),
        };
        front.check_jwt(&front.inner.global)?;
        Ok(front)
    }
}

fn check_count(count: usize) -> Result<(), Error> {
    if count > MAX_CHECKS {
        return Err(Error::TooManyRules {
            count,
            max: MAX_CHECKS,
        });
    }
    Ok(())
}

impl Front {
    /// Starts a front with no limits: the peer is the client, legacy headers, enforced.
    pub fn builder() -> FrontBuilder {
        FrontBuilder::default()
    }

    /// The limits applied to every request.
    #[must_use]
    pub fn global_limits(&self) -> &[Limit] {
        &self.inner.global
    }

    /// How client addresses are found.
    #[must_use]
    pub fn client_ip(&self) -> &ClientIp {
        &self.inner.client_ip
    }

    /// Which rate limit headers responses carry.
    #[must_use]
    pub fn header_style(&self) -> HeaderStyle {
        self.inner.header_style
    }

    /// The limits of one route, scoped to its `template` (and `method`, when given): they
    /// count apart from the same rules globally and on other routes (see [`crate::route`]).
    pub fn route(
        &self,
        template: &str,
        method: Option<&str>,
        limits: impl IntoIterator<Item = Limit>,
    ) -> Result<RouteLimits, Error> {
        self.route_in(template, method, None, limits)
    }

    /// The limits of one route that count in the named shared `scope`: every route declaring
    /// the scope and a rule shares one quota of that rule, whatever its template and method
    /// (and in every language; see [`crate::route`] for the key schema). `template` and
    /// `method` still name the route in metrics and logs. A scope name is 1 to 64 characters
    /// without control characters.
    ///
    /// ```
    /// use rate_guard_core::{Quota, Rule};
    /// use rate_guard_http::{Front, Limit};
    ///
    /// let rule = Rule::builder("10/minute".parse::<Quota>()?).build()?;
    /// let front = Front::builder().build()?;
    /// let upload = front.shared_route("/upload", Some("POST"), "uploads", [Limit::new(rule.clone())])?;
    /// let bulk = front.shared_route("/bulk/{id}", None, "uploads", [Limit::new(rule)])?;
    /// assert_eq!(upload.limits()[0].rule().id(), bulk.limits()[0].rule().id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared_route(
        &self,
        template: &str,
        method: Option<&str>,
        scope: &str,
        limits: impl IntoIterator<Item = Limit>,
    ) -> Result<RouteLimits, Error> {
        self.route_in(template, method, Some(scope), limits)
    }

    /// [`route`](Self::route) or [`shared_route`](Self::shared_route), by `scope`.
    pub fn route_in(
        &self,
        template: &str,
        method: Option<&str>,
        scope: Option<&str>,
        limits: impl IntoIterator<Item = Limit>,
    ) -> Result<RouteLimits, Error> {
        let route = RouteLimits::new(template, method, scope, limits)?;
        check_count(self.inner.global.len() + route.limits().len())?;
        self.check_jwt(route.limits())?;
        if scope.is_some() {
            self.check_scoped(route.limits())?;
        }
        Ok(route)
    }

    /// Refuses a shared route whose rule of some scoped id differs from the rule another
    /// shared route of this front declared under that id (the same scope and rule name with
    /// another rate, algorithm or burst): the two would share keys. Costs may differ.
    fn check_scoped(&self, limits: &[Limit]) -> Result<(), Error> {
        let mut known = self
            .inner
            .scoped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for limit in limits {
            match known.get(limit.rule.id()) {
                Some(first) if *first != limit.rule => {
                    return Err(Error::duplicate(first, &limit.rule));
                }
                None if known.len() < MAX_SCOPED_IDS => {
                    known.insert(limit.rule.id().to_owned(), limit.rule.clone());
                }
                Some(_) | None => {}
            }
        }
        Ok(())
    }

    fn check_jwt(&self, limits: &[Limit]) -> Result<(), Error> {
        match limits.iter().find(|l| l.key.needs_jwt()) {
            Some(limit) if self.inner.jwt.is_none() => Err(Error::Jwt(format!(
                "key spec {} needs JWT keys to verify tokens with (or verification turned off)",
                limit.key
            ))),
            _ => Ok(()),
        }
    }

    /// Resolves every applicable rule's identity for `request`: the global limits, then the
    /// route's. Never fails: a missing or unusable identity falls back to the client address.
    /// Limits of one rule that resolve to one identity are one bucket, planned once.
    #[must_use]
    pub fn plan<H: Headers + ?Sized>(
        &self,
        request: &RequestInfo<'_, H>,
        route: Option<&RouteLimits>,
    ) -> Plan {
        self.plan_with_keys(request, route, &[])
    }

    /// [`plan`](Self::plan) for a request whose `custom` rules are keyed by several functions:
    /// a limit of custom slot `n >= 1` ([`Limit::custom_slot`]) counts by `extra_keys[n - 1]`
    /// (missing, `None` or empty: the client address), slot 0 by [`RequestInfo::custom`].
    #[must_use]
    pub fn plan_with_keys<H: Headers + ?Sized>(
        &self,
        request: &RequestInfo<'_, H>,
        route: Option<&RouteLimits>,
        extra_keys: &[Option<&str>],
    ) -> Plan {
        self.plan_costed(request, route, extra_keys, &[])
    }

    /// [`plan_with_keys`](Self::plan_with_keys) with this request's own costs for the route's
    /// limits (a batch endpoint weighing by item count): `costs` is empty (every limit's
    /// declared cost), or holds one entry per limit of `route`, in
    /// [`RouteLimits::limits`] order, `Some(cost)` overriding that limit's cost for this
    /// request and `None` keeping it. Global limits keep their costs. A cost is from 1 to
    /// `u32::MAX` (the `cost` range of [`bounds::INTS`]); as ever, one above what a rule can
    /// admit is denied with no retry time.
    ///
    /// # Errors
    ///
    /// [`Error::Costs`] when `costs` is neither empty nor as long as the route's limits, or
    /// holds a cost of 0.
    ///
    /// ```
    /// use rate_guard_core::{Quota, Rule};
    /// use rate_guard_http::{Front, Limit, Peer, RequestInfo};
    ///
    /// let rule = Rule::builder("100/minute".parse::<Quota>()?).build()?;
    /// let front = Front::builder().build()?;
    /// let batch = front.route("/batch", None, [Limit::new(rule)])?;
    /// let headers: [(&[u8], &[u8]); 0] = [];
    /// let request = RequestInfo::new(Peer::parse(Some("203.0.113.9")), &headers[..]);
    /// let plan = front.plan_with_costs(&request, Some(&batch), &[], &[Some(25)])?;
    /// assert_eq!(plan.items()[0].cost().get(), 25);
    /// assert!(front.plan_with_costs(&request, Some(&batch), &[], &[Some(0)]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plan_with_costs<H: Headers + ?Sized>(
        &self,
        request: &RequestInfo<'_, H>,
        route: Option<&RouteLimits>,
        extra_keys: &[Option<&str>],
        costs: &[Option<u32>],
    ) -> Result<Plan, Error> {
        if costs.is_empty() {
            return Ok(self.plan_costed(request, route, extra_keys, &[]));
        }
        let limits = route.map_or(0, |r| r.limits().len());
        if costs.len() != limits {
            return Err(Error::Costs(format!(
                "{} given, but the route has {limits} limits (one cost or None per limit, in \
                 the route's order)",
                costs.len()
            )));
        }
        let mut checked: SmallVec<[Option<NonZeroU32>; 4]> = SmallVec::new();
        for (i, cost) in costs.iter().enumerate() {
            checked.push(match cost {
                None => None,
                Some(cost) => {
                    let checked = bounds::check_int("cost", i128::from(*cost))
                        .map_err(|e| Error::Costs(format!("costs[{i}]: {e}")))?;
                    // In range: from 1 to u32::MAX.
                    u32::try_from(checked).ok().and_then(NonZeroU32::new)
                }
            });
        }
        Ok(self.plan_costed(request, route, extra_keys, &checked))
    }

    /// The plan, `costs` (empty, or one per route limit) overriding route limits' costs.
    fn plan_costed<H: Headers + ?Sized>(
        &self,
        request: &RequestInfo<'_, H>,
        route: Option<&RouteLimits>,
        extra_keys: &[Option<&str>],
        costs: &[Option<NonZeroU32>],
    ) -> Plan {
        let inner = &*self.inner;
        let route_limits = route.map_or(&[][..], RouteLimits::limits);
        let resolver = Resolver {
            front: inner,
            request,
            extra_keys,
            shared_ip: inner.global.len() + route_limits.len() > 1,
            ip: OnceCell::new(),
            claims: OnceCell::new(),
        };
        let mut items: SmallVec<[PlanItem; 2]> = SmallVec::new();
        let route_costs = route_limits
            .iter()
            .enumerate()
            .map(|(i, limit)| costs.get(i).copied().flatten().unwrap_or(limit.cost));
        let global_costs = inner.global.iter().map(|limit| limit.cost);
        for (limit, cost) in inner
            .global
            .iter()
            .chain(route_limits)
            .zip(global_costs.chain(route_costs))
        {
            let item = PlanItem {
                rule: limit.rule.clone(),
                identity: resolver.identity(&limit.key, limit.custom_slot),
                cost,
                shadow: limit.shadow || inner.shadow_mode,
                counters: limit.counters.clone(),
            };
            // Two limits of one rule that land on one identity (`user` and `header:` specs
            // both falling back to the address) are one bucket: counted once, at the larger
            // cost, enforced if either is.
            match items
                .iter_mut()
                .find(|i| i.rule.id() == item.rule.id() && i.identity == item.identity)
            {
                Some(same) => {
                    same.cost = same.cost.max(item.cost);
                    same.shadow &= item.shadow;
                }
                None => items.push(item),
            }
        }
        Plan { items }
    }

    /// [`decide`](Self::decide) without a future when the limiter's store answers at once
    /// (the memory store, [`Limiter::decide_now`]); `None` when it may wait (Redis).
    #[must_use]
    pub fn decide_now(&self, limiter: &Limiter, plan: &Plan) -> Option<Outcome> {
        let enforced = hits(plan, false);
        let mut error = None;
        let verdict = if enforced.is_empty() {
            None
        } else {
            match limiter.decide_now(&enforced, Action::Hit)? {
                Ok(verdict) => Some(verdict),
                Err(e) => {
                    error = Some(e);
                    None
                }
            }
        };
        let failed_closed = error.is_some() && fails_closed(&enforced);
        let admitted = !failed_closed && verdict.as_ref().is_none_or(Verdict::allowed);
        let has_shadow = plan.items.iter().any(|item| item.shadow);
        let shadow = if admitted && has_shadow {
            let shadow_hits = hits(plan, true);
            // A store that answered the enforced rules at once answers these at once too.
            match limiter.decide_now(&shadow_hits, Action::Shadow)? {
                Ok(verdict) => Some(verdict),
                Err(e) => {
                    error.get_or_insert(e);
                    None
                }
            }
        } else {
            None
        };
        Some(Outcome::new(
            self.inner.header_style,
            plan,
            verdict,
            failed_closed,
            shadow,
            error,
        ))
    }

    /// Decides `plan` on `limiter`.
    ///
    /// **One** [`Limiter::decide`] call in [`Action::Hit`] covers every enforced rule of the
    /// plan (global and route together), so the core's all-or-nothing semantics hold across
    /// them: when a route rule denies, no global rule consumes, and the other way round.
    ///
    /// Shadow rules (a limit's own `shadow`, or every rule under `shadow_mode`) count and
    /// report but never block. They are decided in a **second** call, made only when the plan
    /// has shadow rules and the enforced call admitted the request (or there was none): a
    /// request blocked anyway is one a shadow rule would not have counted either, had it been
    /// enforced. Shadow rules are decided together, all-or-nothing among themselves; the
    /// enforced rules have consumed by then, the one way shadow counting differs from
    /// enforcement.
    ///
    /// Nothing fails: the limiter answers a failing store with a degraded verdict (fallback,
    /// fail open, fail closed; see [`rate_guard_core::degrade`]), reported as is (a
    /// fail-closed denial is a 503). A request no store can decide is carried as
    /// [`Outcome::error`] for logging and allowed, unless one of its enforced rules fails
    /// closed (`fail_open = false`): then it is a 503.
    pub async fn decide(&self, limiter: &Limiter, plan: &Plan) -> Outcome {
        let enforced = hits(plan, false);
        let mut error = None;
        let verdict = if enforced.is_empty() {
            None
        } else {
            match limiter.decide(&enforced, Action::Hit).await {
                Ok(verdict) => Some(verdict),
                Err(e) => {
                    error = Some(e);
                    None
                }
            }
        };
        let failed_closed = error.is_some() && fails_closed(&enforced);
        let admitted = !failed_closed && verdict.as_ref().is_none_or(Verdict::allowed);
        let has_shadow = plan.items.iter().any(|item| item.shadow);
        let shadow = if admitted && has_shadow {
            let shadow_hits = hits(plan, true);
            // Not a request of its own in the metrics: only its would-be denials count.
            match limiter.decide(&shadow_hits, Action::Shadow).await {
                Ok(verdict) => Some(verdict),
                Err(e) => {
                    error.get_or_insert(e);
                    None
                }
            }
        } else {
            None
        };
        Outcome::new(
            self.inner.header_style,
            plan,
            verdict,
            failed_closed,
            shadow,
            error,
        )
    }
}

/// The hits of `plan`'s enforced (or shadow) rules.
fn hits(plan: &Plan, shadow: bool) -> SmallVec<[Hit<'_>; 4]> {
    plan.items
        .iter()
        .filter(|item| item.shadow == shadow)
        .map(|item| Hit::new(&item.rule, &item.identity, item.cost).counted_in(&item.counters))
        .collect()
}

/// Whether a request that no store could decide is refused: one of its rules fails closed.
fn fails_closed(enforced: &[Hit<'_>]) -> bool {
    enforced
        .iter()
        .any(|hit| hit.rule.fail_open() == Some(false))
}

/// Resolves identities for one request, computing the client address and the token's claims
/// at most once each, and only when a rule needs them.
struct Resolver<'r, 'a, H: ?Sized> {
    front: &'r FrontInner,
    request: &'r RequestInfo<'a, H>,
    extra_keys: &'r [Option<&'r str>],
    /// Whether several limits may need the client address (else it is not kept).
    shared_ip: bool,
    ip: OnceCell<String>,
    claims: OnceCell<Option<Claims>>,
}

impl<H: Headers + ?Sized> Resolver<'_, '_, H> {
    fn identity(&self, key: &KeySpec, custom_slot: usize) -> String {
        let resolved = match key {
            KeySpec::Ip => None,
            KeySpec::Global => Some(identity::GLOBAL.to_owned()),
            KeySpec::User => non_empty(self.request.user).map(identity::user),
            KeySpec::Custom => non_empty(match custom_slot {
                0 => self.request.custom,
                n => self.extra_keys.get(n - 1).copied().flatten(),
            })
            .map(identity::custom),
            KeySpec::Header(name) => self
                .request
                .headers
                .first_value(name)
                .map(trim_ows)
                .filter(|v| !v.is_empty())
                .map(|v| identity::header(name, v)),
            KeySpec::Jwt(claim) => self
                .claims()
                .and_then(|claims| claim_value(claims, claim))
                .map(|value| identity::jwt(claim, &value)),
        };
        resolved.unwrap_or_else(|| {
            if self.shared_ip {
                self.ip.get_or_init(|| self.client_ip()).clone()
            } else {
                self.client_ip()
            }
        })
    }

    fn client_ip(&self) -> String {
        let ips = &self.front.client_ip;
        ips.identity(&ips.resolve(self.request.peer, self.request.headers))
    }

    fn claims(&self) -> Option<&Claims> {
        self.claims
            .get_or_init(|| {
                self.front
                    .jwt
                    .as_ref()
                    .and_then(|jwt| jwt.claims(self.request.headers))
            })
            .as_ref()
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}
