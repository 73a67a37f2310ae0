//! The hops of `X-Forwarded-For` and RFC 7239 `Forwarded` fields, right-most first.
//!
//! Both parsers run in time linear in the field's length and never keep more than
//! [`MAX_HOPS`] hops, whatever a client sends. A hop is `Some(address)`, or `None` when it is
//! not an address: garbage, `unknown`, an obfuscated node (`_hidden`), a `Forwarded` element
//! without `for=`, an unterminated quoted string.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::cidr::parse_addr;
use crate::headers::trim_ows;

/// The most hops looked at, right-most first. A chain longer than this is cut at the right-most
/// `MAX_HOPS`: only trusted proxies can have written them, and no deployment has 32.
pub const MAX_HOPS: usize = 32;

/// One entry of a forwarding chain: an address, or `None` when the entry is not one.
pub(crate) type Hop = Option<IpAddr>;

/// The hops of one `X-Forwarded-For` field, right-most first (at most [`MAX_HOPS`]).
/// Empty list elements (`a,,b`, a trailing comma) are skipped.
pub(crate) fn x_forwarded_for(value: &[u8]) -> impl Iterator<Item = Hop> + '_ {
    value
        .rsplit(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
        .take(MAX_HOPS)
        .map(parse_node)
}

/// The `for=` hops of one `Forwarded` field, right-most first (at most [`MAX_HOPS`]).
pub(crate) fn forwarded(value: &[u8]) -> impl Iterator<Item = Hop> {
    let mut hops: VecDeque<Hop> = VecDeque::new();
    let mut parser = Parser { s: value, i: 0 };
    while let Some(element) = parser.element() {
        if let Element::Hop(hop) = element {
            if hops.len() == MAX_HOPS {
                hops.pop_front();
            }
            hops.push_back(hop);
        }
    }
    hops.into_iter().rev()
}

/// A node as both fields write it (`1.2.3.4`, `[2001:db8::1]:443`, ...); `None` otherwise.
fn parse_node(node: &[u8]) -> Hop {
    std::str::from_utf8(node).ok().and_then(parse_addr)
}

/// One element of a `Forwarded` field.
enum Element {
    /// An element: its `for=` node (`None` when there is none, or it is not an address).
    Hop(Hop),
    /// Nothing between two commas.
    Empty,
}

/// A cursor over a `Forwarded` field: `element *( "," element )`, where an element is
/// `pair *( ";" pair )` and a pair is `token "=" ( token / quoted-string )`.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    /// The next element, or `None` at the end of the field.
    fn element(&mut self) -> Option<Element> {
        if self.i >= self.s.len() {
            return None;
        }
        let mut for_value: Option<Hop> = None;
        let mut malformed = false;
        let mut empty = true;
        loop {
            self.skip_ows();
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.i += 1;
                    break;
                }
                Some(b';') => {
                    self.i += 1;
                    continue;
                }
                Some(_) => {}
            }
            empty = false;
            let name_start = self.i;
            while let Some(b) = self.peek() {
                if matches!(b, b'=' | b';' | b',' | b'"') {
                    break;
                }
                self.i += 1;
            }
            let name = trim_ows(&self.s[name_start..self.i]);
            if self.peek() != Some(b'=') {
                // A pair without a value, or a stray quote: the element cannot be read.
                malformed = true;
                if self.peek() == Some(b'"') {
                    let _ = self.quoted();
                }
                continue;
            }
            self.i += 1;
            self.skip_ows();
            let is_for = name.eq_ignore_ascii_case(b"for");
            let hop = if self.peek() == Some(b'"') {
                self.quoted().and_then(|q| parse_node(&q))
            } else {
                let start = self.i;
                while let Some(b) = self.peek() {
                    if matches!(b, b';' | b',') {
                        break;
                    }
                    self.i += 1;
                }
                if is_for {
                    parse_node(trim_ows(&self.s[start..self.i]))
                } else {
                    None
                }
            };
            if is_for {
                // Two `for=` in one element cannot both be right.
                malformed |= for_value.is_some();
                for_value = Some(hop);
            }
        }
        if empty {
            return Some(Element::Empty);
        }
        Some(Element::Hop(if malformed {
            None
        } else {
            for_value.flatten()
        }))
    }

    /// A quoted string starting at the cursor, unescaped; `None` when it never ends. Values
    /// longer than 64 bytes are not kept (no address is that long), but still skipped.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let mut out = Vec::new();
        let mut too_long = false;
        while let Some(b) = self.peek() {
            self.i += 1;
            let b = match b {
                b'"' => return (!too_long).then_some(out),
                b'\\' => match self.peek() {
                    Some(escaped) => {
                        self.i += 1;
                        escaped
                    }
                    None => break,
                },
                b => b,
            };
            if out.len() < 65 {
                out.push(b);
            } else {
                too_long = true;
            }
        }
        None
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(v: Vec<Hop>) -> Vec<Option<String>> {
        v.into_iter().map(|h| h.map(|ip| ip.to_string())).collect()
    }

    fn s(items: &[Option<&str>]) -> Vec<Option<String>> {
        items.iter().map(|h| h.map(str::to_owned)).collect()
    }

    #[test]
    fn xff_hops_come_right_most_first() {
        let got =
            hops(x_forwarded_for(b"1.1.1.1, 2.2.2.2:80,[2001:db8::1]:443 ,, junk,").collect());
        assert_eq!(
            got,
            s(&[None, Some("2001:db8::1"), Some("2.2.2.2"), Some("1.1.1.1")])
        );
        assert_eq!(x_forwarded_for(b"").count(), 0);
        assert_eq!(x_forwarded_for(b" , ,").count(), 0);
        assert_eq!(
            x_forwarded_for(&[0xff, b',', b'1']).collect::<Vec<_>>(),
            [None, None]
        );
    }

    #[test]
    fn xff_keeps_at_most_max_hops() {
        let long = "9.9.9.9,".repeat(1000);
        assert_eq!(x_forwarded_for(long.as_bytes()).count(), MAX_HOPS);
    }

    #[test]
    fn forwarded_reads_for_of_each_element() {
        let v = br#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", for=unknown, proto=https, for=_hidden"#;
        let got = hops(forwarded(v).collect());
        assert_eq!(
            got,
            s(&[
                None,
                None,
                None,
                Some("2001:db8:cafe::17"),
                Some("192.0.2.60")
            ])
        );
    }

    #[test]
    fn forwarded_quotes_may_hold_commas_and_escapes() {
        let v = br#"for="1.2.3.4";x="a,b;c\"d", for = "\5.6.7.8""#;
        assert_eq!(
            hops(forwarded(v).collect()),
            s(&[Some("5.6.7.8"), Some("1.2.3.4")])
        );
    }

    #[test]
    fn malformed_elements_are_garbage_hops() {
        for (v, expected) in [
            (&br#"for="1.2.3.4"#[..], s(&[None])),
            (b"for=1.2.3.4;for=5.6.7.8", s(&[None])),
            (b"for", s(&[None])),
            (
                br#"for=1.2.3.4;"oops", for=5.6.7.8"#,
                s(&[Some("5.6.7.8"), None]),
            ),
            (b",,for=1.2.3.4,,", s(&[Some("1.2.3.4")])),
            (br#"for=""#, s(&[None])),
        ] {
            assert_eq!(
                hops(forwarded(v).collect()),
                expected,
                "{}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn forwarded_keeps_the_right_most_max_hops() {
        let mut v = "for=1.1.1.1,".repeat(100);
        v.push_str("for=2.2.2.2");
        let got: Vec<Hop> = forwarded(v.as_bytes()).collect();
        assert_eq!(got.len(), MAX_HOPS);
        assert_eq!(got[0], Some("2.2.2.2".parse().unwrap()));
    }
}
