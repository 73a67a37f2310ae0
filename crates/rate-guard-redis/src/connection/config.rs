//! [`RedisConfig`]: where Redis is (parsed from a URL) and how long to wait for it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConnectionError;
use super::tls::TlsSettings;

/// Default number of multiplexed connections to a standalone or Sentinel-managed master.
const DEFAULT_POOL_SIZE: usize = 1;
/// Default bound on one call (every round trip it needs included).
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Default bound on establishing connections (and on discovering a master).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

const REDIS_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;
const EXPECTED_SCHEMES: &str =
    "redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://";

/// How the servers named by a URL are deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topology {
    /// One server: `redis://` or `rediss://`.
    Standalone,
    /// A master found through Sentinel: `redis+sentinel://`.
    Sentinel,
    /// A Redis Cluster: `redis+cluster://`.
    Cluster,
}

/// A `host:port` pair from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// The host name or IP address, without the brackets of an IPv6 literal.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The servers a URL names, by topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoints {
    Standalone(HostPort),
    Sentinel {
        sentinels: Vec<HostPort>,
        master: String,
    },
    Cluster(Vec<HostPort>),
}

/// Credentials from a URL's user info.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where Redis is and how long to wait for it, parsed from a URL.
///
/// | URL | meaning |
/// | --- | --- |
/// | `redis://[[user]:password@]host[:port][/db]` | one server (port 6379 by default) |
/// | `rediss://...` | the same over TLS, verified against the web PKI roots (or the CA bundle given) |
/// | `redis+sentinel://[[user]:password@]h1:p1,h2:p2/<master>[/db]` | the master that the sentinels (port 26379 by default) know as `<master>`; the password is the data servers' and is also offered to a sentinel that asks for one |
/// | `redis+cluster://[[user]:password@]h1:p1,h2:p2` | a Redis Cluster, from any of these seed nodes |
///
/// `rediss+sentinel://` and `rediss+cluster://` use TLS for every connection. User names and
/// passwords may be percent-encoded; fragments are refused rather than ignored.
///
/// A `rediss` URL takes the TLS query parameters of redis-py's URLs, which the builder methods
/// also set: `ssl_ca_certs=<PEM file>` ([`tls_ca_file`](Self::tls_ca_file)),
/// `ssl_certfile=<PEM>&ssl_keyfile=<PEM>` ([`tls_client_cert`](Self::tls_client_cert)),
/// `ssl_check_hostname=true|false` ([`tls_verify_hostname`](Self::tls_verify_hostname)) and
/// `ssl_cert_reqs=required|none` ([`tls_verify_peer`](Self::tls_verify_peer)). Any other
/// parameter, or one on a `redis` URL, is refused. The files are read when connecting.
///
/// ```
/// use rate_guard_redis::connection::RedisConfig;
///
/// let config = RedisConfig::from_url(
///     "rediss://cache.internal?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false",
/// )?;
/// assert!(config.is_tls());
/// let err = RedisConfig::from_url("rediss://cache.internal?ssl_ciphers=x").unwrap_err();
/// assert!(err.to_string().contains("unknown query parameter `ssl_ciphers`"));
/// # Ok::<(), rate_guard_redis::connection::ConnectionError>(())
/// ```
/// Every parse error names the bad part of the URL, and neither errors nor `Debug` ever show
/// the password.
///
/// ```
/// use std::time::Duration;
/// use rate_guard_redis::connection::{RedisConfig, Topology};
///
/// let config = RedisConfig::from_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/mymaster/2")?
///     .timeout(Duration::from_millis(50))
///     .pool_size(4);
/// assert_eq!(config.topology(), Topology::Sentinel);
/// assert_eq!(config.db(), 2);
/// assert_eq!(config.get_pool_size(), 4);
/// assert!(!format!("{config:?}").contains("s3cret"));
///
/// let err = RedisConfig::from_url("redis://:s3cret@cache.internal:65536").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid Redis URL `redis://:***@cache.internal:65536`: bad port `65536` in \
///      `cache.internal:65536`: expected a number from 1 to 65535"
/// );
/// # Ok::<(), rate_guard_redis::connection::ConnectionError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    url_redacted: String,
    pub(crate) endpoints: Endpoints,
    pub(crate) credentials: Credentials,
    pub(crate) db: i64,
    pub(crate) tls: bool,
    pub(crate) tls_settings: TlsSettings,
    pool_size: usize,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url_redacted)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls.then_some(&self.tls_settings))
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Parses a Redis URL (see the table above), with the default pool size (1), command timeout
    /// (100 ms) and connect timeout (1 s).
    pub fn from_url(url: &str) -> Result<Self, ConnectionError> {
        parse(url).map_err(|reason| ConnectionError::InvalidUrl {
            url_redacted: redact_url(url),
            reason,
        })
    }

    /// Sets how many multiplexed connections a standalone or Sentinel-managed master gets; calls
    /// take them in turn. A cluster keeps one multiplexed connection per node whatever this says.
    /// Zero is taken as one.
    #[must_use]
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Sets the bound on one call, every round trip it needs included (a `NOSCRIPT` reload, a
    /// reconnection or a master rediscovery it has to wait for). A call that runs out fails with
    /// [`ConnectionError::Timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the bound on establishing connections, discovering a Sentinel master included.
    /// [`Connection::connect`](super::Connection::connect) fails after this long when nothing
    /// answers; reconnections in the background are bounded by it too.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts the CAs of this PEM bundle instead of the built-in web roots (a server signed
    /// by a private CA). Only with TLS.
    #[must_use]
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_settings.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate (PEM, chain allowed) and its private key (PEM) to a
    /// server that asks for one (mutual TLS). Only with TLS.
    #[must_use]
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_settings.cert_file = Some(cert.into());
        self.tls_settings.key_file = Some(key.into());
        self
    }

    /// Whether the server's certificate must name the host connected to (default true). Turn
    /// it off only for a server whose certificate names another host; the certificate is still
    /// verified against the trusted CAs.
    #[must_use]
    pub fn tls_verify_hostname(mut self, verify: bool) -> Self {
        self.tls_settings.verify_hostname = verify;
        self
    }

    /// Whether the server's certificate is verified at all (default true; `false` is redis-py's
    /// `ssl_cert_reqs=none`, which encrypts but lets anyone in the middle read along).
    #[must_use]
    pub fn tls_verify_peer(mut self, verify: bool) -> Self {
        self.tls_settings.verify_peer = verify;
        self
    }

    /// Checks the TLS settings now, as [`Connection::connect`](super::Connection::connect)
    /// will: the files are readable PEM, a certificate comes with its key, and TLS settings
    /// come with a `rediss` URL. Whether the server's certificate is trusted is only known
    /// when connecting.
    pub fn check_tls(&self) -> Result<(), ConnectionError> {
        super::tls::Tls::for_config(self).map(drop)
    }

    /// How the servers are deployed.
    #[must_use]
    pub fn topology(&self) -> Topology {
        match self.endpoints {
            Endpoints::Standalone(_) => Topology::Standalone,
            Endpoints::Sentinel { .. } => Topology::Sentinel,
            Endpoints::Cluster(_) => Topology::Cluster,
        }
    }

    /// The URL with its password replaced by `***`, fit for logs and messages.
    #[must_use]
    pub fn url_redacted(&self) -> &str {
        &self.url_redacted
    }

    /// The database number (always 0 for a cluster).
    #[must_use]
    pub fn db(&self) -> i64 {
        self.db
    }

    /// Whether connections use TLS.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The number of connections set by [`pool_size`](Self::pool_size).
    #[must_use]
    pub fn get_pool_size(&self) -> usize {
        self.pool_size
    }

    /// The bound set by [`timeout`](Self::timeout).
    #[must_use]
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The bound set by [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// Parses `url`, or says what is wrong with it without quoting the password.
fn parse(url: &str) -> Result<RedisConfig, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("missing scheme: expected {EXPECTED_SCHEMES}"));
    };
    let (topology, tls) = match scheme.to_ascii_lowercase().as_str() {
        "redis" => (Topology::Standalone, false),
        "rediss" => (Topology::Standalone, true),
        "redis+sentinel" => (Topology::Sentinel, false),
        "rediss+sentinel" => (Topology::Sentinel, true),
        "redis+cluster" => (Topology::Cluster, false),
        "rediss+cluster" => (Topology::Cluster, true),
        _ => {
            return Err(format!(
                "unknown scheme `{scheme}`: expected {EXPECTED_SCHEMES}"
            ))
        }
    };

    // The last `@` ends the user info, so an unencoded `@` in a password still parses (and one
    // in a query parameter must be percent-encoded).
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };

    if let Some(i) = rest.find('#') {
        return Err(format!(
            "a fragment (`{}`) is not supported; set options on RedisConfig instead",
            &rest[i..]
        ));
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let tls_settings = match query {
        Some(query) => parse_query(query, tls)?,
        None => TlsSettings::default(),
    };
    let credentials = userinfo
        .map(parse_userinfo)
        .transpose()?
        .unwrap_or_default();

    let (hostlist, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash + 1..]),
        None => (rest, ""),
    };
    let default_port = if topology == Topology::Sentinel {
        SENTINEL_PORT
    } else {
        REDIS_PORT
    };
    let hosts = parse_hosts(hostlist, default_port)?;
    let (endpoints, db) = parse_path(topology, scheme, hostlist, hosts, path)?;

    Ok(RedisConfig {
        url_redacted: redact_url(url),
        endpoints,
        credentials,
        db,
        tls,
        tls_settings,
        pool_size: DEFAULT_POOL_SIZE,
        timeout: DEFAULT_TIMEOUT,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
    })
}

/// The TLS parameters of redis-py's URLs; anything else is refused.
fn parse_query(query: &str, tls: bool) -> Result<TlsSettings, String> {
    const KNOWN: &str =
        "ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname";
    let mut settings = TlsSettings::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| format!("bad percent-encoding in the query parameter `{name}`"))?;
        if !KNOWN.split(", ").any(|k| k == name) {
            return Err(format!(
                "unknown query parameter `{}`: expected {KNOWN}",
                name.escape_debug()
            ));
        }
        if !tls {
            return Err(format!(
                "`{name}` needs TLS: use a rediss:// URL (or rediss+sentinel://, rediss+cluster://)"
            ));
        }
        let flag = |accepted: [&str; 2], meaning: [bool; 2]| {
            accepted
                .iter()
                .position(|a| value.eq_ignore_ascii_case(a))
                .map(|i| meaning[i])
                .ok_or_else(|| {
                    format!(
                        "bad value `{}` for `{name}`: expected {} or {}",
                        value.escape_debug(),
                        accepted[0],
                        accepted[1]
                    )
                })
        };
        let path = || {
            if value.is_empty() {
                Err(format!("`{name}` needs a file path"))
            } else {
                Ok(Some(PathBuf::from(&value)))
            }
        };
        match name {
            "ssl_ca_certs" => settings.ca_file = path()?,
            "ssl_certfile" => settings.cert_file = path()?,
            "ssl_keyfile" => settings.key_file = path()?,
            "ssl_cert_reqs" => settings.verify_peer = flag(["required", "none"], [true, false])?,
            _ => settings.verify_hostname = flag(["true", "false"], [true, false])?,
        }
    }
    Ok(settings)
}

/// The endpoints and database from the hosts and the path after them.
fn parse_path(
    topology: Topology,
    scheme: &str,
    hostlist: &str,
    hosts: Vec<HostPort>,
    path: &str,
) -> Result<(Endpoints, i64), String> {
    let mut segments: Vec<&str> = path.split('/').collect();
    if segments.last() == Some(&"") {
        segments.pop();
    }

    let parsed = match topology {
        Topology::Standalone => {
            if hosts.len() > 1 {
                return Err(format!(
                    "`{hostlist}` names {} hosts, but {scheme}:// takes one; use \
                     redis+sentinel:// or redis+cluster:// for several",
                    hosts.len()
                ));
            }
            let db = match segments.as_slice() {
                [] => 0,
                [db] => parse_db(db)?,
                _ => return Err(format!("bad path `/{path}`: expected `/<db>`")),
            };
            let host = hosts
                .into_iter()
                .next()
                .expect("parse_hosts returns one host at least");
            (Endpoints::Standalone(host), db)
        }
        Topology::Sentinel => {
            let usage = "expected redis+sentinel://host:port[,host:port...]/<master>[/<db>]";
            let (master, db) = match segments.as_slice() {
                [] | [""] | ["", ..] => {
                    return Err(format!("missing sentinel master name: {usage}"))
                }
                [master] => (*master, 0),
                [master, db] => (*master, parse_db(db)?),
                _ => return Err(format!("bad path `/{path}`: {usage}")),
            };
            if master.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "bad sentinel master name `{}`: it may not contain spaces",
                    master.escape_debug()
                ));
            }
            (
                Endpoints::Sentinel {
                    sentinels: hosts,
                    master: master.to_owned(),
                },
                db,
            )
        }
        Topology::Cluster => {
            match segments.as_slice() {
                [] | ["0"] => {}
                [db] if db.parse::<i64>().is_ok() => {
                    return Err(format!(
                        "bad database `{db}`: a Redis Cluster has database 0 only"
                    ))
                }
                _ => {
                    return Err(format!(
                        "bad path `/{path}`: a redis+cluster:// URL takes no path"
                    ))
                }
            }
            (Endpoints::Cluster(hosts), 0)
        }
    };
    Ok(parsed)
}

/// `[user][:password]`, both percent-decoded; empty parts are absent.
fn parse_userinfo(userinfo: &str) -> Result<Credentials, String> {
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    if user.contains(['/', '?', '#']) {
        return Err(format!("bad user name `{user}`"));
    }
    let username = percent_decode(user)
        .ok_or_else(|| format!("bad percent-encoding in the user name `{user}`"))?;
    let password = match password {
        Some(p) => {
            Some(percent_decode(p).ok_or("bad percent-encoding in the password (not shown)")?)
        }
        None => None,
    };
    Ok(Credentials {
        username: Some(username).filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()),
    })
}

/// `host[:port][,host[:port]...]`; IPv6 literals in brackets.
fn parse_hosts(hostlist: &str, default_port: u16) -> Result<Vec<HostPort>, String> {
    if hostlist.is_empty() {
        return Err("missing host".to_owned());
    }
    hostlist
        .split(',')
        .map(|entry| parse_host(entry, default_port))
        .collect()
}

fn parse_host(entry: &str, default_port: u16) -> Result<HostPort, String> {
    if entry.is_empty() {
        return Err("missing host: empty entry in the host list".to_owned());
    }
    let (host, port) = if let Some(inner) = entry.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(format!("bad host `{entry}`: unclosed `[`"));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("bad host `{entry}`: not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("bad host `{entry}`: expected `:` after `]`")),
            },
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) if port.contains(':') => {
                return Err(format!(
                "bad host `{entry}`: write an IPv6 address in brackets, as `[{host}:{port}]:6379`"
            ))
            }
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in `{entry}`"));
    }
    let bracketed = entry.starts_with('[');
    if !bracketed
        && (!host.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!("bad host `{}`", host.escape_debug()));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => {
                return Err(format!(
                    "bad port `{}` in `{}`: expected a number from 1 to 65535",
                    p.escape_debug(),
                    entry.escape_debug()
                ))
            }
        },
    };
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

fn parse_db(db: &str) -> Result<i64, String> {
    match db.parse::<i64>() {
        Ok(n) if n >= 0 && db.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "bad database `{}`: expected a number from 0",
            db.escape_debug()
        )),
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `url` with the password in its user info replaced by `***`; works on any string, parsed or
/// not, so that no error or log can quote a password. The user info ends at the last `@`, as
/// the parser reads it (so `redis://:pa/ss@h` hides `pa/ss`); a lone `secret@`, which some
/// clients take as the password, is hidden whole.
///
/// ```
/// use rate_guard_redis::redact_url;
///
/// assert_eq!(redact_url("redis://app:hunter2@redis.internal:6379/0"), "redis://app:***@redis.internal:6379/0");
/// assert_eq!(redact_url("redis://secret@h:1"), "redis://***@h:1");
/// assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url[start..].rfind('@').map(|i| start + i) else {
        return url.to_owned();
    };
    let userinfo = &url[start..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => format!("{}***{}", &url[..start], &url[at..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_every_password_shape() {
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("redis://u:pw@h"), "redis://u:***@h");
        assert_eq!(redact_url("redis://:p@ss@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://:pa/ss@h/0"), "redis://:***@h/0");
        assert_eq!(redact_url("redis://secret@h"), "redis://***@h");
        assert_eq!(redact_url("rediss://u:p@h/0?x=a@b"), "rediss://u:***@b");
        assert_eq!(redact_url("pw@h"), "***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%3Ac").as_deref(), Some("a@b:c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
