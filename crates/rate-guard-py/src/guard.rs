//! [`Guard`]: a limiter over the memory store or Redis, with sync calls that release the GIL.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use rate_guard_core::{Action, Hit, Limiter, Rule, Store, Verdict};
use rate_guard_http::Settings;
use rate_guard_redis::{RedisConfig, RedisStore};
use smallvec::SmallVec;
use tokio::runtime::Runtime;

use crate::args;
use crate::bridge::{self, Call, Job, Ready, Resolve};
use crate::decision::Decision;
use crate::errors::Failure;
use crate::fork::ForkLocal;
use crate::rules::Rules;
use crate::runtime::runtime;
use crate::thread_store::{self, ThreadStore};

/// What a [`Guard`] was built with; everything an [`Engine`] needs to be rebuilt after a fork.
struct Built {
    settings: Settings,
    /// The Redis connection settings (TLS files read and checked), `None` for memory.
    redis: Option<RedisConfig>,
}

/// The limiter of one process, and the store it decides on.
struct Engine {
    limiter: Arc<Limiter>,
    /// The same limiter for the sync API: on Redis it decides on a [`ThreadStore`], whose I/O
    /// happens on the calling thread ([`Limiter::blocking`]).
    sync_limiter: Arc<Limiter>,
    /// The store of sync calls (the memory store, or the [`ThreadStore`]).
    store: Arc<dyn Store>,
    /// The runtime that drives the Redis I/O of async calls; `None` for the memory store,
    /// whose calls complete without waiting. Sync calls do their I/O on the calling thread
    /// ([`thread_store`]).
    runtime: Option<&'static Runtime>,
}

impl Engine {
    fn build(built: &Built) -> Result<Self, Failure> {
        // The store of async calls, and the one of sync calls when it differs.
        let (store, sync_store, runtime): (Arc<dyn Store>, Option<Arc<dyn Store>>, _) =
            match &built.redis {
                None => (Arc::new(built.settings.memory_store(None)?), None, None),
                Some(config) => {
                    let runtime = runtime()?;
                    let shared = runtime.block_on(RedisStore::connect(config)).map_err(|e| {
                        Failure::Storage(format!(
                            "cannot connect to Redis at {}: {e}",
                            config.url_redacted()
                        ))
                    })?;
                    let sync_store = ThreadStore::new(config.clone(), &shared);
                    (Arc::new(shared), Some(Arc::new(sync_store)), Some(runtime))
                }
            };
        // No rules of its own: every call brings its rules (`decide`).
        let mut builder = built.settings.limiter(store.clone())?;
        if let Some(sync_store) = &sync_store {
            builder = builder.blocking_store(Arc::clone(sync_store));
        }
        let limiter = builder.on_event(crate::observe::record).build()?;
        Ok(Self {
            sync_limiter: Arc::new(limiter.blocking()),
            limiter: Arc::new(limiter),
            store: sync_store.unwrap_or(store),
            runtime,
        })
    }

    /// Runs `future` to completion on this thread: inline for the memory store; for Redis on
    /// this thread's runtime, so that the I/O happens here ([`thread_store`]).
    fn run<T>(&self, future: impl Future<Output = T>) -> Result<T, Failure> {
        if self.runtime.is_some() {
            if tokio::runtime::Handle::try_current().is_ok() {
                return Err(Failure::Config(
                    "a sync call cannot be made from a thread that runs a tokio runtime".to_owned(),
                ));
            }
            return thread_store::block_on(future);
        }
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(value) => Ok(value),
            // The memory store never waits; should that change, a runtime finishes the job.
            Poll::Pending => thread_store::block_on(future),
        }
    }

    /// Starts `future` for the running loop: an awaitable that is ready at once when the
    /// answer needs no I/O (memory store, deny cache, open breaker), else a future of the loop
    /// resolved through the batched bridge.
    fn spawn<'py, T, F>(
        &self,
        py: Python<'py>,
        future: F,
        convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let _context = self.runtime.map(Runtime::enter);
        let mut future = Box::pin(future);
        if let Poll::Ready(value) = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            return Ok(Bound::new(py, Ready::new(convert(py, value)))?.into_any());
        }
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => runtime()?,
        };
        let event_loop = bridge::running_loop(py)?;
        let bridge = bridge::bridge_for(&event_loop)?;
        let awaitable = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
        let target = awaitable.clone().unbind();
        runtime.spawn(async move {
            let value = future.await;
            bridge.complete(target, Box::new(move |py| convert(py, value)));
        });
        Ok(awaitable)
    }

    /// Decides every `(identity, rules)` pair together, all-or-nothing, each rule at `cost` or
    /// else its own.
    fn decide<'a>(
        &self,
        requests: impl IntoIterator<Item = (&'a str, &'a Rules)>,
        cost: Option<NonZeroU32>,
        mode: Action,
    ) -> Result<Verdict, Failure> {
        let hits: Vec<Hit<'_>> = requests
            .into_iter()
            .flat_map(|(identity, rules)| hits(identity, rules, cost))
            .collect();
        Ok(self.run(self.sync_limiter.decide(&hits, mode))??)
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
            self.sync_limiter.reset(identity).await
        })??;
        Ok(())
    }
}

/// The hits of `rules` for `identity`: each rule at `cost`, or at its own cost when the call
/// gives none.
fn hits<'a>(
    identity: &'a str,
    rules: &'a Rules,
    cost: Option<NonZeroU32>,
) -> impl Iterator<Item = Hit<'a>> + 'a {
    rules
        .as_slice()
        .iter()
        .zip(rules.costs())
        .zip(rules.counters())
        .map(move |((rule, &own), counters)| {
            Hit::new(rule, identity, cost.unwrap_or(own)).counted_in(counters)
        })
}

/// A rate limiter over the memory store (`redis_url=None`) or Redis.
///
/// Calls are synchronous and release the GIL while they decide. Each process builds its own
/// runtime and connections on first use, so a guard made before `fork()` works in the child.
/// Construction connects to Redis, so a wrong URL or an unreachable server fails here, not on
/// the first request.
#[pyclass(frozen, module = "py_rate_guard._native", name = "Guard")]
pub(crate) struct Guard {
    built: Built,
    engine: ForkLocal<Engine>,
}

/// One `(identity, rules)` pair of an async call, owned by its task.
type Owned = (PyBackedStr, Py<Rules>);

/// The `(identity, rules)` pairs of a `decide_many` call, identities checked.
fn pairs(requests: &Bound<'_, PyAny>) -> Result<Vec<Owned>, Failure> {
    let bad = || Failure::Config("requests must be a list of (identity, Rules) pairs".to_owned());
    let mut out = Vec::new();
    for item in requests.try_iter().map_err(|_| bad())? {
        let item = item.map_err(|_| bad())?;
        let (identity, rules): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            item.extract().map_err(|_| bad())?;
        let rules = rules.cast_into::<Rules>().map_err(|_| bad())?.unbind();
        out.push((args::identity(&identity)?, rules));
    }
    Ok(out)
}

impl Guard {
    fn engine(&self) -> Result<&Engine, Failure> {
        self.engine.get_or_try_init(|| Engine::build(&self.built))
    }

    /// The engine, built with the GIL released when this process has none yet.
    fn engine_with_gil(&self, py: Python<'_>) -> PyResult<&Engine> {
        match self.engine.get() {
            Some(engine) => Ok(engine),
            None => Ok(py.detach(|| self.engine())?),
        }
    }

    /// The limiter, when this process's store answers at once (the memory store): calls can
    /// then use [`Limiter::decide_now`] with the GIL held and no future.
    pub(crate) fn local_limiter(&self) -> Option<&Limiter> {
        self.engine
            .get()
            .filter(|e| e.runtime.is_none())
            .map(|e| &*e.limiter)
    }

    /// Runs `make(limiter)` to completion with the GIL released (the sync API): inline for
    /// the memory store, with the Redis I/O on the calling thread otherwise.
    pub(crate) fn run_blocking<T, F>(
        &self,
        py: Python<'_>,
        make: impl FnOnce(Arc<Limiter>) -> F + Send,
    ) -> PyResult<T>
    where
        F: Future<Output = T> + Send,
        T: Send,
    {
        if let Some(engine) = self.engine.get().filter(|e| e.runtime.is_none()) {
            // The memory store answers in well under a microsecond without waiting on
            // anything: releasing the GIL would cost more than it frees.
            return Ok(engine.run(make(Arc::clone(&engine.sync_limiter)))?);
        }
        Ok(py.detach(|| {
            let engine = self.engine()?;
            engine.run(make(Arc::clone(&engine.sync_limiter)))
        })?)
    }

    /// Starts `make(limiter)` and returns an awaitable for the running loop, resolved on the
    /// loop thread with `convert(py, output)` through the batched bridge ([`bridge`]); ready at
    /// once when no I/O was needed. Needs a running loop only when the answer waits on I/O.
    pub(crate) fn run_async<'py, T, F>(
        &self,
        py: Python<'py>,
        make: impl FnOnce(Arc<Limiter>) -> F,
        convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let engine = self.engine_with_gil(py)?;
        let future = make(Arc::clone(&engine.limiter));
        engine.spawn(py, future, convert)
    }

    /// `run_async` as a coroutine ([`bridge::Call`]): the job starts when awaited, and its
    /// hand-off to the I/O thread is batched with the other calls of the loop's iteration.
    pub(crate) fn call_async<T, F>(
        &self,
        py: Python<'_>,
        make: impl FnOnce(Arc<Limiter>) -> F,
        convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
    ) -> PyResult<Call>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let engine = self.engine_with_gil(py)?;
        let future = make(Arc::clone(&engine.limiter));
        let job: Job = Box::pin(async move {
            let value = future.await;
            Box::new(move |py: Python<'_>| convert(py, value)) as Resolve
        });
        Ok(Call::new(job, engine.runtime))
    }

    /// The coroutine of an async call (see [`bridge::Call`]): the pairs travel with the job
    /// and are dropped on the loop thread, with the GIL.
    fn call(
        &self,
        py: Python<'_>,
        requests: Result<Vec<Owned>, Failure>,
        cost: Result<Option<NonZeroU32>, Failure>,
        mode: Action,
    ) -> Call {
        let (requests, cost, engine) = match (requests, cost, self.engine_with_gil(py)) {
            (Ok(requests), Ok(cost), Ok(engine)) => (requests, cost, engine),
            (Err(e), _, _) | (_, Err(e), _) => return Call::failed(e.into()),
            (_, _, Err(e)) => return Call::failed(e),
        };
        let limiter = Arc::clone(&engine.limiter);
        let job: Job = Box::pin(async move {
            let verdict = {
                let hits: SmallVec<[Hit<'_>; 4]> = requests
                    .iter()
                    .flat_map(|(identity, rules)| hits(identity, rules.get(), cost))
                    .collect();
                limiter.decide(&hits, mode).await
            };
            Box::new(move |py: Python<'_>| {
                drop(requests);
                let verdict = verdict.map_err(Failure::from)?;
                Ok(Py::new(py, Decision::from(&verdict))?.into_any())
            }) as Resolve
        });
        Call::new(job, engine.runtime)
    }

    fn decide(
        &self,
        py: Python<'_>,
        identity: &str,
        rules: &Rules,
        cost: Option<NonZeroU32>,
        mode: Action,
    ) -> PyResult<Decision> {
        let hits: SmallVec<[Hit<'_>; 4]> = hits(identity, rules, cost).collect();
        // The memory store answers at once: no future, no GIL hand-off.
        if let Some(limiter) = self.local_limiter() {
            if let Some(result) = limiter.decide_now(&hits, mode) {
                return Ok(Decision::from(&result.map_err(Failure::from)?));
            }
        }
        let verdict = self
            .run_blocking(
                py,
                |limiter| async move { limiter.decide(&hits, mode).await },
            )?
            .map_err(Failure::from)?;
        Ok(Decision::from(&verdict))
    }
}

// PyO3 hands arguments over by value (`PyBackedStr` keeps the `str` alive, GIL released).
#[allow(clippy::needless_pass_by_value)]
#[pymethods]
impl Guard {
    /// A guard built from `settings`: the configuration's dump (a JSON string, or a dict),
    /// every field optional ([`Settings`]). Checked whole, then connected to Redis when a URL
    /// is set.
    #[new]
    fn new(py: Python<'_>, settings: &Bound<'_, PyAny>) -> PyResult<Self> {
        let settings = crate::settings::from_py(settings)?;
        settings.check().map_err(Failure::from)?;
        let redis = settings.redis_config().map_err(Failure::from)?;
        let guard = Self {
            built: Built { settings, redis },
            engine: ForkLocal::new(),
        };
        // Connect now: a wrong address fails here rather than on the first request.
        py.detach(|| guard.engine().map(|_| ()))?;
        Ok(guard)
    }

    /// Decides `rules` together for `identity` and, when every rule allows, consumes `cost`
    /// from each.
    #[pyo3(signature = (identity, rules, cost=None))]
    fn hit(
        &self,
        py: Python<'_>,
        identity: &Bound<'_, PyAny>,
        rules: &Bound<'_, Rules>,
        cost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let identity = args::identity(identity)?;
        let cost = args::cost(cost)?;
        self.decide(py, &identity, rules.get(), cost, Action::Hit)
    }

    /// What [`hit`](Self::hit) would answer, consuming nothing.
    #[pyo3(signature = (identity, rules, cost=None))]
    fn peek(
        &self,
        py: Python<'_>,
        identity: &Bound<'_, PyAny>,
        rules: &Bound<'_, Rules>,
        cost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let identity = args::identity(identity)?;
        let cost = args::cost(cost)?;
        self.decide(py, &identity, rules.get(), cost, Action::Peek)
    }

    /// Decides several `(identity, rules)` pairs together, all-or-nothing: a request whose
    /// rules count for different identities (`global`, a client address, a user). With
    /// `peek`, consumes nothing.
    #[pyo3(signature = (requests, cost=None, peek=false))]
    fn decide_many(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        cost: Option<&Bound<'_, PyAny>>,
        peek: bool,
    ) -> PyResult<Decision> {
        let requests = pairs(requests)?;
        let cost = args::cost(cost)?;
        let mode = if peek { Action::Peek } else { Action::Hit };
        let verdict = py.detach(|| {
            let pairs = requests
                .iter()
                .map(|(identity, rules)| (&**identity, rules.get()));
            self.engine()?.decide(pairs, cost, mode)
        })?;
        Ok(Decision::from(&verdict))
    }

    /// The async [`hit`](Self::hit): a coroutine of the `Decision`, started when first
    /// awaited; bad arguments raise then.
    #[pyo3(signature = (identity, rules, cost=None))]
    fn ahit(
        &self,
        py: Python<'_>,
        identity: &Bound<'_, PyAny>,
        rules: Py<Rules>,
        cost: Option<&Bound<'_, PyAny>>,
    ) -> Call {
        let requests = args::identity(identity).map(|identity| vec![(identity, rules)]);
        self.call(py, requests, args::cost(cost), Action::Hit)
    }

    /// The async [`peek`](Self::peek).
    #[pyo3(signature = (identity, rules, cost=None))]
    fn apeek(
        &self,
        py: Python<'_>,
        identity: &Bound<'_, PyAny>,
        rules: Py<Rules>,
        cost: Option<&Bound<'_, PyAny>>,
    ) -> Call {
        let requests = args::identity(identity).map(|identity| vec![(identity, rules)]);
        self.call(py, requests, args::cost(cost), Action::Peek)
    }

    /// The async [`decide_many`](Self::decide_many).
    #[pyo3(signature = (requests, cost=None, peek=false))]
    fn adecide_many(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        cost: Option<&Bound<'_, PyAny>>,
        peek: bool,
    ) -> Call {
        let mode = if peek { Action::Peek } else { Action::Hit };
        self.call(py, pairs(requests), args::cost(cost), mode)
    }

    /// Forgets the state of `rules` for `identity`.
    fn reset(
        &self,
        py: Python<'_>,
        identity: &Bound<'_, PyAny>,
        rules: &Bound<'_, Rules>,
    ) -> PyResult<()> {
        let identity = args::identity(identity)?;
        let rules = rules.get().as_slice();
        let identity: &str = &identity;
        py.detach(|| self.engine()?.reset(identity, rules))?;
        Ok(())
    }

    /// `memory`, or the Redis URL with its password hidden.
    #[getter]
    fn store(&self) -> String {
        self.built
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
            self.built.settings.key_prefix
        )
    }
}
