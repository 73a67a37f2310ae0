//! The async bridge: results computed on tokio, delivered to asyncio futures in batches.
//!
//! The stock `pyo3-async-runtimes` bridge takes the GIL on a blocking-pool thread for every
//! result and grows a hundred threads under load (a prototype measured ~50 µs CPU per call, about
//! what pure redis-py asyncio costs, and ~170 OS threads). Here tokio tasks
//! never take the GIL:
//!
//! - each event loop gets one [`LoopBridge`]: an `eventfd` registered once with
//!   `loop.add_reader`, a queue, and an `armed` flag;
//! - a finished task pushes `(future, result)` onto the queue and writes the eventfd only when
//!   it arms the flag (idle → armed), so a burst of results costs one wake-up;
//! - the reader callback ([`Drainer`]) runs on the loop thread with the GIL held, disarms,
//!   takes the whole queue and sets every result that is still wanted (a cancelled future is
//!   skipped: its Redis call has happened, which a rate limiter can accept).
//!
//! Bridges are found by the running loop. A loop that is closed or garbage collected gives its
//! bridge up (its eventfd closes when the last task holding it finishes), so a test suite that
//! makes a loop per test does not leak descriptors. Bridges belong to one process: after
//! `fork()` the child makes new ones.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyTuple, PyWeakrefReference};

use tokio::runtime::Runtime;

use crate::fork;

/// Turns a task's output into the Python value of its future (on the loop thread).
pub(crate) type Resolve = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

struct Completion {
    future: Py<PyAny>,
    resolve: Resolve,
}

/// A call started on the loop thread, to be handed to the runtime with its batch.
struct Outgoing {
    job: Job,
    future: Py<PyAny>,
    runtime: &'static Runtime,
}

/// One event loop's completion queue and its wake-up descriptor.
pub(crate) struct LoopBridge {
    efd: OwnedFd,
    armed: AtomicBool,
    queue: Mutex<Vec<Completion>>,
    /// The queue's other buffer: the two take turns, so draining allocates nothing.
    spare: Mutex<Vec<Completion>>,
    /// Calls started in this loop iteration, handed to the runtime together by a [`Flusher`].
    outbox: Mutex<Vec<Outgoing>>,
}

impl LoopBridge {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: AtomicBool::new(false),
            queue: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            outbox: Mutex::new(Vec::new()),
        })
    }

    /// Hands `future` its result, from any thread, without the GIL.
    pub(crate) fn complete(&self, future: Py<PyAny>, resolve: Resolve) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Completion { future, resolve });
        if !self.armed.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd. It cannot fail short
            // of a counter overflow, which a drained, disarmed counter never reaches.
            unsafe { libc::write(self.efd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }

    fn drain(&self, py: Python<'_>) {
        let mut sink: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing to read) is harmless.
        unsafe { libc::read(self.efd.as_raw_fd(), (&raw mut sink).cast(), 8) };
        // Disarm before taking the queue: a result pushed after the take re-arms and wakes us.
        self.armed.store(false, Ordering::SeqCst);
        let mut batch =
            std::mem::take(&mut *self.spare.lock().unwrap_or_else(PoisonError::into_inner));
        std::mem::swap(
            &mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner),
            &mut batch,
        );
        for Completion { future, resolve } in batch.drain(..) {
            let future = future.into_bound(py);
            if let Err(e) = deliver(&future, resolve) {
                e.write_unraisable(py, Some(&future));
            }
        }
        *self.spare.lock().unwrap_or_else(PoisonError::into_inner) = batch;
    }

    /// Queues `call` for the runtime; the first of a loop iteration schedules the
    /// [`Flusher`] that hands them over together (one wake-up of the runtime and of each
    /// connection for the batch, not one per call).
    fn send_later(self: &Arc<Self>, event_loop: &Bound<'_, PyAny>, call: Outgoing) -> PyResult<()> {
        let first = {
            let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
            outbox.push(call);
            outbox.len() == 1
        };
        if first {
            let py = event_loop.py();
            let flusher = Flusher {
                bridge: Arc::clone(self),
            };
            if let Err(e) = event_loop.call_method1(pyo3::intern!(py, "call_soon"), (flusher,)) {
                // A closed loop: nothing will run these calls.
                drop(std::mem::take(
                    &mut *self.outbox.lock().unwrap_or_else(PoisonError::into_inner),
                ));
                rate_guard_redis::wake_deferred();
                return Err(e);
            }
        }
        Ok(())
    }

    fn flush(self: &Arc<Self>) {
        // The connections first: their writes start while the calls are being spawned.
        rate_guard_redis::wake_deferred();
        let batch =
            std::mem::take(&mut *self.outbox.lock().unwrap_or_else(PoisonError::into_inner));
        for Outgoing {
            job,
            future,
            runtime,
        } in batch
        {
            let bridge = Arc::clone(self);
            runtime.spawn(async move {
                let resolve = job.await;
                bridge.complete(future, resolve);
            });
        }
    }

    fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }
}

fn deliver(future: &Bound<'_, PyAny>, resolve: Resolve) -> PyResult<()> {
    let py = future.py();
    let delivered = match resolve(py) {
        Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
        Err(e) => future.call_method1(pyo3::intern!(py, "set_exception"), (e.into_value(py),)),
    };
    match delivered {
        Ok(_) => Ok(()),
        // Cancelled while in flight (asked only then: one call less per result).
        Err(_)
            if future
                .call_method0(pyo3::intern!(py, "done"))?
                .is_truthy()? =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The reader callback registered with `loop.add_reader` (runs on the loop thread).
#[pyclass(frozen, module = "py_rate_guard._native")]
pub(crate) struct Drainer {
    bridge: Arc<LoopBridge>,
}

#[pymethods]
impl Drainer {
    fn __call__(&self, py: Python<'_>) {
        self.bridge.drain(py);
    }
}

/// Hands the calls started in one loop iteration to the runtime (scheduled with
/// `loop.call_soon` by the first of them).
#[pyclass(frozen, module = "py_rate_guard._native")]
pub(crate) struct Flusher {
    bridge: Arc<LoopBridge>,
}

#[pymethods]
impl Flusher {
    fn __call__(&self) {
        self.bridge.flush();
    }
}

/// A bridge registered with one loop.
struct Entry {
    /// A weak reference to the loop, so the registry never keeps a loop alive.
    event_loop: Py<PyWeakrefReference>,
    bridge: Arc<LoopBridge>,
}

struct Registry {
    generation: u64,
    entries: Vec<Entry>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    generation: 0,
    entries: Vec::new(),
});

/// A loop's bridge as a thread remembers it: fork generation, weak loop, bridge.
type Remembered = (u64, Py<PyWeakrefReference>, Arc<LoopBridge>);

thread_local! {
    /// The last loop this thread asked for, and its bridge: the common case is one loop per
    /// thread for the life of the process.
    static LAST: RefCell<Option<Remembered>> = const { RefCell::new(None) };
}

/// The running loop of this thread (`RuntimeError` when there is none).
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?
    .bind(py)
    .call0()
}

/// The bridge of `event_loop`, registered on first use.
pub(crate) fn bridge_for(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<LoopBridge>> {
    let py = event_loop.py();
    let generation = fork::generation();
    let cached = LAST.with_borrow(|last| match last {
        Some((g, weak, bridge)) if *g == generation && is(weak.bind(py), event_loop) => {
            Some(Arc::clone(bridge))
        }
        _ => None,
    });
    if let Some(bridge) = cached {
        return Ok(bridge);
    }
    let (weak, bridge) = register(event_loop, generation)?;
    LAST.with_borrow_mut(|last| *last = Some((generation, weak, Arc::clone(&bridge))));
    Ok(bridge)
}

fn is(weak: &Bound<'_, PyWeakrefReference>, event_loop: &Bound<'_, PyAny>) -> bool {
    weak.upgrade().is_some_and(|l| l.is(event_loop))
}

fn register(
    event_loop: &Bound<'_, PyAny>,
    generation: u64,
) -> PyResult<(Py<PyWeakrefReference>, Arc<LoopBridge>)> {
    // The lock is never held across a call into Python code: another thread could take the
    // GIL meanwhile and wait for the lock while holding it.
    let py = event_loop.py();
    let others: Vec<Py<PyWeakrefReference>> = {
        let mut registry = lock();
        if registry.generation != generation {
            // Inherited from the parent: those loops and descriptors are not ours to use or
            // close.
            std::mem::forget(std::mem::take(&mut registry.entries));
            registry.generation = generation;
        }
        if let Some(entry) = registry
            .entries
            .iter()
            .find(|e| is(e.event_loop.bind(py), event_loop))
        {
            return Ok((entry.event_loop.clone_ref(py), Arc::clone(&entry.bridge)));
        }
        registry
            .entries
            .iter()
            .map(|e| e.event_loop.clone_ref(py))
            .collect()
    };
    // A closed or collected loop will never drain again: give its bridge up.
    let gone: Vec<Py<PyWeakrefReference>> = others
        .into_iter()
        .filter(|weak| {
            weak.bind(py).upgrade().is_none_or(|l| {
                l.call_method0(pyo3::intern!(py, "is_closed"))
                    .and_then(|c| c.is_truthy())
                    .unwrap_or(true)
            })
        })
        .collect();
    let bridge = Arc::new(LoopBridge::new().map_err(|e| {
        crate::StorageError::new_err(format!("cannot create the async bridge's eventfd: {e}"))
    })?);
    event_loop.call_method1(
        pyo3::intern!(py, "add_reader"),
        (
            bridge.fd(),
            Drainer {
                bridge: Arc::clone(&bridge),
            },
        ),
    )?;
    // When the loop is collected, forget its bridge at once. The callback may run inside a
    // garbage collection on a thread that holds the lock: it then leaves the entry to the
    // sweep above.
    let forget = PyCFunction::new_closure(py, None, None, |args: &Bound<'_, PyTuple>, _| {
        let py = args.py();
        if let (Ok(dead), Ok(mut registry)) = (args.get_item(0), REGISTRY.try_lock()) {
            let removed = take_where(&mut registry.entries, |e| e.event_loop.bind(py).is(&dead));
            drop(registry);
            drop(removed);
        }
    })?;
    let weak = PyWeakrefReference::new_with(event_loop, forget)?.unbind();
    let removed = {
        let mut registry = lock();
        registry.entries.push(Entry {
            event_loop: weak.clone_ref(py),
            bridge: Arc::clone(&bridge),
        });
        take_where(&mut registry.entries, |e| {
            gone.iter().any(|g| e.event_loop.bind(py).is(g.bind(py)))
        })
    };
    drop(removed);
    Ok((weak, bridge))
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the entries that match and hands them back, to be dropped after the lock.
fn take_where(entries: &mut Vec<Entry>, matches: impl Fn(&Entry) -> bool) -> Vec<Entry> {
    let (removed, kept) = std::mem::take(entries).into_iter().partition(matches);
    *entries = kept;
    removed
}

/// The number of loops with a live bridge in this process (for tests of descriptor leaks).
pub(crate) fn bridges(py: Python<'_>) -> usize {
    let registry = lock();
    if registry.generation != fork::generation() {
        return 0;
    }
    registry
        .entries
        .iter()
        .filter(|e| e.event_loop.bind(py).upgrade().is_some())
        .count()
}

/// An awaitable whose value is already known: awaiting it returns at once, without a loop
/// round (the memory store, the deny cache, an open breaker).
#[pyclass(module = "py_rate_guard._native")]
pub(crate) struct Ready {
    value: Option<PyResult<Py<PyAny>>>,
}

impl Ready {
    pub(crate) fn new(value: PyResult<Py<PyAny>>) -> Self {
        Self { value: Some(value) }
    }

    /// `value` as an awaitable that is ready at once.
    pub(crate) fn awaitable(
        py: Python<'_>,
        value: PyResult<Py<PyAny>>,
    ) -> PyResult<Bound<'_, PyAny>> {
        Ok(Bound::new(py, Self::new(value))?.into_any())
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> PyResult<Py<PyAny>> {
        match self.value.take() {
            Some(Ok(value)) => Err(PyStopIteration::new_err((value,))),
            Some(Err(e)) => Err(e),
            None => Err(PyStopIteration::new_err(())),
        }
    }
}

/// Work for the I/O runtime whose output becomes a Python value on the loop thread.
pub(crate) type Job = Pin<Box<dyn Future<Output = Resolve> + Send>>;

/// The awaitable of an async call: a coroutine (it has `send`, `throw` and `close`, so
/// `asyncio.run`, `create_task` and `gather` take it) that starts its job when first awaited,
/// in the loop that awaits it; so it can be made outside a running loop. A job that needs no
/// I/O (memory store, deny cache, open breaker) finishes in that first step; otherwise the
/// coroutine waits on a future of the loop, resolved through the batched bridge.
///
/// It replaces an `async def` around an awaitable: one object and no Python frame per call.
#[pyclass(module = "py_rate_guard._native")]
pub(crate) struct Call {
    state: State,
}

enum State {
    /// Not awaited yet. (The mutex makes the job `Sync`, as a Python object must be; it is
    /// only ever reached through `&mut`, without locking.)
    Start {
        job: Mutex<Job>,
        runtime: Option<&'static Runtime>,
    },
    /// The call failed before it started (its arguments); raised when awaited.
    Failed(PyErr),
    /// Waiting on this future of the loop.
    Waiting(Py<PyAny>),
    /// Answered at once, when awaited: the next step returns this.
    Finished(Py<PyAny>),
    Done,
}

/// What starting a job gave.
enum Started<'py> {
    /// The job needed no I/O: its value.
    Value(Py<PyAny>),
    /// The future of the running loop that the job will resolve.
    Future(Bound<'py, PyAny>),
}

impl Call {
    /// A call of `job`, run on `runtime` (the process's runtime when `None`) if it waits.
    pub(crate) fn new(job: Job, runtime: Option<&'static Runtime>) -> Self {
        Self {
            state: State::Start {
                job: Mutex::new(job),
                runtime,
            },
        }
    }

    /// A call that raises `error` when awaited.
    pub(crate) fn failed(error: PyErr) -> Self {
        Self {
            state: State::Failed(error),
        }
    }

    /// Starts the job: its value when it needs no I/O, else the future of the running loop
    /// it will resolve.
    fn start<'py>(
        py: Python<'py>,
        job: Mutex<Job>,
        runtime: Option<&'static Runtime>,
    ) -> PyResult<Started<'py>> {
        let mut job = job.into_inner().unwrap_or_else(PoisonError::into_inner);
        // The first poll writes the command; its connection is woken with the
        // batch (`send_later`).
        let waiting = {
            let _context = runtime.map(Runtime::enter);
            rate_guard_redis::defer_wakeups(|| {
                job.as_mut().poll(&mut Context::from_waker(Waker::noop()))
            })
        };
        if let Poll::Ready(resolve) = waiting {
            rate_guard_redis::wake_deferred();
            return Ok(Started::Value(resolve(py)?));
        }
        let started = (|| {
            let runtime = match runtime {
                Some(runtime) => runtime,
                None => crate::runtime::runtime()?,
            };
            let event_loop = running_loop(py)?;
            let bridge = bridge_for(&event_loop)?;
            let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
            let call = Outgoing {
                job,
                future: future.clone().unbind(),
                runtime,
            };
            bridge.send_later(&event_loop, call)?;
            Ok::<_, PyErr>(future)
        })();
        match started {
            Ok(future) => Ok(Started::Future(future)),
            Err(e) => {
                rate_guard_redis::wake_deferred();
                Err(e)
            }
        }
    }

    /// One step (`send`, `__next__`): the future to wait on, or `StopIteration` with the
    /// result, or the error.
    fn step(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start { job, runtime } => match Self::start(py, job, runtime)? {
                Started::Value(value) => Err(PyStopIteration::new_err((value,))),
                Started::Future(future) => {
                    // What `Future.__await__` does before it yields the future to the task.
                    future.setattr(pyo3::intern!(py, "_asyncio_future_blocking"), true)?;
                    let future = future.unbind();
                    self.state = State::Waiting(future.clone_ref(py));
                    Ok(future)
                }
            },
            State::Finished(value) => Err(PyStopIteration::new_err((value,))),
            State::Failed(error) => Err(error),
            State::Waiting(future) => {
                let result = future.bind(py).call_method0(pyo3::intern!(py, "result"))?;
                Err(PyStopIteration::new_err((result.unbind(),)))
            }
            State::Done => Err(PyRuntimeError::new_err(
                "cannot reuse already awaited coroutine",
            )),
        }
    }
}

#[pymethods]
impl Call {
    /// `await call`: the job starts here, and what the awaiting coroutine then iterates is the
    /// loop future's own iterator (C, no exception per result), or this object when the answer
    /// is already known. A task that drives the call itself (`asyncio.run`, `create_task`)
    /// uses `send` instead.
    fn __await__(mut slf: PyRefMut<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let (job, runtime) = match std::mem::replace(&mut slf.state, State::Done) {
            State::Start { job, runtime } => (job, runtime),
            other => {
                // Already under way (driven by `send`): go on that way.
                slf.state = other;
                return Ok(slf.into_pyobject(py)?.into_any().unbind());
            }
        };
        match Self::start(py, job, runtime)? {
            Started::Value(value) => {
                slf.state = State::Finished(value);
                Ok(slf.into_pyobject(py)?.into_any().unbind())
            }
            Started::Future(future) => Ok(future
                .call_method0(pyo3::intern!(py, "__await__"))?
                .unbind()),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    /// The loop resumes the coroutine with `None`; the value is not used.
    #[allow(clippy::needless_pass_by_value)]
    fn send(&mut self, py: Python<'_>, _value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    /// Raises `value` (or `kind`) in the coroutine: it ends there (a call in flight still
    /// counts, as a cancelled one does).
    #[pyo3(signature = (kind, value=None, _traceback=None))]
    #[allow(clippy::needless_pass_by_value)]
    fn throw(
        &mut self,
        kind: Bound<'_, PyAny>,
        value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.state = State::Done;
        Err(match value.filter(|v| !v.is_none()) {
            Some(value) => PyErr::from_value(value),
            None => PyErr::from_value(kind),
        })
    }

    fn close(&mut self) {
        self.state = State::Done;
    }
}
