//! `redis-fixture server|cluster|sentinel`: starts a real Redis deployment on free ports for
//! tests outside Rust (the Python suite), prints its URL on one line, and stops it when its
//! standard input closes (the test process ended or closed the pipe). `server` passes any
//! further arguments to `redis-server` (`server --rename-command EVALSHA ""`).
//!
//! `tls [--require-client-certs]` makes a private CA and certificates
//! ([`TestCertificates`]), starts a server that serves TLS with them, and prints its
//! `rediss://` URL, then the directory of the PEM files (`ca.pem`, `other-ca.pem`,
//! `client.pem`, `client.key`, …) on a second line. `tls-cluster [--require-client-certs]`
//! does the same for a cluster ([`RedisCluster::start_tls`]): `rediss+cluster://h:p,…`, then
//! the directory.
//!
//! The URL is `redis://…`, `redis+cluster://h:p,…` or `redis+sentinel://h:p,…/<master>`.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use rate_guard_testkit::{RedisCluster, RedisSentinel, RedisServer, TestCertificates};

fn main() -> ExitCode {
    let kind = std::env::args().nth(1).unwrap_or_default();
    let rest: Vec<String> = std::env::args().skip(2).collect();
    // Each arm keeps its deployment alive until stdin closes, then drops (kills) it.
    let result = match kind.as_str() {
        "server" => RedisServer::builder()
            .args(rest)
            .start()
            .and_then(|s| serve(&s.url())),
        "tls" => tls(rest.iter().any(|a| a == "--require-client-certs")),
        "tls-cluster" => tls_cluster(rest.iter().any(|a| a == "--require-client-certs")),
        "cluster" => RedisCluster::start().and_then(|c| serve(&c.url())),
        "sentinel" => RedisSentinel::start().and_then(|s| serve(&s.url())),
        _ => {
            eprintln!(
                "usage: redis-fixture server [redis-server args...]|tls|tls-cluster [--require-client-certs]|cluster|sentinel"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-fixture {kind}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tls(require_client_certs: bool) -> io::Result<()> {
    let certs = TestCertificates::generate()?;
    let (cert, key) = certs.server();
    let server = RedisServer::builder()
        .tls(cert, key, certs.ca(), require_client_certs)
        .start()?;
    let url = server.tls_url().expect("a TLS server has a TLS URL");
    serve(&format!("{url}\n{}", certs.dir().display()))
}

fn tls_cluster(require_client_certs: bool) -> io::Result<()> {
    let certs = TestCertificates::generate()?;
    let cluster = RedisCluster::start_tls(&certs, require_client_certs)?;
    let url = cluster.tls_url().expect("a TLS cluster has a TLS URL");
    serve(&format!("{url}\n{}", certs.dir().display()))
}

fn serve(url: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{url}")?;
    out.flush()?;
    // Blocks until the reader closes the pipe.
    io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}
