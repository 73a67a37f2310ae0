//! `Connection` against real servers: standalone (faults included), password, Cluster (routing,
//! script loading, failover) and Sentinel (failover); plus URL parsing.

use std::future::Future;
use std::time::{Duration, Instant};

use rate_guard_redis::connection::{Connection, ConnectionError, RedisConfig, Topology};
use rate_guard_redis::test_support::eval_script;
use rate_guard_testkit::{RedisCluster, RedisSentinel, RedisServer};
use redis::Value;

const INCR: &str = "return redis.call('INCR', KEYS[1])";
const ECHO: &str = "return {KEYS[1], ARGV[1], ARGV[2]}";
/// How long a test waits for calls to work again after a failover or a restart.
const RECOVERY: Duration = Duration::from_secs(10);

fn sha1(body: &str) -> String {
    redis::Script::new(body).get_hash().to_owned()
}

/// Runs a blocking fixture call without starving the runtime's other worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn incr(conn: &Connection, key: &str) -> Result<i64, ConnectionError> {
    match eval_script(conn, &sha1(INCR), INCR, &[key], &[] as &[&str]).await? {
        Value::Int(n) => Ok(n),
        other => panic!("INCR script returned {other:?}"),
    }
}

/// Retries `call` until it succeeds, for at most `limit`; returns its value and the failures.
async fn until_ok<T, F, Fut>(limit: Duration, mut call: F) -> (T, Vec<ConnectionError>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ConnectionError>>,
{
    let start = Instant::now();
    let mut failures = Vec::new();
    loop {
        match call().await {
            Ok(value) => return (value, failures),
            Err(e) => {
                assert!(
                    start.elapsed() < limit,
                    "still failing after {limit:?}: {e} (earlier: {failures:?})"
                );
                failures.push(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `calls=` of `command` (e.g. `script|load`) in `INFO commandstats`.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.cmd(&["INFO", "commandstats"]).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

// ---------------------------------------------------------------------------------------------
// URLs

#[test]
fn every_scheme_parses() {
    let standalone = RedisConfig::from_url("redis://cache:6380/3").unwrap();
    assert_eq!(standalone.topology(), Topology::Standalone);
    assert_eq!(standalone.db(), 3);
    assert!(!standalone.is_tls());

    let tls = RedisConfig::from_url("rediss://user:pw@cache.example.com").unwrap();
    assert_eq!(tls.topology(), Topology::Standalone);
    assert!(tls.is_tls());
    assert_eq!(tls.url_redacted(), "rediss://user:***@cache.example.com");

    let sentinel = RedisConfig::from_url("redis+sentinel://:pw@h1:26380,h2/mymaster/2").unwrap();
    assert_eq!(sentinel.topology(), Topology::Sentinel);
    assert_eq!(sentinel.db(), 2);
    assert_eq!(
        sentinel.url_redacted(),
        "redis+sentinel://:***@h1:26380,h2/mymaster/2"
    );
    let sentinel = RedisConfig::from_url("redis+sentinel://h1:26380/mymaster").unwrap();
    assert_eq!(sentinel.db(), 0);

    let cluster = RedisConfig::from_url("redis+cluster://:pw@10.0.0.1:7000,[::1]:7001").unwrap();
    assert_eq!(cluster.topology(), Topology::Cluster);
    assert!(RedisConfig::from_url("rediss+cluster://h:7000/")
        .unwrap()
        .is_tls());

    let tuned = RedisConfig::from_url("redis://[::1]")
        .unwrap()
        .pool_size(0)
        .timeout(Duration::from_millis(20))
        .connect_timeout(Duration::from_millis(300));
    assert_eq!(tuned.get_pool_size(), 1, "a pool of zero is a pool of one");
    assert_eq!(tuned.get_timeout(), Duration::from_millis(20));
    assert_eq!(tuned.get_connect_timeout(), Duration::from_millis(300));
    let defaults = RedisConfig::from_url("REDIS://h").unwrap();
    assert_eq!(defaults.get_pool_size(), 1);
    assert_eq!(defaults.get_timeout(), Duration::from_millis(100));
    assert_eq!(defaults.get_connect_timeout(), Duration::from_secs(1));
}

#[test]
fn bad_urls_name_the_bad_part_and_hide_the_password() {
    let cases = [
        ("memcached://h:11211", "unknown scheme `memcached`"),
        ("localhost:6379", "missing scheme"),
        ("redis://", "missing host"),
        ("redis://:s3cret@", "missing host"),
        ("redis://:s3cret@:6379", "missing host in `:6379`"),
        (
            "redis+cluster://h1:7000,,h2:7000",
            "empty entry in the host list",
        ),
        ("redis://:s3cret@h:0", "bad port `0` in `h:0`"),
        ("redis://h:65536", "bad port `65536`"),
        ("redis://h:63x9", "bad port `63x9`"),
        ("redis+cluster://h1:7000,h2:+7", "bad port `+7` in `h2:+7`"),
        ("redis://::1:6379", "IPv6 address in brackets"),
        ("redis://[::1", "unclosed `[`"),
        ("redis://[nope]:1", "not an IPv6 address"),
        ("redis://h a:1", "bad host `h a`"),
        ("redis://:s3cret@h/x", "bad database `x`"),
        ("redis://h/-1", "bad database `-1`"),
        ("redis://h/1/2", "bad path `/1/2`"),
        ("redis://h1,h2", "names 2 hosts"),
        (
            "redis+sentinel://:s3cret@h1:26379,h2:26379",
            "missing sentinel master name",
        ),
        ("redis+sentinel://h1:26379/", "missing sentinel master name"),
        ("redis+sentinel://h1/mymaster/x", "bad database `x`"),
        ("redis+sentinel://h1/mymaster/1/2", "bad path"),
        ("redis+cluster://h:7000/3", "database 0 only"),
        ("redis+cluster://h:7000/x/y", "takes no path"),
        (
            "redis://:s3cret@h/0?timeout=5",
            "unknown query parameter `timeout`",
        ),
        ("redis://h#frag", "a fragment"),
        (
            "redis://:s3cret%zz@h",
            "bad percent-encoding in the password",
        ),
    ];
    for (url, expected) in cases {
        let err = RedisConfig::from_url(url).expect_err(url);
        let ConnectionError::InvalidUrl {
            url_redacted,
            reason,
        } = &err
        else {
            panic!("{url}: {err:?}");
        };
        let message = err.to_string();
        assert!(reason.contains(expected), "{url}: {message}");
        assert!(!message.contains("s3cret"), "{url}: {message}");
        assert!(!format!("{err:?}").contains("s3cret"), "{url}: {err:?}");
        assert!(!url_redacted.contains("s3cret"), "{url}: {url_redacted}");
        assert!(!err.is_transient() && !err.is_timeout());
    }
}

#[test]
fn passwords_are_decoded_and_never_shown() {
    let config = RedisConfig::from_url("redis://app:p%40ss%2Fw0rd@h:1/0").unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("p%40ss") && !debug.contains("p@ss"),
        "{debug}"
    );
    assert_eq!(config.url_redacted(), "redis://app:***@h:1/0");
    // An unencoded `@` or `/` in the password still parses, and is still hidden.
    let raw = RedisConfig::from_url("redis://:p@ss/w0rd@h:1/2").unwrap();
    assert_eq!(raw.db(), 2);
    assert_eq!(raw.url_redacted(), "redis://:***@h:1/2");
}

#[test]
fn errors_map_onto_store_errors() {
    use rate_guard_core::StoreError;
    let timeout: StoreError = ConnectionError::Timeout(Duration::from_millis(7)).into();
    assert_eq!(timeout, StoreError::Timeout(Duration::from_millis(7)));
    assert!(timeout.is_timeout());
    let down: StoreError = ConnectionError::Unavailable("x".into()).into();
    assert!(down.is_transient() && !down.is_timeout());
    let refused: StoreError = ConnectionError::Refused("x".into()).into();
    assert!(!refused.is_transient());
    let bad_url: StoreError = RedisConfig::from_url("nope").unwrap_err().into();
    assert!(matches!(bad_url, StoreError::Refused(m) if m.contains("missing scheme")));
}

// ---------------------------------------------------------------------------------------------
// Standalone

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_scripts_reload_after_script_flush() {
    let server = blocking(RedisServer::start).unwrap();
    let config = RedisConfig::from_url(&server.url()).unwrap();
    let conn = Connection::connect(&config).await.unwrap();
    assert!(!conn.is_cluster());
    assert_eq!(conn.topology(), Topology::Standalone);

    // Never loaded: NOSCRIPT, SCRIPT LOAD, EVALSHA.
    let reply = eval_script(
        &conn,
        &sha1(ECHO),
        ECHO,
        &["k"],
        &[b"bytes".to_vec(), vec![0xff, 0]],
    )
    .await
    .unwrap();
    let expected = |a: &[u8], b: &[u8]| {
        Value::Array(vec![
            Value::BulkString(b"k".to_vec()),
            Value::BulkString(a.to_vec()),
            Value::BulkString(b.to_vec()),
        ])
    };
    assert_eq!(reply, expected(b"bytes", &[0xff, 0]));
    assert_eq!(calls(&server, "script|load"), 1);

    // Cached now: no more loads. String arguments work too.
    let args = [String::from("a"), String::from("b")];
    let reply = eval_script(&conn, &sha1(ECHO), ECHO, &["k"], &args)
        .await
        .unwrap();
    assert_eq!(reply, expected(b"a", b"b"));
    assert_eq!(calls(&server, "script|load"), 1);

    // Flushed: loaded again, once.
    conn.command_everywhere(&["SCRIPT", "FLUSH"]).await.unwrap();
    assert_eq!(incr(&conn, "hits").await.unwrap(), 1);
    assert_eq!(calls(&server, "script|load"), 2);
    assert_eq!(incr(&conn, "hits").await.unwrap(), 2);
    assert_eq!(calls(&server, "script|load"), 2);

    // load_script returns Redis's SHA1.
    assert_eq!(conn.load_script(INCR).await.unwrap(), sha1(INCR));

    // A body that does not match its SHA1 is refused rather than retried forever.
    let err = eval_script(&conn, &sha1("return 1"), "return 2", &[], &[] as &[&str])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectionError::Refused(m) if m.contains("SHA1")),
        "{err}"
    );

    // A script error concerns that call: rejected, not a transient failure.
    let boom = "return redis.call('NOSUCHCOMMAND')";
    let err = eval_script(&conn, &sha1(boom), boom, &[], &[] as &[&str])
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectionError::Rejected(_)), "{err}");
    assert!(!err.is_transient());

    conn.del(&["hits"]).await.unwrap();
    assert_eq!(server.cmd(&["EXISTS", "hits"]).unwrap(), "0");
    conn.del(&[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_the_pool() {
    let server = blocking(RedisServer::start).unwrap();
    let config = RedisConfig::from_url(&server.url())
        .unwrap()
        .pool_size(3)
        .timeout(Duration::from_secs(2));
    let conn = Connection::connect(&config).await.unwrap();
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { incr(&conn, "shared").await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(server.cmd(&["GET", "shared"]).unwrap(), "300");
    // Three sockets, and the CLIENT LIST itself.
    let clients = server.cmd(&["CLIENT", "LIST"]).unwrap();
    assert_eq!(clients.lines().count(), 4, "{clients}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_survives_pause_stop_and_restart() {
    let mut server = blocking(RedisServer::start).unwrap();
    // Generous for a loaded 2-core machine: a scheduling hiccup must not pass for a timeout.
    let timeout = Duration::from_millis(250);
    let config = RedisConfig::from_url(&server.url())
        .unwrap()
        .timeout(timeout)
        .connect_timeout(Duration::from_millis(500));
    let conn = Connection::connect(&config).await.unwrap();
    assert_eq!(incr(&conn, "n").await.unwrap(), 1);

    // Frozen: a timeout, on time.
    server.pause().unwrap();
    let start = Instant::now();
    let err = incr(&conn, "n").await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err, ConnectionError::Timeout(timeout));
    assert!(err.is_timeout() && err.is_transient());
    assert!(took < timeout + Duration::from_millis(250), "took {took:?}");
    server.resume().unwrap();
    let (n, _) = until_ok(Duration::from_secs(2), || incr(&conn, "n")).await;
    assert!(n >= 2, "{n}");

    // Frozen for longer than a connection may take: the silent pool is replaced, and calls
    // come back once the server does.
    server.pause().unwrap();
    let frozen = Instant::now();
    while frozen.elapsed() < Duration::from_millis(800) {
        assert!(incr(&conn, "n").await.unwrap_err().is_timeout());
    }
    server.resume().unwrap();
    until_ok(Duration::from_secs(3), || incr(&conn, "n")).await;

    // Killed: unavailable, quickly, and never a timeout.
    blocking(|| server.stop()).unwrap();
    for attempt in 0..3 {
        let start = Instant::now();
        let err = incr(&conn, "n").await.unwrap_err();
        assert!(
            matches!(err, ConnectionError::Unavailable(_)),
            "attempt {attempt}: {err:?}"
        );
        assert!(err.is_transient() && !err.is_timeout());
        assert!(start.elapsed() < timeout + Duration::from_millis(250));
    }

    // Back (empty, scripts gone): calls work again.
    blocking(|| server.restart()).unwrap();
    let (n, failures) = until_ok(Duration::from_secs(3), || incr(&conn, "n")).await;
    assert_eq!(n, 1);
    assert!(failures.len() <= 1, "{failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_when_nothing_answers() {
    // A port nothing listens on: refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let limit = Duration::from_millis(400);
    let config = RedisConfig::from_url(&format!("redis://:s3cret@127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(limit);
    let start = Instant::now();
    let err = Connection::connect(&config).await.unwrap_err();
    assert!(start.elapsed() < limit, "took {:?}", start.elapsed());
    assert!(matches!(&err, ConnectionError::Unavailable(m) if m.contains(&port.to_string())));
    assert!(!err.to_string().contains("s3cret"), "{err}");

    // A frozen server accepts the TCP connection but never answers: the connect timeout.
    let server = blocking(RedisServer::start).unwrap();
    server.pause().unwrap();
    let config = RedisConfig::from_url(&server.url())
        .unwrap()
        .connect_timeout(limit);
    let start = Instant::now();
    let err = Connection::connect(&config).await.unwrap_err();
    let took = start.elapsed();
    server.resume().unwrap();
    assert!(err.is_timeout(), "{err:?}");
    assert!(took < limit + Duration::from_millis(200), "took {took:?}");

    // Same through the other topologies.
    for url in [
        format!("redis+cluster://127.0.0.1:{port}"),
        format!("redis+sentinel://127.0.0.1:{port}/mymaster"),
    ] {
        let config = RedisConfig::from_url(&url).unwrap().connect_timeout(limit);
        let start = Instant::now();
        let err = Connection::connect(&config).await.unwrap_err();
        assert!(
            start.elapsed() < limit + Duration::from_millis(200),
            "{url}"
        );
        assert!(err.is_transient(), "{url}: {err:?}");
    }

    // TLS against a plain server: a clean failure (no panic from rustls), within the limit.
    let plain = RedisConfig::from_url(&server.url().replace("redis://", "rediss://"))
        .unwrap()
        .connect_timeout(limit);
    let start = Instant::now();
    let err = Connection::connect(&plain).await.unwrap_err();
    assert!(
        start.elapsed() < limit + Duration::from_millis(200),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_required_and_never_shown() {
    let password = "pa:ss@w/rd";
    let server = blocking(|| RedisServer::builder().password(password).start()).unwrap();
    let with = RedisConfig::from_url(&server.url()).unwrap();
    assert!(!format!("{with:?}").contains(password));
    let conn = Connection::connect(&with).await.unwrap();
    assert_eq!(incr(&conn, "k").await.unwrap(), 1);
    assert!(!format!("{conn:?}").contains(password));

    let without = RedisConfig::from_url(&format!("redis://{}", server.addr())).unwrap();
    let err = Connection::connect(&without).await.unwrap_err();
    assert!(
        matches!(&err, ConnectionError::Refused(m) if m.contains("NOAUTH")),
        "{err:?}"
    );

    let wrong = RedisConfig::from_url(&format!("redis://:nope-{}@{}", "x", server.addr())).unwrap();
    let err = Connection::connect(&wrong).await.unwrap_err();
    assert!(matches!(err, ConnectionError::Refused(_)), "{err:?}");
    assert!(!err.to_string().contains("nope-x"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_refused_with_the_name_of_its_master() {
    let master = blocking(RedisServer::start).unwrap();
    let replica = blocking(|| RedisServer::builder().replica_of(&master).start()).unwrap();
    let config = RedisConfig::from_url(&replica.url()).unwrap();
    let err = Connection::connect(&config).await.unwrap_err();
    let expected = format!(
        "{} is a replica (read-only); connect to its master {} instead",
        replica.addr(),
        master.addr()
    );
    assert!(
        matches!(&err, ConnectionError::Refused(m) if m.contains(&expected)),
        "{err:?}"
    );
    assert!(!err.is_transient());

    // The master is fine, and so is a server that does not let us ask its role.
    let conn = Connection::connect(&RedisConfig::from_url(&master.url()).unwrap())
        .await
        .unwrap();
    assert_eq!(incr(&conn, "k").await.unwrap(), 1);
    blocking(|| {
        master
            .cmd(&[
                "ACL", "SETUSER", "norole", "on", ">pw", "~*", "+@all", "-role",
            ])
            .unwrap()
    });
    let norole = format!("redis://norole:pw@{}/", master.addr());
    let conn = Connection::connect(&RedisConfig::from_url(&norole).unwrap())
        .await
        .unwrap();
    assert_eq!(incr(&conn, "k").await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// The master that holds `key`, asked of each master directly (the others answer `MOVED`).
fn holder(cluster: &RedisCluster, key: &str) -> String {
    let holders: Vec<String> = cluster
        .masters()
        .unwrap()
        .into_iter()
        .filter(|addr| cluster.node(addr).unwrap().cmd(&["EXISTS", key]).unwrap() == "1")
        .collect();
    assert_eq!(holders.len(), 1, "{key} is on {holders:?}");
    holders.into_iter().next().unwrap()
}

fn script_exists_everywhere(cluster: &RedisCluster, sha: &str) -> Vec<String> {
    cluster
        .masters()
        .unwrap()
        .iter()
        .map(|addr| {
            cluster
                .node(addr)
                .unwrap()
                .cmd(&["SCRIPT", "EXISTS", sha])
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_routes_loads_everywhere_and_follows_a_failover() {
    let cluster = blocking(RedisCluster::start).unwrap();
    let config = RedisConfig::from_url(&cluster.url())
        .unwrap()
        .timeout(Duration::from_millis(500));
    let conn = Connection::connect(&config).await.unwrap();
    assert!(conn.is_cluster());

    // Keys with different hash tags land on their slots' masters, which cover all three.
    let keys: Vec<String> = (0..12).map(|i| format!("{{tag{i}}}:hits")).collect();
    for key in &keys {
        assert_eq!(incr(&conn, key).await.unwrap(), 1);
    }
    let mut holders = std::collections::BTreeSet::new();
    for key in &keys {
        assert_eq!(cluster.cmd(&["GET", key]).unwrap(), "1");
        holders.insert(holder(&cluster, key));
    }
    assert_eq!(holders.len(), 3, "{holders:?}");

    // Two keys of one slot in one call.
    let pair = "return redis.call('INCR', KEYS[1]) + redis.call('INCR', KEYS[2])";
    let both = ["{user:7}:a", "{user:7}:b"];
    let reply = eval_script(&conn, &sha1(pair), pair, &both, &[] as &[&str]).await;
    assert_eq!(reply.unwrap(), Value::Int(2));

    // SCRIPT LOAD on every master; SCRIPT FLUSH everywhere; eval still works on every master.
    let body = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let sha = conn.load_script(body).await.unwrap();
    assert_eq!(sha, sha1(body));
    assert_eq!(script_exists_everywhere(&cluster, &sha), ["1", "1", "1"]);
    conn.command_everywhere(&["SCRIPT", "FLUSH"]).await.unwrap();
    assert_eq!(script_exists_everywhere(&cluster, &sha), ["0", "0", "0"]);
    for key in &keys {
        let reply = eval_script(&conn, &sha, body, &[key], &["10"])
            .await
            .unwrap();
        assert_eq!(reply, Value::Int(11));
    }
    assert_eq!(script_exists_everywhere(&cluster, &sha), ["1", "1", "1"]);

    // Without keys: any master, after loading on all of them.
    conn.command_everywhere(&["SCRIPT", "FLUSH"]).await.unwrap();
    let one = "return 1";
    let reply = eval_script(&conn, &sha1(one), one, &[], &[] as &[&str]).await;
    assert_eq!(reply.unwrap(), Value::Int(1));

    // DEL across slots.
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    conn.del(&refs).await.unwrap();
    for key in &keys[..3] {
        assert_eq!(cluster.cmd(&["EXISTS", key]).unwrap(), "0");
    }

    // Fail the master of one key over to its replica: calls on that key work again soon.
    let key = &keys[0];
    assert_eq!(incr(&conn, key).await.unwrap(), 1);
    let old_master = holder(&cluster, key);
    let old_port = old_master.rsplit(':').next().unwrap().to_owned();
    let replica = cluster
        .replicas()
        .unwrap()
        .into_iter()
        .find(|addr| {
            let role = cluster.node(addr).unwrap().cmd(&["ROLE"]).unwrap();
            role.lines().nth(2) == Some(old_port.as_str())
        })
        .expect("the master has a replica");
    blocking(|| cluster.failover(&replica)).unwrap();
    let (n, failures) = until_ok(RECOVERY, || incr(&conn, key)).await;
    assert_eq!(n, 2, "after {failures:?}");
    assert_eq!(holder(&cluster, key), replica);
    assert_eq!(
        cluster.node(&replica).unwrap().cmd(&["GET", key]).unwrap(),
        "2"
    );
}

// ---------------------------------------------------------------------------------------------
// Sentinel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_follows_a_failover() {
    let sentinel = blocking(RedisSentinel::start).unwrap();
    let config = RedisConfig::from_url(&sentinel.url()).unwrap();
    let conn = Connection::connect(&config).await.unwrap();
    assert_eq!(conn.topology(), Topology::Sentinel);
    assert!(!conn.is_cluster());
    let old_master = sentinel.master_addr().unwrap();
    assert_eq!(incr(&conn, "n").await.unwrap(), 1);

    let new_master = blocking(|| sentinel.failover()).unwrap();
    assert_ne!(new_master, old_master);
    let (n, failures) = until_ok(RECOVERY, || incr(&conn, "n")).await;
    assert_eq!(n, 2, "after {failures:?}");
    let n = incr(&conn, "n").await.unwrap();
    assert_eq!(n, 3);

    // The writes went to the new master.
    let server = sentinel
        .servers()
        .iter()
        .find(|s| s.addr() == new_master)
        .unwrap();
    assert!(server.cmd(&["ROLE"]).unwrap().starts_with("master"));
    assert_eq!(server.cmd(&["GET", "n"]).unwrap(), "3");
    assert!(calls(server, "evalsha") >= 2);

    // And the database number is honoured.
    let db2 = RedisConfig::from_url(&format!("{}/2", sentinel.url())).unwrap();
    let conn2 = Connection::connect(&db2).await.unwrap();
    assert_eq!(incr(&conn2, "n").await.unwrap(), 1);
    let keyspace = server.cmd(&["INFO", "keyspace"]).unwrap();
    assert!(keyspace.contains("db2:keys=1,"), "{keyspace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_follows_the_master_when_it_freezes() {
    let sentinel = blocking(RedisSentinel::start).unwrap();
    let config = RedisConfig::from_url(&sentinel.url()).unwrap();
    let conn = Connection::connect(&config).await.unwrap();
    assert_eq!(incr(&conn, "n").await.unwrap(), 1);
    let old_master = sentinel.master_addr().unwrap();
    let frozen = sentinel
        .servers()
        .iter()
        .find(|s| s.addr() == old_master)
        .unwrap();

    // The sentinels fail the frozen master over on their own (down-after 1 s); calls time out
    // meanwhile, then go to the promoted replica.
    frozen.pause().unwrap();
    let (n, failures) = until_ok(Duration::from_secs(20), || incr(&conn, "n")).await;
    frozen.resume().unwrap();
    assert!(!failures.is_empty());
    assert!(
        failures.iter().all(ConnectionError::is_transient),
        "{failures:?}"
    );
    assert_eq!(n, 2);
    let new_master = sentinel.master_addr().unwrap();
    assert_ne!(new_master, old_master);
    let promoted = sentinel
        .servers()
        .iter()
        .find(|s| s.addr() == new_master)
        .unwrap();
    assert_eq!(promoted.cmd(&["GET", "n"]).unwrap(), "2");
}
