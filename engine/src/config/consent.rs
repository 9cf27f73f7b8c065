//! `recording_consent`: the DTMF gate before an inbound call is recorded or processed (spec §9.6).
//!
//! The prompt is spoken by TTS; until the caller presses 1 no audio goes to STT, no LLM runs and
//! no recording starts. 2, or no key after the prompt was repeated once, ends the call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check;
use super::error::{join, ConfigError};
use super::ConfigSection;

/// `recording_consent` of an assistant: both fields are required when the block is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingConsent {
    /// Whether inbound calls are gated.
    pub enabled: bool,
    /// The prompt asking the caller to press 1 (agree) or 2 (decline).
    pub message: String,
}

impl RecordingConsent {
    /// The key that gives consent.
    pub const AGREE_DIGIT: char = '1';
    /// The key that refuses consent and ends the call.
    pub const DECLINE_DIGIT: char = '2';
    /// How long to wait for a key after the prompt.
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
    /// How many times the prompt is spoken in total (once, then one repeat).
    pub const MAX_PROMPTS: u32 = 2;
}

impl ConfigSection for RecordingConsent {
    /// An enabled gate needs a prompt to speak.
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        if self.enabled {
            check::non_blank(&join(path, "message"), &self.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_fields_required() {
        let err = RecordingConsent::from_json(r#"{"enabled":true}"#).unwrap_err();
        assert_eq!(err.to_string(), "message: missing required field");
        let err = RecordingConsent::from_json(r#"{"enabled":true,"message":" "}"#).unwrap_err();
        assert_eq!(err.path(), "message");
        assert!(RecordingConsent::from_json(r#"{"enabled":false,"message":""}"#).is_ok());
    }
}
