//! Realtime speech-to-speech over the OpenAI Realtime event family: the xAI Grok Voice Agent
//! API (`xai_realtime`) and OpenAI Realtime GA (`openai_realtime`).
//!
//! One session loop serves both; what differs is data and small hooks in [`xai`] and
//! [`openai`]: the service and env vars, the `session.update` shape (xAI puts `voice` and
//! `turn_detection` at the top level, GA nests them under `audio` and needs `type:"realtime"`),
//! how "say this verbatim" is expressed, and the content type of replayed assistant text.
//!
//! # Session
//! 1. Connect `wss://…/v1/realtime?model=<model>` with `Authorization: Bearer <key>`; the base
//!    URL and key come from the config or `XAI_BASE_URL`/`XAI_API_KEY`
//!    (`OPENAI_BASE_URL`/`OPENAI_API_KEY`), an `https` base becomes `wss`.
//! 2. On the server's first event (`conversation.created` on xAI, `session.created` on
//!    OpenAI; `ping`s are ignored) send `session.update` with server VAD set explicitly from
//!    the config, the audio format, instructions, voice and tools, then replay
//!    [`RealtimeParams::history`] as conversation items.
//! 3. On `session.updated` emit [`RealtimeEvent::Ready`](voxline_engine::provider::RealtimeEvent::Ready) and start streaming caller audio
//!    (`input_audio_buffer.append`, [`RealtimeConfig::append_batch`] per event). Audio and
//!    commands that arrive earlier are held (audio up to [`RealtimeConfig::max_buffered_audio`]).
//!
//! # Audio
//! PCM16 at 24 kHz by default; with [`AudioMode::Auto`] an 8 kHz call uses G.711 µ-law both
//! ways so telephony audio is not resampled. Agent audio reaches the engine at the wire rate.
//!
//! # Commands
//! - `ToolResult` → `conversation.item.create` with a `function_call_output`, and one
//!   `response.create` when `respond` is set.
//! - `InjectText` → a user `input_text` message (+ `response.create` when `respond`).
//! - `Say` → xAI: a `force_message` item, which the server speaks verbatim and answers with
//!   its own response lifecycle (no `response.create`). OpenAI GA has no verbatim item, so
//!   the closest equivalent is used: `response.create` whose per-response `instructions` ask
//!   for exactly the text, with `tool_choice:"none"`.
//! - `Cancel` → `response.cancel`. `Truncate` → `conversation.item.truncate` with
//!   `content_index:0` and `audio_end_ms` = the audio played, clamped to the audio received
//!   for the item; when a response is still running it is cancelled first (one
//!   `response.cancel` per response).
//! - `Close` (or the command channel closing) → remaining audio is flushed, the socket is
//!   closed and late events are still delivered for up to [`RealtimeTimeouts::close`].
//!
//! A response request (`response.create`, or a `Say`) made while a response is running is
//! held until that response's `response.done`, so the server never rejects it as a second
//! active response; requests coalesce, and `Cancel` drops a held plain `response.create`.
//!
//! # Errors
//! `run` returns the typed error that ended the session (the engine's driver reports it as
//! [`RealtimeEvent::Failed`](voxline_engine::provider::RealtimeEvent::Failed)); the session never sends `Failed` itself, so a failure is
//! reported once. Everything received before a failure has been delivered.
//! - Handshake 401/403 → `Auth`; 429 → `RateLimited` (with `Retry-After`); other statuses
//!   → `Http`; no upgrade in time → `ConnectTimeout`.
//! - No first event or `session.updated` within [`RealtimeTimeouts::setup`] →
//!   `FirstByteTimeout`; an `error` before `session.updated` (the configuration was
//!   rejected) → `Server`.
//! - `error` events later: benign races (`response_cancel_not_active`,
//!   `conversation_already_has_active_response`, "no active response", "already has an
//!   active response") are ignored; `session_expired`, `invalid_api_key` or an
//!   `authentication_error` end the session with `Server`; any other error concerns one
//!   client event and the session goes on, but if the server then closes the connection
//!   the session ends with that error as `Server` (error, then close).
//! - The server closes (close frame or a dropped connection) → `Closed` with its code and
//!   reason, noting when a response was cut off before `response.done`.
//! - Nothing at all from the server (WebSocket pongs included) for [`RealtimeTimeouts::idle`]
//!   → `Closed` with an idle reason; the session pings every [`RealtimeTimeouts::keepalive`].
//! - A text frame that is not JSON → `Protocol`. Unknown event types, unknown fields and
//!   binary frames are ignored; an undecodable audio delta is skipped.

mod audio;
mod events;
pub mod openai;
mod session;
pub mod xai;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use voxline_engine::config::llm::{
    LlmProvider, ProviderTool, RealtimeSettings, ReasoningEffort, TurnDetectionSettings,
};
use voxline_engine::provider::{
    BoxFuture, ProviderError, RealtimeIo, RealtimeParams, RealtimeProvider, Role, ToolSpec,
};

use crate::net::endpoint::{to_ws_scheme, Env, ProcessEnv, Service};
use crate::net::secret::ApiKey;

pub use audio::{base64_decode, base64_encode, AudioMode, WireFormat};

/// Which Realtime dialect a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// xAI Grok Voice Agent API (`xai_realtime`).
    Xai,
    /// OpenAI Realtime GA (`openai_realtime`).
    OpenAi,
}

impl Vendor {
    /// The vendor for an engine LLM provider id, if it is one of these realtime providers.
    pub fn from_provider(provider: LlmProvider) -> Option<Vendor> {
        match provider {
            LlmProvider::XaiRealtime => Some(Vendor::Xai),
            LlmProvider::OpenAiRealtime => Some(Vendor::OpenAi),
            _ => None,
        }
    }

    /// The config's provider id (`xai_realtime`, `openai_realtime`), also used in errors.
    pub fn provider_id(self) -> &'static str {
        self.dialect().provider
    }

    /// The hosted service: env var names and default base URL.
    pub fn service(self) -> Service {
        self.dialect().service
    }

    /// The model used when the config names none.
    pub fn default_model(self) -> &'static str {
        self.dialect().default_model
    }

    pub(crate) fn dialect(self) -> &'static Dialect {
        match self {
            Vendor::Xai => &xai::DIALECT,
            Vendor::OpenAi => &openai::DIALECT,
        }
    }
}

/// Timeouts of a realtime session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealtimeTimeouts {
    /// TCP connect, TLS and the WebSocket upgrade together.
    pub connect: Duration,
    /// From the upgrade to `session.updated`.
    pub setup: Duration,
    /// Longest silence from the server (any frame, pongs included) before the session is
    /// considered dead.
    pub idle: Duration,
    /// Interval of the WebSocket pings that keep a quiet session alive and prove it is.
    pub keepalive: Duration,
    /// How long `Close` waits for the server's close frame and late events.
    pub close: Duration,
}

impl Default for RealtimeTimeouts {
    /// 5 s to connect, 10 s to set up, 45 s idle, a ping every 15 s, 2 s to close.
    fn default() -> Self {
        RealtimeTimeouts {
            connect: Duration::from_secs(5),
            setup: Duration::from_secs(10),
            idle: Duration::from_secs(45),
            keepalive: Duration::from_secs(15),
            close: Duration::from_secs(2),
        }
    }
}

/// Everything a realtime session needs; built from the engine's [`RealtimeSettings`] with
/// [`RealtimeConfig::from_settings`]. `Debug` never shows the key.
#[derive(Clone, Debug, PartialEq)]
pub struct RealtimeConfig {
    /// The dialect.
    pub vendor: Vendor,
    /// Model id, sent as the `model` query parameter (the only place either vendor reads it).
    pub model: String,
    /// Voice; `None` leaves it to the server. [`RealtimeConfig::new`] starts xAI with the
    /// catalog default (`ara`) and OpenAI with none.
    pub voice: Option<String>,
    /// System prompt used when [`RealtimeParams::instructions`] is empty.
    pub instructions: Option<String>,
    /// Speaking speed (1 = normal). xAI gets it only when it is not 1.
    pub speed: f64,
    /// Server VAD, always sent explicitly as `server_vad` (a live xAI session was seen with
    /// VAD off by default).
    pub turn_detection: TurnDetectionSettings,
    /// OpenAI: the server starts a response when the caller stops (`create_response`).
    pub create_response: bool,
    /// OpenAI: the server cancels its response when the caller starts (`interrupt_response`).
    pub interrupt_response: bool,
    /// Reasoning effort, when set (`reasoning.effort`; OpenAI maps "none" to "minimal").
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Transcription language hint.
    pub language_hint: Option<String>,
    /// Transcription boost words.
    pub keyterms: Vec<String>,
    /// Transcription model: OpenAI needs one for caller transcripts (default
    /// `gpt-4o-mini-transcribe`); on xAI it is sent only when set (e.g. `grok-transcribe`).
    pub transcription_model: Option<String>,
    /// xAI server-side tools (web, X and file search).
    pub provider_tools: Vec<ProviderTool>,
    /// How the audio format is chosen.
    pub audio: AudioMode,
    /// Caller audio per `input_audio_buffer.append` (20–100 ms is sensible).
    pub append_batch: Duration,
    /// Caller audio held while the session is not ready yet; older audio is dropped.
    pub max_buffered_audio: Duration,
    /// Base URL (`https://api.x.ai/v1`, `http://127.0.0.1:…/v1`); `None` reads the env var,
    /// then the public service.
    pub base_url: Option<String>,
    /// API key; `None` reads the env var.
    pub api_key: Option<ApiKey>,
    /// Timeouts.
    pub timeouts: RealtimeTimeouts,
}

impl RealtimeConfig {
    /// A config for `vendor` and `model` with every other setting at its default.
    pub fn new(vendor: Vendor, model: impl Into<String>) -> Self {
        RealtimeConfig {
            vendor,
            model: model.into(),
            voice: match vendor {
                Vendor::Xai => LlmProvider::XaiRealtime.default_voice().map(str::to_string),
                Vendor::OpenAi => None,
            },
            instructions: None,
            speed: 1.0,
            turn_detection: TurnDetectionSettings::default(),
            create_response: true,
            interrupt_response: true,
            reasoning_effort: None,
            language_hint: None,
            keyterms: Vec::new(),
            transcription_model: match vendor {
                Vendor::OpenAi => Some(openai::DEFAULT_TRANSCRIPTION_MODEL.to_string()),
                Vendor::Xai => None,
            },
            provider_tools: Vec::new(),
            audio: AudioMode::Auto,
            append_batch: Duration::from_millis(40),
            max_buffered_audio: Duration::from_secs(3),
            base_url: None,
            api_key: None,
            timeouts: RealtimeTimeouts::default(),
        }
    }

    /// The config for the engine's effective realtime settings (`llm_config` of provider
    /// `xai_realtime` or `openai_realtime`). The temperature is not sent: neither session
    /// shape has it.
    pub fn from_settings(settings: &RealtimeSettings) -> Result<Self, ProviderError> {
        let vendor =
            Vendor::from_provider(settings.provider).ok_or_else(|| ProviderError::Config {
                provider: settings.provider.to_string(),
                detail: "not a provider of the Realtime event family (xai_realtime, \
                         openai_realtime)"
                    .into(),
            })?;
        let model = if settings.model.trim().is_empty() {
            vendor.default_model().to_string()
        } else {
            settings.model.clone()
        };
        let mut config = RealtimeConfig::new(vendor, model);
        config.voice = settings.voice.clone();
        config.instructions = settings.instructions.clone();
        config.speed = settings.speed;
        config.turn_detection = settings.turn_detection;
        config.reasoning_effort = settings.reasoning_effort;
        config.language_hint = settings.language_hint.clone();
        config.keyterms = settings.keyterms.clone();
        config.provider_tools = settings.provider_tools.clone();
        Ok(config)
    }

    /// Sets the base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets how the audio format is chosen.
    pub fn with_audio(mut self, audio: AudioMode) -> Self {
        self.audio = audio;
        self
    }

    /// Sets the timeouts.
    pub fn with_timeouts(mut self, timeouts: RealtimeTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

/// A Realtime-family provider (xAI or OpenAI); each [`RealtimeProvider::run`] is one session
/// on its own WebSocket.
#[derive(Clone)]
pub struct RealtimeAdapter {
    shared: Arc<Shared>,
}

/// What every session of one adapter shares.
pub(crate) struct Shared {
    pub(crate) config: RealtimeConfig,
    pub(crate) url: String,
    pub(crate) key: Option<ApiKey>,
}

impl fmt::Debug for RealtimeAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeAdapter")
            .field("vendor", &self.shared.config.vendor)
            .field("url", &self.shared.url)
            .field("has_key", &self.shared.key.is_some())
            .finish()
    }
}

impl RealtimeAdapter {
    /// An adapter reading missing settings from the process environment.
    pub fn new(config: RealtimeConfig) -> Result<Self, ProviderError> {
        Self::with_env(config, &ProcessEnv)
    }

    /// An adapter reading missing settings from `env`. The key is required for the public
    /// service and optional for a custom base URL.
    pub fn with_env(config: RealtimeConfig, env: &dyn Env) -> Result<Self, ProviderError> {
        let dialect = config.vendor.dialect();
        let endpoint =
            dialect
                .service
                .resolve(config.base_url.as_deref(), config.api_key.as_ref(), env)?;
        let key = endpoint.key_for_base_url()?.cloned();
        let url = session_url(dialect, &endpoint.base_url, &config.model)?;
        Ok(RealtimeAdapter {
            shared: Arc::new(Shared { config, url, key }),
        })
    }

    /// The WebSocket URL sessions connect to.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The config.
    pub fn config(&self) -> &RealtimeConfig {
        &self.shared.config
    }

    /// The `session.update` event a session with `params` sends (for inspection and tests).
    pub fn session_update(&self, params: &RealtimeParams) -> Result<Value, ProviderError> {
        let format = self.shared.config.audio.resolve(params.input_rate);
        session_update(&self.shared.config, params, format)
    }
}

impl RealtimeProvider for RealtimeAdapter {
    fn name(&self) -> &str {
        self.shared.config.vendor.provider_id()
    }

    fn run(
        &self,
        params: RealtimeParams,
        io: RealtimeIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let shared = self.shared.clone();
        Box::pin(session::run(shared, params, io))
    }
}

fn session_url(dialect: &Dialect, base_url: &str, model: &str) -> Result<String, ProviderError> {
    let raw = format!("{}/realtime", to_ws_scheme(base_url).trim_end_matches('/'));
    let mut url = reqwest::Url::parse(&raw).map_err(|e| ProviderError::Config {
        provider: dialect.provider.to_string(),
        detail: format!("invalid realtime URL {raw:?}: {e}"),
    })?;
    url.query_pairs_mut().append_pair("model", model);
    Ok(url.to_string())
}

// ---------------------------------------------------------------------------------------------
// Dialects

/// The resolved session settings a dialect turns into its `session.update`.
pub(crate) struct SessionSpec<'a> {
    pub instructions: Option<&'a str>,
    pub voice: Option<&'a str>,
    pub vad: TurnDetectionSettings,
    pub create_response: bool,
    pub interrupt_response: bool,
    pub format: WireFormat,
    pub speed: f64,
    pub tools: Vec<Value>,
    pub provider_tools: &'a [ProviderTool],
    pub reasoning: Option<ReasoningEffort>,
    pub language_hint: Option<&'a str>,
    pub keyterms: &'a [String],
    pub transcription_model: Option<&'a str>,
}

/// What differs between the vendors of the Realtime family.
pub(crate) struct Dialect {
    /// Config id and provider name in errors.
    pub provider: &'static str,
    /// Env vars and default base URL.
    pub service: Service,
    /// Model when none is configured.
    pub default_model: &'static str,
    /// Builds the `session` object of `session.update`.
    pub session: fn(&SessionSpec<'_>) -> Value,
    /// The client events that make the agent say `text` verbatim.
    pub say: fn(&str) -> Vec<Value>,
    /// Content type of assistant text replayed from the history.
    pub assistant_text: &'static str,
    /// Function names the server reserves for its own tools.
    pub reserved_tool_names: &'static [&'static str],
}

fn function_tool(tool: &ToolSpec) -> Value {
    let parameters = if tool.parameters.is_object() {
        tool.parameters.clone()
    } else {
        json!({"type": "object", "properties": {}})
    };
    json!({
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": parameters,
    })
}

/// VAD settings as JSON numbers: threshold as given, durations in whole milliseconds.
pub(crate) fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// The `session.update` event for `config`, `params` and the resolved audio format.
pub(crate) fn session_update(
    config: &RealtimeConfig,
    params: &RealtimeParams,
    format: WireFormat,
) -> Result<Value, ProviderError> {
    let dialect = config.vendor.dialect();
    if let Some(tool) = params
        .tools
        .iter()
        .find(|t| dialect.reserved_tool_names.contains(&t.name.as_str()))
    {
        return Err(ProviderError::Config {
            provider: dialect.provider.to_string(),
            detail: format!(
                "function name {:?} collides with a built-in tool of the server",
                tool.name
            ),
        });
    }
    let instructions = Some(params.instructions.as_str())
        .filter(|s| !s.trim().is_empty())
        .or(config.instructions.as_deref())
        .filter(|s| !s.trim().is_empty());
    let spec = SessionSpec {
        instructions,
        voice: config.voice.as_deref().filter(|v| !v.trim().is_empty()),
        vad: config.turn_detection,
        create_response: config.create_response,
        interrupt_response: config.interrupt_response,
        format,
        speed: config.speed,
        tools: params.tools.iter().map(function_tool).collect(),
        provider_tools: &config.provider_tools,
        reasoning: config.reasoning_effort,
        language_hint: config.language_hint.as_deref().filter(|s| !s.is_empty()),
        keyterms: &config.keyterms,
        transcription_model: config.transcription_model.as_deref(),
    };
    Ok(json!({"type": "session.update", "session": (dialect.session)(&spec)}))
}

/// `conversation.item.create` events replaying the history's text messages; tool messages
/// and tool calls are left out (they cannot be replayed without their call items).
pub(crate) fn history_items(dialect: &Dialect, params: &RealtimeParams) -> Vec<Value> {
    params
        .history
        .iter()
        .filter(|m| !m.content.trim().is_empty())
        .filter_map(|m| {
            let (role, kind) = match m.role {
                Role::System => ("system", "input_text"),
                Role::User => ("user", "input_text"),
                Role::Assistant => ("assistant", dialect.assistant_text),
                Role::Tool => return None,
            };
            Some(json!({
                "type": "conversation.item.create",
                "item": {"type": "message", "role": role,
                         "content": [{"type": kind, "text": m.content}]},
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::endpoint::NoEnv;
    use std::collections::HashMap;
    use voxline_engine::config::llm::LlmConfig;
    use voxline_engine::config::ConfigSection;

    #[test]
    fn urls_come_from_config_or_env_and_become_wss() {
        let adapter = RealtimeAdapter::with_env(
            RealtimeConfig::new(Vendor::Xai, "grok-voice-think-fast-1.0").with_api_key("k-123"),
            &NoEnv,
        )
        .unwrap();
        assert_eq!(
            adapter.url(),
            "wss://api.x.ai/v1/realtime?model=grok-voice-think-fast-1.0"
        );
        let env: HashMap<&str, &str> = [
            ("OPENAI_API_KEY", "sk-env"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
        ]
        .into_iter()
        .collect();
        let adapter =
            RealtimeAdapter::with_env(RealtimeConfig::new(Vendor::OpenAi, "gpt-realtime"), &env)
                .unwrap();
        assert_eq!(
            adapter.url(),
            "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(adapter.name(), "openai_realtime");
    }

    #[test]
    fn the_public_service_needs_a_key_and_debug_hides_it() {
        let err =
            RealtimeAdapter::with_env(RealtimeConfig::new(Vendor::Xai, "m"), &NoEnv).unwrap_err();
        assert_eq!(err.kind(), "config");
        assert!(err.to_string().contains("XAI_API_KEY"), "{err}");
        let config = RealtimeConfig::new(Vendor::Xai, "m").with_api_key("xai-secret-value");
        assert!(!format!("{config:?}").contains("xai-secret-value"));
        let adapter = RealtimeAdapter::with_env(config, &NoEnv).unwrap();
        assert!(!format!("{adapter:?}").contains("xai-secret-value"));
    }

    #[test]
    fn config_from_engine_settings() {
        let mut llm = LlmConfig::from_json(
            r#"{"provider":"xai_realtime","model":"grok-voice-think-fast-2.0","voice":"rex",
                "speed":1.2,"turn_detection":{"threshold":0.6,"silence_duration_ms":700},
                "messages":[{"role":"system","content":"Be brief."}]}"#,
        )
        .unwrap();
        llm.normalize();
        let config = RealtimeConfig::from_settings(&llm.realtime().unwrap()).unwrap();
        assert_eq!(config.vendor, Vendor::Xai);
        assert_eq!(config.voice.as_deref(), Some("rex"));
        assert_eq!(config.instructions.as_deref(), Some("Be brief."));
        assert_eq!(config.turn_detection.threshold, 0.6);
        assert_eq!(
            config.turn_detection.silence_duration,
            Duration::from_millis(700)
        );
        let google = LlmConfig::new(LlmProvider::GoogleRealtime, "gemini-live");
        let err = RealtimeConfig::from_settings(&google.realtime().unwrap()).unwrap_err();
        assert_eq!(err.kind(), "config");
    }
}
