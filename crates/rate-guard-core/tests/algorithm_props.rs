//! Property tests of DESIGN §2, per algorithm, over a `ManualClock` and the `MemoryStore`.

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use common::{any_rule, config, rule, small_rule, steps, Step, START_MICROS};
use proptest::prelude::*;
use rate_guard_core::{
    algorithm, Algorithm, Check, Clock, Decision, ManualClock, MemoryStore, Mode, Request, Rule,
    State, Timestamp,
};

/// What happened at one step of a timeline.
#[derive(Debug, Clone, Copy)]
struct Event {
    at: u64,
    cost: u32,
    decision: Decision,
}

fn cost(rule: &Rule, step: &Step) -> u32 {
    // Mostly admissible costs, sometimes more than the rule can ever admit.
    step.cost.min(rule.capacity().saturating_add(1))
}

/// Plays `steps` on a memory store driven by a manual clock.
fn play(rule: &Rule, steps: &[Step]) -> Vec<Event> {
    let clock = ManualClock::new(Timestamp::from_micros(START_MICROS));
    let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    steps
        .iter()
        .map(|step| {
            clock.advance(step.advance(rule));
            let cost = cost(rule, step);
            let check = [Check {
                rule,
                key: "k",
                cost: NonZeroU32::new(cost).unwrap(),
            }];
            let verdict = store.decide_now(Request::hit(&check)).unwrap();
            Event {
                at: clock.now().as_micros(),
                cost,
                decision: verdict.decision(),
            }
        })
        .collect()
}

fn admitted(events: &[Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter(|e| e.decision.allowed)
        .map(|e| (e.at, u64::from(e.cost)))
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fixed_window_admits_at_most_limit_per_window(rule in rule(Algorithm::FixedWindow), steps in steps(120)) {
        let period = rule.period_micros();
        let mut per_window = std::collections::HashMap::<u64, u64>::new();
        for (at, cost) in admitted(&play(&rule, &steps)) {
            *per_window.entry(at / period).or_default() += cost;
        }
        for (window, total) in per_window {
            prop_assert!(total <= u64::from(rule.count()), "window {window}: {total} > {}", rule.count());
        }
    }

    #[test]
    fn sliding_window_admits_at_most_limit_per_window_and_twice_limit_per_period(
        rule in rule(Algorithm::SlidingWindow), steps in steps(120)
    ) {
        let period = rule.period_micros();
        let limit = u64::from(rule.count());
        let admitted = admitted(&play(&rule, &steps));
        let mut per_window = std::collections::HashMap::<u64, u64>::new();
        for &(at, cost) in &admitted {
            *per_window.entry(at / period).or_default() += cost;
        }
        prop_assert!(per_window.values().all(|&total| total <= limit));
        for (i, &(start, _)) in admitted.iter().enumerate() {
            let total: u64 = admitted[i..].iter().take_while(|(t, _)| *t < start + period).map(|(_, c)| c).sum();
            prop_assert!(total <= 2 * limit);
        }
    }

    #[test]
    fn sliding_log_admits_at_most_limit_in_any_period(rule in rule(Algorithm::SlidingLog), steps in steps(160)) {
        let period = rule.period_micros();
        let admitted = admitted(&play(&rule, &steps));
        // The busiest interval [a, a + period) starts at an admission.
        for (i, &(start, _)) in admitted.iter().enumerate() {
            let total: u64 = admitted[i..].iter().take_while(|(t, _)| *t < start + period).map(|(_, c)| c).sum();
            prop_assert!(total <= u64::from(rule.count()), "from {start}: {total}");
        }
    }

    #[test]
    fn token_bucket_admits_at_most_burst_plus_rate_times_t(rule in rule(Algorithm::TokenBucket), steps in steps(160)) {
        let admitted = admitted(&play(&rule, &steps));
        let rate = f64::from(rule.count()) / rule.period_micros() as f64;
        for i in 0..admitted.len() {
            let mut total = 0u64;
            for &(at, cost) in &admitted[i..] {
                total += cost;
                let t = (at - admitted[i].0) as f64;
                let bound = f64::from(rule.capacity()) + rate * t;
                // The predicate tolerates a millionth of a token of rounding.
                prop_assert!(total as f64 <= bound + 1e-6, "{total} admitted in {t}µs, bound {bound}");
            }
        }
    }

    #[test]
    fn waiting_retry_after_is_enough_and_not_more_than_needed(rule in any_rule(), steps in steps(80)) {
        let mut state: Option<State> = None;
        let mut now = START_MICROS;
        for step in &steps {
            now += step.advance(&rule).as_micros() as u64;
            let cost = cost(&rule, step);
            let (d, next) = algorithm::evaluate(&rule, state.as_ref(), Timestamp::from_micros(now), cost);
            if let Some(wait) = d.retry_after {
                prop_assert!(!d.allowed);
                let wait = wait.as_micros() as u64;
                prop_assert!(wait > 0);
                let at = |t: u64| algorithm::decide(&rule, state.as_ref(), Timestamp::from_micros(t), cost);
                prop_assert!(at(now + wait).allowed, "not admitted after retry_after {wait}µs: {d:?}");
                prop_assert!(!at(now + wait - 1).allowed, "admitted before retry_after {wait}µs");
                // The header value (whole seconds, rounded up) is enough too.
                let secs = d.retry_after_secs().unwrap();
                prop_assert!(at(now + secs * 1_000_000).allowed);
            } else if !d.allowed {
                prop_assert!(cost > rule.capacity(), "denied without retry time: {d:?}");
            }
            if let Some(next) = next {
                state = Some(next);
            }
        }
    }

    #[test]
    fn remaining_is_exactly_what_is_admitted_next(rule in small_rule(), steps in steps(40)) {
        let mut state: Option<State> = None;
        let mut now = START_MICROS;
        for step in &steps {
            now += step.advance(&rule).as_micros() as u64;
            let t = Timestamp::from_micros(now);
            let (d, next) = algorithm::evaluate(&rule, state.as_ref(), t, cost(&rule, step));
            if let Some(next) = next {
                state = Some(next);
            }
            // `remaining` more unit requests at the same instant are admitted, and no more.
            let mut probe = state.clone();
            for i in 0..d.remaining {
                let (p, n) = algorithm::evaluate(&rule, probe.as_ref(), t, 1);
                prop_assert!(p.allowed, "unit {i} of remaining {} denied", d.remaining);
                probe = n;
            }
            prop_assert!(!algorithm::evaluate(&rule, probe.as_ref(), t, 1).0.allowed, "more than remaining {} admitted", d.remaining);
            prop_assert!(d.remaining <= d.limit);
        }
    }

    #[test]
    fn denied_requests_change_nothing(rule in any_rule(), steps in steps(100)) {
        // Replaying only the admitted requests gives the same decisions for them.
        let all = play(&rule, &steps);
        let clock = ManualClock::new(Timestamp::from_micros(START_MICROS));
        let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
        for e in all.iter().filter(|e| e.decision.allowed) {
            clock.set(Timestamp::from_micros(e.at));
            let check = [Check { rule: &rule, key: "k", cost: NonZeroU32::new(e.cost).unwrap() }];
            let replay = store.decide_now(Request::hit(&check)).unwrap().decision();
            prop_assert_eq!(replay, e.decision);
        }
    }

    #[test]
    fn peek_consumes_nothing_and_agrees_with_hit(rule in any_rule(), steps in steps(60)) {
        let clock = ManualClock::new(Timestamp::from_micros(START_MICROS));
        let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
        for step in &steps {
            clock.advance(step.advance(&rule));
            let cost = NonZeroU32::new(cost(&rule, step)).unwrap();
            let check = [Check { rule: &rule, key: "k", cost }];
            let before = store.decide_now(Request::peek(&check)).unwrap().decision();
            let again = store.decide_now(Request::peek(&check)).unwrap().decision();
            prop_assert_eq!(before, again);
            let hit = store.decide_now(Request::hit(&check)).unwrap().decision();
            prop_assert_eq!(before.allowed, hit.allowed);
            prop_assert_eq!(before.retry_after, hit.retry_after);
            if !hit.allowed {
                prop_assert_eq!(before.remaining, hit.remaining);
            }
        }
    }

    #[test]
    fn single_rule_hits_match_the_pure_algorithm(rule in any_rule(), steps in steps(120)) {
        // The store's one-rule path decides and consumes in one pass, and treats an expired
        // state as none; the model keeps every state and decides, then consumes.
        let events = play(&rule, &steps);
        let mut model: Option<State> = None;
        for e in &events {
            let now = Timestamp::from_micros(e.at);
            let (expected, next) = algorithm::evaluate(&rule, model.as_ref(), now, e.cost);
            prop_assert_eq!(e.decision, expected);
            if let Some(next) = next {
                model = Some(next);
            }
        }
    }

    #[test]
    fn multi_rule_requests_are_all_or_nothing(
        rules in prop::collection::vec(any_rule(), 2..4), steps in steps(100)
    ) {
        // The store decides the rules together; the model keeps one state per rule and
        // consumes from every rule only when all allow.
        let clock = ManualClock::new(Timestamp::from_micros(START_MICROS));
        let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
        let keys: Vec<String> = (0..rules.len()).map(|i| format!("rule{i}")).collect();
        let mut model: Vec<Option<State>> = vec![None; rules.len()];
        for step in &steps {
            clock.advance(step.advance(&rules[0]));
            let now = clock.now();
            let cost = step.cost.min(rules.iter().map(Rule::capacity).max().unwrap());
            let cost = NonZeroU32::new(cost).unwrap();
            let checks: Vec<Check<'_>> = rules.iter().zip(&keys).map(|(rule, key)| Check { rule, key, cost }).collect();
            let verdict = store.decide_now(Request::hit(&checks)).unwrap();
            let expected: Vec<Decision> = rules.iter().zip(&model).map(|(r, s)| algorithm::decide(r, s.as_ref(), now, cost.get())).collect();
            prop_assert_eq!(verdict.rules(), &expected[..]);
            let all = expected.iter().all(|d| d.allowed);
            prop_assert_eq!(verdict.allowed(), all);
            if all {
                for (r, s) in rules.iter().zip(&mut model) {
                    algorithm::consume(r, s, now, cost.get());
                }
            }
        }
    }
}

#[test]
fn a_key_named_twice_in_one_request_is_refused() {
    let rule = Rule::builder("3/minute".parse().unwrap()).build().unwrap();
    let store = MemoryStore::default();
    let checks = [
        Check {
            rule: &rule,
            key: "k",
            cost: NonZeroU32::MIN,
        },
        Check {
            rule: &rule,
            key: "k",
            cost: NonZeroU32::MIN,
        },
    ];
    let err = store.decide_now(Request::hit(&checks)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid request: a key appears twice in one request"
    );
    assert!(store.is_empty());
}

#[test]
fn a_cost_above_capacity_is_denied_without_retry_time() {
    for algorithm in Algorithm::ALL {
        let rule = Rule::builder("5/second".parse().unwrap())
            .algorithm(algorithm)
            .build()
            .unwrap();
        let d = algorithm::decide(&rule, None, Timestamp::from_micros(START_MICROS), 6);
        assert!(!d.allowed, "{algorithm}");
        assert_eq!(d.retry_after, None, "{algorithm}");
        assert_eq!(d.remaining, 5, "{algorithm}");
    }
}

#[test]
fn sliding_window_weights_the_previous_window() {
    // 10/minute; 10 in the previous window; 15 s into the current one the previous window
    // still weighs 7.5, so 2 more fit and the third waits until the weight drops.
    let rule = Rule::builder("10/minute".parse().unwrap()).build().unwrap();
    let minute = 60_000_000;
    let start = (START_MICROS / minute + 1) * minute;
    let mut state = None;
    for _ in 0..10 {
        let (d, n) =
            algorithm::evaluate(&rule, state.as_ref(), Timestamp::from_micros(start - 1), 1);
        assert!(d.allowed);
        state = n;
    }
    let now = start + 15_000_000;
    let mut decisions = Vec::new();
    for _ in 0..3 {
        let (d, n) = algorithm::evaluate(&rule, state.as_ref(), Timestamp::from_micros(now), 1);
        decisions.push(d);
        if let Some(n) = n {
            state = Some(n);
        }
    }
    assert_eq!(
        decisions.iter().map(|d| d.allowed).collect::<Vec<_>>(),
        [true, true, false]
    );
    // 10 × (60 − e)/60 + 2 + 1 ≤ 10 once e ≥ 18 s: 3 s after now.
    assert_eq!(decisions[2].retry_after, Some(Duration::from_secs(3)));
    assert_eq!(decisions[1].remaining, 0);
}

#[test]
fn token_bucket_refills_at_the_rate_and_holds_a_burst() {
    let rule = Rule::builder("2/second".parse().unwrap())
        .algorithm(Algorithm::TokenBucket)
        .burst(4)
        .build()
        .unwrap();
    let clock = ManualClock::new(Timestamp::from_micros(START_MICROS));
    let store = MemoryStore::builder().clock(clock.clone()).build().unwrap();
    let check = [Check {
        rule: &rule,
        key: "k",
        cost: NonZeroU32::MIN,
    }];
    let hit = || store.decide_now(Request::hit(&check)).unwrap().decision();
    let burst: Vec<bool> = (0..5).map(|_| hit().allowed).collect();
    assert_eq!(burst, [true, true, true, true, false]);
    let denied = hit();
    assert_eq!(denied.retry_after, Some(Duration::from_millis(500)));
    clock.advance(Duration::from_millis(500));
    assert!(hit().allowed);
    assert!(!hit().allowed);
    clock.advance(Duration::from_secs(10));
    assert_eq!(hit().remaining, 3);
}

#[test]
fn peek_mode_reports_current_remaining() {
    let rule = Rule::builder("3/hour".parse().unwrap()).build().unwrap();
    let store = MemoryStore::default();
    let check = [Check {
        rule: &rule,
        key: "k",
        cost: NonZeroU32::MIN,
    }];
    let now = Timestamp::from_micros(START_MICROS);
    let peek = |store: &MemoryStore| {
        store
            .decide_now(Request {
                checks: &check,
                mode: Mode::Peek,
                now: Some(now),
            })
            .unwrap()
            .decision()
    };
    assert_eq!(peek(&store).remaining, 3);
    store.decide_now(Request::hit(&check).at(now)).unwrap();
    assert_eq!(peek(&store).remaining, 2);
    assert_eq!(peek(&store).remaining, 2);
}
