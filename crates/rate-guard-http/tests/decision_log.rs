//! The decision log's sampling and identities, tested once for both fronts (the tower layer
//! and the Python package only format its records): bursts, steady and fractional rates, 0,
//! suppressed counts, the cap on rules, identity modes, salts. A manual clock: no sleep.

use std::sync::Arc;
use std::time::Duration;

use rate_guard_core::{
    Algorithm, Degradation, Limiter, ManualClock, MemoryStore, Quota, Rule, Timestamp,
};
use rate_guard_http::{
    DecisionKind, DecisionLog, Denial, Front, Identities, Limit, Peer, Record, RequestInfo,
    SuppressedRecord, MAX_LOGGED_RULES,
};

fn new_log(per_second: f64) -> (DecisionLog, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let log = DecisionLog::new(per_second, Identities::Raw, None, Arc::new(clock.clone())).unwrap();
    (log, clock)
}

fn denial(rule: &str) -> Denial<'_> {
    Denial::new(Some(rule), DecisionKind::Blocked, 429).identity(Some("ip:192.0.2.7"))
}

/// The `suppressed` of each record `n` denials of `rule` give now.
fn burst(log: &DecisionLog, rule: &str, n: usize) -> Vec<u64> {
    (0..n)
        .filter_map(|_| log.denial(&denial(rule)))
        .map(|r| r.suppressed)
        .collect()
}

#[test]
fn a_burst_logs_a_seconds_worth_and_counts_the_rest_in_the_next_record() {
    let (log, clock) = new_log(5.0);
    assert_eq!(burst(&log, "login", 100), [0; 5]); // an attack: 100 in one instant
    clock.advance(Duration::from_secs(1));
    assert_eq!(burst(&log, "login", 10), [95, 0, 0, 0, 0]);
    // Per rule: another rule has its own bucket.
    assert_eq!(burst(&log, "search", 7), [0; 5]);
}

#[test]
fn a_steady_flood_is_logged_at_the_rate() {
    let (log, clock) = new_log(4.0);
    let mut records = 0;
    let mut counted = 0;
    for _ in 0..100 {
        // One denial every 100 ms for 10 s.
        if let Some(r) = log.denial(&denial("api")) {
            records += 1;
            counted += r.suppressed;
        }
        clock.advance(Duration::from_millis(100));
    }
    // Four at once, then one per 250 ms over the 9.9 s that follow.
    assert_eq!(records, 4 + 39);
    clock.advance(Duration::from_secs(1));
    let pending = log.flush().iter().map(|r| r.suppressed).sum::<u64>();
    assert_eq!(records + counted + pending, 100);
}

#[test]
fn fractional_rates_do_not_drift() {
    // One record every ten seconds, exactly, over a thousand seconds.
    let (log, clock) = new_log(0.1);
    let mut logged = Vec::new();
    for second in 0..1_000 {
        if let Some(r) = log.denial(&denial("slow")) {
            logged.push((second, r.suppressed));
        }
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(logged.len(), 100);
    assert!(logged
        .iter()
        .enumerate()
        .all(|(i, &(s, n))| s == i * 10 && n == if i == 0 { 0 } else { 9 }));
    // 2.5 a second: two at once (the bucket holds 2.5), then one per 400 ms.
    let (log, clock) = new_log(2.5);
    assert_eq!(burst(&log, "r", 10), [0, 0]);
    clock.advance(Duration::from_secs(1));
    assert_eq!(burst(&log, "r", 5), [8, 0]);
    clock.advance(Duration::from_millis(400));
    assert_eq!(burst(&log, "r", 1), [3]);
}

#[test]
fn zero_logs_nothing_and_counts_nothing() {
    let (log, clock) = new_log(0.0);
    assert!(burst(&log, "r", 10).is_empty());
    clock.advance(Duration::from_secs(5));
    assert!(log.flush().is_empty());
}

#[test]
fn suppressed_counts_of_a_quiet_rule_are_reported_once_a_second_later() {
    let (log, clock) = new_log(1.0);
    assert_eq!(burst(&log, "login", 4), [0]);
    assert!(log.flush().is_empty()); // its last record is not a second old
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        log.flush(),
        [SuppressedRecord {
            rule: Some("login".to_owned()),
            rule_name: Some("login".to_owned()),
            route: None,
            suppressed: 3,
        }]
    );
    assert!(log.flush().is_empty()); // reported once
}

#[test]
fn the_rules_tracked_are_capped() {
    let (log, clock) = new_log(1.0);
    let rules: Vec<String> = (0..MAX_LOGGED_RULES).map(|i| format!("r{i}")).collect();
    for rule in &rules {
        assert_eq!(burst(&log, rule, 1), [0]);
    }
    // Every tracked rule has just logged: two more rules share one bucket.
    assert_eq!(burst(&log, "extra1", 1), [0]);
    assert_eq!(burst(&log, "extra2", 1), Vec::<u64>::new());
    clock.advance(Duration::from_secs(1));
    // A second later the tracked rules are idle, so forgotten: a new rule has its own bucket.
    assert_eq!(burst(&log, "extra3", 2), [0]);
    let pending = log.flush();
    assert!(pending.contains(&SuppressedRecord {
        rule: None,
        rule_name: Some("extra1".to_owned()),
        route: None,
        suppressed: 1,
    }));
    // ... and so does a rule seen before the cap, with what it had left out.
    assert_eq!(burst(&log, "r0", 1), [0]);
}

#[test]
fn identities_are_hashed_with_a_key_raw_or_omitted() {
    let clock = || Arc::new(ManualClock::default());
    let hashed = |salt| DecisionLog::new(1.0, Identities::Hashed, salt, clock()).unwrap();
    let a = hashed(Some("pepper"))
        .render_identity("ip:203.0.113.9")
        .unwrap();
    // The digest Python's hashlib gives for this key and identity:
    // blake2b(b"ip:203.0.113.9", key=blake2b(b"pepper", digest_size=32).digest(), digest_size=8)
    assert_eq!(a, "76002f85d6a2f48b");
    let salted = hashed(Some("pepper"));
    assert_ne!(salted.render_identity("ip:203.0.113.8").unwrap(), a);
    assert_ne!(
        hashed(Some("salt"))
            .render_identity("ip:203.0.113.9")
            .unwrap(),
        a
    );
    // No salt: a random key, the same for every log of the process.
    let random = hashed(None).render_identity("ip:203.0.113.9").unwrap();
    assert_eq!(
        hashed(None).render_identity("ip:203.0.113.9").unwrap(),
        random
    );
    // (Hex digits may spell "203" by chance, about one run in 300; never "203.0".)
    assert!(random != a && random.len() == 16 && !random.contains("203.0"));

    let raw = DecisionLog::new(1.0, Identities::Raw, None, clock()).unwrap();
    assert_eq!(
        raw.render_identity("ip:1.2.3.4").as_deref(),
        Some("ip:1.2.3.4")
    );
    let omit = DecisionLog::new(1.0, Identities::Omit, None, clock()).unwrap();
    assert_eq!(omit.render_identity("ip:1.2.3.4"), None);
    let record = omit.denial(&denial("r")).unwrap();
    assert_eq!(record.identity, None);
}

#[test]
fn bad_settings_are_named() {
    for bad in [-1.0, 1_000_001.0, f64::NAN, f64::INFINITY] {
        let err = DecisionLog::new(bad, Identities::Raw, None, Arc::new(ManualClock::default()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("log_denials_per_second") && err.contains("0 to 1000000"),
            "{err}"
        );
    }
    let err = "plain".parse::<Identities>().unwrap_err().to_string();
    assert!(
        err.contains("log_identities") && err.contains("plain"),
        "{err}"
    );
    assert_eq!("omit".parse::<Identities>().unwrap(), Identities::Omit);
}

#[test]
fn an_outcome_gives_structured_records_without_parsing_ids() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_040));
    let rule = |limit: &str, name: &str| {
        Rule::builder(limit.parse::<Quota>().unwrap())
            .algorithm(Algorithm::FixedWindow)
            .name(name)
            .build()
            .unwrap()
    };
    let front = Front::builder()
        .global(Limit::new(rule("1/minute", "watch")).shadow(true))
        .build()
        .unwrap();
    let route = front
        .route("/items/{id}", None, [Limit::new(rule("2/minute", "items"))])
        .unwrap();
    let limiter = Limiter::builder()
        .shared_store(Arc::new(MemoryStore::builder().build().unwrap()))
        .clock(clock.clone())
        .degradation(Degradation::default().deny_cache_size(0))
        .build()
        .unwrap();
    let log = DecisionLog::new(10.0, Identities::Raw, None, Arc::new(clock)).unwrap();
    let headers: [(&[u8], &[u8]); 0] = [];
    let plan = front.plan(
        &RequestInfo::new(Peer::parse(Some("198.51.100.4")), &headers[..]),
        Some(&route),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut records = Vec::new();
    for _ in 0..3 {
        let outcome = runtime.block_on(front.decide(&limiter, &plan));
        records.extend(log.outcome(&outcome, &plan, |_| Some(&route)));
    }
    let denials: Vec<_> = records
        .iter()
        .map(|r| match r {
            Record::Denial(d) => d,
            Record::Suppressed(s) => panic!("{s:?}"),
        })
        .collect();
    // The second request: the shadow rule would have denied; the third: the route rule denies.
    let [shadow, blocked] = denials[..] else {
        panic!("{denials:?}")
    };
    assert_eq!(shadow.decision, DecisionKind::ShadowBlocked);
    assert_eq!(
        (
            shadow.rule.as_deref(),
            shadow.rule_name.as_deref(),
            shadow.status
        ),
        (Some("watch"), Some("watch"), 200)
    );
    assert_eq!(shadow.route.as_deref(), Some("/items/{id}"));
    assert_eq!(shadow.limit, None);
    let scoped = route.limits()[0].rule().id();
    assert_eq!(blocked.decision, DecisionKind::Blocked);
    assert_eq!(blocked.event, "rate_limited");
    assert_eq!(blocked.rule.as_deref(), Some(scoped));
    assert_eq!(blocked.rule_name.as_deref(), Some("items")); // as declared, not parsed
    assert_eq!(blocked.route.as_deref(), Some("/items/{id}"));
    assert_eq!(blocked.identity.as_deref(), Some("ip:198.51.100.4"));
    assert_eq!(
        (blocked.status, blocked.limit, blocked.remaining),
        (429, Some(2), Some(0))
    );
    assert!(blocked.retry_after.is_some_and(|s| s > 0.0));
    assert_eq!((blocked.source, blocked.degraded), (Some("store"), false));
}
