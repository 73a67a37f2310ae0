//! [`Guard`]: a limiter over the memory store or Redis, with sync calls that release the GIL.

use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use rate_guard_core::{Degradation, Hit, Limiter, MemoryStore, Mode, Quota, Rule, Store, Verdict};
use rate_guard_redis::{RedisConfig, RedisStore};
use tokio::runtime::Runtime;

use crate::decision::Decision;
use crate::errors::Failure;
use crate::fork::ForkLocal;
use crate::rules::Rules;
use crate::runtime::runtime;

/// What a [`Guard`] was built with; everything an [`Engine`] needs to be rebuilt after a fork.
struct Settings {
    redis: Option<RedisConfig>,
    key_prefix: String,
    degradation: Degradation,
    memory_max_keys: Option<NonZeroUsize>,
}

/// The limiter of one process, and the store it decides on.
struct Engine {
    limiter: Limiter,
    store: Arc<dyn Store>,
    /// The runtime that drives Redis I/O; `None` for the memory store, whose calls complete
    /// without waiting.
    runtime: Option<&'static Runtime>,
}

impl Engine {
    fn build(settings: &Settings) -> Result<Self, Failure> {
        let (store, runtime): (Arc<dyn Store>, _) = match &settings.redis {
            None => {
                let mut builder = MemoryStore::builder();
                if let Some(max_keys) = settings.memory_max_keys {
                    builder = builder.max_keys(max_keys.get());
                }
                (Arc::new(builder.build()?), None)
            }
            Some(config) => {
                let runtime = runtime()?;
                let store = runtime.block_on(RedisStore::connect(config)).map_err(|e| {
                    Failure::Storage(format!(
                        "cannot connect to Redis at {}: {e}",
                        config.url_redacted()
                    ))
                })?;
                (Arc::new(store), Some(runtime))
            }
        };
        let limiter = Limiter::builder()
            // The limiter's own rules are never used: every call brings its rules (`decide`).
            .rule(placeholder_rule()?)
            .shared_store(store.clone())
            .key_prefix(settings.key_prefix.clone())
            .degradation(settings.degradation.clone())
            .build()?;
        Ok(Self {
            limiter,
            store,
            runtime,
        })
    }

    /// Runs `future` to completion on this thread: inline for the memory store, on the runtime
    /// for Redis.
    fn run<T>(&self, future: impl Future<Output = T>) -> Result<T, Failure> {
        if let Some(runtime) = self.runtime {
            if tokio::runtime::Handle::try_current().is_ok() {
                return Err(Failure::Config(
                    "a sync call cannot be made from a thread that runs a tokio runtime".to_owned(),
                ));
            }
            return Ok(runtime.block_on(future));
        }
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(value) => Ok(value),
            // The memory store never waits; should that change, a runtime finishes the job.
            Poll::Pending => Ok(runtime()?.block_on(future)),
        }
    }

    /// Decides every `(identity, rules)` pair together, all-or-nothing.
    fn decide<'a>(
        &self,
        requests: impl IntoIterator<Item = (&'a str, &'a [Rule])>,
        cost: NonZeroU32,
        mode: Mode,
    ) -> Result<Verdict, Failure> {
        let hits: Vec<Hit<'_>> = requests
            .into_iter()
            .flat_map(|(identity, rules)| {
                rules.iter().map(move |rule| Hit {
                    rule,
                    identity,
                    cost,
                })
            })
            .collect();
        Ok(self.run(self.limiter.decide(&hits, mode))??)
    }

    fn reset(&self, identity: &str, rules: &[Rule]) -> Result<(), Failure> {
        let keys: Vec<String> = rules
            .iter()
            .map(|rule| self.limiter.keys().key(rule, identity))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.run(async {
            self.store.reset(&keys).await?;
            // Clears the deny cache, so that a reset key is not answered from it.
            self.limiter.reset(identity).await
        })??;
        Ok(())
    }
}

/// The rule a [`Limiter`] must be built with; never decided.
fn placeholder_rule() -> Result<Rule, Failure> {
    Ok(Rule::builder(Quota::per_second(NonZeroU32::MIN))
        .name("rate_guard.py.unused")
        .build()?)
}

/// Seconds from Python as a [`Duration`], longer than zero.
fn seconds(name: &str, value: f64) -> Result<Duration, Failure> {
    match Duration::try_from_secs_f64(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(Failure::Config(format!(
            "{name} must be a number of seconds greater than 0, not {value}"
        ))),
    }
}

fn cost(cost: u64) -> Result<NonZeroU32, Failure> {
    u32::try_from(cost)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| Failure::Config(format!("cost must be from 1 to {}, not {cost}", u32::MAX)))
}

/// A rate limiter over the memory store (`redis_url=None`) or Redis.
///
/// Calls are synchronous and release the GIL while they decide. Each process builds its own
/// runtime and connections on first use, so a guard made before `fork()` works in the child.
/// Construction connects to Redis, so a wrong URL or an unreachable server fails here, not on
/// the first request.
#[pyclass(frozen, module = "py_rate_guard._native", name = "Guard")]
pub(crate) struct Guard {
    settings: Settings,
    engine: ForkLocal<Engine>,
}

impl Guard {
    fn engine(&self) -> Result<&Engine, Failure> {
        self.engine
            .get_or_try_init(|| Engine::build(&self.settings))
    }

    fn decide(
        &self,
        py: Python<'_>,
        identity: &str,
        rules: &Rules,
        cost: NonZeroU32,
        mode: Mode,
    ) -> PyResult<Decision> {
        let verdict = py.detach(|| {
            self.engine()?
                .decide([(identity, rules.as_slice())], cost, mode)
        })?;
        Ok(Decision::from(&verdict))
    }
}

// PyO3 hands arguments over by value (`PyBackedStr` keeps the `str` alive, GIL released).
#[allow(clippy::needless_pass_by_value)]
#[pymethods]
impl Guard {
    #[new]
    #[pyo3(signature = (
        redis_url=None,
        *,
        key_prefix="rate_guard".to_owned(),
        redis_timeout=0.1,
        redis_connect_timeout=1.0,
        redis_pool_size=1,
        fail_open=true,
        in_memory_fallback=false,
        instance_count=1,
        deny_cache_size=10_000,
        breaker_threshold=5,
        breaker_cooldown=1.0,
        breaker_max_cooldown=30.0,
        memory_max_keys=None,
    ))]
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    fn new(
        py: Python<'_>,
        redis_url: Option<&str>,
        key_prefix: String,
        redis_timeout: f64,
        redis_connect_timeout: f64,
        redis_pool_size: usize,
        fail_open: bool,
        in_memory_fallback: bool,
        instance_count: u32,
        deny_cache_size: usize,
        breaker_threshold: u32,
        breaker_cooldown: f64,
        breaker_max_cooldown: f64,
        memory_max_keys: Option<usize>,
    ) -> PyResult<Self> {
        let redis = match redis_url {
            None => None,
            Some(url) => Some(
                RedisConfig::from_url(url)
                    .map_err(Failure::from)?
                    .timeout(seconds("redis_timeout", redis_timeout)?)
                    .connect_timeout(seconds("redis_connect_timeout", redis_connect_timeout)?)
                    .pool_size(redis_pool_size),
            ),
        };
        let mut degradation = Degradation::default()
            .failure_threshold(breaker_threshold)
            .cooldown(
                seconds("breaker_cooldown", breaker_cooldown)?,
                seconds("breaker_max_cooldown", breaker_max_cooldown)?,
            )
            .fail_open(fail_open)
            .deny_cache_size(deny_cache_size);
        if in_memory_fallback {
            let instances = NonZeroU32::new(instance_count)
                .ok_or_else(|| Failure::Config("instance_count must be at least 1".to_owned()))?;
            degradation = degradation.in_memory_fallback(instances);
        }
        let memory_max_keys = memory_max_keys
            .map(|n| {
                NonZeroUsize::new(n)
                    .ok_or_else(|| Failure::Config("memory_max_keys must be at least 1".to_owned()))
            })
            .transpose()?;
        let guard = Self {
            settings: Settings {
                redis,
                key_prefix,
                degradation,
                memory_max_keys,
            },
            engine: ForkLocal::new(),
        };
        // Connect now: a wrong address fails here rather than on the first request.
        py.detach(|| guard.engine().map(|_| ()))?;
        Ok(guard)
    }

    /// Decides `rules` together for `identity` and, when every rule allows, consumes `cost`
    /// from each.
    #[pyo3(signature = (identity, rules, cost=1))]
    fn hit(
        &self,
        py: Python<'_>,
        identity: PyBackedStr,
        rules: &Bound<'_, Rules>,
        cost: u64,
    ) -> PyResult<Decision> {
        let cost = self::cost(cost)?;
        self.decide(py, &identity, rules.get(), cost, Mode::Hit)
    }

    /// What [`hit`](Self::hit) would answer, consuming nothing.
    #[pyo3(signature = (identity, rules, cost=1))]
    fn peek(
        &self,
        py: Python<'_>,
        identity: PyBackedStr,
        rules: &Bound<'_, Rules>,
        cost: u64,
    ) -> PyResult<Decision> {
        let cost = self::cost(cost)?;
        self.decide(py, &identity, rules.get(), cost, Mode::Peek)
    }

    /// Decides several `(identity, rules)` pairs together, all-or-nothing: a request whose
    /// rules count for different identities (`global`, a client address, a user). With
    /// `peek`, consumes nothing.
    #[pyo3(signature = (requests, cost=1, peek=false))]
    fn decide_many(
        &self,
        py: Python<'_>,
        requests: Vec<(PyBackedStr, Py<Rules>)>,
        cost: u64,
        peek: bool,
    ) -> PyResult<Decision> {
        let cost = self::cost(cost)?;
        let mode = if peek { Mode::Peek } else { Mode::Hit };
        let verdict = py.detach(|| {
            let pairs = requests
                .iter()
                .map(|(identity, rules)| (&**identity, rules.get().as_slice()));
            self.engine()?.decide(pairs, cost, mode)
        })?;
        Ok(Decision::from(&verdict))
    }

    /// Forgets the state of `rules` for `identity`.
    fn reset(
        &self,
        py: Python<'_>,
        identity: PyBackedStr,
        rules: &Bound<'_, Rules>,
    ) -> PyResult<()> {
        let rules = rules.get().as_slice();
        let identity: &str = &identity;
        py.detach(|| self.engine()?.reset(identity, rules))?;
        Ok(())
    }

    /// `memory`, or the Redis URL with its password hidden.
    #[getter]
    fn store(&self) -> String {
        self.settings
            .redis
            .as_ref()
            .map_or_else(|| "memory".to_owned(), |c| c.url_redacted().to_owned())
    }

    /// The circuit breaker's state: `closed`, `open` or `half_open`.
    #[getter]
    fn breaker_state(&self, py: Python<'_>) -> PyResult<&'static str> {
        let engine = py.detach(|| self.engine())?;
        Ok(engine.limiter.breaker_state().name())
    }

    fn __repr__(&self) -> String {
        format!(
            "Guard(store={:?}, key_prefix={:?})",
            self.store(),
            self.settings.key_prefix
        )
    }
}
