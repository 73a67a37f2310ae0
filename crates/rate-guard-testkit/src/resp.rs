//! A minimal blocking RESP2 client, enough for readiness probes and topology queries.
//!
//! The fixtures poll servers many times per second and must notice a paused server, so they
//! talk RESP over a socket with timeouts instead of spawning `redis-cli` for every probe.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// One reply. Error replies become `Err` when they are read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A simple or bulk string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A null bulk string or null array.
    Nil,
    /// An array.
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a string reply.
    pub(crate) fn into_text(self) -> io::Result<String> {
        match self {
            Reply::Text(text) => Ok(text),
            other => Err(unexpected("a string", &other)),
        }
    }

    /// The elements of an array reply.
    pub(crate) fn into_array(self) -> io::Result<Vec<Reply>> {
        match self {
            Reply::Array(items) => Ok(items),
            other => Err(unexpected("an array", &other)),
        }
    }
}

fn unexpected(wanted: &str, got: &Reply) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("expected {wanted} reply, got {got:?}"),
    )
}

/// A connection to `127.0.0.1:port` whose every read and write is bounded by a timeout.
pub(crate) struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects, then authenticates when `password` is set.
    pub(crate) fn open(port: u16, password: Option<&str>, timeout: Duration) -> io::Result<Self> {
        let stream =
            TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut connection = Self {
            reader: BufReader::new(stream),
        };
        if let Some(password) = password {
            connection.request(&["AUTH", password])?;
        }
        Ok(connection)
    }

    /// Sends one command and reads its reply.
    pub(crate) fn request(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg.as_bytes());
            frame.extend_from_slice(b"\r\n");
        }
        let result = self
            .reader
            .get_mut()
            .write_all(&frame)
            .and_then(|()| read_reply(&mut self.reader));
        // A read timeout surfaces as `WouldBlock` on Unix; callers match on `TimedOut`.
        result.map_err(|error| {
            if error.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(io::ErrorKind::TimedOut, error)
            } else {
                error
            }
        })
    }
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(kind) = line.chars().next() else {
        return Err(invalid(line));
    };
    let rest = &line[kind.len_utf8()..];
    match kind {
        '+' => Ok(Reply::Text(rest.to_owned())),
        '-' => Err(io::Error::other(format!("redis error: {rest}"))),
        ':' => rest.parse().map(Reply::Int).map_err(|_| invalid(line)),
        '$' => {
            let Ok(len) = usize::try_from(parse_len(line, rest)?) else {
                return Ok(Reply::Nil);
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            Ok(Reply::Text(String::from_utf8_lossy(&body).into_owned()))
        }
        '*' => {
            let Ok(len) = usize::try_from(parse_len(line, rest)?) else {
                return Ok(Reply::Nil);
            };
            (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<_>>()
                .map(Reply::Array)
        }
        _ => Err(invalid(line)),
    }
}

fn parse_len(line: &str, digits: &str) -> io::Result<i64> {
    digits.parse().map_err(|_| invalid(line))
}

fn invalid(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed RESP line {line:?}"),
    )
}

/// Reads `field:value` from an `INFO`-style or `CLUSTER INFO` text.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::{info_field, read_reply, Reply};

    fn parse(bytes: &[u8]) -> std::io::Result<Reply> {
        read_reply(&mut &bytes[..])
    }

    #[test]
    fn parses_every_reply_kind() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Reply::Text("PONG".into()));
        assert_eq!(parse(b":42\r\n").unwrap(), Reply::Int(42));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(
            parse(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7000\r\n").unwrap(),
            Reply::Array(vec![
                Reply::Text("127.0.0.1".into()),
                Reply::Text("7000".into())
            ])
        );
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").unwrap(),
            Reply::Text("a\r\nb".into())
        );
        let error = parse(b"-NOGOODSLAVE No suitable replica\r\n").unwrap_err();
        assert!(error.to_string().contains("NOGOODSLAVE"));
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn reads_info_fields() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master"), None);
    }
}
