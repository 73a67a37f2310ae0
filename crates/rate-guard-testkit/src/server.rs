//! One `redis-server` process: standalone, cluster node or sentinel.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::ports::ReservedPort;
use crate::process;
use crate::resp::{self, Connection, Reply};

/// How long a freshly spawned server has to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports a start tries when another process wins the race for one.
const START_ATTEMPTS: usize = 5;
/// Timeout of one probe or query over TCP.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one readiness probe: short, because a stranger holding the port may never answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Timeout of one `redis-cli` run in [`RedisServer::cmd`].
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines quoted in a startup error.
const LOG_TAIL_LINES: usize = 30;

/// A `redis-server` process on a free port of 127.0.0.1, with its own temporary directory.
///
/// Persistence is off (`--save ""`, `--appendonly no`), `DEBUG` is enabled so fault tests can use
/// `DEBUG SLEEP`, and the log is `redis.log` in [`dir`](Self::dir). Dropping the value kills the
/// process and deletes the directory.
///
/// ```
/// let server = rate_guard_testkit::RedisServer::start()?;
/// assert_eq!(server.cmd(&["PING"])?, "PONG");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    launch: Launch,
    port: ReservedPort,
    bus_port: Option<ReservedPort>,
    tls_port: Option<ReservedPort>,
    child: Option<Child>,
    dir: TempDir,
}

/// Options for a [`RedisServer`]: extra `redis-server` arguments and a password.
///
/// ```
/// let server = rate_guard_testkit::RedisServer::builder()
///     .password("s3cret")
///     .args(["--maxmemory", "16mb"])
///     .start()?;
/// assert_eq!(server.cmd(&["CONFIG", "GET", "maxmemory"])?, "maxmemory\n16777216");
/// assert_eq!(server.url(), format!("redis://:s3cret@127.0.0.1:{}/", server.port()));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct RedisServerBuilder {
    args: Vec<String>,
    password: Option<String>,
    tls: Option<TlsLaunch>,
}

/// The TLS side of a server: its certificate and key, the CA that client certificates must
/// chain to, and whether clients must present one.
#[derive(Clone, Debug)]
pub(crate) struct TlsLaunch {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    require_client_certs: bool,
}

impl TlsLaunch {
    pub(crate) fn new(
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
        require_client_certs: bool,
    ) -> Self {
        TlsLaunch {
            cert,
            key,
            ca,
            require_client_certs,
        }
    }
}

impl RedisServerBuilder {
    /// Options with no extra arguments and no password.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one `redis-server` argument. Extra arguments come after the fixture's own, so
    /// they override them.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several `redis-server` arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Makes the server a replica of `master` (`--replicaof 127.0.0.1 <port>`, with
    /// `--masterauth` when the master has a password).
    pub fn replica_of(mut self, master: &RedisServer) -> Self {
        self.args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master.port().to_string(),
        ]);
        if let Some(password) = &master.launch.password {
            self.args
                .extend(["--masterauth".to_owned(), password.clone()]);
        }
        self
    }

    /// Serves TLS too, on a port of its own ([`RedisServer::tls_port`], [`RedisServer::tls_url`]):
    /// `cert` and `key` are the server's, `ca` verifies client certificates, which are required
    /// when `require_client_certs` (`--tls-auth-clients yes`) and ignored otherwise. The plain
    /// port stays open for the fixture's probes and [`RedisServer::cmd`].
    ///
    /// ```
    /// use rate_guard_testkit::{RedisServer, TestCertificates};
    ///
    /// let certs = TestCertificates::generate()?;
    /// let (cert, key) = certs.server();
    /// let server = RedisServer::builder().tls(cert, key, certs.ca(), false).start()?;
    /// assert_eq!(server.tls_url(), Some(format!("rediss://127.0.0.1:{}/", server.tls_port().unwrap())));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca: impl Into<PathBuf>,
        require_client_certs: bool,
    ) -> Self {
        self.tls = Some(TlsLaunch {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            require_client_certs,
        });
        self
    }

    /// Requires this password (`--requirepass`); probes, [`RedisServer::cmd`] and
    /// [`RedisServer::url`] use it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Starts the server and waits until it answers.
    pub fn start(self) -> io::Result<RedisServer> {
        Launch {
            mode: Mode::Standalone,
            args: self.args,
            password: self.password,
            tls: self.tls,
        }
        .start()
    }
}

/// How to launch a server; kept so that [`RedisServer::restart`] repeats it.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub(crate) mode: Mode,
    pub(crate) args: Vec<String>,
    pub(crate) password: Option<String>,
    pub(crate) tls: Option<TlsLaunch>,
}

/// The kind of server.
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    Standalone,
    /// A cluster node; it gets a second reserved port for the cluster bus.
    ClusterNode,
    /// A sentinel; the text holds its `sentinel ...` directives, to which the fixture adds
    /// `port`, `bind`, `dir` and `logfile`.
    Sentinel(String),
}

impl Launch {
    pub(crate) fn start(self) -> io::Result<RedisServer> {
        let mut attempt = 1;
        loop {
            // A fresh directory per attempt, so that no `nodes.conf` or log of a failed attempt
            // survives into the next one.
            let dir = tempfile::Builder::new()
                .prefix("rate-guard-redis-")
                .tempdir()?;
            let port = ReservedPort::new()?;
            let bus_port = match self.mode {
                Mode::ClusterNode => Some(ReservedPort::new()?),
                _ => None,
            };
            let tls_port = match self.tls {
                Some(_) => Some(ReservedPort::new()?),
                None => None,
            };
            if let Mode::Sentinel(directives) = &self.mode {
                write_sentinel_conf(dir.path(), port.get(), directives)?;
            }
            match spawn_ready(
                &self,
                dir.path(),
                &port,
                bus_port.as_ref(),
                tls_port.as_ref(),
            ) {
                Ok(child) => {
                    return Ok(RedisServer {
                        launch: self,
                        port,
                        bus_port,
                        tls_port,
                        child: Some(child),
                        dir,
                    })
                }
                Err(error)
                    if error.kind() == io::ErrorKind::AddrInUse && attempt < START_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

fn write_sentinel_conf(dir: &Path, port: u16, directives: &str) -> io::Result<()> {
    let conf = format!(
        "port {port}\nbind 127.0.0.1\ndir \"{dir}\"\nlogfile \"{log}\"\n{directives}",
        dir = dir.display(),
        log = dir.join(LOG_FILE).display(),
    );
    fs::write(dir.join(SENTINEL_CONF), conf)
}

const LOG_FILE: &str = "redis.log";
const STDIO_FILE: &str = "stdio.log";
const SENTINEL_CONF: &str = "sentinel.conf";

/// Spawns the server and waits until it answers on `port` as the process we spawned; kills it
/// on failure. A bind failure comes back as `AddrInUse` so the caller can pick other ports.
fn spawn_ready(
    launch: &Launch,
    dir: &Path,
    port: &ReservedPort,
    bus_port: Option<&ReservedPort>,
    tls_port: Option<&ReservedPort>,
) -> io::Result<Child> {
    let port = port.get();
    let log = dir.join(LOG_FILE);
    let log_start = fs::metadata(&log).map_or(0, |meta| meta.len());
    let mut command = Command::new(process::server_bin());
    match &launch.mode {
        Mode::Sentinel(_) => {
            command.arg(dir.join(SENTINEL_CONF)).arg("--sentinel");
        }
        Mode::Standalone | Mode::ClusterNode => {
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(&log)
                .args(["--enable-debug-command", "yes"])
                // A master otherwise waits 5 s for more replicas before a diskless full sync.
                .args(["--repl-diskless-sync-delay", "0"]);
            if let Some(password) = &launch.password {
                command.args(["--requirepass", password]);
            }
            if let (Some(tls), Some(tls_port)) = (&launch.tls, tls_port) {
                command
                    .args(["--tls-port", &tls_port.get().to_string()])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args([
                        "--tls-auth-clients",
                        if tls.require_client_certs {
                            "yes"
                        } else {
                            "no"
                        },
                    ]);
            }
            if let Some(bus_port) = bus_port {
                command
                    .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                    .arg(dir.join("nodes.conf"))
                    .args(["--cluster-node-timeout", "2000"])
                    .args(["--cluster-port", &bus_port.get().to_string()]);
            }
        }
    }
    command.args(&launch.args);
    // Errors raised before the log file is opened (a bad argument) go to stderr.
    let stdio = File::options()
        .create(true)
        .append(true)
        .open(dir.join(STDIO_FILE))?;
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdio.try_clone()?)
        .stderr(stdio)
        .spawn()
        .map_err(|error| process::spawn_error(&command.get_program().to_string_lossy(), &error))?;
    let pid = child.id();
    let ready = process::wait_until(START_TIMEOUT, "redis-server to answer", || {
        if let Some(status) = child.try_wait()? {
            return Err(process::give_up(format!("exited with {status}")));
        }
        match probe(port, launch.password.as_deref())? {
            answered if answered == pid => Ok(()),
            other => Err(process::not_yet(format!(
                "port {port} is served by pid {other}, not ours"
            ))),
        }
    });
    let Err(error) = ready else {
        return Ok(child);
    };
    let _ = process::kill(&mut child);
    let log_text = fs::read(&log).unwrap_or_default();
    let new_log = String::from_utf8_lossy(log_text.get(log_start as usize..).unwrap_or_default());
    let kind = if new_log.contains("Address already in use") {
        io::ErrorKind::AddrInUse
    } else {
        error.kind()
    };
    Err(io::Error::new(
        kind,
        format!(
            "redis-server on port {port} (dir {dir}) failed to start: {error}\n--- {LOG_FILE} ---\n{log}\n--- {STDIO_FILE} ---\n{stdio}",
            dir = dir.display(),
            log = process::tail(&log, LOG_TAIL_LINES),
            stdio = process::tail(&dir.join(STDIO_FILE), LOG_TAIL_LINES),
        ),
    ))
}

/// PINGs the server and returns the pid it reports, which tells our process apart from a
/// stranger that won the race for the port.
fn probe(port: u16, password: Option<&str>) -> io::Result<u32> {
    let mut connection = Connection::open(port, password, PROBE_TIMEOUT)?;
    let pong = connection.request(&["PING"])?.into_text()?;
    if pong != "PONG" {
        return Err(process::not_yet(format!("PING answered {pong:?}")));
    }
    let info = connection.request(&["INFO", "server"])?.into_text()?;
    resp::info_field(&info, "process_id")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| process::not_yet("INFO server has no process_id"))
}

impl RedisServer {
    /// Starts a standalone server with default options and waits until it answers PING.
    pub fn start() -> io::Result<RedisServer> {
        RedisServerBuilder::new().start()
    }

    /// Options for a server with extra arguments or a password.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::new()
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port.get()
    }

    /// The TLS port, when the server was started with [`RedisServerBuilder::tls`].
    #[must_use]
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port.as_ref().map(ReservedPort::get)
    }

    /// `"rediss://127.0.0.1:<tls port>/"` (with the password, as in [`url`](Self::url)), when
    /// the server serves TLS.
    #[must_use]
    pub fn tls_url(&self) -> Option<String> {
        let port = self.tls_port()?;
        Some(
            self.url()
                .replacen("redis://", "rediss://", 1)
                .replace(&format!(":{}/", self.port()), &format!(":{port}/")),
        )
    }

    /// `"127.0.0.1:<port>"`.
    #[must_use]
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `"redis://127.0.0.1:<port>/"`, with `:<password>@` before the host when one is set.
    #[must_use]
    pub fn url(&self) -> String {
        match &self.launch.password {
            Some(password) => format!(
                "redis://:{}@127.0.0.1:{}/",
                percent_encode(password),
                self.port()
            ),
            None => format!("redis://127.0.0.1:{}/", self.port()),
        }
    }

    /// The process id, or `None` while the server is stopped.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's temporary directory (working directory and log).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Kills the process (SIGKILL, as a crash would) and reaps it. The port stays reserved and
    /// the directory stays, for [`restart`](Self::restart). Does nothing if already stopped.
    pub fn stop(&mut self) -> io::Result<()> {
        match self.child.take() {
            Some(mut child) => process::kill(&mut child),
            None => Ok(()),
        }
    }

    /// Stops the server if it runs, then starts it again with the same port, directory and
    /// arguments, and waits until it answers. Without persistence the data is gone; a cluster
    /// node keeps its identity through `nodes.conf` and a sentinel its state through
    /// `sentinel.conf`.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        let child = spawn_ready(
            &self.launch,
            self.dir.path(),
            &self.port,
            self.bus_port.as_ref(),
            self.tls_port.as_ref(),
        )?;
        self.child = Some(child);
        Ok(())
    }

    /// Freezes the process with SIGSTOP: connections are still accepted by the kernel but nothing
    /// is answered, like a server stuck in a long pause.
    pub fn pause(&self) -> io::Result<()> {
        process::signal(self.running_pid()?, "STOP")
    }

    /// Lets a paused process go on with SIGCONT.
    pub fn resume(&self) -> io::Result<()> {
        process::signal(self.running_pid()?, "CONT")
    }

    fn running_pid(&self) -> io::Result<u32> {
        self.pid().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("redis-server on port {} is stopped", self.port()),
            )
        })
    }

    /// Sends PING over a fresh TCP connection and waits at most `timeout` for each step. A paused
    /// server fails with `TimedOut`, a stopped one with `ConnectionRefused`.
    pub fn ping(&self, timeout: Duration) -> io::Result<()> {
        let mut connection =
            Connection::open(self.port(), self.launch.password.as_deref(), timeout)?;
        match connection.request(&["PING"])?.into_text()?.as_str() {
            "PONG" => Ok(()),
            other => Err(io::Error::other(format!("PING answered {other:?}"))),
        }
    }

    /// Runs one command through `redis-cli -p <port>` and returns its stdout, trimmed; for
    /// fixtures, not for the code under test. Arrays come back one element per line, and error
    /// replies come back as text (`redis-cli` exits 0 on them); the call fails only when
    /// `redis-cli` cannot run, cannot connect or takes longer than 10 s.
    pub fn cmd(&self, args: &[&str]) -> io::Result<String> {
        cli(self.port(), self.launch.password.as_deref(), &[], args)
    }

    /// Sends one command over TCP and returns the reply; error replies are errors.
    pub(crate) fn query(&self, args: &[&str]) -> io::Result<Reply> {
        Connection::open(self.port(), self.launch.password.as_deref(), QUERY_TIMEOUT)?.request(args)
    }

    /// The first element of `ROLE`: `master`, `slave` or `sentinel`.
    pub(crate) fn role(&self) -> io::Result<String> {
        self.query(&["ROLE"])?
            .into_array()?
            .into_iter()
            .next()
            .unwrap_or(Reply::Nil)
            .into_text()
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> <options> <args>`.
pub(crate) fn cli(
    port: u16,
    password: Option<&str>,
    options: &[&str],
    args: &[&str],
) -> io::Result<String> {
    let mut command = Command::new(process::cli_bin());
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(password) = password {
        // Through the environment, so the password stays off the command line.
        command.env("REDISCLI_AUTH", password);
    }
    let output = process::run(command.args(options).args(args), CLI_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Nothing useful can be done with a failure here; the directory is removed regardless.
        let _ = self.stop();
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn percent_encodes_reserved_characters() {
        assert_eq!(percent_encode("s3cret"), "s3cret");
        assert_eq!(percent_encode("a:b@c/d é"), "a%3Ab%40c%2Fd%20%C3%A9");
    }
}
