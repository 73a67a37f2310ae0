//! [`RedisStore`]: the [`Store`] contract on Redis, one script call per request (per slot
//! group on a cluster).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;
use rate_guard_core::{
    Algorithm, BoxFuture, Check, Decision, Mode, Request, Store, StoreError, Timestamp, Verdict,
};
use redis::cluster_routing::Slot;
use redis::Value;
use smallvec::SmallVec;

use crate::connection::{Connection, ConnectionError, RedisConfig};
use crate::resp;
use crate::script::{Script, LIBRARY, REFUND, REQUEST};

/// Rate-limit state in Redis: standalone, Sentinel or Cluster.
///
/// - **Standalone and Sentinel**: one call of the request function per request, whatever the
///   number of rules; it decides every rule and writes only if all allow. The call is `FCALL`
///   of the function library loaded at connect (Redis ≥ 7), or `EVALSHA` of the same code as a
///   script where the server refuses functions (Redis 6, an ACL, a renamed command): the two
///   decide alike.
/// - **Cluster**: a request's keys are grouped by slot (keys of one identity share a hash tag,
///   so usually one or two groups); the groups run concurrently, each atomically. When a group
///   denies, the groups that consumed are refunded, so the cluster never over-admits; the cost
///   is a brief under-admission while a refund is in flight.
///
/// Time is the server's `TIME` unless a request carries its own (tests replay timelines).
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    /// Whether calls go through the function library (`FCALL`) rather than `EVALSHA`; turned
    /// off for good when the server refuses functions.
    functions: Arc<AtomicBool>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("connection", &self.connection)
            .field("functions", &self.uses_functions())
            .finish()
    }
}

impl RedisStore {
    /// Connects and loads the function library (on every master of a cluster), or, where the
    /// server refuses functions, the scripts. Fails, within the connect timeout, when Redis
    /// cannot be reached.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectionError> {
        Self::connect_with(config, true).await
    }

    /// [`connect`](Self::connect), with `functions: false` for `EVALSHA` even where the server
    /// would run the function library (to compare the two; both decide alike).
    pub async fn connect_with(
        config: &RedisConfig,
        functions: bool,
    ) -> Result<Self, ConnectionError> {
        let connection = Connection::connect(config).await?;
        let functions = functions
            && match connection.load_library(&LIBRARY.source).await {
                Ok(()) => true,
                Err(ConnectionError::Refused(_) | ConnectionError::Rejected(_)) => false,
                Err(e) => return Err(e),
            };
        if !functions {
            connection.load_script(REQUEST.source).await?;
            connection.load_script(REFUND.source).await?;
        }
        Ok(Self {
            connection,
            functions: Arc::new(AtomicBool::new(functions)),
        })
    }

    /// Whether requests go through the function library (`FCALL`) rather than `EVALSHA`.
    #[must_use]
    pub fn uses_functions(&self) -> bool {
        self.functions.load(Ordering::Relaxed)
    }

    /// [`connect`](Self::connect) with a URL and default settings.
    pub async fn from_url(url: &str) -> Result<Self, ConnectionError> {
        Self::connect(&RedisConfig::from_url(url)?).await
    }

    /// The connection (for tests and administration).
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    async fn decide_request(&self, request: Request<'_>) -> Result<Verdict, StoreError> {
        request.validate()?;
        let groups = self.groups(request.checks);
        if let [group] = groups.as_slice() {
            let (_, rules) = self.run(&REQUEST, request.mode, request.now, group).await?;
            return verdict(rules);
        }
        let outcomes = join_all(
            groups
                .iter()
                .map(|g| self.run(&REQUEST, request.mode, request.now, g)),
        )
        .await;
        let failed = outcomes.iter().any(Result::is_err);
        let denied = outcomes
            .iter()
            .any(|o| o.as_ref().is_ok_and(|(_, d)| d.iter().any(|d| !d.allowed)));
        if request.mode == Mode::Hit && (failed || denied) {
            // Groups that consumed give it back: all-or-nothing across slots.
            let refunds = groups.iter().zip(&outcomes).filter_map(|(group, outcome)| {
                let (now, decisions) = outcome.as_ref().ok()?;
                decisions
                    .iter()
                    .all(|d| d.allowed)
                    .then(|| self.refund(*now, group))
            });
            // A refund that fails leaves quota consumed: under-admission, never over-admission.
            join_all(refunds).await;
        }
        let mut rules: SmallVec<[Decision; 4]> =
            SmallVec::from_elem(placeholder(), request.checks.len());
        for (group, outcome) in groups.iter().zip(outcomes) {
            let (_, decisions) = outcome?;
            for (&(index, _), decision) in group.iter().zip(decisions) {
                rules[index] = decision;
            }
        }
        verdict(rules)
    }

    /// The request's checks grouped by slot, each with its index in the request. One group
    /// outside a cluster.
    fn groups<'c>(&self, checks: &'c [Check<'c>]) -> Vec<Vec<(usize, &'c Check<'c>)>> {
        let indexed = checks.iter().enumerate();
        if !self.connection.is_cluster() {
            return vec![indexed.collect()];
        }
        let mut groups: Vec<(Slot, Vec<(usize, &Check<'_>)>)> = Vec::new();
        for (i, check) in indexed {
            let slot = Slot::for_key(check.key);
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, group)) => group.push((i, check)),
                None => groups.push((slot, vec![(i, check)])),
            }
        }
        groups.into_iter().map(|(_, group)| group).collect()
    }

    /// Runs the request script on one group; returns the time it decided at and the decisions.
    async fn run(
        &self,
        script: &Script,
        mode: Mode,
        now: Option<Timestamp>,
        group: &[(usize, &Check<'_>)],
    ) -> Result<(u64, Vec<Decision>), StoreError> {
        let checks = || group.iter().map(|(_, c)| *c);
        let lead = Lead::Request(mode, now);
        let encode = |out: &mut Vec<u8>, head: Head<'_>| encode_call(out, head, lead, checks());
        let first_key = group.first().map(|(_, c)| c.key);
        let reply = self
            .call(script, &LIBRARY.request, first_key, encode)
            .await?;
        parse_reply(&reply, group.len())
    }

    async fn refund(&self, now: u64, group: &[(usize, &Check<'_>)]) -> Result<(), StoreError> {
        let checks = || group.iter().map(|(_, c)| *c);
        let lead = Lead::Refund(now);
        let encode = |out: &mut Vec<u8>, head: Head<'_>| encode_call(out, head, lead, checks());
        let first_key = group.first().map(|(_, c)| c.key);
        self.call(&REFUND, &LIBRARY.refund, first_key, encode)
            .await?;
        Ok(())
    }

    /// `FCALL` of `function`, or `EVALSHA` of `script` (the same code) where functions are
    /// refused; `encode` writes the command for either head. A server that starts refusing
    /// functions (a failover to Redis 6, an ACL changed) is answered with `EVALSHA` from then
    /// on, this call included.
    async fn call(
        &self,
        script: &Script,
        function: &str,
        first_key: Option<&str>,
        encode: impl Fn(&mut Vec<u8>, Head<'_>),
    ) -> Result<Value, ConnectionError> {
        let mut command = Vec::with_capacity(256);
        if self.uses_functions() {
            encode(&mut command, Head::Function(function));
            match self
                .connection
                .call_encoded(&LIBRARY.source, first_key, &command)
                .await
            {
                Err(ConnectionError::Refused(message)) if refuses_functions(&message) => {
                    self.functions.store(false, Ordering::Relaxed);
                }
                reply => return reply,
            }
            command.clear();
        }
        encode(&mut command, Head::Script(&script.sha));
        self.connection
            .eval_encoded(&script.sha, script.source, first_key, &command)
            .await
    }
}

/// What a script call names: a function of the library (`FCALL`) or a script by its SHA1
/// (`EVALSHA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head<'a> {
    /// `FCALL name`.
    Function(&'a str),
    /// `EVALSHA sha`.
    Script(&'a str),
}

/// The arguments before the rules: the request's mode and time, or a refund's time.
#[derive(Clone, Copy)]
enum Lead {
    Request(Mode, Option<Timestamp>),
    Refund(u64),
}

/// Writes the call of the request script (`head` names the function or the script) that
/// decides `checks` together, in RESP, into `out`: what [`RedisStore`] sends for a request
/// outside a cluster, for a connection of one's own to send the same.
pub fn encode_request(
    out: &mut Vec<u8>,
    head: Head<'_>,
    mode: Mode,
    now: Option<Timestamp>,
    checks: &[Check<'_>],
) {
    encode_call(out, head, Lead::Request(mode, now), checks.iter());
}

/// `head numkeys key… lead… (algorithm count period capacity cost)…` in RESP.
fn encode_call<'c>(
    out: &mut Vec<u8>,
    head: Head<'_>,
    lead: Lead,
    checks: impl ExactSizeIterator<Item = &'c Check<'c>> + Clone,
) {
    let rules = checks.len();
    let leading = match lead {
        Lead::Request(..) => 2,
        Lead::Refund(_) => 1,
    };
    resp::array(out, 3 + rules + leading + 5 * rules);
    let target = match head {
        Head::Function(name) => {
            resp::bulk(out, b"FCALL");
            name
        }
        Head::Script(sha) => {
            resp::bulk(out, b"EVALSHA");
            sha
        }
    };
    resp::bulk(out, target.as_bytes());
    resp::bulk_int(out, rules);
    for check in checks.clone() {
        resp::bulk(out, check.key.as_bytes());
    }
    match lead {
        Lead::Request(mode, now) => {
            resp::bulk(
                out,
                match mode {
                    Mode::Peek => b"peek",
                    _ => b"hit",
                },
            );
            match now {
                Some(t) => resp::bulk_int(out, t.as_micros()),
                None => resp::bulk(out, b""),
            }
        }
        Lead::Refund(now) => resp::bulk_int(out, now),
    }
    for check in checks {
        // The five arguments a script takes per rule: algorithm, count, period (µs),
        // capacity, cost.
        let rule = check.rule;
        resp::bulk(out, algorithm_code(rule.algorithm()).as_bytes());
        resp::bulk_int(out, rule.count());
        resp::bulk_int(out, rule.period_micros());
        resp::bulk_int(out, rule.capacity());
        resp::bulk_int(out, check.cost.get());
    }
}

/// Whether a refusal of `FCALL` or `FUNCTION LOAD` says that functions are refused on this
/// server (an unknown or renamed command, an ACL), rather than that the server refuses every
/// call for now (`OOM`, `BUSY`, `LOADING`…).
pub(crate) fn refuses_functions(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let about_functions = lower.contains("'fcall") || lower.contains("'function");
    about_functions && (lower.contains("unknown command") || lower.contains("noperm"))
}

pub(crate) fn algorithm_code(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::FixedWindow => "fw",
        Algorithm::TokenBucket => "tb",
        Algorithm::SlidingLog => "sl",
        // The default, and what a future variant of the core would be checked against.
        _ => "sw",
    }
}

fn placeholder() -> Decision {
    Decision {
        allowed: false,
        limit: 0,
        remaining: 0,
        reset_after: std::time::Duration::ZERO,
        retry_after: None,
    }
}

pub(crate) fn verdict(rules: impl Into<SmallVec<[Decision; 4]>>) -> Result<Verdict, StoreError> {
    Verdict::from_rules(rules.into()).ok_or(StoreError::InvalidRequest(
        "a request needs at least one rule",
    ))
}

/// `{now, then per rule: allowed, limit, remaining, reset_after_us, retry_after_us | -1}`.
pub(crate) fn parse_reply(reply: &Value, rules: usize) -> Result<(u64, Vec<Decision>), StoreError> {
    // Whatever made this reply (a corrupt key, a script of another version), it concerns this
    // request: `Rejected`, which leaves the breaker alone.
    let bad = || {
        let mut shown = format!("{reply:?}");
        if let Some((cut, _)) = shown.char_indices().nth(200) {
            shown.truncate(cut);
            shown.push('…');
        }
        StoreError::Rejected(format!("unexpected script reply: {shown}"))
    };
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    if items.len() != 1 + 5 * rules {
        return Err(bad());
    }
    let ints: Vec<i64> = items
        .iter()
        .map(|v| match v {
            Value::Int(i) => Ok(*i),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    let unsigned = |i: i64| u64::try_from(i).map_err(|_| bad());
    let now = unsigned(ints[0])?;
    let decisions = ints[1..]
        .chunks_exact(5)
        .map(|d| {
            Ok(Decision {
                allowed: d[0] == 1,
                limit: u32::try_from(d[1]).map_err(|_| bad())?,
                remaining: u32::try_from(d[2]).map_err(|_| bad())?,
                reset_after: std::time::Duration::from_micros(unsigned(d[3])?),
                retry_after: if d[4] < 0 {
                    None
                } else {
                    Some(std::time::Duration::from_micros(unsigned(d[4])?))
                },
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((now, decisions))
}

impl Store for RedisStore {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        Box::pin(self.decide_request(request))
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Ok(self.connection.del(keys).await?) })
    }

    fn is_remote(&self) -> bool {
        true
    }
}
