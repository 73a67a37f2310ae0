//! `FaultProxy` in front of a real `redis-server`.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rate_guard_testkit::{Fault, FaultProxy, RedisServer};

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
/// How long a blackholed request waits for a reply that must not come.
const SILENCE: Duration = Duration::from_millis(300);
/// Bound on anything that should happen promptly.
const PROMPT: Duration = Duration::from_secs(2);

/// A connection to `port` whose reads time out after `timeout`.
fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    Ok(stream)
}

/// Sends PING and reads one line of reply.
fn ping(stream: &mut TcpStream) -> io::Result<String> {
    stream.write_all(PING)?;
    read_line(stream)
}

/// Reads up to `\r\n`; EOF before it is `UnexpectedEof`.
fn read_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0];
    while !line.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Asserts that the stream was closed by its peer: EOF or reset, well before `PROMPT`.
fn assert_closed(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    let started = Instant::now();
    let mut buffer = [0; 64];
    match stream.read(&mut buffer) {
        Ok(0) => {}
        Ok(read) => panic!("read {read} bytes from a closed connection"),
        Err(error) => assert!(!is_timeout(&error), "connection still open: {error}"),
    }
    assert!(started.elapsed() < PROMPT);
}

/// Asserts that PING gets no reply within `SILENCE` and that the connection stays open.
fn assert_swallowed(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(SILENCE)).unwrap();
    match ping(stream) {
        Ok(reply) => panic!("a blackholed PING got {reply:?}"),
        Err(error) => assert!(is_timeout(&error), "expected a timeout, got {error}"),
    }
}

fn wait_for_connections(proxy: &FaultProxy, expected: usize) {
    let deadline = Instant::now() + PROMPT;
    while proxy.connections() != expected {
        assert!(
            Instant::now() < deadline,
            "{} connections, expected {expected}",
            proxy.connections()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `redis-cli` against `port`, like `RedisServer::cmd` does for the server itself.
fn cli(port: u16, args: &[&str]) -> io::Result<String> {
    let bin =
        std::env::var_os("RATE_GUARD_REDIS_CLI").unwrap_or_else(|| OsString::from("redis-cli"));
    let output = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()?;
    assert!(output.status.success(), "redis-cli failed: {output:?}");
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[test]
fn forwards_by_default() -> io::Result<()> {
    let server = RedisServer::start()?;
    let proxy = FaultProxy::start(&server.addr())?;
    assert_ne!(proxy.port(), server.port());
    assert_eq!(proxy.addr(), format!("127.0.0.1:{}", proxy.port()));
    assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}/", proxy.port()));
    assert_eq!(proxy.fault(), Fault::None);

    let mut client = connect(proxy.port(), PROMPT)?;
    assert_eq!(ping(&mut client)?, "+PONG\r\n");
    wait_for_connections(&proxy, 1);

    assert_eq!(cli(proxy.port(), &["SET", "through", "proxy"])?, "OK");
    assert_eq!(cli(proxy.port(), &["GET", "through"])?, "proxy");
    assert_eq!(server.cmd(&["GET", "through"])?, "proxy");
    drop(client);
    wait_for_connections(&proxy, 0);
    Ok(())
}

#[test]
fn blackhole_swallows_bytes_and_keeps_connections_open() -> io::Result<()> {
    let server = RedisServer::start()?;
    let proxy = FaultProxy::start(&server.addr())?;
    let mut open = connect(proxy.port(), PROMPT)?;
    assert_eq!(ping(&mut open)?, "+PONG\r\n");

    proxy.set_fault(Fault::Blackhole);
    assert_eq!(proxy.fault(), Fault::Blackhole);
    assert_swallowed(&mut open);
    open.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nlost\r\n$1\r\n1\r\n")?;
    let mut fresh = connect(proxy.port(), PROMPT)?;
    wait_for_connections(&proxy, 2);
    assert_swallowed(&mut fresh);
    assert_swallowed(&mut open);
    assert_eq!(proxy.connections(), 2);

    proxy.set_fault(Fault::None);
    let mut healed = connect(proxy.port(), PROMPT)?;
    assert_eq!(ping(&mut healed)?, "+PONG\r\n");
    // The swallowed requests never reached the server; the old connections forward again.
    open.set_read_timeout(Some(PROMPT))?;
    assert_eq!(ping(&mut open)?, "+PONG\r\n");
    fresh.set_read_timeout(Some(PROMPT))?;
    assert_eq!(ping(&mut fresh)?, "+PONG\r\n");
    assert_eq!(server.cmd(&["EXISTS", "lost"])?, "0");
    Ok(())
}

#[test]
fn refuse_closes_existing_and_new_connections() -> io::Result<()> {
    let server = RedisServer::start()?;
    let proxy = FaultProxy::start(&server.addr())?;
    let mut open = connect(proxy.port(), PROMPT)?;
    assert_eq!(ping(&mut open)?, "+PONG\r\n");
    let mut blackholed = connect(proxy.port(), PROMPT)?;
    wait_for_connections(&proxy, 2);
    proxy.set_fault(Fault::Blackhole);

    proxy.set_fault(Fault::Refuse);
    assert_eq!(proxy.fault(), Fault::Refuse);
    assert_eq!(proxy.connections(), 0);
    assert_closed(&mut open);
    assert_closed(&mut blackholed);
    let mut fresh = connect(proxy.port(), PROMPT)?;
    assert_closed(&mut fresh);

    proxy.set_fault(Fault::None);
    let mut healed = connect(proxy.port(), PROMPT)?;
    assert_eq!(ping(&mut healed)?, "+PONG\r\n");
    Ok(())
}

#[test]
fn closes_clients_when_the_target_is_down() -> io::Result<()> {
    let mut server = RedisServer::start()?;
    let proxy = FaultProxy::start(&server.addr())?;
    server.stop()?;
    let mut client = connect(proxy.port(), PROMPT)?;
    assert_closed(&mut client);
    wait_for_connections(&proxy, 0);

    server.restart()?;
    let mut client = connect(proxy.port(), PROMPT)?;
    assert_eq!(ping(&mut client)?, "+PONG\r\n");
    Ok(())
}

#[test]
fn drop_closes_the_port_and_every_connection() -> io::Result<()> {
    let server = RedisServer::start()?;
    let proxy = FaultProxy::start(&server.addr())?;
    let port = proxy.port();
    let mut forwarding = connect(port, PROMPT)?;
    assert_eq!(ping(&mut forwarding)?, "+PONG\r\n");
    proxy.set_fault(Fault::Blackhole);
    let mut blackholed = connect(port, PROMPT)?;
    wait_for_connections(&proxy, 2);

    let started = Instant::now();
    drop(proxy);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "drop took {elapsed:?}"
    );
    assert_closed(&mut forwarding);
    assert_closed(&mut blackholed);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

#[test]
fn rejects_an_unresolvable_target() {
    assert!(FaultProxy::start("not an address").is_err());
}
