//! What responses say about limits: headers, and the body of a refused request.
//!
//! Header names are lowercase (as HTTP/2 and ASGI want them; HTTP/1 is case-insensitive).
//!
//! - **legacy** (the default): `x-ratelimit-limit`, `x-ratelimit-remaining` and
//!   `x-ratelimit-reset` (whole seconds, rounded up) of the enforced rule with the least
//!   remaining (when denied: the rule that denies with the longest wait).
//! - **ietf**: draft-ietf-httpapi-ratelimit-headers-10 structured fields, one list member per
//!   enforced rule, named by its rule id:
//!   `ratelimit-policy: "sliding_window.100.60s";q=100;w=60` (quota and window in whole
//!   seconds, rounded up) and `ratelimit: "sliding_window.100.60s";r=99;t=60` (remaining, and
//!   seconds until more quota: the wait of a denied rule, else its reset; rounded up, so never
//!   before `Retry-After`).
//! - **both**, or **none**.
//!
//! Whatever the style, a denied request gets `retry-after` (whole seconds, rounded up: a
//! client that waits that long is admitted) when some wait admits it, and
//! `content-type: application/json` for its body,
//! `{"detail": "Rate limit exceeded: 5 per 1 minute"}` (429), or
//! `{"detail": "Service temporarily unavailable"}` (503, store down and failing closed).
//! Degraded verdicts that allow or deny without a store (fail open, fail closed) carry no
//! rate limit headers: they would describe a quota nobody counted.

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::Duration;

use rate_guard_core::{Decision, Quota, Rule};

use crate::error::{clip, Error};

/// Which rate limit headers a response carries; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    #[default]
    Legacy,
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
    Ietf,
    /// Both sets.
    Both,
    /// No rate limit headers (`Retry-After` is still sent on denial).
    None,
}

impl HeaderStyle {
    /// Every style.
    pub const ALL: [HeaderStyle; 4] = [Self::Legacy, Self::Ietf, Self::Both, Self::None];

    /// `legacy`, `ietf`, `both` or `none`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            HeaderStyle::Legacy => "legacy",
            HeaderStyle::Ietf => "ietf",
            HeaderStyle::Both => "both",
            HeaderStyle::None => "none",
        }
    }

    pub(crate) fn legacy(self) -> bool {
        matches!(self, HeaderStyle::Legacy | HeaderStyle::Both)
    }

    fn ietf(self) -> bool {
        matches!(self, HeaderStyle::Ietf | HeaderStyle::Both)
    }
}

impl FromStr for HeaderStyle {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "legacy" => Ok(HeaderStyle::Legacy),
            "ietf" => Ok(HeaderStyle::Ietf),
            "both" => Ok(HeaderStyle::Both),
            "none" => Ok(HeaderStyle::None),
            _ => Err(Error::HeaderStyle(clip(s, 32))),
        }
    }
}

impl fmt::Display for HeaderStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The header fields of a response, lowercase names.
pub type HeaderList = Vec<(&'static str, String)>;

/// `x-ratelimit-limit`.
pub const X_RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
/// `x-ratelimit-remaining`.
pub const X_RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
/// `x-ratelimit-reset`.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";
/// `ratelimit-policy`.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// `ratelimit`.
pub const RATELIMIT: &str = "ratelimit";
/// `retry-after`.
pub const RETRY_AFTER: &str = "retry-after";
/// `content-type`.
pub const CONTENT_TYPE: &str = "content-type";

/// The body of a 503 (the store is down and the request's rules fail closed).
pub const UNAVAILABLE_BODY: &str = r#"{"detail": "Service temporarily unavailable"}"#;

/// Appends the rate limit headers of `style` for `rules` (the enforced rules, in request
/// order) and their `decisions` (same order); `reported` is the combined decision.
pub(crate) fn push_limit_headers(
    out: &mut HeaderList,
    style: HeaderStyle,
    rules: &[&Rule],
    decisions: &[Decision],
    reported: &Decision,
) {
    if style.legacy() {
        LegacyHeaders::of(reported).push_to(out);
    }
    if style.ietf() {
        let mut policy = String::new();
        let mut current = String::new();
        for (rule, decision) in rules.iter().zip(decisions) {
            if !policy.is_empty() {
                policy.push_str(", ");
                current.push_str(", ");
            }
            let _ = write!(
                policy,
                "\"{}\";q={};w={}",
                rule.id(),
                rule.count(),
                ceil_secs(rule.quota().period())
            );
            let t = match (decision.allowed, decision.retry_after_secs()) {
                (false, Some(wait)) => wait,
                _ => decision.reset_after_secs(),
            };
            let _ = write!(current, "\"{}\";r={};t={t}", rule.id(), decision.remaining);
        }
        if !policy.is_empty() {
            out.push((RATELIMIT_POLICY, policy));
            out.push((RATELIMIT, current));
        }
    }
}

/// The numbers of the legacy `x-ratelimit-*` headers: what a front that writes its own header
/// values (without going through strings) needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyHeaders {
    /// `x-ratelimit-limit`.
    pub limit: u32,
    /// `x-ratelimit-remaining`.
    pub remaining: u32,
    /// `x-ratelimit-reset`: whole seconds, rounded up.
    pub reset: u64,
}

impl LegacyHeaders {
    /// The legacy headers that report `decision`.
    #[must_use]
    pub fn of(decision: &Decision) -> Self {
        Self {
            limit: decision.limit,
            remaining: decision.remaining,
            reset: decision.reset_after_secs(),
        }
    }

    pub(crate) fn push_to(self, out: &mut HeaderList) {
        out.push((X_RATELIMIT_LIMIT, self.limit.to_string()));
        out.push((X_RATELIMIT_REMAINING, self.remaining.to_string()));
        out.push((X_RATELIMIT_RESET, self.reset.to_string()));
    }
}

/// The body of a request denied by `rule`.
#[must_use]
pub fn limited_body(rule: &Rule) -> String {
    format!(
        r#"{{"detail": "Rate limit exceeded: {}"}}"#,
        human_rate(rule.count(), rule.quota())
    )
}

/// A quota as people say it: `5 per 1 minute`, `10 per 5 minutes`, `100 per 1 hour`,
/// `7 per 1500 milliseconds` (the largest unit that divides the period exactly).
///
/// ```
/// use rate_guard_core::Quota;
/// use rate_guard_http::human_quota;
///
/// assert_eq!(human_quota("5/minute".parse::<Quota>()?), "5 per 1 minute");
/// assert_eq!(human_quota("10 per 2 hours".parse::<Quota>()?), "10 per 2 hours");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn human_quota(quota: Quota) -> String {
    human_rate(quota.count().get(), quota)
}

/// `count` per the period of `period`, as people say it (`0 per 1 minute`).
fn human_rate(count: u32, period: Quota) -> String {
    const UNITS: [(u128, &str, &str); 5] = [
        (86_400_000, "day", "days"),
        (3_600_000, "hour", "hours"),
        (60_000, "minute", "minutes"),
        (1_000, "second", "seconds"),
        (1, "millisecond", "milliseconds"),
    ];
    let ms = period.period().as_millis();
    let (size, one, many) = UNITS
        .into_iter()
        .find(|(size, _, _)| ms.is_multiple_of(*size))
        .unwrap_or(UNITS[4]);
    let n = ms / size;
    format!("{count} per {n} {}", if n == 1 { one } else { many })
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quota {
        s.parse().unwrap()
    }

    #[test]
    fn quotas_read_as_people_say_them() {
        assert_eq!(human_quota(q("5/minute")), "5 per 1 minute");
        assert_eq!(human_quota(q("5/m")), "5 per 1 minute");
        assert_eq!(human_quota(q("10/5 minutes")), "10 per 5 minutes");
        assert_eq!(human_quota(q("100/hour")), "100 per 1 hour");
        assert_eq!(human_quota(q("3/90 seconds")), "3 per 90 seconds");
        assert_eq!(human_quota(q("1/day")), "1 per 1 day");
        assert_eq!(human_quota(q("2/48 hours")), "2 per 2 days");
        let fractional = Quota::new(7.try_into().unwrap(), Duration::from_millis(1500)).unwrap();
        assert_eq!(human_quota(fractional), "7 per 1500 milliseconds");
    }

    #[test]
    fn styles_parse_by_name() {
        for style in [
            HeaderStyle::Legacy,
            HeaderStyle::Ietf,
            HeaderStyle::Both,
            HeaderStyle::None,
        ] {
            assert_eq!(style.name().parse::<HeaderStyle>().unwrap(), style);
        }
        assert_eq!("IETF".parse::<HeaderStyle>().unwrap(), HeaderStyle::Ietf);
        let err = "draft".parse::<HeaderStyle>().unwrap_err().to_string();
        assert!(err.contains("\"draft\""), "{err}");
    }

    #[test]
    fn ietf_fields_list_every_rule() {
        let rule = |s: &str, name: &str| Rule::builder(q(s)).name(name).build().unwrap();
        let (a, b) = (
            rule("100/minute", "api"),
            rule("7/1500 milliseconds", "burst"),
        );
        let d = |allowed, remaining, reset_ms, retry_ms: Option<u64>| Decision {
            allowed,
            limit: 0,
            remaining,
            reset_after: Duration::from_millis(reset_ms),
            retry_after: retry_ms.map(Duration::from_millis),
        };
        let decisions = [d(true, 99, 600, None), d(false, 0, 1500, Some(214))];
        let mut out = HeaderList::new();
        push_limit_headers(
            &mut out,
            HeaderStyle::Ietf,
            &[&a, &b],
            &decisions,
            &decisions[1],
        );
        assert_eq!(
            out,
            [
                (
                    RATELIMIT_POLICY,
                    r#""api";q=100;w=60, "burst";q=7;w=2"#.to_owned()
                ),
                (RATELIMIT, r#""api";r=99;t=1, "burst";r=0;t=1"#.to_owned()),
            ]
        );
        let mut none = HeaderList::new();
        push_limit_headers(
            &mut none,
            HeaderStyle::None,
            &[&a],
            &decisions[..1],
            &decisions[0],
        );
        assert!(none.is_empty());
    }
}
