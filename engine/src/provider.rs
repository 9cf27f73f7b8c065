//! The provider traits the engine drives: streaming STT, LLM, TTS and realtime speech-to-speech.
//!
//! Each session is an async task body the engine spawns: audio flows in through
//! a lock-free ring, commands through a channel, and typed events come back.
//! Vendors live in `voxline-providers`; the engine knows none of them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use voxline_codecs::SampleRate;

use crate::ring::SpeechRing;

/// A boxed, sendable future: what a provider session runs as.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which provider stage failed; used in errors, events and end reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Speech-to-text.
    Stt,
    /// The language model.
    Llm,
    /// Text-to-speech.
    Tts,
    /// A speech-to-speech realtime model.
    Realtime,
}

/// A typed provider failure; the engine turns it into a spoken fallback, a retry,
/// or an `ended-with-error` status with this as the reason.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the credentials (HTTP 401/403 or an auth error message).
    #[error("{provider}: authentication rejected (HTTP {status})")]
    Auth {
        /// Provider name.
        provider: String,
        /// HTTP status of the rejection.
        status: u16,
    },
    /// The provider asked us to slow down (HTTP 429).
    #[error("{provider}: rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// Provider name.
        provider: String,
        /// The `Retry-After` the provider gave, if any.
        retry_after: Option<Duration>,
    },
    /// Connecting (TCP + TLS + handshake) took longer than allowed.
    #[error("{provider}: connect timed out after {after:?}")]
    ConnectTimeout {
        /// Provider name.
        provider: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The provider accepted the request but sent nothing in time.
    #[error("{provider}: no response within {after:?}")]
    FirstByteTimeout {
        /// Provider name.
        provider: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// An HTTP error status other than auth or rate limiting.
    #[error("{provider}: HTTP {status}: {body}")]
    Http {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The (truncated) response body.
        body: String,
    },
    /// The provider reported an error inside its protocol (an error event or message).
    #[error("{provider}: server error {code:?}: {message}")]
    Server {
        /// Provider name.
        provider: String,
        /// The provider's error code, if it gave one.
        code: Option<String>,
        /// The provider's message.
        message: String,
    },
    /// The connection closed before the stream was complete.
    #[error("{provider}: connection closed (code {code:?}): {reason}")]
    Closed {
        /// Provider name.
        provider: String,
        /// WebSocket close code, if any.
        code: Option<u16>,
        /// Close reason or what was missing.
        reason: String,
    },
    /// The provider sent something that violates its protocol (bad JSON, missing fields).
    #[error("{provider}: protocol error: {detail}")]
    Protocol {
        /// Provider name.
        provider: String,
        /// What was wrong.
        detail: String,
    },
    /// A network-level failure (DNS, TCP, TLS).
    #[error("{provider}: network error: {detail}")]
    Network {
        /// Provider name.
        provider: String,
        /// What failed.
        detail: String,
    },
    /// The provider is misconfigured (missing key, bad option).
    #[error("{provider}: configuration error: {detail}")]
    Config {
        /// Provider name.
        provider: String,
        /// What is wrong.
        detail: String,
    },
}

impl ProviderError {
    /// True when trying again later may succeed (rate limits, timeouts, drops, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::RateLimited { .. }
            | ProviderError::ConnectTimeout { .. }
            | ProviderError::FirstByteTimeout { .. }
            | ProviderError::Closed { .. }
            | ProviderError::Network { .. } => true,
            ProviderError::Http { status, .. } => *status >= 500,
            ProviderError::Auth { .. }
            | ProviderError::Server { .. }
            | ProviderError::Protocol { .. }
            | ProviderError::Config { .. } => false,
        }
    }

    /// A short machine-readable reason, used in end reasons and events.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Auth { .. } => "auth",
            ProviderError::RateLimited { .. } => "rate-limited",
            ProviderError::ConnectTimeout { .. } => "connect-timeout",
            ProviderError::FirstByteTimeout { .. } => "first-byte-timeout",
            ProviderError::Http { .. } => "http",
            ProviderError::Server { .. } => "server-error",
            ProviderError::Closed { .. } => "closed",
            ProviderError::Protocol { .. } => "protocol",
            ProviderError::Network { .. } => "network",
            ProviderError::Config { .. } => "config",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Speech-to-text

/// What the engine tells an STT session when it starts.
#[derive(Clone, Debug)]
pub struct SttSessionParams {
    /// Rate of the PCM frames the session will receive.
    pub sample_rate: SampleRate,
}

/// Commands from the engine to a running STT session.
#[derive(Clone, Debug, PartialEq)]
pub enum SttControl {
    /// The engine decided the caller's turn ended: flush buffered audio into finals.
    Finalize,
    /// The call is over: finish, deliver remaining finals, then end the session.
    Close,
}

/// One recognised word with its position in the audio stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// The word as displayed (punctuated/cased when the provider gives it).
    pub text: String,
    /// Start offset from the beginning of the session's audio.
    pub start: Duration,
    /// End offset from the beginning of the session's audio.
    pub end: Duration,
    /// Recognition confidence, 0..=1.
    pub confidence: f32,
}

/// A partial or final transcript segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The segment's text (may be empty).
    pub text: String,
    /// This segment will not change any more.
    pub is_final: bool,
    /// The provider's endpointing fired after this segment (the speaker paused).
    pub speech_final: bool,
    /// The segment was produced by an explicit finalize request.
    pub from_finalize: bool,
    /// Overall confidence, 0..=1.
    pub confidence: f32,
    /// Word timings when the provider gives them.
    pub words: Vec<Word>,
}

/// Events from an STT session to the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum SttEvent {
    /// The session is connected and accepts audio.
    Ready,
    /// The provider's own VAD heard speech start.
    SpeechStarted,
    /// A partial or final transcript.
    Transcript(Transcript),
    /// The provider saw the end of an utterance (word gap past its threshold).
    UtteranceEnd,
    /// The session dropped and is reconnecting; buffered audio will be replayed.
    Reconnecting {
        /// Reconnect attempt number, from 1.
        attempt: u32,
        /// Why the session dropped.
        error: ProviderError,
    },
    /// A failure the session could not recover from.
    Failed(ProviderError),
}

/// The channels of one STT session.
pub struct SttIo {
    /// Caller audio, 20 ms frames at `SttSessionParams::sample_rate`.
    pub audio: SpeechRing,
    /// Commands from the engine.
    pub control: mpsc::UnboundedReceiver<SttControl>,
    /// Events to the engine.
    pub events: mpsc::UnboundedSender<SttEvent>,
}

/// A streaming speech-to-text provider.
pub trait SttProvider: Send + Sync {
    /// The provider's config name (e.g. `deepgram`).
    fn name(&self) -> &str;
    /// Runs one session until `SttControl::Close` or the audio ring closes.
    /// Returns an error only when the session could not be kept alive.
    fn run(
        &self,
        params: SttSessionParams,
        io: SttIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>>;
}

// ---------------------------------------------------------------------------------------------
// Language model

/// Who said a message in the conversation history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller (or injected context).
    User,
    /// The agent.
    Assistant,
    /// A tool result.
    Tool,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    /// The provider's id for this call; results must echo it.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as the raw JSON text the model produced.
    pub arguments: String,
}

/// One message of the conversation sent to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// The text (empty for an assistant message that only calls tools).
    pub content: String,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRequest>,
    /// For a tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with just a role and text.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A function the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What it does (drives the model's choice).
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// One request to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmRequest {
    /// The conversation, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Functions the model may call.
    pub tools: Vec<ToolSpec>,
    /// Sampling temperature, when the assistant sets one.
    pub temperature: Option<f32>,
    /// Output token cap, when the assistant sets one.
    pub max_tokens: Option<u32>,
}

/// Token counts reported by the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// Events from a model stream.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmEvent {
    /// The first byte of the response arrived (for latency metrics).
    FirstByte,
    /// A piece of the reply text.
    TextDelta(String),
    /// A complete, assembled tool call.
    ToolCall(ToolCallRequest),
    /// Token usage for the request.
    Usage(TokenUsage),
    /// The stream ended normally.
    Done,
}

/// A streaming chat-completion model.
pub trait LlmProvider: Send + Sync {
    /// The provider's config name (e.g. `openai`).
    fn name(&self) -> &str;
    /// Streams one completion; events go to `events` until `Done` or an error.
    /// The engine cancels a turn by dropping the returned future.
    fn stream(
        &self,
        request: LlmRequest,
        events: mpsc::UnboundedSender<LlmEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>>;
}

// ---------------------------------------------------------------------------------------------
// Text-to-speech

/// What the engine tells a TTS utterance when it starts.
#[derive(Clone, Debug)]
pub struct TtsParams {
    /// The rate the call plays out at; providers pick the closest native format.
    pub preferred_rate: SampleRate,
}

/// Text for one utterance, streamed in as the model produces it.
#[derive(Clone, Debug, PartialEq)]
pub enum TtsInput {
    /// A chunk of text (a clause or sentence).
    Text(String),
    /// No more text will come: synthesise what is pending and finish.
    End,
}

/// A piece of text with the span of audio that speaks it (character- or word-level).
#[derive(Clone, Debug, PartialEq)]
pub struct SpokenSpan {
    /// The text of the span, in input order.
    pub text: String,
    /// Start offset from the beginning of the utterance's audio.
    pub start: Duration,
    /// End offset from the beginning of the utterance's audio.
    pub end: Duration,
}

/// Events from a TTS utterance.
#[derive(Clone, Debug, PartialEq)]
pub enum TtsEvent {
    /// PCM audio at `rate`.
    Audio {
        /// The audio's sample rate.
        rate: SampleRate,
        /// Mono PCM16 samples.
        samples: Vec<i16>,
    },
    /// Timing of spoken text, relative to the utterance's first sample.
    Alignment(Vec<SpokenSpan>),
    /// All audio for the utterance has been delivered.
    Done,
}

/// A streaming text-to-speech provider.
pub trait TtsProvider: Send + Sync {
    /// The provider's config name (e.g. `elevenlabs`).
    fn name(&self) -> &str;
    /// Synthesises one utterance from streamed text. The engine cancels (barge-in)
    /// by dropping the returned future.
    fn synthesize(
        &self,
        params: TtsParams,
        input: mpsc::UnboundedReceiver<TtsInput>,
        events: mpsc::UnboundedSender<TtsEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>>;
}

// ---------------------------------------------------------------------------------------------
// Realtime speech-to-speech

/// What the engine tells a realtime session when it starts.
#[derive(Clone, Debug)]
pub struct RealtimeParams {
    /// Rate of the caller frames sent to the session.
    pub input_rate: SampleRate,
    /// The system prompt.
    pub instructions: String,
    /// Functions the model may call.
    pub tools: Vec<ToolSpec>,
    /// Conversation so far (e.g. the first message already spoken).
    pub history: Vec<ChatMessage>,
}

/// Commands from the engine to a realtime session.
#[derive(Clone, Debug, PartialEq)]
pub enum RealtimeControl {
    /// Return a tool result; `respond` asks for a response after it (send once after the last result).
    ToolResult {
        /// The call being answered.
        call_id: String,
        /// The result as JSON text.
        output: String,
        /// Ask the model to respond now.
        respond: bool,
    },
    /// Cancel the response in progress (barge-in).
    Cancel,
    /// Cut an agent item to what the caller actually heard.
    Truncate {
        /// The agent item.
        item_id: String,
        /// Audio played so far.
        played: Duration,
    },
    /// Add text to the context, optionally asking for a response.
    InjectText {
        /// The text, as a user message.
        text: String,
        /// Ask the model to respond now.
        respond: bool,
    },
    /// Have the agent speak this text verbatim.
    Say {
        /// The text.
        text: String,
    },
    /// End the session.
    Close,
}

/// Events from a realtime session.
#[derive(Clone, Debug, PartialEq)]
pub enum RealtimeEvent {
    /// The session is configured and accepts audio.
    Ready,
    /// The server's VAD heard the caller start speaking.
    SpeechStarted,
    /// The server's VAD heard the caller stop.
    SpeechStopped,
    /// A caller transcript, partial or final.
    UserTranscript {
        /// The conversation item.
        item_id: String,
        /// The text so far (cumulative).
        text: String,
        /// True for the final transcript of the item.
        is_final: bool,
    },
    /// Agent audio for an item.
    AgentAudio {
        /// The conversation item being spoken.
        item_id: String,
        /// The audio's sample rate.
        rate: SampleRate,
        /// Mono PCM16 samples.
        samples: Vec<i16>,
    },
    /// More of the agent item's transcript.
    AgentTranscriptDelta {
        /// The conversation item.
        item_id: String,
        /// The new text.
        delta: String,
    },
    /// A tool call the model made.
    ToolCall(ToolCallRequest),
    /// A response finished (completed, cancelled, failed).
    ResponseDone {
        /// The final status as the provider states it.
        status: String,
        /// Token usage when reported.
        usage: Option<TokenUsage>,
    },
    /// A failure the session could not recover from.
    Failed(ProviderError),
}

/// The channels of one realtime session.
pub struct RealtimeIo {
    /// Caller audio, 20 ms frames at `RealtimeParams::input_rate`.
    pub audio: SpeechRing,
    /// Commands from the engine.
    pub control: mpsc::UnboundedReceiver<RealtimeControl>,
    /// Events to the engine.
    pub events: mpsc::UnboundedSender<RealtimeEvent>,
}

/// A speech-to-speech realtime model.
pub trait RealtimeProvider: Send + Sync {
    /// The provider's config name (e.g. `xai_realtime`).
    fn name(&self) -> &str;
    /// Runs one session for the whole call.
    fn run(
        &self,
        params: RealtimeParams,
        io: RealtimeIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>>;
}
