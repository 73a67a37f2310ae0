//! A master reached directly (standalone) or through Sentinel: a small pool of multiplexed
//! connections, replaced by a background task when it breaks, and, for Sentinel, pointed at
//! whichever server the sentinels call master at that moment.
//!
//! Replacing is the one recovery mechanism for both: a standalone server is reconnected to, a
//! Sentinel master is looked up again. For Sentinel, a `+switch-master` announcement (see
//! [`super::sentinel`]) replaces the pool at once, so that writes stop going to a demoted
//! master that still accepts them; a `READONLY` answer or a closed socket does the same when the
//! announcement was missed.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use futures_util::future::{BoxFuture, Shared};
use futures_util::{FutureExt, TryFutureExt};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, RedisResult, Value,
};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::{Credentials, HostPort};
use super::error::{aftermath, classify, is_read_only, Aftermath, ConnectionError};
use super::pipe::Pipe;
use super::sentinel;
use super::tls::Tls;
use crate::resp;

/// What every connection of a [`Node`] is made with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) credentials: Credentials,
    pub(crate) db: i64,
    pub(crate) tls: Option<Tls>,
    pub(crate) pool_size: usize,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl Settings {
    pub(crate) fn secret(&self) -> Option<&str> {
        self.credentials.password.as_deref()
    }
}

/// Where the master is.
#[derive(Debug)]
pub(crate) enum Target {
    /// Always at this address.
    Fixed(HostPort),
    /// Wherever these sentinels say `master` is.
    Sentinel {
        sentinels: Vec<HostPort>,
        master: String,
    },
}

impl Target {
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Fixed(addr) => addr.to_string(),
            Target::Sentinel { sentinels, master } => {
                let sentinels: Vec<String> = sentinels.iter().map(ToString::to_string).collect();
                format!("master `{master}` of sentinels {}", sentinels.join(","))
            }
        }
    }
}

/// A standalone or Sentinel-managed master. Clones share the pool.
#[derive(Clone)]
pub(crate) struct Node {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    target: Target,
    settings: Settings,
    state: Mutex<State>,
    /// Dropped with the node, which tells the Sentinel watchers to stop.
    stop: watch::Sender<()>,
}

/// A connection attempt in progress, shared by every call that waits for it.
type Refresh = Shared<BoxFuture<'static, Result<Arc<Pool>, ConnectionError>>>;

#[derive(Default)]
struct State {
    /// The connections in use; `None` once they broke, until a refresh succeeds.
    pool: Option<Arc<Pool>>,
    /// The refresh under way, if any.
    refresh: Option<InFlight>,
    /// Numbers refreshes, so that one superseded by a newer one installs nothing.
    generation: u64,
}

struct InFlight {
    generation: u64,
    /// The server it connects to first, when a `+switch-master` named it.
    hint: Option<HostPort>,
    refresh: Refresh,
}

/// Connections to one server, taken in turn: lean [`Pipe`]s over plain TCP, the redis
/// crate's multiplexed connections over TLS.
pub(crate) struct Pool {
    server: HostPort,
    conns: Vec<Link>,
    next: AtomicUsize,
    born: Instant,
    /// When calls began to time out without any answer since, in milliseconds after `born`
    /// plus one; 0 while the server answers.
    silent_since: AtomicU64,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for conn in &self.conns {
            if let Link::Pipe(pipe) = conn {
                pipe.close("the connection was replaced");
            }
        }
    }
}

/// One connection of a pool: what a call runs on.
#[derive(Clone)]
pub(crate) enum Link {
    /// Plain TCP: a [`Pipe`].
    Pipe(Arc<Pipe>),
    /// TLS: the redis crate's multiplexed connection.
    Mux(MultiplexedConnection),
}

impl Link {
    /// Sends `command` (RESP, as [`resp`](crate::resp) writes it) and waits for its reply.
    pub(crate) async fn query(&mut self, command: &[u8]) -> RedisResult<Value> {
        match self {
            Link::Pipe(pipe) => pipe.call(command).await,
            Link::Mux(conn) => match resp::to_cmd(command) {
                Some(cmd) => cmd.query_async(conn).await,
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "not a RESP command",
                ))),
            },
        }
    }

    /// Sends `cmd` and waits for its reply.
    pub(crate) async fn query_cmd(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Link::Pipe(pipe) => pipe.call(&cmd.get_packed_command()).await,
            Link::Mux(conn) => cmd.query_async(conn).await,
        }
    }
}

impl Pool {
    fn pick(&self) -> Link {
        if let [only] = self.conns.as_slice() {
            return only.clone();
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    fn answered(&self) {
        // Read first: the common case writes nothing to a line every call shares.
        if self.silent_since.load(Ordering::Relaxed) != 0 {
            self.silent_since.store(0, Ordering::Relaxed);
        }
    }

    /// Records a call that timed out; true when the server has now been silent for `limit`.
    fn silent_for(&self, limit: Duration) -> bool {
        let now = self.born.elapsed().as_millis() as u64 + 1;
        match self
            .silent_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => false,
            Err(since) => Duration::from_millis(now - since) >= limit,
        }
    }
}

/// What a fresh connection must answer before it is used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The server is there, accepts our credentials, and its `ROLE` is not `slave`: a standalone URL that names a replica is refused (every write
    /// would fail with `READONLY`), naming the master to use instead. A server that does not
    /// let us run `ROLE` (an ACL, a renamed command) is probed with `PING`.
    NotReplica,
    /// `ROLE` says `master`: a Sentinel answer is checked against the server itself, since a
    /// sentinel may not have seen a failover yet.
    Master,
}

impl Node {
    /// Connects to the target within the connect timeout.
    pub(crate) async fn connect(
        target: Target,
        settings: Settings,
    ) -> Result<Self, ConnectionError> {
        let node = Node {
            inner: Arc::new(Inner {
                target,
                settings,
                state: Mutex::new(State::default()),
                stop: watch::channel(()).0,
            }),
        };
        node.inner.pool().await?;
        if let Target::Sentinel { sentinels, master } = &node.inner.target {
            for addr in sentinels {
                sentinel::spawn_watcher(
                    addr.clone(),
                    master.clone(),
                    node.inner.settings.clone(),
                    Arc::downgrade(&node.inner),
                    node.inner.stop.subscribe(),
                );
            }
        }
        Ok(node)
    }

    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Runs `op` on one connection of the pool, within the command timeout (waiting for a
    /// reconnection included). A broken connection is replaced in the background; a `READONLY`
    /// answer, which means nothing was written, is followed by one more try on the new master.
    pub(crate) async fn run<F, Fut>(&self, op: F) -> Result<Value, ConnectionError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = RedisResult<Value>>,
    {
        let settings = &self.inner.settings;
        let timeout = settings.timeout;
        let deadline = Instant::now() + timeout;
        let mut retried = false;
        loop {
            let pool = tokio::time::timeout_at(deadline, self.inner.pool())
                .await
                .map_err(|_| ConnectionError::Timeout(timeout))??;
            match tokio::time::timeout_at(deadline, op(pool.pick())).await {
                Ok(Ok(value)) => {
                    pool.answered();
                    return Ok(value);
                }
                Ok(Err(e)) => {
                    match aftermath(&e) {
                        Aftermath::Replace => self.inner.replace(&pool),
                        Aftermath::Keep => pool.answered(),
                    }
                    if is_read_only(&e) && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(classify(
                        &e,
                        &pool.server.to_string(),
                        timeout,
                        settings.secret(),
                    ));
                }
                Err(_) => {
                    // A frozen server or a black-holed socket never closes the connection;
                    // once nothing has come back for as long as a connection may take to
                    // establish, look again (a sentinel may have moved the master meanwhile).
                    if pool.silent_for(settings.connect_timeout) {
                        self.inner.replace(&pool);
                    }
                    return Err(ConnectionError::Timeout(timeout));
                }
            }
        }
    }
}

impl Inner {
    /// The current pool, or the outcome of the refresh under way (started if need be).
    async fn pool(self: &Arc<Self>) -> Result<Arc<Pool>, ConnectionError> {
        let refresh = {
            let mut state = self.state.lock();
            if let Some(pool) = &state.pool {
                return Ok(Arc::clone(pool));
            }
            if let Some(in_flight) = &state.refresh {
                in_flight.refresh.clone()
            } else {
                self.start_refresh(&mut state, None).refresh.clone()
            }
        };
        refresh.await
    }

    /// Drops `broken` (unless it was replaced already) and starts connecting anew.
    fn replace(self: &Arc<Self>, broken: &Arc<Pool>) {
        let mut state = self.state.lock();
        if state.pool.as_ref().is_some_and(|p| Arc::ptr_eq(p, broken)) {
            state.pool = None;
            if state.refresh.is_none() {
                self.start_refresh(&mut state, None);
            }
        }
    }

    /// Moves to `master`, which a sentinel announced: the current pool is dropped at once, so
    /// no call writes to the demoted master meanwhile.
    pub(crate) fn switch_to(self: &Arc<Self>, master: HostPort) {
        let mut state = self.state.lock();
        let there = state.pool.as_ref().is_some_and(|p| p.server == master);
        let going = state
            .refresh
            .as_ref()
            .is_some_and(|f| f.hint.as_ref() == Some(&master));
        if !there && !going {
            state.pool = None;
            self.start_refresh(&mut state, Some(master));
        }
    }

    /// Spawns a connection attempt, bounded by the connect timeout, that installs its pool
    /// when it succeeds, unless a newer attempt superseded it. It runs to the end even when
    /// every caller waiting for it gave up, so that a reconnection slower than the command
    /// timeout still completes.
    fn start_refresh<'s>(
        self: &Arc<Self>,
        state: &'s mut State,
        hint: Option<HostPort>,
    ) -> &'s InFlight {
        state.generation += 1;
        let generation = state.generation;
        let inner = Arc::clone(self);
        let first = hint.clone();
        let task = tokio::spawn(async move {
            let limit = inner.settings.connect_timeout;
            let result = match tokio::time::timeout(limit, inner.connect_pool(first)).await {
                Ok(result) => result.map(Arc::new),
                Err(_) => Err(ConnectionError::Timeout(limit)),
            };
            let mut state = inner.state.lock();
            if state
                .refresh
                .as_ref()
                .is_some_and(|f| f.generation == generation)
            {
                state.refresh = None;
                if let Ok(pool) = &result {
                    state.pool = Some(Arc::clone(pool));
                }
            }
            result
        });
        let refresh = task
            .unwrap_or_else(|e| {
                Err(ConnectionError::Unavailable(format!(
                    "the reconnection task failed: {e}"
                )))
            })
            .boxed()
            .shared();
        state.refresh.insert(InFlight {
            generation,
            hint,
            refresh,
        })
    }

    async fn connect_pool(&self, hint: Option<HostPort>) -> Result<Pool, ConnectionError> {
        match &self.target {
            Target::Fixed(addr) => connect_pool(addr, &self.settings, Probe::NotReplica).await,
            Target::Sentinel { sentinels, master } => {
                if let Some(addr) = hint {
                    if let Ok(pool) = connect_pool(&addr, &self.settings, Probe::Master).await {
                        return Ok(pool);
                    }
                }
                sentinel::discover(sentinels, master, &self.settings).await
            }
        }
    }
}

/// Opens `settings.pool_size` connections to `addr` at once and probes one of them.
pub(crate) async fn connect_pool(
    addr: &HostPort,
    settings: &Settings,
    probe: Probe,
) -> Result<Pool, ConnectionError> {
    let name = addr.to_string();
    let fail =
        |e: &redis::RedisError| classify(e, &name, settings.connect_timeout, settings.secret());
    let info = connection_info(
        addr,
        settings.tls.as_ref(),
        Some(&settings.credentials),
        settings.db,
    )
    .map_err(|e| fail(&e))?;
    let opens = (0..settings.pool_size).map(|_| open_link(addr, info.clone(), settings));
    let conns = futures_util::future::try_join_all(opens)
        .await
        .map_err(|e| fail(&e))?;
    let mut first = conns[0].clone();
    let role = async |first: &mut Link| -> RedisResult<Vec<Value>> {
        let reply = first.query_cmd(&redis::cmd("ROLE")).await?;
        Ok(redis::from_redis_value(reply)?)
    };
    match probe {
        Probe::NotReplica => match role(&mut first).await {
            Ok(role) => {
                if let Some(master) = replica_of(&role) {
                    return Err(ConnectionError::Refused(format!(
                        "{name} is a replica (read-only); connect to its master {master} instead"
                    )));
                }
            }
            Err(e) if e.code().is_some_and(|c| c == "NOPERM" || c == "ERR") => {
                first
                    .query_cmd(&redis::cmd("PING"))
                    .await
                    .map_err(|e| fail(&e))?;
            }
            Err(e) => return Err(fail(&e)),
        },
        Probe::Master => {
            let role: Vec<Value> = role(&mut first).await.map_err(|e| fail(&e))?;
            let role = role
                .into_iter()
                .next()
                .and_then(|v| redis::from_redis_value::<String>(v).ok());
            if role.as_deref() != Some("master") {
                return Err(ConnectionError::Unavailable(format!(
                    "{name} was named master by a sentinel but is a {} (a failover is under way?)",
                    role.as_deref().unwrap_or("server of unknown role")
                )));
            }
        }
    }
    Ok(Pool {
        server: addr.clone(),
        conns,
        next: AtomicUsize::new(0),
        born: Instant::now(),
        silent_since: AtomicU64::new(0),
    })
}

/// The master's `host:port` when `role` (a `ROLE` reply) is a replica's:
/// `["slave", host, port, state, offset]`.
fn replica_of(role: &[Value]) -> Option<String> {
    let text = |v: &Value| redis::from_redis_value_ref::<String>(v).ok();
    if role.first().and_then(text).as_deref() != Some("slave") {
        return None;
    }
    let host = role.get(1).and_then(text).unwrap_or_default();
    let port = role
        .get(2)
        .and_then(|v| redis::from_redis_value_ref::<u16>(v).ok())
        .unwrap_or_default();
    Some(HostPort { host, port }.to_string())
}

/// One connection of a pool: a pipe over plain TCP, a multiplexed connection over TLS.
async fn open_link(
    addr: &HostPort,
    info: ConnectionInfo,
    settings: &Settings,
) -> RedisResult<Link> {
    if settings.tls.is_some() {
        return Ok(Link::Mux(open(info, settings).await?));
    }
    Ok(Link::Pipe(open_pipe(addr, settings).await?))
}

/// A pipe to `addr` (plain TCP), authenticated and on the settings' database, within the
/// connect timeout.
async fn open_pipe(addr: &HostPort, settings: &Settings) -> RedisResult<Arc<Pipe>> {
    let connect = TcpStream::connect((addr.host.as_str(), addr.port));
    let stream = tokio::time::timeout(settings.connect_timeout, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let pipe = Pipe::start(stream);
    let credentials = &settings.credentials;
    let mut command = Vec::new();
    if let Some(password) = &credentials.password {
        let user = credentials.username.as_deref();
        resp::array(&mut command, if user.is_some() { 3 } else { 2 });
        resp::bulk(&mut command, b"AUTH");
        if let Some(user) = user {
            resp::bulk(&mut command, user.as_bytes());
        }
        resp::bulk(&mut command, password.as_bytes());
        pipe.call(&command).await?;
    }
    if settings.db != 0 {
        command.clear();
        resp::array(&mut command, 2);
        resp::bulk(&mut command, b"SELECT");
        resp::bulk_int(&mut command, settings.db);
        pipe.call(&command).await?;
    }
    Ok(pipe)
}

/// One multiplexed connection. Replies are not bounded here: every call is bounded as a whole
/// by [`Node::run`], and a reply that comes too late is dropped without harming the socket.
pub(crate) async fn open(
    info: ConnectionInfo,
    settings: &Settings,
) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(None);
    Client::open(info)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// How to reach `addr`, over `tls` if given, with `credentials` if given.
pub(crate) fn connection_info(
    addr: &HostPort,
    tls: Option<&Tls>,
    credentials: Option<&Credentials>,
    db: i64,
) -> RedisResult<ConnectionInfo> {
    let address = match tls {
        Some(tls) => {
            install_tls_provider();
            tls.address(&addr.host, addr.port)
        }
        None => ConnectionAddr::Tcp(addr.host.clone(), addr.port),
    };
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(credentials) = credentials {
        if let Some(user) = &credentials.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &credentials.password {
            redis = redis.set_password(password);
        }
    }
    Ok(address.into_connection_info()?.set_redis_settings(redis))
}

/// rustls needs a process-wide crypto provider once more than one is compiled in (another
/// crate of the application may bring aws-lc-rs); ring is installed unless one already is.
pub(crate) fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is installed already, which is all that is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
