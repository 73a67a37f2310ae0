//! `RedisCluster` against real `redis-server` nodes.

use std::io;

use rate_guard_testkit::RedisCluster;

#[test]
fn cluster_starts_serves_keys_and_fails_over() -> io::Result<()> {
    let cluster = RedisCluster::start()?;
    assert_eq!(cluster.nodes().len(), 6);
    for node in cluster.nodes() {
        assert_ne!(node.port(), 6379);
        let info = node.cmd(&["CLUSTER", "INFO"])?;
        assert!(info.contains("cluster_state:ok"), "{}: {info}", node.addr());
    }

    let masters = cluster.masters()?;
    let replicas = cluster.replicas()?;
    assert_eq!(masters.len(), 3);
    assert_eq!(replicas.len(), 3);
    let mut all: Vec<String> = masters.iter().chain(&replicas).cloned().collect();
    all.sort();
    let mut seeds = cluster.seed_addrs();
    seeds.sort();
    assert_eq!(all, seeds);
    assert_eq!(
        cluster.url(),
        format!("redis+cluster://{}", cluster.seed_addrs().join(","))
    );

    // Keys in different slots, set and read through `redis-cli -c` on whichever node.
    for key in ["alpha", "beta", "gamma", "{user:1}:hits"] {
        assert_eq!(cluster.cmd(&["SET", key, "v"])?, "OK");
        assert_eq!(cluster.cmd(&["GET", key])?, "v");
    }

    let replica = replicas[0].clone();
    assert!(
        cluster.failover(&masters[0]).is_err(),
        "a master cannot fail over"
    );
    cluster.failover(&replica)?;
    let masters_after = cluster.masters()?;
    assert!(masters_after.contains(&replica), "{masters_after:?}");
    assert_eq!(masters_after.len(), 3);
    let node = cluster.node(&replica).expect("the replica is a node");
    assert!(node.cmd(&["ROLE"])?.starts_with("master"));
    for key in ["alpha", "beta", "gamma", "{user:1}:hits"] {
        assert_eq!(cluster.cmd(&["GET", key])?, "v");
    }
    Ok(())
}
