//! [`KeySpec`]: whose quota a rule counts, as configured (`"ip"`, `"header:X-Api-Key"`, ...).

use std::fmt;
use std::str::FromStr;

use crate::error::{clip, Error};

/// The longest header name or claim name accepted in a key spec.
pub const MAX_KEY_NAME_LEN: usize = 64;

/// Whose quota a rule counts. Parsed from the key spec strings of the configuration:
///
/// | spec | identity | when missing |
/// | --- | --- | --- |
/// | `ip` | the client address (see [`ClientIp`](crate::ClientIp)) | - |
/// | `global` | one bucket for everyone | - |
/// | `user` | the authenticated user id the framework hands over | ip |
/// | `header:<Name>` | the value of that request header | ip |
/// | `jwt:<claim>` | that claim of a verified bearer token | ip |
/// | `custom` | a value computed by the application (`key_func`) | ip |
///
/// ```
/// use rate_guard_http::KeySpec;
///
/// assert_eq!("ip".parse::<KeySpec>()?, KeySpec::Ip);
/// let spec: KeySpec = "header:X-Api-Key".parse()?;
/// assert_eq!(spec, KeySpec::Header("x-api-key".into()));
/// assert_eq!(spec.to_string(), "header:x-api-key");
/// assert!("header:".parse::<KeySpec>().is_err());
/// # Ok::<(), rate_guard_http::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeySpec {
    /// The client address.
    #[default]
    Ip,
    /// One bucket for the whole service.
    Global,
    /// The authenticated user.
    User,
    /// A request header, by its lowercase name.
    Header(String),
    /// A claim of a verified bearer token.
    Jwt(String),
    /// A value computed by the application.
    Custom,
}

impl KeySpec {
    /// Whether the spec reads the bearer token (so the front needs JWT keys).
    #[must_use]
    pub fn needs_jwt(&self) -> bool {
        matches!(self, KeySpec::Jwt(_))
    }
}

impl FromStr for KeySpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Error> {
        let bad = |reason| Error::KeySpec {
            spec: clip(spec, MAX_KEY_NAME_LEN + 16),
            reason,
        };
        match spec {
            "ip" => return Ok(KeySpec::Ip),
            "global" => return Ok(KeySpec::Global),
            "user" => return Ok(KeySpec::User),
            "custom" => return Ok(KeySpec::Custom),
            _ => {}
        }
        let Some((kind, name)) = spec.split_once(':') else {
            return Err(bad(
                "expected ip, global, user, custom, header:<Name> or jwt:<claim>",
            ));
        };
        if name.is_empty() {
            return Err(bad("the name after ':' is empty"));
        }
        if name.len() > MAX_KEY_NAME_LEN {
            return Err(bad("the name after ':' is longer than 64 bytes"));
        }
        match kind {
            "header" => {
                if !name.bytes().all(is_tchar) {
                    return Err(bad(
                        "a header name is letters, digits and !#$%&'*+-.^_`|~ only",
                    ));
                }
                Ok(KeySpec::Header(name.to_ascii_lowercase()))
            }
            "jwt" => {
                if !name
                    .chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && c != ':')
                {
                    return Err(bad(
                        "a claim name may not contain ':', whitespace or control characters",
                    ));
                }
                Ok(KeySpec::Jwt(name.to_owned()))
            }
            _ => Err(bad(
                "expected ip, global, user, custom, header:<Name> or jwt:<claim>",
            )),
        }
    }
}

/// The spec as written in configuration (header names lowercased).
impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Ip => f.write_str("ip"),
            KeySpec::Global => f.write_str("global"),
            KeySpec::User => f.write_str("user"),
            KeySpec::Custom => f.write_str("custom"),
            KeySpec::Header(name) => write!(f, "header:{name}"),
            KeySpec::Jwt(claim) => write!(f, "jwt:{claim}"),
        }
    }
}

/// RFC 9110 `tchar`: what a header name is made of.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_prints_back() {
        for spec in [
            "ip",
            "global",
            "user",
            "custom",
            "header:x-api-key",
            "jwt:sub",
            "jwt:https//example.com/tenant",
        ] {
            let parsed: KeySpec = spec.parse().unwrap();
            assert_eq!(parsed.to_string(), spec);
        }
        assert_eq!(
            "header:X-API-Key".parse::<KeySpec>().unwrap(),
            KeySpec::Header("x-api-key".into())
        );
        assert!("jwt:sub".parse::<KeySpec>().unwrap().needs_jwt());
        assert!(!KeySpec::Ip.needs_jwt());
    }

    #[test]
    fn bad_specs_name_the_spec_and_the_reason() {
        let cases = [
            ("", "expected ip"),
            ("IP", "expected ip"),
            ("cookie:session", "expected ip"),
            ("header:", "is empty"),
            ("header:X Api", "header name"),
            ("header:a:b", "header name"),
            ("jwt:a:b", "claim name"),
            ("jwt:a b", "claim name"),
        ];
        for (spec, reason) in cases {
            let err = spec.parse::<KeySpec>().unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("{spec:?}")), "{message}");
            assert!(message.contains(reason), "{spec:?}: {message}");
        }
        let long = format!("header:{}", "x".repeat(65));
        assert!(long
            .parse::<KeySpec>()
            .unwrap_err()
            .to_string()
            .contains("longer than 64"));
    }
}
