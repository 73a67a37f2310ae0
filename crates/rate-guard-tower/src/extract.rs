//! What the guard reads from a request besides its headers: the peer address and the route
//! template.
//!
//! - **Peer**: axum's `ConnectInfo<SocketAddr>` (serve with
//!   `into_make_service_with_connect_info::<SocketAddr>()`), else a plain [`SocketAddr`]
//!   extension (hyper or tonic services insert it themselves), else unknown (counted as one
//!   client, `ip:unknown`). Forwarded headers are believed only from trusted proxies (see
//!   [`ClientIp`](rate_guard_http::ClientIp)).
//! - **Route template**: axum's `MatchedPath` (`/items/{id}`, never the raw URL), which axum
//!   sets for layers added with `Router::layer` or `Router::route_layer`; a layer wrapped
//!   around the whole router sees none, and only global rules apply there.

use std::net::SocketAddr;

use http::request::Parts;
use http::HeaderMap;
use rate_guard_http::{Headers, Peer};

/// A request's [`HeaderMap`] as the HTTP front reads headers.
pub(crate) struct HeaderMapHeaders<'a>(pub(crate) &'a HeaderMap);

impl Headers for HeaderMapHeaders<'_> {
    fn for_each_value<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8])) {
        // `get_all` takes any case and finds nothing for a name that is not a header name.
        for value in self.0.get_all(name) {
            f(value.as_bytes());
        }
    }
}

/// The remote address of the request's connection.
pub(crate) fn peer(parts: &Parts) -> Peer<'static> {
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Peer::from(info.0.ip());
    }
    parts
        .extensions
        .get::<SocketAddr>()
        .map_or(Peer::Unknown, |addr| Peer::from(addr.ip()))
}

/// The template of the route the request was matched to.
#[cfg(feature = "axum")]
pub(crate) fn matched_path(parts: &Parts) -> Option<&str> {
    parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str)
}

/// Without axum there is no template unless the builder's `route_fn` finds one.
#[cfg(not(feature = "axum"))]
pub(crate) fn matched_path(_parts: &Parts) -> Option<&str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_in_order_any_case() {
        let mut map = HeaderMap::new();
        map.append("x-forwarded-for", "1.2.3.4".parse().unwrap());
        map.append("X-Forwarded-For", "5.6.7.8".parse().unwrap());
        map.append(
            "x-api-key",
            http::HeaderValue::from_bytes(b"k\xffey").unwrap(),
        );
        let headers = HeaderMapHeaders(&map);
        let mut seen = Vec::new();
        headers.for_each_value("X-FORWARDED-FOR", &mut |v| seen.push(v));
        assert_eq!(seen, [&b"1.2.3.4"[..], b"5.6.7.8"]);
        assert_eq!(headers.first_value("x-api-key"), Some(&b"k\xffey"[..]));
        assert_eq!(headers.first_value("not a header name"), None);
    }

    #[test]
    fn peer_from_socket_addr_extension() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert_eq!(peer(&parts), Peer::Unknown);
        parts
            .extensions
            .insert("[::ffff:203.0.113.9]:4000".parse::<SocketAddr>().unwrap());
        assert_eq!(peer(&parts), Peer::Ip("203.0.113.9".parse().unwrap()));
    }
}
