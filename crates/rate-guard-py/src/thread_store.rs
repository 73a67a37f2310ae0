//! [`ThreadStore`]: Redis I/O of sync calls on the calling thread.
//!
//! A sync call that hands its Redis call to a runtime worker and parks pays a thread hand-off
//! each way, about 8–10 µs of a 15 µs call (shared/notes/bridge.md §6). So each Python thread
//! that makes sync calls gets a `current_thread` runtime of its own ([`block_on`]) and, per
//! guard, a Redis store connected from that thread: the call's I/O then runs on the thread
//! that asked, with the GIL released. Async calls keep the shared multiplexed store on the
//! process runtime, where pipelining many calls over one socket pays.
//!
//! Both stores sit behind one [`Limiter`](rate_guard_core::Limiter), so the breaker, deny
//! cache and fallback are shared: `decide` picks the store by whether it runs inside
//! [`block_on`]. A thread's store is connected on its first call within the call timeout; a
//! failure there is a store failure like any other (the breaker counts it). Thread stores are
//! per process: after `fork()` the inherited ones are leaked, never used.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};

use rate_guard_core::{BoxFuture, Request, Store, StoreError, Verdict};
use rate_guard_redis::{RedisConfig, RedisStore};
use tokio::runtime::{Builder, Runtime};

use crate::errors::Failure;
use crate::fork;

thread_local! {
    /// This thread's runtime for sync calls, with the fork generation it was built in.
    static RUNTIME: RefCell<Option<(u64, Runtime)>> = const { RefCell::new(None) };
    /// Set while [`block_on`] runs a call on this thread.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    /// This thread's stores: one per live guard, with their generation.
    static STORES: RefCell<Vec<ThreadEntry>> = const { RefCell::new(Vec::new()) };
}

struct ThreadEntry {
    generation: u64,
    owner: Weak<()>,
    store: Arc<RedisStore>,
}

/// Runs `future` on this thread's runtime; the stores it reaches do their I/O here.
pub(crate) fn block_on<T>(future: impl Future<Output = T>) -> Result<T, Failure> {
    let generation = fork::generation();
    RUNTIME.with_borrow_mut(|slot| {
        if slot.as_ref().is_some_and(|(g, _)| *g != generation) {
            // Built before fork(): its driver state is shared with the parent.
            std::mem::forget(slot.take());
        }
        if slot.is_none() {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            *slot = Some((generation, runtime));
        }
        let (_, runtime) = slot.as_ref().expect("built above");
        IN_CALL.set(true);
        let _reset = InCall;
        Ok(runtime.block_on(future))
    })
}

/// Clears [`IN_CALL`] when the call ends, even by unwinding.
struct InCall;

impl Drop for InCall {
    fn drop(&mut self) {
        IN_CALL.set(false);
    }
}

/// A Redis store that does the I/O of sync calls on the calling thread (see the module docs).
pub(crate) struct ThreadStore {
    config: RedisConfig,
    /// For async calls, and to hear whether the server is reachable at construction.
    shared: RedisStore,
    /// Alive as long as this store: thread entries of dropped guards are swept.
    token: Arc<()>,
}

impl fmt::Debug for ThreadStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadStore")
            .field("url", &self.config.url_redacted())
            .finish_non_exhaustive()
    }
}

impl ThreadStore {
    pub(crate) fn new(config: RedisConfig, shared: RedisStore) -> Self {
        Self {
            config,
            shared,
            token: Arc::new(()),
        }
    }

    /// This thread's store for this guard, when one is connected.
    fn local(&self) -> Option<Arc<RedisStore>> {
        let generation = fork::generation();
        let owner = Arc::downgrade(&self.token);
        STORES.with_borrow_mut(|entries| {
            if entries.iter().any(|e| e.generation != generation) {
                let (inherited, mine): (Vec<_>, Vec<_>) = std::mem::take(entries)
                    .into_iter()
                    .partition(|e| e.generation != generation);
                std::mem::forget(inherited);
                *entries = mine;
            }
            entries.retain(|e| e.owner.strong_count() > 0);
            entries
                .iter()
                .find(|e| e.owner.ptr_eq(&owner))
                .map(|e| Arc::clone(&e.store))
        })
    }

    async fn connect_local(&self) -> Result<Arc<RedisStore>, StoreError> {
        let limit = self.config.get_timeout();
        let store = match tokio::time::timeout(limit, RedisStore::connect(&self.config)).await {
            Ok(Ok(store)) => Arc::new(store),
            Ok(Err(e)) => return Err(StoreError::Unavailable(e.to_string())),
            Err(_) => return Err(StoreError::Timeout(limit)),
        };
        STORES.with_borrow_mut(|entries| {
            entries.push(ThreadEntry {
                generation: fork::generation(),
                owner: Arc::downgrade(&self.token),
                store: Arc::clone(&store),
            });
        });
        Ok(store)
    }

    async fn decide_here(&self, request: Request<'_>) -> Result<Verdict, StoreError> {
        let store = match self.local() {
            Some(store) => store,
            None => self.connect_local().await?,
        };
        store.decide(request).await
    }

    async fn reset_here(&self, keys: &[&str]) -> Result<(), StoreError> {
        let store = match self.local() {
            Some(store) => store,
            None => self.connect_local().await?,
        };
        store.reset(keys).await
    }
}

impl Store for ThreadStore {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        if IN_CALL.get() {
            Box::pin(self.decide_here(request))
        } else {
            self.shared.decide(request)
        }
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        if IN_CALL.get() {
            Box::pin(self.reset_here(keys))
        } else {
            self.shared.reset(keys)
        }
    }
}
