//! `llm_config`: the model that drives the conversation (spec §8.4) and, for speech-to-speech
//! providers, the realtime session settings (spec §8.5, XAIRealtimeConfig).
//!
//! The provider decides the pipeline: a text provider means STT → LLM → TTS, a realtime provider
//! means the model hears and speaks itself. All providers share one struct so that a field error
//! always carries its exact path; the realtime-only fields are read through [`RealtimeSettings`].

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check;
use super::error::{join, ConfigError};
use super::tools::Tool;
use super::voices;
use super::{ConfigSection, Pipeline};

string_enum! {
    /// LLM providers (spec §8.4, §10). The first group is text, the second realtime.
    pub enum LlmProvider: "provider" {
        /// OpenAI Chat Completions (text).
        OpenAi = "openai",
        /// xAI Grok text models (text).
        Xai = "xai",
        /// Mistral (text).
        Mistral = "mistral",
        /// Google Gemini on Vertex AI (text).
        Google = "google",
        /// Anthropic (text). Only in an outdated provider list (spec §8.4); kept for older
        /// configs.
        Anthropic = "anthropic",
        /// Groq (text, OpenAI-compatible). Only in an outdated provider list (spec §8.4); kept
        /// for older configs.
        Groq = "groq",
        /// Google Gemini Live (realtime).
        GoogleRealtime = "google_realtime",
        /// xAI Grok Realtime (realtime), configured by XAIRealtimeConfig.
        XaiRealtime = "xai_realtime",
        /// OpenAI GPT-Live (realtime) with an optional reasoning delegate.
        OpenAiLive = "openai_live",
        /// OpenAI Realtime API (realtime). Not in the platform catalog: an engine extension that
        /// takes the XAIRealtimeConfig shape (voice, turn_detection, speed, transcription).
        OpenAiRealtime = "openai_realtime",
    }
}

/// Whether a provider takes text or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LlmKind {
    /// Text in, text out: needs STT and TTS around it.
    Text,
    /// Audio in, audio out (speech-to-speech).
    Realtime,
}

impl LlmProvider {
    /// Text or realtime (spec §8.4 `kind`).
    pub fn kind(self) -> LlmKind {
        match self {
            LlmProvider::OpenAi
            | LlmProvider::Xai
            | LlmProvider::Mistral
            | LlmProvider::Google
            | LlmProvider::Anthropic
            | LlmProvider::Groq => LlmKind::Text,
            LlmProvider::GoogleRealtime
            | LlmProvider::XaiRealtime
            | LlmProvider::OpenAiLive
            | LlmProvider::OpenAiRealtime => LlmKind::Realtime,
        }
    }

    /// The call pipeline this provider implies (spec §9.1).
    pub fn pipeline(self) -> Pipeline {
        match self.kind() {
            LlmKind::Text => Pipeline::Standard,
            LlmKind::Realtime => Pipeline::Realtime,
        }
    }

    /// The catalog's default model, if the provider is in the catalog (spec §8.4).
    pub fn default_model(self) -> Option<&'static str> {
        match self {
            LlmProvider::OpenAi => Some("gpt-5.4"),
            LlmProvider::Xai => Some("grok-4.3"),
            LlmProvider::Mistral => Some("mistral-medium-latest"),
            LlmProvider::Google => Some("gemini-3.5-flash-lite"),
            LlmProvider::GoogleRealtime => Some("gemini-live-2.5-flash-native-audio"),
            LlmProvider::XaiRealtime => Some("grok-voice-think-fast-2.0"),
            LlmProvider::OpenAiLive => Some("gpt-live-1"),
            LlmProvider::OpenAiRealtime => Some("gpt-realtime"),
            LlmProvider::Anthropic | LlmProvider::Groq => None,
        }
    }

    /// The voice used when `llm_config.voice` is absent (realtime providers with a catalog
    /// default).
    pub fn default_voice(self) -> Option<&'static str> {
        match self {
            LlmProvider::XaiRealtime => Some(voices::XAI_DEFAULT_VOICE),
            LlmProvider::GoogleRealtime => Some(voices::GEMINI_LIVE_DEFAULT_VOICE),
            LlmProvider::OpenAiLive => Some(voices::OPENAI_LIVE_DEFAULT_VOICE),
            _ => None,
        }
    }

    /// True for providers whose out-of-range session values are clamped instead of rejected
    /// (spec §8.5: "Out-of-range values are clamped").
    fn clamps(self) -> bool {
        matches!(self, LlmProvider::XaiRealtime | LlmProvider::OpenAiRealtime)
    }
}

string_enum! {
    /// Speaker of a prompt message.
    pub enum ChatRole: "role" {
        /// Instructions (the system prompt).
        System = "system",
        /// The caller.
        User = "user",
        /// The assistant.
        Assistant = "assistant",
    }
}

/// One prompt message, e.g. the system prompt in `llm_config.messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who says it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role` with `content`.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

string_enum! {
    /// Reasoning effort of a realtime model (spec §8.5).
    pub enum ReasoningEffort: "reasoning effort" {
        /// No reasoning (`"none"`).
        Disabled = "none",
        /// Full reasoning.
        High = "high",
    }
}

/// `llm_config.turn_detection`: the realtime server's own voice activity detection (spec §8.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnDetection {
    /// Speech-detection sensitivity 0–1 (default 0.5); higher ignores more noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Audio kept before detected speech, 0–2000 ms (default 300).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "prefixPaddingMs"
    )]
    pub prefix_padding_ms: Option<i64>,
    /// Silence that ends the caller's turn, 100–2000 ms (default 200).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "silenceDurationMs"
    )]
    pub silence_duration_ms: Option<i64>,
    /// The assistant re-engages after this much silence, 0–30000 ms; 0 or absent = off.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "idleTimeoutMs"
    )]
    pub idle_timeout_ms: Option<i64>,
}

/// `llm_config.transcription`: hints for the realtime model's own transcription (spec §8.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealtimeTranscription {
    /// Expected language, e.g. `"nl"`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "languageHint"
    )]
    pub language_hint: Option<String>,
    /// Words to boost: at most 100, each at most 50 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyterms: Option<Vec<String>>,
}

/// Server-side tools of xAI realtime (`llm_config.provider_tools[]`, spec §8.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ProviderTool {
    /// Web search.
    #[serde(rename = "web_search", alias = "webSearch")]
    WebSearch,
    /// Search of X posts, optionally limited to some handles (at most 20).
    #[serde(rename = "x_search", alias = "xSearch")]
    XSearch {
        /// Handles to search; all when empty.
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            alias = "allowedXHandles"
        )]
        allowed_x_handles: Vec<String>,
    },
    /// Search of uploaded document collections.
    #[serde(rename = "file_search", alias = "fileSearch")]
    FileSearch {
        /// Collections to search (at least one).
        #[serde(alias = "vectorStoreIds")]
        vector_store_ids: Vec<String>,
        /// Results per search, 1–50.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            alias = "maxNumResults"
        )]
        max_num_results: Option<i64>,
    },
}

/// `llm_config.delegation` of OpenAI GPT-Live: the text model used for reasoning and tool calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// Backend model; only `gpt-5.6-luna` is accepted (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Extra instructions for the backend model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// The only backend model GPT-Live delegation accepts (spec §8.4).
pub const OPENAI_LIVE_DELEGATION_MODEL: &str = "gpt-5.6-luna";

/// Default sampling temperature (spec §8.4).
pub const DEFAULT_TEMPERATURE: f64 = 0.7;

/// `llm_config`: provider, model, prompt, tools and (for realtime providers) session settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmConfig {
    /// Provider id (required); decides the pipeline.
    pub provider: LlmProvider,
    /// Model id (required).
    pub model: String,
    /// Sampling temperature 0–2 (default 0.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Prompt messages; the system prompt lives here.
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call, in any accepted shape (spec §8.12).
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tools: Vec<Tool>,
    /// Output token cap, 1–32768 (openai, google).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "maxCompletionTokens"
    )]
    pub max_completion_tokens: Option<i64>,

    /// Realtime: the model's own voice (no TTS). Checked against the provider's catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Realtime: server voice activity detection.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "turnDetection"
    )]
    pub turn_detection: Option<TurnDetection>,
    /// Realtime: reasoning effort.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "reasoningEffort"
    )]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Realtime: speaking speed 0.7–1.5 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Realtime: transcription hints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<RealtimeTranscription>,
    /// Realtime (xAI): server-side tools.
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty",
        alias = "providerTools"
    )]
    pub provider_tools: Vec<ProviderTool>,
    /// Gemini Live: use Vertex AI (default false).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "vertexAi")]
    pub vertexai: Option<bool>,
    /// Gemini Live: Vertex AI location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Gemini Live: output token cap, 1–32768.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "maxOutputTokens"
    )]
    pub max_output_tokens: Option<i64>,
    /// Gemini Live: deprecated post-call analysis model; accepted and ignored.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "analysisModel"
    )]
    pub analysis_model: Option<String>,
    /// GPT-Live: backend model for reasoning and tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Delegation>,
}

/// Effective turn detection of a realtime session, defaults applied (spec §8.5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnDetectionSettings {
    /// Speech-detection sensitivity 0–1.
    pub threshold: f64,
    /// Audio kept before detected speech.
    pub prefix_padding: Duration,
    /// Silence that ends the caller's turn.
    pub silence_duration: Duration,
    /// Re-engage after this much silence; `None` = off.
    pub idle_timeout: Option<Duration>,
}

impl Default for TurnDetectionSettings {
    fn default() -> Self {
        TurnDetectionSettings {
            threshold: 0.5,
            prefix_padding: Duration::from_millis(300),
            silence_duration: Duration::from_millis(200),
            idle_timeout: None,
        }
    }
}

/// Everything a realtime provider adapter needs to open its session, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RealtimeSettings {
    /// Which realtime provider.
    pub provider: LlmProvider,
    /// Model id.
    pub model: String,
    /// Voice; `None` leaves the choice to the provider (`openai_realtime` without a voice).
    pub voice: Option<String>,
    /// System prompt (all system messages joined).
    pub instructions: Option<String>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Speaking speed (1 = normal).
    pub speed: f64,
    /// Server voice activity detection.
    pub turn_detection: TurnDetectionSettings,
    /// Reasoning effort, if set.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Transcription language hint.
    pub language_hint: Option<String>,
    /// Transcription boost words.
    pub keyterms: Vec<String>,
    /// Server-side tools (xAI).
    pub provider_tools: Vec<ProviderTool>,
}

impl LlmConfig {
    /// A config with only provider and model set.
    pub fn new(provider: LlmProvider, model: impl Into<String>) -> Self {
        LlmConfig {
            provider,
            model: model.into(),
            temperature: None,
            messages: Vec::new(),
            tools: Vec::new(),
            max_completion_tokens: None,
            voice: None,
            turn_detection: None,
            reasoning_effort: None,
            speed: None,
            transcription: None,
            provider_tools: Vec::new(),
            vertexai: None,
            location: None,
            max_output_tokens: None,
            analysis_model: None,
            delegation: None,
        }
    }

    /// The pipeline the provider implies.
    pub fn pipeline(&self) -> Pipeline {
        self.provider.pipeline()
    }

    /// Temperature with the default (0.7) applied.
    pub fn temperature(&self) -> f64 {
        self.temperature.unwrap_or(DEFAULT_TEMPERATURE)
    }

    /// The system prompt: every `system` message, joined by blank lines; `None` when there is none.
    pub fn system_prompt(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .messages
            .iter()
            .filter(|m| m.role == ChatRole::System)
            .map(|m| m.content.as_str())
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The realtime voice with the provider default applied; `None` for text providers.
    pub fn voice(&self) -> Option<&str> {
        if self.provider.kind() != LlmKind::Realtime {
            return None;
        }
        self.voice.as_deref().or(self.provider.default_voice())
    }

    /// Effective realtime settings; `None` for a text provider.
    pub fn realtime(&self) -> Option<RealtimeSettings> {
        if self.provider.kind() != LlmKind::Realtime {
            return None;
        }
        let td = self.turn_detection.clone().unwrap_or_default();
        let defaults = TurnDetectionSettings::default();
        let ms = |v: i64| Duration::from_millis(v.max(0).unsigned_abs());
        let transcription = self.transcription.clone().unwrap_or_default();
        Some(RealtimeSettings {
            provider: self.provider,
            model: self.model.clone(),
            voice: self.voice().map(str::to_owned),
            instructions: self.system_prompt(),
            temperature: self.temperature(),
            speed: self.speed.unwrap_or(1.0),
            turn_detection: TurnDetectionSettings {
                threshold: td.threshold.unwrap_or(defaults.threshold),
                prefix_padding: td.prefix_padding_ms.map_or(defaults.prefix_padding, ms),
                silence_duration: td.silence_duration_ms.map_or(defaults.silence_duration, ms),
                idle_timeout: td.idle_timeout_ms.filter(|v| *v > 0).map(ms),
            },
            reasoning_effort: self.reasoning_effort,
            language_hint: transcription.language_hint,
            keyterms: transcription.keyterms.unwrap_or_default(),
            provider_tools: self.provider_tools.clone(),
        })
    }

    fn validate_voice(&self, path: &str) -> Result<(), ConfigError> {
        let Some(voice) = &self.voice else {
            return Ok(());
        };
        let at = join(path, "voice");
        let catalog = match self.provider {
            LlmProvider::XaiRealtime => voices::XAI_VOICES,
            LlmProvider::GoogleRealtime => voices::GEMINI_VOICES,
            LlmProvider::OpenAiLive => voices::OPENAI_LIVE_VOICES,
            LlmProvider::OpenAiRealtime => return check::non_blank(&at, voice),
            _ => return Ok(()),
        };
        if catalog.contains(&voice.as_str()) {
            Ok(())
        } else {
            Err(ConfigError::unknown(at, "voice", voice, catalog))
        }
    }

    fn validate_realtime_session(&self, path: &str) -> Result<(), ConfigError> {
        if let Some(t) = &self.transcription {
            if let Some(terms) = &t.keyterms {
                let at = join(path, "transcription.keyterms");
                check::max_items(&at, terms.len(), 100)?;
                for (i, term) in terms.iter().enumerate() {
                    check::chars(&join(&at, &format!("[{i}]")), term, 1, 50)?;
                }
            }
        }
        // Ranges also hold for values that were not clamped (other realtime providers).
        if let Some(td) = &self.turn_detection {
            let at = join(path, "turn_detection");
            check::opt_range_f64(&join(&at, "threshold"), td.threshold, 0.0, 1.0)?;
            check::opt_range_i64(
                &join(&at, "prefix_padding_ms"),
                td.prefix_padding_ms,
                0,
                2000,
            )?;
            check::opt_range_i64(
                &join(&at, "silence_duration_ms"),
                td.silence_duration_ms,
                100,
                2000,
            )?;
            check::opt_range_i64(&join(&at, "idle_timeout_ms"), td.idle_timeout_ms, 0, 30000)?;
        }
        check::opt_range_f64(&join(path, "speed"), self.speed, 0.7, 1.5)
    }

    fn validate_provider_tools(&self, path: &str) -> Result<(), ConfigError> {
        let list = join(path, "provider_tools");
        if self.provider_tools.is_empty() {
            return Ok(());
        }
        if self.provider != LlmProvider::XaiRealtime {
            return Err(ConfigError::invalid(
                list,
                format!(
                    "server-side tools need provider \"xai_realtime\", not \"{}\"",
                    self.provider
                ),
            ));
        }
        for (i, tool) in self.provider_tools.iter().enumerate() {
            let at = join(&list, &format!("[{i}]"));
            match tool {
                ProviderTool::WebSearch => {}
                ProviderTool::XSearch { allowed_x_handles } => {
                    check::max_items(&join(&at, "allowed_x_handles"), allowed_x_handles.len(), 20)?;
                }
                ProviderTool::FileSearch {
                    vector_store_ids,
                    max_num_results,
                } => {
                    if vector_store_ids.is_empty() {
                        return Err(ConfigError::invalid(
                            join(&at, "vector_store_ids"),
                            "at least one id required",
                        ));
                    }
                    check::opt_range_i64(&join(&at, "max_num_results"), *max_num_results, 1, 50)?;
                }
            }
        }
        Ok(())
    }
}

impl ConfigSection for LlmConfig {
    /// Clamps the session values of `xai_realtime` (and `openai_realtime`, which shares its
    /// shape) into their ranges, as spec §8.5 says; lists over their cap are truncated.
    fn normalize(&mut self) {
        if !self.provider.clamps() {
            return;
        }
        check::clamp_f64(&mut self.temperature, 0.0, 2.0);
        check::clamp_f64(&mut self.speed, 0.7, 1.5);
        if let Some(td) = &mut self.turn_detection {
            check::clamp_f64(&mut td.threshold, 0.0, 1.0);
            check::clamp_i64(&mut td.prefix_padding_ms, 0, 2000);
            check::clamp_i64(&mut td.silence_duration_ms, 100, 2000);
            check::clamp_i64(&mut td.idle_timeout_ms, 0, 30000);
        }
        if let Some(terms) = self
            .transcription
            .as_mut()
            .and_then(|t| t.keyterms.as_mut())
        {
            terms.truncate(100);
        }
        for tool in &mut self.provider_tools {
            match tool {
                ProviderTool::XSearch { allowed_x_handles } => allowed_x_handles.truncate(20),
                ProviderTool::FileSearch {
                    max_num_results, ..
                } => check::clamp_i64(max_num_results, 1, 50),
                ProviderTool::WebSearch => {}
            }
        }
    }

    /// Spec §8.4/§8.5 ranges. Text providers and the non-xAI realtime providers reject values
    /// out of range (the spec gives ranges without saying to clamp them).
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        check::non_blank(&join(path, "model"), &self.model)?;
        check::opt_range_f64(&join(path, "temperature"), self.temperature, 0.0, 2.0)?;
        check::opt_range_i64(
            &join(path, "max_completion_tokens"),
            self.max_completion_tokens,
            1,
            32768,
        )?;
        let mut names = HashSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            let at = join(path, &format!("tools[{i}]"));
            tool.validate_at(&at)?;
            if !names.insert(tool.name()) {
                return Err(ConfigError::invalid(
                    at,
                    format!("duplicate tool name \"{}\"", tool.name()),
                ));
            }
        }
        self.validate_voice(path)?;
        self.validate_provider_tools(path)?;
        if self.provider.kind() == LlmKind::Realtime {
            self.validate_realtime_session(path)?;
        }
        match self.provider {
            LlmProvider::GoogleRealtime => check::opt_range_i64(
                &join(path, "max_output_tokens"),
                self.max_output_tokens,
                1,
                32768,
            )?,
            LlmProvider::OpenAiLive => {
                if let Some(model) = self.delegation.as_ref().and_then(|d| d.model.as_deref()) {
                    if model != OPENAI_LIVE_DELEGATION_MODEL {
                        return Err(ConfigError::unknown(
                            join(path, "delegation.model"),
                            "delegation model",
                            model,
                            &[OPENAI_LIVE_DELEGATION_MODEL],
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_provider_lists_choices() {
        let err = LlmConfig::from_json(r#"{"provider":"foo","model":"x"}"#).unwrap_err();
        assert_eq!(err.path(), "provider");
        assert_eq!(
            err.to_string(),
            "provider: unknown provider \"foo\" (expected one of: openai, xai, mistral, google, \
             anthropic, groq, google_realtime, xai_realtime, openai_live, openai_realtime)"
        );
    }

    #[test]
    fn text_provider_rejects_out_of_range_temperature() {
        let err =
            LlmConfig::from_json(r#"{"provider":"openai","model":"gpt-5.4","temperature":2.5}"#)
                .unwrap_err();
        assert_eq!(err.to_string(), "temperature: 2.5 out of range 0..=2");
    }

    #[test]
    fn xai_realtime_clamps_out_of_range_values() {
        let llm = LlmConfig::from_json(
            r#"{"provider":"xai_realtime","model":"grok-voice-think-fast-2.0","temperature":3,
                "speed":2.0,"turn_detection":{"threshold":1.5,"prefix_padding_ms":-4,
                "silence_duration_ms":50,"idle_timeout_ms":99999},
                "provider_tools":[{"type":"file_search","vector_store_ids":["c"],"max_num_results":80}]}"#,
        )
        .unwrap();
        assert_eq!(llm.temperature, Some(2.0));
        assert_eq!(llm.speed, Some(1.5));
        let rt = llm.realtime().unwrap();
        assert_eq!(rt.turn_detection.threshold, 1.0);
        assert_eq!(rt.turn_detection.prefix_padding, Duration::ZERO);
        assert_eq!(
            rt.turn_detection.silence_duration,
            Duration::from_millis(100)
        );
        assert_eq!(
            rt.turn_detection.idle_timeout,
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            llm.provider_tools[0],
            ProviderTool::FileSearch {
                vector_store_ids: vec!["c".into()],
                max_num_results: Some(50)
            }
        );
    }

    #[test]
    fn realtime_defaults() {
        let llm = LlmConfig::from_json(
            r#"{"provider":"xai_realtime","model":"grok-voice-think-fast-2.0"}"#,
        )
        .unwrap();
        let rt = llm.realtime().unwrap();
        assert_eq!(rt.voice.as_deref(), Some("ara"));
        assert_eq!(rt.speed, 1.0);
        assert_eq!(rt.temperature, 0.7);
        assert_eq!(rt.turn_detection, TurnDetectionSettings::default());
        assert_eq!(llm.pipeline(), Pipeline::Realtime);
        let text = LlmConfig::new(LlmProvider::OpenAi, "gpt-5.4");
        assert!(text.realtime().is_none());
        assert_eq!(text.pipeline(), Pipeline::Standard);
    }

    #[test]
    fn voices_are_checked_per_provider() {
        let err = LlmConfig::from_json(
            r#"{"provider":"xai_realtime","model":"grok-voice-think-fast-2.0","voice":"alloy"}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "voice");
        assert!(err.to_string().contains("unknown voice \"alloy\""));
        let ok = LlmConfig::from_json(
            r#"{"provider":"openai_realtime","model":"gpt-realtime","voice":"alloy"}"#,
        )
        .unwrap();
        assert_eq!(ok.voice(), Some("alloy"));
        assert!(LlmConfig::from_json(
            r#"{"provider":"google_realtime","model":"gemini-live-2.5-flash-native-audio","voice":"Kore"}"#
        )
        .is_ok());
    }

    #[test]
    fn duplicate_tool_names_are_rejected() {
        let err = LlmConfig::from_json(
            r#"{"provider":"openai","model":"gpt-5.4","tools":[{"type":"end_call"},{"type":"endCall"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "tools[1]");
    }

    #[test]
    fn provider_tools_need_xai() {
        let err = LlmConfig::from_json(
            r#"{"provider":"openai_realtime","model":"gpt-realtime","provider_tools":[{"type":"web_search"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "provider_tools");
    }

    #[test]
    fn system_prompt_joins_system_messages() {
        let mut llm = LlmConfig::new(LlmProvider::Mistral, "mistral-medium-latest");
        assert_eq!(llm.system_prompt(), None);
        llm.messages = vec![
            ChatMessage::new(ChatRole::System, "A"),
            ChatMessage::new(ChatRole::User, "x"),
            ChatMessage::new(ChatRole::System, "B"),
        ];
        assert_eq!(llm.system_prompt().as_deref(), Some("A\n\nB"));
    }
}
