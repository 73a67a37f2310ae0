//! What the keyed-check benches share: the rule's rate, the fake clock's step, the keys and
//! the order they are visited in.

use std::time::Duration;

pub(crate) const PER_SECOND: u32 = 100;
pub(crate) const STEP: Duration = Duration::from_micros(10);

/// The keys: client IPs under one rule, as `KeyBuilder` spells them.
pub(crate) fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "rate_guard:token_bucket.100.1s:{{ip:10.{}.{}.{}}}",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect()
}

/// A visiting order over `n` keys that defeats the prefetcher (a multiplicative walk).
pub(crate) fn order(n: usize) -> Vec<usize> {
    let len = n.max(1 << 16);
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761)) % n)
        .collect()
}
