//! [`Limiter`]: rules, a store and a clock, tied together.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::clock::Clock;
use crate::decision::Verdict;
use crate::error::{ConfigError, Error};
use crate::key::KeyBuilder;
use crate::rule::Rule;
use crate::store::{Check, MemoryStore, Mode, Request, Store};

/// One rule of a request and the identity it counts for (a client address, a user id,
/// `"global"`…), with the request's weight.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// The rule (one of the limiter's, or any other, such as a route's).
    pub rule: &'a Rule,
    /// Whose quota: escaped into the key by the limiter's [`KeyBuilder`].
    pub identity: &'a str,
    /// The request's weight.
    pub cost: NonZeroU32,
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
}

struct Inner {
    rules: Box<[Rule]>,
    store: Arc<dyn Store>,
    keys: KeyBuilder,
    clock: Option<Arc<dyn Clock>>,
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
    /// Starts a limiter: at least one rule; the memory store and its clock by default.
    pub fn builder() -> LimiterBuilder {
        LimiterBuilder::default()
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

    /// Every rule of the limiter, for `identity`, at cost 1.
    pub async fn hit(&self, identity: &str) -> Result<Verdict, Error> {
        self.hit_cost(identity, NonZeroU32::MIN).await
    }

    /// Every rule of the limiter, for `identity`, at `cost`.
    pub async fn hit_cost(&self, identity: &str, cost: NonZeroU32) -> Result<Verdict, Error> {
        let hits = self.all_rules(identity, cost);
        self.decide(&hits, Mode::Hit).await
    }

    /// What [`hit`](Self::hit) would answer, consuming nothing.
    pub async fn peek(&self, identity: &str) -> Result<Verdict, Error> {
        let hits = self.all_rules(identity, NonZeroU32::MIN);
        self.decide(&hits, Mode::Peek).await
    }

    /// Forgets the state of every rule of the limiter for `identity`.
    pub async fn reset(&self, identity: &str) -> Result<(), Error> {
        let keys: Vec<String> = self
            .rules()
            .iter()
            .map(|r| self.inner.keys.key(r, identity))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        Ok(self.inner.store.reset(&keys).await?)
    }

    /// Decides `hits` together, all-or-nothing, in one store call.
    pub async fn decide(&self, hits: &[Hit<'_>], mode: Mode) -> Result<Verdict, Error> {
        let keys: SmallVec<[String; 4]> = hits
            .iter()
            .map(|h| self.inner.keys.key(h.rule, h.identity))
            .collect();
        let checks: SmallVec<[Check<'_>; 4]> = hits
            .iter()
            .zip(&keys)
            .map(|(h, key)| Check {
                rule: h.rule,
                key,
                cost: h.cost,
            })
            .collect();
        let request = Request {
            checks: &checks,
            mode,
            now: self.inner.clock.as_ref().map(Clock::now),
        };
        Ok(self.inner.store.decide(request).await?)
    }

    fn all_rules<'a>(&'a self, identity: &'a str, cost: NonZeroU32) -> SmallVec<[Hit<'a>; 4]> {
        self.rules()
            .iter()
            .map(|rule| Hit {
                rule,
                identity,
                cost,
            })
            .collect()
    }
}

/// Builds a [`Limiter`]; see [`Limiter::builder`]. Only [`build`](Self::build) checks, and it
/// cannot return an invalid limiter.
#[derive(Default)]
#[must_use]
pub struct LimiterBuilder {
    rules: Vec<Rule>,
    store: Option<Arc<dyn Store>>,
    clock: Option<Arc<dyn Clock>>,
    prefix: Option<String>,
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

    /// Decide at this clock's time instead of the store's (tests, replays).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The key prefix (default `rate_guard`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The limiter, or what is wrong with its configuration.
    pub fn build(self) -> Result<Limiter, ConfigError> {
        if self.rules.is_empty() {
            return Err(ConfigError::NoRules);
        }
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
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(MemoryStore::builder().build()?),
        };
        Ok(Limiter {
            inner: Arc::new(Inner {
                rules: self.rules.into_boxed_slice(),
                store,
                keys,
                clock: self.clock,
            }),
        })
    }
}
