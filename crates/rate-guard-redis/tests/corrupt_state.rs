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
use rate_guard_redis::test_support::REFUND_SOURCE;
use rate_guard_redis::RedisStore;
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
    Value(Vec<u8>),
    Commands(Vec<Vec<String>>),
    /// Sorted-set members (score, member) written with ZADD.
    Members(Vec<(String, Vec<u8>)>),
}

/// A sliding log's binary member of the first binary format: a tag byte, cum and cost,
/// big-endian (read still, with its score).
fn member(tag: u8, cum: i64, cost: u32) -> Vec<u8> {
    [&[tag][..], &cum.to_be_bytes(), &cost.to_be_bytes()].concat()
}

/// A sliding log's member (`lua/sliding_log.lua`): a tag byte, its time, cum and cost,
/// big-endian.
fn timed(tag: u8, at: i64, cum: i64, cost: u32) -> Vec<u8> {
    [
        &[tag][..],
        &at.to_be_bytes(),
        &cum.to_be_bytes(),
        &cost.to_be_bytes(),
    ]
    .concat()
}

/// A value of the text format before issue 13 (still read: lua/common.lua), or garbage.
fn value(v: impl Into<String>) -> Poison {
    Poison::Value(v.into().into_bytes())
}

/// The binary states of lua/*.lua (little-endian, as `struct.pack` writes them).
fn fixed(window_end: i64, count: u32) -> Vec<u8> {
    [&window_end.to_le_bytes()[..], &count.to_le_bytes()].concat()
}

fn bucket(at: i64, debt: f64) -> Vec<u8> {
    [at.to_le_bytes(), debt.to_le_bytes()].concat()
}

fn sliding(expires_at: i64, current: u32, previous: u32) -> Vec<u8> {
    [
        &expires_at.to_le_bytes()[..],
        &current.to_le_bytes(),
        &previous.to_le_bytes(),
    ]
    .concat()
}

/// A binary value, whole or cut to `len` bytes, or with bytes added.
fn binary(mut v: Vec<u8>, len: usize) -> Poison {
    v.resize(len, 7);
    Poison::Value(v)
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

/// Values of the right shape but out of range for `rule` at NOW (a period of one minute), in
/// both encodings, or not of a state at all.
fn out_of_range(algorithm: Algorithm) -> Vec<Poison> {
    let mut poisons = text_out_of_range(algorithm);
    poisons.extend(binary_out_of_range(algorithm));
    poisons
}

/// [`out_of_range`] in the text encoding before issue 13 (read still), and garbage.
fn text_out_of_range(algorithm: Algorithm) -> Vec<Poison> {
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

/// [`out_of_range`] in the binary encodings of `lua/*.lua`: NaN and infinite doubles, huge,
/// negative or far-ahead times, values truncated or longer than a state.
fn binary_out_of_range(algorithm: Algorithm) -> Vec<Poison> {
    let minute = 60_000_000;
    let at = |d: u64| i64::try_from(NOW + d).unwrap();
    let now = at(0);
    match algorithm {
        Algorithm::TokenBucket => vec![
            binary(bucket(now, f64::NAN), 16),
            binary(bucket(now, f64::INFINITY), 16),
            binary(bucket(now, f64::NEG_INFINITY), 16),
            binary(bucket(now, -5.0), 16),
            binary(bucket(now, 1e300), 16),
            binary(bucket(now, 99_999_999_999.0), 16),
            binary(bucket(i64::MAX, 0.0), 16),
            binary(bucket(at(HOUR + 1), 0.0), 16),
            binary(bucket(-1, 1e300), 16),
            // Truncated, or longer: neither binary nor text.
            binary(bucket(now, 1.0), 15),
            binary(bucket(now, 1.0), 8),
            binary(bucket(now, 1.0), 17),
            binary(Vec::new(), 16),
        ],
        Algorithm::FixedWindow => vec![
            binary(fixed(i64::MAX, 0), 12),
            binary(fixed(i64::MIN, 1), 12),
            binary(fixed(-1, 1), 12),
            binary(fixed(at(minute + HOUR + 1), 0), 12),
            binary(fixed(now, 1), 12),
            binary(fixed(at(1_000), 1), 11),
            binary(fixed(at(1_000), 1), 4),
            binary(fixed(at(1_000), 1), 13),
            binary(fixed(at(1_000), 1), 16),
        ],
        Algorithm::SlidingWindow => vec![
            binary(sliding(i64::MAX, 0, 0), 16),
            binary(sliding(i64::MIN, 1, 1), 16),
            binary(sliding(-1, 1, 1), 16),
            binary(sliding(at(2 * minute + HOUR + 1), 1, 1), 16),
            binary(sliding(now, 1, 1), 16),
            binary(sliding(at(minute), 1, 1), 15),
            binary(sliding(at(minute), 1, 1), 12),
            binary(sliding(at(minute), 1, 1), 17),
        ],
        _ => {
            let at = |d: u64| (NOW + d).to_string();
            vec![
                // Binary members that this script does not write: another tag, a cost of
                // zero or above the cum, a cum above 2^52, four live units where the limit is
                // 3, truncated or longer members, an older member with a greater cum.
                Poison::Members(vec![(at(0), member(254, 1, 1))]),
                Poison::Members(vec![(at(0), member(255, 1, 0))]),
                Poison::Members(vec![(at(0), member(255, 1, 2))]),
                Poison::Members(vec![(at(0), member(255, -1, 1))]),
                Poison::Members(vec![(at(0), member(255, 1 << 53, 1))]),
                Poison::Members(vec![(at(0), member(255, 4, 4))]),
                Poison::Members(vec![(at(0), member(255, 1, 1)[..12].to_vec())]),
                Poison::Members(vec![(at(0), [member(255, 1, 1), vec![0]].concat())]),
                Poison::Members(vec![
                    ((NOW - 1_000).to_string(), member(255, 9, 1)),
                    (at(0), member(255, 2, 1)),
                ]),
                Poison::Members(vec![("inf".into(), member(255, 1, 1))]),
                // The same for members that carry their time.
                Poison::Members(vec![(at(0), timed(254, now, 1, 1))]),
                Poison::Members(vec![(at(0), timed(255, now, 1, 0))]),
                Poison::Members(vec![(at(0), timed(255, now, 1, 2))]),
                Poison::Members(vec![(at(0), timed(255, now, -1, 1))]),
                Poison::Members(vec![(at(0), timed(255, now, 1 << 53, 1))]),
                Poison::Members(vec![(at(0), timed(255, now, 4, 4))]),
                Poison::Members(vec![(at(0), timed(255, i64::MAX, 1, 1))]),
                Poison::Members(vec![(at(0), timed(255, i64::MIN, 1, 1))]),
                Poison::Members(vec![(at(HOUR + 1), timed(255, now + 3_600_000_001, 1, 1))]),
                Poison::Members(vec![(at(0), timed(255, now, 1, 1)[..20].to_vec())]),
                Poison::Members(vec![(at(0), [timed(255, now, 1, 1), vec![0]].concat())]),
                Poison::Members(vec![
                    ((NOW - 1_000).to_string(), timed(255, now - 1_000, 9, 1)),
                    (at(0), timed(255, now, 2, 1)),
                ]),
            ]
        }
    }
}

impl Fixture {
    fn poison(&mut self, key: &str, poison: &Poison) {
        match poison {
            Poison::Value(v) => {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(v.as_slice())
                    .query(&mut self.con)
                    .unwrap();
            }
            Poison::Members(members) => {
                for (score, m) in members {
                    let _: i64 = redis::cmd("ZADD")
                        .arg(key)
                        .arg(score)
                        .arg(m.as_slice())
                        .query(&mut self.con)
                        .unwrap();
                }
            }
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
        Poison::Value(v) => format!("{:?}", String::from_utf8_lossy(v)),
        Poison::Commands(c) => format!("{c:?}"),
        Poison::Members(m) => format!("{m:?}"),
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

/// A state written by the text format before issue 13 ("F <end> <count>", "T <at> <debt>",
/// "S <expiry> <current> <previous>") met after an upgrade is read: it counts as the same
/// state in the memory store does, and the next admitting hit rewrites it in binary.
#[test]
fn states_of_the_previous_text_format_still_count() {
    let mut f = Fixture::start();
    let minute = 60_000_000;
    let start = NOW - NOW % minute;
    for (algorithm, text, len) in [
        (
            Algorithm::FixedWindow,
            format!("F {} 2", start + minute),
            12,
        ),
        // Two requests at NOW: a debt of two intervals of 20 s.
        (Algorithm::TokenBucket, format!("T {NOW} 40000000"), 16),
        (
            Algorithm::SlidingWindow,
            format!("S {} 2 0", start + 2 * minute),
            16,
        ),
    ] {
        let rule = rule("3/minute", algorithm);
        let memory = MemoryStore::default();
        let key = fresh_key(&rule);
        // The memory store sees the two requests the text state holds.
        let request = |cost| {
            let checks = [Check {
                rule: &rule,
                key: &key,
                cost: NonZeroU32::new(cost).unwrap(),
            }];
            memory
                .decide_now(Request {
                    checks: &checks,
                    mode: Mode::Hit,
                    now: Some(Timestamp::from_micros(NOW)),
                })
                .unwrap();
        };
        request(2);
        f.cmd(&["SET", &key, &text, "PX", "600000"]);
        let hit = f.decide(&memory, &[(&rule, &key)], 1, Mode::Hit);
        assert_eq!((hit[0].allowed, hit[0].remaining), (true, 0), "{algorithm}");
        let stored: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut f.con).unwrap();
        assert_eq!(stored.len(), len, "{algorithm}: rewritten in binary");
        let next = f.decide(&memory, &[(&rule, &key)], 1, Mode::Hit);
        assert!(!next[0].allowed, "{algorithm}");
    }
}

/// A sliding log of the previous formats (text members "<cum>:<cost>", read with their scores)
/// keeps counting after an upgrade, members that carry their time joining it.
#[test]
fn sliding_logs_of_the_previous_format_still_count() {
    let mut f = Fixture::start();
    let rule = rule("3/minute", Algorithm::SlidingLog);
    let memory = MemoryStore::default();
    let key = fresh_key(&rule);
    let checks = [Check {
        rule: &rule,
        key: &key,
        cost: NonZeroU32::new(2).unwrap(),
    }];
    memory
        .decide_now(Request {
            checks: &checks,
            mode: Mode::Hit,
            now: Some(Timestamp::from_micros(NOW - 1_000)),
        })
        .unwrap();
    let score = (NOW - 1_000).to_string();
    f.cmd(&["ZADD", &key, &score, "0000000000000002:2"]);
    f.cmd(&["PEXPIRE", &key, "600000"]);
    let hit = f.decide(&memory, &[(&rule, &key)], 1, Mode::Hit);
    assert_eq!((hit[0].allowed, hit[0].remaining), (true, 0));
    let newest: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(-1)
        .arg(-1)
        .query(&mut f.con)
        .unwrap();
    assert_eq!(newest[0].len(), 21, "the new member carries its time");
    let next = f.decide(&memory, &[(&rule, &key)], 1, Mode::Hit);
    assert!(!next[0].allowed);
    assert!(next[0].retry_after.is_some());
}

/// A valid state without a TTL (written by hand, or left by `PERSIST`) counts as the state it
/// is; an admitting hit gives it a TTL again, and once it has expired any request deletes it.
#[test]
fn a_valid_state_without_a_ttl_counts_and_heals() {
    let mut f = Fixture::start();
    for algorithm in [
        Algorithm::FixedWindow,
        Algorithm::TokenBucket,
        Algorithm::SlidingWindow,
        Algorithm::SlidingLog,
    ] {
        let rule = rule("3/minute", algorithm);
        let memory = MemoryStore::default();
        let key = fresh_key(&rule);
        f.decide(&memory, &[(&rule, &key)], 1, Mode::Hit);
        f.cmd(&["PERSIST", &key]);
        assert_eq!(f.pttl(&key), -1);
        let peek = f.decide(&memory, &[(&rule, &key)], 1, Mode::Peek);
        assert_eq!(peek[0].remaining, 2, "{algorithm}");
        let hit = f.decide(&memory, &[(&rule, &key)], 1, Mode::Hit);
        assert_eq!(hit[0].remaining, 1, "{algorithm}");
        assert!(
            f.pttl(&key) > 0,
            "{algorithm}: no TTL after an admitting hit"
        );

        // Persisted again, and met after it has expired (two periods later): it reads as none
        // and a peek deletes it.
        f.cmd(&["PERSIST", &key]);
        let later = NOW + 2 * rule.period_micros() + 1;
        let checks = [Check {
            rule: &rule,
            key: &key,
            cost: NonZeroU32::new(1).unwrap(),
        }];
        let request = Request {
            checks: &checks,
            mode: Mode::Peek,
            now: Some(Timestamp::from_micros(later)),
        };
        let decision = f.rt.block_on(f.redis.decide(request)).unwrap();
        assert_eq!(decision.rules()[0].remaining, 3, "{algorithm}");
        assert_eq!(
            f.pttl(&key),
            -2,
            "{algorithm}: an expired state kept after a peek"
        );
    }
}
