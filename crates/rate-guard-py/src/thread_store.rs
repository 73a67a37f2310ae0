//! [`ThreadStore`]: Redis I/O of sync calls on the calling thread, over at most
//! `redis_pool_size` connections per process whatever the number of threads.
//!
//! A sync call that hands its Redis call to a runtime worker and parks pays a thread hand-off
//! each way, about 8–10 µs of a 15 µs call (measured with a throwaway prototype on a 2-core VM
//! before this crate was written: `block_on` on a shared runtime against the same I/O done on
//! the calling thread). So a sync call runs
//! its Redis I/O on the thread that asked, with the GIL released: [`block_on`] polls the
//! limiter's future right there, and when it reaches the store:
//!
//! - on a standalone server over TCP, the call goes through a [`SyncStore`]: blocking
//!   sockets, one `write` and one `read` per call, no runtime; threads share its
//!   `redis_pool_size` connections by pipelining (the thread that finds a connection idle
//!   writes every queued command and reads the replies in order for the others);
//! - on TLS, Sentinel and Cluster, the thread checks out one [`Slot`] of the guard's pool — a
//!   `current_thread` runtime and one connection made on it — and runs the call on that
//!   runtime. The pool has at most `redis_pool_size` slots, built on first need: a thread
//!   takes an idle slot, or builds one, or else shares the least busy one, its call pipelined
//!   with the others' on that connection (it never waits for a slot).
//!
//! Async calls keep the shared multiplexed store on the process runtime.
//!
//! Both stores sit behind one [`Limiter`](rate_guard_core::Limiter), so the breaker, deny
//! cache and fallback are shared: the shared store is its store, a [`ThreadStore`] its
//! [blocking store](rate_guard_core::LimiterBuilder::blocking_store), which the sync entry
//! points reach through [`Limiter::blocking`](rate_guard_core::Limiter::blocking). A sync
//! connection is made on its first call within the call timeout; a
//! failure there is a store failure like any other (the breaker counts it), and the next call
//! tries again. The pools belong to the guard's engine, which is per process
//! ([`ForkLocal`](crate::fork::ForkLocal)): after `fork()` the child builds its own, and the
//! inherited ones (whose locks a parent thread may have held at fork time) are leaked, never
//! used.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use rate_guard_core::{BoxFuture, Request, Store, StoreError, Verdict};
use rate_guard_redis::connection::SyncStore;
use rate_guard_redis::{RedisConfig, RedisStore};
use tokio::runtime::{Builder, Runtime};

use crate::errors::Failure;

/// Runs `future` to completion on this thread, outside any runtime: a [`ThreadStore`] it
/// reaches does its Redis I/O here, on a slot of its pool (see the module docs).
pub(crate) fn block_on<T>(future: impl Future<Output = T>) -> Result<T, Failure> {
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

/// A runtime and the store connected on it (once a call needed it). The connection's driver
/// task lives on the runtime, so the two are only ever used together. Several threads may use
/// one slot at once: `block_on` of a `current_thread` runtime lets one of them drive its I/O
/// while the others wait for their replies, so their calls share the connection (pipelined)
/// instead of waiting for it.
struct Slot {
    runtime: Runtime,
    store: tokio::sync::OnceCell<Arc<RedisStore>>,
    /// Calls running on this slot now.
    busy: AtomicUsize,
}

/// The slots of one guard's sync calls, built on first need, at most `size`.
struct Pool {
    /// One connection per slot.
    config: RedisConfig,
    size: usize,
    slots: Mutex<Vec<Arc<Slot>>>,
}

/// A slot in use by one call; released when dropped, even by unwinding.
struct Lease(Arc<Slot>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// An idle slot, a new one while fewer than `size` exist, or else the least busy one.
    fn checkout(&self) -> Result<Lease, StoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let least = slots
            .iter()
            .min_by_key(|s| s.busy.load(Ordering::Relaxed))
            .filter(|s| s.busy.load(Ordering::Relaxed) == 0 || slots.len() >= self.size)
            .cloned();
        let slot = if let Some(slot) = least {
            slot
        } else {
            let runtime = Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot start a runtime for sync calls: {e}"))
                })?;
            let slot = Arc::new(Slot {
                runtime,
                store: tokio::sync::OnceCell::new(),
                busy: AtomicUsize::new(0),
            });
            slots.push(Arc::clone(&slot));
            slot
        };
        slot.busy.fetch_add(1, Ordering::Relaxed);
        Ok(Lease(slot))
    }

    /// Runs `call` on a slot's store, on the slot's runtime, on this thread, within the call
    /// timeout (connecting the slot included).
    fn run<T>(
        &self,
        call: impl AsyncFnOnce(&RedisStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lease = self.checkout()?;
        let slot = &*lease.0;
        let timeout = self.config.get_timeout();
        slot.runtime.block_on(async {
            let store = slot
                .store
                .get_or_try_init(|| connect(&self.config, timeout))
                .await?;
            call(store).await
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

/// A Redis store that does the I/O of sync calls on the calling thread (see the module docs):
/// the blocking store of the guard's limiter.
pub(crate) struct ThreadStore {
    /// Sync calls on a standalone server over TCP.
    blocking: Option<SyncStore>,
    /// Sync calls elsewhere (TLS, Sentinel, Cluster).
    pool: Pool,
}

impl fmt::Debug for ThreadStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadStore")
            .field("url", &self.pool.config.url_redacted())
            .field("sync_connections", &self.pool.size)
            .field("blocking", &self.blocking.is_some())
            .finish_non_exhaustive()
    }
}

impl ThreadStore {
    /// Sync calls share `config.pool_size` connections, one per slot; `shared` is the
    /// connected async store of the same server (whether it runs functions is known there).
    pub(crate) fn new(config: RedisConfig, shared: &RedisStore) -> Self {
        let size = config.get_pool_size();
        Self {
            blocking: SyncStore::new(&config, shared.uses_functions()),
            pool: Pool {
                config: config.pool_size(1),
                size,
                slots: Mutex::new(Vec::new()),
            },
        }
    }
}

impl Store for ThreadStore {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        if let Some(blocking) = &self.blocking {
            return Box::pin(std::future::ready(blocking.decide(request)));
        }
        Box::pin(async move { self.pool.run(async |store| store.decide(request).await) })
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        if let Some(blocking) = &self.blocking {
            return Box::pin(std::future::ready(blocking.reset(keys)));
        }
        Box::pin(async move { self.pool.run(async |store| store.reset(keys).await) })
    }
}
