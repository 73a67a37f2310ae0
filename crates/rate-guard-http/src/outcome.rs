//! [`Outcome`]: what [`Front::decide`](crate::Front::decide) answers, ready to become a response.

use std::sync::OnceLock;

use rate_guard_core::{Decision, Error as CoreError, Rule, Source, Verdict};
use smallvec::SmallVec;

use crate::plan::{Plan, PlanItem};
use crate::response::{
    limited_body, push_limit_headers, HeaderList, HeaderStyle, LegacyHeaders, CONTENT_TYPE,
    RETRY_AFTER, UNAVAILABLE_BODY,
};

/// The answer to one request: whether it goes through, and what to tell the client.
///
/// When [`allowed`](Self::allowed), [`headers`](Self::headers) are to be added to the
/// application's response. When not, they are the complete headers of the refusal (status
/// [`status`](Self::status), body [`body`](Self::body), with its `content-type`).
#[derive(Debug, Clone)]
pub struct Outcome {
    allowed: bool,
    status: u16,
    verdict: Option<Verdict>,
    rule: Option<String>,
    /// Boxed: rare, and the outcome is moved on every request.
    shadow: Option<Box<Verdict>>,
    shadow_denied: Vec<String>,
    /// The numbers of the legacy headers, when the response carries them.
    legacy: Option<LegacyHeaders>,
    /// Every header. Built at once, except for an admitted request with only the legacy
    /// headers: the most common answer, whose front may well write `legacy` itself, so its
    /// strings are made on first use only.
    headers: OnceLock<HeaderList>,
    body: String,
    error: Option<CoreError>,
}

impl Outcome {
    /// Assembles the outcome; `failed_closed` means the enforced call failed with an error and
    /// a rule of it fails closed.
    pub(crate) fn new(
        style: HeaderStyle,
        plan: &Plan,
        verdict: Option<Verdict>,
        failed_closed: bool,
        shadow: Option<Verdict>,
        error: Option<CoreError>,
    ) -> Self {
        let enforced: SmallVec<[&PlanItem; 8]> =
            plan.items.iter().filter(|item| !item.shadow).collect();
        let shadows: SmallVec<[&PlanItem; 8]> =
            plan.items.iter().filter(|item| item.shadow).collect();
        let mut headers = HeaderList::new();
        let mut legacy = None;
        let mut body = String::new();
        let (allowed, status, rule) = match &verdict {
            None if failed_closed => {
                body.push_str(UNAVAILABLE_BODY);
                (false, 503, None)
            }
            None => (true, 200, None),
            Some(v) => {
                let deciding = enforced.get(v.deciding_rule()).map(|item| &item.rule);
                let decision = v.decision();
                if !matches!(v.source(), Source::FailOpen | Source::FailClosed) {
                    if style.legacy() {
                        legacy = Some(LegacyHeaders::of(&decision));
                    }
                    if !(v.allowed() && style == HeaderStyle::Legacy) {
                        let rules: SmallVec<[&Rule; 8]> =
                            enforced.iter().map(|item| &item.rule).collect();
                        push_limit_headers(&mut headers, style, &rules, v.rules(), &decision);
                    }
                }
                let status = if v.allowed() {
                    200
                } else if v.source() == Source::FailClosed {
                    body.push_str(UNAVAILABLE_BODY);
                    503
                } else {
                    body = deciding.map_or_else(String::new, limited_body);
                    429
                };
                push_retry_after(&mut headers, &decision);
                (v.allowed(), status, deciding.map(|r| r.id().to_owned()))
            }
        };
        if !allowed {
            headers.push((CONTENT_TYPE, "application/json".to_owned()));
        }
        let shadow_denied = match &shadow {
            Some(v) if v.source() != Source::FailClosed => shadows
                .iter()
                .zip(v.rules())
                .filter(|(_, d)| !d.allowed)
                .map(|(item, _)| item.rule.id().to_owned())
                .collect(),
            _ => Vec::new(),
        };
        // Admitted with legacy headers only: `headers` is empty, and `legacy` says it all.
        let lazy = allowed && style == HeaderStyle::Legacy;
        Self {
            allowed,
            status,
            verdict,
            rule,
            shadow: shadow.map(Box::new),
            shadow_denied,
            legacy,
            headers: if lazy {
                OnceLock::new()
            } else {
                OnceLock::from(headers)
            },
            body,
            error,
        }
    }

    /// Whether the request goes through. False only when an enforced rule denies (or the store
    /// is down and a rule fails closed): shadow rules never block.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// 200 when allowed, 429 when limited, 503 when the store is down and a rule fails closed.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The enforced rules' verdict; `None` when the plan has no enforced rule or the call
    /// failed (see [`error`](Self::error)).
    #[must_use]
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// The combined decision of the enforced rules (the least remaining, or the longest wait).
    #[must_use]
    pub fn decision(&self) -> Option<Decision> {
        self.verdict.as_ref().map(Verdict::decision)
    }

    /// The id of the rule the decision reports (route rules under their scoped id).
    #[must_use]
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The shadow rules' verdict, when they were decided.
    #[must_use]
    pub fn shadow(&self) -> Option<&Verdict> {
        self.shadow.as_deref()
    }

    /// The ids of the shadow rules that would have denied the request.
    #[must_use]
    pub fn shadow_denied(&self) -> &[String] {
        &self.shadow_denied
    }

    /// The response headers (lowercase names); see the type docs.
    #[must_use]
    pub fn headers(&self) -> &[(&'static str, String)] {
        self.headers.get_or_init(|| {
            let mut headers = HeaderList::new();
            if let Some(legacy) = self.legacy {
                legacy.push_to(&mut headers);
            }
            headers
        })
    }

    /// The numbers of the legacy `x-ratelimit-*` headers, when [`headers`](Self::headers)
    /// has them (the header style includes them and a store counted the request).
    #[must_use]
    pub fn legacy_headers(&self) -> Option<LegacyHeaders> {
        self.legacy
    }

    /// The JSON body of a refusal; empty when allowed.
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Whether the store was unavailable and the decision is a stand-in.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.verdict.as_ref().is_some_and(Verdict::is_degraded)
    }

    /// An error the limiter could not turn into a verdict, for logging (the request was
    /// answered anyway).
    #[must_use]
    pub fn error(&self) -> Option<&CoreError> {
        self.error.as_ref()
    }
}

fn push_retry_after(headers: &mut HeaderList, decision: &Decision) {
    if decision.allowed {
        return;
    }
    if let Some(secs) = decision.retry_after_secs() {
        headers.push((RETRY_AFTER, secs.to_string()));
    }
}
