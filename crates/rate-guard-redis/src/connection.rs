//! Connections to Redis: standalone, Sentinel-managed or Cluster, behind one [`Connection`].
//!
//! A [`RedisConfig`] is parsed from a URL; [`Connection::connect`] fails within the connect
//! timeout when nothing answers; every call is bounded by the command timeout and fails with a
//! [`ConnectionError`] that tells a timeout from an unreachable server and from a refusal.
//! Concurrent calls on one connection (and its clones) are pipelined over multiplexed sockets.
//!
//! Scripts run through [`Connection::eval_encoded`]: `EVALSHA`, and on `NOSCRIPT` a
//! `SCRIPT LOAD` on the node that answered followed by exactly one more `EVALSHA`, on every
//! topology, so a script cache flushed by a restart, a failover or `SCRIPT FLUSH` costs one
//! extra round trip and never an `EVAL` of the whole body per call. A function library runs
//! through [`Connection::call_function`] (`FCALL`) the same way: a library lost to a restart or
//! `FUNCTION FLUSH` is loaded again (`FUNCTION LOAD REPLACE`) and the call made once more.
//!
//! ```no_run
//! use rate_guard_redis::connection::{Connection, RedisConfig};
//!
//! # async fn demo() -> Result<(), rate_guard_redis::connection::ConnectionError> {
//! let config = RedisConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")?;
//! let conn = Connection::connect(&config).await?;
//! let body = "return redis.call('INCR', KEYS[1])";
//! let sha = conn.load_script(body).await?;
//! let key = "{client-1}:hits";
//! let mut command = Vec::new(); // EVALSHA sha 1 key, in RESP
//! rate_guard_redis::resp::array(&mut command, 4);
//! for arg in ["EVALSHA", sha.as_str(), "1", key] {
//!     rate_guard_redis::resp::bulk(&mut command, arg.as_bytes());
//! }
//! let hits = conn.eval_encoded(&sha, body, Some(key), &command).await?;
//! assert_eq!(hits, redis::Value::Int(1));
//! # Ok(())
//! # }
//! ```

mod cluster;
mod config;
mod error;
mod node;
mod pipe;
mod sentinel;
mod sync;
mod sync_store;
mod tls;

use std::fmt;

use redis::{Cmd, RedisError, RedisResult, Value};

pub use self::config::{redact_url, RedisConfig, Topology};
pub use self::error::ConnectionError;
pub use self::pipe::{defer_wakeups, wake_deferred};
pub use self::sync_store::SyncStore;

use self::cluster::{to_all_masters, to_any_master, to_slot_master, Cluster};
use self::config::Endpoints;
use self::error::{is_no_function, is_no_script};
use self::node::{Link, Node, Settings, Target};
use self::tls::Tls;
use crate::resp;

/// A connection to Redis, whatever its topology. Cloning is cheap and clones share the
/// sockets.
///
/// - **Standalone**: a pool of [`RedisConfig::pool_size`] multiplexed connections taken in
///   turn; when one breaks, the pool is rebuilt in the background.
/// - **Sentinel**: the same pool, to the master the sentinels name (checked with `ROLE`); after
///   a broken connection, a `READONLY` answer or a server silent for the connect timeout, the
///   master is looked up again, so calls go on after a failover.
/// - **Cluster**: the redis crate's cluster connection (one multiplexed socket per node,
///   `MOVED`/`ASK` followed, slot map refreshed after a failover); calls are routed by the slot
///   of their first key.
#[derive(Clone)]
pub struct Connection {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Node(Node),
    Cluster(Cluster),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (topology, target) = match &self.kind {
            Kind::Node(node) => match node.target() {
                Target::Fixed(_) => ("standalone", node.target().describe()),
                Target::Sentinel { .. } => ("sentinel", node.target().describe()),
            },
            Kind::Cluster(cluster) => ("cluster", cluster.seeds().to_owned()),
        };
        f.debug_struct("Connection")
            .field("topology", &topology)
            .field("target", &target)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects as `config` says, and checks that the server answers (`PING`, or `ROLE` for a
    /// Sentinel master; a cluster's slot map is read). Fails within the connect timeout when
    /// nothing answers, with [`ConnectionError::Unavailable`] when nothing listens,
    /// [`ConnectionError::Timeout`] when something listens but does not answer and
    /// [`ConnectionError::Refused`] when the password is refused or missing.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectionError> {
        let tls = Tls::for_config(config)?;
        let settings = Settings {
            credentials: config.credentials.clone(),
            db: config.db,
            tls,
            pool_size: config.get_pool_size(),
            timeout: config.get_timeout(),
            connect_timeout: config.get_connect_timeout(),
        };
        let connect_timeout = settings.connect_timeout;
        let kind = match &config.endpoints {
            Endpoints::Standalone(addr) => {
                Kind::Node(Node::connect(Target::Fixed(addr.clone()), settings).await?)
            }
            Endpoints::Sentinel { sentinels, master } => {
                let target = Target::Sentinel {
                    sentinels: sentinels.clone(),
                    master: master.clone(),
                };
                Kind::Node(Node::connect(target, settings).await?)
            }
            Endpoints::Cluster(seeds) => Kind::Cluster(
                Cluster::connect(
                    seeds,
                    &settings.credentials,
                    settings.tls.as_ref(),
                    settings.timeout,
                    connect_timeout,
                )
                .await?,
            ),
        };
        Ok(Connection { kind })
    }

    /// Whether this is a Redis Cluster, where the keys of one script call must share a slot.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    /// How the servers are deployed.
    #[must_use]
    pub fn topology(&self) -> Topology {
        match &self.kind {
            Kind::Node(node) => match node.target() {
                Target::Fixed(_) => Topology::Standalone,
                Target::Sentinel { .. } => Topology::Sentinel,
            },
            Kind::Cluster(_) => Topology::Cluster,
        }
    }

    /// Runs the script whose SHA1 is `sha` (and whose source is `body`): `command` is the whole
    /// `EVALSHA sha numkeys key… arg…` in RESP (see [`crate::resp`]), whose first key is
    /// `first_key`. `EVALSHA`, and on `NOSCRIPT` a `SCRIPT LOAD` of `body` on the node that
    /// answered, then `EVALSHA` once more. On a cluster the call goes to the master owning the
    /// slot of `first_key` (the caller makes every key share it; without keys, to any master,
    /// after loading on all of them). The whole call, reload included, is bounded by the command
    /// timeout. A script error or another reply about this call's keys or arguments is
    /// [`ConnectionError::Rejected`]; a server-wide refusal (`OOM`, `BUSY`, `NOPERM`, a
    /// `NOSCRIPT` that outlives the reload…) and a `body` whose SHA1 is not `sha` are
    /// [`ConnectionError::Refused`].
    pub async fn eval_encoded(
        &self,
        sha: &str,
        body: &str,
        first_key: Option<&str>,
        command: &[u8],
    ) -> Result<Value, ConnectionError> {
        let check = |loaded: Value| check_sha(sha, &redis::from_redis_value::<String>(loaded)?);
        self.call_reloading(
            command,
            is_no_script,
            || script_load(body),
            check,
            first_key,
        )
        .await
    }

    /// Runs `function` of the function library whose source is `library` (`FCALL`) with `keys`
    /// and `args`; when the server answers that the function does not exist (a restart without
    /// persistence, `FUNCTION FLUSH`, a failover to a node that never had it), `FUNCTION LOAD
    /// REPLACE` of `library` on the node that answered, then `FCALL` once more. Routed, bounded
    /// and classified as [`eval_encoded`](Self::eval_encoded); a server that refuses functions
    /// (Redis 6: `unknown command`, an ACL without `FUNCTION`) is
    /// [`ConnectionError::Refused`].
    pub async fn call_function<A: AsRef<[u8]>>(
        &self,
        function: &str,
        library: &str,
        keys: &[&str],
        args: &[A],
    ) -> Result<Value, ConnectionError> {
        let command = script_call(b"FCALL", function, keys, args);
        self.call_encoded(library, keys.first().copied(), &command)
            .await
    }

    /// [`call_function`](Self::call_function) of a command already written: `command` is the
    /// whole `FCALL function numkeys key… arg…` in RESP (see [`crate::resp`]), whose first
    /// key is `first_key`; `library` is reloaded when the server lost it.
    pub async fn call_encoded(
        &self,
        library: &str,
        first_key: Option<&str>,
        command: &[u8],
    ) -> Result<Value, ConnectionError> {
        let check = |_: Value| Ok(());
        self.call_reloading(
            command,
            is_no_function,
            || function_load(library),
            check,
            first_key,
        )
        .await
    }

    /// `call`, and when its error is `missing`, `load()` (whose reply `check` accepts) on the
    /// node that answered, then `call` once more; all within the command timeout. `load` is
    /// built only then: a library or script body is tens of kilobytes, too much to copy into
    /// a command on every call.
    async fn call_reloading(
        &self,
        call: &[u8],
        missing: fn(&RedisError) -> bool,
        load: impl Fn() -> Cmd,
        check: impl Fn(Value) -> RedisResult<()>,
        first_key: Option<&str>,
    ) -> Result<Value, ConnectionError> {
        let (check, load) = (&check, &load);
        match &self.kind {
            Kind::Node(node) => {
                node.run(|mut link: Link| async move {
                    match link.query(call).await {
                        Err(e) if missing(&e) => {
                            check(link.query_cmd(&load()).await?)?;
                            link.query(call).await
                        }
                        reply => reply,
                    }
                })
                .await
            }
            Kind::Cluster(cluster) => {
                let call = resp::to_cmd(call).ok_or_else(|| {
                    ConnectionError::Rejected("a command that is not RESP".to_owned())
                })?;
                let call = &call;
                let (routing, load_routing) = match first_key {
                    Some(key) => (to_slot_master(key), to_slot_master(key)),
                    None => (to_any_master(), to_all_masters()),
                };
                cluster
                    .bounded(async {
                        match cluster.route_raw(call.clone(), routing.clone()).await {
                            Err(e) if missing(&e) => {
                                check(cluster.route_raw(load(), load_routing).await?)?;
                                cluster.route_raw(call.clone(), routing).await
                            }
                            reply => reply,
                        }
                    })
                    .await
            }
        }
    }

    /// `FUNCTION LOAD REPLACE` of the library `source` on the server, or on every master of a
    /// cluster. [`ConnectionError::Refused`] when the server refuses functions (Redis 6, an ACL
    /// or a renamed command), [`ConnectionError::Rejected`] when it refuses this library.
    pub async fn load_library(&self, source: &str) -> Result<(), ConnectionError> {
        let load = function_load(source);
        match &self.kind {
            Kind::Node(node) => {
                node.run(|mut link: Link| {
                    let load = &load;
                    async move { link.query_cmd(load).await }
                })
                .await?;
            }
            Kind::Cluster(cluster) => {
                cluster.route(load, to_all_masters()).await?;
            }
        }
        Ok(())
    }

    /// `SCRIPT LOAD` of `body` on the server, or on every master of a cluster; returns the
    /// script's SHA1 as Redis computed it.
    pub async fn load_script(&self, body: &str) -> Result<String, ConnectionError> {
        let load = script_load(body);
        let reply = match &self.kind {
            Kind::Node(node) => {
                node.run(|mut link: Link| {
                    let load = &load;
                    async move { link.query_cmd(load).await }
                })
                .await?
            }
            Kind::Cluster(cluster) => cluster.route(load, to_all_masters()).await?,
        };
        redis::from_redis_value::<String>(reply)
            .map_err(|e| ConnectionError::Refused(format!("unexpected SCRIPT LOAD reply: {e}")))
    }

    /// `DEL` of `keys`; on a cluster one `DEL` per slot, sent at once. No keys, no round trip.
    pub async fn del(&self, keys: &[&str]) -> Result<(), ConnectionError> {
        if keys.is_empty() {
            return Ok(());
        }
        match &self.kind {
            Kind::Node(node) => {
                let mut del = redis::cmd("DEL");
                del.arg(keys);
                node.run(|mut link: Link| {
                    let del = &del;
                    async move { link.query_cmd(del).await }
                })
                .await
                .map(drop)
            }
            Kind::Cluster(cluster) => cluster.del(keys).await,
        }
    }

    /// Runs one command (`args[0]` and its arguments, e.g. `["SCRIPT", "FLUSH"]`) on the
    /// server, or on every master of a cluster, and discards the reply; meant for tests and
    /// maintenance. Bounded by the command timeout.
    pub async fn command_everywhere(&self, args: &[&str]) -> Result<(), ConnectionError> {
        if args.is_empty() {
            return Err(ConnectionError::Refused("an empty command".to_owned()));
        }
        let mut command = redis::cmd(args[0]);
        command.arg(&args[1..]);
        match &self.kind {
            Kind::Node(node) => node
                .run(|mut link: Link| {
                    let command = &command;
                    async move { link.query_cmd(command).await }
                })
                .await
                .map(drop),
            Kind::Cluster(cluster) => cluster.route(command, to_all_masters()).await.map(drop),
        }
    }
}

/// `name target numkeys key… arg…` in RESP.
pub(crate) fn script_call<A: AsRef<[u8]>>(
    name: &[u8],
    target: &str,
    keys: &[&str],
    args: &[A],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 32 * (keys.len() + args.len()));
    resp::array(&mut out, 3 + keys.len() + args.len());
    resp::bulk(&mut out, name);
    resp::bulk(&mut out, target.as_bytes());
    resp::bulk_int(&mut out, keys.len());
    for key in keys {
        resp::bulk(&mut out, key.as_bytes());
    }
    for arg in args {
        resp::bulk(&mut out, arg.as_ref());
    }
    out
}

fn function_load(source: &str) -> Cmd {
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD").arg("REPLACE").arg(source);
    load
}

fn script_load(body: &str) -> Cmd {
    let mut load = redis::cmd("SCRIPT");
    load.arg("LOAD").arg(body);
    load
}

/// A body whose SHA1 differs from the one asked for would make the retry fail with `NOSCRIPT`
/// again; say so instead.
fn check_sha(expected: &str, loaded: &str) -> RedisResult<()> {
    if loaded.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(RedisError::from((
            redis::ErrorKind::Client,
            "the script body does not match its SHA1",
            format!("EVALSHA asked for {expected}, SCRIPT LOAD of the body gave {loaded}"),
        )))
    }
}
