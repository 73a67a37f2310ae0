//! The [`Store`] contract: one call decides a whole request, atomically and all-or-nothing.

mod keyhash;
mod memory;

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;

pub use memory::{MemoryStore, MemoryStoreBuilder};

use crate::clock::Timestamp;
use crate::decision::Verdict;
use crate::error::StoreError;
use crate::rule::Rule;

/// The most checks one request may carry.
pub const MAX_CHECKS: usize = 64;

/// A boxed, sendable future, as [`Store`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One rule of a request: the rule, the key its state lives under, and what the request weighs.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The rule to enforce.
    pub rule: &'a Rule,
    /// The rule's key for this request's identity (see [`KeyBuilder`](crate::KeyBuilder)).
    pub key: &'a str,
    /// How much the request weighs against this rule.
    pub cost: NonZeroU32,
}

/// Whether a request consumes quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Decide and, when every rule allows, consume.
    #[default]
    Hit,
    /// Report what a hit would get and what remains now; consume nothing.
    Peek,
}

/// Everything a store needs to decide one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The rules to decide together, in order (at most [`MAX_CHECKS`]).
    pub checks: &'a [Check<'a>],
    /// Hit or peek.
    pub mode: Mode,
    /// The time to decide at. `None`: the store's own clock (Redis: `TIME` on the server).
    /// Tests set it to replay one timeline on several stores.
    pub now: Option<Timestamp>,
}

impl<'a> Request<'a> {
    /// A hit on `checks` at the store's time.
    #[must_use]
    pub fn hit(checks: &'a [Check<'a>]) -> Self {
        Self {
            checks,
            mode: Mode::Hit,
            now: None,
        }
    }

    /// A peek at `checks` at the store's time.
    #[must_use]
    pub fn peek(checks: &'a [Check<'a>]) -> Self {
        Self {
            checks,
            mode: Mode::Peek,
            now: None,
        }
    }

    /// The same request decided at `now`.
    #[must_use]
    pub fn at(self, now: Timestamp) -> Self {
        Self {
            now: Some(now),
            ..self
        }
    }

    /// Rejects requests no store can decide: no checks, more than [`MAX_CHECKS`], or a key
    /// named twice.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.checks.is_empty() {
            return Err(StoreError::InvalidRequest(
                "a request needs at least one rule",
            ));
        }
        if self.checks.len() > MAX_CHECKS {
            return Err(StoreError::InvalidRequest(
                "a request may carry at most 64 rules",
            ));
        }
        let named_twice = (1..self.checks.len())
            .any(|i| self.checks[..i].iter().any(|c| c.key == self.checks[i].key));
        if named_twice {
            return Err(StoreError::InvalidRequest(
                "a key appears twice in one request",
            ));
        }
        Ok(())
    }
}

/// Where rule state lives, and the one place requests are decided.
///
/// # Contract
///
/// - [`decide`](Store::decide) evaluates every check of the request at one instant, atomically
///   with respect to every other request on the same keys.
/// - All-or-nothing: in [`Mode::Hit`], when every check allows, each consumes its cost;
///   when any check denies, **none** consumes and no state changes.
/// - Decisions equal those of [`crate::algorithm`] on the same states, times and costs.
/// - Each key appears at most once in a request (two checks on one key would be two rules
///   sharing state, a configuration mistake): [`Request::validate`] rejects the rest.
/// - Being limited is a [`Verdict`], never an error. Errors mean the store could not decide.
pub trait Store: Send + Sync + fmt::Debug {
    /// Decides `request`; see the trait docs.
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>>;

    /// Forgets the state under `keys`.
    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Decides at once, without a future, when this store never waits (the memory store);
    /// `None` when it may (then [`decide`](Self::decide) is the way). Default: `None`.
    fn decide_now(&self, request: Request<'_>) -> Option<Result<Verdict, StoreError>> {
        let _ = request;
        None
    }

    /// Whether calls leave the process (their latency is then measured, see
    /// [`metrics`](crate::metrics)). False by default.
    fn is_remote(&self) -> bool {
        false
    }
}
