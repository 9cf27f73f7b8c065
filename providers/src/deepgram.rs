//! Speech-to-text over Deepgram's live WebSocket API (`/v1/listen`, Nova models).
//!
//! One [`DeepgramStt`] serves every call; each [`SttProvider::run`] is one session:
//!
//! - **Connect at once** (pre-warm): the engine starts the session while the call rings,
//!   so the socket is usually open before the caller says a word. Audio that arrives while
//!   connecting is buffered and sent as soon as the upgrade completes.
//! - **Query** from [`DeepgramConfig`] (model, language, encoding, sample rate, interim
//!   results, endpointing, …), percent-encoded, in a fixed order; `Authorization: Token`.
//! - **Audio**: one binary frame per 20 ms engine frame, PCM16 little-endian (`linear16`)
//!   or µ-law, never empty. While no audio flows (the engine stops forwarding in some call
//!   states) a `{"type":"KeepAlive"}` text frame goes out every
//!   [`DeepgramConfig::keepalive_interval`], so Deepgram's ~10 s idle timeout never fires.
//! - **Control**: `SttControl::Finalize` sends `{"type":"Finalize"}`; `SttControl::Close`
//!   (or the end of the audio ring) sends the last audio, then `{"type":"CloseStream"}`,
//!   and waits (at most [`DeepgramConfig::close_timeout`]) for the remaining `Results`,
//!   `Metadata` and the close 1000.
//! - **Server messages**: `Results` become [`Transcript`]s (interim and final, with word
//!   timings), `SpeechStarted` and `UtteranceEnd` pass through, `Metadata` is noted,
//!   `Error` becomes [`ProviderError::Server`]; unknown types and fields are ignored.
//!
//! # Resilience: reconnect and replay
//!
//! The session keeps the audio it sent since the last final result (bounded by
//! [`DeepgramConfig::replay_window`], 10 s by default). A final `Results` covers the audio
//! up to its segment end (`start + duration`, or its last word's end if later), and the
//! covered frames are dropped from the buffer. When the connection drops mid-call (a
//! broken socket, a close other than the normal end, NET-0000/NET-0001 timeouts, a
//! malformed message), the session reports [`SttEvent::Reconnecting`], waits per the shared
//! [`Backoff`], reconnects, replays every buffered frame, repeats a `Finalize` or
//! `CloseStream` whose answer never came, and carries on. Deepgram's times restart at zero
//! on every connection, so word times from a later connection are shifted by the stream
//! position of the first replayed frame: every [`Word`] stays on the session's audio
//! timeline (the audio the engine forwarded), and no final transcript is lost.
//!
//! Connect failures that may pass (429 honouring `Retry-After`, 5xx, timeouts) are retried
//! the same way, the first connect included, each announced by `Reconnecting`; audio keeps
//! being buffered meanwhile.
//!
//! The backoff schedule starts afresh once a connection delivers a `Results` message, so a
//! long call survives many separate drops, while a server that fails every attempt ends
//! the session after [`Backoff::max_attempts`].
//!
//! Not retried: an auth rejection (401/403 → [`ProviderError::Auth`]), an `Error` message
//! (→ [`ProviderError::Server`]), a DATA-0000 close (1008/1002: the audio itself is
//! undecodable, so replaying it cannot help → [`ProviderError::Closed`]), other 4xx
//! handshake answers and configuration errors.
//!
//! A session that cannot be kept alive returns the error from `run`; the engine reports it
//! as `SttEvent::Failed` (the session does not also send `Failed`, so it is seen once).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::time::Instant;
use voxline_engine::codecs::{g711, AudioFrame, SampleRate};
use voxline_engine::config::stt::{SttConfig, SttProvider as SttProviderId};
use voxline_engine::provider::{
    BoxFuture, ProviderError, SttControl, SttEvent, SttIo, SttProvider, SttSessionParams,
    Transcript, Word,
};

use crate::net::backoff::{Backoff, BackoffSchedule, SharedSleeper, Sleeper};
use crate::net::endpoint::{Env, ProcessEnv, Service};
use crate::net::http::Auth;
use crate::net::query::Query;
use crate::net::secret::ApiKey;
use crate::net::ws::{self, Message, WsRequest, WsSink, WsSource};

/// The provider name in errors and in [`SttProvider::name`].
pub const DEEPGRAM: &str = "deepgram";

/// The path of the live transcription WebSocket.
pub const LISTEN_PATH: &str = "/v1/listen";

/// How the audio is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeepgramEncoding {
    /// 16-bit signed little-endian PCM at the session's sample rate (`linear16`).
    Linear16,
    /// G.711 µ-law at the session's sample rate (`mulaw`): half the bytes, and what a
    /// telephony leg already carries.
    Mulaw,
}

impl DeepgramEncoding {
    /// The `encoding` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeepgramEncoding::Linear16 => "linear16",
            DeepgramEncoding::Mulaw => "mulaw",
        }
    }

    /// Bytes one sample takes on the wire.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            DeepgramEncoding::Linear16 => 2,
            DeepgramEncoding::Mulaw => 1,
        }
    }
}

/// Deepgram's endpointing: how much trailing silence makes a result `speech_final`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpointing {
    /// Silence in milliseconds (`endpointing=300`).
    Ms(u32),
    /// Endpointing off (`endpointing=false`).
    Disabled,
}

impl Endpointing {
    fn query_value(self) -> String {
        match self {
            Endpointing::Ms(ms) => ms.to_string(),
            Endpointing::Disabled => "false".to_string(),
        }
    }
}

/// Settings for a [`DeepgramStt`]. Options left `None` are not sent (Deepgram's default
/// applies). `Debug` never shows the key.
#[derive(Clone, Debug)]
pub struct DeepgramConfig {
    /// The API key; `DEEPGRAM_API_KEY` when absent. Optional only for a custom base URL
    /// (a self-hosted server).
    pub api_key: Option<ApiKey>,
    /// Base URL (`ws(s)://` or `http(s)://`); `DEEPGRAM_BASE_URL`, else
    /// `wss://api.deepgram.com`.
    pub base_url: Option<String>,
    /// `model`, e.g. `nova-3`, `nova-3-general`, `nova-2-phonecall`.
    pub model: String,
    /// `language`, a BCP-47 tag or `multi` (nova-3).
    pub language: Option<String>,
    /// `encoding` of the audio frames.
    pub encoding: DeepgramEncoding,
    /// `interim_results`.
    pub interim_results: Option<bool>,
    /// `endpointing`.
    pub endpointing: Option<Endpointing>,
    /// `utterance_end_ms` (needs `interim_results=true`).
    pub utterance_end_ms: Option<u32>,
    /// `vad_events` (enables `SpeechStarted`).
    pub vad_events: Option<bool>,
    /// `smart_format`.
    pub smart_format: Option<bool>,
    /// `punctuate`.
    pub punctuate: Option<bool>,
    /// `numerals`.
    pub numerals: Option<bool>,
    /// `filler_words`.
    pub filler_words: Option<bool>,
    /// `profanity_filter`.
    pub profanity_filter: Option<bool>,
    /// `diarize`.
    pub diarize: Option<bool>,
    /// `keyterm`, one parameter per term (nova-3 models only).
    pub keyterms: Vec<String>,
    /// `keywords`, one parameter per entry, e.g. `"Voxline:2"` (models before nova-3).
    pub keywords: Vec<String>,
    /// Further `name=value` parameters, appended after the typed ones in this order.
    pub extra_params: Vec<(String, String)>,
    /// TCP connect, TLS and the upgrade together.
    pub connect_timeout: Duration,
    /// How long without any audio before a `KeepAlive` is sent (and between two of them).
    pub keepalive_interval: Duration,
    /// How long to wait, after `CloseStream`, for the last results and the close.
    pub close_timeout: Duration,
    /// A send that takes longer than this counts as a dropped connection.
    pub write_timeout: Duration,
    /// How much not-yet-final audio is kept for replay after a reconnect.
    pub replay_window: Duration,
    /// Reconnect policy (the first connect uses it too).
    pub reconnect: Backoff,
    /// Waits between reconnect attempts.
    pub sleeper: SharedSleeper,
}

impl DeepgramConfig {
    /// Telephony defaults for `model`: `linear16`, interim results on, 300 ms endpointing,
    /// 1000 ms utterance end, VAD events and smart formatting on; KeepAlive every 4 s;
    /// 10 s replay window; five connect attempts.
    pub fn new(model: impl Into<String>) -> Self {
        DeepgramConfig {
            api_key: None,
            base_url: None,
            model: model.into(),
            language: None,
            encoding: DeepgramEncoding::Linear16,
            interim_results: Some(true),
            endpointing: Some(Endpointing::Ms(300)),
            utterance_end_ms: Some(1000),
            vad_events: Some(true),
            smart_format: Some(true),
            punctuate: None,
            numerals: None,
            filler_words: None,
            profanity_filter: None,
            diarize: None,
            keyterms: Vec::new(),
            keywords: Vec::new(),
            extra_params: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(4),
            close_timeout: Duration::from_millis(1500),
            write_timeout: Duration::from_secs(5),
            replay_window: Duration::from_secs(10),
            reconnect: Backoff {
                max_attempts: 5,
                ..Backoff::default()
            },
            sleeper: SharedSleeper::default(),
        }
    }

    /// The settings of an assistant's `stt_config` (provider `deepgram`) on top of
    /// [`DeepgramConfig::new`]: model, language, key terms, smart format, endpointing,
    /// numerals, filler words, utterance end (which turns interim results on) and
    /// `no_delay`.
    pub fn from_stt_config(config: &SttConfig) -> Result<Self, ProviderError> {
        if config.provider != SttProviderId::Deepgram {
            return Err(config_error(format!(
                "stt_config names provider {:?}, not deepgram",
                config.provider.as_str()
            )));
        }
        let mut out = DeepgramConfig::new(config.model.clone());
        out.language = Some(config.language.as_str().to_string());
        out.keyterms = config.keyterms().to_vec();
        if config.smart_format.is_some() {
            out.smart_format = config.smart_format;
        }
        if let Some(ms) = config.endpointing {
            out.endpointing = Some(Endpointing::Ms(
                ms.clamp(0.0, u32::MAX as f64).round() as u32
            ));
        }
        out.numerals = config.numerals;
        out.filler_words = config.filler_words;
        if let Some(ms) = config.utterance_end_ms {
            let ms = u32::try_from(ms)
                .map_err(|_| config_error(format!("utterance_end_ms {ms} is out of range")))?;
            out.utterance_end_ms = Some(ms);
            out.interim_results = Some(true);
        }
        if let Some(no_delay) = config.no_delay {
            out.extra_params
                .push(("no_delay".to_string(), no_delay.to_string()));
        }
        Ok(out)
    }

    /// The query string for a session at `sample_rate`, exactly as it is sent: model,
    /// language, encoding, sample_rate, channels, interim_results, endpointing,
    /// utterance_end_ms, vad_events, smart_format, punctuate, numerals, filler_words,
    /// profanity_filter, diarize, keyterm…, keywords…, then the extra parameters.
    pub fn query(&self, sample_rate: SampleRate) -> String {
        let mut q = Query::new();
        q.push("model", &self.model)
            .push_opt("language", self.language.as_deref())
            .push("encoding", self.encoding.as_str())
            .push("sample_rate", sample_rate.hz().to_string())
            .push("channels", "1")
            .push_opt("interim_results", self.interim_results)
            .push_opt(
                "endpointing",
                self.endpointing.map(Endpointing::query_value),
            )
            .push_opt("utterance_end_ms", self.utterance_end_ms)
            .push_opt("vad_events", self.vad_events)
            .push_opt("smart_format", self.smart_format)
            .push_opt("punctuate", self.punctuate)
            .push_opt("numerals", self.numerals)
            .push_opt("filler_words", self.filler_words)
            .push_opt("profanity_filter", self.profanity_filter)
            .push_opt("diarize", self.diarize)
            .push_each("keyterm", &self.keyterms)
            .push_each("keywords", &self.keywords);
        for (name, value) in &self.extra_params {
            q.push(name, value);
        }
        q.as_str().to_string()
    }

    fn validate(&self) -> Result<(), ProviderError> {
        if self.model.trim().is_empty() {
            return Err(config_error("no model configured".into()));
        }
        if self.utterance_end_ms.is_some() && self.interim_results != Some(true) {
            return Err(config_error(
                "utterance_end_ms needs interim_results=true".into(),
            ));
        }
        if !self.keyterms.is_empty() && !self.model.starts_with("nova-3") {
            return Err(config_error(format!(
                "keyterm needs a nova-3 model, not {:?} (use keywords)",
                self.model
            )));
        }
        if self.keyterms.iter().any(|t| t.trim().is_empty()) {
            return Err(config_error("a key term is blank".into()));
        }
        if self.keepalive_interval.is_zero() {
            return Err(config_error("keepalive_interval must be positive".into()));
        }
        Ok(())
    }
}

impl Default for DeepgramConfig {
    /// [`DeepgramConfig::new`] with `nova-3`.
    fn default() -> Self {
        DeepgramConfig::new("nova-3")
    }
}

fn config_error(detail: String) -> ProviderError {
    ProviderError::Config {
        provider: DEEPGRAM.to_string(),
        detail,
    }
}

/// Deepgram live speech-to-text. Cheap to clone; each `run` is one call's session.
#[derive(Clone, Debug)]
pub struct DeepgramStt {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: DeepgramConfig,
    /// `{base}/v1/listen`, without the query.
    listen_url: String,
    key: Option<ApiKey>,
}

impl DeepgramStt {
    /// Builds the provider, filling gaps in `config` from the process environment
    /// (`DEEPGRAM_API_KEY`, `DEEPGRAM_BASE_URL`).
    pub fn new(config: DeepgramConfig) -> Result<Self, ProviderError> {
        DeepgramStt::with_env(config, &ProcessEnv)
    }

    /// Builds the provider, filling gaps in `config` from `env`.
    pub fn with_env(config: DeepgramConfig, env: &dyn Env) -> Result<Self, ProviderError> {
        config.validate()?;
        let endpoint =
            Service::DEEPGRAM.resolve(config.base_url.as_deref(), config.api_key.as_ref(), env)?;
        let key = endpoint.key_for_base_url()?.cloned();
        Ok(DeepgramStt {
            inner: Arc::new(Inner {
                listen_url: endpoint.url(LISTEN_PATH),
                key,
                config,
            }),
        })
    }

    /// The full URL a session at `sample_rate` connects to.
    pub fn listen_url(&self, sample_rate: SampleRate) -> String {
        format!(
            "{}?{}",
            self.inner.listen_url,
            self.inner.config.query(sample_rate)
        )
    }

    /// The settings in use.
    pub fn config(&self) -> &DeepgramConfig {
        &self.inner.config
    }
}

impl SttProvider for DeepgramStt {
    fn name(&self) -> &str {
        DEEPGRAM
    }

    fn run(
        &self,
        params: SttSessionParams,
        io: SttIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let inner = self.inner.clone();
        let url = self.listen_url(params.sample_rate);
        Box::pin(async move { Session::new(inner, url, params.sample_rate, io).run().await })
    }
}

// ---------------------------------------------------------------------------------------------
// Wire messages

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResultsMsg {
    start: Option<f64>,
    duration: Option<f64>,
    is_final: Option<bool>,
    speech_final: Option<bool>,
    from_finalize: Option<bool>,
    channel: Option<ResultsChannel>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResultsChannel {
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alternative {
    transcript: Option<String>,
    confidence: Option<f64>,
    words: Vec<WireWord>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireWord {
    word: Option<String>,
    punctuated_word: Option<String>,
    start: Option<f64>,
    end: Option<f64>,
    confidence: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorMsg {
    variant: Option<String>,
    code: Option<serde_json::Value>,
    description: Option<String>,
    message: Option<String>,
}

const KEEPALIVE: &str = r#"{"type":"KeepAlive"}"#;
const FINALIZE: &str = r#"{"type":"Finalize"}"#;
const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

// ---------------------------------------------------------------------------------------------
// The session

/// Frames of the session's audio not yet covered by a final result.
struct Chunk {
    /// Position of the first sample on the session timeline.
    start: u64,
    /// Samples in the chunk.
    samples: u64,
    /// The encoded frame, as sent.
    bytes: Bytes,
}

/// Something the engine handed the session.
enum Intake {
    /// One encoded frame (already buffered).
    Audio(Bytes),
    /// The engine asked for a Finalize.
    Finalize,
    /// Close requested, or the audio ended: finish the stream. Carries the frames that
    /// were still in the ring (already buffered), to go out before `CloseStream`.
    Close(Vec<Bytes>),
    /// Nothing to act on (e.g. the control channel closed).
    Nothing,
}

/// How one connection ended.
enum ConnEnd {
    /// The stream ended normally after CloseStream.
    Finished,
    /// A drop that reconnecting may cure.
    Dropped(ProviderError),
    /// A failure that reconnecting cannot cure.
    Fatal(ProviderError),
}

/// An open socket whose sink is closed politely if the session is dropped mid-stream.
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

struct Session {
    inner: Arc<Inner>,
    url: String,
    rate: SampleRate,
    io: SttIo,
    /// Unfinalised audio, oldest first.
    buffer: VecDeque<Chunk>,
    /// Samples taken from the ring so far: the session timeline's "now".
    stream_pos: u64,
    /// Session position of the current connection's time zero.
    conn_offset: u64,
    /// The ring is closed (no more audio will come).
    audio_done: bool,
    /// The control channel is closed.
    control_done: bool,
    /// Close was requested: no more audio is accepted, CloseStream is owed.
    closing: bool,
    /// A Finalize was sent (or requested) and its `from_finalize` result has not arrived.
    finalize_owed: bool,
    schedule: BackoffSchedule,
    /// Reconnect attempts in the current outage.
    outage_attempts: u32,
}

impl Session {
    fn new(inner: Arc<Inner>, url: String, rate: SampleRate, io: SttIo) -> Self {
        let schedule = inner.config.reconnect.start();
        Session {
            inner,
            url,
            rate,
            io,
            buffer: VecDeque::new(),
            stream_pos: 0,
            conn_offset: 0,
            audio_done: false,
            control_done: false,
            closing: false,
            finalize_owed: false,
            schedule,
            outage_attempts: 0,
        }
    }

    fn emit(&self, event: SttEvent) {
        // An engine that went away is not an error of the session.
        let _ = self.io.events.send(event);
    }

    async fn run(mut self) -> Result<(), ProviderError> {
        loop {
            if self.closing && self.buffer.is_empty() && !self.finalize_owed {
                // Closing with every frame covered by a final: nothing is left to recover.
                return Ok(());
            }
            let error = match self.connect().await {
                Ok(conn) => {
                    self.emit(SttEvent::Ready);
                    match self.stream(conn).await {
                        ConnEnd::Finished => return Ok(()),
                        ConnEnd::Fatal(e) => return Err(e),
                        ConnEnd::Dropped(e) => e,
                    }
                }
                Err(e) if is_reconnectable(&e) => e,
                Err(e) => return Err(e),
            };
            if self.closing && self.buffer.is_empty() && !self.finalize_owed {
                return Ok(());
            }
            let retry_after = match &error {
                ProviderError::RateLimited { retry_after, .. } => *retry_after,
                _ => None,
            };
            let Some(delay) = self.schedule.next_delay(retry_after) else {
                return Err(error);
            };
            self.outage_attempts += 1;
            self.emit(SttEvent::Reconnecting {
                attempt: self.outage_attempts,
                error,
            });
            let wait = self.inner.config.sleeper.sleep(delay);
            self.buffering(wait).await;
        }
    }

    /// Runs `fut` while taking audio and commands in, so nothing is lost meanwhile.
    async fn buffering<T>(&mut self, fut: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return out,
                _ = self.intake() => {}
            }
        }
    }

    /// Connects (while buffering) and replays the unfinalised audio.
    async fn connect(&mut self) -> Result<Conn, ProviderError> {
        let inner = self.inner.clone();
        let url = self.url.clone();
        let connecting = async move {
            let auth = inner.key.as_ref().map_or(Auth::None, |key| Auth::Header {
                name: "authorization",
                prefix: "Token ",
                key,
            });
            let request = WsRequest::new(url)
                .auth(auth)
                .connect_timeout(inner.config.connect_timeout);
            ws::connect(DEEPGRAM, request).await
        };
        let connection = self.buffering(connecting).await?;
        let mut conn = Conn {
            sink: Some(connection.sink),
            stream: connection.stream,
        };
        self.conn_offset = self.buffer.front().map_or(self.stream_pos, |c| c.start);
        let replay: Vec<Bytes> = self.buffer.iter().map(|c| c.bytes.clone()).collect();
        for bytes in replay {
            self.send(&mut conn, Message::Binary(bytes)).await?;
        }
        if self.finalize_owed {
            self.send(&mut conn, Message::text(FINALIZE)).await?;
        }
        if self.closing {
            self.send(&mut conn, Message::text(CLOSE_STREAM)).await?;
        }
        Ok(conn)
    }

    async fn send(&self, conn: &mut Conn, message: Message) -> Result<(), ProviderError> {
        let Some(sink) = conn.sink.as_mut() else {
            return Err(closed(None, "the connection is already closed"));
        };
        match tokio::time::timeout(self.inner.config.write_timeout, sink.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ws::map_error(DEEPGRAM, e, self.inner.key.as_ref())),
            Err(_) => Err(ProviderError::Network {
                provider: DEEPGRAM.to_string(),
                detail: format!("a send stalled for {:?}", self.inner.config.write_timeout),
            }),
        }
    }

    /// Waits for the next frame or command and records it in the session state.
    async fn intake(&mut self) -> Intake {
        let accept_audio = !self.audio_done && !self.closing;
        let accept_control = !self.control_done;
        if !accept_audio && !accept_control {
            return std::future::pending().await;
        }
        // Audio first: a Finalize or Close covers every frame the engine sent before it.
        tokio::select! {
            biased;
            frame = self.io.audio.recv(), if accept_audio => match frame {
                Some(frame) => match self.buffer_frame(&frame) {
                    Some(bytes) => Intake::Audio(bytes),
                    None => Intake::Nothing,
                },
                None => {
                    self.audio_done = true;
                    self.closing = true;
                    Intake::Close(Vec::new())
                }
            },
            command = self.io.control.recv(), if accept_control => match command {
                Some(SttControl::Finalize) => {
                    if self.closing {
                        Intake::Nothing
                    } else {
                        self.finalize_owed = true;
                        Intake::Finalize
                    }
                }
                Some(SttControl::Close) => {
                    if self.closing {
                        Intake::Nothing
                    } else {
                        self.closing = true;
                        // The engine stops the audio with Close: take what is already queued.
                        let mut last = Vec::new();
                        while let Some(frame) = self.io.audio.try_pop() {
                            last.extend(self.buffer_frame(&frame));
                        }
                        Intake::Close(last)
                    }
                }
                None => {
                    self.control_done = true;
                    Intake::Nothing
                }
            },
        }
    }

    /// Encodes a frame and keeps it for replay; `None` for a frame that carries nothing
    /// (zero-length frames must never reach Deepgram).
    fn buffer_frame(&mut self, frame: &AudioFrame) -> Option<Bytes> {
        let samples = frame.samples();
        if samples.is_empty() {
            return None;
        }
        let bytes = match self.inner.config.encoding {
            DeepgramEncoding::Linear16 => {
                let mut out = Vec::with_capacity(samples.len() * 2);
                for s in samples {
                    out.extend_from_slice(&s.to_le_bytes());
                }
                Bytes::from(out)
            }
            DeepgramEncoding::Mulaw => {
                let mut out = vec![0u8; samples.len()];
                g711::encode_ulaw(samples, &mut out);
                Bytes::from(out)
            }
        };
        self.buffer.push_back(Chunk {
            start: self.stream_pos,
            samples: samples.len() as u64,
            bytes: bytes.clone(),
        });
        self.stream_pos += samples.len() as u64;
        let window = secs_to_samples(self.inner.config.replay_window.as_secs_f64(), self.rate);
        while let Some(front) = self.buffer.front() {
            if self.stream_pos.saturating_sub(front.start) > window {
                self.buffer.pop_front();
            } else {
                break;
            }
        }
        Some(bytes)
    }

    /// Drops buffered frames that end at or before `covered` (session samples).
    fn trim(&mut self, covered: u64) {
        while let Some(front) = self.buffer.front() {
            if front.start + front.samples <= covered {
                self.buffer.pop_front();
            } else {
                break;
            }
        }
    }

    /// Streams on one connection until it ends.
    async fn stream(&mut self, mut conn: Conn) -> ConnEnd {
        let interval = self.inner.config.keepalive_interval;
        let keepalive = tokio::time::sleep(interval);
        tokio::pin!(keepalive);
        let mut close_deadline = self
            .closing
            .then(|| Instant::now() + self.inner.config.close_timeout);
        let mut pending_error: Option<ProviderError> = None;
        loop {
            let deadline = close_deadline;
            tokio::select! {
                biased;
                message = conn.stream.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => {
                            let err = ws::map_error(DEEPGRAM, e, self.inner.key.as_ref());
                            return match pending_error.take() {
                                Some(server) => ConnEnd::Fatal(server),
                                None => ConnEnd::Dropped(err),
                            };
                        }
                        None => {
                            return match pending_error.take() {
                                Some(server) => ConnEnd::Fatal(server),
                                None => ConnEnd::Dropped(closed(None, "the connection ended without a close frame")),
                            };
                        }
                    };
                    match message {
                        Message::Text(text) => {
                            if let Err(e) = self.on_text(text.as_str(), &mut pending_error) {
                                return ConnEnd::Dropped(e);
                            }
                        }
                        Message::Close(frame) => {
                            if let Some(server) = pending_error.take() {
                                return ConnEnd::Fatal(server);
                            }
                            let code = frame.as_ref().map(|f| u16::from(f.code));
                            let reason = frame.as_ref().map(|f| f.reason.to_string()).unwrap_or_default();
                            return match code {
                                Some(1000) if self.closing => {
                                    if let Some(sink) = conn.sink.as_mut() {
                                        let _ = tokio::time::timeout(Duration::from_millis(200), sink.close()).await;
                                    }
                                    conn.sink = None;
                                    ConnEnd::Finished
                                }
                                Some(1002 | 1008) => ConnEnd::Fatal(ProviderError::Closed {
                                    provider: DEEPGRAM.to_string(),
                                    code,
                                    reason,
                                }),
                                _ => ConnEnd::Dropped(ProviderError::Closed {
                                    provider: DEEPGRAM.to_string(),
                                    code,
                                    reason: if reason.is_empty() { "closed mid-stream".to_string() } else { reason },
                                }),
                            };
                        }
                        // Audio never comes back; pings are answered by the socket layer.
                        _ => {}
                    }
                }
                _ = wait_until(deadline) => {
                    return ConnEnd::Fatal(closed(None, &format!(
                        "no end of stream within {:?} after CloseStream",
                        self.inner.config.close_timeout
                    )));
                }
                intake = self.intake() => {
                    let message = match intake {
                        Intake::Audio(bytes) => Message::Binary(bytes),
                        Intake::Finalize => Message::text(FINALIZE),
                        Intake::Close(last) => {
                            for bytes in last {
                                if let Err(e) = self.send(&mut conn, Message::Binary(bytes)).await {
                                    return self.salvage(&mut conn, e, &mut pending_error).await;
                                }
                            }
                            close_deadline = Some(Instant::now() + self.inner.config.close_timeout);
                            Message::text(CLOSE_STREAM)
                        }
                        Intake::Nothing => continue,
                    };
                    let is_audio = matches!(message, Message::Binary(_));
                    if let Err(e) = self.send(&mut conn, message).await {
                        return self.salvage(&mut conn, e, &mut pending_error).await;
                    }
                    if is_audio {
                        keepalive.as_mut().reset(Instant::now() + interval);
                    }
                }
                _ = &mut keepalive, if !self.closing => {
                    if let Err(e) = self.send(&mut conn, Message::text(KEEPALIVE)).await {
                        return self.salvage(&mut conn, e, &mut pending_error).await;
                    }
                    keepalive.as_mut().reset(Instant::now() + interval);
                }
            }
        }
    }

    /// A send failed, but the server may have delivered results before the connection
    /// broke: read what already arrived (briefly), so finals that made it are kept and
    /// their audio is not replayed.
    async fn salvage(
        &mut self,
        conn: &mut Conn,
        error: ProviderError,
        pending_error: &mut Option<ProviderError>,
    ) -> ConnEnd {
        let mut finished = false;
        let _ = tokio::time::timeout(Duration::from_millis(250), async {
            while let Some(Ok(message)) = conn.stream.next().await {
                match message {
                    Message::Text(text) if self.on_text(text.as_str(), pending_error).is_err() => {
                        break;
                    }
                    Message::Close(frame) => {
                        finished = self.closing && frame.is_some_and(|f| u16::from(f.code) == 1000);
                        break;
                    }
                    _ => {}
                }
            }
        })
        .await;
        match pending_error.take() {
            Some(server) => ConnEnd::Fatal(server),
            None if finished => ConnEnd::Finished,
            None => ConnEnd::Dropped(error),
        }
    }

    /// Handles one JSON text frame. An `Err` means the connection can no longer be
    /// trusted (malformed JSON or a malformed known message).
    fn on_text(
        &mut self,
        text: &str,
        pending_error: &mut Option<ProviderError>,
    ) -> Result<(), ProviderError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| protocol(format!("a server message is not JSON: {e}")))?;
        let kind = Envelope::deserialize(&value)
            .ok()
            .and_then(|e| e.kind)
            .unwrap_or_default();
        match kind.as_str() {
            "Results" => {
                let results = ResultsMsg::deserialize(&value)
                    .map_err(|e| protocol(format!("a Results message is malformed: {e}")))?;
                let transcript = self.on_results(results);
                self.emit(SttEvent::Transcript(transcript));
            }
            "SpeechStarted" => self.emit(SttEvent::SpeechStarted),
            "UtteranceEnd" => self.emit(SttEvent::UtteranceEnd),
            "Error" => {
                let error = ErrorMsg::deserialize(&value).unwrap_or_default();
                let code = match error.code {
                    Some(serde_json::Value::String(s)) => Some(s),
                    Some(serde_json::Value::Null) | None => error.variant.clone(),
                    Some(other) => Some(other.to_string()),
                };
                let message = error
                    .description
                    .or(error.message)
                    .or(error.variant)
                    .unwrap_or_else(|| "unspecified error".to_string());
                *pending_error = Some(ProviderError::Server {
                    provider: DEEPGRAM.to_string(),
                    code,
                    message: self
                        .inner
                        .key
                        .as_ref()
                        .map_or(message.clone(), |k| k.redact(&message)),
                });
            }
            // Metadata (the session summary) and unknown types carry nothing the engine needs.
            _ => {}
        }
        Ok(())
    }

    fn on_results(&mut self, results: ResultsMsg) -> Transcript {
        let offset_secs = self.conn_offset as f64 / self.rate.hz() as f64;
        let is_final = results.is_final.unwrap_or(false);
        let alternative = results
            .channel
            .and_then(|c| c.alternatives.into_iter().next())
            .unwrap_or_default();
        let mut last_word_end = 0.0f64;
        let words: Vec<Word> = alternative
            .words
            .into_iter()
            .map(|w| {
                let start = w.start.unwrap_or(0.0);
                let end = w.end.unwrap_or(start);
                last_word_end = last_word_end.max(end);
                Word {
                    text: w.punctuated_word.or(w.word).unwrap_or_default(),
                    start: secs(offset_secs + start),
                    end: secs(offset_secs + end),
                    confidence: unit(w.confidence),
                }
            })
            .collect();
        if is_final {
            let segment_end = results.start.unwrap_or(0.0) + results.duration.unwrap_or(0.0);
            let covered = segment_end.max(last_word_end);
            self.trim(self.conn_offset + secs_to_samples(covered, self.rate));
        }
        if results.from_finalize == Some(true) {
            self.finalize_owed = false;
        }
        if self.schedule.attempts() > 1 || self.outage_attempts > 0 {
            // The connection works: a later drop starts a fresh retry schedule.
            self.schedule = self.inner.config.reconnect.start();
            self.outage_attempts = 0;
        }
        Transcript {
            text: alternative.transcript.unwrap_or_default(),
            is_final,
            speech_final: results.speech_final.unwrap_or(false),
            from_finalize: results.from_finalize.unwrap_or(false),
            confidence: unit(alternative.confidence),
            words,
        }
    }
}

/// Errors a new connection may cure.
fn is_reconnectable(error: &ProviderError) -> bool {
    match error {
        ProviderError::Closed { code, .. } => !matches!(code, Some(1002 | 1008)),
        ProviderError::Http { status, .. } => *status >= 500,
        ProviderError::RateLimited { .. }
        | ProviderError::ConnectTimeout { .. }
        | ProviderError::FirstByteTimeout { .. }
        | ProviderError::Network { .. }
        | ProviderError::Protocol { .. } => true,
        ProviderError::Auth { .. }
        | ProviderError::Server { .. }
        | ProviderError::Config { .. } => false,
    }
}

async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn closed(code: Option<u16>, reason: &str) -> ProviderError {
    ProviderError::Closed {
        provider: DEEPGRAM.to_string(),
        code,
        reason: reason.to_string(),
    }
}

fn protocol(detail: String) -> ProviderError {
    ProviderError::Protocol {
        provider: DEEPGRAM.to_string(),
        detail,
    }
}

/// Seconds to a duration; negative, NaN or absurd values become zero.
fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

fn secs_to_samples(value: f64, rate: SampleRate) -> u64 {
    if value.is_finite() && value > 0.0 {
        (value * rate.hz() as f64).round() as u64
    } else {
        0
    }
}

fn unit(value: Option<f64>) -> f32 {
    value
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::endpoint::NoEnv;
    use voxline_engine::config::stt::SttLanguage;

    #[test]
    fn default_query_is_the_telephony_set() {
        assert_eq!(
            DeepgramConfig::default().query(SampleRate::Hz8000),
            "model=nova-3&encoding=linear16&sample_rate=8000&channels=1&interim_results=true\
             &endpointing=300&utterance_end_ms=1000&vad_events=true&smart_format=true"
        );
    }

    #[test]
    fn stt_config_maps_onto_the_query() {
        let mut stt = SttConfig::new(SttProviderId::Deepgram, "nova-3-general", SttLanguage::Nl);
        stt.keyterms = Some(vec!["ja".into(), "oké".into()]);
        stt.endpointing = Some(450.4);
        stt.numerals = Some(true);
        stt.no_delay = Some(true);
        let config = DeepgramConfig::from_stt_config(&stt).unwrap();
        assert_eq!(
            config.query(SampleRate::Hz16000),
            "model=nova-3-general&language=nl&encoding=linear16&sample_rate=16000&channels=1\
             &interim_results=true&endpointing=450&utterance_end_ms=1000&vad_events=true\
             &smart_format=true&numerals=true&keyterm=ja&keyterm=ok%C3%A9&no_delay=true"
        );
        let other = SttConfig::new(SttProviderId::Gladia, "solaria-1", SttLanguage::En);
        assert_eq!(
            DeepgramConfig::from_stt_config(&other).unwrap_err().kind(),
            "config"
        );
    }

    #[test]
    fn invalid_combinations_are_config_errors() {
        let key = Some(ApiKey::new("dg-test-key"));
        let mut c = DeepgramConfig {
            api_key: key.clone(),
            interim_results: Some(false),
            ..DeepgramConfig::default()
        };
        assert_eq!(
            DeepgramStt::with_env(c.clone(), &NoEnv).unwrap_err().kind(),
            "config"
        );
        c.interim_results = Some(true);
        c.model = "nova-2".into();
        c.keyterms = vec!["x".into()];
        assert_eq!(
            DeepgramStt::with_env(c, &NoEnv).unwrap_err().kind(),
            "config"
        );
        let no_key = DeepgramStt::with_env(DeepgramConfig::default(), &NoEnv).unwrap_err();
        assert!(no_key.to_string().contains("DEEPGRAM_API_KEY"), "{no_key}");
    }

    #[test]
    fn reconnect_classification() {
        assert!(is_reconnectable(&closed(Some(1011), "NET-0001")));
        assert!(is_reconnectable(&closed(None, "dropped")));
        assert!(!is_reconnectable(&closed(Some(1008), "DATA-0000")));
        assert!(!is_reconnectable(&ProviderError::Auth {
            provider: DEEPGRAM.into(),
            status: 401
        }));
    }
}
