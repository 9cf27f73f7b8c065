//! The assistant: everything the engine needs to run one call (spec §8.8, §8.17, §9).
//!
//! [`Assistant::from_json`] parses, clamps what the spec says to clamp and validates, with errors
//! that name the field. The accessors turn the optional knobs into effective settings
//! (`Duration`s, schedules, tool lists) so the call engine never re-derives a default.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::analysis::AnalysisPlan;
use super::check;
use super::consent::RecordingConsent;
use super::error::{join, snake_case, ConfigError};
use super::llm::{LlmConfig, RealtimeSettings};
use super::speech::{
    BackgroundAudioSettings, PronunciationRule, SilenceSchedule, SpeechConfig, TurnTakingSettings,
};
use super::stt::SttConfig;
use super::tools::{Tool, END_CALL_TOOL_NAME};
use super::tts::TtsConfig;
use super::{CallDirection, ConfigSection, Pipeline};

string_enum! {
    /// The four webhook events an assistant can subscribe to (spec §2.3).
    pub enum WebhookEvent: "webhook event" {
        /// Dynamic configuration before an inbound call is answered.
        AssistantRequest = "assistant-request",
        /// The model called a tool.
        ToolCalls = "tool-calls",
        /// The call changed status.
        StatusUpdate = "status-update",
        /// Summary, analysis and transcript after the call.
        EndOfCallReport = "end-of-call-report",
    }
}

/// Phrases that mark a voicemail greeting in the called party's first utterance (spec §9.3).
pub const VOICEMAIL_PHRASES: &[&str] = &[
    "voicemail",
    "leave a message",
    "please record",
    "unavailable",
    "not available",
    "not here",
    "after the tone",
    "after the beep",
    "press star",
    "speak your message",
    "call back later",
    "mailbox",
    "beep",
    "message",
];

/// Top-level keys of the assistant object, canonical spelling. Used to fold camelCase keys
/// before a shallow merge and to tell schema keys from extra keys echoed to webhooks.
pub const ASSISTANT_FIELDS: &[&str] = &[
    "id",
    "name",
    "business_name",
    "notification_email",
    "notification_emails",
    "recording_consent",
    "first_message",
    "is_active",
    "max_duration_seconds",
    "autonomous_silence_handling",
    "silence_timeout_seconds",
    "voicemail_detection",
    "voicemail_message",
    "gdpr_mode",
    "webhook_url",
    "webhook_secret",
    "webhook_events",
    "analysis_plan",
    "stt_config",
    "llm_config",
    "tts_config",
    "speech_config",
    "metadata",
    "created_at",
    "updated_at",
];

/// The canonical name of a top-level assistant key: `ttsConfig` → `tts_config`; keys that are
/// not assistant fields are returned unchanged.
pub fn canonical_assistant_key(key: &str) -> Cow<'_, str> {
    if ASSISTANT_FIELDS.contains(&key) {
        return Cow::Borrowed(key);
    }
    let snake = snake_case(key);
    if ASSISTANT_FIELDS.contains(&snake.as_str()) {
        Cow::Owned(snake)
    } else {
        Cow::Borrowed(key)
    }
}

/// An assistant configuration (schemas Agent / TransientAssistant / AssistantConfigOverride).
///
/// Only `llm_config` is required by the parser; `stt_config` and `tts_config` are required for
/// the standard pipeline and checked by validation. Output is snake_case; camelCase is accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assistant {
    /// Saved assistant id (read-only on the platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Business the assistant represents.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "businessName"
    )]
    pub business_name: Option<String>,
    /// Email for call notifications.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "notificationEmail"
    )]
    pub notification_email: Option<String>,
    /// Recipients of the end-of-call email (at most 5).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "notificationEmails"
    )]
    pub notification_emails: Option<Vec<String>>,
    /// DTMF consent gate for inbound calls (spec §9.6).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "recordingConsent"
    )]
    pub recording_consent: Option<RecordingConsent>,
    /// Greeting spoken when the call starts; no greeting when absent or empty.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "firstMessage"
    )]
    pub first_message: Option<String>,
    /// Whether the assistant takes calls.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "isActive")]
    pub is_active: Option<bool>,
    /// Hard cap on call length in seconds (≥ 1); no cap when absent (spec §9.8).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "maxDurationSeconds"
    )]
    pub max_duration_seconds: Option<i64>,
    /// Check on a silent caller and hang up after the last check (default false, spec §9.2).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "autonomousSilenceHandling"
    )]
    pub autonomous_silence_handling: Option<bool>,
    /// In the schema (example 8) but undocumented; kept and echoed, not used (spec §9.2).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "silenceTimeoutSeconds"
    )]
    pub silence_timeout_seconds: Option<f64>,
    /// Detect voicemail on outbound calls (default false, spec §9.3).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "voicemailDetection"
    )]
    pub voicemail_detection: Option<bool>,
    /// Left on a detected voicemail; hang up silently when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "voicemailMessage"
    )]
    pub voicemail_message: Option<String>,
    /// GDPR mode; its behaviour is undocumented (spec §9.6), kept and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "gdprMode")]
    pub gdpr_mode: Option<bool>,
    /// Assistant-level webhook URL (tool `url` overrides it; it overrides the account's).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "webhookUrl")]
    pub webhook_url: Option<String>,
    /// HMAC key for webhook signatures.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "webhookSecret"
    )]
    pub webhook_secret: Option<String>,
    /// Events sent to `webhook_url`; all four when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "webhookEvents"
    )]
    pub webhook_events: Option<Vec<WebhookEvent>>,
    /// Post-call structured analysis (spec §8.11).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "analysisPlan"
    )]
    pub analysis_plan: Option<AnalysisPlan>,
    /// Speech-to-text (required for the standard pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "sttConfig")]
    pub stt_config: Option<SttConfig>,
    /// The model; its provider decides the pipeline.
    #[serde(alias = "llmConfig")]
    pub llm_config: LlmConfig,
    /// Text-to-speech (required for the standard pipeline, `null` for realtime).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "ttsConfig")]
    pub tts_config: Option<TtsConfig>,
    /// Turn-taking, silence and scripted lines (spec §8.9).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "speechConfig"
    )]
    pub speech_config: Option<SpeechConfig>,
    /// Free JSON object echoed in every later webhook of the call (spec §9.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Creation time (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "createdAt")]
    pub created_at: Option<String>,
    /// Last update time (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "updatedAt")]
    pub updated_at: Option<String>,
}

/// What to do when the called party turns out to be a voicemail box (spec §9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailSettings {
    /// Left after the greeting; hang up without speaking when `None`.
    pub message: Option<String>,
}

impl VoicemailSettings {
    /// The phrases that mark a voicemail greeting.
    pub fn phrases(&self) -> &'static [&'static str] {
        VOICEMAIL_PHRASES
    }

    /// True when `first_utterance` contains one of the phrases (case-insensitive).
    pub fn is_voicemail(&self, first_utterance: &str) -> bool {
        let text = first_utterance.to_lowercase();
        VOICEMAIL_PHRASES.iter().any(|p| text.contains(p))
    }
}

fn non_blank(text: Option<&str>) -> Option<&str> {
    text.filter(|t| !t.trim().is_empty())
}

impl Assistant {
    /// An assistant with only `llm_config` set.
    pub fn new(llm_config: LlmConfig) -> Self {
        Assistant {
            id: None,
            name: None,
            business_name: None,
            notification_email: None,
            notification_emails: None,
            recording_consent: None,
            first_message: None,
            is_active: None,
            max_duration_seconds: None,
            autonomous_silence_handling: None,
            silence_timeout_seconds: None,
            voicemail_detection: None,
            voicemail_message: None,
            gdpr_mode: None,
            webhook_url: None,
            webhook_secret: None,
            webhook_events: None,
            analysis_plan: None,
            stt_config: None,
            llm_config,
            tts_config: None,
            speech_config: None,
            metadata: None,
            created_at: None,
            updated_at: None,
        }
    }

    /// Parses, normalizes and validates an assistant from JSON text.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        <Self as ConfigSection>::from_json(json)
    }

    /// Parses, normalizes and validates an assistant from a JSON value.
    pub fn from_value(value: &Value) -> Result<Self, ConfigError> {
        <Self as ConfigSection>::from_value(value)
    }

    /// Checks every section; the error names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at("")
    }

    /// Standard (STT → LLM → TTS) or realtime (speech-to-speech), from `llm_config.provider`.
    pub fn pipeline(&self) -> Pipeline {
        self.llm_config.pipeline()
    }

    /// The greeting for a call in `direction`: outbound calls prefer
    /// `speech_config.first_message_outbound`, then `first_message` (spec §8.9, §9.8).
    /// `None` (or an empty string) means the assistant waits for the caller.
    pub fn first_message_for(&self, direction: CallDirection) -> Option<&str> {
        let outbound = match direction {
            CallDirection::Outbound => non_blank(
                self.speech_config
                    .as_ref()
                    .and_then(|s| s.first_message_outbound.as_deref()),
            ),
            CallDirection::Inbound | CallDirection::Web => None,
        };
        outbound.or_else(|| non_blank(self.first_message.as_deref()))
    }

    /// The hard call-length cap, if any.
    pub fn max_duration(&self) -> Option<Duration> {
        self.max_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
    }

    /// Whether autonomous silence handling is on (default off).
    pub fn autonomous_silence_handling(&self) -> bool {
        self.autonomous_silence_handling.unwrap_or(false)
    }

    /// Effective turn-taking; spec defaults when unset. Applies to the standard pipeline only;
    /// a realtime model uses `llm_config.turn_detection` (see [`Self::realtime`]).
    pub fn turn_taking(&self) -> TurnTakingSettings {
        self.speech_config.as_ref().map_or_else(
            TurnTakingSettings::default,
            SpeechConfig::turn_taking_settings,
        )
    }

    /// The silence-check schedule when autonomous silence handling is on (both pipelines).
    pub fn silence_handling(&self) -> Option<SilenceSchedule> {
        self.autonomous_silence_handling().then(|| {
            self.speech_config
                .as_ref()
                .map_or_else(SilenceSchedule::default, SpeechConfig::silence_schedule)
        })
    }

    /// Voicemail handling for a call in `direction`: only outbound calls with
    /// `voicemail_detection` on are checked (spec §9.3).
    pub fn voicemail_for(&self, direction: CallDirection) -> Option<VoicemailSettings> {
        (direction == CallDirection::Outbound && self.voicemail_detection == Some(true)).then(
            || VoicemailSettings {
                message: non_blank(self.voicemail_message.as_deref()).map(str::to_owned),
            },
        )
    }

    /// The consent gate for a call in `direction`: inbound calls only, when enabled (spec §9.6).
    pub fn recording_consent_for(&self, direction: CallDirection) -> Option<&RecordingConsent> {
        self.recording_consent
            .as_ref()
            .filter(|c| c.enabled && direction == CallDirection::Inbound)
    }

    /// Phrases that end the call when the assistant says them (both pipelines).
    pub fn end_call_phrases(&self) -> &[String] {
        self.speech_config
            .as_ref()
            .map_or(&[], |s| s.end_call_phrases.as_slice())
    }

    /// Spoken before the assistant hangs up by itself; standard pipeline only (spec §8.9).
    pub fn end_call_message(&self) -> Option<&str> {
        if self.pipeline() != Pipeline::Standard {
            return None;
        }
        non_blank(
            self.speech_config
                .as_ref()
                .and_then(|s| s.end_call_message.as_deref()),
        )
    }

    /// Pronunciation replacements applied before TTS; empty for the realtime pipeline.
    pub fn pronunciation(&self) -> &[PronunciationRule] {
        match (&self.speech_config, self.pipeline()) {
            (Some(s), Pipeline::Standard) => &s.pronunciation,
            _ => &[],
        }
    }

    /// Effective background audio (off when unset).
    pub fn background_audio(&self) -> BackgroundAudioSettings {
        self.speech_config.as_ref().map_or_else(
            BackgroundAudioSettings::default,
            SpeechConfig::background_audio_settings,
        )
    }

    /// The tools offered to the model: `llm_config.tools`, plus the built-in `end_call` when
    /// autonomous silence handling is on and no tool of that name exists (spec §9.2).
    pub fn tools(&self) -> Vec<Tool> {
        let mut tools = self.llm_config.tools.clone();
        if self.autonomous_silence_handling()
            && !tools.iter().any(|t| t.name() == END_CALL_TOOL_NAME)
        {
            tools.push(Tool::EndCall);
        }
        tools
    }

    /// Effective realtime session settings; `None` for the standard pipeline.
    pub fn realtime(&self) -> Option<RealtimeSettings> {
        self.llm_config.realtime()
    }

    /// Whether `event` goes to this assistant's webhook: a URL must be set, and the event must be
    /// listed in `webhook_events` (all events when the list is absent).
    pub fn sends_webhook(&self, event: WebhookEvent) -> bool {
        let listed = match &self.webhook_events {
            None => true,
            Some(events) => events.contains(&event),
        };
        self.webhook_url.is_some() && listed
    }

    /// The custom metadata object, empty when none was given.
    pub fn metadata(&self) -> Map<String, Value> {
        self.metadata.clone().unwrap_or_default()
    }
}

impl ConfigSection for Assistant {
    fn normalize(&mut self) {
        self.llm_config.normalize();
    }

    /// Checks every section; `stt_config` and `tts_config` are required for the standard
    /// pipeline, and `tts_config` must be null for a realtime one (spec §8.5).
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        self.llm_config.validate_at(&join(path, "llm_config"))?;
        match self.pipeline() {
            Pipeline::Standard => {
                let stt = self
                    .stt_config
                    .as_ref()
                    .ok_or_else(|| ConfigError::missing(join(path, "stt_config")))?;
                stt.validate_at(&join(path, "stt_config"))?;
                let tts = self
                    .tts_config
                    .as_ref()
                    .ok_or_else(|| ConfigError::missing(join(path, "tts_config")))?;
                tts.validate_at(&join(path, "tts_config"))?;
            }
            Pipeline::Realtime => {
                if self.tts_config.is_some() {
                    return Err(ConfigError::invalid(
                        join(path, "tts_config"),
                        format!(
                            "must be null for a realtime llm_config (provider \"{}\")",
                            self.llm_config.provider
                        ),
                    ));
                }
                if let Some(stt) = &self.stt_config {
                    stt.validate_at(&join(path, "stt_config"))?;
                }
            }
        }
        if let Some(speech) = &self.speech_config {
            speech.validate_at(&join(path, "speech_config"))?;
        }
        if let Some(plan) = &self.analysis_plan {
            plan.validate_at(&join(path, "analysis_plan"))?;
        }
        if let Some(consent) = &self.recording_consent {
            consent.validate_at(&join(path, "recording_consent"))?;
        }
        if let Some(seconds) = self.max_duration_seconds {
            if seconds < 1 {
                return Err(ConfigError::invalid(
                    join(path, "max_duration_seconds"),
                    format!("{seconds} is not a positive number of seconds"),
                ));
            }
        }
        if let Some(seconds) = self.silence_timeout_seconds {
            if seconds < 0.0 {
                return Err(ConfigError::invalid(
                    join(path, "silence_timeout_seconds"),
                    format!("{seconds} is negative"),
                ));
            }
        }
        if let Some(url) = &self.webhook_url {
            check::http_url(&join(path, "webhook_url"), url)?;
        }
        if let Some(emails) = &self.notification_emails {
            check::max_items(&join(path, "notification_emails"), emails.len(), 5)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::llm::LlmProvider;
    use crate::config::stt::{SttLanguage, SttProvider};
    use crate::config::tts::TtsProvider;

    fn standard() -> Assistant {
        let mut a = Assistant::new(LlmConfig::new(LlmProvider::OpenAi, "gpt-4.1"));
        a.stt_config = Some(SttConfig::new(
            SttProvider::Deepgram,
            "nova-3",
            SttLanguage::Nl,
        ));
        a.tts_config = Some(TtsConfig::new(TtsProvider::ElevenLabs, "voice"));
        a
    }

    #[test]
    fn standard_pipeline_needs_stt_and_tts() {
        let mut a = standard();
        assert!(a.validate().is_ok());
        a.stt_config = None;
        assert_eq!(
            a.validate().unwrap_err().to_string(),
            "stt_config: missing required field"
        );
        let mut a = standard();
        a.tts_config = None;
        assert_eq!(a.validate().unwrap_err().path(), "tts_config");
    }

    #[test]
    fn realtime_pipeline_rejects_tts() {
        let mut a = standard();
        a.llm_config = LlmConfig::new(LlmProvider::XaiRealtime, "grok-voice-think-fast-2.0");
        let err = a.validate().unwrap_err();
        assert_eq!(err.path(), "tts_config");
        a.tts_config = None;
        a.stt_config = None;
        assert!(a.validate().is_ok());
        assert_eq!(a.pipeline(), Pipeline::Realtime);
    }

    #[test]
    fn first_message_by_direction() {
        let mut a = standard();
        assert_eq!(a.first_message_for(CallDirection::Inbound), None);
        a.first_message = Some("Hello".into());
        a.speech_config = Some(SpeechConfig {
            first_message_outbound: Some("Hi, calling from Acme".into()),
            ..SpeechConfig::default()
        });
        assert_eq!(a.first_message_for(CallDirection::Inbound), Some("Hello"));
        assert_eq!(a.first_message_for(CallDirection::Web), Some("Hello"));
        assert_eq!(
            a.first_message_for(CallDirection::Outbound),
            Some("Hi, calling from Acme")
        );
        a.speech_config = Some(SpeechConfig {
            first_message_outbound: Some("  ".into()),
            ..SpeechConfig::default()
        });
        assert_eq!(a.first_message_for(CallDirection::Outbound), Some("Hello"));
    }

    #[test]
    fn end_call_tool_is_added_for_silence_handling() {
        let mut a = standard();
        assert!(a.tools().is_empty());
        assert!(a.silence_handling().is_none());
        a.autonomous_silence_handling = Some(true);
        assert_eq!(a.tools(), vec![Tool::EndCall]);
        assert_eq!(a.silence_handling(), Some(SilenceSchedule::default()));
        a.llm_config.tools = vec![Tool::EndCall];
        assert_eq!(a.tools().len(), 1);
    }

    #[test]
    fn voicemail_and_consent_follow_direction() {
        let mut a = standard();
        a.voicemail_detection = Some(true);
        a.voicemail_message = Some("Please call us back.".into());
        assert!(a.voicemail_for(CallDirection::Inbound).is_none());
        let vm = a.voicemail_for(CallDirection::Outbound).unwrap();
        assert_eq!(vm.message.as_deref(), Some("Please call us back."));
        assert!(vm.is_voicemail("Hi, you have reached the VOICEMAIL of Jan"));
        assert!(!vm.is_voicemail("Hallo, met Jan"));
        a.recording_consent = Some(RecordingConsent {
            enabled: true,
            message: "Press 1".into(),
        });
        assert!(a.recording_consent_for(CallDirection::Inbound).is_some());
        assert!(a.recording_consent_for(CallDirection::Outbound).is_none());
    }

    #[test]
    fn webhook_event_filter() {
        let mut a = standard();
        assert!(!a.sends_webhook(WebhookEvent::ToolCalls));
        a.webhook_url = Some("https://example.com/hook".into());
        assert!(a.sends_webhook(WebhookEvent::ToolCalls));
        a.webhook_events = Some(vec![WebhookEvent::EndOfCallReport]);
        assert!(!a.sends_webhook(WebhookEvent::ToolCalls));
        assert!(a.sends_webhook(WebhookEvent::EndOfCallReport));
    }

    #[test]
    fn pipeline_only_settings_vanish_for_realtime() {
        let mut a = standard();
        a.speech_config = Some(SpeechConfig {
            end_call_message: Some("Goodbye".into()),
            pronunciation: vec![PronunciationRule {
                from: "a".into(),
                to: "b".into(),
            }],
            end_call_phrases: vec!["bye bye".into()],
            ..SpeechConfig::default()
        });
        assert_eq!(a.end_call_message(), Some("Goodbye"));
        assert_eq!(a.pronunciation().len(), 1);
        a.llm_config = LlmConfig::new(LlmProvider::XaiRealtime, "grok-voice-think-fast-2.0");
        assert_eq!(a.end_call_message(), None);
        assert!(a.pronunciation().is_empty());
        assert_eq!(a.end_call_phrases(), ["bye bye"]);
    }

    #[test]
    fn canonical_keys() {
        assert_eq!(canonical_assistant_key("ttsConfig"), "tts_config");
        assert_eq!(canonical_assistant_key("tts_config"), "tts_config");
        assert_eq!(canonical_assistant_key("customThing"), "customThing");
    }

    #[test]
    fn max_duration_must_be_positive() {
        let mut a = standard();
        a.max_duration_seconds = Some(300);
        assert_eq!(a.max_duration(), Some(Duration::from_secs(300)));
        a.max_duration_seconds = Some(0);
        assert_eq!(a.validate().unwrap_err().path(), "max_duration_seconds");
    }
}
