//! The function library and its fallback: `FCALL` where the server runs functions, `EVALSHA` of
//! the same code where it refuses them (a renamed `FUNCTION`, an ACL), chosen at connect and
//! changed for good when a server starts refusing `FCALL`; both decide alike (conformance.rs
//! replays timelines on both).

use std::num::NonZeroU32;
use std::time::Duration;

use rate_guard_core::{Algorithm, Check, Quota, Request, Rule, Store};
use rate_guard_redis::test_support::{library_source, request_function};
use rate_guard_redis::{RedisConfig, RedisStore};
use rate_guard_testkit::RedisServer;

async fn connect(url: &str) -> RedisStore {
    let config = RedisConfig::from_url(url)
        .unwrap()
        .timeout(Duration::from_secs(2));
    RedisStore::connect(&config).await.unwrap()
}

/// Hits a rule of 3 per hour `times` times on `key`; returns how many were admitted.
async fn admitted(store: &RedisStore, key: &str, times: u32) -> u32 {
    let rule = Rule::builder("3/hour".parse::<Quota>().unwrap())
        .algorithm(Algorithm::SlidingWindow)
        .build()
        .unwrap();
    let checks = [Check {
        rule: &rule,
        key,
        cost: NonZeroU32::MIN,
    }];
    let mut admitted = 0;
    for _ in 0..times {
        if store.decide(Request::hit(&checks)).await.unwrap().allowed() {
            admitted += 1;
        }
    }
    admitted
}

fn stat_calls(server: &RedisServer, command: &str) -> u64 {
    let stats = server.cmd(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_server_that_runs_functions_is_called_with_fcall() {
    let server = RedisServer::start().unwrap();
    let store = connect(&server.url()).await;
    assert!(store.uses_functions());
    assert_eq!(admitted(&store, "rate_guard:f:{a}", 5).await, 3);
    assert_eq!(stat_calls(&server, "fcall"), 5);
    assert_eq!(stat_calls(&server, "evalsha"), 0);
    assert_eq!(stat_calls(&server, "script|load"), 0);
}

#[tokio::test]
async fn a_renamed_function_command_falls_back_to_evalsha() {
    let server = RedisServer::builder()
        .args(["--rename-command", "FUNCTION", ""])
        .start()
        .unwrap();
    let store = connect(&server.url()).await;
    assert!(!store.uses_functions());
    assert_eq!(admitted(&store, "rate_guard:f:{b}", 5).await, 3);
    assert_eq!(stat_calls(&server, "evalsha"), 5);
    assert_eq!(stat_calls(&server, "fcall"), 0);
}

#[tokio::test]
async fn an_acl_without_functions_falls_back_to_evalsha() {
    let server = RedisServer::start().unwrap();
    server
        .cmd(&[
            "ACL",
            "SETUSER",
            "nofn",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-function",
            "-fcall",
        ])
        .unwrap();
    let store = connect(&format!("redis://nofn:pw@127.0.0.1:{}/", server.port())).await;
    assert!(!store.uses_functions());
    assert_eq!(admitted(&store, "rate_guard:f:{c}", 5).await, 3);
    assert_eq!(stat_calls(&server, "evalsha"), 5);
}

#[tokio::test]
async fn fcall_refused_after_connect_switches_to_evalsha_for_good() {
    let server = RedisServer::start().unwrap();
    server
        .cmd(&["ACL", "SETUSER", "later", "on", ">pw", "~*", "+@all"])
        .unwrap();
    let store = connect(&format!("redis://later:pw@127.0.0.1:{}/", server.port())).await;
    assert!(store.uses_functions());
    assert_eq!(admitted(&store, "rate_guard:f:{d}", 2).await, 2);
    // The library is lost and may no longer be loaded nor called.
    server.cmd(&["FUNCTION", "FLUSH"]).unwrap();
    server
        .cmd(&["ACL", "SETUSER", "later", "-function", "-fcall"])
        .unwrap();
    // No decision fails: the call that met the refusal is made with EVALSHA, and so is the next.
    assert_eq!(admitted(&store, "rate_guard:f:{d}", 3).await, 1);
    assert!(!store.uses_functions());
    // The first EVALSHA met NOSCRIPT (scripts are loaded only when needed) and was made again.
    assert_eq!(stat_calls(&server, "evalsha"), 4);
    assert_eq!(stat_calls(&server, "script|load"), 1);
}

#[tokio::test]
async fn each_version_of_the_library_has_its_own_names() {
    let source = library_source();
    let first = source.lines().next().unwrap();
    let version = first.strip_prefix("#!lua name=rate_guard_").unwrap();
    assert_eq!(version.len(), 16);
    assert_eq!(request_function(), format!("rate_guard_request_{version}"));
    // Loading it twice (two processes, a reconnect) is harmless: REPLACE.
    let server = RedisServer::start().unwrap();
    let _first = connect(&server.url()).await;
    let second = connect(&server.url()).await;
    assert!(second.uses_functions());
    let list = server.cmd(&["FUNCTION", "LIST"]).unwrap();
    assert_eq!(list.matches("rate_guard_request_").count(), 1, "{list}");
}

/// The library keeps parsed rules and costs between calls (lua/modules.lua), at most 1,024 of
/// each before starting afresh: more distinct rules than that, interleaved, still decide by
/// their own parameters.
#[tokio::test]
async fn more_rules_than_the_library_keeps_decide_by_their_own_parameters() {
    let server = RedisServer::start().unwrap();
    let store = connect(&server.url()).await;
    assert!(store.uses_functions());
    let mut used = vec![0u32; 1101];
    for _round in 0..2 {
        for count in 1..=1100u32 {
            let period = Duration::from_secs(3600 + u64::from(count % 3));
            let quota = Quota::new(NonZeroU32::new(count).unwrap(), period).unwrap();
            let rule = Rule::builder(quota)
                .algorithm(Algorithm::FixedWindow)
                .build()
                .unwrap();
            let key = format!("rate_guard:memo:{count}");
            let cost = 1 + count % 2;
            let checks = [Check {
                rule: &rule,
                key: &key,
                cost: NonZeroU32::new(cost).unwrap(),
            }];
            let verdict = store.decide(Request::hit(&checks)).await.unwrap();
            let d = &verdict.rules()[0];
            let c = usize::try_from(count).unwrap();
            assert_eq!(d.limit, count);
            assert_eq!(d.allowed, used[c] + cost <= count, "{count}");
            if d.allowed {
                used[c] += cost;
            }
            assert_eq!(d.remaining, count - used[c], "{count}");
        }
    }
}
