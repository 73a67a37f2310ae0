//! [`Headers`]: read access to a request's header fields, whatever the framework keeps them in.

/// A request's header fields, as raw bytes (any case in names, any bytes in values).
///
/// Implemented for slices and vectors of `(name, value)` byte pairs (ASGI's raw headers).
/// Another framework's header map implements it through a newtype.
///
/// ```
/// use rate_guard_http::Headers;
///
/// let headers = [(&b"X-Forwarded-For"[..], &b"1.2.3.4"[..]), (b"x-forwarded-for", b"5.6.7.8")];
/// let mut seen = Vec::new();
/// headers.for_each_value("x-forwarded-for", &mut |v| seen.push(v));
/// assert_eq!(seen, [&b"1.2.3.4"[..], b"5.6.7.8"]);
/// assert_eq!(headers.first_value("X-FORWARDED-FOR"), Some(&b"1.2.3.4"[..]));
/// ```
pub trait Headers {
    /// Calls `f` with the value of each field named `name` (compared ASCII case-insensitively),
    /// in the order they were received.
    fn for_each_value<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8]));

    /// The value of the first field named `name`.
    fn first_value<'s>(&'s self, name: &str) -> Option<&'s [u8]> {
        let mut first = None;
        self.for_each_value(name, &mut |v| {
            if first.is_none() {
                first = Some(v);
            }
        });
        first
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> Headers for [(N, V)] {
    fn for_each_value<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8])) {
        for (n, v) in self {
            if n.as_ref().eq_ignore_ascii_case(name.as_bytes()) {
                f(v.as_ref());
            }
        }
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn for_each_value<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8])) {
        self.as_slice().for_each_value(name, f);
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>, const L: usize> Headers for [(N, V); L] {
    fn for_each_value<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8])) {
        self.as_slice().for_each_value(name, f);
    }
}

/// `value` without leading and trailing spaces and tabs (HTTP's optional whitespace).
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ows_is_trimmed_on_both_sides_only() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"x"), b"x");
    }

    #[test]
    fn owned_pairs_work_too() {
        let headers: Vec<(Vec<u8>, Vec<u8>)> =
            vec![(b"Authorization".to_vec(), b"Bearer t".to_vec())];
        assert_eq!(headers.first_value("authorization"), Some(&b"Bearer t"[..]));
        assert_eq!(headers.first_value("cookie"), None);
    }
}
