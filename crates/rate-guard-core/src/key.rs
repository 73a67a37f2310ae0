//! Storage keys, built here and nowhere else: `{prefix}:{rule_id}:{{identity}}`.
//!
//! - The prefix and the rule id come from configuration and are validated: no `:`, `{`, `}`
//!   or whitespace, so the parts of a key cannot run into one another.
//! - The identity comes from clients (an address, a header, a claim). It is percent-encoded
//!   outside `[A-Za-z0-9._~@/+=-]`, so it cannot hold `:`, `{` or `}`, and when the encoded
//!   form would pass [`MAX_IDENTITY_LEN`] bytes it is replaced by `#` and the hex SHA-256 of the
//!   raw identity (`#` is itself percent-encoded elsewhere, so the two forms cannot meet).
//!   Encoding is injective: no client value can name another client's key.
//! - The identity sits in braces, a Redis Cluster hash tag: all rules of one identity land in
//!   one slot, so a request's rules can be decided by one script.

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::rule::Rule;

/// The longest identity kept readable in a key (bytes, after escaping).
pub const MAX_IDENTITY_LEN: usize = 128;

/// The longest key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;

/// Builds every storage key: `{prefix}:{rule_id}:{{identity}}`.
///
/// ```
/// use rate_guard_core::{KeyBuilder, Quota, Rule};
///
/// let keys = KeyBuilder::new("rate_guard")?;
/// let rule = Rule::builder("5/minute".parse::<Quota>()?).name("login").build()?;
/// assert_eq!(keys.key(&rule, "ip:10.0.0.1"), "rate_guard:login:{ip:10.0.0.1}");
/// assert_eq!(keys.key(&rule, "user:a}b"), "rate_guard:login:{user:a%7Db}");
///
/// // Or appended to a buffer, several back to back.
/// let mut buffer = String::new();
/// keys.push_key(&mut buffer, &rule, "ip:10.0.0.1");
/// keys.push_key(&mut buffer, &rule, "user:a}b");
/// assert_eq!(buffer, "rate_guard:login:{ip:10.0.0.1}rate_guard:login:{user:a%7Db}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBuilder {
    prefix: String,
}

impl KeyBuilder {
    /// The default prefix, `rate_guard`.
    pub const DEFAULT_PREFIX: &'static str = "rate_guard";

    /// A builder for keys under `prefix`: at most 64 characters, none of `: { }` or whitespace.
    pub fn new(prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let bad = |reason| ConfigError::InvalidKeyPrefix {
            prefix: prefix.chars().take(MAX_PREFIX_LEN + 8).collect(),
            reason,
        };
        if prefix.is_empty() {
            return Err(bad("it is empty"));
        }
        if prefix.chars().count() > MAX_PREFIX_LEN {
            return Err(bad("it is longer than 64 characters"));
        }
        if prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '{' | '}'))
        {
            return Err(bad(
                "it may not contain ':', '{', '}', whitespace or control characters",
            ));
        }
        Ok(Self { prefix })
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of `rule`'s state for `identity`.
    #[must_use]
    pub fn key(&self, rule: &Rule, identity: &str) -> String {
        let identity = escape_identity(identity);
        let mut key =
            String::with_capacity(self.prefix.len() + rule.id().len() + identity.len() + 4);
        self.push_escaped(&mut key, rule, &identity);
        key
    }

    /// Appends [`key`](Self::key)`(rule, identity)` to `out` (several keys in one buffer).
    pub fn push_key(&self, out: &mut String, rule: &Rule, identity: &str) {
        self.push_escaped(out, rule, &escape_identity(identity));
    }

    fn push_escaped(&self, out: &mut String, rule: &Rule, identity: &str) {
        out.reserve(self.prefix.len() + rule.id().len() + identity.len() + 4);
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(rule.id());
        out.push_str(":{");
        out.push_str(identity);
        out.push('}');
    }
}

impl Default for KeyBuilder {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
        }
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'@' | b'/' | b'+' | b'=' | b'-')
}

/// The identity as it appears in keys: escaped, and hashed when long. See the module docs.
#[must_use]
pub fn escape_identity(identity: &str) -> Cow<'_, str> {
    let bytes = identity.as_bytes();
    let escaped_len: usize = bytes
        .iter()
        .map(|&b| if is_plain(b) || b == b':' { 1 } else { 3 })
        .sum();
    if escaped_len > MAX_IDENTITY_LEN {
        let digest = Sha256::digest(bytes);
        let mut out = String::with_capacity(1 + 2 * digest.len());
        out.push('#');
        for b in digest {
            let _ = write!(out, "{b:02x}");
        }
        return Cow::Owned(out);
    }
    // ':' separates the kinds inside an identity ("ip:1.2.3.4"); it is safe inside the braces
    // because the prefix and rule id, which come before, never hold one.
    if escaped_len == bytes.len() {
        return Cow::Borrowed(identity);
    }
    let mut out = String::with_capacity(escaped_len);
    for &b in bytes {
        if is_plain(b) || b == b':' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_validated() {
        for bad in ["", "a:b", "a{b", "a b", &"p".repeat(65)] {
            assert!(KeyBuilder::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(KeyBuilder::new("app-1/rl").unwrap().prefix(), "app-1/rl");
    }

    #[test]
    fn hostile_identities_cannot_leave_their_braces() {
        for hostile in ["a}b", "{x}", "a\nb", "é", "%7D", "#abc", "\0"] {
            let e = escape_identity(hostile);
            assert!(
                !e.contains(['{', '}', '\n', '#', '\0']),
                "{hostile:?} -> {e}"
            );
            assert!(e.is_ascii());
        }
        // The escape character itself is escaped, so encodings cannot collide.
        assert_ne!(escape_identity("%7D"), escape_identity("}"));
    }

    #[test]
    fn long_identities_are_hashed_and_bounded() {
        let long = "x".repeat(10_000);
        let e = escape_identity(&long);
        assert!(e.starts_with('#'));
        assert_eq!(e.len(), 65);
        assert_ne!(escape_identity(&"x".repeat(10_001)), e);
        assert_eq!(
            escape_identity(&"y".repeat(MAX_IDENTITY_LEN)).len(),
            MAX_IDENTITY_LEN
        );
        // 22 two-byte chars percent-encode to 132 bytes: hashed.
        assert!(escape_identity(&"é".repeat(22)).starts_with('#'));
    }
}
