//! `RedisServer` against a real `redis-server`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use rate_guard_testkit::RedisServer;

/// PING in RESP over a plain socket, with `timeout` on every step.
fn raw_ping(port: u16, timeout: Duration) -> io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = [0; 7];
    stream.read_exact(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn starts_on_a_free_port_and_answers() -> io::Result<()> {
    let server = RedisServer::start()?;
    assert_ne!(server.port(), 6379);
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert_eq!(server.cmd(&["PING"])?, "PONG");
    assert_eq!(
        raw_ping(server.port(), Duration::from_secs(2))?,
        "+PONG\r\n"
    );
    assert_eq!(server.cmd(&["CONFIG", "GET", "save"])?, "save");
    assert_eq!(server.cmd(&["DEBUG", "SLEEP", "0"])?, "OK");
    assert!(server.log_path().starts_with(server.dir()));
    Ok(())
}

#[test]
fn parallel_servers_get_distinct_ports() -> io::Result<()> {
    let servers = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(RedisServer::start)).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("start thread panicked"))
            .collect::<io::Result<Vec<_>>>()
    })?;
    let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
    for server in &servers {
        server.cmd(&["SET", "owner", &server.port().to_string()])?;
    }
    for server in &servers {
        assert_eq!(server.cmd(&["GET", "owner"])?, server.port().to_string());
    }
    Ok(())
}

#[test]
fn drop_kills_the_process_and_removes_the_dir() -> io::Result<()> {
    let server = RedisServer::start()?;
    let pid = server.pid().expect("a started server has a pid");
    let dir = server.dir().to_path_buf();
    assert!(process_exists(pid));
    assert!(dir.join("redis.log").exists());
    drop(server);
    assert!(!process_exists(pid), "redis-server {pid} survived drop");
    assert!(!dir.exists(), "{} survived drop", dir.display());
    Ok(())
}

#[test]
fn stop_and_restart_keep_port_and_dir() -> io::Result<()> {
    let mut server = RedisServer::start()?;
    let (port, dir) = (server.port(), server.dir().to_path_buf());
    let first_pid = server.pid().expect("running");
    server.cmd(&["SET", "k", "v"])?;

    server.stop()?;
    assert_eq!(server.pid(), None);
    assert!(!process_exists(first_pid));
    assert!(raw_ping(port, Duration::from_secs(1)).is_err());
    assert!(
        server.pause().is_err(),
        "pausing a stopped server must fail"
    );
    assert!(dir.exists());

    server.restart()?;
    assert_eq!(server.port(), port);
    assert_eq!(server.dir(), dir);
    assert_ne!(server.pid(), Some(first_pid));
    assert_eq!(server.cmd(&["PING"])?, "PONG");
    // No persistence: a restart is a crash that lost everything.
    assert_eq!(server.cmd(&["EXISTS", "k"])?, "0");

    // Restarting a running server replaces the process.
    let second_pid = server.pid().expect("running");
    server.restart()?;
    assert!(!process_exists(second_pid));
    assert_eq!(server.cmd(&["PING"])?, "PONG");
    Ok(())
}

#[test]
fn pause_blocks_replies_until_resume() -> io::Result<()> {
    let server = RedisServer::start()?;
    server.pause()?;
    let error = raw_ping(server.port(), Duration::from_millis(200))
        .expect_err("a paused server must not answer");
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{error:?}"
    );
    let error = server
        .ping(Duration::from_millis(200))
        .expect_err("a paused server must not answer");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);

    server.resume()?;
    assert_eq!(
        raw_ping(server.port(), Duration::from_secs(2))?,
        "+PONG\r\n"
    );
    server.ping(Duration::from_secs(2))?;
    Ok(())
}

#[test]
fn password_and_extra_args_are_applied() -> io::Result<()> {
    let server = RedisServer::builder()
        .password("p@ss word")
        .args(["--maxmemory", "8mb"])
        .start()?;
    assert_eq!(
        server.cmd(&["CONFIG", "GET", "maxmemory"])?,
        "maxmemory\n8388608"
    );
    assert_eq!(
        server.url(),
        format!("redis://:p%40ss%20word@127.0.0.1:{}/", server.port())
    );
    assert_eq!(raw_ping(server.port(), Duration::from_secs(2))?, "-NOAUTH");
    server.ping(Duration::from_secs(2))?;
    Ok(())
}

#[test]
fn a_bad_argument_fails_with_the_log() {
    let error = RedisServer::builder()
        .args(["--no-such-option", "1"])
        .start()
        .expect_err("redis-server must reject an unknown option");
    let message = error.to_string();
    assert!(message.contains("no-such-option"), "{message}");
}
