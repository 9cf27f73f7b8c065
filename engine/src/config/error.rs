//! Errors raised while reading or checking an assistant configuration.
//!
//! Every error carries the dotted path of the field at fault (`llm_config.tools[1].name`), so a
//! host can show the author of a config exactly what to fix.

use std::fmt;

use thiserror::Error;

/// A configuration problem, located by the path of the field that caused it.
///
/// Displays as `path: problem`, e.g. `stt_config.model: missing required field`. Paths use the
/// canonical snake_case field names even when the input used a camelCase alias.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    path: String,
    kind: ConfigErrorKind,
}

/// What went wrong, without the location.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The text is not valid JSON.
    Syntax {
        /// The JSON parser's description.
        message: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// A required field is absent or `null`.
    MissingField,
    /// A string is not one of the accepted values.
    UnknownValue {
        /// What the value names ("provider", "language", "voice" …).
        what: &'static str,
        /// The value found.
        value: String,
        /// Every accepted value.
        expected: Vec<&'static str>,
    },
    /// A number is outside the range the spec allows, and the spec does not say to clamp it.
    OutOfRange {
        /// The value found, as written.
        value: String,
        /// The allowed range, as `min..=max`.
        range: String,
    },
    /// Any other problem (wrong type, bad format, too long, conflicting fields), in words.
    Invalid(String),
}

impl ConfigErrorKind {
    /// An [`UnknownValue`](Self::UnknownValue) for `value`, listing `expected`.
    pub fn unknown_value(what: &'static str, value: &str, expected: &[&'static str]) -> Self {
        ConfigErrorKind::UnknownValue {
            what,
            value: value.to_owned(),
            expected: expected.to_vec(),
        }
    }
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigErrorKind::Syntax {
                message,
                line,
                column,
            } => write!(f, "invalid JSON at line {line} column {column}: {message}"),
            ConfigErrorKind::MissingField => f.write_str("missing required field"),
            ConfigErrorKind::UnknownValue {
                what,
                value,
                expected,
            } => write!(
                f,
                "unknown {what} \"{value}\" (expected one of: {})",
                expected.join(", ")
            ),
            ConfigErrorKind::OutOfRange { value, range } => {
                write!(f, "{value} out of range {range}")
            }
            ConfigErrorKind::Invalid(message) => f.write_str(message),
        }
    }
}

impl ConfigError {
    /// An error of `kind` at `path` (dotted, e.g. `speech_config.silence.max_attempts`).
    pub fn new(path: impl Into<String>, kind: ConfigErrorKind) -> Self {
        ConfigError {
            path: path.into(),
            kind,
        }
    }

    /// A required field is missing at `path`.
    pub fn missing(path: impl Into<String>) -> Self {
        Self::new(path, ConfigErrorKind::MissingField)
    }

    /// `value` at `path` is not one of `expected`.
    pub fn unknown(
        path: impl Into<String>,
        what: &'static str,
        value: &str,
        expected: &[&'static str],
    ) -> Self {
        Self::new(path, ConfigErrorKind::unknown_value(what, value, expected))
    }

    /// `value` at `path` lies outside `min..=max`.
    pub fn out_of_range(
        path: impl Into<String>,
        value: impl fmt::Display,
        min: impl fmt::Display,
        max: impl fmt::Display,
    ) -> Self {
        Self::new(
            path,
            ConfigErrorKind::OutOfRange {
                value: value.to_string(),
                range: format!("{min}..={max}"),
            },
        )
    }

    /// Any other problem at `path`, described by `message`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(path, ConfigErrorKind::Invalid(message.into()))
    }

    /// The dotted path of the offending field; empty for the document itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// The same error seen from an enclosing object: `parent` is put in front of the path.
    pub fn within(mut self, parent: &str) -> Self {
        self.path = join(parent, &self.path);
        self
    }

    fn render(&self) -> String {
        if self.path.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}: {}", self.path, self.kind)
        }
    }

    /// Converts a JSON syntax error (the text is not JSON at all).
    pub(crate) fn from_syntax(err: &serde_json::Error) -> Self {
        let message = strip_position(err);
        Self::new(
            "",
            ConfigErrorKind::Syntax {
                message,
                line: err.line(),
                column: err.column(),
            },
        )
    }

    /// Converts a typed-deserialization error, keeping the path where it happened.
    pub(crate) fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = canonical_path(err.path());
        let message = strip_position(err.inner());
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            return Self::missing(join(&path, &snake_case(field)));
        }
        Self::invalid(path, message)
    }
}

/// Joins a parent path and a child segment (`a` + `b` = `a.b`, `a` + `[0]` = `a[0]`).
pub(crate) fn join(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (false, true) => parent.to_owned(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// Converts a camelCase key to snake_case (`maxDurationSeconds` → `max_duration_seconds`).
pub(crate) fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Renders a serde path with canonical (snake_case) key names.
fn canonical_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        let piece = match segment {
            Segment::Seq { index } => format!("[{index}]"),
            Segment::Map { key } => snake_case(key),
            Segment::Enum { variant } => snake_case(variant),
            Segment::Unknown => "?".to_owned(),
        };
        out = join(&out, &piece);
    }
    out
}

/// The parser's message without the trailing " at line L column C" (the path says where).
fn strip_position(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match message.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_path_and_problem() {
        let err = ConfigError::out_of_range(
            "speech_config.turn_taking.endpointing_max_delay",
            90,
            0.1,
            5,
        );
        assert_eq!(
            err.to_string(),
            "speech_config.turn_taking.endpointing_max_delay: 90 out of range 0.1..=5"
        );
        let err = ConfigError::unknown("llm_config.provider", "provider", "foo", &["a", "b"]);
        assert_eq!(
            err.to_string(),
            "llm_config.provider: unknown provider \"foo\" (expected one of: a, b)"
        );
        assert_eq!(
            ConfigError::missing("").to_string(),
            "missing required field"
        );
    }

    #[test]
    fn join_handles_indexes_and_roots() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("a", "[2]"), "a[2]");
        assert_eq!(join("a[2]", "b"), "a[2].b");
        assert_eq!(
            ConfigError::missing("name").within("tools[0]").path(),
            "tools[0].name"
        );
    }

    #[test]
    fn snake_case_converts_camel_keys() {
        assert_eq!(snake_case("maxDurationSeconds"), "max_duration_seconds");
        assert_eq!(snake_case("voice_id"), "voice_id");
        assert_eq!(snake_case("ttsConfig"), "tts_config");
    }
}
