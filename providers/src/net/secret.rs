//! API keys that cannot leak through logs: `Debug` and `Display` print `***`, never the key.
//!
//! The key is only reachable through [`ApiKey::expose`], which the request builders call
//! when they set an auth header, and [`ApiKey::redact`] scrubs it from server-echoed text.

use std::fmt;

/// A provider API key (or bearer token). Formatting never reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Box<str>);

/// The general name for the same thing: any credential that must not be printed.
pub type Secret = ApiKey;

impl ApiKey {
    /// Wraps a key; surrounding whitespace (a common copy-paste accident) is trimmed.
    pub fn new(key: impl AsRef<str>) -> Self {
        ApiKey(key.as_ref().trim().into())
    }

    /// Reads the key from a config value, treating an empty or blank value as absent.
    pub fn from_config(value: Option<&str>) -> Option<Self> {
        value
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(ApiKey::new)
    }

    /// The key itself, for building an auth header. Never format this into a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the key is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every occurrence of the key replaced by `***`, for text that came back
    /// from a server (some echo the key in their 401 body) before it goes into an error.
    pub fn redact(&self, text: &str) -> String {
        if self.0.len() < 4 || !text.contains(&*self.0) {
            // Very short keys are test placeholders; replacing them would mangle real words.
            return text.to_string();
        }
        text.replace(&*self.0, "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey::new(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        ApiKey::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_hides_the_key() {
        let key = ApiKey::new("sk-very-secret-123");
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(format!("{key}"), "***");
        assert_eq!(format!("{:?}", Some(key.clone())), "Some(ApiKey(***))");
        assert_eq!(key.expose(), "sk-very-secret-123");
    }

    #[test]
    fn blank_config_values_are_absent() {
        assert!(ApiKey::from_config(None).is_none());
        assert!(ApiKey::from_config(Some("  ")).is_none());
        assert_eq!(
            ApiKey::from_config(Some(" k-123 \n")).map(|k| k.expose().to_string()),
            Some("k-123".to_string())
        );
    }

    #[test]
    fn redact_scrubs_echoed_keys() {
        let key = ApiKey::new("sk-abcdef");
        assert_eq!(
            key.redact("Incorrect API key provided: sk-abcdef."),
            "Incorrect API key provided: ***."
        );
        assert_eq!(key.redact("nothing here"), "nothing here");
    }
}
