//! Per-process values that survive `fork()`: [`ForkLocal`] and the fork generation.
//!
//! A tokio runtime or a Redis connection created before `fork()` is unusable in the child: its
//! worker threads do not exist there, so anything that waits on them hangs forever (gunicorn
//! `--preload` forks after import). A `pthread_atfork` child handler bumps a generation; a
//! [`ForkLocal`] remembers the generation its value was built in and builds a new one when they
//! differ. The inherited value is leaked, never dropped: dropping a runtime would join threads
//! that do not exist, and an inherited socket is shared with the parent.
//!
//! This is the crate's only `unsafe` code: the `pthread_atfork` call and the raw pointer that
//! makes the fast path one atomic load and one compare, without a lock that a thread of the
//! parent could hold at fork time.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Once;

/// Bumped in the child after every `fork()`.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic add, nothing else.
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Registers the child handler (once per address space; the registration survives `fork()`).
/// Returns the error code of `pthread_atfork` when it fails (only on memory exhaustion).
pub(crate) fn register_handler() -> Result<(), i32> {
    let mut result = Ok(());
    REGISTER.call_once(|| {
        // SAFETY: the handler only does an atomic add, which is async-signal-safe.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        if rc != 0 {
            result = Err(rc);
        }
    });
    result
}

/// The current process's generation: 0 in the process that loaded the module, then one more
/// per `fork()`.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

struct Slot<T> {
    generation: u64,
    value: T,
}

/// A value built at most once per process (per fork generation); see the module docs.
pub(crate) struct ForkLocal<T> {
    slot: AtomicPtr<Slot<T>>,
    // Values are built on one thread, shared by reference and dropped on another.
    _owns: PhantomData<T>,
}

impl<T> ForkLocal<T> {
    pub(crate) const fn new() -> Self {
        Self {
            slot: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// The value of this process, if it was built.
    pub(crate) fn get(&self) -> Option<&T> {
        Self::value_of(self.slot.load(Ordering::Acquire), generation())
    }

    /// The value of this process, built with `init` when there is none yet (first use, or
    /// first use after a fork). When two threads race to build it, one value wins and the other
    /// is dropped.
    pub(crate) fn get_or_try_init<E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        let generation = generation();
        let current = self.slot.load(Ordering::Acquire);
        if let Some(value) = Self::value_of(current, generation) {
            return Ok(value);
        }
        let fresh = Box::into_raw(Box::new(Slot {
            generation,
            value: init()?,
        }));
        let mut expected = current;
        loop {
            match self
                .slot
                .compare_exchange(expected, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // `expected`, if any, came from the parent: leaked on purpose (module docs).
                // SAFETY: `fresh` is published now, and slots are only freed by `drop`.
                Ok(_) => return Ok(unsafe { &(*fresh).value }),
                Err(winner) => {
                    if let Some(value) = Self::value_of(winner, generation) {
                        // SAFETY: `fresh` was never published, so this thread owns it alone.
                        drop(unsafe { Box::from_raw(fresh) });
                        return Ok(value);
                    }
                    expected = winner;
                }
            }
        }
    }

    /// The value `slot` holds when it was built in `generation`.
    fn value_of<'a>(slot: *mut Slot<T>, generation: u64) -> Option<&'a T> {
        // SAFETY: a non-null slot stays allocated until `drop`, which takes `&mut self`, so it
        // outlives every `&self` borrow that reads it.
        let slot = unsafe { slot.as_ref()? };
        (slot.generation == generation).then_some(&slot.value)
    }
}

impl<T> Drop for ForkLocal<T> {
    fn drop(&mut self) {
        let slot = *self.slot.get_mut();
        if slot.is_null() {
            return;
        }
        // SAFETY: `&mut self` means no borrow of the slot is alive; it was made by `Box::into_raw`.
        let slot = unsafe { Box::from_raw(slot) };
        if slot.generation != generation() {
            // Inherited from the parent process: see the module docs.
            std::mem::forget(slot);
        }
    }
}
