//! [`ThreadStore`]: Redis I/O of sync calls on the calling thread, over at most
//! `redis_pool_size` connections per process whatever the number of threads.
//!
//! A sync call that hands its Redis call to a runtime worker and parks pays a thread hand-off
//! each way, about 8–10 µs of a 15 µs call (shared/notes/bridge.md §6). So a sync call runs
//! its Redis I/O on the thread that asked, with the GIL released: [`block_on`] polls the
//! limiter's future right there, and when it reaches the store, the thread checks out one
//! [`Slot`] of the guard's pool — a `current_thread` runtime and one connection made on it —
//! drives the call on that runtime, and puts the slot back. The pool has `redis_pool_size`
//! slots, built on first need; a thread that finds them all in use waits for one (within the
//! call timeout: past it, the call is a timeout like any other). Async calls keep the shared
//! multiplexed store on the process runtime, where pipelining many calls over one socket pays.
//!
//! Both stores sit behind one [`Limiter`](rate_guard_core::Limiter), so the breaker, deny
//! cache and fallback are shared: `decide` picks the store by whether it runs inside
//! [`block_on`]. A slot's connection is made on its first call within the call timeout; a
//! failure there is a store failure like any other (the breaker counts it), and the next call
//! on that slot tries again. The pool belongs to the guard's engine, which is per process
//! ([`ForkLocal`](crate::fork::ForkLocal)): after `fork()` the child builds its own, and the
//! inherited one (whose lock a parent thread may have held at fork time) is leaked, never used.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rate_guard_core::{BoxFuture, Request, Store, StoreError, Verdict};
use rate_guard_redis::{RedisConfig, RedisStore};
use tokio::runtime::{Builder, Runtime};

use crate::errors::Failure;

thread_local! {
    /// Set while [`block_on`] runs a call on this thread.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `future` to completion on this thread, outside any runtime: a store it reaches does
/// its Redis I/O here, on a slot of its pool (see the module docs).
pub(crate) fn block_on<T>(future: impl Future<Output = T>) -> Result<T, Failure> {
    IN_CALL.set(true);
    let _reset = InCall;
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return Ok(value);
        }
        // A store call completes within its poll (on its slot's runtime); this only waits
        // for a future that registered a wake-up elsewhere.
        thread::park();
    }
}

/// Wakes the thread that polls in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Clears [`IN_CALL`] when the call ends, even by unwinding.
struct InCall;

impl Drop for InCall {
    fn drop(&mut self) {
        IN_CALL.set(false);
    }
}

/// A runtime and the store connected on it (once a call needed it). The connection's driver
/// lives on the runtime, so the two are only ever used together.
struct Slot {
    runtime: Runtime,
    store: Option<Arc<RedisStore>>,
}

/// The slots of one guard's sync calls.
struct Pool {
    /// One connection per slot.
    config: RedisConfig,
    size: usize,
    state: Mutex<Slots>,
    freed: Condvar,
}

#[derive(Default)]
struct Slots {
    free: Vec<Slot>,
    /// Slots built so far (free or checked out).
    built: usize,
}

/// A checked-out slot; back in the pool when dropped, even by unwinding.
struct Lease<'p> {
    pool: &'p Pool,
    slot: Option<Slot>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.pool.lock().free.push(slot);
            self.pool.freed.notify_one();
        }
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Every critical section leaves the slots consistent (a push, a pop, a count).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot, built if fewer than `size` exist, else the first one freed before `deadline`.
    fn checkout(&self, deadline: Instant) -> Result<Lease<'_>, StoreError> {
        let mut slots = self.lock();
        loop {
            if let Some(slot) = slots.free.pop() {
                return Ok(self.lease(slot));
            }
            if slots.built < self.size {
                slots.built += 1;
                drop(slots);
                return match Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => Ok(self.lease(Slot {
                        runtime,
                        store: None,
                    })),
                    Err(e) => {
                        self.lock().built -= 1;
                        Err(StoreError::Unavailable(format!(
                            "cannot start a runtime for sync calls: {e}"
                        )))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Timeout(self.config.get_timeout()));
            }
            slots = self
                .freed
                .wait_timeout(slots, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn lease(&self, slot: Slot) -> Lease<'_> {
        Lease {
            pool: self,
            slot: Some(slot),
        }
    }

    /// Runs `call` on a slot's store, on the slot's runtime, on this thread. The call timeout
    /// bounds the wait for a slot, and then the call (connecting included) on its own.
    fn run<T>(
        &self,
        call: impl AsyncFnOnce(&RedisStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let timeout = self.config.get_timeout();
        let mut lease = self.checkout(Instant::now() + timeout)?;
        let slot = lease.slot.as_mut().expect("a lease holds its slot");
        let Slot { runtime, store } = slot;
        runtime.block_on(async {
            let store = if let Some(store) = store {
                Arc::clone(store)
            } else {
                let connected = connect(&self.config, timeout).await?;
                Arc::clone(store.insert(connected))
            };
            call(&store).await
        })
    }
}

async fn connect(config: &RedisConfig, limit: Duration) -> Result<Arc<RedisStore>, StoreError> {
    match tokio::time::timeout(limit, RedisStore::connect(config)).await {
        Ok(Ok(store)) => Ok(Arc::new(store)),
        Ok(Err(e)) => Err(StoreError::from(e)),
        Err(_) => Err(StoreError::Timeout(limit)),
    }
}

/// A Redis store that does the I/O of sync calls on the calling thread (see the module docs).
pub(crate) struct ThreadStore {
    /// For async calls, and to hear whether the server is reachable at construction.
    shared: RedisStore,
    pool: Pool,
}

impl fmt::Debug for ThreadStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadStore")
            .field("url", &self.pool.config.url_redacted())
            .field("sync_connections", &self.pool.size)
            .finish_non_exhaustive()
    }
}

impl ThreadStore {
    /// Sync calls share `config.pool_size` connections, one per slot.
    pub(crate) fn new(config: RedisConfig, shared: RedisStore) -> Self {
        let size = config.get_pool_size();
        Self {
            shared,
            pool: Pool {
                config: config.pool_size(1),
                size,
                state: Mutex::new(Slots::default()),
                freed: Condvar::new(),
            },
        }
    }
}

impl Store for ThreadStore {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        if IN_CALL.get() {
            Box::pin(async move { self.pool.run(async |store| store.decide(request).await) })
        } else {
            self.shared.decide(request)
        }
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        if IN_CALL.get() {
            Box::pin(async move { self.pool.run(async |store| store.reset(keys).await) })
        } else {
            self.shared.reset(keys)
        }
    }
}
