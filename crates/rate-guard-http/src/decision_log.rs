//! [`DecisionLog`]: which denials are logged, and how client identities appear in them — the
//! one decision log of both fronts. The tower layer turns its records into `tracing` events,
//! the Python package into `logging` records; neither samples nor hashes on its own.
//!
//! - **Sampling**: per rule, a token bucket of `log_denials_per_second` records a second
//!   (a float from 0 to 1,000,000; 0 logs none), as many at once (at least one). A denial left
//!   out is counted, and the count travels in the rule's next record (`suppressed`), or in a
//!   [`SuppressedRecord`] when the rule has had no record for a second — handed out by
//!   [`DecisionLog::flush`], and by the next denial of any rule once a second.
//! - **Identities**: [`Identities::Hashed`] (default) renders a client identity as 16 hex
//!   digits of a keyed `BLAKE2b` digest (8 bytes), keyed by the `BLAKE2b-256` of the configured salt
//!   or by 16 random bytes per process (forked workers share them); the same as Python's
//!   `hashlib.blake2b(identity, key=key, digest_size=8)`. [`Identities::Raw`] logs it as is,
//!   [`Identities::Omit`] not at all.
//! - **Bounded**: sampling state is kept for at most [`MAX_LOGGED_RULES`] rules; past that, idle
//!   rules are forgotten (an idle rule's state is a new rule's; looked for at most once a
//!   second), and while none is, the other rules share one bucket.
//!
//! Time comes from a [`Clock`], so tests never sleep:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rate_guard_core::{ManualClock, Timestamp};
//! use rate_guard_http::{DecisionKind, DecisionLog, Denial, Identities};
//!
//! let clock = ManualClock::new(Timestamp::from_secs(1_000));
//! let log = DecisionLog::new(2.0, Identities::Raw, None, Arc::new(clock.clone()))?;
//! let denial = Denial::new(Some("login"), DecisionKind::Blocked, 429).identity(Some("ip:192.0.2.1"));
//! let logged = (0..10).filter(|_| log.denial(&denial).is_some()).count();
//! assert_eq!(logged, 2); // two a second, as many at once
//! clock.advance(Duration::from_secs(1));
//! let record = log.denial(&denial).unwrap();
//! assert_eq!((record.suppressed, record.identity.as_deref()), (8, Some("ip:192.0.2.1")));
//! # Ok::<(), rate_guard_http::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use blake2::digest::consts::U8;
use blake2::digest::{Digest, Mac};
use blake2::{Blake2b, Blake2bMac};
use rate_guard_core::{bounds, Clock, Source};

use crate::error::Error;
use crate::outcome::Outcome;
use crate::plan::Plan;
use crate::route::RouteLimits;

/// Denial records per second and rule when the configuration does not say.
pub const DEFAULT_DENIALS_PER_SECOND: f64 = 10.0;

/// The largest `log_denials_per_second`.
pub const MAX_DENIALS_PER_SECOND: f64 = 1_000_000.0;

/// Sampling state is kept for at most this many rules (rules come from configuration).
pub const MAX_LOGGED_RULES: usize = 10_000;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// How client identities appear in denial records (`log_identities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Identities {
    /// A keyed digest: 16 hex digits, the same for the same identity and key.
    #[default]
    Hashed,
    /// The identity itself (`ip:203.0.113.9`).
    Raw,
    /// No identity.
    Omit,
}

impl Identities {
    /// Every way.
    pub const ALL: [Identities; 3] = [Identities::Hashed, Identities::Raw, Identities::Omit];

    /// `hashed`, `raw` or `omit`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Identities::Hashed => "hashed",
            Identities::Raw => "raw",
            Identities::Omit => "omit",
        }
    }
}

impl FromStr for Identities {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Error> {
        match value {
            "hashed" => Ok(Identities::Hashed),
            "raw" => Ok(Identities::Raw),
            "omit" => Ok(Identities::Omit),
            _ => Err(Error::Log {
                field: "log_identities",
                reason: format!(
                    "{:?} is not one of \"hashed\", \"raw\" or \"omit\"",
                    crate::error::clip(value, 40)
                ),
            }),
        }
    }
}

/// Whether a record is about a refused request or a shadow rule's would-be refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// The request was refused (429, or 503 when the store is down and a rule fails closed).
    Blocked,
    /// A shadow rule would have refused it; it went through.
    ShadowBlocked,
}

impl DecisionKind {
    /// `blocked` or `shadow_blocked`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Blocked => "blocked",
            DecisionKind::ShadowBlocked => "shadow_blocked",
        }
    }
}

/// One denial as a front saw it: structured fields, borrowed. [`DecisionLog::denial`] decides
/// whether it is logged.
#[derive(Debug, Clone, Copy)]
pub struct Denial<'a> {
    /// The rule's id (a route rule's is scoped, as in its keys); `None` for a request refused
    /// without a decision (the store down, failing closed).
    pub rule: Option<&'a str>,
    /// The rule's name as metrics label it (a route rule's declared id); `rule` when `None`.
    pub rule_name: Option<&'a str>,
    /// The route template.
    pub route: Option<&'a str>,
    /// Refused, or only a shadow rule's would-be refusal.
    pub kind: DecisionKind,
    /// Whose quota (`ip:203.0.113.9`), rendered per [`Identities`].
    pub identity: Option<&'a str>,
    /// The response status.
    pub status: u16,
    /// The deciding rule's limit.
    pub limit: Option<u32>,
    /// What remained of it.
    pub remaining: Option<u32>,
    /// How long until the same request fits.
    pub retry_after: Option<Duration>,
    /// Who decided.
    pub source: Option<Source>,
    /// Whether the store was unavailable and the decision is a stand-in.
    pub degraded: bool,
}

impl<'a> Denial<'a> {
    /// A denial of `rule` with `status`, every other field empty.
    #[must_use]
    pub const fn new(rule: Option<&'a str>, kind: DecisionKind, status: u16) -> Self {
        Self {
            rule,
            rule_name: None,
            route: None,
            kind,
            identity: None,
            status,
            limit: None,
            remaining: None,
            retry_after: None,
            source: None,
            degraded: false,
        }
    }

    /// The same with `identity`.
    #[must_use]
    pub const fn identity(mut self, identity: Option<&'a str>) -> Self {
        self.identity = identity;
        self
    }
}

/// A denial to log.
#[derive(Debug, Clone, PartialEq)]
pub struct DenialRecord {
    /// `rate_limited`, or `fail_closed` for a request refused with 503 while the store is down.
    pub event: &'static str,
    /// The rule's id (scoped for a route rule).
    pub rule: Option<String>,
    /// The rule's name as metrics label it.
    pub rule_name: Option<String>,
    /// The route template.
    pub route: Option<String>,
    /// Refused, or a shadow rule's would-be refusal.
    pub decision: DecisionKind,
    /// The identity per [`Identities`]; `None` when omitted or unknown.
    pub identity: Option<String>,
    /// The response status.
    pub status: u16,
    /// The deciding rule's limit.
    pub limit: Option<u32>,
    /// What remained of it.
    pub remaining: Option<u32>,
    /// Seconds until the same request fits.
    pub retry_after: Option<f64>,
    /// Who decided (`store`, `deny_cache`, `fallback`, `fail_open`, `fail_closed`).
    pub source: Option<&'static str>,
    /// Whether the store was unavailable.
    pub degraded: bool,
    /// Denials of this rule left out since its previous record.
    pub suppressed: u64,
}

/// Denials of a rule left out and not yet reported: its last record was a second ago or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressedRecord {
    /// The rule's id; `None` for denials of rules beyond [`MAX_LOGGED_RULES`] (they share).
    pub rule: Option<String>,
    /// The rule's name as metrics label it (as in its last record).
    pub rule_name: Option<String>,
    /// The route of its last record.
    pub route: Option<String>,
    /// How many.
    pub suppressed: u64,
}

/// What a front logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `rate_limited` / `fail_closed`.
    Denial(DenialRecord),
    /// `rate_limited_suppressed`.
    Suppressed(SuppressedRecord),
}

/// The decision log of one guard: samples denials per rule and renders identities. Shared by
/// every thread (one short lock per denial; an admitted request without shadow denials never
/// reaches it).
pub struct DecisionLog {
    per_second: f64,
    /// GCRA form of the token bucket, in nanoseconds: one record per `interval`, and a record
    /// admitted while the bucket's "theoretical arrival time" is at most `tolerance` ahead
    /// (`max(1, rate)` records at once). Integers, so fractional rates do not drift.
    interval: u64,
    tolerance: u64,
    identities: Identities,
    mac: Blake2bMac<U8>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// When a denial next looks for suppressed counts to report (ns); 0 at first.
    next_scan: AtomicU64,
}

impl fmt::Debug for DecisionLog {
    // The key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionLog")
            .field("per_second", &self.per_second)
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    budgets: HashMap<Box<str>, Budget>,
    /// The shared bucket of rules beyond the cap.
    overflow: Budget,
    /// When idle rules may next be forgotten, the cap reached (ns).
    next_prune: u64,
}

#[derive(Default)]
struct Budget {
    /// The bucket's theoretical arrival time (ns).
    tat: u64,
    /// When the last record was handed out (ns).
    last_record: u64,
    suppressed: u64,
    /// As in the last record, for a [`SuppressedRecord`].
    rule_name: Option<Box<str>>,
    route: Option<Box<str>>,
}

impl Budget {
    /// Counts a denial at `now`: `Some(suppressed before it)` when it is to be logged.
    fn take(&mut self, now: u64, interval: u64, tolerance: u64) -> Option<u64> {
        // A clock that stepped back leaves the bucket at most empty, not closed for as long.
        let start = self.tat.min(now.saturating_add(tolerance)).max(now);
        let tat = start.saturating_add(interval);
        if tat - now > tolerance {
            self.suppressed += 1;
            return None;
        }
        self.tat = tat;
        self.last_record = now;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Whether a new budget would behave the same (nothing to report, the bucket full).
    fn is_idle(&self, now: u64) -> bool {
        self.suppressed == 0 && self.tat <= now
    }

    fn remember(&mut self, rule_name: Option<&str>, route: Option<&str>) {
        if self.rule_name.as_deref() != rule_name {
            self.rule_name = rule_name.map(Box::from);
        }
        if self.route.as_deref() != route {
            self.route = route.map(Box::from);
        }
    }
}

impl DecisionLog {
    /// A log of at most `per_second` denial records a second per rule (0 to 1,000,000; 0:
    /// none), identities rendered per `identities`, hashed with a key derived from `salt` (or
    /// random per process), timed by `clock`.
    ///
    /// # Panics
    ///
    /// Never: the hash key is 16 or 32 bytes, which `BLAKE2b` takes.
    pub fn new(
        per_second: f64,
        identities: Identities,
        salt: Option<&str>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        // The range is the settings' one (`bounds::FLOATS`), whoever builds the log.
        if let Some(range) = bounds::float_range("log_denials_per_second") {
            range.check(per_second).map_err(|e| Error::Log {
                field: "log_denials_per_second",
                reason: e.to_string(),
            })?;
        }
        let (interval, tolerance) = if per_second == 0.0 {
            (u64::MAX, 0)
        } else {
            // At least 1,000 ns: the rate is at most a million.
            let interval = (NANOS_PER_SEC as f64 / per_second).round() as u64;
            // max(1, rate) records at once: a second's worth, or one.
            (interval, interval.max(NANOS_PER_SEC))
        };
        let mac = match salt {
            Some(salt) => Blake2bMac::new_from_slice(
                &Blake2b::<blake2::digest::consts::U32>::digest(salt.as_bytes()),
            ),
            None => Blake2bMac::new_from_slice(process_key()),
        }
        .expect("a BLAKE2b key of 16 or 32 bytes");
        Ok(Self {
            per_second,
            interval,
            tolerance,
            identities,
            mac,
            clock,
            state: Mutex::new(State::default()),
            next_scan: AtomicU64::new(0),
        })
    }

    /// Denial records per second and rule.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// How identities are rendered.
    #[must_use]
    pub fn identities(&self) -> Identities {
        self.identities
    }

    /// `identity` as records show it: itself, its keyed digest, or `None`.
    #[must_use]
    pub fn render_identity(&self, identity: &str) -> Option<String> {
        match self.identities {
            Identities::Omit => None,
            Identities::Raw => Some(identity.to_owned()),
            Identities::Hashed => {
                let mut mac = self.mac.clone();
                mac.update(identity.as_bytes());
                let digest = mac.finalize().into_bytes();
                Some(digest.iter().fold(String::with_capacity(16), |mut hex, b| {
                    use std::fmt::Write as _;
                    let _ = write!(hex, "{b:02x}");
                    hex
                }))
            }
        }
    }

    /// Counts `denial`: its record when it is to be logged, `None` when it is left out (then
    /// nothing is allocated).
    pub fn denial(&self, denial: &Denial<'_>) -> Option<DenialRecord> {
        let suppressed = self.sample(denial.rule, |budget| {
            budget.remember(denial.rule_name.or(denial.rule), denial.route);
        })?;
        Some(self.record(denial, suppressed))
    }

    /// The records of `outcome` (of `plan`): its denial, or the shadow rules that would have
    /// denied, each sampled per rule; then, at most once a second, the suppressed counts of
    /// rules quiet for a second. `route` finds the limits of the route a rule belongs to (a
    /// rule's name and route template come from it); it is asked only for what is logged.
    /// Empty, without allocating, for an admitted request without shadow denials.
    pub fn outcome<'r>(
        &self,
        outcome: &Outcome,
        plan: &Plan,
        route: impl Fn(&str) -> Option<&'r RouteLimits>,
    ) -> Vec<Record> {
        let mut records = Vec::new();
        if self.per_second == 0.0 || (outcome.allowed() && outcome.shadow_denied().is_empty()) {
            return records;
        }
        let identity = |rule: &str| {
            plan.items()
                .iter()
                .find(|item| item.rule().id() == rule)
                .map(crate::plan::PlanItem::identity)
        };
        if outcome.allowed() {
            for rule in outcome.shadow_denied() {
                let denial = Denial {
                    source: outcome.verdict().map(rate_guard_core::Verdict::source),
                    degraded: outcome.is_degraded(),
                    ..Denial::new(Some(rule), DecisionKind::ShadowBlocked, 200)
                };
                if let Some(record) = self.resolved(denial, &route, &identity) {
                    records.push(Record::Denial(record));
                }
            }
        } else {
            let decision = outcome.decision();
            let denial = Denial {
                limit: decision.map(|d| d.limit),
                remaining: decision.map(|d| d.remaining),
                retry_after: decision.and_then(|d| d.retry_after),
                source: outcome.verdict().map(rate_guard_core::Verdict::source),
                degraded: outcome.is_degraded(),
                ..Denial::new(outcome.rule(), DecisionKind::Blocked, outcome.status())
            };
            if let Some(record) = self.resolved(denial, &route, &identity) {
                records.push(Record::Denial(record));
            }
        }
        if self.scan_due() {
            records.extend(self.flush().into_iter().map(Record::Suppressed));
        }
        records
    }

    /// `denial` with its identity, name and route looked up once it is known to be logged.
    fn resolved<'r, 'p>(
        &self,
        denial: Denial<'_>,
        route: &impl Fn(&str) -> Option<&'r RouteLimits>,
        identity: &impl Fn(&str) -> Option<&'p str>,
    ) -> Option<DenialRecord> {
        let mut found = None;
        let suppressed = self.sample(denial.rule, |budget| {
            let limits = denial.rule.and_then(route);
            let name = match (denial.rule, limits) {
                (Some(rule), Some(limits)) => limits.declared_id(rule).or(Some(rule)),
                (rule, _) => rule,
            };
            let template = limits.map(RouteLimits::template);
            budget.remember(name, template);
            found = Some((name.map(str::to_owned), template.map(str::to_owned)));
        })?;
        let (rule_name, route) = found.unwrap_or_default();
        let mut record = self.record(
            &Denial {
                identity: denial.rule.and_then(identity),
                ..denial
            },
            suppressed,
        );
        record.rule_name = rule_name;
        record.route = route;
        Some(record)
    }

    /// The records of rules with denials left out and no record for a second (so that the
    /// count of an attack's last burst is not lost); the Python front calls it once a second.
    pub fn flush(&self) -> Vec<SuppressedRecord> {
        let now = self.now();
        self.next_scan
            .store(now.saturating_add(NANOS_PER_SEC), Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut records = Vec::new();
        let mut report = |rule: Option<&str>, budget: &mut Budget| {
            if budget.suppressed > 0 && now.saturating_sub(budget.last_record) >= NANOS_PER_SEC {
                records.push(SuppressedRecord {
                    rule: rule.map(str::to_owned),
                    rule_name: budget.rule_name.as_deref().map(str::to_owned),
                    route: budget.route.as_deref().map(str::to_owned),
                    suppressed: std::mem::take(&mut budget.suppressed),
                });
                budget.last_record = now;
            }
        };
        let State {
            budgets, overflow, ..
        } = &mut *state;
        for (rule, budget) in budgets.iter_mut() {
            report((!rule.is_empty()).then_some(&**rule), budget);
        }
        report(None, overflow);
        records
    }

    /// Whether a second has passed since suppressed counts were last looked for.
    fn scan_due(&self) -> bool {
        self.now() >= self.next_scan.load(Ordering::Relaxed)
    }

    /// Counts a denial of `rule`; when it is to be logged, `logged` sees its budget and the
    /// denials left out before it are returned.
    fn sample(&self, rule: Option<&str>, logged: impl FnOnce(&mut Budget)) -> Option<u64> {
        if self.per_second == 0.0 {
            return None;
        }
        let now = self.now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        let key = rule.unwrap_or("");
        let budget = if let Some(budget) = state.budgets.get_mut(key) {
            budget
        } else {
            if state.budgets.len() >= MAX_LOGGED_RULES && now >= state.next_prune {
                // At most once a second: while every rule is busy, a scan per denial would
                // cost ten thousand steps each.
                state.next_prune = now.saturating_add(NANOS_PER_SEC);
                state.budgets.retain(|_, budget| !budget.is_idle(now));
            }
            if state.budgets.len() < MAX_LOGGED_RULES {
                // Allocates once per rule (rules come from configuration).
                state.budgets.entry(Box::from(key)).or_default()
            } else {
                &mut state.overflow
            }
        };
        let suppressed = budget.take(now, self.interval, self.tolerance)?;
        logged(budget);
        Some(suppressed)
    }

    fn record(&self, denial: &Denial<'_>, suppressed: u64) -> DenialRecord {
        DenialRecord {
            event: if denial.status == 503 {
                "fail_closed"
            } else {
                "rate_limited"
            },
            rule: denial.rule.map(str::to_owned),
            rule_name: denial.rule_name.or(denial.rule).map(str::to_owned),
            route: denial.route.map(str::to_owned),
            decision: denial.kind,
            identity: denial.identity.and_then(|i| self.render_identity(i)),
            status: denial.status,
            limit: denial.limit,
            remaining: denial.remaining,
            retry_after: denial.retry_after.map(|d| d.as_secs_f64()),
            source: denial.source.map(Source::name),
            degraded: denial.degraded,
            suppressed,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().as_micros().saturating_mul(1_000)
    }
}

/// The key of hashed identities when no salt is configured: random, once per process (so the
/// workers forked from one master share it).
fn process_key() -> &'static [u8; 16] {
    static KEY: OnceLock<[u8; 16]> = OnceLock::new();
    KEY.get_or_init(|| {
        // std's `RandomState` is keyed from the operating system's random source: two of its
        // hashes are 128 unpredictable bits, without a dependency for it.
        let mut key = [0; 16];
        key[..8].copy_from_slice(&RandomState::new().hash_one(0_u8).to_le_bytes());
        key[8..].copy_from_slice(&RandomState::new().hash_one(1_u8).to_le_bytes());
        key
    })
}
