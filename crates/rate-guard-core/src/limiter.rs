//! [`Limiter`]: rules, a store and a clock, tied together.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use smallvec::SmallVec;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::decision::{Decision, Source, Verdict};
use crate::degrade::breaker::{Breaker, Permit, Transition};
use crate::degrade::deny_cache::DenyCache;
use crate::degrade::log_budget::LogBudget;
use crate::degrade::{BreakerState, Degradation, Event};
use crate::error::{ConfigError, Error, StoreError};
use crate::hit::Hit;
use crate::key::KeyBuilder;
use crate::metrics::{self, Counters};
use crate::observe::{Observer, Recorder};
use crate::quota::Quota;
use crate::rule::Rule;
use crate::store::{Check, MemoryStore, Mode, Request, Store};

/// A hook for [`Event`]s (metrics, alerts).
pub type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// What [`Limiter::decide`] does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Action {
    /// Decide and, when every rule allows, consume; the request counts once in the metrics,
    /// for its deciding rule ([`Observer::decided`]).
    #[default]
    Hit,
    /// Report what a hit would get; consume nothing, count nothing.
    Peek,
    /// Decide and consume as a hit, for rules that only observe (shadow rules): not a request
    /// of its own in the metrics; each rule that would have denied counts a shadow denial
    /// ([`Observer::shadow_denied`]).
    Shadow,
}

impl Action {
    /// What the store is asked to do.
    const fn store_mode(self) -> Mode {
        match self {
            Self::Peek => Mode::Peek,
            Self::Hit | Self::Shadow => Mode::Hit,
        }
    }
}

/// Rules, the store that keeps their state, and optionally a clock. Cheap to clone; clones
/// share everything.
///
/// ```
/// use rate_guard_core::{Limiter, Quota, Rule};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let limiter = Limiter::builder()
///     .rule(Rule::builder("2/minute".parse::<Quota>()?).build()?)
///     .build()?;
/// assert!(limiter.hit("10.0.0.1").await?.allowed());
/// assert!(limiter.hit("10.0.0.1").await?.allowed());
/// let third = limiter.hit("10.0.0.1").await?;
/// assert!(!third.allowed());
/// // A sliding window may ask for up to two periods near a window boundary.
/// assert!(third.decision().retry_after_secs().unwrap() <= 120);
/// assert!(limiter.hit("10.0.0.2").await?.allowed()); // another client, another quota
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
    /// Whether this handle decides on the blocking store ([`Limiter::blocking`]).
    blocking: bool,
}

struct Inner {
    rules: Box<[Rule]>,
    /// For calls made on a blocking thread, when they need a store of their own
    /// ([`LimiterBuilder::blocking_store`]).
    blocking_store: Option<Arc<dyn Store>>,
    /// The metrics of each rule (same order), registered when the limiter is built.
    counters: Box<[Counters]>,
    observer: Arc<dyn Observer>,
    store: Arc<dyn Store>,
    keys: KeyBuilder,
    clock: Option<Arc<dyn Clock>>,
    degradation: Degradation,
    breaker: Breaker,
    deny_cache: DenyCache,
    /// The in-memory fallback, when configured.
    fallback: Option<MemoryStore>,
    /// Whether the last decision was degraded (for the fallback events).
    degraded: AtomicBool,
    /// Bounds the events of rejected requests, which the breaker does not bound.
    rejection_log: LogBudget,
    hooks: Vec<EventHook>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Gauges count live limiters: take this one's share back.
        if *self.degraded.get_mut() {
            metrics::degraded_changed(-1);
        }
        metrics::breaker_changed(self.breaker.state(), BreakerState::Closed);
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("rules", &self.inner.rules)
            .field("store", &self.inner.store)
            .field("prefix", &self.inner.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// Starts a limiter: the memory store and its clock by default. A limiter without rules of
    /// its own decides only the hits given to [`decide`](Self::decide) (an HTTP front brings
    /// each request's rules).
    pub fn builder() -> LimiterBuilder {
        LimiterBuilder::default()
    }

    /// This limiter for calls made on a blocking thread (a sync API): the same rules,
    /// state, breaker, deny cache and fallback, deciding on the
    /// [blocking store](LimiterBuilder::blocking_store) when there is one (else the same store).
    #[must_use]
    pub fn blocking(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            blocking: true,
        }
    }

    /// The store this handle decides on.
    fn store(&self) -> &dyn Store {
        match &self.inner.blocking_store {
            Some(store) if self.blocking => &**store,
            _ => &*self.inner.store,
        }
    }

    /// The limiter's rules.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// The key builder (prefix) of this limiter.
    #[must_use]
    pub fn keys(&self) -> &KeyBuilder {
        &self.inner.keys
    }

    /// The circuit breaker's state.
    #[must_use]
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Whether decisions are currently degraded (the store is unavailable).
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Relaxed)
    }

    /// Every rule of the limiter, for `identity`, at cost 1.
    pub async fn hit(&self, identity: &str) -> Result<Verdict, Error> {
        self.hit_cost(identity, NonZeroU32::MIN).await
    }

    /// Every rule of the limiter, for `identity`, at `cost`.
    pub async fn hit_cost(&self, identity: &str, cost: NonZeroU32) -> Result<Verdict, Error> {
        let hits = self.all_rules(identity, cost);
        self.decide(&hits, Action::Hit).await
    }

    /// What [`hit`](Self::hit) would answer, consuming nothing.
    pub async fn peek(&self, identity: &str) -> Result<Verdict, Error> {
        let hits = self.all_rules(identity, NonZeroU32::MIN);
        self.decide(&hits, Action::Peek).await
    }

    /// Forgets the state of every rule of the limiter for `identity`.
    pub async fn reset(&self, identity: &str) -> Result<(), Error> {
        let keys: Vec<String> = self
            .rules()
            .iter()
            .map(|r| self.inner.keys.key(r, identity))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        // A forgotten key must not stay denied by the cache.
        self.inner.deny_cache.clear();
        if let Some(fallback) = &self.inner.fallback {
            fallback.reset_now(&keys);
        }
        Ok(self.store().reset(&keys).await?)
    }

    /// Decides `hits` together, all-or-nothing, in one store call (or none, when the deny
    /// cache or an open breaker answers), as `action` says (hit, peek, shadow hit), and tells
    /// the limiter's [`Observer`]. Only a request no store could decide (no rules, a key
    /// twice) is an error: a failing store yields a degraded verdict (see
    /// [`degrade`](crate::degrade)).
    ///
    /// A request with a rule that refuses all ([`Rule::refuses_all`], `"0/minute"`) is denied
    /// without that rule reaching the store: the other rules are only peeked (nothing
    /// consumed), in one store call when there are any, and the refusing rule is reported.
    pub async fn decide(&self, hits: &[Hit<'_>], action: Action) -> Result<Verdict, Error> {
        if hits.iter().any(|h| h.rule.refuses_all()) {
            let others = admitting(hits);
            let peeked = if others.is_empty() {
                None
            } else {
                let keys = self.keys_of(&others);
                let checks = checks(&others, keys.iter().map(String::as_str));
                let key_list: SmallVec<[(&str, u32); 4]> =
                    checks.iter().map(|c| (c.key, c.cost.get())).collect();
                let explicit_now = self.inner.clock.as_ref().map(Clock::now);
                let now = explicit_now.unwrap_or_else(|| SystemClock.now());
                let request = Request {
                    checks: &checks,
                    mode: Mode::Peek,
                    now: explicit_now,
                };
                request.validate()?;
                Some(self.decide_checks(request, &key_list, now).await?)
            };
            let verdict = refused(hits, peeked.as_ref());
            self.observe(hits, action, &verdict);
            return Ok(verdict);
        }
        let inner = &*self.inner;
        let keys = self.keys_of(hits);
        let checks = checks(hits, keys.iter().map(String::as_str));
        let key_list: SmallVec<[(&str, u32); 4]> =
            checks.iter().map(|c| (c.key, c.cost.get())).collect();
        let explicit_now = inner.clock.as_ref().map(Clock::now);
        let now = explicit_now.unwrap_or_else(|| SystemClock.now());
        let request = Request {
            checks: &checks,
            mode: action.store_mode(),
            now: explicit_now,
        };
        request.validate()?;
        let verdict = self.decide_checks(request, &key_list, now).await?;
        self.observe(hits, action, &verdict);
        Ok(verdict)
    }

    /// [`decide`](Self::decide) without a future, when the store answers at once (the memory
    /// store): the same verdict, observed alike, with no future built, moved or polled. `None`
    /// when the store may wait (Redis): use [`decide`](Self::decide).
    #[must_use]
    pub fn decide_now(&self, hits: &[Hit<'_>], action: Action) -> Option<Result<Verdict, Error>> {
        if hits.iter().any(|h| h.rule.refuses_all()) {
            let others = admitting(hits);
            let peeked = if others.is_empty() {
                None
            } else {
                match self.decide_now(&others, Action::Peek)? {
                    Ok(verdict) => Some(verdict),
                    Err(e) => return Some(Err(e)),
                }
            };
            let verdict = refused(hits, peeked.as_ref());
            self.observe(hits, action, &verdict);
            return Some(Ok(verdict));
        }
        // The keys go into the thread's buffer, back to back: no allocation per request.
        let mut buffer = KEY_BUFFER.take();
        buffer.clear();
        let mut ends: SmallVec<[usize; 4]> = SmallVec::new();
        for hit in hits {
            self.inner
                .keys
                .push_key(&mut buffer, hit.rule, hit.identity);
            ends.push(buffer.len());
        }
        let keys: SmallVec<[&str; 4]> = ends
            .iter()
            .scan(0, |start, &end| {
                let key = &buffer[*start..end];
                *start = end;
                Some(key)
            })
            .collect();
        let result = self.decide_now_keyed(hits, action, &keys);
        drop(keys);
        KEY_BUFFER.set(buffer);
        result
    }

    /// [`decide_now`](Self::decide_now) of `hits`, whose storage keys are `keys`.
    fn decide_now_keyed(
        &self,
        hits: &[Hit<'_>],
        action: Action,
        keys: &[&str],
    ) -> Option<Result<Verdict, Error>> {
        let inner = &*self.inner;
        let checks = checks(hits, keys.iter().copied());
        let request = Request {
            checks: &checks,
            mode: action.store_mode(),
            // The store reads its own clock, once, unless the limiter has one.
            now: inner.clock.as_ref().map(Clock::now),
        };
        if let Err(e) = request.validate() {
            return Some(Err(e.into()));
        }
        // A store that answers at once has no breaker, deny cache or fallback to go through:
        // it cannot be unavailable. Should it fail anyway, the full path decides.
        let verdict = match self.store().decide_now(request)? {
            Ok(verdict) => verdict,
            Err(StoreError::InvalidRequest(reason)) => {
                return Some(Err(StoreError::InvalidRequest(reason).into()))
            }
            Err(_) => return None,
        };
        self.observe(hits, action, &verdict);
        Some(Ok(verdict))
    }

    /// Tells the observer about a decided request.
    fn observe(&self, hits: &[Hit<'_>], action: Action, verdict: &Verdict) {
        let observer = &*self.inner.observer;
        match action {
            Action::Hit => {
                // One count per request, for the deciding rule.
                if let Some(hit) = hits.get(verdict.deciding_rule()) {
                    observer.decided(hit, verdict.allowed());
                }
            }
            Action::Shadow => {
                for (hit, decision) in hits.iter().zip(verdict.rules()) {
                    if !decision.allowed {
                        observer.shadow_denied(hit);
                    }
                }
            }
            Action::Peek => {}
        }
    }

    /// The storage key of each hit, in order.
    fn keys_of(&self, hits: &[Hit<'_>]) -> SmallVec<[String; 4]> {
        hits.iter()
            .map(|h| self.inner.keys.key(h.rule, h.identity))
            .collect()
    }

    async fn decide_checks(
        &self,
        request: Request<'_>,
        key_list: &[(&str, u32)],
        now: Timestamp,
    ) -> Result<Verdict, Error> {
        let inner = &*self.inner;
        let (checks, mode) = (request.checks, request.mode);
        // The deny cache saves round trips; a local store answers as fast as the cache would.
        let remote = self.store().is_remote();
        if mode == Mode::Hit && remote {
            if let Some(cached) = inner.deny_cache.get(key_list, now) {
                metrics::count_deny_cache_hit();
                return Ok(cached);
            }
        }
        let (permit, transition) = inner.breaker.permit(now);
        self.emit_transition(transition);
        if permit == Permit::Reject {
            return Ok(self.degraded(checks, mode, now));
        }
        let started = remote.then(Instant::now);
        let result = self.store().decide(request).await;
        if let Some(started) = started {
            metrics::observe_store_latency(started.elapsed());
        }
        match result {
            Ok(verdict) => {
                self.emit_transition(inner.breaker.on_success());
                if inner.degraded.swap(false, Ordering::Relaxed) {
                    metrics::degraded_changed(-1);
                    self.emit(&Event::FallbackEnded);
                }
                if mode == Mode::Hit && remote && !verdict.allowed() {
                    inner.deny_cache.insert(key_list, &verdict, now);
                }
                Ok(verdict)
            }
            Err(StoreError::InvalidRequest(reason)) => {
                Err(StoreError::InvalidRequest(reason).into())
            }
            Err(error @ StoreError::Rejected(_)) => {
                // The store answered, about this request only: no outage, so the breaker keeps
                // its count (a probe's slot is given back) and no fallback starts.
                inner.breaker.release_probe(permit);
                metrics::count_store_error(&error);
                if inner.rejection_log.admit(now) {
                    self.emit(&Event::StoreFailed { error });
                }
                Ok(self.policy(checks, mode, now))
            }
            Err(error) => {
                metrics::count_store_error(&error);
                self.emit(&Event::StoreFailed { error });
                self.emit_transition(inner.breaker.on_failure(now));
                Ok(self.degraded(checks, mode, now))
            }
        }
    }

    /// The verdict while the store is unavailable: the fallback's, or fail open / closed.
    fn degraded(&self, checks: &[Check<'_>], mode: Mode, now: Timestamp) -> Verdict {
        let inner = &*self.inner;
        if !inner.degraded.swap(true, Ordering::Relaxed) {
            metrics::degraded_changed(1);
            self.emit(&Event::FallbackStarted);
        }
        self.policy(checks, mode, now)
    }

    /// The verdict of the failure policy: the fallback's when there is one, else each rule's
    /// fail open / closed.
    fn policy(&self, checks: &[Check<'_>], mode: Mode, now: Timestamp) -> Verdict {
        let inner = &*self.inner;
        if let Some(fallback) = &inner.fallback {
            let instances = inner.degradation.instance_count.get();
            let scaled: SmallVec<[Rule; 4]> =
                checks.iter().map(|c| share(c.rule, instances)).collect();
            let scaled_checks: SmallVec<[Check<'_>; 4]> = checks
                .iter()
                .zip(&scaled)
                .map(|(c, rule)| Check {
                    rule,
                    key: c.key,
                    cost: c.cost,
                })
                .collect();
            let request = Request {
                checks: &scaled_checks,
                mode,
                now: Some(now),
            };
            if let Ok(verdict) = fallback.decide_now(request) {
                return verdict.with_source(Source::Fallback);
            }
        }
        let open = checks
            .iter()
            .all(|c| c.rule.fail_open().unwrap_or(inner.degradation.fail_open));
        // A closed verdict asks the client back when the breaker would let a probe through.
        let retry = inner.breaker.retry_in(now).max(Duration::from_secs(1));
        let rules: SmallVec<[Decision; 4]> = checks
            .iter()
            .map(|c| Decision {
                allowed: open,
                limit: c.rule.capacity(),
                remaining: if open { c.rule.capacity() } else { 0 },
                reset_after: Duration::ZERO,
                retry_after: (!open).then_some(retry),
            })
            .collect();
        let source = if open {
            Source::FailOpen
        } else {
            Source::FailClosed
        };
        Verdict::from_rules(rules)
            .map_or_else(|| Verdict::single(never()), |v| v.with_source(source))
    }

    fn emit_transition(&self, transition: Option<Transition>) {
        if let Some(t) = transition {
            metrics::breaker_changed(t.from, t.to);
            self.emit(&Event::Breaker {
                from: t.from,
                to: t.to,
                failures: t.failures,
            });
        }
    }

    fn emit(&self, event: &Event) {
        match event {
            // Bounded by the breaker: a failing store sees `failure_threshold` calls, then
            // one probe per cool-down.
            Event::StoreFailed { error } => tracing::warn!(
                target: "rate_guard",
                event = "store_failed",
                error_kind = error.kind(),
                %error,
                "store call failed"
            ),
            Event::Breaker { from, to, failures } if *to == BreakerState::Closed => {
                tracing::info!(
                    target: "rate_guard",
                    event = "breaker",
                    from_state = from.name(),
                    to_state = to.name(),
                    failures,
                    "circuit breaker {} -> {}",
                    from.name(),
                    to.name()
                );
            }
            Event::Breaker { from, to, failures } => tracing::warn!(
                target: "rate_guard",
                event = "breaker",
                from_state = from.name(),
                to_state = to.name(),
                failures,
                "circuit breaker {} -> {}",
                from.name(),
                to.name()
            ),
            Event::FallbackStarted => tracing::warn!(
                target: "rate_guard",
                event = "fallback_started",
                "degraded decisions start"
            ),
            Event::FallbackEnded => tracing::info!(
                target: "rate_guard",
                event = "fallback_ended",
                "degraded decisions end"
            ),
        }
        for hook in &self.inner.hooks {
            hook(event);
        }
    }

    fn all_rules<'a>(&'a self, identity: &'a str, cost: NonZeroU32) -> SmallVec<[Hit<'a>; 4]> {
        self.rules()
            .iter()
            .zip(&*self.inner.counters)
            .map(|(rule, counters)| Hit::new(rule, identity, cost).counted_in(counters))
            .collect()
    }
}

/// The store's checks of `hits`, whose keys are `keys` (same order).
fn checks<'a>(
    hits: &[Hit<'a>],
    keys: impl IntoIterator<Item = &'a str>,
) -> SmallVec<[Check<'a>; 4]> {
    hits.iter()
        .zip(keys)
        .map(|(h, key)| Check {
            rule: h.rule,
            key,
            cost: h.cost,
        })
        .collect()
}

/// The hits of rules that do not refuse all.
fn admitting<'a>(hits: &[Hit<'a>]) -> SmallVec<[Hit<'a>; 4]> {
    hits.iter()
        .filter(|h| !h.rule.refuses_all())
        .copied()
        .collect()
}

/// The verdict of a request with a rule that refuses all: that rule's refusal (limit 0,
/// remaining 0, no retry time) reported, the other rules as `peeked` (in order) saw them.
fn refused(hits: &[Hit<'_>], peeked: Option<&Verdict>) -> Verdict {
    let mut others = peeked.map(|v| v.rules().iter()).into_iter().flatten();
    let mut deciding = None;
    let rules: SmallVec<[Decision; 4]> = hits
        .iter()
        .enumerate()
        .map(|(i, hit)| {
            let refusal = Decision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset_after: Duration::ZERO,
                retry_after: None,
            };
            if hit.rule.refuses_all() {
                deciding.get_or_insert(i);
                refusal
            } else {
                others.next().copied().unwrap_or(refusal)
            }
        })
        .collect();
    Verdict::reporting(rules, deciding.unwrap_or(0))
}

thread_local! {
    /// The storage keys of the request this thread is deciding at once
    /// ([`Limiter::decide_now`]: the memory store's path, every request of an embedded
    /// limiter), kept between requests so that building them allocates nothing. Taken while in
    /// use: a decision made meanwhile on the same thread (by an observer) builds its own.
    static KEY_BUFFER: Cell<String> = const { Cell::new(String::new()) };
}

/// `rule` with its count and burst divided among `instances` (at least 1 each): one
/// instance's share while the fallback decides.
fn share(rule: &Rule, instances: u32) -> Rule {
    let divide = |n: u32| (n / instances).max(1);
    let count = NonZeroU32::new(divide(rule.count())).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::new(count, rule.quota().period()).unwrap_or(rule.quota());
    let mut b = Rule::builder(quota)
        .algorithm(rule.algorithm())
        .name(rule.id());
    if let Some(burst) = rule.burst() {
        b = b.burst(divide(burst.get()));
    }
    b.build().unwrap_or_else(|_| rule.clone())
}

/// A denial that is never retryable, for a request with no rule (never built in practice).
fn never() -> Decision {
    Decision {
        allowed: false,
        limit: 0,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: None,
    }
}

/// Builds a [`Limiter`]; see [`Limiter::builder`]. Only [`build`](Self::build) checks, and it
/// cannot return an invalid limiter.
#[derive(Default)]
#[must_use]
pub struct LimiterBuilder {
    rules: Vec<Rule>,
    store: Option<Arc<dyn Store>>,
    blocking_store: Option<Arc<dyn Store>>,
    clock: Option<Arc<dyn Clock>>,
    prefix: Option<String>,
    degradation: Degradation,
    hooks: Vec<EventHook>,
    observer: Option<Arc<dyn Observer>>,
}

impl fmt::Debug for LimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterBuilder")
            .field("rules", &self.rules)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl LimiterBuilder {
    /// Adds a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules.
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Where state lives (default: a [`MemoryStore`] with default settings).
    pub fn store(self, store: impl Store + 'static) -> Self {
        self.shared_store(Arc::new(store))
    }

    /// Where state lives, shared with others.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The store that the [`blocking`](Limiter::blocking) handle decides on: the same state as
    /// the main store reached another way (Redis I/O done on the calling thread instead of a
    /// runtime's). Default: the main store.
    pub fn blocking_store(mut self, store: Arc<dyn Store>) -> Self {
        self.blocking_store = Some(store);
        self
    }

    /// Decide at this clock's time instead of the store's (tests, replays).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// What to do when the store is slow or gone (see [`degrade`](crate::degrade)).
    pub fn degradation(mut self, degradation: Degradation) -> Self {
        self.degradation = degradation;
        self
    }

    /// Calls `hook` on every degradation [`Event`] (they are also `tracing` events).
    pub fn on_event(mut self, hook: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Tells `observer` about the requests decided, instead of counting them in the
    /// [`metrics`] ([`Recorder`]).
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The key prefix (default `rate_guard`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The limiter, or what is wrong with its configuration.
    pub fn build(self) -> Result<Limiter, ConfigError> {
        let mut ids = HashSet::new();
        if let Some(dup) = self.rules.iter().find(|r| !ids.insert(r.id())) {
            return Err(ConfigError::DuplicateRuleId {
                id: dup.id().to_owned(),
            });
        }
        let keys = match self.prefix {
            Some(prefix) => KeyBuilder::new(prefix)?,
            None => KeyBuilder::default(),
        };
        self.degradation.validate()?;
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(MemoryStore::builder().build()?),
        };
        let d = &self.degradation;
        let fallback = if d.in_memory_fallback {
            let mut b = MemoryStore::builder();
            if let Some(clock) = &self.clock {
                b = b.shared_clock(clock.clone());
            }
            Some(b.build()?)
        } else {
            None
        };
        let counters = self
            .rules
            .iter()
            .map(|r| metrics::register(r.id(), "", r.algorithm()))
            .collect();
        Ok(Limiter {
            inner: Arc::new(Inner {
                rules: self.rules.into_boxed_slice(),
                blocking_store: self.blocking_store,
                counters,
                observer: self.observer.unwrap_or_else(|| Arc::new(Recorder)),
                store,
                keys,
                clock: self.clock,
                breaker: Breaker::new(d.failure_threshold, d.cooldown, d.max_cooldown),
                deny_cache: DenyCache::new(d.deny_cache_size, d.deny_cache_ttl),
                fallback,
                degraded: AtomicBool::new(false),
                rejection_log: LogBudget::default(),
                hooks: self.hooks,
                degradation: self.degradation,
            }),
            blocking: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU8;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::BoxFuture;

    /// Answers as its mode says: 0 decides on memory, 1 is unavailable, 2 rejects the request.
    #[derive(Debug, Default)]
    struct Scripted {
        store: MemoryStore,
        mode: AtomicU8,
    }

    impl Store for Scripted {
        fn decide<'a>(
            &'a self,
            request: Request<'a>,
        ) -> BoxFuture<'a, Result<Verdict, StoreError>> {
            let result = match self.mode.load(Ordering::Relaxed) {
                0 => self.store.decide_now(request),
                1 => Err(StoreError::Unavailable("down".into())),
                _ => Err(StoreError::Rejected("WRONGTYPE".into())),
            };
            Box::pin(std::future::ready(result))
        }

        fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
            self.store.reset(keys)
        }

        fn is_remote(&self) -> bool {
            true
        }
    }

    #[test]
    fn decisions_at_once_count_under_the_keys_of_the_async_path() {
        // `decide_now` builds its keys in the thread's buffer, `decide` one `String` each: one
        // quota for both, key by key, in multi-rule requests and after a long identity (hashed
        // into its key) left the buffer grown.
        let limiter = Limiter::builder()
            .clock(ManualClock::new(Timestamp::from_secs(1_700_000_000)))
            .build()
            .unwrap();
        let rule = |name: &str| {
            Rule::builder("1/hour".parse::<Quota>().unwrap())
                .name(name)
                .build()
                .unwrap()
        };
        let (a, b) = (rule("a"), rule("b"));
        let long = "x".repeat(500);
        let hit = |rule, identity| Hit {
            rule,
            identity,
            cost: NonZeroU32::MIN,
            counters: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for identities in [
            ["ip:10.0.0.1", "user:a b{c}"],
            [long.as_str(), "ip:10.0.0.2"],
        ] {
            let hits = [hit(&a, identities[0]), hit(&b, identities[1])];
            let now = limiter.decide_now(&hits, Action::Hit).unwrap().unwrap();
            assert!(now.allowed());
            for hit in hits {
                let later = rt.block_on(limiter.decide(&[hit], Action::Hit)).unwrap();
                assert!(!later.allowed(), "{}", hit.identity);
            }
            let again = limiter.decide_now(&hits, Action::Peek).unwrap().unwrap();
            assert_eq!(
                again.rules().iter().map(|d| d.allowed).collect::<Vec<_>>(),
                [false, false]
            );
        }
    }

    #[test]
    fn rejections_leave_the_breaker_alone_and_free_a_probe() {
        let store = Arc::new(Scripted::default());
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
        let limiter = Limiter::builder()
            .rule(
                Rule::builder("5/hour".parse::<Quota>().unwrap())
                    .fail_open(false)
                    .build()
                    .unwrap(),
            )
            .shared_store(store.clone())
            .clock(clock.clone())
            .degradation(
                Degradation::default()
                    .failure_threshold(2)
                    .cooldown(Duration::from_secs(1), Duration::from_secs(4)),
            )
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            store.mode.store(2, Ordering::Relaxed);
            for _ in 0..10 {
                let v = limiter.hit("a").await.unwrap();
                assert_eq!(v.source(), Source::FailClosed);
            }
            assert_eq!(limiter.breaker_state(), BreakerState::Closed);
            assert!(!limiter.is_degraded());

            // Consecutive failures are not reset by a rejection in between.
            store.mode.store(1, Ordering::Relaxed);
            limiter.hit("a").await.unwrap();
            store.mode.store(2, Ordering::Relaxed);
            limiter.hit("a").await.unwrap();
            store.mode.store(1, Ordering::Relaxed);
            limiter.hit("a").await.unwrap();
            assert_eq!(limiter.breaker_state(), BreakerState::Open);

            // A probe that is rejected gives its slot back: the next request probes again.
            clock.advance(Duration::from_secs(2));
            store.mode.store(2, Ordering::Relaxed);
            limiter.hit("a").await.unwrap();
            assert_eq!(limiter.breaker_state(), BreakerState::HalfOpen);
            store.mode.store(0, Ordering::Relaxed);
            let v = limiter.hit("a").await.unwrap();
            assert_eq!(v.source(), Source::Store);
            assert_eq!(limiter.breaker_state(), BreakerState::Closed);
        });
    }
}
