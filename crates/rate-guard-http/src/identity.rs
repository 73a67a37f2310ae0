//! Identity strings: whose quota a rule counts, as it appears in keys.
//!
//! | key spec | identity |
//! | --- | --- |
//! | `ip` | `ip:203.0.113.9`, `ip:2001:db8:1:2::/64` (see [`ClientIp::identity`](crate::ClientIp::identity)) |
//! | `global` | `global` |
//! | `user` | `user:<id>` |
//! | `header:<Name>` | `header:<lowercase name>:<value>` |
//! | `jwt:<claim>` | `jwt:<claim>:<value>` |
//! | `custom` | `custom:<value>` |
//!
//! Values are written as received, with two exceptions that keep the mapping injective for
//! header values, which are bytes: a byte that is not part of valid UTF-8 is written `\xNN`
//! (two lowercase hex digits), and a backslash is written `\\`. Leading and trailing spaces and
//! tabs of a header value are dropped (they are not part of an HTTP field value).
//!
//! Nothing here bounds or escapes for the store: the core's
//! [`KeyBuilder`](rate_guard_core::KeyBuilder) percent-encodes every identity and replaces one
//! longer than 128 bytes by its SHA-256, so no value can leave its braces or make a huge key.

use std::fmt::Write as _;

/// The identity of the one bucket shared by every client.
pub const GLOBAL: &str = "global";

/// `user:<id>`.
#[must_use]
pub fn user(id: &str) -> String {
    tagged("user:", id)
}

/// `custom:<value>`.
#[must_use]
pub fn custom(value: &str) -> String {
    tagged("custom:", value)
}

/// `header:<name>:<value>`, `name` already lowercase, `value` escaped (see the module docs).
#[must_use]
pub fn header(name: &str, value: &[u8]) -> String {
    let mut out = String::with_capacity(8 + name.len() + value.len());
    out.push_str("header:");
    out.push_str(name);
    out.push(':');
    push_escaped(&mut out, value);
    out
}

/// `jwt:<claim>:<value>`.
#[must_use]
pub fn jwt(claim: &str, value: &str) -> String {
    let mut out = String::with_capacity(5 + claim.len() + value.len());
    out.push_str("jwt:");
    out.push_str(claim);
    out.push(':');
    out.push_str(value);
    out
}

/// The value of `identity` without its kind tag: the address (or network) of `ip:…`, the id
/// of `user:…`, the value of `header:<name>:…`, `jwt:<claim>:…` and `custom:…` (as written in
/// the identity, see the module docs), `global` as is. This is what a limit callable taking
/// one argument is given, as slowapi gives the key function's value. Header and claim names
/// cannot contain `:`, so the split is exact.
#[must_use]
pub fn value(identity: &str) -> &str {
    let Some((tag, rest)) = identity.split_once(':') else {
        return identity;
    };
    match tag {
        "ip" | "user" | "custom" => rest,
        "header" | "jwt" => rest.split_once(':').map_or(rest, |(_, value)| value),
        _ => identity,
    }
}

fn tagged(tag: &str, value: &str) -> String {
    let mut out = String::with_capacity(tag.len() + value.len());
    out.push_str(tag);
    out.push_str(value);
    out
}

/// Appends `bytes`: valid UTF-8 as is, `\` as `\\`, every other byte as `\xNN`.
fn push_escaped(out: &mut String, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let (valid, rest) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // `valid_up_to` marks the end of the longest valid prefix.
                (std::str::from_utf8(valid).unwrap_or_default(), rest)
            }
        };
        for c in valid.chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        if let Some((&bad, rest)) = rest.split_first() {
            let _ = write!(out, "\\x{bad:02x}");
            bytes = rest;
        } else {
            bytes = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identities_have_their_kind_in_front() {
        assert_eq!(user("42"), "user:42");
        assert_eq!(custom("tenant-7"), "custom:tenant-7");
        assert_eq!(header("x-api-key", b"abc"), "header:x-api-key:abc");
        assert_eq!(jwt("sub", "alice"), "jwt:sub:alice");
    }

    #[test]
    fn values_are_identities_without_their_kind() {
        assert_eq!(value("ip:203.0.113.7"), "203.0.113.7");
        assert_eq!(value("ip:2001:db8:1:2::/64"), "2001:db8:1:2::/64");
        assert_eq!(value(&user("ip:1.2.3.4")), "ip:1.2.3.4");
        assert_eq!(value(&custom("a:b")), "a:b");
        assert_eq!(value(&header("x-api-key", b"k:1")), "k:1");
        assert_eq!(value(&jwt("sub", "a:b")), "a:b");
        assert_eq!(value(GLOBAL), "global");
    }

    #[test]
    fn header_values_escape_only_what_is_not_text() {
        assert_eq!(header("k", "é".as_bytes()), "header:k:é");
        assert_eq!(header("k", b"a\\b"), "header:k:a\\\\b");
        assert_eq!(header("k", b"a\xffb"), "header:k:a\\xffb");
        assert_eq!(header("k", b"\xc3"), "header:k:\\xc3");
        // The escape of a byte and the text that reads like it differ.
        assert_ne!(header("k", b"\xff"), header("k", b"\\xff"));
    }

    proptest! {
        #[test]
        fn header_escaping_is_injective(a in proptest::collection::vec(any::<u8>(), 0..24),
                                        b in proptest::collection::vec(any::<u8>(), 0..24)) {
            if a != b {
                prop_assert_ne!(header("k", &a), header("k", &b));
            }
        }

        #[test]
        fn header_escaping_grows_at_most_fourfold(v in proptest::collection::vec(any::<u8>(), 0..256)) {
            let id = header("k", &v);
            prop_assert!(id.len() <= "header:k:".len() + 4 * v.len());
        }
    }
}
