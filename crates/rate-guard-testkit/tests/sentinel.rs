//! `RedisSentinel` against real `redis-server` and sentinel processes.

use std::io;

use rate_guard_testkit::RedisSentinel;

#[test]
fn sentinel_reports_the_master_and_fails_over() -> io::Result<()> {
    let sentinel = RedisSentinel::start()?;
    let [master, replica] = sentinel.servers() else {
        panic!("expected a master and a replica");
    };
    assert_eq!(sentinel.master_name(), "mymaster");
    assert_eq!(sentinel.master_addr()?, master.addr());
    assert_eq!(sentinel.sentinel_addrs().len(), 3);
    assert_eq!(
        sentinel.url(),
        format!(
            "redis+sentinel://{}/mymaster",
            sentinel.sentinel_addrs().join(",")
        )
    );
    for process in sentinel.sentinels() {
        assert_ne!(process.port(), 6379);
        assert!(process.cmd(&["ROLE"])?.starts_with("sentinel"));
    }
    master.cmd(&["SET", "k", "v"])?;

    let new_master = sentinel.failover()?;
    assert_eq!(new_master, replica.addr());
    assert_eq!(sentinel.master_addr()?, replica.addr());
    assert!(replica.cmd(&["ROLE"])?.starts_with("master"));
    assert_eq!(replica.cmd(&["GET", "k"])?, "v");
    Ok(())
}
