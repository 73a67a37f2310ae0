//! The decision log seen from the tower front: the `tracing` events of a flood of refusals,
//! sampled by `rate_guard_http::DecisionLog` (whose own tests cover the sampling). The same
//! sequence gives the same records in Python (`tests/python/test_observability.py`,
//! `test_denial_sampling_is_the_engines`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use rate_guard_core::{ManualClock, Timestamp};
use rate_guard_tower::{Identities, RateGuard, RuleConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The fields of every event, as text.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Events {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_flood_of_refusals_is_sampled_per_rule_and_counts_what_it_leaves_out() {
    let events = Events::default();
    let clock = ManualClock::new(Timestamp::from_secs(1_800_000_000));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let guard: RateGuard = runtime
        .block_on(
            RateGuard::builder()
                .global(RuleConfig::new("1/minute").name("sampled"))
                .with_config(|c| {
                    c.log_denials_per_second = 2.5;
                    c.log_identities = Identities::Raw;
                })
                .clock(clock.clone())
                .build(),
        )
        .unwrap();
    let request = || {
        let mut request = http::Request::get("/login").body(()).unwrap();
        let addr: SocketAddr = "192.0.2.50:40000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
        request.into_parts().0
    };
    tracing::subscriber::with_default(events.clone(), || {
        // The sequence of the Python test: 10 requests (one admitted), a second later 5, 400 ms
        // later one more; 2.5 records a second.
        for (advance_ms, requests) in [(0, 10), (1_000, 5), (400, 1)] {
            clock.advance(Duration::from_millis(advance_ms));
            for _ in 0..requests {
                runtime.block_on(guard.check(&request())).unwrap();
            }
        }
    });
    let events = events.0.lock().unwrap();
    let suppressed: Vec<&str> = events.iter().map(|e| e["suppressed"].as_str()).collect();
    assert_eq!(suppressed, ["0", "0", "7", "0", "3"]);
    for e in events.iter() {
        assert_eq!(e["event"], "rate_limited");
        assert_eq!(
            (e["rule"].as_str(), e["rule_name"].as_str()),
            ("sampled", "sampled")
        );
        assert_eq!(
            (e["decision"].as_str(), e["status"].as_str()),
            ("blocked", "429")
        );
        assert_eq!(e["identity"], "ip:192.0.2.50");
        assert_eq!((e["limit"].as_str(), e["remaining"].as_str()), ("1", "0"));
    }
}

#[test]
fn out_of_range_denials_per_second_is_named() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for per_second in [1_000_001.0, -0.5, f64::NAN] {
        let built = runtime.block_on(
            RateGuard::builder()
                .with_config(|c| c.log_denials_per_second = per_second)
                .build(),
        );
        let err = built.unwrap_err().to_string();
        assert!(err.contains("log_denials_per_second"), "{err}");
    }
}
