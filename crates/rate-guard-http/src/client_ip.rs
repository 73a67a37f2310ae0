//! [`ClientIp`]: the client address of a request, behind trusted proxies only.
//!
//! - The peer (the socket's remote address) is the client unless it is a trusted proxy.
//! - When the peer is trusted, the configured forwarding field (`X-Forwarded-For` by default,
//!   or RFC 7239 `Forwarded`; never both, see [`ForwardedHeader`]) is walked from the right:
//!   trusted hops are skipped, and the first untrusted hop is the client. Every hop to its right
//!   was written by a trusted proxy, so a client can prepend whatever it likes without effect.
//! - A hop that is not an address (garbage, `unknown`, an obfuscated node, a malformed
//!   element) stops the walk: the client is the **last good hop**, the nearest trusted address
//!   walked (the peer when the garbage is right-most). So a proxy that writes junk groups its
//!   clients under itself rather than letting them choose a bucket.
//! - When every hop is trusted (or after [`MAX_HOPS`](crate::MAX_HOPS) trusted hops), the
//!   client is the left-most trusted hop walked.
//! - IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is IPv4 everywhere; IPv6 clients are grouped by a
//!   prefix (default /64: one site, one bucket), IPv4 clients are single addresses.
//! - A peer that is not an IP address (a Unix socket, a test client) is trusted only when
//!   `unix` is among the trusted proxies.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::cidr::{mask, parse_addr, Cidr};
use crate::error::{clip, Error};
use crate::forwarded::{self, Hop, MAX_HOPS};
use crate::headers::Headers;

/// Which forwarding field trusted proxies write. Only one is read: a proxy passes on the field
/// it does not write untouched, so a client could fill it with any address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, `HAProxy`, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:443"`.
    Forwarded,
}

impl ForwardedHeader {
    /// Every header.
    pub const ALL: [ForwardedHeader; 2] = [Self::XForwardedFor, Self::Forwarded];

    /// The field name, lowercase.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.eq_ignore_ascii_case("x-forwarded-for") {
            Ok(ForwardedHeader::XForwardedFor)
        } else if s.eq_ignore_ascii_case("forwarded") {
            Ok(ForwardedHeader::Forwarded)
        } else {
            Err(Error::ForwardedHeader(clip(s, 64)))
        }
    }
}

/// The remote end of a request's connection, as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer<'a> {
    /// An IP address (normalized: IPv4-mapped IPv6 is IPv4).
    Ip(IpAddr),
    /// Something else the server names the peer by (a Unix socket path, `testclient`).
    Named(&'a str),
    /// The server does not say.
    Unknown,
}

impl<'a> Peer<'a> {
    /// The peer from the server's string (`"10.0.0.1"`, `"[::1]:5000"`, `"testclient"`);
    /// `None` or an empty string is [`Peer::Unknown`].
    #[must_use]
    pub fn parse(peer: Option<&'a str>) -> Self {
        match peer {
            None | Some("") => Peer::Unknown,
            Some(s) => parse_addr(s).map_or(Peer::Named(s), Peer::Ip),
        }
    }
}

impl From<IpAddr> for Peer<'_> {
    fn from(addr: IpAddr) -> Self {
        Peer::Ip(crate::cidr::normalize(addr))
    }
}

/// Finds the client address of a request; see the module docs.
///
/// ```
/// use rate_guard_http::{ClientIp, ForwardedHeader, Peer};
///
/// let ips = ClientIp::new(["10.0.0.0/8"], ForwardedHeader::XForwardedFor, 64)?;
/// let via_proxy = [(&b"x-forwarded-for"[..], &b"6.6.6.6, 203.0.113.9, 10.0.0.2"[..])];
/// let peer = Peer::parse(Some("10.0.0.1"));
/// assert_eq!(ips.identity(&ips.resolve(peer, &via_proxy[..])), "ip:203.0.113.9");
/// // The same field from an untrusted peer is ignored.
/// let direct = Peer::parse(Some("198.51.100.1"));
/// assert_eq!(ips.identity(&ips.resolve(direct, &via_proxy[..])), "ip:198.51.100.1");
/// // IPv6 clients are grouped by /64.
/// let v6 = Peer::parse(Some("2001:db8:1:2:3:4:5:6"));
/// assert_eq!(ips.identity(&ips.resolve(v6, &via_proxy[..])), "ip:2001:db8:1:2::/64");
/// # Ok::<(), rate_guard_http::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp {
    trusted: Vec<Cidr>,
    trust_unix: bool,
    header: ForwardedHeader,
    ipv6_prefix: u8,
    ipv4_prefix: u8,
}

/// A request's client, as [`ClientIp::resolve`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client<'a> {
    /// An address.
    Ip(IpAddr),
    /// A peer that is not an address, named by the server.
    Named(&'a str),
    /// No peer and no trusted hop.
    Unknown,
}

impl<'a> From<Peer<'a>> for Client<'a> {
    fn from(peer: Peer<'a>) -> Self {
        match peer {
            Peer::Ip(ip) => Client::Ip(ip),
            Peer::Named(name) => Client::Named(name),
            Peer::Unknown => Client::Unknown,
        }
    }
}

impl Default for ClientIp {
    /// No trusted proxy (the peer is always the client), `X-Forwarded-For`, IPv6 by /64,
    /// IPv4 by address (/32).
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            trust_unix: false,
            header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
            ipv4_prefix: 32,
        }
    }
}

impl ClientIp {
    /// Trusts the proxies in `trusted` (addresses, CIDR blocks, or `unix` for peers that are
    /// not IP addresses), reads `header` from them, and groups IPv6 clients by `ipv6_prefix`
    /// bits (0 to 128).
    pub fn new<S: AsRef<str>>(
        trusted: impl IntoIterator<Item = S>,
        header: ForwardedHeader,
        ipv6_prefix: u32,
    ) -> Result<Self, Error> {
        let ipv6_prefix = u8::try_from(ipv6_prefix)
            .ok()
            .filter(|&p| p <= 128)
            .ok_or(Error::Ipv6Prefix(ipv6_prefix))?;
        let mut ips = Self {
            header,
            ipv6_prefix,
            ..Self::default()
        };
        for entry in trusted {
            let entry = entry.as_ref().trim();
            if entry.eq_ignore_ascii_case("unix") {
                ips.trust_unix = true;
            } else {
                ips.trusted.push(entry.parse()?);
            }
        }
        Ok(ips)
    }

    /// The same, counting IPv4 clients per network of `prefix` bits (1 to 32; 32, the default,
    /// counts each address): `ip:203.0.113.0/24` for every address of that /24.
    ///
    /// ```
    /// use rate_guard_http::{ClientIp, ForwardedHeader, Peer};
    ///
    /// let ips = ClientIp::new([""; 0], ForwardedHeader::XForwardedFor, 64)?.with_ipv4_prefix(24)?;
    /// let none: [(&[u8], &[u8]); 0] = [];
    /// let client = ips.resolve(Peer::parse(Some("203.0.113.77")), &none[..]);
    /// assert_eq!(ips.identity(&client), "ip:203.0.113.0/24");
    /// assert!(ClientIp::default().with_ipv4_prefix(33).is_err());
    /// # Ok::<(), rate_guard_http::Error>(())
    /// ```
    pub fn with_ipv4_prefix(mut self, prefix: u32) -> Result<Self, Error> {
        self.ipv4_prefix = u8::try_from(prefix)
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or(Error::Ipv4Prefix(prefix))?;
        Ok(self)
    }

    /// The forwarding field read from trusted proxies.
    #[must_use]
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether `addr` is a trusted proxy.
    #[must_use]
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|block| block.contains(addr))
    }

    /// The client of a request from `peer` with `headers`; see the module docs.
    pub fn resolve<'a, H: Headers + ?Sized>(&self, peer: Peer<'a>, headers: &H) -> Client<'a> {
        let peer_trusted = match peer {
            Peer::Ip(ip) => self.is_trusted(ip),
            Peer::Named(_) | Peer::Unknown => self.trust_unix,
        };
        if !peer_trusted {
            return peer.into();
        }
        let mut fields: Vec<&[u8]> = Vec::new();
        headers.for_each_value(self.header.name(), &mut |v| fields.push(v));
        let mut last_good = Client::from(peer);
        let mut walked = 0;
        for field in fields.iter().rev() {
            let hops: Box<dyn Iterator<Item = Hop>> = match self.header {
                ForwardedHeader::XForwardedFor => Box::new(forwarded::x_forwarded_for(field)),
                ForwardedHeader::Forwarded => Box::new(forwarded::forwarded(field)),
            };
            for hop in hops {
                walked += 1;
                match hop {
                    _ if walked > MAX_HOPS => return last_good,
                    None => return last_good,
                    Some(ip) if self.is_trusted(ip) => last_good = Client::Ip(ip),
                    Some(ip) => return Client::Ip(ip),
                }
            }
        }
        last_good
    }

    /// The identity of `client` in keys: `ip:203.0.113.9` (or its network, `ip:203.0.113.0/24`,
    /// when the IPv4 prefix is below 32), `ip:2001:db8:1:2::/64` (the client's IPv6 network;
    /// the plain address when the prefix is 128), `ip:<name>` for a named peer, `ip:unknown`
    /// when there is none.
    #[must_use]
    pub fn identity(&self, client: &Client<'_>) -> String {
        let mut out = String::with_capacity(48);
        out.push_str("ip:");
        match *client {
            Client::Ip(IpAddr::V4(ip)) if self.ipv4_prefix == 32 => push_ipv4(&mut out, ip),
            Client::Ip(ip @ IpAddr::V4(_)) => {
                let _ = write!(out, "{}/{}", mask(ip, self.ipv4_prefix), self.ipv4_prefix);
            }
            Client::Ip(ip @ IpAddr::V6(_)) if self.ipv6_prefix == 128 => {
                let _ = write!(out, "{ip}");
            }
            Client::Ip(ip @ IpAddr::V6(_)) => {
                let _ = write!(out, "{}/{}", mask(ip, self.ipv6_prefix), self.ipv6_prefix);
            }
            Client::Named(name) => out.push_str(name),
            Client::Unknown => out.push_str("unknown"),
        }
        out
    }
}

/// `ip` in dotted decimal, as `Display` writes it, without the formatting machinery (this is
/// on every request's path).
fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(trusted: &[&str]) -> ClientIp {
        ClientIp::new(trusted, ForwardedHeader::XForwardedFor, 64).unwrap()
    }

    fn who(ips: &ClientIp, peer: &str, xff: &[&str]) -> String {
        let headers: Vec<(&[u8], &[u8])> = xff
            .iter()
            .map(|v| (&b"X-Forwarded-For"[..], v.as_bytes()))
            .collect();
        ips.identity(&ips.resolve(Peer::parse(Some(peer)), &headers))
    }

    #[test]
    fn ipv4_identities_are_dotted_decimal() {
        for ip in [
            "0.0.0.0",
            "1.20.100.255",
            "9.99.199.249",
            "127.0.0.1",
            "203.0.113.10",
        ] {
            let mut out = String::new();
            push_ipv4(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip);
        }
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        let ips = ips(&["10.0.0.0/8"]);
        assert_eq!(who(&ips, "203.0.113.5", &["1.1.1.1"]), "ip:203.0.113.5");
        assert_eq!(who(&ips, "203.0.113.5", &[]), "ip:203.0.113.5");
        let none = ClientIp::default();
        assert_eq!(who(&none, "10.0.0.1", &["1.1.1.1"]), "ip:10.0.0.1");
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let ips = ips(&["10.0.0.0/8", "192.168.0.1"]);
        // The client prepended a forged address; the proxies appended the real one.
        assert_eq!(
            who(
                &ips,
                "10.0.0.1",
                &["6.6.6.6, 203.0.113.7, 192.168.0.1, 10.1.1.1"]
            ),
            "ip:203.0.113.7"
        );
        // Several fields are one list, in order.
        assert_eq!(
            who(&ips, "10.0.0.1", &["6.6.6.6", "203.0.113.8, 10.9.9.9"]),
            "ip:203.0.113.8"
        );
        assert_eq!(
            who(&ips, "10.0.0.1", &["203.0.113.9:4711"]),
            "ip:203.0.113.9"
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_hop() {
        let ips = ips(&["10.0.0.0/8"]);
        assert_eq!(who(&ips, "10.0.0.1", &["1.1.1.1, junk"]), "ip:10.0.0.1");
        assert_eq!(
            who(&ips, "10.0.0.1", &["1.1.1.1, unknown, 10.0.0.3"]),
            "ip:10.0.0.3"
        );
        // All trusted: the left-most trusted hop.
        assert_eq!(
            who(&ips, "10.0.0.1", &["10.0.0.4, 10.0.0.3"]),
            "ip:10.0.0.4"
        );
        // No field at all: the peer.
        assert_eq!(who(&ips, "10.0.0.1", &[]), "ip:10.0.0.1");
    }

    #[test]
    fn long_trusted_chains_stop_after_max_hops() {
        let ips = ips(&["10.0.0.0/8"]);
        let mut chain = vec!["1.1.1.1".to_owned()];
        chain.extend((0..40).map(|i| format!("10.0.0.{i}")));
        let field = chain.join(",");
        // 32 hops from the right: 10.0.0.39 down to 10.0.0.8.
        assert_eq!(who(&ips, "10.0.0.1", &[&field]), "ip:10.0.0.8");
    }

    #[test]
    fn ipv6_is_grouped_and_mapped_ipv4_is_ipv4() {
        let ips = ips(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        assert_eq!(
            who(&ips, "2001:db8:1:2:aaaa::1", &[]),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(
            who(&ips, "2001:db8:1:2:bbbb::9", &[]),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(who(&ips, "::ffff:203.0.113.1", &[]), "ip:203.0.113.1");
        // A mapped peer is trusted by its IPv4 block; a mapped hop is an IPv4 client.
        assert_eq!(
            who(&ips, "::ffff:10.0.0.1", &["::ffff:198.51.100.2"]),
            "ip:198.51.100.2"
        );
        assert_eq!(
            who(&ips, "2001:db8:ffff::1", &["[2001:db8:9::5]:80"]),
            "ip:2001:db8:9::/64"
        );
        let exact =
            ClientIp::new(Vec::<String>::new(), ForwardedHeader::XForwardedFor, 128).unwrap();
        assert_eq!(who(&exact, "2001:db8::1", &[]), "ip:2001:db8::1");
        let wide = ClientIp::new(Vec::<String>::new(), ForwardedHeader::XForwardedFor, 0).unwrap();
        assert_eq!(who(&wide, "2001:db8::1", &[]), "ip:::/0");
    }

    #[test]
    fn named_peers_are_trusted_only_with_unix() {
        let headers = [(&b"x-forwarded-for"[..], &b"203.0.113.1"[..])];
        let plain = ips(&["10.0.0.0/8"]);
        let unix = ips(&["unix"]);
        let named = Peer::parse(Some("testclient"));
        assert_eq!(
            plain.identity(&plain.resolve(named, &headers[..])),
            "ip:testclient"
        );
        assert_eq!(
            unix.identity(&unix.resolve(named, &headers[..])),
            "ip:203.0.113.1"
        );
        assert_eq!(
            unix.identity(&unix.resolve(Peer::Unknown, &headers[..])),
            "ip:203.0.113.1"
        );
        assert_eq!(
            plain.identity(&plain.resolve(Peer::parse(None), &headers[..])),
            "ip:unknown"
        );
    }

    #[test]
    fn forwarded_is_read_only_when_configured() {
        let headers = [
            (
                &b"Forwarded"[..],
                &br#"for=198.51.100.7;proto=https, for="[2001:db8::1]""#[..],
            ),
            (b"X-Forwarded-For", b"203.0.113.1"),
        ];
        let fwd = ClientIp::new(
            ["10.0.0.1", "2001:db8::/64"],
            ForwardedHeader::Forwarded,
            64,
        )
        .unwrap();
        let peer = Peer::parse(Some("10.0.0.1"));
        assert_eq!(
            fwd.identity(&fwd.resolve(peer, &headers[..])),
            "ip:198.51.100.7"
        );
        let xff = ips(&["10.0.0.1"]);
        assert_eq!(
            xff.identity(&xff.resolve(peer, &headers[..])),
            "ip:203.0.113.1"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(
            ClientIp::new(["10.0.0.0/8"], ForwardedHeader::XForwardedFor, 129).unwrap_err(),
            Error::Ipv6Prefix(129)
        );
        let err = ClientIp::new(
            ["10.0.0.0/8", "proxy.local"],
            ForwardedHeader::XForwardedFor,
            64,
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"proxy.local\""), "{err}");
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
        assert_eq!(
            "Forwarded".parse::<ForwardedHeader>().unwrap(),
            ForwardedHeader::Forwarded
        );
    }

    #[test]
    fn ipv4_clients_count_per_network_when_asked() {
        let by_24 = ips(&["10.0.0.0/8"]).with_ipv4_prefix(24).unwrap();
        assert_eq!(who(&by_24, "203.0.113.77", &[]), "ip:203.0.113.0/24");
        assert_eq!(who(&by_24, "203.0.113.1", &[]), "ip:203.0.113.0/24");
        assert_eq!(who(&by_24, "203.0.114.1", &[]), "ip:203.0.114.0/24");
        // Through a trusted proxy too; IPv6 keeps its own prefix.
        assert_eq!(
            who(&by_24, "10.1.1.1", &["198.51.100.9"]),
            "ip:198.51.100.0/24"
        );
        assert_eq!(
            who(&by_24, "2001:db8:1:2:3:4:5:6", &[]),
            "ip:2001:db8:1:2::/64"
        );
        let by_1 = ips(&[]).with_ipv4_prefix(1).unwrap();
        assert_eq!(who(&by_1, "203.0.113.77", &[]), "ip:128.0.0.0/1");
        let by_32 = ips(&[]).with_ipv4_prefix(32).unwrap();
        assert_eq!(who(&by_32, "203.0.113.77", &[]), "ip:203.0.113.77");
        for bad in [0, 33, 256, u32::MAX] {
            assert_eq!(
                ips(&[]).with_ipv4_prefix(bad).unwrap_err(),
                Error::Ipv4Prefix(bad)
            );
        }
    }
}
