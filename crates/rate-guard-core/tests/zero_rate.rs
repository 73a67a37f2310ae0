//! A rate of 0 (`"0/minute"`): the limiter refuses every request it applies to without the
//! rule reaching a store; the other rules of the request are only peeked, nothing consumed.

use std::sync::{Arc, Mutex};

use rate_guard_core::{
    parse_rates, Action, Algorithm, BoxFuture, Hit, Limiter, ManualClock, MemoryStore, Mode, Quota,
    Request, Rule, Store, StoreError, Timestamp, Verdict,
};

/// A remote-looking memory store that records what each call asked.
#[derive(Debug)]
struct Recording {
    inner: MemoryStore,
    calls: Mutex<Vec<(Mode, Vec<String>)>>,
}

impl Recording {
    fn record(&self, request: &Request<'_>) {
        let keys = request.checks.iter().map(|c| c.key.to_owned()).collect();
        self.calls.lock().unwrap().push((request.mode, keys));
    }
}

impl Store for Recording {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        self.record(&request);
        self.inner.decide(request)
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.reset(keys)
    }

    fn is_remote(&self) -> bool {
        true
    }
}

fn zero(limit: &str, algorithm: Algorithm) -> Rule {
    Rule::builder_of(parse_rates(limit).unwrap()[0])
        .algorithm(algorithm)
        .build()
        .unwrap()
}

fn rule(limit: &str) -> Rule {
    Rule::builder(limit.parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .build()
        .unwrap()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn setup() -> (Arc<Recording>, Limiter) {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_040));
    let store = Arc::new(Recording {
        inner: MemoryStore::builder().clock(clock.clone()).build().unwrap(),
        calls: Mutex::new(Vec::new()),
    });
    let limiter = Limiter::builder()
        .shared_store(store.clone())
        .clock(clock)
        .build()
        .unwrap();
    (store, limiter)
}

#[test]
fn a_zero_rule_alone_never_reaches_the_store() {
    for algorithm in Algorithm::ALL {
        let (store, limiter) = setup();
        let blocked = zero("0/minute", algorithm);
        let hits = [Hit::new(&blocked, "ip:1", 1.try_into().unwrap())];
        for action in [Action::Hit, Action::Peek, Action::Shadow] {
            let verdict = block_on(limiter.decide(&hits, action)).unwrap();
            assert!(!verdict.allowed(), "{algorithm}");
            let d = verdict.decision();
            assert_eq!((d.limit, d.remaining), (0, 0));
            assert_eq!((d.reset_after.as_secs(), d.retry_after), (0, None));
            let now = limiter.decide_now(&hits, action);
            // The store is "remote": decide_now defers only when a store call is needed.
            assert_eq!(now.map(|v| v.unwrap()), Some(verdict));
        }
        assert!(store.calls.lock().unwrap().is_empty(), "{algorithm}");
    }
}

#[test]
fn the_other_rules_are_peeked_and_consume_nothing() {
    let (store, limiter) = setup();
    let (blocked, open) = (zero("0/hour", Algorithm::SlidingWindow), rule("5/minute"));
    let cost = 1.try_into().unwrap();
    let both = [
        Hit::new(&open, "ip:1", cost),
        Hit::new(&blocked, "ip:1", cost),
    ];
    for _ in 0..10 {
        let verdict = block_on(limiter.decide(&both, Action::Hit)).unwrap();
        assert!(!verdict.allowed());
        assert_eq!(verdict.deciding_rule(), 1);
        // The open rule as it stands: untouched.
        assert!(verdict.rules()[0].allowed);
        assert_eq!(verdict.rules()[0].remaining, 5);
    }
    let calls = store.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 10);
    for (mode, keys) in calls {
        assert_eq!(mode, Mode::Peek);
        assert_eq!(keys.len(), 1);
        assert!(!keys[0].contains(".0."), "{keys:?}");
    }
    // The open rule alone still has its whole quota.
    let alone = [Hit::new(&open, "ip:1", cost)];
    let verdict = block_on(limiter.decide(&alone, Action::Hit)).unwrap();
    assert_eq!(verdict.decision().remaining, 4);
}
