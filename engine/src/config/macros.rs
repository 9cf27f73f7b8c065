//! The `string_enum!` macro: closed sets of wire strings (provider ids, languages, voices).
//!
//! One definition gives the enum, its canonical spelling, accepted input aliases and a serde
//! implementation whose error names the bad value and lists every accepted one.

/// Declares a fieldless enum that travels as one of a fixed set of strings.
///
/// Syntax: `string_enum! { pub enum Name: "noun" { Variant = "wire" | "alias", … } }`, with doc
/// comments on the enum and on every variant.
/// The noun is used in error messages (`unknown provider "foo" (expected one of: …)`).
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $what:literal {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $value:literal $(| $alias:literal)*
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        #[allow(dead_code)]
        impl $name {
            /// Every value, in the order the spec lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical wire spelling of every value, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($value),+];

            /// The canonical wire spelling (what serialization writes).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }

            /// Parses the canonical spelling or one of its accepted aliases.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($value $(| $alias)* => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::config::error::ConfigErrorKind;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                Self::from_name(name).ok_or_else(|| {
                    $crate::config::error::ConfigErrorKind::unknown_value($what, name, Self::NAMES)
                })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let name = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                name.parse().map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}
