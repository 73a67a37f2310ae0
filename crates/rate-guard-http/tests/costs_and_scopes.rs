//! Issue 15 in the front: a request's own costs for its route's limits (decided in the same one
//! store call as every other rule), and named shared scopes (one quota for every route that
//! declares the scope, whatever its template and method).

use std::num::NonZeroU32;

use proptest::prelude::*;
use rate_guard_core::{Algorithm, KeyBuilder, Limiter, ManualClock, Quota, Rule, Timestamp};
use rate_guard_http::route::shared_rule_id;
use rate_guard_http::{Error, Front, Limit, Outcome, Peer, RequestInfo, RouteLimits, Settings};

const PEER: &str = "203.0.113.9";

fn rule(limit: &str) -> Rule {
    Rule::builder(limit.parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .build()
        .unwrap()
}

fn limiter() -> Limiter {
    Limiter::builder()
        .rule(rule("1/s"))
        .clock(ManualClock::new(Timestamp::from_secs(1_700_000_040)))
        .build()
        .unwrap()
}

fn decide(front: &Front, limiter: &Limiter, route: &RouteLimits, costs: &[Option<u32>]) -> Outcome {
    let headers: [(&[u8], &[u8]); 0] = [];
    let request = RequestInfo::new(Peer::parse(Some(PEER)), &headers[..]);
    let plan = front
        .plan_with_costs(&request, Some(route), &[], costs)
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(front.decide(limiter, &plan))
}

fn remaining(outcome: &Outcome) -> u32 {
    outcome.verdict().unwrap().decision().remaining
}

#[test]
fn a_cost_overrides_the_declared_one_for_one_request() {
    let limiter = limiter();
    let front = Front::builder()
        .global(Limit::new(rule("100/minute")))
        .build()
        .unwrap();
    let batch = front
        .route(
            "/batch",
            None,
            [Limit::new(rule("10/minute")).cost(2.try_into().unwrap())],
        )
        .unwrap();
    let first = decide(&front, &limiter, &batch, &[Some(4)]);
    assert!(first.allowed());
    assert_eq!(remaining(&first), 6);
    // None keeps the declared cost; no costs at all too.
    assert_eq!(remaining(&decide(&front, &limiter, &batch, &[None])), 4);
    assert_eq!(remaining(&decide(&front, &limiter, &batch, &[])), 2);
    // Too heavy: denied, and nothing consumed anywhere (the global rule neither).
    let heavy = decide(&front, &limiter, &batch, &[Some(3)]);
    assert!(!heavy.allowed());
    let last = decide(&front, &limiter, &batch, &[Some(2)]);
    assert!(last.allowed());
    let rules = last.verdict().unwrap().rules();
    // The global rule counted each admitted request at its own cost (1): 4 admitted.
    assert_eq!(rules[0].remaining, 96);
    assert_eq!(rules[1].remaining, 0);
}

#[test]
fn a_cost_above_the_limit_is_denied_without_a_retry_time() {
    let limiter = limiter();
    let front = Front::builder().build().unwrap();
    let route = front
        .route("/r", None, [Limit::new(rule("5/minute"))])
        .unwrap();
    let outcome = decide(&front, &limiter, &route, &[Some(6)]);
    assert!(!outcome.allowed());
    assert_eq!(outcome.verdict().unwrap().decision().retry_after, None);
}

#[test]
fn costs_that_do_not_fit_the_route_are_named() {
    let front = Front::builder()
        .global(Limit::new(rule("1/s")))
        .build()
        .unwrap();
    let route = front
        .route(
            "/r",
            None,
            [Limit::new(rule("5/minute")), Limit::new(rule("50/hour"))],
        )
        .unwrap();
    let headers: [(&[u8], &[u8]); 0] = [];
    let request = RequestInfo::new(Peer::parse(Some(PEER)), &headers[..]);
    let err = |route: Option<&RouteLimits>, costs: &[Option<u32>]| {
        front
            .plan_with_costs(&request, route, &[], costs)
            .unwrap_err()
    };
    assert_eq!(
        err(Some(&route), &[Some(1)]).to_string(),
        "invalid costs for this request: 1 given, but the route has 2 limits (one cost or \
         None per limit, in the route's order)"
    );
    assert!(matches!(err(None, &[Some(1)]), Error::Costs(_)));
    assert_eq!(
        err(Some(&route), &[None, Some(0)]).to_string(),
        "invalid costs for this request: costs[1]: cost must be from 1 to 4294967295, not 0"
    );
    let plan = front
        .plan_with_costs(&request, Some(&route), &[], &[None, Some(u32::MAX)])
        .unwrap();
    let costs: Vec<u32> = plan.items().iter().map(|i| i.cost().get()).collect();
    assert_eq!(costs, [1, 1, u32::MAX]);
}

proptest! {
    /// Any costs vector: accepted exactly when it is empty or one entry per route limit with
    /// no zero, and then the plan carries the override (or the declared cost) per limit.
    #[test]
    fn costs_are_checked_and_applied(
        declared in proptest::collection::vec(1u32..=5, 1..4),
        costs in proptest::collection::vec(proptest::option::of(0u32..=u32::MAX), 0..5),
    ) {
        let front = Front::builder().global(Limit::new(rule("9/s"))).build().unwrap();
        let limits = declared.iter().enumerate().map(|(i, c)| {
            Limit::new(rule(&format!("{}/minute", i + 1))).cost((*c).try_into().unwrap())
        });
        let route = front.route("/r", None, limits).unwrap();
        let headers: [(&[u8], &[u8]); 0] = [];
        let request = RequestInfo::new(Peer::parse(Some(PEER)), &headers[..]);
        let planned = front.plan_with_costs(&request, Some(&route), &[], &costs);
        let fits = costs.is_empty()
            || (costs.len() == declared.len() && costs.iter().all(|c| *c != Some(0)));
        prop_assert_eq!(planned.is_ok(), fits);
        if let Ok(plan) = planned {
            let got: Vec<u32> = plan.items().iter().map(|i| i.cost().get()).collect();
            prop_assert_eq!(got[0], 1);
            for (i, d) in declared.iter().enumerate() {
                let want = costs.get(i).copied().flatten().unwrap_or(*d);
                prop_assert_eq!(got[i + 1], want);
            }
        }
    }

    /// Scope ids: in the reserved namespace, bounded, equal exactly when (scope, rule) are.
    #[test]
    fn shared_ids_are_distinct_and_bounded(a in "[^\\p{Cc}]{1,64}", b in "[^\\p{Cc}]{1,64}") {
        let five = rule("5/minute");
        let (ia, ib) = (shared_rule_id(&five, &a), shared_rule_id(&five, &b));
        prop_assert!(ia.starts_with("sc.") && ia.len() <= rate_guard_core::MAX_RULE_ID_LEN);
        prop_assert_eq!(ia == ib, a == b);
        let front = Front::builder().build().unwrap();
        prop_assert!(front.shared_route("/x", None, &a, [Limit::new(five)]).is_ok());
    }
}

#[test]
fn routes_of_one_scope_share_one_quota_and_others_do_not() {
    let limiter = limiter();
    let front = Front::builder().build().unwrap();
    let three = || [Limit::new(rule("3/minute"))];
    let upload = front
        .shared_route("/upload", Some("POST"), "uploads", three())
        .unwrap();
    let bulk = front
        .shared_route("/bulk/{id}", None, "uploads", three())
        .unwrap();
    let elsewhere = front
        .shared_route("/upload", Some("POST"), "avatars", three())
        .unwrap();
    let own = front.route("/upload", Some("POST"), three()).unwrap();
    let allowed: Vec<bool> = [&upload, &bulk, &upload, &bulk]
        .iter()
        .map(|r| decide(&front, &limiter, r, &[]).allowed())
        .collect();
    assert_eq!(allowed, [true, true, true, false]);
    assert!(decide(&front, &limiter, &elsewhere, &[]).allowed());
    assert!(decide(&front, &limiter, &own, &[]).allowed());
    // The route still names itself in metrics and logs.
    assert_eq!(
        (bulk.template(), bulk.scope()),
        ("/bulk/{id}", Some("uploads"))
    );
}

#[test]
fn shared_keys_are_pinned() {
    let front = Front::builder().build().unwrap();
    let route = front
        .shared_route("/a", None, "uploads", [Limit::new(rule("5/minute"))])
        .unwrap();
    let headers: [(&[u8], &[u8]); 0] = [];
    let plan = front.plan(
        &RequestInfo::new(Peer::parse(Some(PEER)), &headers[..]),
        Some(&route),
    );
    // The same string is pinned in tests/python/test_cross_language.py.
    assert_eq!(
        plan.keys(&KeyBuilder::new("rate_guard").unwrap()),
        ["rate_guard:sc.dab2ffe7b41c1a2a.fixed_window.5.60s:{ip:203.0.113.9}"]
    );
}

#[test]
fn reserved_names_and_bad_scopes_are_refused() {
    let named = |name: &str| {
        Rule::builder("1/s".parse::<Quota>().unwrap())
            .name(name)
            .build()
            .unwrap()
    };
    for name in ["sc.mine", "rt.mine"] {
        let err = Front::builder()
            .global(Limit::new(named(name)))
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::ReservedRuleName { .. }), "{err}");
        assert!(err.to_string().contains(&name[..3]), "{err}");
    }
    let front = Front::builder().build().unwrap();
    let err = front
        .shared_route("/a", None, "", [Limit::new(rule("1/s"))])
        .unwrap_err();
    assert!(matches!(err, Error::Scope { .. }), "{err}");
}

#[test]
fn one_scoped_name_has_one_definition_across_the_routes_of_a_front() {
    let named = |limit: &str, name: &str| {
        Limit::new(
            Rule::builder(limit.parse::<Quota>().unwrap())
                .name(name)
                .build()
                .unwrap(),
        )
    };
    let front = Front::builder().build().unwrap();
    front
        .shared_route("/a", None, "s", [named("3/minute", "up")])
        .unwrap();
    // The same definition again (another route, or the same one rebuilt), and another cost.
    front
        .shared_route(
            "/b",
            None,
            "s",
            [named("3/minute", "up").cost(NonZeroU32::new(2).unwrap())],
        )
        .unwrap();
    let err = front
        .shared_route("/c", Some("POST"), "s", [named("5/minute", "up")])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateRule { .. }), "{err}");
    assert!(err.to_string().contains("3/minute"), "{err}");
    // Another scope, or the route's own scope, is another quota: no clash.
    front
        .shared_route("/c", None, "t", [named("5/minute", "up")])
        .unwrap();
    front.route("/c", None, [named("5/minute", "up")]).unwrap();
    // Each front keeps its own table.
    let other = Front::builder().build().unwrap();
    other
        .shared_route("/c", None, "s", [named("5/minute", "up")])
        .unwrap();
}

#[test]
fn settings_routes_take_a_scope_and_refuse_clashing_definitions() {
    let settings: Settings = serde_json::from_str(
        r#"{"routes": [
            {"path": "/upload", "method": "POST", "scope": "uploads", "rules": [{"limit": "3/minute"}]},
            {"path": "/bulk", "scope": "uploads", "rules": [{"limit": "3/minute"}]}
        ]}"#,
    )
    .unwrap();
    let front = settings.front().unwrap();
    let routes = settings.route_limits(&front).unwrap();
    assert_eq!(
        routes[0].limits()[0].rule().id(),
        routes[1].limits()[0].rule().id()
    );
    let clash: Settings = serde_json::from_str(
        r#"{"routes": [
            {"path": "/a", "scope": "s", "rules": [{"limit": "3/minute", "name": "up"}]},
            {"path": "/b", "scope": "s", "rules": [{"limit": "5/minute", "name": "up"}]}
        ]}"#,
    )
    .unwrap();
    let err = clash.route_limits(&front).unwrap_err().to_string();
    assert!(
        err.contains("routes[1]") && err.contains("share the id"),
        "{err}"
    );
    let bad: Settings = serde_json::from_str(
        r#"{"routes": [{"path": "/a", "scope": "", "rules": [{"limit": "3/minute"}]}]}"#,
    )
    .unwrap();
    let err = bad.route_limits(&front).unwrap_err().to_string();
    assert!(err.contains("routes[0].scope"), "{err}");
}

#[test]
fn a_zero_rate_refuses_without_a_retry_time_or_state() {
    let limiter = limiter();
    let settings: Settings = serde_json::from_str(
        r#"{"global_rules": [{"limit": "100/minute", "algorithm": "fixed_window"}],
            "routes": [{"path": "/closed", "rules": [{"limit": "0/minute"}]}]}"#,
    )
    .unwrap();
    let front = settings.front().unwrap();
    let closed = &settings.route_limits(&front).unwrap()[0];
    assert!(closed.limits()[0].rule().refuses_all());
    for _ in 0..3 {
        let outcome = decide(&front, &limiter, closed, &[]);
        assert_eq!(outcome.status(), 429);
        assert_eq!(
            outcome.body(),
            r#"{"detail": "Rate limit exceeded: 0 per 1 minute"}"#
        );
        let headers: Vec<(&str, &str)> = outcome
            .headers()
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-ratelimit-limit", "0"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "0"),
                ("content-type", "application/json"),
            ]
        );
        assert_eq!(outcome.rule(), Some(closed.limits()[0].rule().id()));
    }
    // Nothing consumed: the global rule still has its whole quota.
    let open = front
        .route("/open", None, [Limit::new(rule("5/minute"))])
        .unwrap();
    let outcome = decide(&front, &limiter, &open, &[]);
    assert_eq!(outcome.verdict().unwrap().rules()[0].remaining, 99);
}
