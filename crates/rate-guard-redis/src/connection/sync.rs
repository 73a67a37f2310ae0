//! Blocking connections for sync calls: the calling thread writes the command and reads the
//! reply itself, on a plain socket, with no runtime in between.
//!
//! A sync call through an async connection pays for the runtime: a task, a waker, an `epoll`
//! round and a hand-off to the connection's driver, about 4 system calls per call where a
//! blocking socket needs 2 (one `write`, one `read`). A [`SyncPool`] holds at most
//! `pool_size` [`SyncConn`]s, connected on first use; a call takes the least busy one.
//!
//! Threads share a connection by pipelining (leader/follower): a call writes its command at
//! once (under the queue's lock, so that the order on the wire is the order of the queue of
//! waiting calls) and queues itself for the reply; if no thread is reading, it becomes the
//! leader: it reads replies in order, handing each to the thread that asked, until its own is
//! in and every complete reply read so far is handed out; then the oldest thread still waiting
//! leads. Commands never wait for a reader to come back from a `read`. The leader is always
//! the oldest outstanding call, so its deadline comes first: when it expires (Redis hung),
//! every outstanding call fails with it and the socket is dropped, and the next call
//! reconnects. Reads are bounded by `SO_RCVTIMEO` set to what is left of the call's budget,
//! writes by `SO_SNDTIMEO`. Commands made while (re)connecting are queued and written by the
//! leader once it is connected.
//!
//! Standalone servers over TCP only: TLS, Sentinel and Cluster keep the async connection
//! ([`SyncPool::new`] says `None` for them).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::Value;

use super::config::{Credentials, Endpoints, HostPort, RedisConfig};
use super::error::{classify, ConnectionError};
use crate::resp;

/// Blocking connections to one standalone server, at most `pool_size`, each connected on first
/// use (see the module docs).
pub(crate) struct SyncPool {
    conns: Vec<SyncConn>,
}

impl std::fmt::Debug for SyncPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncPool")
            .field("server", &self.conns[0].settings.server.to_string())
            .field("size", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl SyncPool {
    /// Connections as `config` says, none made yet; `None` for a topology or transport this
    /// path does not serve (TLS, Sentinel, Cluster).
    #[must_use]
    pub(crate) fn new(config: &RedisConfig) -> Option<Self> {
        let Endpoints::Standalone(server) = &config.endpoints else {
            return None;
        };
        if config.tls {
            return None;
        }
        let settings = Arc::new(Settings {
            server: server.clone(),
            credentials: config.credentials.clone(),
            db: config.db,
            timeout: config.get_timeout(),
            connect_timeout: config.get_connect_timeout(),
        });
        let conns = (0..config.get_pool_size().max(1))
            .map(|_| SyncConn::new(Arc::clone(&settings)))
            .collect();
        Some(Self { conns })
    }

    /// The connection with the fewest calls in progress (the first of them on a tie, so that
    /// light traffic keeps to few connections).
    #[must_use]
    pub(crate) fn pick(&self) -> &SyncConn {
        let mut best = &self.conns[0];
        let mut least = best.busy.load(Ordering::Relaxed);
        for conn in &self.conns[1..] {
            if least == 0 {
                break;
            }
            let busy = conn.busy.load(Ordering::Relaxed);
            if busy < least {
                (best, least) = (conn, busy);
            }
        }
        best
    }

    /// The command timeout every call is bounded by.
    #[must_use]
    pub(crate) fn timeout(&self) -> Duration {
        self.conns[0].settings.timeout
    }

    /// `host:port` of the server, for messages.
    #[must_use]
    pub(crate) fn server(&self) -> String {
        self.conns[0].settings.server.to_string()
    }

    /// Classifies an error reply of the server as the async connection does.
    #[must_use]
    pub(crate) fn classify(&self, e: &redis::RedisError) -> ConnectionError {
        let settings = &self.conns[0].settings;
        classify(
            e,
            &settings.server.to_string(),
            settings.timeout,
            settings.credentials.password.as_deref(),
        )
    }
}

struct Settings {
    server: HostPort,
    credentials: Credentials,
    db: i64,
    timeout: Duration,
    connect_timeout: Duration,
}

/// One blocking connection shared by threads (see the module docs).
pub(crate) struct SyncConn {
    settings: Arc<Settings>,
    /// Calls in progress on this connection.
    busy: AtomicUsize,
    queue: Mutex<Queue>,
    /// The socket and what was read from it; locked by the leader only.
    io: Mutex<Io>,
}

#[derive(Default)]
struct Queue {
    /// The socket's writing end (a duplicate of the reader's), once connected: a call writes
    /// its command at once, in the order of `waiting`.
    writer: Option<TcpStream>,
    /// Commands queued while not connected, written once the leader has connected.
    out: Vec<u8>,
    /// One entry per command queued or written and not answered, oldest first; replies come
    /// in this order.
    waiting: VecDeque<Arc<Waiter>>,
    /// Whether a thread is doing the connection's I/O.
    led: bool,
}

#[derive(Default)]
struct Io {
    socket: Option<TcpStream>,
    /// The read timeout now set on the socket.
    read_timeout: Duration,
    /// Bytes read and not parsed yet, from `start`.
    buf: Vec<u8>,
    start: usize,
}

/// A call waiting for its reply, or for its turn to lead.
#[derive(Default)]
struct Waiter {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
enum State {
    #[default]
    Waiting,
    /// The previous leader left: this call does the I/O now.
    Lead,
    Done(Result<Value, ConnectionError>),
    /// Gave up waiting (its deadline passed without the leader's timeout reaching it).
    Abandoned,
}

impl Waiter {
    fn set(&self, state: State) {
        {
            let mut current = lock(&self.state);
            if matches!(*current, State::Abandoned) {
                return;
            }
            *current = state;
        }
        // Outside the lock, so that the thread woken does not wait for it at once.
        self.ready.notify_one();
    }
}

/// Time a follower waits past its deadline for the leader, whose own deadline comes first and
/// releases it; past this, something is wrong with the leader and the call gives up.
const FOLLOWER_GRACE: Duration = Duration::from_millis(50);

/// A read timeout this much above what is left of the budget is lowered first.
const READ_SLACK: Duration = Duration::from_millis(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks a connection busy for the length of a call.
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SyncConn {
    fn new(settings: Arc<Settings>) -> Self {
        Self {
            settings,
            busy: AtomicUsize::new(0),
            queue: Mutex::new(Queue::default()),
            io: Mutex::new(Io::default()),
        }
    }

    /// Sends `command` (one command in RESP) and returns its reply, before `deadline` or with
    /// [`ConnectionError::Timeout`]. An error reply is a `Value::ServerError`: the connection
    /// is fine; a transport failure is an `Err`, and the connection is dropped (the next call
    /// reconnects).
    pub(crate) fn call(&self, command: &[u8], deadline: Instant) -> Result<Value, ConnectionError> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let _busy = Busy(&self.busy);
        let me = Arc::new(Waiter::default());
        let lead = {
            let mut queue = lock(&self.queue);
            if let Some(writer) = &queue.writer {
                if let Err(e) = write_to(writer, command, &self.settings) {
                    // The reader, if any, wakes up on the shut socket and fails the others.
                    let _ = writer.shutdown(Shutdown::Both);
                    queue.writer = None;
                    return Err(e);
                }
            } else {
                queue.out.extend_from_slice(command);
            }
            queue.waiting.push_back(Arc::clone(&me));
            !mem::replace(&mut queue.led, true)
        };
        if !lead {
            let mut state = lock(&me.state);
            loop {
                match mem::take(&mut *state) {
                    State::Waiting => {}
                    // (Only this thread abandons its call, and then it returns.)
                    State::Lead | State::Abandoned => break,
                    State::Done(reply) => return reply,
                }
                let now = Instant::now();
                let give_up = deadline + FOLLOWER_GRACE;
                if now >= give_up {
                    *state = State::Abandoned;
                    return Err(ConnectionError::Timeout(self.settings.timeout));
                }
                state = me
                    .ready
                    .wait_timeout(state, give_up - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        self.lead(&me, deadline)
    }

    /// Does the connection's I/O until `me` has its reply (see the module docs).
    fn lead(&self, me: &Arc<Waiter>, deadline: Instant) -> Result<Value, ConnectionError> {
        let mut io = lock(&self.io);
        let outcome = self.drive(&mut io, me, deadline);
        match outcome {
            Ok(()) => {
                // The leader stops once its reply is in.
                let State::Done(reply) = mem::take(&mut *lock(&me.state)) else {
                    let e = ConnectionError::Unavailable("a leader without its reply".to_owned());
                    self.fail(&mut io, &e);
                    return Err(e);
                };
                let next = {
                    let mut queue = lock(&self.queue);
                    let next = queue.waiting.front().cloned();
                    queue.led = next.is_some();
                    next
                };
                let Some(next) = next else {
                    return reply;
                };
                {
                    let mut state = lock(&next.state);
                    if matches!(*state, State::Abandoned) {
                        // Its reply would be read by nobody: start afresh.
                        drop(state);
                        self.fail(&mut io, &ConnectionError::Timeout(self.settings.timeout));
                        return reply;
                    }
                    *state = State::Lead;
                }
                // The socket first, so that the next leader does not wake up to wait for it.
                drop(io);
                next.ready.notify_one();
                reply
            }
            Err(e) => {
                self.fail(&mut io, &e);
                Err(e)
            }
        }
    }

    /// Reads replies, handing them out, until `me` has its own (connecting first if need be).
    fn drive(
        &self,
        io: &mut Io,
        me: &Arc<Waiter>,
        deadline: Instant,
    ) -> Result<(), ConnectionError> {
        let writer_gone = lock(&self.queue).writer.is_none();
        if io.socket.is_some() && writer_gone {
            // A write failed: commands written before it wait for replies that will not come
            // (the socket is shut): they all fail, and the next call connects afresh.
            return Err(ConnectionError::Unavailable(format!(
                "{}: the connection broke",
                self.settings.server
            )));
        }
        if io.socket.is_none() {
            io.connect(&self.settings, deadline)?;
            let writer = io.duplicate(&self.settings)?;
            let mut queue = lock(&self.queue);
            let pending = mem::take(&mut queue.out);
            write_to(&writer, &pending, &self.settings)?;
            queue.writer = Some(writer);
        }
        loop {
            // Every complete reply read so far goes out (a previous leader may have read past
            // its own), so that the next leader is woken only for replies still to come.
            let mut mine = false;
            while let Some(reply) = io.next_reply()? {
                let waiter = lock(&self.queue).waiting.pop_front();
                let Some(waiter) = waiter else {
                    return Err(ConnectionError::Unavailable(format!(
                        "{}: a reply nobody asked for",
                        self.settings.server
                    )));
                };
                if Arc::ptr_eq(&waiter, me) {
                    // Nobody waits on the leader's own state: no wake-up to send.
                    *lock(&me.state) = State::Done(Ok(reply));
                    mine = true;
                } else {
                    waiter.set(State::Done(Ok(reply)));
                }
            }
            if mine {
                return Ok(());
            }
            io.fill(deadline, &self.settings)?;
        }
    }

    /// Drops the socket after `error` and fails every call queued or in flight with it.
    fn fail(&self, io: &mut Io, error: &ConnectionError) {
        io.socket = None;
        io.buf.clear();
        io.start = 0;
        let waiting = {
            let mut queue = lock(&self.queue);
            queue.writer = None;
            queue.out.clear();
            queue.led = false;
            mem::take(&mut queue.waiting)
        };
        for waiter in waiting {
            waiter.set(State::Done(Err(error.clone())));
        }
    }
}

impl Io {
    /// Connects within the connect timeout and what is left of the call's budget, then
    /// authenticates and selects the database.
    fn connect(&mut self, settings: &Settings, deadline: Instant) -> Result<(), ConnectionError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = settings.connect_timeout.min(left);
        if limit.is_zero() {
            return Err(ConnectionError::Timeout(settings.timeout));
        }
        let unavailable = |e: io::Error| {
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                ConnectionError::Timeout(limit)
            } else {
                ConnectionError::Unavailable(format!("{}: {e}", settings.server))
            }
        };
        let addrs: Vec<SocketAddr> = (settings.server.host.as_str(), settings.server.port)
            .to_socket_addrs()
            .map_err(unavailable)?
            .collect();
        let mut last = None;
        let mut socket = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, limit) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let socket = socket.ok_or_else(|| {
            unavailable(last.unwrap_or_else(|| io::Error::other("the host has no address")))
        })?;
        socket.set_nodelay(true).map_err(unavailable)?;
        socket
            .set_write_timeout(Some(settings.timeout))
            .map_err(unavailable)?;
        socket
            .set_read_timeout(Some(settings.timeout))
            .map_err(unavailable)?;
        self.read_timeout = settings.timeout;
        self.socket = Some(socket);
        self.buf.clear();
        self.start = 0;
        let mut hello = Vec::new();
        let mut replies = 0;
        if let Some(password) = &settings.credentials.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &settings.credentials.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            command(&mut hello, &args);
            replies += 1;
        }
        if settings.db != 0 {
            let db = settings.db.to_string();
            command(&mut hello, &[b"SELECT", db.as_bytes()]);
            replies += 1;
        }
        if replies > 0 {
            self.write(&hello, settings)?;
            for _ in 0..replies {
                let reply = loop {
                    if let Some(reply) = self.next_reply()? {
                        break reply;
                    }
                    self.fill(deadline, settings)?;
                };
                if let Err(e) = reply.extract_error() {
                    let secret = settings.credentials.password.as_deref();
                    let server = settings.server.to_string();
                    return Err(classify(&e, &server, settings.timeout, secret));
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8], settings: &Settings) -> Result<(), ConnectionError> {
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| not_connected(settings))?;
        write_to(socket, bytes, settings)
    }

    /// A second handle on the socket, for writing while another thread reads.
    fn duplicate(&self, settings: &Settings) -> Result<TcpStream, ConnectionError> {
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| not_connected(settings))?;
        socket
            .try_clone()
            .map_err(|e| ConnectionError::Unavailable(format!("{}: {e}", settings.server)))
    }

    /// Reads what the server sent (waiting for it until `deadline`).
    fn fill(&mut self, deadline: Instant, settings: &Settings) -> Result<(), ConnectionError> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let socket = self
            .socket
            .as_mut()
            .ok_or_else(|| not_connected(settings))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectionError::Timeout(settings.timeout));
            }
            if self.read_timeout > left + READ_SLACK {
                socket.set_read_timeout(Some(left)).map_err(|e| {
                    ConnectionError::Unavailable(format!("{}: {e}", settings.server))
                })?;
                self.read_timeout = left;
            }
            match socket.read(&mut chunk) {
                Ok(0) => {
                    return Err(ConnectionError::Unavailable(format!(
                        "{}: the server closed the connection",
                        settings.server
                    )))
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Timed out on the socket's timeout, which may be shorter than what is
                    // left (lowered by an earlier call): raise it and read on.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ConnectionError::Timeout(settings.timeout));
                    }
                    socket.set_read_timeout(Some(left)).map_err(|e| {
                        ConnectionError::Unavailable(format!("{}: {e}", settings.server))
                    })?;
                    self.read_timeout = left;
                }
                Err(e) => {
                    return Err(ConnectionError::Unavailable(format!(
                        "{}: {e}",
                        settings.server
                    )))
                }
            }
        }
    }

    /// The next complete reply in the buffer, if there is one.
    fn next_reply(&mut self) -> Result<Option<Value>, ConnectionError> {
        let data = &self.buf[self.start..];
        let Some(len) = resp::frame_len(data)
            .map_err(|_| ConnectionError::Unavailable("a malformed reply".to_owned()))?
        else {
            return Ok(None);
        };
        let frame = &data[..len];
        let value = match int_array(frame) {
            Some(value) => value,
            None => redis::parse_redis_value(frame)
                .map_err(|e| ConnectionError::Unavailable(format!("an unreadable reply: {e}")))?,
        };
        self.start += len;
        Ok(Some(value))
    }
}

/// Writes `bytes` whole (bounded by the socket's write timeout, the command timeout).
fn write_to(
    mut socket: &TcpStream,
    bytes: &[u8],
    settings: &Settings,
) -> Result<(), ConnectionError> {
    if bytes.is_empty() {
        return Ok(());
    }
    socket.write_all(bytes).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ConnectionError::Timeout(settings.timeout)
        }
        _ => ConnectionError::Unavailable(format!("{}: {e}", settings.server)),
    })
}

fn not_connected(settings: &Settings) -> ConnectionError {
    ConnectionError::Unavailable(format!("{}: not connected", settings.server))
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|w| w == b"\r\n")
}

fn parse_int(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A complete frame that is an array of integers (the request script's reply), read without
/// the general parser.
fn int_array(frame: &[u8]) -> Option<Value> {
    let rest = frame.strip_prefix(b"*")?;
    let end = find_crlf(rest)?;
    let n = usize::try_from(parse_int(&rest[..end])?).ok()?;
    let mut rest = &rest[end + 2..];
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        rest = rest.strip_prefix(b":")?;
        let end = find_crlf(rest)?;
        items.push(Value::Int(parse_int(&rest[..end])?));
        rest = &rest[end + 2..];
    }
    rest.is_empty().then_some(Value::Array(items))
}

/// Appends the command `args` in RESP to `out`.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    resp::array(out, args.len());
    for arg in args {
        resp::bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_arrays_read_as_the_general_parser_reads_them() {
        let reply = b"*4\r\n:1796300709855943\r\n:1\r\n:-1\r\n:0\r\n";
        assert_eq!(
            int_array(reply),
            Some(redis::parse_redis_value(reply).unwrap())
        );
        assert_eq!(int_array(b"*2\r\n:1\r\n$1\r\nx\r\n"), None);
        assert_eq!(int_array(b"-ERR x\r\n"), None);
    }
}
