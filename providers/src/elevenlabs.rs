//! Text-to-speech over ElevenLabs' WebSocket stream-input API
//! (`/v1/text-to-speech/{voice_id}/stream-input`).
//!
//! Each [`TtsProvider::synthesize`] call is one utterance on its own socket:
//!
//! 1. Connect with `xi-api-key` and `model_id`/`output_format` (and the optional
//!    parameters) in the query. Connect failures before anything was sent (429, 5xx,
//!    timeouts) are retried per [`ElevenLabsConfig::backoff`]; text from the engine waits in
//!    its channel meanwhile, so a retry is invisible.
//! 2. Send the initial message `{"text":" ","voice_settings":{…},"generation_config":{…}}`.
//! 3. Send each `TtsInput::Text` as `{"text":"<chunk> ","flush":true}` (or
//!    `"try_trigger_generation":true`, see [`ChunkTrigger`]); every chunk ends with a space,
//!    as the API asks, and blank chunks are never sent (an empty text ends the stream).
//! 4. On `TtsInput::End` (or when the engine drops the input) send `{"text":""}`.
//! 5. Decode each `{"audio":"<base64>"}` per the output format into PCM16
//!    ([`TtsEvent::Audio`]), turn its alignment into character spans offset by the audio
//!    already delivered in this utterance ([`TtsEvent::Alignment`]), and end with
//!    [`TtsEvent::Done`] on `"isFinal": true`.
//!
//! # Output format
//!
//! Unless configured, the format follows [`TtsParams::preferred_rate`]: 8 kHz → `pcm_8000`,
//! 16 kHz → `pcm_16000`, 24 kHz and 48 kHz → `pcm_24000` (the voices are produced at up to
//! 24 kHz; `pcm_44100` needs a higher plan and `pcm_48000` is not in the stream-input
//! list). For 8 kHz calls linear `pcm_8000` is chosen over `ulaw_8000` although µ-law is
//! half the bytes: the engine mixes, resamples and re-encodes agent audio for whatever
//! codec the call negotiated (PCMU, PCMA, Opus), so linear samples avoid a second
//! quantisation (µ-law decoded and re-encoded as A-law, or µ-law noise fed to Opus), and
//! 16 kB/s is nothing on a server link. `ulaw_8000` and `alaw_8000` stay available by
//! configuration and are decoded with G.711.
//!
//! # Alignment
//!
//! The server's `alignment` (the characters of the text as sent) is preferred over
//! `normalizedAlignment` (the text after number/abbreviation expansion), because the engine
//! measures what was spoken by counting characters of the text it sent. The spans of the
//! spaces this adapter appends to close a chunk are left out, so the spans cover exactly
//! the engine's text. Both spellings of the duration field (`charDurationsMs`, as the
//! server sends it, and `charsDurationsMs`, as the schema writes it) and snake_case
//! variants are accepted. Times inside a message are relative to that message's audio;
//! each span is shifted by the duration of the audio delivered before it.
//!
//! # Why one single-context socket per utterance
//!
//! The engine cancels an utterance (barge-in) by dropping the `synthesize` future, and
//! starts the next with a fresh call. A socket owned by that future maps onto this exactly:
//! the end of an utterance is unambiguous (`isFinal`), audio of a cancelled utterance
//! cannot reach a later one (its socket is gone), and dropping the future closes the
//! socket at once: the connection's guard sends a normal close frame from a background
//! task (bounded to one second), so ElevenLabs stops generating immediately instead of
//! after its inactivity timeout. The multi-context socket (`multi-stream-input`) would
//! save one handshake per utterance, but it needs a connection shared between utterances
//! with routing by `contextId`, and the documented end-of-context signal after
//! `flush`/`close_context` is not settled in the sources (the `isFinal` vs `is_final`
//! spelling and whether `close_context` discards pending audio are both open questions),
//! so a half-understood shared socket would risk exactly the stale-audio leak the engine's
//! rules forbid. It is the natural next step once those points are verified.
//!
//! # Errors
//!
//! A rejected upgrade maps to `Auth` (401/403), `RateLimited` (429, with `Retry-After`) or
//! `Http`. An error message (`{"message":…,"error":<slug>,"code":…}`, or any JSON with an
//! `error` field or a `message` but no audio) ends the utterance with
//! [`ProviderError::Server`]; a stream that closes before `isFinal` ends with
//! [`ProviderError::Closed`] after delivering all the audio that arrived (a trailing half
//! sample is dropped); a frame that is not JSON, or audio that is not base64, is a
//! [`ProviderError::Protocol`]. After `{"text":""}` each message must come within
//! [`ElevenLabsConfig::response_timeout`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use voxline_engine::codecs::{g711, SampleRate};
use voxline_engine::config::tts::{TtsConfig, TtsProvider as TtsProviderId};
use voxline_engine::provider::{
    BoxFuture, ProviderError, SpokenSpan, TtsEvent, TtsInput, TtsParams, TtsProvider,
};

use crate::net::backoff::{retry, Backoff, SharedSleeper};
use crate::net::endpoint::{Env, ProcessEnv, Service};
use crate::net::http::Auth;
use crate::net::query::{encode_component, Query};
use crate::net::secret::ApiKey;
use crate::net::ws::{self, Message, WsRequest, WsSink, WsSource};

/// The provider name in errors and in [`TtsProvider::name`].
pub const ELEVENLABS: &str = "elevenlabs";

/// The `output_format` values this adapter decodes to PCM16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// `pcm_8000`: s16le at 8 kHz.
    Pcm8000,
    /// `pcm_16000`: s16le at 16 kHz.
    Pcm16000,
    /// `pcm_24000`: s16le at 24 kHz.
    Pcm24000,
    /// `pcm_48000`: s16le at 48 kHz (newer accounts).
    Pcm48000,
    /// `ulaw_8000`: G.711 µ-law at 8 kHz.
    Ulaw8000,
    /// `alaw_8000`: G.711 A-law at 8 kHz.
    Alaw8000,
}

impl OutputFormat {
    /// The `output_format` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Pcm8000 => "pcm_8000",
            OutputFormat::Pcm16000 => "pcm_16000",
            OutputFormat::Pcm24000 => "pcm_24000",
            OutputFormat::Pcm48000 => "pcm_48000",
            OutputFormat::Ulaw8000 => "ulaw_8000",
            OutputFormat::Alaw8000 => "alaw_8000",
        }
    }

    /// The format for a query value, if this adapter supports it.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            OutputFormat::Pcm8000,
            OutputFormat::Pcm16000,
            OutputFormat::Pcm24000,
            OutputFormat::Pcm48000,
            OutputFormat::Ulaw8000,
            OutputFormat::Alaw8000,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }

    /// The sample rate of the decoded audio.
    pub fn rate(self) -> SampleRate {
        match self {
            OutputFormat::Pcm8000 | OutputFormat::Ulaw8000 | OutputFormat::Alaw8000 => {
                SampleRate::Hz8000
            }
            OutputFormat::Pcm16000 => SampleRate::Hz16000,
            OutputFormat::Pcm24000 => SampleRate::Hz24000,
            OutputFormat::Pcm48000 => SampleRate::Hz48000,
        }
    }

    /// Bytes per sample on the wire.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            OutputFormat::Ulaw8000 | OutputFormat::Alaw8000 => 1,
            _ => 2,
        }
    }

    /// The format chosen for a call playing out at `rate` (see the module docs).
    pub fn for_rate(rate: SampleRate) -> Self {
        match rate {
            SampleRate::Hz8000 => OutputFormat::Pcm8000,
            SampleRate::Hz16000 => OutputFormat::Pcm16000,
            SampleRate::Hz24000 | SampleRate::Hz48000 => OutputFormat::Pcm24000,
        }
    }
}

/// `voice_settings` of the first message; unset fields are left out (the voice's own
/// setting applies).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VoiceSettings {
    /// 0–1: higher is more monotone and consistent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// 0–1: how closely to match the original voice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
    /// 0–1: style exaggeration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    /// Boost similarity to the speaker (a little more latency).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// 0.7–1.2: speaking speed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

impl VoiceSettings {
    /// ElevenLabs' defaults written out: stability 0.5, similarity 0.75, style 0, speaker
    /// boost on, speed 1.
    pub fn standard() -> Self {
        VoiceSettings {
            stability: Some(0.5),
            similarity_boost: Some(0.75),
            style: Some(0.0),
            use_speaker_boost: Some(true),
            speed: Some(1.0),
        }
    }

    fn is_empty(&self) -> bool {
        *self == VoiceSettings::default()
    }
}

/// How a text chunk asks the server to start generating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkTrigger {
    /// `"flush": true` on every chunk: generate what was sent now. The engine sends
    /// clauses, so this gives the lowest time to first audio.
    Flush,
    /// `"try_trigger_generation": true`: generate once the server's buffer holds enough
    /// characters (per `chunk_length_schedule`); smoother prosody across short chunks.
    TryTrigger,
}

/// Settings for an [`ElevenLabsTts`]. `Debug` never shows the key.
#[derive(Clone, Debug)]
pub struct ElevenLabsConfig {
    /// The API key; `ELEVENLABS_API_KEY` when absent.
    pub api_key: Option<ApiKey>,
    /// Base URL; `ELEVENLABS_BASE_URL` (an `http(s)` value becomes `ws(s)`), else
    /// `wss://api.elevenlabs.io`.
    pub base_url: Option<String>,
    /// The voice.
    pub voice_id: String,
    /// `model_id`, e.g. `eleven_flash_v2_5`.
    pub model_id: String,
    /// `output_format`; `None` picks one from the call's rate ([`OutputFormat::for_rate`]).
    pub output_format: Option<OutputFormat>,
    /// `voice_settings` of the first message.
    pub voice_settings: VoiceSettings,
    /// `generation_config.chunk_length_schedule` (each 50–500 characters).
    pub chunk_length_schedule: Option<Vec<u32>>,
    /// How chunks trigger generation.
    pub chunk_trigger: ChunkTrigger,
    /// `language_code`.
    pub language_code: Option<String>,
    /// `apply_text_normalization`: `auto`, `on` or `off`.
    pub apply_text_normalization: Option<String>,
    /// `enable_logging` (false = zero-retention mode, enterprise plans).
    pub enable_logging: Option<bool>,
    /// `inactivity_timeout` in seconds (server default 20, at most 180).
    pub inactivity_timeout: Option<u32>,
    /// `auto_mode`.
    pub auto_mode: Option<bool>,
    /// TCP connect, TLS and the upgrade together.
    pub connect_timeout: Duration,
    /// After the end of input, the longest wait for each server message.
    pub response_timeout: Duration,
    /// Connect retries (only before anything was sent).
    pub backoff: Backoff,
    /// Waits between connect retries.
    pub sleeper: SharedSleeper,
}

impl ElevenLabsConfig {
    /// `voice_id` with `eleven_flash_v2_5`, the standard voice settings, the documented
    /// chunk schedule `[120, 160, 250, 290]`, flush on every chunk, two connect attempts.
    pub fn new(voice_id: impl Into<String>) -> Self {
        ElevenLabsConfig {
            api_key: None,
            base_url: None,
            voice_id: voice_id.into(),
            model_id: "eleven_flash_v2_5".into(),
            output_format: None,
            voice_settings: VoiceSettings::standard(),
            chunk_length_schedule: Some(vec![120, 160, 250, 290]),
            chunk_trigger: ChunkTrigger::Flush,
            language_code: None,
            apply_text_normalization: None,
            enable_logging: None,
            inactivity_timeout: None,
            auto_mode: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            backoff: Backoff {
                max_attempts: 2,
                initial_delay: Duration::from_millis(100),
                max_retry_after: Duration::from_secs(1),
                ..Backoff::default()
            },
            sleeper: SharedSleeper::default(),
        }
    }

    /// The settings of an assistant's `tts_config` (provider `elevenlabs`) on top of
    /// [`ElevenLabsConfig::new`]: voice, model, language, voice tuning and text
    /// normalization. For v3/v4 models only `stability` is sent, as they ignore the rest.
    pub fn from_tts_config(config: &TtsConfig) -> Result<Self, ProviderError> {
        if config.provider != TtsProviderId::ElevenLabs {
            return Err(config_error(format!(
                "tts_config names provider {:?}, not elevenlabs",
                config.provider.as_str()
            )));
        }
        let mut out = ElevenLabsConfig::new(config.voice_id.clone());
        if let Some(model) = config.model() {
            out.model_id = model.to_string();
        }
        out.language_code = config.language.clone();
        let standard = VoiceSettings::standard();
        out.voice_settings = if config.full_voice_settings_apply() {
            VoiceSettings {
                stability: config.stability.or(standard.stability),
                similarity_boost: config.similarity_boost.or(standard.similarity_boost),
                style: config.style.or(standard.style),
                use_speaker_boost: config.use_speaker_boost.or(standard.use_speaker_boost),
                speed: config.speed.or(standard.speed),
            }
        } else {
            VoiceSettings {
                stability: config.stability.or(standard.stability),
                ..VoiceSettings::default()
            }
        };
        out.apply_text_normalization = config
            .apply_text_normalization
            .map(|n| n.as_str().to_string());
        Ok(out)
    }

    /// The query string for `format`, exactly as sent: `model_id`, `output_format`, then
    /// `language_code`, `apply_text_normalization`, `enable_logging`,
    /// `inactivity_timeout`, `auto_mode` when set.
    pub fn query(&self, format: OutputFormat) -> String {
        let mut q = Query::new();
        q.push("model_id", &self.model_id)
            .push("output_format", format.as_str())
            .push_opt("language_code", self.language_code.as_deref())
            .push_opt(
                "apply_text_normalization",
                self.apply_text_normalization.as_deref(),
            )
            .push_opt("enable_logging", self.enable_logging)
            .push_opt("inactivity_timeout", self.inactivity_timeout)
            .push_opt("auto_mode", self.auto_mode);
        q.as_str().to_string()
    }

    /// The first message of every utterance.
    pub fn initial_message(&self) -> Value {
        let mut message = json!({"text": " "});
        if !self.voice_settings.is_empty() {
            message["voice_settings"] = json!(self.voice_settings);
        }
        if let Some(schedule) = &self.chunk_length_schedule {
            message["generation_config"] = json!({"chunk_length_schedule": schedule});
        }
        message
    }

    fn validate(&self) -> Result<(), ProviderError> {
        if self.voice_id.trim().is_empty() {
            return Err(config_error("no voice_id configured".into()));
        }
        if self.model_id.trim().is_empty() {
            return Err(config_error("no model_id configured".into()));
        }
        let v = &self.voice_settings;
        for (name, value) in [
            ("stability", v.stability),
            ("similarity_boost", v.similarity_boost),
            ("style", v.style),
        ] {
            if value.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                return Err(config_error(format!("{name} must be within 0..=1")));
            }
        }
        if v.speed.is_some_and(|s| !(0.7..=1.2).contains(&s)) {
            return Err(config_error("speed must be within 0.7..=1.2".into()));
        }
        if let Some(schedule) = &self.chunk_length_schedule {
            if schedule.is_empty() || schedule.iter().any(|n| !(50..=500).contains(n)) {
                return Err(config_error(
                    "chunk_length_schedule entries must be within 50..=500".into(),
                ));
            }
        }
        if self.inactivity_timeout.is_some_and(|t| t == 0 || t > 180) {
            return Err(config_error(
                "inactivity_timeout must be within 1..=180 seconds".into(),
            ));
        }
        Ok(())
    }
}

fn config_error(detail: String) -> ProviderError {
    ProviderError::Config {
        provider: ELEVENLABS.to_string(),
        detail,
    }
}

/// ElevenLabs streaming text-to-speech. Cheap to clone; each `synthesize` is one
/// utterance on its own socket.
#[derive(Clone, Debug)]
pub struct ElevenLabsTts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ElevenLabsConfig,
    /// `{base}/v1/text-to-speech/{voice}/stream-input`, without the query.
    stream_url: String,
    key: ApiKey,
}

impl ElevenLabsTts {
    /// Builds the provider, filling gaps in `config` from the process environment
    /// (`ELEVENLABS_API_KEY`, `ELEVENLABS_BASE_URL`).
    pub fn new(config: ElevenLabsConfig) -> Result<Self, ProviderError> {
        ElevenLabsTts::with_env(config, &ProcessEnv)
    }

    /// Builds the provider, filling gaps in `config` from `env`.
    pub fn with_env(config: ElevenLabsConfig, env: &dyn Env) -> Result<Self, ProviderError> {
        config.validate()?;
        let endpoint = Service::ELEVENLABS_WS.resolve(
            config.base_url.as_deref(),
            config.api_key.as_ref(),
            env,
        )?;
        let key = endpoint.require_key()?.clone();
        let path = format!(
            "/v1/text-to-speech/{}/stream-input",
            encode_component(config.voice_id.trim())
        );
        Ok(ElevenLabsTts {
            inner: Arc::new(Inner {
                stream_url: endpoint.url(&path),
                key,
                config,
            }),
        })
    }

    /// The output format an utterance for a call at `preferred_rate` uses.
    pub fn output_format(&self, preferred_rate: SampleRate) -> OutputFormat {
        self.inner
            .config
            .output_format
            .unwrap_or_else(|| OutputFormat::for_rate(preferred_rate))
    }

    /// The full URL an utterance for a call at `preferred_rate` connects to.
    pub fn stream_url(&self, preferred_rate: SampleRate) -> String {
        format!(
            "{}?{}",
            self.inner.stream_url,
            self.inner.config.query(self.output_format(preferred_rate))
        )
    }

    /// The settings in use.
    pub fn config(&self) -> &ElevenLabsConfig {
        &self.inner.config
    }
}

impl TtsProvider for ElevenLabsTts {
    fn name(&self) -> &str {
        ELEVENLABS
    }

    fn synthesize(
        &self,
        params: TtsParams,
        input: mpsc::UnboundedReceiver<TtsInput>,
        events: mpsc::UnboundedSender<TtsEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let inner = self.inner.clone();
        let format = self.output_format(params.preferred_rate);
        let url = self.stream_url(params.preferred_rate);
        Box::pin(async move { Utterance::new(inner, format, events).run(url, input).await })
    }
}

// ---------------------------------------------------------------------------------------------
// One utterance

/// An open socket that is closed politely if the utterance is dropped (barge-in).
struct Conn {
    sink: Option<WsSink>,
    stream: WsSource,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            ws::close_in_background(sink, Duration::from_secs(1));
        }
    }
}

struct Utterance {
    inner: Arc<Inner>,
    format: OutputFormat,
    events: mpsc::UnboundedSender<TtsEvent>,
    decoder: AudioDecoder,
    /// Audio bytes received so far (the timeline of this utterance).
    audio_bytes: u64,
    /// For each character sent, in order: true when this adapter added it (a chunk's
    /// closing space), so its alignment span is left out.
    padding: VecDeque<bool>,
    text_sent: bool,
}

impl Utterance {
    fn new(
        inner: Arc<Inner>,
        format: OutputFormat,
        events: mpsc::UnboundedSender<TtsEvent>,
    ) -> Self {
        Utterance {
            inner,
            format,
            events,
            decoder: AudioDecoder::new(format),
            audio_bytes: 0,
            padding: VecDeque::new(),
            text_sent: false,
        }
    }

    fn emit(&self, event: TtsEvent) {
        // The engine dropping its receiver is a cancellation, not an error.
        let _ = self.events.send(event);
    }

    async fn run(
        mut self,
        url: String,
        mut input: mpsc::UnboundedReceiver<TtsInput>,
    ) -> Result<(), ProviderError> {
        let inner = self.inner.clone();
        let connection = retry(&inner.config.backoff, &inner.config.sleeper, |_| {
            let request = WsRequest::new(url.clone())
                .auth(Auth::Header {
                    name: "xi-api-key",
                    prefix: "",
                    key: &inner.key,
                })
                .connect_timeout(inner.config.connect_timeout);
            ws::connect(ELEVENLABS, request)
        })
        .await?;
        let mut conn = Conn {
            sink: Some(connection.sink),
            stream: connection.stream,
        };
        self.send(&mut conn, inner.config.initial_message()).await?;

        let mut input_open = true;
        let mut last_message = Instant::now();
        loop {
            let deadline = (!input_open).then(|| last_message + inner.config.response_timeout);
            tokio::select! {
                biased;
                message = conn.stream.next() => {
                    last_message = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if self.on_text(text.as_str())? {
                                self.finish_audio();
                                self.emit(TtsEvent::Done);
                                close_politely(&mut conn).await;
                                return Ok(());
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            self.finish_audio();
                            let code = frame.as_ref().map(|f| u16::from(f.code));
                            let reason = frame
                                .map(|f| f.reason.to_string())
                                .filter(|r| !r.is_empty())
                                .unwrap_or_else(|| "the stream ended before isFinal".to_string());
                            conn.sink = None;
                            return Err(ProviderError::Closed {
                                provider: ELEVENLABS.to_string(),
                                code,
                                reason,
                            });
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            self.finish_audio();
                            return Err(ws::map_error(ELEVENLABS, e, Some(&inner.key)));
                        }
                        None => {
                            self.finish_audio();
                            return Err(ProviderError::Closed {
                                provider: ELEVENLABS.to_string(),
                                code: None,
                                reason: "the connection ended before isFinal".into(),
                            });
                        }
                    }
                }
                next = input.recv(), if input_open => match next {
                    Some(TtsInput::Text(text)) => {
                        if let Some(message) = self.chunk_message(&text) {
                            self.send(&mut conn, message).await?;
                        }
                    }
                    Some(TtsInput::End) | None => {
                        input_open = false;
                        if !self.text_sent {
                            // Nothing to say: no audio will come, the utterance is complete.
                            self.emit(TtsEvent::Done);
                            close_politely(&mut conn).await;
                            return Ok(());
                        }
                        self.send(&mut conn, json!({"text": ""})).await?;
                        last_message = Instant::now();
                    }
                },
                _ = wait_until(deadline) => {
                    self.finish_audio();
                    let after = inner.config.response_timeout;
                    return Err(if self.audio_bytes == 0 {
                        ProviderError::FirstByteTimeout { provider: ELEVENLABS.to_string(), after }
                    } else {
                        ProviderError::Closed {
                            provider: ELEVENLABS.to_string(),
                            code: None,
                            reason: format!("no message for {after:?} before isFinal"),
                        }
                    });
                }
            }
        }
    }

    async fn send(&self, conn: &mut Conn, message: Value) -> Result<(), ProviderError> {
        let Some(sink) = conn.sink.as_mut() else {
            return Err(ProviderError::Closed {
                provider: ELEVENLABS.to_string(),
                code: None,
                reason: "the connection is already closed".into(),
            });
        };
        sink.send(Message::text(message.to_string()))
            .await
            .map_err(|e| ws::map_error(ELEVENLABS, e, Some(&self.inner.key)))
    }

    /// The message for one chunk of text, or `None` for a blank chunk (an empty text
    /// would end the stream).
    fn chunk_message(&mut self, text: &str) -> Option<Value> {
        if text.trim().is_empty() {
            return None;
        }
        let mut chunk = text.to_string();
        let padded = !chunk.ends_with(char::is_whitespace);
        self.padding.extend(chunk.chars().map(|_| false));
        if padded {
            chunk.push(' ');
            self.padding.push_back(true);
        }
        self.text_sent = true;
        Some(match self.inner.config.chunk_trigger {
            ChunkTrigger::Flush => json!({"text": chunk, "flush": true}),
            ChunkTrigger::TryTrigger => json!({"text": chunk, "try_trigger_generation": true}),
        })
    }

    /// Handles one JSON message; `Ok(true)` once the stream is complete.
    fn on_text(&mut self, text: &str) -> Result<bool, ProviderError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| protocol(format!("a server message is not JSON: {e}")))?;
        let Value::Object(fields) = &value else {
            return Err(protocol("a server message is not a JSON object".into()));
        };
        let audio = fields.get("audio").and_then(Value::as_str);
        if let Some(error) = server_error(&value, audio.is_some()) {
            return Err(self.redact(error));
        }
        let offset = self.audio_offset();
        if let Some(audio) = audio.filter(|a| !a.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(audio)
                .map_err(|e| protocol(format!("audio is not base64: {e}")))?;
            self.audio_bytes += bytes.len() as u64;
            let samples = self.decoder.decode(&bytes);
            if !samples.is_empty() {
                self.emit(TtsEvent::Audio {
                    rate: self.format.rate(),
                    samples,
                });
            }
        }
        let alignment = ["alignment"]
            .iter()
            .chain(&["normalizedAlignment", "normalized_alignment"])
            .find_map(|k| fields.get(*k).filter(|v| v.is_object()));
        if let Some(alignment) = alignment {
            let spans = self.spans(alignment, offset);
            if !spans.is_empty() {
                self.emit(TtsEvent::Alignment(spans));
            }
        }
        let is_final = fields
            .get("isFinal")
            .or_else(|| fields.get("is_final"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(is_final)
    }

    /// Time of the first sample of the next audio (from the bytes already received).
    fn audio_offset(&self) -> Duration {
        let samples = self.audio_bytes as f64 / self.format.bytes_per_sample() as f64;
        Duration::from_secs_f64(samples / self.format.rate().hz() as f64)
    }

    fn spans(&mut self, alignment: &Value, offset: Duration) -> Vec<SpokenSpan> {
        let array = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| alignment.get(*n).and_then(Value::as_array))
                .cloned()
                .unwrap_or_default()
        };
        let chars = array(&["chars", "characters"]);
        let starts = array(&["charStartTimesMs", "char_start_times_ms"]);
        let durations = array(&[
            "charDurationsMs",
            "charsDurationsMs",
            "char_durations_ms",
            "chars_durations_ms",
        ]);
        let ms = |v: Option<&Value>| {
            v.and_then(Value::as_f64)
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(|x| Duration::from_secs_f64(x / 1000.0))
        };
        let mut spans = Vec::with_capacity(chars.len());
        for (i, c) in chars.iter().enumerate() {
            let text = c.as_str().unwrap_or_default().to_string();
            let added = self.padding.pop_front().unwrap_or(false);
            if added && text.chars().all(char::is_whitespace) {
                continue;
            }
            let Some(start) = ms(starts.get(i)) else {
                continue;
            };
            let duration = ms(durations.get(i)).unwrap_or(Duration::ZERO);
            spans.push(SpokenSpan {
                text,
                start: offset + start,
                end: offset + start + duration,
            });
        }
        spans
    }

    /// Ends the audio: complete samples were delivered as they arrived; a dangling half
    /// sample (an odd total byte count) cannot be played and is dropped.
    fn finish_audio(&mut self) {
        self.decoder.carry = None;
    }

    fn redact(&self, error: ProviderError) -> ProviderError {
        match error {
            ProviderError::Server {
                provider,
                code,
                message,
            } => ProviderError::Server {
                provider,
                code,
                message: self.inner.key.redact(&message),
            },
            other => other,
        }
    }
}

/// The error a server message reports, if it is one: any `error` field, or a `message`
/// in a message without audio (as the official SDK reads them).
fn server_error(value: &Value, has_audio: bool) -> Option<ProviderError> {
    let error = value.get("error").filter(|e| !e.is_null());
    let message = value.get("message").and_then(Value::as_str);
    if error.is_none() && (message.is_none() || has_audio) {
        return None;
    }
    let code = match error {
        Some(Value::String(slug)) => Some(slug.clone()),
        Some(Value::Object(o)) => o
            .get("status")
            .or_else(|| o.get("code"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => value.get("code").map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    };
    let message = message
        .map(str::to_string)
        .or_else(|| {
            error
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(|| code.clone())
        .unwrap_or_else(|| "unspecified error".to_string());
    Some(ProviderError::Server {
        provider: ELEVENLABS.to_string(),
        code,
        message,
    })
}

/// Sends a normal close and lets the guard forget the sink.
async fn close_politely(conn: &mut Conn) {
    if let Some(mut sink) = conn.sink.take() {
        ws::close_normally(&mut sink, Duration::from_millis(500)).await;
    }
}

async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn protocol(detail: String) -> ProviderError {
    ProviderError::Protocol {
        provider: ELEVENLABS.to_string(),
        detail,
    }
}

/// Turns wire audio into PCM16, carrying an odd byte of s16le across messages.
#[derive(Debug)]
struct AudioDecoder {
    format: OutputFormat,
    carry: Option<u8>,
}

impl AudioDecoder {
    fn new(format: OutputFormat) -> Self {
        AudioDecoder {
            format,
            carry: None,
        }
    }

    fn decode(&mut self, bytes: &[u8]) -> Vec<i16> {
        match self.format {
            OutputFormat::Ulaw8000 => {
                let mut out = vec![0i16; bytes.len()];
                g711::decode_ulaw(bytes, &mut out);
                out
            }
            OutputFormat::Alaw8000 => {
                let mut out = vec![0i16; bytes.len()];
                g711::decode_alaw(bytes, &mut out);
                out
            }
            _ => {
                let mut out = Vec::with_capacity(bytes.len() / 2 + 1);
                let mut rest = bytes;
                if let Some(low) = self.carry.take() {
                    match rest.split_first() {
                        Some((&high, tail)) => {
                            out.push(i16::from_le_bytes([low, high]));
                            rest = tail;
                        }
                        None => {
                            self.carry = Some(low);
                            return out;
                        }
                    }
                }
                let mut pairs = rest.chunks_exact(2);
                for pair in &mut pairs {
                    out.push(i16::from_le_bytes([pair[0], pair[1]]));
                }
                self.carry = pairs.remainder().first().copied();
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::endpoint::NoEnv;

    #[test]
    fn formats_follow_the_call_rate() {
        assert_eq!(
            OutputFormat::for_rate(SampleRate::Hz8000),
            OutputFormat::Pcm8000
        );
        assert_eq!(
            OutputFormat::for_rate(SampleRate::Hz16000),
            OutputFormat::Pcm16000
        );
        assert_eq!(
            OutputFormat::for_rate(SampleRate::Hz48000),
            OutputFormat::Pcm24000
        );
        assert_eq!(
            OutputFormat::from_name("ulaw_8000"),
            Some(OutputFormat::Ulaw8000)
        );
        assert_eq!(OutputFormat::from_name("mp3_44100_128"), None);
    }

    #[test]
    fn odd_byte_counts_are_carried_across_messages() {
        let samples: Vec<i16> = (0..50i32).map(|i| (i * 1000 - 25_000) as i16).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut d = AudioDecoder::new(OutputFormat::Pcm16000);
        let mut out = Vec::new();
        for piece in bytes.chunks(7) {
            out.extend(d.decode(piece));
        }
        assert_eq!(out, samples);
        assert_eq!(d.carry, None);
        assert!(d.decode(&[1]).is_empty());
        assert!(d.decode(&[]).is_empty());
        assert_eq!(d.decode(&[0]), vec![1]);
    }

    #[test]
    fn tts_config_maps_and_v3_sends_only_stability() {
        let mut tts = TtsConfig::new(TtsProviderId::ElevenLabs, "voice-1");
        tts.stability = Some(0.3);
        tts.speed = Some(1.1);
        let c = ElevenLabsConfig::from_tts_config(&tts).unwrap();
        assert_eq!(c.model_id, "eleven_flash_v2_5");
        assert_eq!(
            c.initial_message(),
            json!({"text":" ","voice_settings":{"stability":0.3,"similarity_boost":0.75,"style":0.0,
                "use_speaker_boost":true,"speed":1.1},"generation_config":{"chunk_length_schedule":[120,160,250,290]}})
        );
        tts.model = Some("eleven_v3".into());
        let c = ElevenLabsConfig::from_tts_config(&tts).unwrap();
        assert_eq!(
            c.initial_message()["voice_settings"],
            json!({"stability": 0.3})
        );
        let other = TtsConfig::new(TtsProviderId::Xai, "eve");
        assert_eq!(
            ElevenLabsConfig::from_tts_config(&other)
                .unwrap_err()
                .kind(),
            "config"
        );
    }

    #[test]
    fn bad_settings_and_missing_key_are_config_errors() {
        let mut c = ElevenLabsConfig::new("v");
        c.api_key = Some(ApiKey::new("el-key-123"));
        c.voice_settings.speed = Some(2.0);
        assert_eq!(
            ElevenLabsTts::with_env(c, &NoEnv).unwrap_err().kind(),
            "config"
        );
        let err = ElevenLabsTts::with_env(ElevenLabsConfig::new("v"), &NoEnv).unwrap_err();
        assert!(err.to_string().contains("ELEVENLABS_API_KEY"), "{err}");
    }

    #[test]
    fn error_messages_are_recognised() {
        let e = server_error(
            &json!({"message":"Have not received a new text input","error":"input_timeout_exceeded","code":1008}),
            false,
        );
        assert_eq!(
            e,
            Some(ProviderError::Server {
                provider: ELEVENLABS.into(),
                code: Some("input_timeout_exceeded".into()),
                message: "Have not received a new text input".into()
            })
        );
        assert_eq!(
            server_error(&json!({"audio":"AA==","isFinal":null}), true),
            None
        );
        assert_eq!(server_error(&json!({"isFinal":true}), false), None);
    }
}
