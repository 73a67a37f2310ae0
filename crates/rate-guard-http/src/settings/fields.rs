//! What each field of [`Settings`](super::Settings) is: its type class, range and
//! documentation, for the environment reader and for the Python model's parity test.

use std::fmt;

use rate_guard_core::bounds::{self, FloatRange, IntRange, SecondsRange};

use super::{RouteConfig, RuleConfig};
use crate::{ForwardedHeader, HeaderStyle, Identities};

/// A field's kind of value, as both languages can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldClass {
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Int,
    /// A real number.
    Float,
    /// Text.
    Str,
    /// One of these names.
    Enum(Vec<&'static str>),
    /// A list of values of the class.
    List(Box<FieldClass>),
    /// A value of the class, or none.
    Optional(Box<FieldClass>),
    /// A [`RuleConfig`].
    Rule,
    /// A [`RouteConfig`].
    Route,
}

impl fmt::Display for FieldClass {
    /// `bool`, `int`, `float`, `str`, `enum`, `rule`, `route`, `list[str]`, `optional[int]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool => f.write_str("bool"),
            Self::Int => f.write_str("int"),
            Self::Float => f.write_str("float"),
            Self::Str => f.write_str("str"),
            Self::Enum(_) => f.write_str("enum"),
            Self::Rule => f.write_str("rule"),
            Self::Route => f.write_str("route"),
            Self::List(item) => write!(f, "list[{item}]"),
            Self::Optional(item) => write!(f, "optional[{item}]"),
        }
    }
}

/// A field's range, from [`bounds`] (the one table of ranges).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum FieldRange {
    /// A whole number.
    Int(&'static IntRange),
    /// A duration in seconds.
    Seconds(&'static SecondsRange),
    /// A real number.
    Float(&'static FloatRange),
}

impl FieldRange {
    /// The range of the setting `name`, if it is a number with one.
    #[must_use]
    pub fn of(name: &str) -> Option<Self> {
        bounds::int_range(name)
            .map(Self::Int)
            .or_else(|| bounds::seconds_range(name).map(Self::Seconds))
            .or_else(|| bounds::float_range(name).map(Self::Float))
    }

    /// Both ends, as numbers.
    #[must_use]
    pub fn ends(self) -> (f64, f64) {
        match self {
            Self::Int(r) => (r.min as f64, r.max as f64),
            Self::Seconds(r) => (r.min_seconds(), r.max_seconds()),
            Self::Float(r) => (r.min, r.max),
        }
    }
}

/// One field of [`Settings`](super::Settings).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FieldInfo {
    /// The name, as configuration files, the environment and Python spell it.
    pub name: &'static str,
    /// Its kind of value.
    pub class: FieldClass,
    /// Its documentation.
    pub doc: &'static str,
}

impl FieldInfo {
    pub(super) fn new(name: &'static str, class: FieldClass, doc: &'static str) -> Self {
        Self { name, class, doc }
    }

    /// Its range, when it is a number with one.
    #[must_use]
    pub fn range(&self) -> Option<FieldRange> {
        FieldRange::of(self.name)
    }

    /// Whether it holds a secret (never shown, never quoted).
    #[must_use]
    pub fn is_secret(&self) -> bool {
        super::SECRET_FIELDS.contains(&self.name)
    }

    /// Whether [`Settings::check_field`](super::Settings::check_field) checks it on its own
    /// (a range, or what the engine parses of it).
    #[must_use]
    pub fn is_checked(&self) -> bool {
        self.range().is_some() || super::CHECKED_FIELDS.contains(&self.name)
    }
}

/// The class of a field's Rust type.
pub(super) trait Field {
    fn class() -> FieldClass;
}

macro_rules! class {
    ($class:expr => $($ty:ty),*) => {$(
        impl Field for $ty {
            fn class() -> FieldClass {
                $class
            }
        }
    )*};
}

class!(FieldClass::Bool => bool);
class!(FieldClass::Int => u32, usize);
class!(FieldClass::Float => f64);
class!(FieldClass::Str => String);
class!(FieldClass::Rule => RuleConfig);
class!(FieldClass::Route => RouteConfig);
class!(FieldClass::Enum(HeaderStyle::ALL.iter().map(|v| v.name()).collect()) => HeaderStyle);
class!(FieldClass::Enum(ForwardedHeader::ALL.iter().map(|v| v.name()).collect()) => ForwardedHeader);
class!(FieldClass::Enum(Identities::ALL.iter().map(|v| v.as_str()).collect()) => Identities);

impl<T: Field> Field for Option<T> {
    fn class() -> FieldClass {
        FieldClass::Optional(Box::new(T::class()))
    }
}

impl<T: Field> Field for Vec<T> {
    fn class() -> FieldClass {
        FieldClass::List(Box::new(T::class()))
    }
}
