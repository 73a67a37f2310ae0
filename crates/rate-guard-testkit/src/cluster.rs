//! A Redis Cluster of 3 masters and 3 replicas.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, not_yet};
use crate::resp;
use crate::server::{self, Launch, Mode, RedisServer, TlsLaunch};
use crate::tls::TestCertificates;

const MASTERS: usize = 3;
const REPLICAS_PER_MASTER: usize = 1;
/// How long creation and failover may take until every node agrees and reports `ok`.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A manual failover that has not happened by then was aborted by Redis (its own limit is 5 s),
/// so it is requested again.
const FAILOVER_RETRY: Duration = Duration::from_secs(6);

/// A Redis Cluster of 3 masters with one replica each, every node a [`RedisServer`] on free ports
/// (cluster bus on a second free port, `--cluster-node-timeout 2000`).
///
/// [`start`](Self::start) returns once every node reports `cluster_state:ok`, knows all six
/// nodes, agrees on the masters, and every replica's link to its master is up. Dropping the
/// value kills every node.
///
/// ```no_run
/// let cluster = rate_guard_testkit::RedisCluster::start()?;
/// assert_eq!(cluster.masters()?.len(), 3);
/// cluster.cmd(&["SET", "greeting", "hello"])?;
/// assert_eq!(cluster.cmd(&["GET", "greeting"])?, "hello");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    tls: Option<ClientFiles>,
}

/// What `redis-cli` needs to speak TLS to the nodes: the CA, and the client certificate and key.
#[derive(Debug)]
struct ClientFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create ... --cluster-replicas 1`
    /// and waits until the cluster is healthy (at most 30 s).
    pub fn start() -> io::Result<RedisCluster> {
        Self::start_with(None)
    }

    /// Like [`start`](Self::start), but every node also serves TLS on a port of its own
    /// ([`tls_url`](Self::tls_url)) with `certs.server()`, and the cluster bus and replication
    /// run over TLS (`--tls-cluster yes --tls-replication yes`, the nodes presenting
    /// `certs.client()` to each other). Clients must present a certificate of `certs.ca()` when
    /// `require_client_certs` (`--tls-auth-clients yes`). The slots are assigned through the
    /// TLS ports (`redis-cli --tls ... --cluster create`); the plain ports stay open for the
    /// fixture's probes and [`cmd`](Self::cmd). A node answers a TLS client with the TLS ports of
    /// its peers (`CLUSTER SLOTS`, `MOVED`) and a plain one with the plain ports. `certs` must
    /// outlive the cluster.
    pub fn start_tls(
        certs: &TestCertificates,
        require_client_certs: bool,
    ) -> io::Result<RedisCluster> {
        let (client_cert, client_key) = certs.client();
        let (cert, key) = certs.server();
        let client = ClientFiles {
            ca: certs.ca(),
            cert: client_cert,
            key: client_key,
        };
        let server = TlsLaunch::new(cert, key, certs.ca(), require_client_certs);
        Self::start_with(Some((client, server)))
    }

    fn start_with(tls: Option<(ClientFiles, TlsLaunch)>) -> io::Result<RedisCluster> {
        let count = MASTERS * (1 + REPLICAS_PER_MASTER);
        let nodes = (0..count)
            .map(|_| {
                let mut args = Vec::new();
                if let Some((client, _)) = &tls {
                    args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
                    );
                    args.extend([
                        "--tls-client-cert-file".to_owned(),
                        client.cert.display().to_string(),
                        "--tls-client-key-file".to_owned(),
                        client.key.display().to_string(),
                    ]);
                }
                Launch {
                    mode: Mode::ClusterNode,
                    args,
                    password: None,
                    tls: tls.as_ref().map(|(_, server)| server.clone()),
                }
                .start()
            })
            .collect::<io::Result<Vec<_>>>()?;
        let cluster = RedisCluster {
            nodes,
            tls: tls.map(|(client, _)| client),
        };
        let mut create = Command::new(process::cli_bin());
        if let Some(files) = &cluster.tls {
            create
                .args(["--tls", "--cacert"])
                .arg(&files.ca)
                .arg("--cert")
                .arg(&files.cert)
                .arg("--key")
                .arg(&files.key);
        }
        let created = process::run(
            create
                .args(["--cluster", "create"])
                .args(cluster.create_addrs())
                .args(["--cluster-replicas", &REPLICAS_PER_MASTER.to_string()])
                .arg("--cluster-yes"),
            SETTLE_TIMEOUT,
        )?;
        if !created.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr)
            )));
        }
        process::wait_until(SETTLE_TIMEOUT, "the new cluster to settle", || {
            cluster.check_settled()
        })?;
        Ok(cluster)
    }

    /// Every node, in start order; stop, pause or restart them for fault tests.
    #[must_use]
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node listening on `addr` (`"127.0.0.1:<port>"`).
    #[must_use]
    pub fn node(&self, addr: &str) -> Option<&RedisServer> {
        self.nodes.iter().find(|node| node.addr() == addr)
    }

    /// The node listening on `addr`, mutably, to [`stop`](RedisServer::stop) or
    /// [`restart`](RedisServer::restart) it.
    pub fn node_mut(&mut self, addr: &str) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|node| node.addr() == addr)
    }

    /// The addresses of the masters that own slots, sorted, as `CLUSTER NODES` on the first
    /// answering node reports them now (so they follow failovers).
    pub fn masters(&self) -> io::Result<Vec<String>> {
        self.addrs_where(|node| node.is_master() && node.has_slots)
    }

    /// The addresses of the replicas, sorted, as `CLUSTER NODES` on the first answering node
    /// reports them now.
    pub fn replicas(&self) -> io::Result<Vec<String>> {
        self.addrs_where(NodeLine::is_replica)
    }

    fn addrs_where(&self, keep: impl Fn(&NodeLine) -> bool) -> io::Result<Vec<String>> {
        let mut last_error = None;
        for node in self.nodes.iter().filter(|node| node.pid().is_some()) {
            match cluster_nodes(node) {
                Ok(lines) => {
                    let mut addrs: Vec<String> = lines
                        .into_iter()
                        .filter(|line| keep(line))
                        .map(|line| line.addr)
                        .collect();
                    addrs.sort();
                    return Ok(addrs);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("every cluster node is stopped")))
    }

    /// The addresses of all six nodes as started, for a client's seed list.
    #[must_use]
    pub fn seed_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// `"redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,..."` listing every node.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.seed_addrs().join(","))
    }

    /// `"rediss+cluster://127.0.0.1:<tls p1>,..."` listing every node's TLS port, when the
    /// cluster was started with [`start_tls`](Self::start_tls).
    #[must_use]
    pub fn tls_url(&self) -> Option<String> {
        self.tls.as_ref()?;
        let addrs: Option<Vec<String>> = self
            .nodes
            .iter()
            .map(|node| node.tls_port().map(|port| format!("127.0.0.1:{port}")))
            .collect();
        Some(format!("rediss+cluster://{}", addrs?.join(",")))
    }

    /// The addresses `redis-cli --cluster create` joins: the TLS ports on a TLS cluster.
    fn create_addrs(&self) -> Vec<String> {
        match &self.tls {
            Some(_) => self
                .nodes
                .iter()
                .map(|node| format!("127.0.0.1:{}", node.tls_port().unwrap_or(node.port())))
                .collect(),
            None => self.seed_addrs(),
        }
    }

    /// Runs one command through `redis-cli -c` (following redirections) against the first running
    /// node, like [`RedisServer::cmd`].
    pub fn cmd(&self, args: &[&str]) -> io::Result<String> {
        let node = self
            .nodes
            .iter()
            .find(|node| node.pid().is_some())
            .ok_or_else(|| io::Error::other("every cluster node is stopped"))?;
        server::cli(node.port(), None, &["-c"], args)
    }

    /// Promotes the replica at `replica_addr` with `CLUSTER FAILOVER` and waits (at most 30 s)
    /// until it answers `ROLE` as master and the whole cluster has settled again, its former
    /// master now a replica with its link up. Expects every node to be running.
    pub fn failover(&self, replica_addr: &str) -> io::Result<()> {
        let replica = self.node(replica_addr).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{replica_addr} is not a node of this cluster"),
            )
        })?;
        if replica.role()? != "slave" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{replica_addr} is not a replica"),
            ));
        }
        replica.query(&["CLUSTER", "FAILOVER"])?;
        let mut requested = Instant::now();
        process::wait_until(
            SETTLE_TIMEOUT,
            &format!("{replica_addr} to become a master"),
            || {
                if replica.role()? != "master" {
                    if requested.elapsed() > FAILOVER_RETRY {
                        replica.query(&["CLUSTER", "FAILOVER"])?;
                        requested = Instant::now();
                    }
                    return Err(not_yet(format!("{replica_addr} is still a replica")));
                }
                self.check_settled()?;
                if self.masters()?.iter().any(|addr| addr == replica_addr) {
                    Ok(())
                } else {
                    Err(not_yet(format!("{replica_addr} is not listed as a master")))
                }
            },
        )
    }

    /// Succeeds when every node is `ok`, knows every node as healthy, sees the same 3 masters and
    /// 3 replicas, and (for a replica) has its master link up.
    fn check_settled(&self) -> io::Result<()> {
        let mut agreed: Option<Vec<String>> = None;
        for node in &self.nodes {
            let addr = node.addr();
            let info = node.query(&["CLUSTER", "INFO"])?.into_text()?;
            if resp::info_field(&info, "cluster_state") != Some("ok") {
                return Err(not_yet(format!("{addr}: cluster_state is not ok")));
            }
            let lines = cluster_nodes(node)?;
            if lines.len() != self.nodes.len() {
                return Err(not_yet(format!("{addr} knows {} nodes", lines.len())));
            }
            if let Some(sick) = lines.iter().find(|line| !line.is_healthy()) {
                return Err(not_yet(format!(
                    "{addr} sees {} as {:?}",
                    sick.addr, sick.flags
                )));
            }
            let mut masters: Vec<String> = lines
                .iter()
                .filter(|line| line.is_master() && line.has_slots)
                .map(|line| line.addr.clone())
                .collect();
            masters.sort();
            if masters.len() != MASTERS {
                return Err(not_yet(format!("{addr} sees masters {masters:?}")));
            }
            let replicas = lines.iter().filter(|line| line.is_replica()).count();
            if replicas != self.nodes.len() - MASTERS {
                return Err(not_yet(format!("{addr} sees {replicas} replicas")));
            }
            match &agreed {
                Some(first) if *first != masters => {
                    return Err(not_yet(format!(
                        "{addr} sees masters {masters:?}, another node {first:?}"
                    )));
                }
                Some(_) => {}
                None => agreed = Some(masters),
            }
            if node.role()? == "slave" {
                let replication = node.query(&["INFO", "replication"])?.into_text()?;
                if resp::info_field(&replication, "master_link_status") != Some("up") {
                    return Err(not_yet(format!("{addr}: master link is not up")));
                }
            }
        }
        Ok(())
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct NodeLine {
    addr: String,
    flags: Vec<String>,
    connected: bool,
    has_slots: bool,
}

impl NodeLine {
    fn parse(line: &str) -> Option<NodeLine> {
        // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
        let fields: Vec<&str> = line.split_whitespace().collect();
        let endpoint = fields.get(1)?;
        Some(NodeLine {
            addr: endpoint.split('@').next()?.to_owned(),
            flags: fields.get(2)?.split(',').map(str::to_owned).collect(),
            connected: *fields.get(7)? == "connected",
            has_slots: fields.len() > 8,
        })
    }

    fn is_master(&self) -> bool {
        self.flags.iter().any(|flag| flag == "master")
    }

    fn is_replica(&self) -> bool {
        self.flags.iter().any(|flag| flag == "slave")
    }

    fn is_healthy(&self) -> bool {
        self.connected
            && !self
                .flags
                .iter()
                .any(|flag| matches!(flag.as_str(), "fail" | "fail?" | "handshake" | "noaddr"))
    }
}

fn cluster_nodes(node: &RedisServer) -> io::Result<Vec<NodeLine>> {
    let text = node.query(&["CLUSTER", "NODES"])?.into_text()?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            NodeLine::parse(line).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected CLUSTER NODES line {line:?}"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::NodeLine;

    #[test]
    fn parses_cluster_nodes_lines() {
        let master = NodeLine::parse(
            "3b9b 127.0.0.1:17011@18011 myself,master - 0 1795803816000 1 connected 0-5460",
        )
        .unwrap();
        assert_eq!(master.addr, "127.0.0.1:17011");
        assert!(master.is_master() && master.has_slots && master.is_healthy());

        let replica =
            NodeLine::parse("f2c0 127.0.0.1:17012@18012,host slave 3b9b 0 1795 1 connected")
                .unwrap();
        assert_eq!(replica.addr, "127.0.0.1:17012");
        assert!(!replica.is_master() && !replica.has_slots && replica.is_healthy());

        let failed =
            NodeLine::parse("2b63 127.0.0.1:17013@18013 master,fail - 0 1795 3 disconnected")
                .unwrap();
        assert!(!failed.is_healthy());
        assert!(NodeLine::parse("garbage").is_none());
    }
}
