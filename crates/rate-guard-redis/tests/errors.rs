//! Error replies from a real Redis: which ones count toward the circuit breaker, and what
//! their messages show.
//!
//! - A script error or a `WRONGTYPE` caused by one key's data is that request's problem: the
//!   request gets its rule's failure policy, the breaker stays closed, other keys decide on
//!   Redis, and the rejection is counted and reported (a bounded number of events).
//! - A server-wide refusal (an ACL user without a permission, `EVALSHA` renamed away) opens
//!   the breaker like an outage, and its message, which Redis writes with the command's
//!   arguments, reaches events (and so logs) without the keys, whose identities are private.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rate_guard_core::metrics;
use rate_guard_core::{
    Algorithm, BoxFuture, BreakerState, Decision, Degradation, Event, Limiter, Quota, Request,
    Rule, Source, Store, StoreError, Verdict,
};
use rate_guard_redis::test_support::eval_script;
use rate_guard_redis::{Connection, RedisConfig, RedisStore};
use rate_guard_testkit::RedisServer;

/// An identity nobody could mistake for anything else in a message.
const IDENTITY: &str = "zebra-7731@identity.example";

fn rule(fail_open: Option<bool>) -> Rule {
    let mut b = Rule::builder("3/hour".parse::<Quota>().unwrap())
        .algorithm(Algorithm::FixedWindow)
        .name("api");
    if let Some(open) = fail_open {
        b = b.fail_open(open);
    }
    b.build().unwrap()
}

/// A limiter with one rule over `store`, and the store errors it reported.
fn limiter_over(
    store: impl Store + 'static,
    rule: Rule,
    degradation: Degradation,
) -> (Limiter, Arc<Mutex<Vec<StoreError>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    let limiter = Limiter::builder()
        .rule(rule)
        .store(store)
        .degradation(degradation.failure_threshold(3).deny_cache_size(0))
        .on_event(move |event| {
            if let Event::StoreFailed { error } = event {
                seen.lock().unwrap().push(error.clone());
            }
        })
        .build()
        .unwrap();
    (limiter, errors)
}

async fn limiter(url: &str, rule: Rule) -> (Limiter, Arc<Mutex<Vec<StoreError>>>) {
    let store = RedisStore::connect(&RedisConfig::from_url(url).unwrap())
        .await
        .unwrap();
    limiter_over(store, rule, Degradation::default())
}

/// The request scripts heal corrupt state, so no key makes them fail; this store counts with
/// `INCR`, which fails with `WRONGTYPE` on a key that holds a hash, as any script fails on
/// data it did not expect. The error replies are Redis's own.
#[derive(Debug)]
struct IncrStore(Connection);

const INCR: &str = "return redis.call('INCR', KEYS[1])";

impl Store for IncrStore {
    fn decide<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        Box::pin(async move {
            let check = &request.checks[0];
            let sha = self.0.load_script(INCR).await?;
            let count = eval_script(&self.0, &sha, INCR, &[check.key], &[] as &[&str]).await?;
            let redis::Value::Int(count) = count else {
                return Err(StoreError::Rejected(format!("{count:?}")));
            };
            let limit = check.rule.capacity();
            let allowed = count <= i64::from(limit);
            Ok(Verdict::single(Decision {
                allowed,
                limit,
                remaining: 0,
                reset_after: Duration::ZERO,
                retry_after: (!allowed).then_some(Duration::from_secs(1)),
            }))
        })
    }

    fn reset<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Ok(self.0.del(keys).await?) })
    }

    fn is_remote(&self) -> bool {
        true
    }
}

fn rejected_count() -> u64 {
    let i = metrics::ERROR_KINDS
        .iter()
        .position(|k| *k == "rejected")
        .unwrap();
    metrics::snapshot().storage_errors[i]
}

#[tokio::test]
async fn a_key_that_fails_its_script_gets_its_rules_policy_and_leaves_the_breaker_closed() {
    let server = RedisServer::start().unwrap();
    let config = RedisConfig::from_url(&server.url()).unwrap();
    for (fail_open, in_memory, expected) in [
        (Some(false), false, Source::FailClosed),
        (Some(true), false, Source::FailOpen),
        (None, true, Source::Fallback),
    ] {
        let mut degradation = Degradation::default();
        if in_memory {
            degradation = degradation.in_memory_fallback(NonZeroU32::MIN);
        }
        let store = IncrStore(Connection::connect(&config).await.unwrap());
        let (limiter, errors) = limiter_over(store, rule(fail_open), degradation);
        let key = limiter.keys().key(&limiter.rules()[0], IDENTITY);
        server.cmd(&["DEL", &key]).unwrap();
        server.cmd(&["HSET", &key, "field", "1"]).unwrap();

        let before = rejected_count();
        let mut allowed = 0;
        for _ in 0..20 {
            let verdict = limiter.hit(IDENTITY).await.unwrap();
            assert_eq!(verdict.source(), expected);
            allowed += u32::from(verdict.allowed());
        }
        match expected {
            Source::FailClosed => assert_eq!(allowed, 0),
            Source::FailOpen => assert_eq!(allowed, 20),
            // The fallback enforces the rule itself.
            _ => assert_eq!(allowed, 3),
        }
        assert_eq!(limiter.breaker_state(), BreakerState::Closed);
        assert!(!limiter.is_degraded());
        assert!(rejected_count() >= before + 20);
        {
            let errors = errors.lock().unwrap();
            // Reported, but not once per request: at most 10 a second.
            assert!((1..20).contains(&errors.len()), "{}", errors.len());
            for e in errors.iter() {
                assert!(
                    matches!(e, StoreError::Rejected(m) if m.contains("WRONGTYPE")),
                    "{e}"
                );
                assert!(!e.to_string().contains("zebra"), "{e}");
            }
        }
        // Everyone else decides on Redis.
        let other = limiter.hit("someone-else").await.unwrap();
        assert_eq!(other.source(), Source::Store);
        assert!(other.allowed());
        // And the key decides on Redis again once its data is gone.
        server.cmd(&["DEL", &key]).unwrap();
        assert_eq!(limiter.hit(IDENTITY).await.unwrap().source(), Source::Store);
        limiter.reset("someone-else").await.unwrap();
        limiter.reset(IDENTITY).await.unwrap();
    }
}

/// Runs hits until the breaker opens; returns what the events said.
async fn until_open(limiter: &Limiter, errors: &Mutex<Vec<StoreError>>) -> Vec<String> {
    for _ in 0..3 {
        let verdict = limiter.hit(IDENTITY).await.unwrap();
        assert!(verdict.is_degraded());
    }
    assert_eq!(limiter.breaker_state(), BreakerState::Open);
    let messages: Vec<String> = errors
        .lock()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    for m in &messages {
        assert!(!m.contains("zebra"), "the identity leaked: {m}");
        assert!(!m.contains("identity.example"), "the identity leaked: {m}");
    }
    messages
}

#[tokio::test]
async fn an_acl_refusal_opens_the_breaker_without_naming_the_key() {
    let server = RedisServer::start().unwrap();
    // May connect and load scripts, but touch only keys it does not own.
    server
        .cmd(&[
            "ACL", "SETUSER", "keyless", "on", ">pw", "~other:*", "+@all",
        ])
        .unwrap();
    // May not run EVALSHA at all (nor FCALL, which it would use instead).
    server
        .cmd(&[
            "ACL", "SETUSER", "noeval", "on", ">pw", "~*", "+@all", "-evalsha", "-fcall",
        ])
        .unwrap();
    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}/", server.port());

    let (keyless, errors) = limiter(&url("keyless"), rule(None)).await;
    let messages = until_open(&keyless, &errors).await;
    assert!(
        messages[0].ends_with(
            "NOPERM this user has no permissions to access one of the keys used as arguments"
        ),
        "{messages:?}"
    );
    assert!(
        messages[0].starts_with("store refused the request"),
        "{messages:?}"
    );

    let (noeval, errors) = limiter(&url("noeval"), rule(None)).await;
    let messages = until_open(&noeval, &errors).await;
    assert!(
        messages[0].ends_with("NOPERM this user has no permissions to run the 'evalsha' command"),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_renamed_evalsha_opens_the_breaker_without_echoing_the_arguments() {
    let server = RedisServer::builder()
        .args([
            "--rename-command",
            "EVALSHA",
            "",
            "--rename-command",
            "FUNCTION",
            "",
        ])
        .start()
        .unwrap();
    let (limiter, errors) = limiter(&server.url(), rule(None)).await;
    let messages = until_open(&limiter, &errors).await;
    assert!(
        messages[0].ends_with("ERR unknown command 'EVALSHA'"),
        "{messages:?}"
    );
}
