//! The quick-start demo (until the Python package lands): one client sends requests at a
//! limit of 5 per 10 seconds on the in-memory store, and we print what the limiter answers.
//!
//! Run with `make demo`.

use std::time::{Duration, Instant};

use rate_guard_core::{Limiter, Quota, Rule, Verdict};

fn show(n: usize, elapsed: Duration, verdict: &Verdict) {
    let d = verdict.decision();
    let outcome = if d.allowed { "allowed" } else { "LIMITED" };
    let retry = d
        .retry_after
        .map_or_else(|| "-".to_owned(), |r| format!("{:.2}s", r.as_secs_f64()));
    println!(
        "request {n:>2} at +{:>5.2}s  {outcome:<8} remaining={:<2} reset_after={:>5.2}s retry_after={retry}",
        elapsed.as_secs_f64(),
        d.remaining,
        d.reset_after.as_secs_f64(),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quota: Quota = "5 per 10 seconds".parse()?;
    let limiter = Limiter::builder()
        .rule(Rule::builder(quota).build()?)
        .build()?;
    println!(
        "py-rate-guard demo: rule {}, memory store, client 203.0.113.7\n",
        limiter.rules()[0]
    );

    let start = Instant::now();
    let mut n = 0;
    let mut last = None;
    for _ in 0..8 {
        n += 1;
        let verdict = limiter.hit("203.0.113.7").await?;
        show(n, start.elapsed(), &verdict);
        last = Some(verdict);
    }
    let verdict = last.expect("eight requests were sent");
    let wait = verdict.decision().retry_after.unwrap_or_default();
    println!(
        "\nthe client honours retry_after and sleeps {:.2}s…\n",
        wait.as_secs_f64()
    );
    tokio::time::sleep(wait).await;
    n += 1;
    let verdict = limiter.hit("203.0.113.7").await?;
    show(n, start.elapsed(), &verdict);
    println!("\nanother client has its own quota:");
    show(n + 1, start.elapsed(), &limiter.hit("198.51.100.23").await?);
    Ok(())
}
