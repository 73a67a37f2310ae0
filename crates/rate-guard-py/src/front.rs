//! The HTTP front for the Python adapters: `Front`, `RouteLimits`, `Plan` and `Outcome` over
//! `rate-guard-http`, which owns every rule of key resolution (trusted proxies, JWT, route
//! scoping) so that Python and Rust services build the same keys.
//!
//! Headers come in as ASGI raw headers (`(bytes, bytes)` pairs, any case, any bytes; `str`
//! values are taken as PEP 3333 latin-1 when they fit, UTF-8 otherwise). They are borrowed,
//! not copied, and keys are resolved with the GIL released.

use std::num::NonZeroU32;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use rate_guard_core::{KeyBuilder, Source};
use rate_guard_http as http;
use smallvec::SmallVec;

use crate::decision::Decision;
use crate::errors::Failure;
use crate::guard::Guard;
use crate::rules::Rules;

/// One limit as Python passes it: `(rules, key spec, cost, shadow[, custom slot])`.
type LimitSpec = (Py<Rules>, String, Py<PyAny>, bool, Option<usize>);

/// The most custom keys (stacked `key_func`s) one request may carry.
const MAX_CUSTOM_KEYS: usize = rate_guard_core::MAX_CHECKS;

fn config(e: impl std::fmt::Display) -> Failure {
    Failure::Config(e.to_string())
}

/// The limit specs of a Python list of 4- or 5-tuples.
fn limit_specs(specs: &[Bound<'_, PyAny>]) -> Result<Vec<LimitSpec>, Failure> {
    let bad = || {
        Failure::Config(
            "a limit is a tuple (rules, key spec, cost, shadow[, custom slot])".to_owned(),
        )
    };
    let mut out = Vec::new();
    for spec in specs {
        let tuple = spec.cast::<PyTuple>().map_err(|_| bad())?;
        let slot = match tuple.len() {
            4 => None,
            5 => Some(
                tuple
                    .get_item(4)
                    .and_then(|s| s.extract())
                    .map_err(|_| bad())?,
            ),
            _ => return Err(bad()),
        };
        let (rules, key, cost, shadow): (Py<Rules>, String, Py<PyAny>, bool) = (
            tuple
                .get_item(0)
                .ok()
                .and_then(|r| r.cast_into::<Rules>().ok())
                .ok_or_else(bad)?
                .unbind(),
            tuple
                .get_item(1)
                .and_then(|k| k.extract())
                .map_err(|_| bad())?,
            tuple.get_item(2).map_err(|_| bad())?.unbind(),
            tuple
                .get_item(3)
                .and_then(|s| s.extract())
                .map_err(|_| bad())?,
        );
        out.push((rules, key, cost, shadow, slot));
    }
    Ok(out)
}

/// The limits of `specs`: one per rule (a `Rules` of several rates gives several limits),
/// each with the index of the spec it comes from.
fn limits(py: Python<'_>, specs: &[LimitSpec]) -> Result<Vec<(usize, http::Limit)>, Failure> {
    let mut out = Vec::new();
    for (index, (rules, key, cost, shadow, slot)) in specs.iter().enumerate() {
        let key: http::KeySpec = key.parse().map_err(config)?;
        let cost = crate::args::cost(Some(cost.bind(py)))?.unwrap_or(NonZeroU32::MIN);
        let slot = slot.unwrap_or(0);
        if slot >= MAX_CUSTOM_KEYS {
            return Err(Failure::Config(format!(
                "custom key slot {slot} is out of range: a request has at most \
                 {MAX_CUSTOM_KEYS} key functions"
            )));
        }
        for rule in rules.bind(py).get().as_slice() {
            out.push((
                index,
                http::Limit::new(rule.clone())
                    .key(key.clone())
                    .cost(cost)
                    .shadow(*shadow)
                    .custom_slot(slot),
            ));
        }
    }
    Ok(out)
}

/// A request's own costs for its route's limits: None (each limit's declared cost), or a
/// sequence of one int or None per limit, each int checked against the `cost` range.
fn request_costs(value: Option<&Bound<'_, PyAny>>) -> Result<SmallVec<[Option<u32>; 4]>, Failure> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(SmallVec::new());
    };
    let not_a_list = || {
        Failure::Config(
            "costs must be None or a list of one int or None per limit of the route".to_owned(),
        )
    };
    if value.is_instance_of::<PyString>() {
        return Err(not_a_list());
    }
    let mut out = SmallVec::new();
    for (i, item) in value.try_iter().map_err(|_| not_a_list())?.enumerate() {
        let item = item.map_err(|_| not_a_list())?;
        if i >= rate_guard_core::MAX_CHECKS {
            return Err(Failure::Config(format!(
                "costs holds more than {} entries: a request has at most that many rules",
                rate_guard_core::MAX_CHECKS
            )));
        }
        let cost = crate::args::cost(Some(&item))
            .map_err(|e| Failure::Config(format!("costs[{i}]: {}", failure_text(e))))?;
        out.push(cost.map(NonZeroU32::get));
    }
    Ok(out)
}

fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::Config(m) | Failure::Storage(m) => m,
    }
}

/// The custom keys of a request: one `str` (or None), or a sequence of them, one per custom
/// slot (stacked `key_func`s).
fn custom_keys(value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Option<Text>>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(Vec::new());
    };
    if value.is_instance_of::<PyString>() {
        return Ok(vec![text(Some(value), "custom")?]);
    }
    let mut out = Vec::new();
    for item in value.try_iter().map_err(|_| {
        PyTypeError::new_err("custom must be a str, None, or a list of them (one per key slot)")
    })? {
        if out.len() >= MAX_CUSTOM_KEYS {
            return Err(PyTypeError::new_err(format!(
                "custom holds more than {MAX_CUSTOM_KEYS} keys"
            )));
        }
        out.push(text(Some(&item?), "custom")?);
    }
    Ok(out)
}

/// A header value or name from Python: borrowed bytes, or a `str` encoded.
enum Raw {
    Bytes(PyBackedBytes),
    Encoded(Vec<u8>),
}

impl AsRef<[u8]> for Raw {
    fn as_ref(&self) -> &[u8] {
        match self {
            Raw::Bytes(b) => b,
            Raw::Encoded(v) => v,
        }
    }
}

fn raw(item: &Bound<'_, PyAny>, what: &str) -> PyResult<Raw> {
    if let Ok(bytes) = item.extract::<PyBackedBytes>() {
        return Ok(Raw::Bytes(bytes));
    }
    if let Ok(s) = item.cast::<PyString>() {
        let text = s.to_string_lossy();
        // PEP 3333: WSGI environ strings are latin-1 decodings of the bytes received.
        let latin1: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(c).ok()).collect();
        return Ok(Raw::Encoded(
            latin1.unwrap_or_else(|| text.as_bytes().to_vec()),
        ));
    }
    Err(PyTypeError::new_err(format!(
        "header {what} must be bytes or str, not {}",
        item.get_type().name()?
    )))
}

/// `(name, value)` pairs from any iterable of 2-item tuples or sequences.
fn raw_headers(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(Raw, Raw)>> {
    let mut out = Vec::new();
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value) = if let Ok(t) = item.cast::<PyTuple>() {
            if t.len() != 2 {
                return Err(PyTypeError::new_err(
                    "each header must be a (name, value) pair",
                ));
            }
            (t.get_item(0)?, t.get_item(1)?)
        } else {
            (item.get_item(0)?, item.get_item(1)?)
        };
        out.push((raw(&name, "name")?, raw(&value, "value")?));
    }
    Ok(out)
}

/// A `str` argument as Rust text (lone surrogates replaced rather than raised).
fn text(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Text>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(s) = value.extract::<PyBackedStr>() {
        return Ok(Some(Text::Borrowed(s)));
    }
    match value.cast::<PyString>() {
        Ok(s) => Ok(Some(Text::Owned(s.to_string_lossy().into_owned()))),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be a str or None, not {}",
            value.get_type().name()?
        ))),
    }
}

/// The peer of a request: a `str`, None, or ASGI's `scope["client"]` as it is (a `(host,
/// port)` pair, or None), so that an adapter hands the scope's value over without unpacking it.
fn peer_text(peer: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Text>> {
    let Some(peer) = peer else {
        return Ok(None);
    };
    let host = if let Ok(pair) = peer.cast::<PyTuple>() {
        pair.get_item(0).ok()
    } else if let Ok(pair) = peer.cast::<PyList>() {
        pair.get_item(0).ok()
    } else {
        return text(Some(peer), "peer");
    };
    text(host.as_ref(), "peer")
}

enum Text {
    Borrowed(PyBackedStr),
    Owned(String),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
        }
    }
}

/// The limits of a service and how its requests are keyed and answered (see
/// `rate_guard_http::Front`). Build once; `plan` then `decide` (or `adecide`) per request.
#[pyclass(frozen, module = "py_rate_guard._native", name = "Front")]
pub(crate) struct Front {
    inner: http::Front,
    /// Whether keys may come from JWTs, whose signature checks are worth releasing the GIL
    /// for; resolving every other key takes well under the cost of releasing it.
    reads_tokens: bool,
}

// PyO3 hands arguments over by value.
#[allow(clippy::needless_pass_by_value)]
#[pymethods]
impl Front {
    /// The front `settings` describe (the configuration's dump: a JSON string, or a dict),
    /// global rules included. `custom_slots[i]` is the custom key slot of global rule `i`
    /// (its key function's, for rules keyed `custom`; default 0).
    #[new]
    #[pyo3(signature = (settings, *, custom_slots=Vec::new()))]
    fn new(settings: &Bound<'_, PyAny>, custom_slots: Vec<usize>) -> PyResult<Self> {
        let settings = crate::settings::from_py(settings)?;
        let reads_tokens = !settings.jwt_keys.is_empty() || !settings.jwt_verify;
        let mut builder = settings.front_builder().map_err(Failure::from)?;
        let globals = settings.global_limits().map_err(Failure::from)?;
        for (i, limits) in globals.into_iter().enumerate() {
            let slot = custom_slots.get(i).copied().unwrap_or(0);
            if slot >= MAX_CUSTOM_KEYS {
                return Err(Failure::Config(format!(
                    "custom key slot {slot} is out of range: a request has at most \
                     {MAX_CUSTOM_KEYS} key functions"
                ))
                .into());
            }
            for limit in limits {
                builder = builder.global(limit.custom_slot(slot));
            }
        }
        Ok(Self {
            inner: builder.build().map_err(config)?,
            reads_tokens,
        })
    }

    /// The limits of one route, scoped to its path `template` (and `method`): they count apart
    /// from the same rules globally and on other routes. With `scope` (a shared limit's name,
    /// 1 to 64 characters), they count in that scope instead: one quota for every route, in
    /// Python or Rust, that declares the scope and the rule.
    #[pyo3(signature = (template, rules, method=None, scope=None))]
    fn route(
        &self,
        py: Python<'_>,
        template: &str,
        rules: Vec<Bound<'_, PyAny>>,
        method: Option<&str>,
        scope: Option<&str>,
    ) -> PyResult<RouteLimits> {
        let (specs, limits): (Vec<usize>, Vec<http::Limit>) =
            limits(py, &limit_specs(&rules)?)?.into_iter().unzip();
        let inner = self
            .inner
            .route_in(template, method, scope, limits)
            .map_err(config)?;
        Ok(RouteLimits { inner, specs })
    }

    /// Resolves the identity of every rule that applies to a request. Never raises for what a
    /// client sends: a missing or unusable identity falls back to the client address. `peer`
    /// is the client address, or ASGI's `scope["client"]` as it is.
    /// `costs`: None, or one int (this request's cost) or None (the declared cost) per limit
    /// of `route`, in `route.rule_ids` order.
    #[pyo3(signature = (peer, headers, route=None, *, user=None, custom=None, costs=None))]
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        py: Python<'_>,
        peer: Option<&Bound<'_, PyAny>>,
        headers: &Bound<'_, PyAny>,
        route: Option<&Bound<'_, RouteLimits>>,
        user: Option<&Bound<'_, PyAny>>,
        custom: Option<&Bound<'_, PyAny>>,
        costs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Plan> {
        let request = Request {
            peer,
            headers,
            route,
            user,
            custom,
            costs,
        };
        Ok(Plan {
            inner: Arc::new(self.make_plan(py, &request)?),
        })
    }

    /// Decides `plan` on `guard`'s store (sync, the GIL released): one store call for the
    /// enforced rules, a second only for shadow rules of an admitted request.
    fn decide(
        &self,
        py: Python<'_>,
        guard: &Bound<'_, Guard>,
        plan: &Bound<'_, Plan>,
    ) -> PyResult<Outcome> {
        let front = &self.inner;
        let plan = &plan.get().inner;
        if let Some(outcome) = self.decide_at_once(guard, plan) {
            return Ok(Outcome::from(outcome));
        }
        let outcome = guard.get().run_blocking(py, move |limiter| async move {
            front.decide(&limiter, plan).await
        })?;
        Ok(Outcome::from(outcome))
    }

    /// `decide` for the event loop: an awaitable of the `Outcome` (call it from a coroutine).
    fn adecide<'py>(
        &self,
        py: Python<'py>,
        guard: &Bound<'py, Guard>,
        plan: &Bound<'py, Plan>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // The memory store answers at once: an awaitable that is ready, no future built.
        if let Some(outcome) = self.decide_at_once(guard, &plan.get().inner) {
            return crate::bridge::Ready::awaitable(
                py,
                Py::new(py, Outcome::from(outcome)).map(Py::into_any),
            );
        }
        let front = self.inner.clone();
        let plan = Arc::clone(&plan.get().inner);
        let call = guard.get().call_async(
            py,
            move |limiter| async move { front.decide(&limiter, &plan).await },
            |py, outcome| Ok(Py::new(py, Outcome::from(outcome))?.into_any()),
        )?;
        Ok(Bound::new(py, call)?.into_any())
    }

    /// `plan` then `decide` in one call: the outcome of one request (sync, the GIL released
    /// for Redis), its plan in `Outcome.plan`. `costs` as `plan` takes them.
    #[pyo3(signature = (guard, peer, headers, route=None, *, user=None, custom=None, costs=None))]
    #[allow(clippy::too_many_arguments)]
    fn decide_request(
        &self,
        py: Python<'_>,
        guard: &Bound<'_, Guard>,
        peer: Option<&Bound<'_, PyAny>>,
        headers: &Bound<'_, PyAny>,
        route: Option<&Bound<'_, RouteLimits>>,
        user: Option<&Bound<'_, PyAny>>,
        custom: Option<&Bound<'_, PyAny>>,
        costs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Outcome> {
        let request = Request {
            peer,
            headers,
            route,
            user,
            custom,
            costs,
        };
        let plan = Arc::new(self.make_plan(py, &request)?);
        let front = &self.inner;
        if let Some(outcome) = self.decide_at_once(guard, &plan) {
            return Ok(Outcome::planned(outcome, plan));
        }
        let outcome = guard.get().run_blocking(py, |limiter| {
            let plan = &plan;
            async move { front.decide(&limiter, plan).await }
        })?;
        Ok(Outcome::planned(outcome, plan))
    }

    /// `plan` then `adecide` in one call (what an ASGI middleware does on every request): an
    /// awaitable of the `Outcome`, its plan in `Outcome.plan`. `costs` as `plan` takes them.
    #[pyo3(signature = (guard, peer, headers, route=None, *, user=None, custom=None, costs=None))]
    #[allow(clippy::too_many_arguments)]
    fn adecide_request<'py>(
        &self,
        py: Python<'py>,
        guard: &Bound<'py, Guard>,
        peer: Option<&Bound<'py, PyAny>>,
        headers: &Bound<'py, PyAny>,
        route: Option<&Bound<'py, RouteLimits>>,
        user: Option<&Bound<'py, PyAny>>,
        custom: Option<&Bound<'py, PyAny>>,
        costs: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = Request {
            peer,
            headers,
            route,
            user,
            custom,
            costs,
        };
        let plan = Arc::new(self.make_plan(py, &request)?);
        // The memory store answers at once: an awaitable that is ready, no future built.
        if let Some(outcome) = self.decide_at_once(guard, &plan) {
            return crate::bridge::Ready::awaitable(
                py,
                Py::new(py, Outcome::planned(outcome, plan)).map(Py::into_any),
            );
        }
        // A coroutine whose hand-off to the I/O thread is batched per loop iteration.
        let front = self.inner.clone();
        let call = guard.get().call_async(
            py,
            move |limiter| async move {
                let outcome = front.decide(&limiter, &plan).await;
                (outcome, plan)
            },
            |py, (outcome, plan)| Ok(Py::new(py, Outcome::planned(outcome, plan))?.into_any()),
        )?;
        Ok(Bound::new(py, call)?.into_any())
    }

    /// For `bench/http_bench.py`'s floor case: an awaitable of None that makes the trip of a
    /// Redis decision through `guard`'s I/O thread and the batched bridge, without the Redis
    /// call (a task on the I/O runtime that yields once, then hands None back).
    #[staticmethod]
    fn _bridge_round_trip<'py>(
        py: Python<'py>,
        guard: &Bound<'py, Guard>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard.get().run_async(
            py,
            |_limiter| tokio::task::yield_now(),
            |py, ()| Ok(py.None()),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "Front(global_rules={}, headers={:?})",
            self.inner.global_limits().len(),
            self.inner.header_style().name()
        )
    }
}

impl Front {
    /// The outcome of `plan` at once when `guard`'s store answers without I/O (the memory
    /// store), else `None`.
    fn decide_at_once(&self, guard: &Bound<'_, Guard>, plan: &http::Plan) -> Option<http::Outcome> {
        guard
            .get()
            .local_limiter()
            .and_then(|limiter| self.inner.decide_now(limiter, plan))
    }

    fn make_plan(&self, py: Python<'_>, request: &Request<'_, '_>) -> PyResult<http::Plan> {
        let peer = peer_text(request.peer)?;
        let user = text(request.user, "user")?;
        let customs = custom_keys(request.custom)?;
        let costs = request_costs(request.costs)?;
        let headers = raw_headers(request.headers)?;
        let route = request.route.map(|r| &r.get().inner);
        let front = &self.inner;
        let plan = || {
            let keys: SmallVec<[Option<&str>; 4]> = customs
                .iter()
                .map(|c| c.as_ref().map(Text::as_str))
                .collect();
            let request = http::RequestInfo {
                peer: http::Peer::parse(peer.as_ref().map(Text::as_str)),
                headers: &headers[..],
                user: user.as_ref().map(Text::as_str),
                custom: keys.first().copied().flatten(),
            };
            front.plan_with_costs(&request, route, keys.get(1..).unwrap_or_default(), &costs)
        };
        let planned = if self.reads_tokens {
            py.detach(plan)
        } else {
            plan()
        };
        Ok(planned.map_err(config)?)
    }
}

/// The arguments of one request, as `plan` and `decide_request` take them.
struct Request<'a, 'py> {
    peer: Option<&'a Bound<'py, PyAny>>,
    headers: &'a Bound<'py, PyAny>,
    route: Option<&'a Bound<'py, RouteLimits>>,
    user: Option<&'a Bound<'py, PyAny>>,
    custom: Option<&'a Bound<'py, PyAny>>,
    costs: Option<&'a Bound<'py, PyAny>>,
}

/// The limits of one route (opaque; built by `Front.route`, once per route).
#[pyclass(frozen, module = "py_rate_guard._native", name = "RouteLimits")]
pub(crate) struct RouteLimits {
    pub(crate) inner: http::RouteLimits,
    /// For each limit, the index of the spec (`Front.route`'s list) it comes from.
    specs: Vec<usize>,
}

#[pymethods]
impl RouteLimits {
    /// The route's path template.
    #[getter]
    fn template(&self) -> &str {
        self.inner.template()
    }

    /// The method the limits apply to (upper case), or None for every method.
    #[getter]
    fn method(&self) -> Option<&str> {
        self.inner.method()
    }

    /// The shared scope the limits count in, or None (this route's own quota).
    #[getter]
    fn scope(&self) -> Option<&str> {
        self.inner.scope()
    }

    /// For each limit (in `rule_ids` order, the order of `costs`), the index of the spec in
    /// `Front.route`'s list it comes from: a spec whose rate string holds several rates gives
    /// several limits.
    #[getter]
    fn spec_indexes(&self) -> Vec<usize> {
        self.specs.clone()
    }

    /// The scoped ids of the route's rules, which name their keys.
    #[getter]
    fn rule_ids(&self) -> Vec<String> {
        self.inner
            .limits()
            .iter()
            .map(|l| l.rule().id().to_owned())
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "RouteLimits(template={:?}, method={:?}, scope={:?}, rules={})",
            self.inner.template(),
            self.inner.method(),
            self.inner.scope(),
            self.inner.limits().len()
        )
    }
}

/// What one request is decided on: `(rule id, identity, cost, shadow)` per applicable rule.
#[pyclass(frozen, module = "py_rate_guard._native", name = "Plan")]
pub(crate) struct Plan {
    pub(crate) inner: Arc<http::Plan>,
}

#[pymethods]
impl Plan {
    /// `(rule id, identity, cost, shadow)` of each rule, global rules first.
    #[getter]
    fn items(&self) -> Vec<(String, String, u32, bool)> {
        self.inner
            .items()
            .iter()
            .map(|i| {
                (
                    i.rule().id().to_owned(),
                    i.identity().to_owned(),
                    i.cost().get(),
                    i.is_shadow(),
                )
            })
            .collect()
    }

    /// The identity of each rule without its kind tag (`"203.0.113.7"` for `"ip:203.0.113.7"`,
    /// a header's value, a user id): what a one-argument limit callable is given.
    #[getter]
    fn values(&self) -> Vec<String> {
        self.inner
            .items()
            .iter()
            .map(|i| i.value().to_owned())
            .collect()
    }

    /// The storage key of each rule under `key_prefix`: the same keys a Rust service
    /// configured alike uses.
    #[pyo3(signature = (key_prefix="rate_guard"))]
    fn keys(&self, key_prefix: &str) -> PyResult<Vec<String>> {
        let keys = KeyBuilder::new(key_prefix).map_err(Failure::from)?;
        Ok(self.inner.keys(&keys))
    }

    fn __len__(&self) -> usize {
        self.inner.items().len()
    }

    fn __repr__(&self) -> String {
        format!("Plan({} rules)", self.inner.items().len())
    }
}

/// The answer to one request. When `allowed`, add `headers` to the application's response;
/// when not, answer `status` with `body` and `headers` (its content-type included).
#[pyclass(frozen, module = "py_rate_guard._native", name = "Outcome")]
pub(crate) struct Outcome {
    pub(crate) inner: http::Outcome,
    decision: Option<Decision>,
    pub(crate) plan: Option<Arc<http::Plan>>,
}

impl From<http::Outcome> for Outcome {
    fn from(inner: http::Outcome) -> Self {
        let decision = inner.verdict().map(Decision::from);
        Self {
            inner,
            decision,
            plan: None,
        }
    }
}

impl Outcome {
    /// The outcome of `plan`, which it keeps (for the logs of a denial).
    fn planned(inner: http::Outcome, plan: Arc<http::Plan>) -> Self {
        Self {
            plan: Some(plan),
            ..Self::from(inner)
        }
    }
}

#[pymethods]
impl Outcome {
    /// False only when an enforced rule denies (or the store is down and a rule fails
    /// closed); shadow rules never block.
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed()
    }

    /// 200, 429 (limited) or 503 (store down, failing closed).
    #[getter]
    fn status(&self) -> u16 {
        self.inner.status()
    }

    /// `(name, value)` byte pairs, lowercase names.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pairs = self.inner.headers().iter().map(|(name, value)| {
            (
                PyBytes::new(py, name.as_bytes()),
                PyBytes::new(py, value.as_bytes()),
            )
        });
        PyList::new(py, pairs)
    }

    /// The JSON body of a refusal; `b""` when allowed.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.body().as_bytes())
    }

    /// The enforced rules' combined decision; None when no enforced rule was decided.
    #[getter]
    fn decision(&self) -> Option<Decision> {
        self.decision.clone()
    }

    /// The plan it decided (`Front.decide_request`, `Front.adecide_request`); None from
    /// `Front.decide` and `Front.adecide`, whose caller holds it.
    #[getter]
    fn plan(&self) -> Option<Plan> {
        self.plan.as_ref().map(|inner| Plan {
            inner: Arc::clone(inner),
        })
    }

    /// The id of the rule the decision reports (route rules under their scoped id).
    #[getter]
    fn rule(&self) -> Option<&str> {
        self.inner.rule()
    }

    /// The ids of the shadow rules that would have denied the request.
    #[getter]
    fn shadow_denied(&self) -> Vec<String> {
        self.inner.shadow_denied().to_vec()
    }

    /// Whether the store was unavailable and the decision is a stand-in.
    #[getter]
    fn degraded(&self) -> bool {
        self.inner.is_degraded()
    }

    /// Who decided: `store`, `deny_cache`, `fallback`, `fail_open`, `fail_closed`; None when
    /// no enforced rule was decided.
    #[getter]
    fn source(&self) -> Option<&'static str> {
        self.inner.verdict().map(|v| Source::name(v.source()))
    }

    /// An error the limiter answered around (for logging), or None.
    #[getter]
    fn error(&self) -> Option<String> {
        self.inner.error().map(ToString::to_string)
    }

    fn __repr__(&self) -> String {
        format!(
            "Outcome(allowed={}, status={}, rule={}, shadow_denied={:?})",
            if self.inner.allowed() {
                "True"
            } else {
                "False"
            },
            self.inner.status(),
            // Python's spelling: a quoted id or None, never Rust's `Some(..)`.
            self.inner
                .rule()
                .map_or_else(|| "None".to_owned(), |r| format!("'{r}'")),
            self.inner.shadow_denied()
        )
    }
}
