//! [`Cidr`]: a block of addresses (`10.0.0.0/8`, `2001:db8::/32`), and address normalization.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{clip, Error};

/// A block of addresses: `10.0.0.0/8`, `2001:db8::/32`, or one address (`/32` or `/128`).
///
/// IPv4-mapped IPv6 blocks (`::ffff:10.0.0.0/104`) are the IPv4 blocks they map
/// (`10.0.0.0/8`), and host bits below the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
///
/// ```
/// use rate_guard_http::Cidr;
///
/// let block: Cidr = "10.0.0.0/8".parse()?;
/// assert!(block.contains("10.200.0.1".parse()?));
/// assert!(block.contains("::ffff:10.0.0.1".parse()?)); // IPv4-mapped IPv6
/// assert!(!block.contains("11.0.0.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block of `prefix` leading bits around `addr` (normalized, host bits cleared).
    /// `None` when the prefix is longer than the address.
    #[must_use]
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (IpAddr::V6(v6), prefix),
            },
            v4 @ IpAddr::V4(_) => (v4, prefix),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then(|| Self {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// The first address of the block.
    #[must_use]
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` (normalized: IPv4-mapped IPv6 is IPv4) lies in the block.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = normalize(addr);
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix) == self.network
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::TrustedProxy {
            value: clip(s, 64),
            reason,
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| bad("expected an IP address or a CIDR block such as 10.0.0.0/8"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| {
                    bad("the prefix length is not a number from 0 to 32 (IPv4) or 128 (IPv6)")
                })?,
        };
        Cidr::new(addr, prefix).ok_or_else(|| bad("the prefix length is too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as the IPv4 address it maps; other addresses unchanged.
#[must_use]
pub fn normalize(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// `addr` with the bits after the first `prefix` cleared (`prefix` at most the address width).
pub(crate) fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & kept))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & kept))
        }
    }
}

/// Parses an address as proxies and servers write them: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`, `fe80::1%eth0`. Normalized (see [`normalize`]).
/// `None` for anything else, and for anything longer than 64 bytes.
#[must_use]
pub fn parse_addr(s: &str) -> Option<IpAddr> {
    if s.len() > 64 {
        return None;
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Some(normalize(addr));
    }
    let addr = if let Some(rest) = s.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || is_port(after.strip_prefix(':')?)) {
            return None;
        }
        IpAddr::V6(strip_zone(inner).parse().ok()?)
    } else if let Some((host, port)) = s.split_once(':').filter(|(h, _)| !h.contains(':')) {
        // `v4:port` (one colon only: more would be IPv6)
        if port.contains(':') || !is_port(port) {
            return strip_zone_v6(s);
        }
        IpAddr::V4(host.parse().ok()?)
    } else {
        return strip_zone_v6(s);
    };
    Some(normalize(addr))
}

fn strip_zone_v6(s: &str) -> Option<IpAddr> {
    let (addr, zone) = s.split_once('%')?;
    if zone.is_empty() {
        return None;
    }
    addr.parse::<Ipv6Addr>()
        .ok()
        .map(|v6| normalize(IpAddr::V6(v6)))
}

fn strip_zone(s: &str) -> &str {
    s.split_once('%').map_or(s, |(addr, _)| addr)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_contain() {
        let v4: Cidr = "192.168.1.7/16".parse().unwrap();
        assert_eq!(v4.to_string(), "192.168.0.0/16");
        assert!(v4.contains(ip("192.168.255.1")));
        assert!(!v4.contains(ip("192.169.0.1")));
        assert!(!v4.contains(ip("::1")));
        let one: Cidr = "10.0.0.1".parse().unwrap();
        assert!(one.contains(ip("10.0.0.1")) && !one.contains(ip("10.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::2")));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!("10.0.0.0/8"
            .parse::<Cidr>()
            .unwrap()
            .contains(ip("::ffff:10.1.1.1")));
    }

    #[test]
    fn bad_blocks_are_named() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/x",
            "unix/8",
            "10.0.0.0/-1",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn addresses_parse_in_every_form_proxies_write() {
        let cases = [
            ("1.2.3.4", Some("1.2.3.4")),
            ("1.2.3.4:8080", Some("1.2.3.4")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("fe80::1%eth0", Some("fe80::1")),
            ("[fe80::1%25eth0]:80", Some("fe80::1")),
            ("::ffff:1.2.3.4", Some("1.2.3.4")),
            ("[::ffff:1.2.3.4]:9", Some("1.2.3.4")),
            ("1.2.3.4:", None),
            ("1.2.3.4:123456", None),
            ("[2001:db8::1]x", None),
            ("[2001:db8::1", None),
            ("unknown", None),
            ("_hidden", None),
            ("1.2.3", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_addr(input), expected.map(ip), "{input:?}");
        }
        assert_eq!(parse_addr(&format!("1.2.3.4:{}", "0".repeat(70))), None);
    }
}
