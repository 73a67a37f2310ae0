//! Corrupt or out-of-range state heals (issue 12, item 4): a value in the right shape but out
//! of range for the rule and `now`, a value that does not parse, or a key of another type is
//! decided as no state, exactly as the memory store decides a key it has never seen; an
//! admitting hit overwrites it with a fresh state and a TTL, and a request that writes nothing
//! deletes it, so it never lingers without a TTL. Nothing errors. A real server from the
//! testkit.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rate_guard_core::{
    Algorithm, Check, Decision, KeyBuilder, MemoryStore, Mode, Quota, Request, Rule, Store,
    Timestamp,
};
use rate_guard_redis::{RedisStore, REFUND_SOURCE};
use rate_guard_testkit::RedisServer;

const NOW: u64 = 1_796_000_000_123_456;
const HOUR: u64 = 3_600_000_000;

struct Fixture {
    server: RedisServer,
    rt: tokio::runtime::Runtime,
    redis: RedisStore,
    con: redis::Connection,
}

impl Fixture {
    fn start() -> Self {
        let server = RedisServer::builder()
            .args(["--slowlog-log-slower-than", "50000"])
            .start()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = rate_guard_redis::RedisConfig::from_url(&server.url())
            .unwrap()
            .timeout(Duration::from_secs(5));
        let redis = rt.block_on(RedisStore::connect(&config)).unwrap();
        let con = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        Self {
            server,
            rt,
            redis,
            con,
        }
    }

    /// Runs a raw command (to poison a key).
    fn cmd(&mut self, args: &[&str]) {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let _: redis::Value = cmd.query(&mut self.con).unwrap();
    }

    fn pttl(&mut self, key: &str) -> i64 {
        redis::cmd("PTTL").arg(key).query(&mut self.con).unwrap()
    }

    fn key_type(&mut self, key: &str) -> String {
        redis::cmd("TYPE").arg(key).query(&mut self.con).unwrap()
    }

    /// A request on Redis and on `memory`, which must decide alike.
    fn decide(
        &self,
        memory: &MemoryStore,
        checks: &[(&Rule, &str)],
        cost: u32,
        mode: Mode,
    ) -> Vec<Decision> {
        let cost = NonZeroU32::new(cost).unwrap();
        let checks: Vec<Check<'_>> = checks
            .iter()
            .map(|&(rule, key)| Check { rule, key, cost })
            .collect();
        let request = Request {
            checks: &checks,
            mode,
            now: Some(Timestamp::from_micros(NOW)),
        };
        let expected = memory.decide_now(request).unwrap();
        let actual = self
            .rt
            .block_on(self.redis.decide(request))
            .unwrap_or_else(|e| panic!("{checks:?}: {e}"));
        assert_eq!(expected, actual, "{checks:?} {mode:?}");
        actual.rules().to_vec()
    }
}

fn rule(rate: &str, algorithm: Algorithm) -> Rule {
    Rule::builder(rate.parse::<Quota>().unwrap())
        .algorithm(algorithm)
        .build()
        .unwrap()
}

fn fresh_key(rule: &Rule) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    KeyBuilder::default().key(
        rule,
        &format!("poisoned-{}", N.fetch_add(1, Ordering::Relaxed)),
    )
}

/// How a poisoned key is written: `SET key value`, or commands that build another type of key.
enum Poison {
    Value(String),
    Commands(Vec<Vec<String>>),
}

fn value(v: impl Into<String>) -> Poison {
    Poison::Value(v.into())
}

/// Keys of other types, which read as no state for every algorithm (a string too, for the log).
fn other_types(algorithm: Algorithm) -> Vec<Poison> {
    let mut poisons = vec![
        Poison::Commands(vec![vec![
            "HSET".into(),
            "{k}".into(),
            "f".into(),
            "v".into(),
        ]]),
        Poison::Commands(vec![vec!["RPUSH".into(), "{k}".into(), "x".into()]]),
        Poison::Commands(vec![vec!["SADD".into(), "{k}".into(), "x".into()]]),
    ];
    if algorithm == Algorithm::SlidingLog {
        poisons.push(value(format!("T {NOW} 0")));
    } else {
        poisons.push(Poison::Commands(vec![vec![
            "ZADD".into(),
            "{k}".into(),
            NOW.to_string(),
            "m".into(),
        ]]));
    }
    poisons
}

/// Values of the right shape but out of range for `rule` at NOW (a period of one minute).
fn out_of_range(algorithm: Algorithm) -> Vec<Poison> {
    let minute = 60_000_000;
    let ahead = |d: u64| (NOW + d).to_string();
    match algorithm {
        Algorithm::TokenBucket => vec![
            value("T 1 inf"),
            value("T 1 nan"),
            value("T 1 -5"),
            value(format!("T {NOW} inf")),
            value(format!("T {NOW} -inf")),
            value(format!("T {NOW} nan")),
            value(format!("T {NOW} -5")),
            value(format!("T {NOW} 1e400")),
            value(format!("T {NOW} 99999999999")),
            value("T 99999999999999999999 0"),
            value(format!("T {} 0", ahead(HOUR + 1))),
            value("T 1"),
            value("T x 1"),
            value("garbage"),
        ],
        Algorithm::FixedWindow => vec![
            value("F 99999999999999999999999 0"),
            value("F 1 99999999999"),
            value(format!("F {} 99999999999", ahead(1_000))),
            value(format!("F {} 0", ahead(minute + HOUR + 1))),
            value(format!("F {} 1 2", ahead(1_000))),
            value("F -1 1"),
            value("garbage"),
        ],
        Algorithm::SlidingWindow => vec![
            value("S 99999999999999999999999 0 0"),
            value(format!("S {} 99999999999 0", ahead(minute))),
            value(format!("S {} 0 99999999999", ahead(minute))),
            value(format!("S {} 1 1", ahead(2 * minute + HOUR + 1))),
            value("S 1 1"),
            value("garbage"),
        ],
        _ => {
            let zadd = |score: &str, member: &str| {
                vec!["ZADD".into(), "{k}".into(), score.into(), member.into()]
            };
            let at = |d: u64| (NOW + d).to_string();
            let one = |cmds: &[(&str, &str)]| {
                Poison::Commands(cmds.iter().map(|(score, m)| zadd(score, m)).collect())
            };
            vec![
                one(&[("inf", "0000000000000001:1")]),
                one(&[("-inf", "0000000000000001:1")]),
                one(&[
                    (&at(0), "0000000000000001:1"),
                    ("+inf", "0000000000000002:1"),
                ]),
                one(&[(&at(HOUR + 1), "0000000000000001:1")]),
                one(&[(&format!("{NOW}.5"), "0000000000000001:1")]),
                // Four live units where the limit is 3.
                one(&[(&at(0), "0000000000000004:4")]),
                // Members this script does not write, or inconsistent ones.
                one(&[(&at(0), &format!("{NOW}-1"))]),
                one(&[(&at(0), "0000000000000001:5")]),
                one(&[(&at(0), "0000000000000001:0")]),
                one(&[(&at(0), "9999999999999999:1")]),
                one(&[
                    (&(NOW - 1_000).to_string(), "0000000000000009:1"),
                    (&at(0), "0000000000000002:1"),
                ]),
            ]
        }
    }
}

impl Fixture {
    fn poison(&mut self, key: &str, poison: &Poison) {
        match poison {
            Poison::Value(v) => self.cmd(&["SET", key, v]),
            Poison::Commands(cmds) => {
                for c in cmds {
                    let args: Vec<&str> = c
                        .iter()
                        .map(|a| if a == "{k}" { key } else { a.as_str() })
                        .collect();
                    self.cmd(&args);
                }
            }
        }
        assert_eq!(self.pttl(key), -1, "the poisoned key has no TTL");
    }
}

fn describe(poison: &Poison) -> String {
    match poison {
        Poison::Value(v) => format!("{v:?}"),
        Poison::Commands(c) => format!("{c:?}"),
    }
}

#[test]
fn poisoned_keys_read_as_no_state_and_heal() {
    let mut f = Fixture::start();
    for algorithm in Algorithm::ALL {
        let rule = rule("3/minute", algorithm);
        let exhausted = self::rule("1/hour", Algorithm::FixedWindow);
        let poisons: Vec<Poison> = out_of_range(algorithm)
            .into_iter()
            .chain(other_types(algorithm))
            .collect();
        for poison in &poisons {
            let what = format!("{algorithm} {}", describe(poison));
            let memory = MemoryStore::default();

            // A peek writes nothing: the key goes.
            let key = fresh_key(&rule);
            f.poison(&key, poison);
            let peek = f.decide(&memory, &[(&rule, &key)], 1, Mode::Peek);
            assert_eq!((peek[0].allowed, peek[0].remaining), (true, 3), "{what}");
            assert_eq!(f.pttl(&key), -2, "{what}: kept after a peek");

            // A cost above the capacity is denied at once: the key goes.
            f.poison(&key, poison);
            let never = f.decide(&memory, &[(&rule, &key)], 4, Mode::Hit);
            assert_eq!(
                (never[0].allowed, never[0].retry_after),
                (false, None),
                "{what}"
            );
            assert_eq!(f.pttl(&key), -2, "{what}: kept after a denial");

            // Another rule denies: nothing is written, the key goes.
            let other = fresh_key(&exhausted);
            f.decide(&memory, &[(&exhausted, &other)], 1, Mode::Hit);
            f.poison(&key, poison);
            let denied = f.decide(
                &memory,
                &[(&rule, &key), (&exhausted, &other)],
                1,
                Mode::Hit,
            );
            assert!(denied[0].allowed && !denied[1].allowed, "{what}");
            assert_eq!(f.pttl(&key), -2, "{what}: kept after another rule denied");

            // An admitting hit overwrites it with a fresh state, which then counts.
            f.poison(&key, poison);
            let hit = f.decide(&memory, &[(&rule, &key)], 2, Mode::Hit);
            assert_eq!((hit[0].allowed, hit[0].remaining), (true, 1), "{what}");
            assert!(f.pttl(&key) > 0, "{what}: no TTL after an admitting hit");
            let expected = if algorithm == Algorithm::SlidingLog {
                "zset"
            } else {
                "string"
            };
            assert_eq!(f.key_type(&key), expected, "{what}");
            let next = f.decide(&memory, &[(&rule, &key)], 2, Mode::Hit);
            assert!(!next[0].allowed, "{what}: the fresh state does not count");
        }
    }
    let slow: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut f.con).unwrap();
    assert_eq!(slow, 0);
    assert_eq!(f.server.cmd(&["PING"]).unwrap(), "PONG");
}

/// The cluster's refund path reads state the same way: a poisoned key is deleted, not refunded
/// into (nor is the script failing on it).
#[test]
fn refunds_delete_poisoned_keys() {
    let mut f = Fixture::start();
    for algorithm in Algorithm::ALL {
        let rule = rule("3/minute", algorithm);
        let code = match algorithm {
            Algorithm::FixedWindow => "fw",
            Algorithm::TokenBucket => "tb",
            Algorithm::SlidingLog => "sl",
            _ => "sw",
        };
        for poison in out_of_range(algorithm) {
            let key = fresh_key(&rule);
            f.poison(&key, &poison);
            let refunded: i64 = redis::cmd("EVAL")
                .arg(REFUND_SOURCE)
                .arg(1)
                .arg(&key)
                .arg(NOW)
                .arg(code)
                .arg(rule.count())
                .arg(rule.period_micros())
                .arg(rule.capacity())
                .arg(1)
                .query(&mut f.con)
                .unwrap_or_else(|e| panic!("{algorithm} {}: {e}", describe(&poison)));
            assert_eq!(refunded, 1);
            assert_eq!(f.pttl(&key), -2, "{algorithm} {}", describe(&poison));
        }
    }
}
