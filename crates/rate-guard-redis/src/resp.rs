//! RESP2, the Redis wire protocol, as far as the request path needs it: commands written
//! straight into a byte buffer (no intermediate `String`s, integers with `itoa`), replies framed
//! and read without a general-purpose parser for the common case (a flat array of integers).
//!
//! ```
//! use rate_guard_redis::resp;
//!
//! let mut out = Vec::new();
//! resp::array(&mut out, 3);
//! resp::bulk(&mut out, b"INCRBY");
//! resp::bulk(&mut out, b"k");
//! resp::bulk_int(&mut out, 7);
//! assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n7\r\n");
//! ```

use redis::{RedisResult, Value};

/// Writes the header of a command of `len` arguments (the command name included).
pub fn array(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes one argument.
pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(arg.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Writes one integer argument, in decimal.
pub fn bulk_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    let mut digits = itoa::Buffer::new();
    bulk(out, digits.format(value).as_bytes());
}

/// The deepest nesting of arrays a reply may have (ours are flat; `ROLE`, `INFO`-like replies
/// nest two or three levels).
const MAX_DEPTH: usize = 16;

/// A reply that is not RESP2.
#[derive(Debug)]
pub(crate) struct ProtocolError;

/// The length of the complete reply at the start of `buf`, `None` while it is incomplete.
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    frame_at(buf, 0, 0)
}

fn frame_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((value, after)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let Some(len) = length(value)? else {
                return Ok(Some(after)); // null bulk string
            };
            let end = after + len + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(ProtocolError);
            }
            Ok(Some(end))
        }
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(ProtocolError);
            }
            let Some(len) = length(value)? else {
                return Ok(Some(after)); // null array
            };
            let mut at = after;
            for _ in 0..len {
                match frame_at(buf, at, depth + 1)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        _ => Err(ProtocolError),
    }
}

/// The bytes of the line that starts at `at` (without its CRLF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r') {
        Some(cr) if cr + 1 < rest.len() => {
            if rest[cr + 1] != b'\n' {
                return Err(ProtocolError);
            }
            Ok(Some((&rest[..cr], at + cr + 2)))
        }
        _ => Ok(None),
    }
}

/// A length line: `-1` is null (`None`).
fn length(digits: &[u8]) -> Result<Option<usize>, ProtocolError> {
    if digits == b"-1" {
        return Ok(None);
    }
    integer(digits)
        .and_then(|n| usize::try_from(n).ok())
        .map(Some)
        .ok_or(ProtocolError)
}

fn integer(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}

/// The reply `frame` (one complete frame, as [`frame_len`] delimits it) as a value; a server
/// error is the redis crate's error for it, so that it is classified as any other.
pub(crate) fn parse(frame: &[u8]) -> RedisResult<Value> {
    if let Some(value) = int_array(frame) {
        return Ok(value);
    }
    redis::parse_redis_value(frame)?.extract_error()
}

/// The common reply, a flat array of integers, read without the general parser.
fn int_array(frame: &[u8]) -> Option<Value> {
    let (&b'*', rest) = frame.split_first()? else {
        return None;
    };
    let (count, mut at) = split_line(rest)?;
    let count = usize::try_from(integer(count)?).ok()?;
    // Each item takes at least four bytes: a count the frame cannot hold reserves nothing.
    let mut items = Vec::with_capacity(count.min(at.len() / 4));
    for _ in 0..count {
        let (&b':', rest) = at.split_first()? else {
            return None;
        };
        let (digits, next) = split_line(rest)?;
        items.push(Value::Int(integer(digits)?));
        at = next;
    }
    at.is_empty().then_some(Value::Array(items))
}

fn split_line(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let cr = buf.iter().position(|&b| b == b'\r')?;
    (buf.get(cr + 1) == Some(&b'\n')).then(|| (&buf[..cr], &buf[cr + 2..]))
}

/// The arguments of `command`, a RESP array of bulk strings as [`array`] and [`bulk`] write
/// it, as a command of the redis crate (for the connections that are the crate's own: TLS,
/// Cluster). `None` when `command` is not such an array.
pub(crate) fn to_cmd(command: &[u8]) -> Option<redis::Cmd> {
    let (&b'*', rest) = command.split_first()? else {
        return None;
    };
    let (count, mut at) = split_line(rest)?;
    let count = usize::try_from(integer(count)?).ok()?;
    let mut cmd: Option<redis::Cmd> = None;
    for _ in 0..count {
        let (&b'$', rest) = at.split_first()? else {
            return None;
        };
        let (len, rest) = split_line(rest)?;
        let len = usize::try_from(integer(len)?).ok()?;
        let arg = rest.get(..len)?;
        if rest.get(len..len + 2)? != b"\r\n" {
            return None;
        }
        match &mut cmd {
            None => cmd = Some(redis::cmd(std::str::from_utf8(arg).ok()?)),
            Some(cmd) => {
                cmd.arg(arg);
            }
        }
        at = &rest[len + 2..];
    }
    if at.is_empty() {
        cmd
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        array(&mut out, args.len());
        for arg in args {
            bulk(&mut out, arg);
        }
        out
    }

    #[test]
    fn commands_are_what_the_redis_crate_writes() {
        let args: [&[u8]; 4] = [b"FCALL", b"f", b"1", b"k\r\n\xff"];
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(&args[1..]);
        assert_eq!(command(&args), cmd.get_packed_command());
        let mut out = Vec::new();
        bulk_int(&mut out, -42_i64);
        bulk_int(&mut out, u64::MAX);
        assert_eq!(out, b"$3\r\n-42\r\n$20\r\n18446744073709551615\r\n");
    }

    #[test]
    fn to_cmd_reads_back_a_command() {
        let bytes = command(&[b"EVALSHA", b"abc", b"0", b"", b"x y"]);
        assert_eq!(to_cmd(&bytes).unwrap().get_packed_command(), bytes);
        assert!(to_cmd(b"*1\r\n$3\r\nab\r\n").is_none());
        assert!(to_cmd(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn frames_are_delimited_whatever_their_shape() {
        let replies: [&[u8]; 8] = [
            b"+OK\r\n",
            b"-ERR Function not found\r\n",
            b":-12\r\n",
            b"$5\r\nab\r\nc\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n:2\r\n+x\r\n",
            b"*0\r\n",
        ];
        for reply in replies {
            let mut stream = reply.to_vec();
            stream.extend_from_slice(b":7\r\n");
            assert_eq!(frame_len(&stream).unwrap(), Some(reply.len()), "{reply:?}");
            for cut in 0..reply.len() {
                assert_eq!(
                    frame_len(&reply[..cut]).unwrap(),
                    None,
                    "{reply:?} cut at {cut}"
                );
            }
        }
        assert!(frame_len(b"?\r\n").is_err());
        assert!(frame_len(b"$2\r\nabcd\r\n").is_err());
        assert!(frame_len(b":1\rx").is_err());
    }

    proptest::proptest! {
        /// A server that answers garbage: delimiting and parsing never panic, a frame never
        /// claims more bytes than were read, and a frame parses to a value or an error.
        #[test]
        fn garbage_from_the_server_never_panics(
            kind in proptest::sample::select(b"+-:$*?".to_vec()),
            body in proptest::collection::vec(
                proptest::sample::select(b"0123456789-\r\n*:$+ax".to_vec()), 0..48),
        ) {
            let mut buf = vec![kind];
            buf.extend_from_slice(&body);
            if let Ok(Some(len)) = frame_len(&buf) {
                proptest::prop_assert!(len <= buf.len());
                let _ = parse(&buf[..len]);
            }
            let _ = parse(&buf);
        }
    }

    #[test]
    fn replies_parse_as_the_redis_crate_parses_them() {
        let replies: [&[u8]; 6] = [
            b"*3\r\n:1\r\n:-5\r\n:9223372036854775807\r\n",
            b"*0\r\n",
            b"*2\r\n:1\r\n$1\r\na\r\n",
            b"+OK\r\n",
            b":3\r\n",
            b"*1\r\n*1\r\n:1\r\n",
        ];
        for reply in replies {
            assert_eq!(
                parse(reply).unwrap(),
                redis::parse_redis_value(reply).unwrap()
            );
        }
        let error = parse(b"-NOSCRIPT No matching script.\r\n").unwrap_err();
        assert_eq!(error.code(), Some("NOSCRIPT"));
        let error = parse(b"-ERR Function not found\r\n").unwrap_err();
        assert_eq!(error.code(), Some("ERR"));
        assert_eq!(error.detail(), Some("Function not found"));
    }
}
