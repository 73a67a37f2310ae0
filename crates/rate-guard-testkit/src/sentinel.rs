//! A Sentinel deployment: one master, one replica, three sentinels.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use crate::process::{self, not_yet};
use crate::resp::Reply;
use crate::server::{Launch, Mode, RedisServer, RedisServerBuilder};

/// The name the sentinels monitor the master under.
const MASTER_NAME: &str = "mymaster";
const SENTINELS: usize = 3;
const QUORUM: usize = 2;
/// Sentinels find each other through hello messages sent every 2 s; a few rounds must pass.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A master, a replica (`--replicaof`) and three sentinels monitoring them as `mymaster` with
/// quorum 2, `down-after-milliseconds 1000`, `failover-timeout 5000` and `parallel-syncs 1`.
///
/// [`start`](Self::start) returns once every sentinel reports the master, knows the replica with
/// its link up, and knows the two other sentinels. Dropping the value kills every process.
///
/// ```no_run
/// let sentinel = rate_guard_testkit::RedisSentinel::start()?;
/// let old = sentinel.master_addr()?;
/// let new = sentinel.failover()?;
/// assert_ne!(old, new);
/// assert_eq!(sentinel.master_addr()?, new);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    /// Starts the master, the replica and the sentinels, and waits (at most 30 s) until every
    /// sentinel knows the whole deployment.
    pub fn start() -> io::Result<RedisSentinel> {
        let master = RedisServer::start()?;
        let replica = RedisServerBuilder::new()
            .args(["--replicaof", "127.0.0.1", &master.port().to_string()])
            .start()?;
        let directives = format!(
            "sentinel resolve-hostnames no\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {port} {QUORUM}\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = master.port(),
        );
        let sentinels = (0..SENTINELS)
            .map(|_| {
                Launch {
                    mode: Mode::Sentinel(directives.clone()),
                    args: Vec::new(),
                    password: None,
                    tls: None,
                }
                .start()
            })
            .collect::<io::Result<Vec<_>>>()?;
        let deployment = RedisSentinel {
            servers: vec![master, replica],
            sentinels,
        };
        let (master, replica) = (deployment.servers[0].addr(), deployment.servers[1].addr());
        process::wait_until(
            SETTLE_TIMEOUT,
            "every sentinel to know the master, the replica and the other sentinels",
            || {
                deployment
                    .sentinels
                    .iter()
                    .try_for_each(|sentinel| check_sentinel(sentinel, &master, &replica))
            },
        )?;
        Ok(deployment)
    }

    /// The name the sentinels monitor the master under (`"mymaster"`).
    #[must_use]
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The current master's address, from `SENTINEL get-master-addr-by-name` on the first
    /// sentinel that answers.
    pub fn master_addr(&self) -> io::Result<String> {
        let mut last_error = None;
        for sentinel in self.sentinels.iter().filter(|s| s.pid().is_some()) {
            match master_addr_from(sentinel) {
                Ok(addr) => return Ok(addr),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("every sentinel is stopped")))
    }

    /// The sentinels' addresses.
    #[must_use]
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::addr).collect()
    }

    /// `"redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/mymaster"`.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://{}/{MASTER_NAME}",
            self.sentinel_addrs().join(",")
        )
    }

    /// The two data servers in start order (the initial master first), for fault tests.
    #[must_use]
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The data server listening on `addr`, mutably, to [`stop`](RedisServer::stop) or
    /// [`restart`](RedisServer::restart) it. The initial replica restarts with its original
    /// `--replicaof`, so after a failover the sentinels have to reconfigure it.
    pub fn server_mut(&mut self, addr: &str) -> Option<&mut RedisServer> {
        self.servers.iter_mut().find(|server| server.addr() == addr)
    }

    /// The sentinel processes.
    #[must_use]
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// Runs `SENTINEL FAILOVER mymaster` and waits (at most 30 s) until every sentinel reports the
    /// former replica as master and it answers `ROLE` as master. Returns its address. The request
    /// is repeated while the sentinel answers that no replica is good enough yet, which happens
    /// right after a previous failover.
    pub fn failover(&self) -> io::Result<String> {
        let old_master = self.master_addr()?;
        let replica = self
            .servers
            .iter()
            .find(|server| server.addr() != old_master)
            .ok_or_else(|| io::Error::other("no replica to promote"))?;
        let new_master = replica.addr();
        let mut requested = false;
        process::wait_until(
            SETTLE_TIMEOUT,
            &format!("the sentinels to promote {new_master}"),
            || {
                if !requested {
                    self.sentinels[0].query(&["SENTINEL", "FAILOVER", MASTER_NAME])?;
                    requested = true;
                }
                for sentinel in &self.sentinels {
                    let reported = master_addr_from(sentinel)?;
                    if reported != new_master {
                        return Err(not_yet(format!(
                            "sentinel {} still reports {reported}",
                            sentinel.addr()
                        )));
                    }
                }
                match replica.role()?.as_str() {
                    "master" => Ok(()),
                    other => Err(not_yet(format!("{new_master} answers ROLE {other}"))),
                }
            },
        )?;
        Ok(new_master)
    }
}

fn master_addr_from(sentinel: &RedisServer) -> io::Result<String> {
    let reply = sentinel.query(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME])?;
    match reply {
        Reply::Array(parts) if parts.len() == 2 => {
            let mut parts = parts.into_iter();
            let ip = parts.next().unwrap_or(Reply::Nil).into_text()?;
            let port = parts.next().unwrap_or(Reply::Nil).into_text()?;
            Ok(format!("{ip}:{port}"))
        }
        other => Err(not_yet(format!(
            "sentinel {} does not know the master: {other:?}",
            sentinel.addr()
        ))),
    }
}

/// Succeeds when `sentinel` reports `master`, sees it healthy, knows `replica` with its link up
/// and knows every other sentinel.
fn check_sentinel(sentinel: &RedisServer, master: &str, replica: &str) -> io::Result<()> {
    let at = sentinel.addr();
    let reported = master_addr_from(sentinel)?;
    if reported != master {
        return Err(not_yet(format!("sentinel {at} reports master {reported}")));
    }
    let state = fields(sentinel.query(&["SENTINEL", "master", MASTER_NAME])?)?;
    let field = |name: &str| state.get(name).map_or("", String::as_str);
    if field("flags") != "master" {
        return Err(not_yet(format!(
            "sentinel {at} flags the master {}",
            field("flags")
        )));
    }
    if field("num-other-sentinels") != (SENTINELS - 1).to_string() {
        return Err(not_yet(format!(
            "sentinel {at} knows {} other sentinels",
            field("num-other-sentinels")
        )));
    }
    let replicas = sentinel
        .query(&["SENTINEL", "replicas", MASTER_NAME])?
        .into_array()?
        .into_iter()
        .map(fields)
        .collect::<io::Result<Vec<_>>>()?;
    let known = replicas.iter().any(|fields| {
        fields
            .get("name")
            .is_some_and(|name| name.as_str() == replica)
            && fields.get("flags").is_some_and(|flags| flags == "slave")
            && fields
                .get("master-link-status")
                .is_some_and(|status| status == "ok")
    });
    if known {
        Ok(())
    } else {
        Err(not_yet(format!(
            "sentinel {at} does not see replica {replica} healthy"
        )))
    }
}

/// A flat `[key, value, key, value, ...]` reply as a map.
fn fields(reply: Reply) -> io::Result<HashMap<String, String>> {
    let items = reply
        .into_array()?
        .into_iter()
        .map(Reply::into_text)
        .collect::<io::Result<Vec<_>>>()?;
    Ok(items
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect())
}
