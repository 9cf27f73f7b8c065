//! A strict fake of the Realtime family on 127.0.0.1, speaking either the xAI Grok Voice
//! Agent dialect or OpenAI Realtime GA, on top of [`super::ws::FakeWsServer`].
//!
//! It checks the upgrade (path `/v1/realtime`, the `model` query parameter, `Authorization:
//! Bearer <key>`), requires a `session.update` of the vendor's shape before anything else
//! (and rejects the other vendor's shape where it would silently lose settings), decodes
//! the caller audio in the declared format, and plays scripted turns: once enough caller
//! audio has arrived, VAD events, the user transcription (xAI partials through
//! `…completed` with `status:"in_progress"` or through `…updated`; OpenAI deltas), then a
//! response with interleaved audio and transcript deltas and optionally a function call
//! (`…arguments.done` and/or only in `response.done.output`). The order within the
//! protocol's rules (interleaving, pings, optional events, where usage sits, chunk sizes
//! including odd PCM byte counts) is randomised from a seed.
//!
//! It holds the client to the protocol: a `function_call_output` for every call and then
//! exactly one `response.create`, no `response.create` after a `force_message`, a
//! `response.cancel` and a `conversation.item.truncate` within the audio sent on barge-in.
//! Everything it saw and every violation is in [`FakeRealtimeLog`]. Faults: handshake
//! rejection, an error then a close, an idle close, going silent, a truncated stream (the
//! TCP connection drops mid-response) and malformed JSON.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use voxline_codecs::g711;

use super::http::RecordedRequest;
use super::ws::{FakeWsServer, ServerSocket, WsReply};
use crate::net::endpoint::to_http_scheme;
use crate::realtime::{base64_decode, base64_encode, openai, xai, Vendor};

/// The usage a fake response reports when it reports one.
pub const FAKE_USAGE: (u64, u64) = (120, 40);

/// A function call a reply makes.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeToolCall {
    /// Function name.
    pub name: String,
    /// Arguments JSON text.
    pub arguments: String,
}

/// One agent response: spoken text (the transcript) and how much audio speaks it.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeReply {
    /// The transcript, sent in word-sized deltas.
    pub text: String,
    /// Audio length; zero sends no audio.
    pub audio: Duration,
    /// Function calls after the spoken part (several are parallel calls).
    pub tool_calls: Vec<FakeToolCall>,
}

impl FakeReply {
    /// A reply saying `text` over `audio_ms` of audio.
    pub fn say(text: impl Into<String>, audio_ms: u64) -> Self {
        FakeReply {
            text: text.into(),
            audio: Duration::from_millis(audio_ms),
            tool_calls: Vec::new(),
        }
    }

    /// Adds a function call.
    pub fn with_tool_call(mut self, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        self.tool_calls.push(FakeToolCall {
            name: name.into(),
            arguments: arguments.into(),
        });
        self
    }
}

/// One caller turn and the agent's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeTurn {
    /// Caller audio the fake must receive (while no response runs) before the turn starts.
    pub trigger: Duration,
    /// What the caller said, as the server transcribes it.
    pub user_text: String,
    /// The agent's answer.
    pub reply: FakeReply,
    /// After this many audio deltas of the reply the caller speaks again (barge-in): the
    /// fake sends `speech_started` and expects `response.cancel` and a truncate. OpenAI
    /// cancels the response itself (`interrupt_response`); xAI holds the rest of the reply
    /// until the client cancels.
    pub barge_in_after: Option<usize>,
    /// The answer after the function outputs and the client's `response.create`.
    pub after_tool: Option<FakeReply>,
}

impl FakeTurn {
    /// A turn started by `trigger_ms` of caller audio.
    pub fn new(trigger_ms: u64, user_text: impl Into<String>, reply: FakeReply) -> Self {
        FakeTurn {
            trigger: Duration::from_millis(trigger_ms),
            user_text: user_text.into(),
            reply,
            barge_in_after: None,
            after_tool: None,
        }
    }

    /// The caller barges in after `deltas` audio deltas of the reply.
    pub fn barge_in_after(mut self, deltas: usize) -> Self {
        self.barge_in_after = Some(deltas);
        self
    }

    /// The answer once the tool result is in.
    pub fn after_tool(mut self, reply: FakeReply) -> Self {
        self.after_tool = Some(reply);
        self
    }
}

/// A fault the fake plays.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeFault {
    /// Refuse the upgrade with this status (401, 403, 429 …) and optional `Retry-After`.
    Reject {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds.
        retry_after: Option<u32>,
    },
    /// After this many finished turns: an `error` event (`server_error`), then close 1011.
    ErrorThenClose {
        /// Finished turns before the fault.
        after_turns: usize,
    },
    /// After this many finished turns: close 1001 "idle timeout", no error event.
    IdleClose {
        /// Finished turns before the fault.
        after_turns: usize,
    },
    /// After this many finished turns: stop reading and writing, keep the socket open.
    GoSilent {
        /// Finished turns before the fault.
        after_turns: usize,
    },
    /// In turn `turn` (0-based), after this many audio deltas: drop the TCP connection
    /// without a close frame and without `response.done`.
    Truncate {
        /// The turn.
        turn: usize,
        /// Audio deltas sent before the drop.
        after_audio_deltas: usize,
    },
    /// In turn `turn`, after this many audio deltas: a text frame that is not JSON.
    MalformedJson {
        /// The turn.
        turn: usize,
        /// Audio deltas sent before it.
        after_audio_deltas: usize,
    },
}

/// What one fake server plays, for every connection.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeRealtimeScript {
    /// The dialect.
    pub vendor: Vendor,
    /// The key the `Authorization` header must carry.
    pub api_key: String,
    /// The model the `model` query parameter must name.
    pub model: String,
    /// Seed of every random choice.
    pub seed: u64,
    /// The turns, in order.
    pub turns: Vec<FakeTurn>,
    /// The answer to a `response.create` nothing else explains (e.g. after injected text).
    pub default_reply: FakeReply,
    /// The fault to play, if any.
    pub fault: Option<FakeFault>,
    /// Agent deltas use the beta names `response.audio.delta` and
    /// `response.audio_transcript.delta`.
    pub beta_names: bool,
    /// Agent text goes out as both `response.text.delta` and `response.output_text.delta`
    /// with the same payload (newer xAI servers) instead of the audio transcript.
    pub duplicate_text_deltas: bool,
    /// Pause before each scripted server event.
    pub pace: Duration,
}

impl FakeRealtimeScript {
    /// A script for `vendor` with no turns, no fault and seed 1.
    pub fn new(vendor: Vendor, api_key: impl Into<String>, model: impl Into<String>) -> Self {
        FakeRealtimeScript {
            vendor,
            api_key: api_key.into(),
            model: model.into(),
            seed: 1,
            turns: Vec::new(),
            default_reply: FakeReply::say("Noted.", 200),
            fault: None,
            beta_names: false,
            duplicate_text_deltas: false,
            pace: Duration::from_millis(1),
        }
    }

    /// Adds a turn.
    pub fn turn(mut self, turn: FakeTurn) -> Self {
        self.turns.push(turn);
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: FakeFault) -> Self {
        self.fault = Some(fault);
        self
    }
}

/// The audio the fake sent for one agent item.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeItemAudio {
    /// The agent item.
    pub item_id: String,
    /// Every sample of the item as a client decodes it (G.711 already round-tripped).
    pub samples: Vec<i16>,
    /// Wire bytes actually sent so far.
    pub bytes_sent: usize,
    /// Wire bytes per sample (2 for PCM, 1 for G.711).
    pub bytes_per_sample: usize,
}

impl FakeItemAudio {
    /// The samples a client can have decoded from the bytes sent.
    pub fn delivered(&self) -> &[i16] {
        let n = (self.bytes_sent / self.bytes_per_sample.max(1)).min(self.samples.len());
        &self.samples[..n]
    }

    /// Milliseconds of audio sent, at `rate`.
    pub fn sent_ms(&self, rate: u32) -> u64 {
        (self.bytes_sent / self.bytes_per_sample.max(1)) as u64 * 1000 / u64::from(rate.max(1))
    }
}

/// One barge-in the fake played and what the client did about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeBargeIn {
    /// The agent item that was playing.
    pub item_id: String,
    /// Audio of the item sent when the caller spoke, in ms.
    pub sent_ms: u64,
    /// A `response.cancel` arrived.
    pub cancelled: bool,
    /// The `audio_end_ms` of the truncate for the item, if one arrived.
    pub truncated_at_ms: Option<u64>,
}

/// Everything the fake saw and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeRealtimeLog {
    /// Accepted WebSocket connections.
    pub connections: usize,
    /// Every client event in order; appends are summarised as `{"type", "bytes"}`.
    pub client_events: Vec<Value>,
    /// The last accepted `session.update` event.
    pub session_update: Option<Value>,
    /// Caller audio decoded from the appends.
    pub audio_in: Vec<i16>,
    /// Wire bytes of caller audio.
    pub audio_in_bytes: usize,
    /// `input_audio_buffer.append` events.
    pub appends: usize,
    /// Rate of the caller audio format.
    pub input_rate: Option<u32>,
    /// Rate of the agent audio format.
    pub output_rate: Option<u32>,
    /// Agent audio per item.
    pub sent_audio: Vec<FakeItemAudio>,
    /// `response.create` events received.
    pub response_creates: usize,
    /// `response.cancel` events received.
    pub cancels: usize,
    /// `(call_id, output)` of each `function_call_output`.
    pub tool_outputs: Vec<(String, String)>,
    /// `(item_id, audio_end_ms)` of each truncate.
    pub truncations: Vec<(String, u64)>,
    /// Texts of `force_message` items (xAI).
    pub force_messages: Vec<String>,
    /// Texts spoken for a `response.create` with verbatim instructions (OpenAI `Say`).
    pub says: Vec<String>,
    /// `(role, text)` of message items.
    pub messages: Vec<(String, String)>,
    /// Barge-ins played.
    pub barge_ins: Vec<FakeBargeIn>,
    /// Benign errors sent (nothing to cancel, a response already running).
    pub benign_errors: usize,
    /// Protocol violations by the client; empty when it behaved.
    pub violations: Vec<String>,
}

/// A running fake realtime server; stops when dropped.
#[derive(Debug)]
pub struct FakeRealtimeServer {
    ws: FakeWsServer,
    log: Arc<Mutex<FakeRealtimeLog>>,
}

impl FakeRealtimeServer {
    /// Starts serving `script` on 127.0.0.1.
    pub async fn start(script: FakeRealtimeScript) -> io::Result<Self> {
        let log = Arc::new(Mutex::new(FakeRealtimeLog::default()));
        let shared = log.clone();
        let ws = FakeWsServer::start(move |request| handshake(&script, &shared, request)).await?;
        Ok(FakeRealtimeServer { ws, log })
    }

    /// The base URL to configure: `http://127.0.0.1:<port>/v1` (the adapter derives the
    /// `ws://…/v1/realtime` URL from it, as it does from `https://api.x.ai/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", to_http_scheme(&self.ws.url()))
    }

    /// A copy of the log.
    pub fn log(&self) -> FakeRealtimeLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every upgrade request received.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ws.requests()
    }
}

fn with_log(log: &Mutex<FakeRealtimeLog>, f: impl FnOnce(&mut FakeRealtimeLog)) {
    if let Ok(mut l) = log.lock() {
        f(&mut l);
    }
}

fn handshake(
    script: &FakeRealtimeScript,
    log: &Arc<Mutex<FakeRealtimeLog>>,
    request: &RecordedRequest,
) -> WsReply {
    if let Some(FakeFault::Reject {
        status,
        retry_after,
    }) = &script.fault
    {
        let mut headers = Vec::new();
        if let Some(secs) = retry_after {
            headers.push(("retry-after".to_string(), secs.to_string()));
        }
        return WsReply::Reject {
            status: *status,
            headers,
            body: json!({"error": {"type": "invalid_request_error",
                                   "message": "rejected by the fake's script"}})
            .to_string(),
        };
    }
    if request.path != "/v1/realtime" {
        with_log(log, |l| {
            l.violations
                .push(format!("upgrade to {:?}, not /v1/realtime", request.path))
        });
        return WsReply::reject(404, "not found");
    }
    let model = request.query.as_deref().and_then(|q| {
        reqwest::Url::parse(&format!("http://fake/?{q}"))
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == "model")
            .map(|(_, v)| v.into_owned())
    });
    if model.as_deref() != Some(script.model.as_str()) {
        with_log(log, |l| {
            l.violations.push(format!(
                "model query {model:?}, expected {:?}",
                script.model
            ))
        });
        return WsReply::reject(400, "unknown model");
    }
    let expected = format!("Bearer {}", script.api_key);
    if request.header("authorization") != Some(expected.as_str()) {
        return WsReply::reject(
            401,
            json!({"error": {"type": "invalid_request_error", "code": "invalid_api_key",
                             "message": "Incorrect API key provided."}})
            .to_string(),
        );
    }
    let script = script.clone();
    let log = log.clone();
    WsReply::accept(move |socket| async move {
        with_log(&log, |l| l.connections += 1);
        Connection::new(script, log, socket).run().await;
    })
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// SplitMix64: small, seedable, good enough to shuffle event orders.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Merges two sequences in a random order that keeps each one's own order.
    fn interleave<T>(&mut self, a: Vec<T>, b: Vec<T>) -> Vec<T> {
        let (mut left, mut right) = (a.len(), b.len());
        let mut a = a.into_iter();
        let mut b = b.into_iter();
        let mut out = Vec::with_capacity(left + right);
        while left + right > 0 {
            let take_a = self.below(left + right) < left;
            let next = if take_a {
                left -= 1;
                a.next()
            } else {
                right -= 1;
                b.next()
            };
            out.extend(next);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Formats

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fmt {
    Pcm(u32),
    Pcmu,
    Pcma,
}

impl Fmt {
    fn parse(v: Option<&Value>, vendor: Vendor) -> Result<Fmt, String> {
        let v = v.ok_or("audio format missing")?;
        match v.get("type").and_then(Value::as_str) {
            Some("audio/pcm") => {
                let rate = match v.get("rate") {
                    None => 24000,
                    Some(r) => r.as_u64().ok_or("audio/pcm rate is not a number")? as u32,
                };
                let allowed: &[u32] = match vendor {
                    Vendor::Xai => &[8000, 16000, 22050, 24000, 32000, 44100, 48000],
                    Vendor::OpenAi => &[24000],
                };
                if allowed.contains(&rate) {
                    Ok(Fmt::Pcm(rate))
                } else {
                    Err(format!("audio/pcm rate {rate} is not supported"))
                }
            }
            Some("audio/pcmu") => Ok(Fmt::Pcmu),
            Some("audio/pcma") => Ok(Fmt::Pcma),
            other => Err(format!("unknown audio format type {other:?}")),
        }
    }

    fn rate(self) -> u32 {
        match self {
            Fmt::Pcm(rate) => rate,
            Fmt::Pcmu | Fmt::Pcma => 8000,
        }
    }

    fn bytes_per_sample(self) -> usize {
        match self {
            Fmt::Pcm(_) => 2,
            Fmt::Pcmu | Fmt::Pcma => 1,
        }
    }

    fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Fmt::Pcm(_) => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Fmt::Pcmu => samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect(),
            Fmt::Pcma => samples.iter().map(|&s| g711::linear_to_alaw(s)).collect(),
        }
    }

    fn decode(self, bytes: &[u8]) -> Vec<i16> {
        match self {
            Fmt::Pcm(_) => bytes
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]))
                .collect(),
            Fmt::Pcmu => bytes.iter().map(|&b| g711::ulaw_to_linear(b)).collect(),
            Fmt::Pcma => bytes.iter().map(|&b| g711::alaw_to_linear(b)).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Session shapes

fn number_in(v: Option<&Value>, lo: f64, hi: f64, what: &str) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(n) => match n.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(()),
            _ => Err(format!("{what} {n} is outside {lo}..={hi}")),
        },
    }
}

fn check_function_tool(tool: &Value, reserved: &[&str]) -> Result<(), String> {
    if tool.get("function").is_some() {
        return Err("nested Chat-Completions tool; realtime tools are flat".into());
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("function tool without a name")?;
    if reserved.contains(&name) {
        return Err(format!("function {name:?} collides with a built-in tool"));
    }
    if !tool.get("parameters").is_some_and(Value::is_object) {
        return Err(format!("function {name:?} has no parameters object"));
    }
    Ok(())
}

/// Checks an xAI session; returns the input and output formats.
fn check_xai_session(s: &Value) -> Result<(Fmt, Fmt), String> {
    let audio = s.get("audio");
    let input = audio.and_then(|a| a.get("input"));
    let output = audio.and_then(|a| a.get("output"));
    if output.and_then(|o| o.get("voice")).is_some() {
        return Err("voice under audio.output is the OpenAI shape; xAI reads session.voice".into());
    }
    if input.and_then(|i| i.get("turn_detection")).is_some() {
        return Err(
            "turn_detection under audio.input is the OpenAI shape; xAI reads session.turn_detection"
                .into(),
        );
    }
    if s.get("voice")
        .is_some_and(|v| v.as_str().is_none_or(str::is_empty))
    {
        return Err("session.voice is not a voice name".into());
    }
    let td = s
        .get("turn_detection")
        .filter(|t| t.is_object())
        .ok_or("session.turn_detection missing (server VAD must be set explicitly)")?;
    if td.get("type").and_then(Value::as_str) != Some("server_vad") {
        return Err(format!(
            "turn_detection.type {:?} is not server_vad",
            td.get("type")
        ));
    }
    for key in ["create_response", "interrupt_response"] {
        if td.get(key).is_some() {
            return Err(format!("turn_detection.{key} is an OpenAI field"));
        }
    }
    number_in(td.get("threshold"), 0.1, 0.9, "threshold")?;
    number_in(
        td.get("silence_duration_ms"),
        0.0,
        10000.0,
        "silence_duration_ms",
    )?;
    number_in(
        td.get("prefix_padding_ms"),
        0.0,
        10000.0,
        "prefix_padding_ms",
    )?;
    number_in(
        output.and_then(|o| o.get("speed")),
        0.7,
        1.5,
        "audio.output.speed",
    )?;
    let fin = Fmt::parse(input.and_then(|i| i.get("format")), Vendor::Xai)?;
    let fout = Fmt::parse(output.and_then(|o| o.get("format")), Vendor::Xai)?;
    for tool in s
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => check_function_tool(tool, xai::RESERVED_TOOL_NAMES)?,
            Some("web_search") | Some("x_search") | Some("mcp") => {}
            Some("file_search") => {
                if !tool.get("vector_store_ids").is_some_and(Value::is_array) {
                    return Err("file_search without vector_store_ids".into());
                }
            }
            other => return Err(format!("unknown tool type {other:?}")),
        }
    }
    Ok((fin, fout))
}

/// Checks an OpenAI GA session; returns the input and output formats.
fn check_openai_session(s: &Value) -> Result<(Fmt, Fmt), String> {
    if s.get("type").and_then(Value::as_str) != Some("realtime") {
        return Err("Missing required parameter: 'session.type'.".into());
    }
    for key in [
        "voice",
        "turn_detection",
        "input_audio_format",
        "output_audio_format",
        "input_audio_transcription",
        "modalities",
        "temperature",
    ] {
        if s.get(key).is_some() {
            return Err(format!("Unknown parameter: 'session.{key}'."));
        }
    }
    if let Some(m) = s.get("output_modalities") {
        if m != &json!(["audio"]) && m != &json!(["text"]) {
            return Err(format!(
                "output_modalities {m} is not [\"audio\"] or [\"text\"]"
            ));
        }
    }
    let audio = s.get("audio");
    let input = audio.and_then(|a| a.get("input"));
    let output = audio.and_then(|a| a.get("output"));
    let fin = Fmt::parse(input.and_then(|i| i.get("format")), Vendor::OpenAi)?;
    let fout = Fmt::parse(output.and_then(|o| o.get("format")), Vendor::OpenAi)?;
    let td = input
        .and_then(|i| i.get("turn_detection"))
        .filter(|t| t.is_object())
        .ok_or("audio.input.turn_detection missing (server VAD must be set explicitly)")?;
    match td.get("type").and_then(Value::as_str) {
        Some("server_vad") | Some("semantic_vad") => {}
        other => return Err(format!("turn_detection.type {other:?}")),
    }
    number_in(td.get("threshold"), 0.0, 1.0, "threshold")?;
    for key in ["create_response", "interrupt_response"] {
        if td.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("turn_detection.{key} is not a boolean"));
        }
    }
    if let Some(t) = input.and_then(|i| i.get("transcription")) {
        if !t.get("model").is_some_and(Value::is_string) {
            return Err("audio.input.transcription without a model".into());
        }
    }
    if let Some(v) = output.and_then(|o| o.get("voice")) {
        if !v.is_string() && !v.is_object() {
            return Err("audio.output.voice is not a string".into());
        }
    }
    number_in(
        output.and_then(|o| o.get("speed")),
        0.25,
        1.5,
        "audio.output.speed",
    )?;
    for tool in s
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => check_function_tool(tool, &[])?,
            Some("mcp") => {}
            other => return Err(format!("tool type {other:?} is not supported")),
        }
    }
    Ok((fin, fout))
}

// ---------------------------------------------------------------------------------------------
// The connection

/// One outgoing step.
enum Out {
    /// A server event; `response` tags events of a response (removed on cancel); `audio`
    /// marks an audio delta of `(item, bytes)`.
    Event {
        event: Value,
        response: Option<String>,
        audio: Option<(String, usize)>,
    },
    /// A text frame that is not JSON.
    Raw(String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Send a close frame.
    Close(u16, &'static str),
    /// Stop reading and writing.
    Silent,
}

impl Out {
    fn event(event: Value) -> Out {
        Out::Event {
            event,
            response: None,
            audio: None,
        }
    }

    fn of(response: &str, event: Value) -> Out {
        Out::Event {
            event,
            response: Some(response.to_string()),
            audio: None,
        }
    }

    fn response(&self) -> Option<&str> {
        match self {
            Out::Event { response, .. } => response.as_deref(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// The reply of turn `n`.
    Turn(usize),
    /// The reply after a turn's function outputs.
    AfterTool,
    /// A verbatim line (`force_message`, or the OpenAI `Say` equivalent).
    Verbatim,
    /// Any other requested response.
    Requested,
}

struct Active {
    id: String,
    item_id: String,
    kind: Kind,
    call_ids: Vec<String>,
    audio_deltas: usize,
    barge_in_after: Option<usize>,
    cancelled: bool,
}

type Sink = SplitSink<ServerSocket, Message>;
type Source = SplitStream<ServerSocket>;

struct Connection {
    script: FakeRealtimeScript,
    log: Arc<Mutex<FakeRealtimeLog>>,
    sink: Sink,
    source: Option<Source>,
    rng: Rng,
    ids: u64,
    input: Option<Fmt>,
    output: Option<Fmt>,
    next_turn: usize,
    turns_done: usize,
    heard_samples: u64,
    outbox: VecDeque<Out>,
    active: Option<Active>,
    held_response: Option<String>,
    caller_speaking: bool,
    /// Every call id sent so far.
    issued_calls: Vec<String>,
    /// Calls of the last finished tool response whose outputs must precede `response.create`.
    expected_outputs: Vec<String>,
    /// Outputs received since the last tool follow-up started.
    received_outputs: Vec<String>,
    after_tool: Option<FakeReply>,
    fault_fired: bool,
}

enum Step {
    Go,
    Stop,
}

impl Connection {
    fn new(
        script: FakeRealtimeScript,
        log: Arc<Mutex<FakeRealtimeLog>>,
        socket: ServerSocket,
    ) -> Self {
        let (sink, source) = socket.split();
        let rng = Rng(script.seed);
        Connection {
            script,
            log,
            sink,
            source: Some(source),
            rng,
            ids: 0,
            input: None,
            output: None,
            next_turn: 0,
            turns_done: 0,
            heard_samples: 0,
            outbox: VecDeque::new(),
            active: None,
            held_response: None,
            caller_speaking: false,
            issued_calls: Vec::new(),
            expected_outputs: Vec::new(),
            received_outputs: Vec::new(),
            after_tool: None,
            fault_fired: false,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.ids += 1;
        format!("{prefix}_{:03}", self.ids)
    }

    fn violation(&self, text: impl Into<String>) {
        let text = text.into();
        with_log(&self.log, |l| l.violations.push(text));
    }

    fn xai(&self) -> bool {
        self.script.vendor == Vendor::Xai
    }

    async fn run(mut self) {
        let Some(mut source) = self.source.take() else {
            return;
        };
        // Hello: xAI announces the conversation first, newer servers then the session.
        if self.xai() {
            let id = self.id("conv");
            self.outbox
                .push_back(Out::event(json!({"type": "conversation.created",
                "conversation": {"id": id, "object": "realtime.conversation"}})));
            if self.rng.chance(50) {
                let id = self.id("sess");
                self.outbox.push_back(Out::event(json!({"type": "session.created",
                    "session": {"id": id, "object": "realtime.session", "model": self.script.model,
                                "voice": "xai_eve", "turn_detection": {"type": null}, "tools": []}})));
            }
            if self.rng.chance(50) {
                let ping = self.ping();
                self.outbox.push_back(ping);
            }
        } else {
            let id = self.id("sess");
            self.outbox
                .push_back(Out::event(json!({"type": "session.created",
                "session": {"type": "realtime", "object": "realtime.session", "id": id,
                            "model": self.script.model, "output_modalities": ["audio"],
                            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                                "turn_detection": {"type": "server_vad"}},
                                      "output": {"format": {"type": "audio/pcm", "rate": 24000},
                                                 "voice": "alloy", "speed": 1.0}}}})));
        }
        let mut closing = false;
        loop {
            let ready = self.outbox.front().is_some_and(|o| {
                o.response().is_none() || o.response() != self.held_response.as_deref()
            });
            tokio::select! {
                biased;
                message = source.next() => match message {
                    Some(Ok(Message::Text(text))) if !closing => self.on_client(text.as_str()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep(self.script.pace), if ready && !closing => {
                    let Some(out) = self.outbox.pop_front() else { continue };
                    match self.emit(out).await {
                        Ok(Step::Go) => {}
                        Ok(Step::Stop) => closing = true,
                        Err(()) => return,
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(2)), if closing => return,
            }
        }
    }

    fn ping(&mut self) -> Out {
        Out::event(json!({"type": "ping", "timestamp": 1_700_000_000_000u64 + self.ids}))
    }

    async fn send(&mut self, event: Value) -> Result<(), ()> {
        self.sink
            .send(Message::text(event.to_string()))
            .await
            .map_err(|_| ())
    }

    async fn emit(&mut self, out: Out) -> Result<Step, ()> {
        match out {
            Out::Event {
                mut event, audio, ..
            } => {
                let event_id = self.id("event");
                event["event_id"] = json!(event_id);
                let kind = event
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.send(event.clone()).await?;
                if let Some((item, bytes)) = audio {
                    with_log(&self.log, |l| {
                        if let Some(a) = l.sent_audio.iter_mut().find(|a| a.item_id == item) {
                            a.bytes_sent += bytes;
                        }
                    });
                    self.after_audio_delta();
                }
                if kind == "response.done" {
                    let status = event
                        .pointer("/response/status")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    self.response_finished(&status);
                }
                Ok(Step::Go)
            }
            Out::Raw(text) => {
                self.sink.send(Message::text(text)).await.map_err(|_| ())?;
                Ok(Step::Go)
            }
            Out::Drop => Err(()),
            Out::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                self.sink
                    .send(Message::Close(Some(frame)))
                    .await
                    .map_err(|_| ())?;
                Ok(Step::Stop)
            }
            Out::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(())
            }
        }
    }

    fn after_audio_delta(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.audio_deltas += 1;
        if active.barge_in_after != Some(active.audio_deltas) || active.cancelled {
            return;
        }
        let (response, item) = (active.id.clone(), active.item_id.clone());
        let sent_ms = self.sent_ms(&item);
        with_log(&self.log, |l| {
            l.barge_ins.push(FakeBargeIn {
                item_id: item.clone(),
                sent_ms,
                ..FakeBargeIn::default()
            })
        });
        self.caller_speaking = true;
        self.heard_samples = 0;
        let user_item = self.id("item");
        let mut started =
            json!({"type": "input_audio_buffer.speech_started", "item_id": user_item});
        if !self.xai() {
            started["audio_start_ms"] = json!(1000);
        }
        if self.xai() {
            // The rest of the reply waits for the client's response.cancel.
            self.held_response = Some(response);
            self.outbox.push_front(Out::event(started));
        } else {
            // interrupt_response: the server cancels on its own.
            self.cancel_active();
            self.outbox.push_front(Out::event(started));
        }
    }

    fn sent_ms(&self, item: &str) -> u64 {
        let rate = self.output.map_or(24000, Fmt::rate);
        self.log
            .lock()
            .ok()
            .and_then(|l| {
                l.sent_audio
                    .iter()
                    .find(|a| a.item_id == item)
                    .map(|a| a.sent_ms(rate))
            })
            .unwrap_or(0)
    }

    /// Drops what is left of the active response and queues its cancelled `response.done`.
    fn cancel_active(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.cancelled = true;
        let id = active.id.clone();
        let item = active.item_id.clone();
        self.outbox.retain(|o| o.response() != Some(id.as_str()));
        self.held_response = None;
        self.outbox.push_front(Out::event(json!({"type": "response.done", "response": {
            "id": id, "object": "realtime.response", "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": "client_cancelled"},
            "output": [{"id": item, "type": "message", "role": "assistant", "status": "incomplete"}],
            "usage": {}}})));
    }

    fn response_finished(&mut self, status: &str) {
        let Some(active) = self.active.take() else {
            return;
        };
        if self.held_response.as_deref() == Some(active.id.as_str()) {
            self.held_response = None;
        }
        match active.kind {
            Kind::Turn(n) => {
                let turn = self.script.turns.get(n).cloned();
                match (active.call_ids.is_empty(), status == "completed") {
                    (false, true) => {
                        self.expected_outputs = active.call_ids;
                        self.after_tool = Some(
                            turn.and_then(|t| t.after_tool)
                                .unwrap_or_else(|| self.script.default_reply.clone()),
                        );
                    }
                    _ => self.turns_done += 1,
                }
            }
            Kind::AfterTool => self.turns_done += 1,
            Kind::Verbatim | Kind::Requested => {}
        }
        self.check_between_turn_faults();
    }

    fn check_between_turn_faults(&mut self) {
        if self.fault_fired || self.active.is_some() || !self.expected_outputs.is_empty() {
            return;
        }
        let out = match self.script.fault {
            Some(FakeFault::ErrorThenClose { after_turns }) if after_turns == self.turns_done => {
                vec![
                    Out::event(json!({"type": "error", "error": {"type": "server_error",
                        "code": "server_error",
                        "message": "The server had an error while processing your request."}})),
                    Out::Close(1011, "internal error"),
                ]
            }
            Some(FakeFault::IdleClose { after_turns }) if after_turns == self.turns_done => {
                vec![Out::Close(1001, "idle timeout")]
            }
            Some(FakeFault::GoSilent { after_turns }) if after_turns == self.turns_done => {
                vec![Out::Silent]
            }
            _ => return,
        };
        self.fault_fired = true;
        self.outbox.extend(out);
    }

    fn error(&mut self, kind: &str, code: Option<&str>, message: &str) {
        let mut error = json!({"type": kind, "message": message});
        if let Some(code) = code {
            error["code"] = json!(code);
        } else if !self.xai() {
            error["code"] = Value::Null;
        }
        self.outbox
            .push_front(Out::event(json!({"type": "error", "error": error})));
    }

    // -----------------------------------------------------------------------------------------
    // Client events

    fn on_client(&mut self, text: &str) {
        let event: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.violation(format!("client sent invalid JSON: {e}"));
                return;
            }
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let summary = if kind == "input_audio_buffer.append" {
            let n = event
                .get("audio")
                .and_then(Value::as_str)
                .and_then(|a| base64_decode(a).ok())
                .map_or(0, |b| b.len());
            json!({"type": kind, "bytes": n})
        } else {
            event.clone()
        };
        with_log(&self.log, |l| l.client_events.push(summary));
        if self.fault_fired {
            return;
        }
        if kind != "session.update" && self.input.is_none() {
            self.violation(format!("{kind} before an accepted session.update"));
            self.error(
                "invalid_request_error",
                Some("invalid_value"),
                "session not configured",
            );
            return;
        }
        match kind.as_str() {
            "session.update" => self.on_session_update(&event),
            "input_audio_buffer.append" => self.on_append(&event),
            "input_audio_buffer.commit" | "input_audio_buffer.clear" => {}
            "conversation.item.create" => self.on_item(&event),
            "response.create" => self.on_response_create(&event),
            "response.cancel" => self.on_cancel(),
            "conversation.item.truncate" => self.on_truncate(&event),
            other => {
                self.violation(format!("unknown client event {other:?}"));
                self.error(
                    "invalid_request_error",
                    Some("invalid_value"),
                    &format!("Invalid value: '{other}'."),
                );
            }
        }
    }

    fn on_session_update(&mut self, event: &Value) {
        let Some(session) = event.get("session").filter(|s| s.is_object()) else {
            self.violation("session.update without a session object");
            self.error(
                "invalid_request_error",
                Some("missing_required_parameter"),
                "session",
            );
            return;
        };
        let checked = match self.script.vendor {
            Vendor::Xai => check_xai_session(session),
            Vendor::OpenAi => check_openai_session(session),
        };
        match checked {
            Ok((input, output)) => {
                self.input = Some(input);
                self.output = Some(output);
                with_log(&self.log, |l| {
                    l.session_update = Some(event.clone());
                    l.input_rate = Some(input.rate());
                    l.output_rate = Some(output.rate());
                });
                let mut echo = session.clone();
                if self.xai() {
                    // A live server echoed odd values; clients must not compare strictly.
                    echo["tool_choice"] = json!("not implemented");
                }
                self.outbox.push_back(Out::event(
                    json!({"type": "session.updated", "session": echo}),
                ));
                self.check_between_turn_faults();
            }
            Err(problem) => {
                self.violation(format!("session.update rejected: {problem}"));
                self.error("invalid_request_error", Some("invalid_value"), &problem);
            }
        }
    }

    fn on_append(&mut self, event: &Value) {
        let Some(format) = self.input else {
            return;
        };
        let bytes = match event
            .get("audio")
            .and_then(Value::as_str)
            .map(base64_decode)
        {
            Some(Ok(bytes)) => bytes,
            _ => {
                self.violation("append without valid base64 audio");
                return;
            }
        };
        if bytes.len() % format.bytes_per_sample() != 0 {
            self.violation(format!(
                "append of {} bytes splits a PCM16 sample",
                bytes.len()
            ));
        }
        let samples = format.decode(&bytes);
        let n = samples.len() as u64;
        with_log(&self.log, |l| {
            l.appends += 1;
            l.audio_in_bytes += bytes.len();
            l.audio_in.extend(samples);
        });
        if self.active.is_none() && self.expected_outputs.is_empty() {
            self.heard_samples += n;
            self.maybe_start_turn();
        }
    }

    fn maybe_start_turn(&mut self) {
        let Some(turn) = self.script.turns.get(self.next_turn).cloned() else {
            return;
        };
        let Some(input) = self.input else {
            return;
        };
        let needed = turn.trigger.as_millis() as u64 * u64::from(input.rate()) / 1000;
        if self.heard_samples < needed || self.fault_fired {
            return;
        }
        let n = self.next_turn;
        self.next_turn += 1;
        self.heard_samples = 0;
        let user_item = self.id("item");
        let mut vad = Vec::new();
        if !self.caller_speaking {
            let mut e = json!({"type": "input_audio_buffer.speech_started", "item_id": user_item});
            if !self.xai() {
                e["audio_start_ms"] = json!(100);
            }
            vad.push(Out::event(e));
        }
        self.caller_speaking = false;
        let mut stopped =
            json!({"type": "input_audio_buffer.speech_stopped", "item_id": user_item});
        if !self.xai() {
            stopped["audio_end_ms"] = json!(turn.trigger.as_millis() as u64);
        }
        vad.push(Out::event(stopped));
        vad.push(Out::event(json!({"type": "input_audio_buffer.committed",
            "item_id": user_item, "previous_item_id": null})));
        vad.push(Out::event(
            json!({"type": "conversation.item.added", "previous_item_id": null,
            "item": {"id": user_item, "type": "message", "role": "user", "status": "completed",
                     "content": [{"type": "input_audio", "transcript": null}]}}),
        ));
        let transcript = self.user_transcript(&user_item, &turn.user_text);
        let mut reply = self.reply(&turn.reply, Kind::Turn(n), turn.barge_in_after);
        // The transcription lands somewhere during the response, before its response.done.
        let done = reply.pop();
        let mut body = self.rng.interleave(transcript, reply);
        body.extend(done);
        self.apply_mid_response_fault(n, &mut body);
        let body = self.with_pings(body);
        self.outbox.extend(vad);
        self.outbox.extend(body);
    }

    fn user_transcript(&mut self, item: &str, text: &str) -> Vec<Out> {
        let words = split_words(text);
        let mut out = Vec::new();
        if self.xai() {
            let updated = self.rng.chance(30);
            let mut so_far = String::new();
            for w in words.iter().take(words.len().saturating_sub(1)) {
                so_far.push_str(w);
                out.push(Out::event(if updated {
                    json!({"type": "conversation.item.input_audio_transcription.updated",
                           "item_id": item, "transcript": so_far})
                } else {
                    json!({"type": "conversation.item.input_audio_transcription.completed",
                           "item_id": item, "transcript": so_far, "status": "in_progress"})
                }));
            }
            let mut last = json!({"type": "conversation.item.input_audio_transcription.completed",
                                  "item_id": item, "transcript": text});
            if self.rng.chance(50) {
                last["status"] = json!("completed");
            }
            out.push(Out::event(last));
        } else {
            for w in &words {
                out.push(Out::event(
                    json!({"type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item, "content_index": 0, "delta": w}),
                ));
            }
            out.push(Out::event(
                json!({"type": "conversation.item.input_audio_transcription.completed",
                "item_id": item, "content_index": 0, "transcript": text}),
            ));
        }
        out
    }

    /// Builds one response and makes it the active one; the last event is `response.done`.
    fn reply(&mut self, reply: &FakeReply, kind: Kind, barge_in_after: Option<usize>) -> Vec<Out> {
        let response = self.id("resp");
        let item = self.id("item");
        let r = response.as_str();
        let mut out = vec![Out::of(
            r,
            json!({"type": "response.created", "response": {
            "id": response, "object": "realtime.response", "status": "in_progress",
            "output": [], "usage": {}}}),
        )];
        let mut output_items = Vec::new();
        let speaks = !reply.text.is_empty() || !reply.audio.is_zero();
        if speaks {
            out.push(Out::of(r, json!({"type": "response.output_item.added", "response_id": response,
                "output_index": 0, "item": {"id": item, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": "in_progress", "content": []}})));
            out.push(Out::of(
                r,
                json!({"type": "response.content_part.added", "response_id": response,
                "item_id": item, "output_index": 0, "content_index": 0,
                "part": {"type": "audio", "transcript": ""}}),
            ));
            let audio = self.audio_deltas(r, &item, reply.audio);
            let text = self.text_deltas(r, &item, &reply.text);
            out.extend(self.rng.interleave(audio, text));
            let (audio_done, transcript_done) = if self.script.beta_names {
                ("response.audio.done", "response.audio_transcript.done")
            } else {
                (
                    "response.output_audio.done",
                    "response.output_audio_transcript.done",
                )
            };
            let base = json!({"response_id": response, "item_id": item, "output_index": 0,
                              "content_index": 0});
            let mut a = base.clone();
            a["type"] = json!(audio_done);
            let mut t = base.clone();
            t["type"] = json!(transcript_done);
            t["transcript"] = json!(reply.text);
            out.push(Out::of(r, a));
            out.push(Out::of(r, t));
            let done_item = json!({"id": item, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": "completed",
                "content": [{"type": "output_audio", "transcript": reply.text}]});
            out.push(Out::of(
                r,
                json!({"type": "response.output_item.done", "response_id": response,
                "output_index": 0, "item": done_item}),
            ));
            output_items.push(done_item);
        }
        let mut call_ids = Vec::new();
        for call in &reply.tool_calls {
            let id = self.id("call");
            let call_item = self.id("item");
            call_ids.push(id.clone());
            self.issued_calls.push(id.clone());
            let index = output_items.len();
            out.push(Out::of(
                r,
                json!({"type": "response.output_item.added", "response_id": response,
                "output_index": index, "item": {"id": call_item, "type": "function_call",
                "status": "in_progress", "call_id": id, "name": call.name, "arguments": ""}}),
            ));
            let cut = call.arguments.len() / 2;
            let cut = (0..=cut)
                .rev()
                .find(|i| call.arguments.is_char_boundary(*i))
                .unwrap_or(0);
            for piece in [&call.arguments[..cut], &call.arguments[cut..]] {
                out.push(Out::of(
                    r,
                    json!({"type": "response.function_call_arguments.delta",
                    "response_id": response, "item_id": call_item, "output_index": index,
                    "call_id": id, "delta": piece}),
                ));
            }
            // Some servers leave the ids off the done event, or the done event out entirely.
            if self.rng.chance(75) {
                let mut done = json!({"type": "response.function_call_arguments.done",
                    "call_id": id, "name": call.name, "arguments": call.arguments});
                if self.rng.chance(50) {
                    done["item_id"] = json!(call_item);
                    done["response_id"] = json!(response);
                    done["output_index"] = json!(index);
                }
                out.push(Out::of(r, done));
            }
            let item_done = json!({"id": call_item, "type": "function_call", "status": "completed",
                "call_id": id, "name": call.name, "arguments": call.arguments});
            out.push(Out::of(
                r,
                json!({"type": "response.output_item.done", "response_id": response,
                "output_index": index, "item": item_done}),
            ));
            output_items.push(item_done);
        }
        let usage = json!({"input_tokens": FAKE_USAGE.0, "output_tokens": FAKE_USAGE.1,
                           "total_tokens": FAKE_USAGE.0 + FAKE_USAGE.1});
        let mut done = json!({"type": "response.done", "response": {"id": response,
            "object": "realtime.response", "status": "completed", "output": output_items,
            "usage": {}}});
        match self.rng.below(3) {
            0 => done["response"]["usage"] = usage,
            1 => {
                done["usage"] = json!({"prompt_tokens": FAKE_USAGE.0,
                                       "completion_tokens": FAKE_USAGE.1})
            }
            _ => {}
        }
        out.push(Out::of(r, done));
        self.active = Some(Active {
            id: response,
            item_id: item,
            kind,
            call_ids,
            audio_deltas: 0,
            barge_in_after,
            cancelled: false,
        });
        out
    }

    fn audio_deltas(&mut self, response: &str, item: &str, length: Duration) -> Vec<Out> {
        let Some(format) = self.output else {
            return Vec::new();
        };
        let count = (length.as_millis() as u64 * u64::from(format.rate()) / 1000) as usize;
        let seed = self.ids as f32;
        let samples: Vec<i16> = (0..count)
            .map(|i| {
                let phase = i as f32 * (0.05 + seed * 0.001);
                (phase.sin() * 8000.0) as i16 + (i % 7) as i16
            })
            .collect();
        let bytes = format.encode(&samples);
        let expected = format.decode(&bytes);
        with_log(&self.log, |l| {
            l.sent_audio.push(FakeItemAudio {
                item_id: item.to_string(),
                samples: expected,
                bytes_sent: 0,
                bytes_per_sample: format.bytes_per_sample(),
            })
        });
        let name = if self.script.beta_names {
            "response.audio.delta"
        } else {
            "response.output_audio.delta"
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            // Odd sizes on purpose: a PCM sample may straddle two deltas.
            let size = 1 + self.rng.below(2400);
            let end = (at + size).min(bytes.len());
            out.push(Out::Event {
                event: json!({"type": name, "response_id": response, "item_id": item,
                              "output_index": 0, "content_index": 0,
                              "delta": base64_encode(&bytes[at..end])}),
                response: Some(response.to_string()),
                audio: Some((item.to_string(), end - at)),
            });
            at = end;
        }
        out
    }

    fn text_deltas(&mut self, response: &str, item: &str, text: &str) -> Vec<Out> {
        let mut out = Vec::new();
        for word in split_words(text) {
            let base = json!({"response_id": response, "item_id": item, "output_index": 0,
                              "content_index": 0, "delta": word});
            let names: Vec<&str> = if self.script.duplicate_text_deltas {
                if self.rng.chance(50) {
                    vec!["response.text.delta", "response.output_text.delta"]
                } else {
                    vec!["response.output_text.delta", "response.text.delta"]
                }
            } else if self.script.beta_names {
                vec!["response.audio_transcript.delta"]
            } else {
                vec!["response.output_audio_transcript.delta"]
            };
            for name in names {
                let mut e = base.clone();
                e["type"] = json!(name);
                out.push(Out::of(response, e));
            }
        }
        out
    }

    fn apply_mid_response_fault(&mut self, turn: usize, body: &mut Vec<Out>) {
        let (fault_turn, after, drop) = match self.script.fault {
            Some(FakeFault::Truncate {
                turn,
                after_audio_deltas,
            }) => (turn, after_audio_deltas, true),
            Some(FakeFault::MalformedJson {
                turn,
                after_audio_deltas,
            }) => (turn, after_audio_deltas, false),
            _ => return,
        };
        if fault_turn != turn {
            return;
        }
        let mut seen = 0;
        let cut = body.iter().position(|o| {
            if matches!(o, Out::Event { audio: Some(_), .. }) {
                seen += 1;
            }
            seen > after
        });
        let cut = cut.unwrap_or(body.len().saturating_sub(1));
        body.truncate(cut);
        self.fault_fired = true;
        body.push(if drop {
            Out::Drop
        } else {
            Out::Raw("{\"type\":\"response.output_audio.delta\",\"delta\":\"AAAA".into())
        });
    }

    /// xAI pings at random points.
    fn with_pings(&mut self, body: Vec<Out>) -> Vec<Out> {
        if !self.xai() {
            return body;
        }
        let mut out = Vec::with_capacity(body.len() + 4);
        for o in body {
            if self.rng.chance(8) {
                out.push(self.ping());
            }
            out.push(o);
        }
        out
    }

    fn start_reply(&mut self, reply: FakeReply, kind: Kind) {
        let body = self.reply(&reply, kind, None);
        let body = self.with_pings(body);
        self.outbox.extend(body);
    }

    fn on_item(&mut self, event: &Value) {
        let Some(item) = event.get("item") else {
            self.violation("conversation.item.create without an item");
            return;
        };
        let text_of = |item: &Value, kinds: &[&str]| -> Result<String, String> {
            let content = item
                .get("content")
                .and_then(Value::as_array)
                .filter(|c| c.len() == 1)
                .ok_or("content must hold one part")?;
            let part = &content[0];
            let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
            if !kinds.contains(&kind) {
                return Err(format!("content type {kind:?}, expected one of {kinds:?}"));
            }
            part.get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| "content without text".to_string())
        };
        match item.get("type").and_then(Value::as_str) {
            Some("function_call_output") => {
                let call_id = item
                    .get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(output) = item.get("output").and_then(Value::as_str) else {
                    self.violation("function_call_output without a string output");
                    return;
                };
                if !self.issued_calls.iter().any(|c| c == call_id) {
                    self.violation(format!("function_call_output for unknown call {call_id:?}"));
                }
                let (call_id, output) = (call_id.to_string(), output.to_string());
                self.received_outputs.push(call_id.clone());
                with_log(&self.log, |l| l.tool_outputs.push((call_id, output)));
            }
            Some("message") => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or_default();
                let kinds: &[&str] = match (role, self.script.vendor) {
                    ("user", _) | ("system", _) => &["input_text"],
                    ("assistant", Vendor::OpenAi) => &["output_text"],
                    ("assistant", Vendor::Xai) => &["text", "output_text"],
                    _ => {
                        self.violation(format!("message with role {role:?}"));
                        return;
                    }
                };
                match text_of(item, kinds) {
                    Ok(text) => {
                        let role = role.to_string();
                        with_log(&self.log, |l| l.messages.push((role, text)));
                    }
                    Err(problem) => self.violation(format!("{role} message: {problem}")),
                }
            }
            Some("force_message") if self.xai() => {
                if item.get("role").and_then(Value::as_str) != Some("assistant") {
                    self.violation("force_message without role assistant");
                }
                let text = match text_of(item, &["text"]) {
                    Ok(text) => text,
                    Err(problem) => {
                        self.violation(format!("force_message: {problem}"));
                        return;
                    }
                };
                if self.active.is_some() {
                    self.violation("force_message while a response is running");
                    return;
                }
                with_log(&self.log, |l| l.force_messages.push(text.clone()));
                self.start_reply(FakeReply::say(text, 300), Kind::Verbatim);
            }
            other => {
                self.violation(format!("conversation item of type {other:?}"));
                self.error(
                    "invalid_request_error",
                    Some("invalid_value"),
                    &format!("Invalid value: {other:?}."),
                );
            }
        }
    }

    fn on_response_create(&mut self, event: &Value) {
        with_log(&self.log, |l| l.response_creates += 1);
        if let Some(active) = &self.active {
            if active.kind == Kind::Verbatim && self.xai() {
                self.violation("response.create after a force_message");
            }
            with_log(&self.log, |l| l.benign_errors += 1);
            self.error(
                "invalid_request_error",
                if self.xai() {
                    None
                } else {
                    Some("conversation_already_has_active_response")
                },
                "Conversation already has an active response in progress.",
            );
            return;
        }
        if !self.expected_outputs.is_empty() {
            let missing: Vec<_> = self
                .expected_outputs
                .iter()
                .filter(|c| !self.received_outputs.contains(c))
                .cloned()
                .collect();
            if !missing.is_empty() {
                self.violation(format!("response.create before the outputs of {missing:?}"));
            }
            self.expected_outputs.clear();
            self.received_outputs.clear();
            let reply = self
                .after_tool
                .take()
                .unwrap_or_else(|| self.script.default_reply.clone());
            self.start_reply(reply, Kind::AfterTool);
            return;
        }
        let instructions = event
            .pointer("/response/instructions")
            .and_then(Value::as_str);
        if let Some(text) = instructions.and_then(|i| i.strip_prefix(openai::SAY_INSTRUCTIONS)) {
            let text = text.trim_start_matches('\n').to_string();
            with_log(&self.log, |l| l.says.push(text.clone()));
            self.start_reply(FakeReply::say(text, 300), Kind::Verbatim);
            return;
        }
        let reply = self.script.default_reply.clone();
        self.start_reply(reply, Kind::Requested);
    }

    fn on_cancel(&mut self) {
        with_log(&self.log, |l| {
            l.cancels += 1;
            if let Some(b) = l.barge_ins.last_mut() {
                b.cancelled = true;
            }
        });
        if self.active.as_ref().is_some_and(|a| !a.cancelled) {
            self.cancel_active();
            return;
        }
        with_log(&self.log, |l| l.benign_errors += 1);
        self.error(
            "invalid_request_error",
            if self.xai() {
                None
            } else {
                Some("response_cancel_not_active")
            },
            "Cancellation failed: no active response found",
        );
    }

    fn on_truncate(&mut self, event: &Value) {
        let item = event
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let end = event.get("audio_end_ms").and_then(Value::as_u64);
        let index = event.get("content_index").and_then(Value::as_u64);
        let sent = self.sent_ms(item);
        let known = self
            .log
            .lock()
            .is_ok_and(|l| l.sent_audio.iter().any(|a| a.item_id == item));
        let problem = if !known {
            Some(format!("truncate of unknown item {item:?}"))
        } else if index != Some(0) {
            Some(format!("truncate content_index {index:?}"))
        } else {
            match end {
                None => Some("truncate without audio_end_ms".to_string()),
                Some(ms) if ms > sent => {
                    Some(format!("audio_end_ms {ms} is past the {sent} ms sent"))
                }
                Some(_) => None,
            }
        };
        if let Some(problem) = problem {
            self.violation(problem.clone());
            self.error("invalid_request_error", Some("invalid_value"), &problem);
            return;
        }
        let end = end.unwrap_or_default();
        let item = item.to_string();
        with_log(&self.log, |l| {
            l.truncations.push((item.clone(), end));
            if let Some(b) = l.barge_ins.iter_mut().rev().find(|b| b.item_id == item) {
                b.truncated_at_ms = Some(end);
            }
        });
        self.outbox
            .push_back(Out::event(json!({"type": "conversation.item.truncated",
            "item_id": item, "content_index": 0, "audio_end_ms": end})));
    }
}

/// Splits text into word-sized deltas that join back to the text ("Hi", " there").
fn split_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        if i == 0 {
            out.push(word.to_string());
        } else {
            out.push(format!(" {word}"));
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_keeps_each_order() {
        let mut rng = Rng(7);
        let merged = rng.interleave(vec![1, 2, 3], vec![10, 20]);
        assert_eq!(merged.len(), 5);
        let a: Vec<_> = merged.iter().filter(|x| **x < 10).collect();
        let b: Vec<_> = merged.iter().filter(|x| **x >= 10).collect();
        assert_eq!(a, [&1, &2, &3]);
        assert_eq!(b, [&10, &20]);
    }

    #[test]
    fn words_join_back() {
        assert_eq!(split_words("Hi there you").concat(), "Hi there you");
        assert!(split_words("").is_empty());
    }

    #[test]
    fn session_shapes_are_checked_per_vendor() {
        let xai = json!({"voice": "ara", "turn_detection": {"type": "server_vad", "threshold": 0.5},
            "audio": {"input": {"format": {"type": "audio/pcmu"}},
                      "output": {"format": {"type": "audio/pcmu"}}}});
        assert_eq!(check_xai_session(&xai), Ok((Fmt::Pcmu, Fmt::Pcmu)));
        let misplaced = json!({"voice": "ara", "turn_detection": {"type": "server_vad"},
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "ara"}}});
        assert!(check_xai_session(&misplaced).is_err());
        let openai = json!({"type": "realtime", "voice": "alloy",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": {"type": "server_vad"}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}}}});
        assert!(check_openai_session(&openai)
            .unwrap_err()
            .contains("session.voice"));
    }
}
