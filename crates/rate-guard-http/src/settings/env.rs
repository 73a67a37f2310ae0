//! [`Settings::from_env`]: the settings from `RATE_GUARD_*` environment variables, read the
//! way the Python package's pydantic settings read them, so one environment configures
//! services in both languages. The variables are those of [`Settings::fields`], each read
//! by its field's class: no list of its own to keep.
//!
//! - The variable of a field is `RATE_GUARD_` and the field's name, in any case
//!   (`RATE_GUARD_REDIS_URL`, `RATE_GUARD_KEY_PREFIX`).
//! - Lists are JSON: `RATE_GUARD_GLOBAL_RULES='[{"limit": "100/minute"}]'`,
//!   `RATE_GUARD_TRUSTED_PROXIES='["10.0.0.0/8"]'`.
//! - Booleans are `true/false`, `1/0`, `yes/no`, `on/off` (any case); numbers are decimal.
//! - An empty value of an optional field (`RATE_GUARD_REDIS_URL=`) is `None`.
//! - Variables of fields this crate does not have (the Python-only `RATE_GUARD_LIMITED_HANDLER`,
//!   say) are ignored; a bad value is an [`Error::Env`] naming the variable, never showing the
//!   value (it may be a secret), except a name that is not one of an enum's (`headers`,
//!   `forwarded_header`, `log_identities`), which cannot be.

use serde_json::{Map, Value};

use super::{FieldClass, Settings};
use crate::error::Error;

/// The prefix of every variable.
pub const ENV_PREFIX: &str = "RATE_GUARD_";

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Json,
    Text,
    OptionalText,
    Number,
    OptionalNumber,
}

impl Kind {
    fn of(class: &FieldClass) -> Self {
        match class {
            FieldClass::Bool => Kind::Bool,
            FieldClass::Int | FieldClass::Float => Kind::Number,
            FieldClass::Optional(item) => match **item {
                FieldClass::Int | FieldClass::Float => Kind::OptionalNumber,
                _ => Kind::OptionalText,
            },
            FieldClass::Str | FieldClass::Enum(_) => Kind::Text,
            _ => Kind::Json,
        }
    }
}

impl Settings {
    /// The defaults, overridden by the `RATE_GUARD_*` variables of this process; see the
    /// [module docs](crate::env).
    pub fn from_env() -> Result<Self, Error> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Ok(name) = name.into_string() else {
                continue; // not UTF-8, so not one of ours
            };
            match value.into_string() {
                Ok(value) => vars.push((name, value)),
                Err(_) if field_of(&name).is_some() => {
                    return Err(Error::Env {
                        var: name,
                        reason: "the value is not valid UTF-8".to_owned(),
                    })
                }
                Err(_) => {}
            }
        }
        Self::from_env_vars(vars)
    }

    /// [`from_env`](Self::from_env) over the given variables instead of the process's.
    ///
    /// ```
    /// use rate_guard_http::Settings;
    ///
    /// let config = Settings::from_env_vars([
    ///     ("RATE_GUARD_REDIS_URL", "redis://127.0.0.1:6379/0"),
    ///     ("RATE_GUARD_GLOBAL_RULES", r#"[{"limit": "100/minute"}]"#),
    ///     ("RATE_GUARD_FAIL_OPEN", "false"),
    ///     ("HOME", "/root"),
    /// ])?;
    /// assert_eq!(config.redis_url.as_deref(), Some("redis://127.0.0.1:6379/0"));
    /// assert_eq!(config.global_rules[0].limit, "100/minute");
    /// assert!(!config.fail_open);
    ///
    /// let err = Settings::from_env_vars([("RATE_GUARD_REDIS_TIMEOUT", "soon")]).unwrap_err();
    /// assert!(err.to_string().contains("RATE_GUARD_REDIS_TIMEOUT"));
    /// # Ok::<(), rate_guard_http::Error>(())
    /// ```
    pub fn from_env_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, Error>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut fields = Map::new();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            let Some((field, kind)) = field_of(name) else {
                continue;
            };
            let bad = |reason: String| Error::Env {
                var: name.to_owned(),
                reason,
            };
            let value = parse(kind, value).map_err(bad)?;
            // Checked one field at a time, so that the error names its variable.
            let mut one = Map::new();
            one.insert(field.to_owned(), value.clone());
            if let Err(e) = serde_json::from_value::<Settings>(Value::Object(one)) {
                return Err(bad(strip_value(&e.to_string())));
            }
            fields.insert(field.to_owned(), value);
        }
        serde_json::from_value(Value::Object(fields)).map_err(|e| Error::Env {
            var: format!("{ENV_PREFIX}*"),
            reason: strip_value(&e.to_string()),
        })
    }
}

/// The field a variable sets, and how its value is read.
fn field_of(name: &str) -> Option<(&'static str, Kind)> {
    let field = name
        .get(..ENV_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
        .map(|_| name[ENV_PREFIX.len()..].to_ascii_lowercase())?;
    Settings::fields()
        .into_iter()
        .find(|f| f.name == field)
        .map(|f| (f.name, Kind::of(&f.class)))
}

fn parse(kind: Kind, value: &str) -> Result<Value, String> {
    let text = value.trim();
    match kind {
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "t" | "yes" | "y" | "on" => Ok(Value::Bool(true)),
            "0" | "false" | "f" | "no" | "n" | "off" => Ok(Value::Bool(false)),
            _ => Err("expected a boolean (true/false, 1/0, yes/no, on/off)".to_owned()),
        },
        Kind::Json => serde_json::from_str(text).map_err(|e| {
            format!(
                "expected JSON (a list such as [\"a\", \"b\"] or [{{\"limit\": \"100/minute\"}}]): {}",
                strip_value(&e.to_string())
            )
        }),
        Kind::OptionalText | Kind::OptionalNumber if text.is_empty() => Ok(Value::Null),
        Kind::Text | Kind::OptionalText => Ok(Value::String(value.to_owned())),
        Kind::Number | Kind::OptionalNumber => match serde_json::from_str::<Value>(text) {
            Ok(n @ Value::Number(_)) => Ok(n),
            _ => Err("expected a number".to_owned()),
        },
    }
}

/// A serde message without the value it quotes (`invalid type: string "..."`), which may be a
/// secret; field names (quoted with backticks) stay.
pub(super) fn strip_value(message: &str) -> String {
    match message.find('"') {
        Some(i) => format!("{}…", message[..i].trim_end()),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_variable() {
        for field in Settings::fields() {
            let var = format!("{ENV_PREFIX}{}", field.name.to_ascii_uppercase());
            assert_eq!(field_of(&var).map(|(f, _)| f), Some(field.name));
        }
    }

    #[test]
    fn every_kind_is_read() {
        let config = Settings::from_env_vars([
            ("rate_guard_enabled", "off"),
            ("RATE_GUARD_IN_MEMORY_FALLBACK", "1"),
            (
                "RATE_GUARD_ROUTES",
                r#"[{"path": "/x", "method": "POST", "rules": [{"limit": "5/minute", "key": "global"}]}]"#,
            ),
            ("RATE_GUARD_TRUSTED_PROXIES", r#"["10.0.0.0/8", "unix"]"#),
            ("RATE_GUARD_KEY_PREFIX", "svc"),
            ("RATE_GUARD_JWT_AUDIENCE", "api"),
            ("RATE_GUARD_JWT_ISSUER", ""),
            ("RATE_GUARD_IPV6_PREFIX", "56"),
            ("RATE_GUARD_IPV4_PREFIX", "24"),
            ("RATE_GUARD_REDIS_TIMEOUT", "0.25"),
            ("RATE_GUARD_MEMORY_MAX_KEYS", "1000"),
            ("RATE_GUARD_HEADERS", "both"),
            ("RATE_GUARD_LOG_DENIALS_PER_SECOND", "0.5"),
            ("RATE_GUARD_LOG_IDENTITY_SALT", "pepper"),
            ("RATE_GUARD_LIMITED_HANDLER", "app.handlers.limited"),
        ])
        .unwrap();
        assert!(!config.enabled && config.in_memory_fallback);
        assert_eq!(config.routes[0].method.as_deref(), Some("POST"));
        assert_eq!(config.routes[0].rules[0].key, "global");
        assert_eq!(config.trusted_proxies, ["10.0.0.0/8", "unix"]);
        assert_eq!(config.key_prefix, "svc");
        assert_eq!(config.jwt_audience.as_deref(), Some("api"));
        assert_eq!(config.jwt_issuer, None);
        assert_eq!(config.ipv6_prefix, 56);
        assert_eq!(config.ipv4_prefix, 24);
        assert!((config.redis_timeout - 0.25).abs() < f64::EPSILON);
        assert_eq!(config.memory_max_keys, Some(1000));
        assert_eq!(config.headers, crate::HeaderStyle::Both);
        assert!((config.log_denials_per_second - 0.5).abs() < f64::EPSILON);
        assert_eq!(config.log_identity_salt.as_deref(), Some("pepper"));
    }

    #[test]
    fn an_empty_redis_url_means_memory() {
        let config = Settings::from_env_vars([("RATE_GUARD_REDIS_URL", "")]).unwrap();
        assert_eq!(config.redis_url, None);
    }

    #[test]
    fn bad_values_name_the_variable_and_hide_the_value() {
        let cases = [
            ("RATE_GUARD_FAIL_OPEN", "maybe"),
            ("RATE_GUARD_GLOBAL_RULES", "100/minute"),
            (
                "RATE_GUARD_GLOBAL_RULES",
                r#"[{"limit": "1/s", "colour": "s3cret"}]"#,
            ),
            ("RATE_GUARD_JWT_KEYS", r#""s3cret""#),
            ("RATE_GUARD_IPV6_PREFIX", "-1"),
            ("RATE_GUARD_IPV4_PREFIX", "x"),
            ("RATE_GUARD_REDIS_POOL_SIZE", "2.5"),
            ("RATE_GUARD_BREAKER_THRESHOLD", "many"),
        ];
        for (var, value) in cases {
            let err = Settings::from_env_vars([(var, value)]).unwrap_err();
            let shown = err.to_string();
            assert!(
                matches!(&err, Error::Env { var: v, .. } if v == var),
                "{shown}"
            );
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        let err = Settings::from_env_vars([(
            "RATE_GUARD_GLOBAL_RULES",
            r#"[{"limit": "1/s", "colour": "red"}]"#,
        )])
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
