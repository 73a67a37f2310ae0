//! A TCP proxy that can stop forwarding without closing connections, for fault tests.
//!
//! One accept thread polls a non-blocking listener; every client connection gets a thread that
//! connects to the target and runs two pumps (client to target, target to client). Pumps read with
//! a short timeout so that they notice a fault change or a shutdown within [`POLL`], and they take
//! the fault's read lock around every write, so [`FaultProxy::set_fault`] (the write lock) returns
//! only when no write under the old fault is still in progress.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::ports::ReservedPort;

/// Read and write timeout of the pumps: how late they notice a fault change or a shutdown.
const POLL: Duration = Duration::from_millis(20);
/// Pause of the accept thread when no connection is pending.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Pause between two looks at the connection count while waiting for connections to close.
const CLOSE_POLL: Duration = Duration::from_millis(2);
/// Timeout of one connection to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a [`Fault::Refuse`] or a drop waits for connections to close; longer than
/// [`CONNECT_TIMEOUT`], because a connection still connecting closes only after that.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many fresh ports a start tries when another process binds the reserved one first.
const BIND_ATTEMPTS: usize = 5;
/// Bytes moved per read.
const BUFFER_SIZE: usize = 16 * 1024;

/// What a [`FaultProxy`] does to the traffic between its clients and its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Forward bytes both ways.
    None,
    /// Keep every connection open and accept new ones, but swallow all bytes in both directions:
    /// they are read and dropped, nothing is written, like a network dropping packets. Switching
    /// back to [`Fault::None`] resumes forwarding; the swallowed bytes are lost.
    Blackhole,
    /// Close every connection, and close new ones right after accepting them.
    Refuse,
}

/// A TCP proxy on a free port of 127.0.0.1 in front of a target address, with an injectable
/// [`Fault`]: the way to make "the network drops packets" happen between a client and a real
/// `redis-server`.
///
/// Each client connection gets its own connection to the target when it is accepted (except under
/// [`Fault::Refuse`]); a client whose target connection fails is closed at once, as is either side
/// when the other closes. Dropping the proxy closes the listener and every connection and waits
/// (at most 2 s) for its threads.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
/// use std::time::Duration;
/// use rate_guard_testkit::{Fault, FaultProxy, RedisServer};
///
/// let server = RedisServer::start()?;
/// let proxy = FaultProxy::start(&server.addr())?;
/// let mut client = TcpStream::connect(proxy.addr())?;
/// client.set_read_timeout(Some(Duration::from_millis(200)))?;
/// let mut reply = [0; 7];
///
/// client.write_all(b"*1\r\n$4\r\nPING\r\n")?;
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"+PONG\r\n");
///
/// proxy.set_fault(Fault::Blackhole);
/// client.write_all(b"*1\r\n$4\r\nPING\r\n")?;
/// assert!(client.read(&mut reply).is_err()); // timed out: no reply, no EOF
/// assert_eq!(proxy.connections(), 1);
///
/// proxy.set_fault(Fault::None);
/// client.write_all(b"*1\r\n$4\r\nPING\r\n")?;
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"+PONG\r\n");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    port: ReservedPort,
}

/// State shared by the proxy handle and its threads.
#[derive(Debug)]
struct Shared {
    targets: Vec<SocketAddr>,
    fault: RwLock<Fault>,
    stopping: AtomicBool,
    connections: AtomicUsize,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether every connection must close now.
    fn closing(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) || self.fault() == Fault::Refuse
    }
}

impl FaultProxy {
    /// Starts forwarding to `target` (`"127.0.0.1:6380"`) with [`Fault::None`]. The target is
    /// resolved now but connected only when a client connects, so it may be down at this point.
    pub fn start(target: &str) -> io::Result<FaultProxy> {
        let targets: Vec<SocketAddr> = target.to_socket_addrs()?.collect();
        if targets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{target:?} resolves to no address"),
            ));
        }
        let (port, listener) = bind()?;
        // Polled, so that the accept thread notices a drop without a connection to wake it.
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            targets,
            fault: RwLock::new(Fault::None),
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let accept = thread::Builder::new()
            .name(format!("fault-proxy-{}", port.get()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&shared, listener)
            })?;
        Ok(FaultProxy {
            shared,
            accept: Some(accept),
            port,
        })
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port.get()
    }

    /// `"127.0.0.1:<port>"`.
    #[must_use]
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `"redis://127.0.0.1:<port>/"`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port())
    }

    /// Changes the fault, for existing connections too. Returns once the change is in force: no
    /// byte crosses the proxy afterwards unless the fault is [`Fault::None`], and after
    /// [`Fault::Refuse`] every connection has been closed (waiting at most 2 s, the time a
    /// connection still connecting to an unresponsive target may take).
    pub fn set_fault(&self, fault: Fault) {
        // Taking the write lock waits for every write begun under the old fault.
        *self
            .shared
            .fault
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fault;
        if fault == Fault::Refuse {
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            while self.connections() > 0 && Instant::now() < deadline {
                thread::sleep(CLOSE_POLL);
            }
        }
    }

    /// The current fault.
    #[must_use]
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// How many client connections are open.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            // The accept thread closes the listener at once and waits at most `CLOSE_TIMEOUT` for
            // the connections; a panic in it has nothing left to clean up.
            let _ = accept.join();
        }
    }
}

/// Binds a reserved port, retrying on another one when a different process took it between the
/// reservation and the bind.
fn bind() -> io::Result<(ReservedPort, TcpListener)> {
    let mut attempt = 1;
    loop {
        let port = ReservedPort::new()?;
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port.get())) {
            Ok(listener) => return Ok((port, listener)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && attempt < BIND_ATTEMPTS => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Accepts clients until the proxy is dropped, then closes the listener and waits for the
/// connection threads.
fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping.load(Ordering::SeqCst) {
        workers.retain(|worker| !worker.is_finished());
        match listener.accept() {
            Ok((client, _)) => workers.extend(admit(shared, client)),
            // `WouldBlock` means no client is waiting; other errors (a client that reset before
            // the accept, no file descriptor left) are worth another try after a pause.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
    drop(listener);
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while workers.iter().any(|worker| !worker.is_finished()) && Instant::now() < deadline {
        thread::sleep(CLOSE_POLL);
    }
    for worker in workers {
        if worker.is_finished() {
            let _ = worker.join();
        }
    }
}

/// Counts an open client connection for as long as it lives.
struct Counted(Arc<Shared>);

impl Counted {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(shared))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts serving a freshly accepted client, or closes it under [`Fault::Refuse`].
fn admit(shared: &Arc<Shared>, client: TcpStream) -> Option<JoinHandle<()>> {
    // Counted before the fault is read, so that a `set_fault(Refuse)` racing with this accept
    // waits for the connection to close.
    let counted = Counted::new(shared);
    if shared.fault() == Fault::Refuse || client.set_nonblocking(false).is_err() {
        drop(client);
        drop(counted);
        return None;
    }
    thread::Builder::new()
        .name("fault-proxy-conn".to_owned())
        .spawn(move || {
            serve(&counted.0, &client);
            close(&client);
            drop(counted);
        })
        .ok()
}

/// Connects to the target and forwards between it and `client` until either side closes, the
/// fault becomes [`Fault::Refuse`] or the proxy is dropped.
fn serve(shared: &Shared, client: &TcpStream) {
    let Ok(upstream) = connect(&shared.targets) else {
        return;
    };
    if configure(client)
        .and_then(|()| configure(&upstream))
        .is_ok()
    {
        let done = AtomicBool::new(false);
        thread::scope(|scope| {
            let spawned = thread::Builder::new()
                .name("fault-proxy-pump".to_owned())
                .spawn_scoped(scope, || pump(shared, &done, client, &upstream));
            if spawned.is_ok() {
                pump(shared, &done, &upstream, client);
            }
        });
    }
    close(&upstream);
}

/// Connects to the first target address that answers.
fn connect(targets: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last_error = None;
    for target in targets {
        match TcpStream::connect_timeout(target, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::InvalidInput)))
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    // RESP requests and replies are small writes; Nagle would hold them back.
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(POLL))
}

fn close(stream: &TcpStream) {
    // Fails only when the stream is already shut down or reset, which is the goal anyway.
    let _ = stream.shutdown(Shutdown::Both);
}

/// Moves bytes from `from` to `to` until the connection must close, then closes both sides so
/// that the other pump stops too.
fn pump(shared: &Shared, done: &AtomicBool, mut from: &TcpStream, to: &TcpStream) {
    let mut buffer = [0; BUFFER_SIZE];
    while !done.load(Ordering::SeqCst) && !shared.closing() {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if is_timeout(&error) => continue,
            Err(_) => break,
        };
        if forward(shared, &buffer[..read], to).is_break() {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    close(from);
    close(to);
}

/// Writes `bytes` to `to` while the fault is [`Fault::None`]; drops the rest when it becomes
/// [`Fault::Blackhole`]. Breaks when the connection must close.
fn forward(shared: &Shared, mut bytes: &[u8], mut to: &TcpStream) -> ControlFlow<()> {
    while !bytes.is_empty() {
        // Held across one write, bounded by the write timeout, so `set_fault` waits for it.
        let fault = shared.fault.read().unwrap_or_else(PoisonError::into_inner);
        match *fault {
            Fault::None => {}
            Fault::Blackhole => return ControlFlow::Continue(()),
            Fault::Refuse => return ControlFlow::Break(()),
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return ControlFlow::Break(());
        }
        match to.write(bytes) {
            Ok(0) => return ControlFlow::Break(()),
            Ok(written) => bytes = &bytes[written..],
            Err(error) if is_timeout(&error) => {}
            Err(_) => return ControlFlow::Break(()),
        }
    }
    ControlFlow::Continue(())
}

/// Whether a read or write only ran into its timeout (or a signal) and may be retried.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
