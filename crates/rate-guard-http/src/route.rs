//! Route scoping: a rule applied to a route counts apart from the same rule anywhere else.
//!
//! # The scoped rule id (part of the cross-language key schema)
//!
//! A rule on a route is stored under the id
//!
//! ```text
//! rt.<h>.<rule id>
//! ```
//!
//! where `<h>` is the first 16 lowercase hex digits (64 bits) of the SHA-256 of the UTF-8 bytes
//!
//! ```text
//! "rate-guard-route-v1\n" + METHOD + "\n" + rule id + "\n" + template
//! ```
//!
//! - `template` is the route's path template exactly as the framework declares it
//!   (`/items/{item_id}`), never the raw URL, so `/items/1` and `/items/2` share one quota;
//! - `METHOD` is the method in upper case when the limit is per method, `*` when it covers
//!   every method of the route;
//! - the whole id is cut to [`MAX_RULE_ID_LEN`] (64) characters, which can shorten only the
//!   readable rule id at its end: the hash covers the full one.
//!
//! Neither the method nor the rule id can hold `\n` and the template comes last, so the hashed
//! text names one (method, rule, template) only. The id holds only characters the core accepts
//! (the template's `{ } :` never appear in it), derived rule ids never start with `rt.` (nor `sc.`), and a
//! [`Front`](crate::Front) refuses global rules named `rt.…`, so a scoped rule never shares
//! state with the same rule globally or on another route. A Rust service and a Python service
//! that declare the same route template and rule get the same id, hence the same keys:
//!
//! ```
//! use rate_guard_core::{KeyBuilder, Quota, Rule};
//! use rate_guard_http::scoped_rule_id;
//!
//! let rule = Rule::builder("5/minute".parse::<Quota>()?).build()?;
//! let id = scoped_rule_id(&rule, "/items/{item_id}", None);
//! assert_eq!(id, "rt.67276a996a53c04d.sliding_window.5.60s");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A rule of rate 0 (`"0/minute"`, [`Rule::refuses_all`]) keeps its scoped id like any other,
//! but no key is ever made of it: the limiter refuses the request without that rule reaching
//! a store, and the route's other rules are only peeked.
//!
//! # The shared-scope rule id (one quota for several routes)
//!
//! A route may instead put its limits in a named **shared scope** (slowapi's
//! `shared_limit(..., scope=...)`, django-ratelimit's `group=`). Every limit of such a route
//! is stored under
//!
//! ```text
//! sc.<h>.<rule id>
//! ```
//!
//! where `<h>` is the first 16 lowercase hex digits of the SHA-256 of
//!
//! ```text
//! "rate-guard-scope-v1\n" + scope + "\n" + rule id
//! ```
//!
//! The route's template and method are **not** in it: every route that declares the scope
//! and the rule counts against one quota, whichever route or method the request took, in
//! every language. A scope name is 1 to [`MAX_SCOPE_LEN`] (64) characters without control
//! characters (so the hashed text names one (scope, rule) only); the id is cut to
//! [`MAX_RULE_ID_LEN`] characters like a route's. A front refuses global rules named `sc.…`
//! as it refuses `rt.…`, so a shared rule never shares state with a global or route rule:
//!
//! ```
//! use rate_guard_core::{Quota, Rule};
//! use rate_guard_http::route::shared_rule_id;
//!
//! let rule = Rule::builder("5/minute".parse::<Quota>()?).build()?;
//! let id = shared_rule_id(&rule, "uploads");
//! assert!(id.starts_with("sc.") && id.ends_with(".sliding_window.5.60s"));
//! assert_eq!(id.len(), "sc.".len() + 16 + 1 + rule.id().len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use rate_guard_core::metrics;
use rate_guard_core::{Rule, MAX_RULE_ID_LEN};
use sha2::{Digest, Sha256};

use crate::error::{clip, Error};
use crate::key_spec::is_tchar;
use crate::limit::Limit;

/// The start of every route-scoped rule id.
pub const SCOPED_PREFIX: &str = "rt.";

/// The start of every shared-scope rule id.
pub const SHARED_PREFIX: &str = "sc.";

/// The longest shared scope name, in characters.
pub const MAX_SCOPE_LEN: usize = 64;

/// The longest route template accepted, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 2048;

/// The id of `rule` scoped to `template` (and `method`, when given); see the module docs.
/// `method` is upper-cased here.
#[must_use]
pub fn scoped_rule_id(rule: &Rule, template: &str, method: Option<&str>) -> String {
    let method = method.map_or_else(|| "*".to_owned(), str::to_ascii_uppercase);
    let mut hasher = Sha256::new();
    hasher.update(b"rate-guard-route-v1\n");
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(rule.id().as_bytes());
    hasher.update(b"\n");
    hasher.update(template.as_bytes());
    prefixed_id(SCOPED_PREFIX, &hasher.finalize(), rule)
}

/// The id of `rule` in the shared scope `scope` (see the module docs); `scope` is not
/// checked here ([`Front::shared_route`](crate::Front::shared_route) checks it).
#[must_use]
pub fn shared_rule_id(rule: &Rule, scope: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"rate-guard-scope-v1\n");
    hasher.update(scope.as_bytes());
    hasher.update(b"\n");
    hasher.update(rule.id().as_bytes());
    prefixed_id(SHARED_PREFIX, &hasher.finalize(), rule)
}

/// Whether `id` is one that only routes may give a rule (`rt.…`, `sc.…`): the prefix, if so.
#[must_use]
pub fn reserved_prefix(id: &str) -> Option<&'static str> {
    [SCOPED_PREFIX, SHARED_PREFIX]
        .into_iter()
        .find(|prefix| id.starts_with(prefix))
}

/// `prefix`, the first 64 bits of `digest` in hex, `.`, the rule's id; cut to
/// [`MAX_RULE_ID_LEN`].
fn prefixed_id(prefix: &str, digest: &[u8], rule: &Rule) -> String {
    let mut id = String::with_capacity(MAX_RULE_ID_LEN);
    id.push_str(prefix);
    for b in &digest[..8] {
        let _ = write!(id, "{b:02x}");
    }
    id.push('.');
    id.push_str(rule.id());
    // Rule ids are ASCII, so cutting at a byte count cuts at a character.
    id.truncate(MAX_RULE_ID_LEN);
    id
}

/// The limits of one route (a decorated endpoint): its rules scoped to its template and
/// optionally its method, or put in a named shared scope. Built once per route with
/// [`Front::route`](crate::Front::route) or [`Front::shared_route`](crate::Front::shared_route);
/// cheap to clone.
#[derive(Debug, Clone)]
pub struct RouteLimits {
    pub(crate) inner: Arc<RouteInner>,
}

#[derive(Debug)]
pub(crate) struct RouteInner {
    pub(crate) template: String,
    pub(crate) method: Option<String>,
    /// The shared scope the limits count in, if any.
    pub(crate) scope: Option<String>,
    /// The limits, their rules renamed to the scoped ids.
    pub(crate) limits: Vec<Limit>,
    /// The ids the rules were declared with, in the same order.
    pub(crate) declared: Vec<String>,
}

impl RouteLimits {
    /// Scopes `limits` to `template` (and `method`), or to the shared `scope` when given;
    /// every rule gets its scoped id.
    pub(crate) fn new(
        template: &str,
        method: Option<&str>,
        scope: Option<&str>,
        limits: impl IntoIterator<Item = Limit>,
    ) -> Result<Self, Error> {
        let bad = |route: &str, reason| Error::Route {
            route: clip(route, 80),
            reason,
        };
        if template.is_empty() {
            return Err(bad(template, "the template is empty"));
        }
        if template.len() > MAX_TEMPLATE_LEN {
            return Err(bad(template, "the template is longer than 2048 bytes"));
        }
        if template.chars().any(char::is_control) {
            return Err(bad(template, "the template holds control characters"));
        }
        if let Some(m) = method {
            if m.is_empty() || m.len() > 32 || !m.bytes().all(is_tchar) {
                return Err(bad(m, "a method is a non-empty HTTP token such as GET"));
            }
        }
        if let Some(scope) = scope {
            check_scope(scope)?;
        }
        let mut scoped: Vec<Limit> = Vec::new();
        // The rules as declared, for error messages.
        let mut declared: Vec<Rule> = Vec::new();
        for limit in limits {
            let id = match scope {
                Some(scope) => shared_rule_id(&limit.rule, scope),
                None => scoped_rule_id(&limit.rule, template, method),
            };
            let rule = rename(&limit.rule, &id)?;
            // One id, one definition (scoped ids are equal exactly when the ids are).
            if let Some(i) = scoped
                .iter()
                .position(|l| l.rule.id() == rule.id() && l.rule != rule)
            {
                return Err(Error::duplicate(&declared[i], &limit.rule));
            }
            declared.push(limit.rule.clone());
            // Its metrics keep the rule's own name and gain the route's template as a label.
            let counters = metrics::register(limit.rule.id(), template, rule.algorithm());
            scoped.push(Limit {
                rule,
                counters,
                ..limit
            });
        }
        Ok(Self {
            inner: Arc::new(RouteInner {
                template: template.to_owned(),
                method: method.map(str::to_ascii_uppercase),
                scope: scope.map(str::to_owned),
                limits: scoped,
                declared: declared.into_iter().map(|r| r.id().to_owned()).collect(),
            }),
        })
    }

    /// The route's path template.
    #[must_use]
    pub fn template(&self) -> &str {
        &self.inner.template
    }

    /// The method the limits apply to (upper case), or `None` for every method.
    #[must_use]
    pub fn method(&self) -> Option<&str> {
        self.inner.method.as_deref()
    }

    /// The shared scope the limits count in (`None`: this route's own quota).
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.inner.scope.as_deref()
    }

    /// The limits, with their scoped rules.
    #[must_use]
    pub fn limits(&self) -> &[Limit] {
        &self.inner.limits
    }

    /// The id a rule of this route was declared with (its name in metrics and logs), given its
    /// scoped id; `None` when no rule of the route has that id.
    #[must_use]
    pub fn declared_id(&self, scoped: &str) -> Option<&str> {
        let i = self
            .inner
            .limits
            .iter()
            .position(|l| l.rule.id() == scoped)?;
        Some(&self.inner.declared[i])
    }
}

/// Checks a shared scope's name: 1 to [`MAX_SCOPE_LEN`] characters, no control character.
///
/// # Errors
///
/// [`Error::Scope`] saying what is wrong with the name.
pub fn check_scope(scope: &str) -> Result<(), Error> {
    let bad = |reason| Error::Scope {
        scope: clip(scope, 80),
        reason,
    };
    if scope.is_empty() {
        return Err(bad("a scope name is 1 to 64 characters; this one is empty"));
    }
    if scope.chars().count() > MAX_SCOPE_LEN {
        return Err(bad(
            "a scope name is 1 to 64 characters; this one is longer",
        ));
    }
    if scope.chars().any(char::is_control) {
        return Err(bad("a scope name holds no control characters"));
    }
    Ok(())
}

/// `rule` under another id, everything else kept.
fn rename(rule: &Rule, id: &str) -> Result<Rule, Error> {
    let mut builder = Rule::builder_of(rule.rate())
        .algorithm(rule.algorithm())
        .name(id);
    if let Some(burst) = rule.burst() {
        builder = builder.burst(burst.get());
    }
    if let Some(fail_open) = rule.fail_open() {
        builder = builder.fail_open(fail_open);
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rate_guard_core::{Algorithm, Quota};

    fn rule(limit: &str) -> Rule {
        Rule::builder(limit.parse::<Quota>().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn scoped_ids_differ_by_template_method_and_rule() {
        let five = rule("5/minute");
        let ids = [
            scoped_rule_id(&five, "/items/{id}", None),
            scoped_rule_id(&five, "/items/{id}", Some("GET")),
            scoped_rule_id(&five, "/items/{id}", Some("POST")),
            scoped_rule_id(&five, "/items/{item_id}", None),
            scoped_rule_id(&five, "/items", None),
            scoped_rule_id(&rule("6/minute"), "/items/{id}", None),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert!(a.starts_with("rt.") && a.len() <= MAX_RULE_ID_LEN, "{a}");
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            scoped_rule_id(&five, "/items/{id}", Some("get")),
            scoped_rule_id(&five, "/items/{id}", Some("GET"))
        );
    }

    #[test]
    fn long_rule_ids_are_cut_but_stay_distinct() {
        let a = Rule::builder("1/s".parse::<Quota>().unwrap())
            .name("x".repeat(64))
            .build()
            .unwrap();
        let b = Rule::builder("1/s".parse::<Quota>().unwrap())
            .name(format!("{}y", "x".repeat(63)))
            .build()
            .unwrap();
        let (ia, ib) = (scoped_rule_id(&a, "/", None), scoped_rule_id(&b, "/", None));
        assert_eq!(ia.len(), MAX_RULE_ID_LEN);
        assert_ne!(ia, ib);
    }

    #[test]
    fn routes_keep_everything_but_the_id() {
        let bucket = Rule::builder("10/second".parse::<Quota>().unwrap())
            .algorithm(Algorithm::TokenBucket)
            .burst(3)
            .fail_open(false)
            .build()
            .unwrap();
        let route =
            RouteLimits::new("/login", Some("post"), None, [Limit::new(bucket.clone())]).unwrap();
        assert_eq!(route.method(), Some("POST"));
        let scoped = &route.limits()[0].rule;
        assert_eq!(scoped.id(), scoped_rule_id(&bucket, "/login", Some("POST")));
        assert_eq!(scoped.quota(), bucket.quota());
        assert_eq!(scoped.algorithm(), Algorithm::TokenBucket);
        assert_eq!(scoped.capacity(), 3);
        assert_eq!(scoped.fail_open(), Some(false));
        assert_eq!(route.declared_id(scoped.id()), Some(bucket.id()));
        assert_eq!(route.declared_id(bucket.id()), None);
    }

    #[test]
    fn bad_routes_are_named() {
        let limits = || [Limit::new(rule("1/s"))];
        for (template, method, reason) in [
            ("", None, "empty"),
            ("/a\nb", None, "control"),
            ("/a", Some("GE T"), "method"),
            ("/a", Some(""), "method"),
        ] {
            let err = RouteLimits::new(template, method, None, limits())
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "{err}");
        }
        let named = |limit: &str| {
            Rule::builder(limit.parse::<Quota>().unwrap())
                .name("same")
                .build()
                .unwrap()
        };
        let err = RouteLimits::new(
            "/a",
            None,
            None,
            [Limit::new(named("1/s")), Limit::new(named("2/s"))],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "two different rules share the id \"same\": 1/second (sliding_window, id same) \
             and 2/second (sliding_window, id same); give one of them another name"
        );
        // The same rule twice is one bucket, not a mistake.
        assert!(RouteLimits::new(
            "/a",
            None,
            None,
            [Limit::new(rule("1/s")), Limit::new(rule("1/s"))]
        )
        .is_ok());
    }

    #[test]
    fn shared_ids_ignore_template_and_method() {
        let five = rule("5/minute");
        let on = |template, method| {
            RouteLimits::new(
                template,
                method,
                Some("uploads"),
                [Limit::new(five.clone())],
            )
            .unwrap()
            .limits()[0]
                .rule
                .id()
                .to_owned()
        };
        let id = on("/a", None);
        assert_eq!(id, shared_rule_id(&five, "uploads"));
        assert_eq!(on("/b/{x}", Some("POST")), id);
        assert!(id.starts_with("sc.") && id.len() <= MAX_RULE_ID_LEN, "{id}");
        // Another scope, another rule, or no scope: another quota.
        assert_ne!(shared_rule_id(&five, "Uploads"), id);
        assert_ne!(shared_rule_id(&rule("6/minute"), "uploads"), id);
        assert_ne!(scoped_rule_id(&five, "/a", None), id);
        let route = RouteLimits::new(
            "/a",
            Some("get"),
            Some("uploads"),
            [Limit::new(five.clone())],
        )
        .unwrap();
        assert_eq!(
            (route.scope(), route.method()),
            (Some("uploads"), Some("GET"))
        );
        assert_eq!(route.declared_id(&id), Some(five.id()));
    }

    #[test]
    fn shared_ids_are_pinned() {
        // Part of the cross-language key schema: a change here splits every shared quota.
        let five = rule("5/minute");
        let mut hasher = Sha256::new();
        hasher.update(b"rate-guard-scope-v1\nuploads\nsliding_window.5.60s");
        let mut hex = String::new();
        for b in &hasher.finalize()[..8] {
            let _ = write!(hex, "{b:02x}");
        }
        assert_eq!(
            shared_rule_id(&five, "uploads"),
            format!("sc.{hex}.sliding_window.5.60s")
        );
    }

    #[test]
    fn bad_scopes_are_named() {
        for (scope, reason) in [
            ("", "empty"),
            ("a\nb", "control"),
            ("tab\there", "control"),
            (&*"s".repeat(65), "longer"),
        ] {
            let err = RouteLimits::new("/a", None, Some(scope), [Limit::new(rule("1/s"))])
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason) && err.contains("scope"), "{err}");
        }
        let longest = "é".repeat(MAX_SCOPE_LEN);
        assert!(RouteLimits::new("/a", None, Some(&longest), [Limit::new(rule("1/s"))]).is_ok());
        assert_eq!(reserved_prefix("sc.x"), Some("sc."));
        assert_eq!(reserved_prefix("rt.x"), Some("rt."));
        assert_eq!(reserved_prefix("scx"), None);
    }
}
