//! A strict fake of ElevenLabs' WebSocket stream-input API
//! (`/v1/text-to-speech/{voice_id}/stream-input`).
//!
//! Checked, and recorded in [`FakeElevenLabs::violations`] when wrong: the path and voice,
//! `model_id` and a known `output_format` in the query, the `xi-api-key` header (401 at the
//! upgrade otherwise), a first message whose text is a single space with valid
//! `voice_settings` (exactly [`FakeElevenLabsConfig::expected_voice_settings`] when set)
//! and `generation_config`, text chunks that end with a space and are never blank, no
//! voice settings after the first message, no binary frames, nothing after the closing
//! `{"text":""}`.
//!
//! Speech is synthesised on `flush: true`, on `try_trigger_generation: true` once the
//! buffer holds `chunk_length_schedule[0]` characters, and at the end of input:
//! [`FakeElevenLabsConfig::ms_per_char`] of audio per character, whose samples are
//! [`fake_sample`] of their position in the utterance, so a client can check its
//! reassembly exactly. The audio goes out base64-encoded in the output format, in pieces
//! of the byte sizes [`FakeElevenLabsConfig::piece_bytes`] cycles through (odd sizes split
//! samples across messages), with `"isFinal": null` and an `alignment` /
//! `normalizedAlignment` for the characters that start in the piece, times relative to the
//! piece (the duration field spelled `charDurationsMs`, as the real server does, unless
//! [`FakeElevenLabsConfig::spec_spelling`]). The normalised alignment is lower-cased, so a
//! client can tell which one it used. The end is `{"isFinal":true}` and a close 1000.
//!
//! Faults ([`ElevenLabsFault`]): a rejected upgrade, an error message then a close 1008, a
//! close without `isFinal`, a frame that is not JSON.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use voxline_engine::codecs::g711;

use super::http::RecordedRequest;
use super::ws::{FakeWsServer, ServerSocket, WsReply};
use crate::elevenlabs::OutputFormat;
use crate::net::query::{decode_component, parse_query};

/// The sample the fake synthesises at position `index` of an utterance.
pub fn fake_sample(index: u64) -> i16 {
    ((index * 7919 + 13) % 20_001) as i16 - 10_000
}

/// A fault the fake plays on every accepted connection.
#[derive(Clone, Debug, PartialEq)]
pub enum ElevenLabsFault {
    /// Behave normally.
    None,
    /// Refuse the upgrade with this status and optional `Retry-After` seconds.
    Reject {
        /// HTTP status.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u32>,
    },
    /// After this many audio pieces, send an error message and close 1008 with its text.
    ErrorAfter {
        /// Audio pieces sent first.
        pieces: usize,
        /// The `error` slug, e.g. `input_timeout_exceeded`.
        error: String,
        /// The `message`.
        message: String,
    },
    /// After this many audio pieces, close 1000 without `isFinal`.
    TruncateAfter {
        /// Audio pieces sent first.
        pieces: usize,
    },
    /// After this many audio pieces, send a frame that is not JSON.
    MalformedAfter {
        /// Audio pieces sent first.
        pieces: usize,
    },
}

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeElevenLabsConfig {
    /// The only key accepted.
    pub api_key: String,
    /// The voice the path must name.
    pub voice_id: String,
    /// The `model_id` the query must carry.
    pub model_id: String,
    /// When set, the first message's `voice_settings` must equal this.
    pub expected_voice_settings: Option<Value>,
    /// Audio per character.
    pub ms_per_char: u32,
    /// Sizes (bytes) of the audio pieces, cycled.
    pub piece_bytes: Vec<usize>,
    /// Pause between two pieces.
    pub piece_delay: Duration,
    /// Send `alignment` (the text as received) besides `normalizedAlignment`.
    pub raw_alignment: bool,
    /// Spell the duration field `charsDurationsMs`, as the schema does.
    pub spec_spelling: bool,
    /// The fault to play.
    pub fault: ElevenLabsFault,
}

impl FakeElevenLabsConfig {
    /// A fake for `voice_id` and `model_id` accepting `api_key`.
    pub fn new(
        api_key: impl Into<String>,
        voice_id: impl Into<String>,
        model_id: impl Into<String>,
    ) -> Self {
        FakeElevenLabsConfig {
            api_key: api_key.into(),
            voice_id: voice_id.into(),
            model_id: model_id.into(),
            expected_voice_settings: None,
            ms_per_char: 30,
            piece_bytes: vec![1001, 777, 1283, 333],
            piece_delay: Duration::ZERO,
            raw_alignment: true,
            spec_spelling: false,
            fault: ElevenLabsFault::None,
        }
    }
}

/// One character as synthesised: its start and duration on the utterance's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct SpokenChar {
    /// The character (as received).
    pub ch: char,
    /// Start in milliseconds from the utterance's first sample.
    pub start_ms: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
}

/// How the client ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEnd {
    /// A close frame with this code (`None` = a close frame without a code).
    CloseFrame(Option<u16>),
    /// The TCP connection ended without a close frame.
    Dropped,
}

/// What one connection did, as the fake saw it.
#[derive(Clone, Debug, Default)]
pub struct ElevenLabsConnection {
    /// The upgrade request.
    pub request: Option<RecordedRequest>,
    /// True when the upgrade was accepted.
    pub accepted: bool,
    /// The JSON messages received, in order.
    pub messages: Vec<Value>,
    /// The audio bytes sent (all pieces, in the output format).
    pub audio: Vec<u8>,
    /// Audio pieces sent.
    pub pieces: usize,
    /// Every character synthesised, in order.
    pub chars: Vec<SpokenChar>,
    /// How the client ended the connection, once it did (before the fake closed).
    pub client_end: Option<ClientEnd>,
    /// True once the connection is over.
    pub ended: bool,
}

#[derive(Default)]
struct Shared {
    connections: Vec<ElevenLabsConnection>,
    violations: Vec<String>,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake ElevenLabs server; stops when dropped.
pub struct FakeElevenLabs {
    server: FakeWsServer,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for FakeElevenLabs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeElevenLabs")
            .field("url", &self.server.url())
            .finish()
    }
}

impl FakeElevenLabs {
    /// Starts the fake on 127.0.0.1.
    pub async fn start(config: FakeElevenLabsConfig) -> io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let config = Arc::new(config);
        let handler_shared = shared.clone();
        let server =
            FakeWsServer::start(move |req| handshake(&config, &handler_shared, req)).await?;
        Ok(FakeElevenLabs { server, shared })
    }

    /// The base URL to configure (`ws://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every connection so far, in order.
    pub fn connections(&self) -> Vec<ElevenLabsConnection> {
        lock(&self.shared).connections.clone()
    }

    /// Everything the client did that the real service would refuse or the adapter must
    /// not do; empty for a correct client.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared).violations.clone()
    }
}

fn handshake(
    config: &Arc<FakeElevenLabsConfig>,
    shared: &Arc<Mutex<Shared>>,
    req: &RecordedRequest,
) -> WsReply {
    let index = {
        let mut s = lock(shared);
        s.connections.push(ElevenLabsConnection {
            request: Some(req.clone()),
            ..ElevenLabsConnection::default()
        });
        s.connections.len() - 1
    };
    let violation = |text: String| lock(shared).violations.push(text);
    if let ElevenLabsFault::Reject {
        status,
        retry_after,
    } = &config.fault
    {
        let mut headers = Vec::new();
        if let Some(secs) = retry_after {
            headers.push(("retry-after".to_string(), secs.to_string()));
        }
        let slug = if *status == 429 {
            "too_many_concurrent_requests"
        } else {
            "invalid_api_key"
        };
        return WsReply::Reject {
            status: *status,
            headers,
            body: json!({"detail":{"status":slug,"message":"rejected by the fake"}}).to_string(),
        };
    }
    let voice = req
        .path
        .strip_prefix("/v1/text-to-speech/")
        .and_then(|rest| rest.strip_suffix("/stream-input"))
        .and_then(decode_component);
    if voice.as_deref() != Some(config.voice_id.as_str()) {
        violation(format!("upgrade to {}", req.path));
        return WsReply::reject(404, "not found");
    }
    if req.header("xi-api-key") != Some(config.api_key.as_str()) {
        return WsReply::Reject {
            status: 401,
            headers: Vec::new(),
            body: json!({"detail":{"status":"invalid_api_key","message":"Invalid API key"}})
                .to_string(),
        };
    }
    let query = parse_query(req.query.as_deref().unwrap_or_default());
    let get = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if get("model_id").as_deref() != Some(config.model_id.as_str()) {
        violation(format!("model_id {:?}", get("model_id")));
        return WsReply::reject(400, "bad model_id");
    }
    let Some(format) = get("output_format")
        .as_deref()
        .and_then(OutputFormat::from_name)
    else {
        violation(format!("output_format {:?}", get("output_format")));
        return WsReply::reject(400, "bad output_format");
    };
    lock(shared).connections[index].accepted = true;
    let config = config.clone();
    let shared = shared.clone();
    WsReply::accept(move |socket| async move {
        let mut conn = FakeConnection {
            socket,
            config,
            shared,
            index,
            format,
            first_schedule: 120,
            buffer: String::new(),
            generated_samples: 0,
            got_first: false,
            ended_input: false,
            piece_index: 0,
            held: Vec::new(),
        };
        conn.run().await;
        lock(&conn.shared).connections[index].ended = true;
    })
}

enum Step {
    Continue,
    Stop,
}

struct FakeConnection {
    socket: ServerSocket,
    config: Arc<FakeElevenLabsConfig>,
    shared: Arc<Mutex<Shared>>,
    index: usize,
    format: OutputFormat,
    first_schedule: usize,
    /// Text received and not yet synthesised.
    buffer: String,
    /// Samples synthesised so far.
    generated_samples: u64,
    got_first: bool,
    ended_input: bool,
    piece_index: usize,
    /// Client messages that arrived while audio was being sent.
    held: Vec<Message>,
}

impl FakeConnection {
    fn record(&self, f: impl FnOnce(&mut ElevenLabsConnection)) {
        let mut s = lock(&self.shared);
        if let Some(c) = s.connections.get_mut(self.index) {
            f(c);
        }
    }

    fn violation(&self, text: String) {
        lock(&self.shared).violations.push(text);
    }

    async fn run(&mut self) {
        loop {
            let message = if self.held.is_empty() {
                match self.socket.next().await {
                    Some(Ok(message)) => message,
                    Some(Err(_)) | None => {
                        self.record(|c| c.client_end = Some(ClientEnd::Dropped));
                        return;
                    }
                }
            } else {
                self.held.remove(0)
            };
            if let Step::Stop = self.on_message(message).await {
                return;
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Step {
        match message {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Binary(_) => {
                self.violation("a binary frame from the client".into());
                Step::Continue
            }
            Message::Close(frame) => {
                let code = frame.map(|f| u16::from(f.code));
                self.record(|c| c.client_end = Some(ClientEnd::CloseFrame(code)));
                Step::Stop
            }
            _ => Step::Continue,
        }
    }

    async fn on_text(&mut self, text: &str) -> Step {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            self.violation(format!("a text frame that is not JSON: {text:?}"));
            return Step::Continue;
        };
        self.record(|c| c.messages.push(value.clone()));
        if self.ended_input {
            self.violation(format!("a message after the end of input: {value}"));
            return Step::Continue;
        }
        let Some(chunk) = value.get("text").and_then(Value::as_str) else {
            self.violation(format!("a message without text: {value}"));
            return Step::Continue;
        };
        if !self.got_first {
            self.got_first = true;
            self.check_first(&value, chunk);
            return Step::Continue;
        }
        if value.get("voice_settings").is_some() || value.get("generation_config").is_some() {
            self.violation("settings after the first message".into());
        }
        if chunk.is_empty() {
            self.ended_input = true;
            let text = std::mem::take(&mut self.buffer);
            if let Step::Stop = self.speak(&text).await {
                return Step::Stop;
            }
            let _ = self
                .socket
                .send(Message::text(json!({"isFinal": true}).to_string()))
                .await;
            self.close(1000, "").await;
            return Step::Stop;
        }
        if chunk.trim().is_empty() {
            self.violation(format!("a blank chunk {chunk:?}"));
        }
        if !chunk.ends_with(' ') {
            self.violation(format!("a chunk that does not end with a space: {chunk:?}"));
        }
        let flush = value.get("flush").and_then(Value::as_bool) == Some(true);
        let trigger = value.get("try_trigger_generation").and_then(Value::as_bool) == Some(true);
        self.buffer.push_str(chunk);
        if flush || (trigger && self.buffer.chars().count() >= self.first_schedule) {
            let text = std::mem::take(&mut self.buffer);
            return self.speak(&text).await;
        }
        Step::Continue
    }

    fn check_first(&mut self, value: &Value, text: &str) {
        if text != " " {
            self.violation(format!("the first message's text is {text:?}, not a space"));
        }
        match value.get("voice_settings") {
            Some(settings) => {
                if let Some(expected) = &self.config.expected_voice_settings {
                    if settings != expected {
                        self.violation(format!("voice_settings {settings}, expected {expected}"));
                    }
                }
                for (name, lo, hi) in [
                    ("stability", 0.0, 1.0),
                    ("similarity_boost", 0.0, 1.0),
                    ("style", 0.0, 1.0),
                    ("speed", 0.7, 1.2),
                ] {
                    if let Some(v) = settings.get(name) {
                        if !v.as_f64().is_some_and(|x| (lo..=hi).contains(&x)) {
                            self.violation(format!("voice_settings.{name} = {v}"));
                        }
                    }
                }
                if let Some(v) = settings.get("use_speaker_boost") {
                    if !v.is_boolean() {
                        self.violation(format!("voice_settings.use_speaker_boost = {v}"));
                    }
                }
            }
            None => {
                if self.config.expected_voice_settings.is_some() {
                    self.violation("no voice_settings in the first message".into());
                }
            }
        }
        if let Some(schedule) = value
            .get("generation_config")
            .and_then(|g| g.get("chunk_length_schedule"))
        {
            match schedule.as_array() {
                Some(items)
                    if !items.is_empty()
                        && items
                            .iter()
                            .all(|i| i.as_u64().is_some_and(|n| (50..=500).contains(&n))) =>
                {
                    self.first_schedule = items[0].as_u64().unwrap_or(120) as usize;
                }
                _ => self.violation(format!("chunk_length_schedule {schedule}")),
            }
        }
    }

    /// Synthesises `text` and sends it in pieces; `Stop` when a fault ended the connection.
    async fn speak(&mut self, text: &str) -> Step {
        if text.is_empty() {
            return Step::Continue;
        }
        let rate = self.format.rate().hz() as u64;
        let per_char = rate * self.config.ms_per_char as u64 / 1000;
        let bps = self.format.bytes_per_sample() as u64;
        let first_sample = self.generated_samples;
        let mut chars = Vec::new();
        let mut bytes = Vec::new();
        for ch in text.chars() {
            let start = self.generated_samples;
            chars.push(SpokenChar {
                ch,
                start_ms: start * 1000 / rate,
                duration_ms: self.config.ms_per_char as u64,
            });
            for i in 0..per_char {
                let sample = fake_sample(start + i);
                match self.format {
                    OutputFormat::Ulaw8000 => bytes.push(g711::linear_to_ulaw(sample)),
                    OutputFormat::Alaw8000 => bytes.push(g711::linear_to_alaw(sample)),
                    _ => bytes.extend_from_slice(&sample.to_le_bytes()),
                }
            }
            self.generated_samples += per_char;
        }
        self.record(|c| c.chars.extend(chars.iter().cloned()));
        let mut offset = 0usize;
        while offset < bytes.len() {
            let size = self.config.piece_bytes
                [self.piece_index % self.config.piece_bytes.len().max(1)]
            .max(1);
            self.piece_index += 1;
            let end = (offset + size).min(bytes.len());
            let piece = &bytes[offset..end];
            // The piece's time span on the utterance timeline, in ms (fractional).
            let piece_start =
                (first_sample as f64 + offset as f64 / bps as f64) * 1000.0 / rate as f64;
            let piece_end = (first_sample as f64 + end as f64 / bps as f64) * 1000.0 / rate as f64;
            let in_piece: Vec<&SpokenChar> = chars
                .iter()
                .filter(|c| (c.start_ms as f64) >= piece_start && (c.start_ms as f64) < piece_end)
                .collect();
            let message = self.audio_message(piece, &in_piece, piece_start);
            if let Step::Stop = self.fault_before_piece().await {
                return Step::Stop;
            }
            let _ = self.socket.send(Message::text(message.to_string())).await;
            self.record(|c| {
                c.audio.extend_from_slice(piece);
                c.pieces += 1;
            });
            offset = end;
            if !self.config.piece_delay.is_zero() {
                // Keep listening while pacing: a client close must be seen at once.
                if let Ok(next) =
                    tokio::time::timeout(self.config.piece_delay, self.socket.next()).await
                {
                    match next {
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map(|f| u16::from(f.code));
                            self.record(|c| c.client_end = Some(ClientEnd::CloseFrame(code)));
                            return Step::Stop;
                        }
                        Some(Ok(other)) => self.held.push(other),
                        Some(Err(_)) | None => {
                            self.record(|c| c.client_end = Some(ClientEnd::Dropped));
                            return Step::Stop;
                        }
                    }
                }
            }
        }
        Step::Continue
    }

    async fn fault_before_piece(&mut self) -> Step {
        let sent = self.piece_index - 1;
        match self.config.fault.clone() {
            ElevenLabsFault::ErrorAfter {
                pieces,
                error,
                message,
            } if sent == pieces => {
                let _ = self
                    .socket
                    .send(Message::text(
                        json!({"message": message, "error": error, "code": 1008}).to_string(),
                    ))
                    .await;
                self.close(1008, &message).await;
                Step::Stop
            }
            ElevenLabsFault::TruncateAfter { pieces } if sent == pieces => {
                self.close(1000, "").await;
                Step::Stop
            }
            ElevenLabsFault::MalformedAfter { pieces } if sent == pieces => {
                let _ = self.socket.send(Message::text("{\"audio\":\"AAAA")).await;
                // Then nothing more: the client must give up on its own.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(m)) = self.socket.next().await {
                        if let Message::Close(frame) = m {
                            let code = frame.map(|f| u16::from(f.code));
                            self.record(|c| c.client_end = Some(ClientEnd::CloseFrame(code)));
                            break;
                        }
                    }
                })
                .await;
                Step::Stop
            }
            _ => Step::Continue,
        }
    }

    fn audio_message(&self, piece: &[u8], chars: &[&SpokenChar], piece_start: f64) -> Value {
        let alignment = |lower: bool| {
            if chars.is_empty() {
                return Value::Null;
            }
            let text: Vec<String> = chars
                .iter()
                .map(|c| {
                    if lower {
                        c.ch.to_lowercase().to_string()
                    } else {
                        c.ch.to_string()
                    }
                })
                .collect();
            let starts: Vec<u64> = chars
                .iter()
                .map(|c| (c.start_ms as f64 - piece_start).round().max(0.0) as u64)
                .collect();
            let durations: Vec<u64> = chars.iter().map(|c| c.duration_ms).collect();
            let duration_key = if self.config.spec_spelling {
                "charsDurationsMs"
            } else {
                "charDurationsMs"
            };
            let mut a = json!({"chars": text, "charStartTimesMs": starts});
            a[duration_key] = json!(durations);
            a
        };
        let mut message = json!({
            "audio": base64::engine::general_purpose::STANDARD.encode(piece),
            "isFinal": null,
            "normalizedAlignment": alignment(true),
        });
        if self.config.raw_alignment {
            message["alignment"] = alignment(false);
        }
        message
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = self.socket.close(Some(frame)).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(message)) = self.socket.next().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
        })
        .await;
    }
}
