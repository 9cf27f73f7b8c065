//! The platform's assistant schema: what an assistant hears, thinks with, says and how it
//! behaves on a call (spec §3, §8.3–§8.17, §9).
//!
//! Parse with [`Assistant::from_json`]; resolve an `assistant-request` answer with
//! [`resolve_assistant`]. Output is snake_case, camelCase aliases are accepted on input, and every
//! error names the field path (`llm_config.provider: unknown provider "foo" (…)`). Unknown
//! fields are ignored, since the platform adds fields over time; known ones are checked strictly.

#[macro_use]
mod macros;

pub mod analysis;
pub mod assistant;
mod check;
pub mod consent;
pub mod error;
pub mod llm;
pub mod request;
pub mod speech;
pub mod stt;
pub mod tools;
pub mod tts;
pub mod voices;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use analysis::{fill_placeholders, AnalysisPlan, PlaceholderValues, StructuredDataPlan};
pub use assistant::{Assistant, VoicemailSettings, WebhookEvent};
pub use consent::RecordingConsent;
pub use error::{ConfigError, ConfigErrorKind};
pub use llm::{LlmConfig, LlmKind, LlmProvider, RealtimeSettings, TurnDetectionSettings};
pub use request::{
    merge_shallow, resolve_assistant, AssistantRequestResponse, Resolution, ResolvedAssistant,
    ResponseMode,
};
pub use speech::{
    BackgroundAudioSettings, PronunciationRule, SilenceSchedule, SpeechConfig, TurnTakingSettings,
};
pub use stt::{SttConfig, SttLanguage, SttProvider};
pub use tools::{FunctionSpec, FunctionTool, Tool, ToolShape, TransferDestination};
pub use tts::{TtsConfig, TtsProvider};

string_enum! {
    /// How a call is processed (spec §9.1; the webhook field `call.pipeline`).
    pub enum Pipeline: "pipeline" {
        /// STT → LLM → TTS.
        Standard = "standard",
        /// One speech-to-speech model hears and speaks (value inferred, spec §13 item 7).
        Realtime = "realtime",
    }
}

string_enum! {
    /// Who placed the call; several settings apply to one direction only.
    pub enum CallDirection: "direction" {
        /// The caller dialled the assistant's number.
        Inbound = "inbound",
        /// The assistant dialled out.
        Outbound = "outbound",
        /// A browser (WebRTC) call.
        Web = "web",
    }
}

/// A block of the assistant schema that can be parsed, normalized and validated on its own.
///
/// `from_json` / `from_value` run the three steps in order, so a parsed value is always valid.
/// Validation paths are relative to the block; [`Assistant`] prefixes them with the block name.
pub trait ConfigSection: Serialize + DeserializeOwned {
    /// Applies the spec's clamping rules in place. Most blocks reject instead and do nothing here.
    fn normalize(&mut self) {}

    /// Checks required values and ranges; `path` is the block's location, used in errors.
    fn validate_at(&self, path: &str) -> Result<(), ConfigError>;

    /// Parses a JSON value, reporting type errors with their field path, then normalizes and
    /// validates.
    fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let mut section: Self =
            serde_path_to_error::deserialize(value).map_err(ConfigError::from_serde)?;
        section.normalize();
        section.validate_at("")?;
        Ok(section)
    }

    /// Parses JSON text; see [`ConfigSection::from_value`].
    fn from_json(json: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(json).map_err(|e| ConfigError::from_syntax(&e))?;
        Self::from_value(&value)
    }
}
