//! A strict fake of Deepgram's live transcription WebSocket (`/v1/listen`).
//!
//! It checks what a real server would refuse and what the adapter promises: the path, the
//! `Authorization: Token <key>` header (401 at the upgrade otherwise), a well-formed query
//! (or exactly the expected one), binary frames of exactly 20 ms in the negotiated encoding
//! and never empty, control messages as JSON *text* frames, nothing after `CloseStream`.
//! Anything wrong is recorded in [`FakeDeepgram::violations`].
//!
//! It transcribes by energy, per connection, the way the real service behaves:
//! a frame whose mean absolute amplitude reaches [`FakeDeepgramConfig::speech_threshold`]
//! is speech. Speech starts an utterance (`SpeechStarted` with `vad_events`), interim
//! `Results` follow every 500 ms of it (with `interim_results`), and `endpointing` ms of
//! silence end it with a final, `speech_final` result whose text is the script entry of
//! that utterance (utterances take the script's entries in the order they are first heard,
//! recognised by their first speech frame, so audio replayed on a new connection gets the
//! same text again) (an `UtteranceEnd` follows with `utterance_end_ms`). Each second of
//! silence with no utterance produces an empty final, as the real server does. `Finalize`
//! flushes the open utterance into a `from_finalize: true` final (an empty one when there
//! is none); `CloseStream` flushes it, sends `Metadata` and closes 1000. Times restart at
//! zero on every connection, so a client that replays audio already covered by a final
//! gets a duplicate transcript.
//!
//! Faults, one per connection in order ([`DeepgramFault`]): handshake rejections, an
//! `Error` message then a close, a bare close with a code, a dropped TCP connection, a
//! malformed JSON frame; and an idle timeout (`Metadata`, then close 1011 with the
//! NET-0001 reason) after [`FakeDeepgramConfig::idle_timeout`] without any frame.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use voxline_engine::codecs::g711;

use super::http::RecordedRequest;
use super::ws::{FakeWsServer, ServerSocket, WsReply};
use crate::net::query::parse_query;

/// The close reason Deepgram gives for its idle timeout.
pub const NET_0001_REASON: &str = "Deepgram did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001";

/// A fault the fake plays on one connection.
#[derive(Clone, Debug, PartialEq)]
pub enum DeepgramFault {
    /// Behave normally.
    None,
    /// Refuse the upgrade with this status (401, 403, 429, 500…), optional `Retry-After`
    /// seconds, and a Deepgram-style JSON body.
    Reject {
        /// HTTP status.
        status: u16,
        /// `Retry-After` value in seconds.
        retry_after: Option<u32>,
    },
    /// After this much audio, send an `Error` message and close with `close_code`.
    ErrorThenClose {
        /// Audio received on this connection before the fault.
        after_audio: Duration,
        /// The error's `variant`.
        variant: String,
        /// The error's `description`.
        description: String,
        /// The close code that follows (1011 in practice).
        close_code: u16,
    },
    /// After this much audio, close with this code and reason (e.g. 1008 `DATA-0000`).
    CloseAfter {
        /// Audio received on this connection before the fault.
        after_audio: Duration,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// After this much audio, end the TCP connection without a close frame (what was
    /// already sent still arrives).
    DropAfter {
        /// Audio received on this connection before the fault.
        after_audio: Duration,
    },
    /// After this much audio, send a text frame that is not JSON; the connection then
    /// transcribes nothing more (the client must reconnect).
    MalformedAfter {
        /// Audio received on this connection before the fault.
        after_audio: Duration,
    },
}

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeDeepgramConfig {
    /// The only key accepted.
    pub api_key: String,
    /// When set, the query must be exactly this (else 400 and a violation).
    pub expected_query: Option<String>,
    /// Texts of the final transcripts, one per utterance, shared by all connections.
    pub transcripts: Vec<String>,
    /// Mean absolute amplitude from which a frame counts as speech.
    pub speech_threshold: u32,
    /// Close (Metadata, then 1011 NET-0001) after this long without any frame.
    pub idle_timeout: Option<Duration>,
    /// Faults for the 1st, 2nd, … upgrade request; later requests behave normally.
    pub faults: Vec<DeepgramFault>,
    /// Also send message types and fields the adapter does not know.
    pub quirks: bool,
}

impl FakeDeepgramConfig {
    /// A fake accepting `api_key` that transcribes utterances as `transcripts`.
    pub fn new<S: Into<String>>(
        api_key: impl Into<String>,
        transcripts: impl IntoIterator<Item = S>,
    ) -> Self {
        FakeDeepgramConfig {
            api_key: api_key.into(),
            expected_query: None,
            transcripts: transcripts.into_iter().map(Into::into).collect(),
            speech_threshold: 500,
            idle_timeout: Some(Duration::from_secs(10)),
            faults: Vec::new(),
            quirks: true,
        }
    }
}

/// What one connection did, as the fake saw it.
#[derive(Clone, Debug, Default)]
pub struct DeepgramConnection {
    /// The upgrade request.
    pub request: Option<RecordedRequest>,
    /// True when the upgrade was accepted.
    pub accepted: bool,
    /// Every audio byte received, in order.
    pub audio: Vec<u8>,
    /// Sizes of the binary frames received.
    pub frame_sizes: Vec<usize>,
    /// Text frames received, with the time since the upgrade.
    pub texts: Vec<(Duration, String)>,
    /// Server messages sent (JSON text).
    pub sent: Vec<String>,
    /// The close code the client sent, if it sent a close frame.
    pub client_close: Option<u16>,
    /// True once the connection is over.
    pub ended: bool,
}

impl DeepgramConnection {
    /// Times (since the upgrade) at which a `KeepAlive` arrived.
    pub fn keepalives(&self) -> Vec<Duration> {
        self.control_times("KeepAlive")
    }

    /// Times (since the upgrade) at which control messages of `kind` arrived.
    pub fn control_times(&self, kind: &str) -> Vec<Duration> {
        self.texts
            .iter()
            .filter(|(_, t)| message_type(t).as_deref() == Some(kind))
            .map(|(at, _)| *at)
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    /// Script index of each utterance heard, by the fingerprint of its first speech frame.
    utterances: HashMap<u64, usize>,
    connections: Vec<DeepgramConnection>,
    violations: Vec<String>,
}

/// A running fake Deepgram server; stops when dropped.
pub struct FakeDeepgram {
    server: FakeWsServer,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for FakeDeepgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDeepgram")
            .field("url", &self.server.url())
            .finish()
    }
}

impl FakeDeepgram {
    /// Starts the fake on 127.0.0.1.
    pub async fn start(config: FakeDeepgramConfig) -> io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let config = Arc::new(config);
        let handler_shared = shared.clone();
        let server =
            FakeWsServer::start(move |req| handshake(&config, &handler_shared, req)).await?;
        Ok(FakeDeepgram { server, shared })
    }

    /// The base URL to configure (`ws://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every connection so far, in order of the upgrade requests.
    pub fn connections(&self) -> Vec<DeepgramConnection> {
        self.lock().connections.clone()
    }

    /// Everything the client did that the real service would refuse or the adapter must
    /// not do; empty for a correct client.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// How many distinct utterances have been heard (each takes the next scripted text;
    /// the same audio heard again, e.g. replayed on a new connection, gets the same text,
    /// as a real recogniser would give).
    pub fn transcripts_used(&self) -> usize {
        self.lock().utterances.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The negotiated stream, from the query.
#[derive(Clone, Debug)]
struct StreamParams {
    mulaw: bool,
    rate: u32,
    interim_results: bool,
    endpointing_ms: Option<u32>,
    utterance_end_ms: Option<u32>,
    vad_events: bool,
}

impl StreamParams {
    fn bytes_per_sample(&self) -> usize {
        if self.mulaw {
            1
        } else {
            2
        }
    }

    fn samples(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * self.rate as f64).round() as u64
    }

    fn secs(&self, samples: u64) -> f64 {
        samples as f64 / self.rate as f64
    }
}

fn parse_params(query: &str) -> Result<StreamParams, String> {
    let pairs = parse_query(query);
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let flag = |name: &str| -> Result<bool, String> {
        match get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(format!("{name}={other} is not a boolean")),
        }
    };
    if get("model").is_none_or(str::is_empty) {
        return Err("model is missing".into());
    }
    let mulaw = match get("encoding") {
        Some("linear16") => false,
        Some("mulaw") => true,
        other => return Err(format!("unsupported encoding {other:?}")),
    };
    let rate = match get("sample_rate").map(str::parse::<u32>) {
        Some(Ok(rate @ (8000 | 16000 | 24000 | 48000))) => rate,
        other => return Err(format!("bad sample_rate {other:?}")),
    };
    if let Some(channels) = get("channels") {
        if channels != "1" {
            return Err(format!("channels={channels}, expected 1"));
        }
    }
    let interim_results = flag("interim_results")?;
    let endpointing_ms = match get("endpointing") {
        None => Some(10),
        Some("false") => None,
        Some(ms) => Some(ms.parse().map_err(|_| format!("bad endpointing {ms}"))?),
    };
    let utterance_end_ms = match get("utterance_end_ms") {
        None => None,
        Some(ms) => Some(
            ms.parse()
                .map_err(|_| format!("bad utterance_end_ms {ms}"))?,
        ),
    };
    if utterance_end_ms.is_some() && !interim_results {
        return Err("utterance_end_ms requires interim_results=true".into());
    }
    for (name, value) in &pairs {
        if [
            "smart_format",
            "punctuate",
            "numerals",
            "filler_words",
            "profanity_filter",
            "diarize",
            "vad_events",
        ]
        .contains(&name.as_str())
            && value != "true"
            && value != "false"
        {
            return Err(format!("{name}={value} is not a boolean"));
        }
    }
    Ok(StreamParams {
        mulaw,
        rate,
        interim_results,
        endpointing_ms,
        utterance_end_ms,
        vad_events: flag("vad_events")?,
    })
}

fn handshake(
    config: &Arc<FakeDeepgramConfig>,
    shared: &Arc<Mutex<Shared>>,
    req: &RecordedRequest,
) -> WsReply {
    let index = {
        let mut s = lock(shared);
        s.connections.push(DeepgramConnection {
            request: Some(req.clone()),
            ..DeepgramConnection::default()
        });
        s.connections.len() - 1
    };
    let violation = |text: String| lock(shared).violations.push(text);
    if let Some(DeepgramFault::Reject {
        status,
        retry_after,
    }) = config.faults.get(index)
    {
        let body = if matches!(status, 401 | 403) {
            json!({"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"fake-req"})
        } else {
            json!({"err_code":"TOO_MANY_REQUESTS","err_msg":"Too many requests.","request_id":"fake-req"})
        };
        let mut headers = vec![("dg-request-id".to_string(), "fake-req".to_string())];
        if let Some(secs) = retry_after {
            headers.push(("retry-after".to_string(), secs.to_string()));
        }
        return WsReply::Reject {
            status: *status,
            headers,
            body: body.to_string(),
        };
    }
    if req.path != "/v1/listen" {
        violation(format!("upgrade to {} instead of /v1/listen", req.path));
        return WsReply::reject(404, "not found");
    }
    let auth = req.header("authorization").unwrap_or_default();
    let token = auth
        .strip_prefix("Token ")
        .or_else(|| auth.strip_prefix("token "));
    if token != Some(config.api_key.as_str()) {
        return WsReply::Reject {
            status: 401,
            headers: vec![("dg-error".to_string(), "Invalid credentials.".to_string())],
            body: json!({"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"fake-req"})
                .to_string(),
        };
    }
    let query = req.query.clone().unwrap_or_default();
    if let Some(expected) = &config.expected_query {
        if &query != expected {
            violation(format!("query {query:?}, expected {expected:?}"));
            return WsReply::reject(400, "unexpected query");
        }
    }
    let params = match parse_params(&query) {
        Ok(params) => params,
        Err(e) => {
            violation(format!("bad query: {e}"));
            return WsReply::reject(400, e);
        }
    };
    lock(shared).connections[index].accepted = true;
    let fault = config
        .faults
        .get(index)
        .cloned()
        .unwrap_or(DeepgramFault::None);
    let config = config.clone();
    let shared = shared.clone();
    WsReply::accept(move |socket| async move {
        let mut conn = FakeConnection {
            socket,
            config,
            shared,
            index,
            params,
            fault,
            fault_done: false,
            started: Instant::now(),
            samples: 0,
            segment_start: 0,
            speech: None,
            silence: 0,
            next_interim: 0,
            close_stream: false,
            broken: false,
        };
        conn.run().await;
        lock(&conn.shared).connections[index].ended = true;
    })
}

/// An utterance in progress: where its speech started and last ended (samples).
#[derive(Clone)]
struct Speech {
    start: u64,
    end: u64,
    text: String,
}

enum Step {
    Continue,
    Stop,
}

struct FakeConnection {
    socket: ServerSocket,
    config: Arc<FakeDeepgramConfig>,
    shared: Arc<Mutex<Shared>>,
    index: usize,
    params: StreamParams,
    fault: DeepgramFault,
    fault_done: bool,
    started: Instant,
    /// Audio samples received on this connection.
    samples: u64,
    /// Start of the audio not yet covered by a final.
    segment_start: u64,
    speech: Option<Speech>,
    /// Silence samples since the speech last ended.
    silence: u64,
    /// Speech samples at which the next interim is due.
    next_interim: u64,
    close_stream: bool,
    /// After a malformed message: record audio, answer nothing.
    broken: bool,
}

impl FakeConnection {
    fn record(&self, f: impl FnOnce(&mut DeepgramConnection)) {
        let mut s = lock(&self.shared);
        if let Some(c) = s.connections.get_mut(self.index) {
            f(c);
        }
    }

    fn violation(&self, text: String) {
        lock(&self.shared).violations.push(text);
    }

    async fn send(&mut self, value: Value) {
        let text = value.to_string();
        self.record(|c| c.sent.push(text.clone()));
        let _ = self.socket.send(Message::text(text)).await;
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = self.socket.close(Some(frame)).await;
        // Let the client's close reply arrive (bounded).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(message)) = self.socket.next().await {
                if let Message::Close(frame) = message {
                    let code = frame.map(|f| u16::from(f.code));
                    self.record(|c| c.client_close = code);
                    break;
                }
            }
        })
        .await;
    }

    async fn run(&mut self) {
        if self.config.quirks {
            self.send(json!({"type":"Welcome","note":"a type the client does not know"}))
                .await;
        }
        loop {
            let next = match self.config.idle_timeout {
                Some(idle) => match tokio::time::timeout(idle, self.socket.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.metadata().await;
                        self.close(1011, NET_0001_REASON).await;
                        return;
                    }
                },
                None => self.socket.next().await,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(_)) | None => return,
            };
            let step = match message {
                Message::Binary(bytes) => self.on_audio(&bytes).await,
                Message::Text(text) => self.on_text(text.as_str()).await,
                Message::Close(frame) => {
                    let code = frame.map(|f| u16::from(f.code));
                    self.record(|c| c.client_close = code);
                    Step::Stop
                }
                _ => Step::Continue,
            };
            if let Step::Stop = step {
                return;
            }
        }
    }

    async fn on_audio(&mut self, bytes: &[u8]) -> Step {
        let expected = self.params.rate as usize / 50 * self.params.bytes_per_sample();
        if bytes.is_empty() {
            self.violation("a zero-length binary frame".into());
            return Step::Continue;
        }
        if bytes.len() != expected {
            self.violation(format!(
                "a binary frame of {} bytes, expected {expected} (20 ms)",
                bytes.len()
            ));
        }
        if self.close_stream {
            self.violation("audio after CloseStream".into());
        }
        self.record(|c| {
            c.audio.extend_from_slice(bytes);
            c.frame_sizes.push(bytes.len());
        });
        if self.broken {
            return Step::Continue;
        }
        let samples: Vec<i32> = if self.params.mulaw {
            bytes
                .iter()
                .map(|&b| g711::ulaw_to_linear(b) as i32)
                .collect()
        } else {
            bytes
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]) as i32)
                .collect()
        };
        let n = samples.len() as u64;
        let loud = n > 0
            && samples.iter().map(|s| s.unsigned_abs() as u64).sum::<u64>() / n
                >= self.config.speech_threshold as u64;
        let before = self.samples;
        self.samples += n;
        if loud {
            if self.speech.is_none() {
                let text = self.text_for(bytes);
                self.speech = Some(Speech {
                    start: before,
                    end: self.samples,
                    text,
                });
                self.next_interim = self.samples + self.params.samples(Duration::from_millis(500));
                if self.params.vad_events {
                    let at = self.params.secs(before);
                    self.send(json!({"type":"SpeechStarted","channel":[0,1],"timestamp":at}))
                        .await;
                }
            }
            if let Some(speech) = &mut self.speech {
                speech.end = self.samples;
            }
            self.silence = 0;
            if self.params.interim_results && self.samples >= self.next_interim {
                self.next_interim = self.samples + self.params.samples(Duration::from_millis(500));
                self.interim().await;
            }
        } else if self.speech.is_some() {
            self.silence += n;
            if let Some(ms) = self.params.endpointing_ms {
                if self.silence >= self.params.samples(Duration::from_millis(ms as u64)) {
                    let last_word_end = self.final_result(true, false).await;
                    if self.params.utterance_end_ms.is_some() {
                        self.send(json!({"type":"UtteranceEnd","channel":[0,1],"last_word_end":last_word_end}))
                            .await;
                    }
                }
            }
        } else if self.samples - self.segment_start >= self.params.samples(Duration::from_secs(1)) {
            // A second of silence: the real service commits it as an empty final.
            self.final_result(false, false).await;
        }
        self.play_fault().await
    }

    async fn play_fault(&mut self) -> Step {
        if self.fault_done {
            return Step::Continue;
        }
        let audio = Duration::from_secs_f64(self.params.secs(self.samples));
        match self.fault.clone() {
            DeepgramFault::ErrorThenClose {
                after_audio,
                variant,
                description,
                close_code,
            } if audio >= after_audio => {
                self.fault_done = true;
                self.send(json!({"type":"Error","variant":variant,"description":description,"code":"FAKE-ERROR"}))
                    .await;
                self.close(close_code, "").await;
                Step::Stop
            }
            DeepgramFault::CloseAfter {
                after_audio,
                code,
                reason,
            } if audio >= after_audio => {
                self.fault_done = true;
                self.close(code, &reason).await;
                Step::Stop
            }
            DeepgramFault::DropAfter { after_audio } if audio >= after_audio => {
                // End the TCP stream (FIN, no close frame) but keep reading, so what was
                // already sent reaches the client instead of being lost to a reset.
                self.fault_done = true;
                let _ = self.socket.get_mut().shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = self.socket.get_mut().read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
                Step::Stop
            }
            DeepgramFault::MalformedAfter { after_audio } if audio >= after_audio => {
                // A server that sent garbage is broken: it transcribes nothing more and
                // waits for the client to give up on the connection.
                self.fault_done = true;
                self.broken = true;
                let _ = self
                    .socket
                    .send(Message::text("{\"type\":\"Results\",\"channel\":{\"alter"))
                    .await;
                Step::Continue
            }
            _ => Step::Continue,
        }
    }

    async fn on_text(&mut self, text: &str) -> Step {
        let at = self.started.elapsed();
        self.record(|c| c.texts.push((at, text.to_string())));
        let Some(kind) = message_type(text) else {
            self.violation(format!(
                "a text frame that is not a typed JSON message: {text:?}"
            ));
            return Step::Continue;
        };
        if self.close_stream {
            self.violation(format!("{kind} after CloseStream"));
        }
        match kind.as_str() {
            "KeepAlive" => Step::Continue,
            "Finalize" => {
                if self.speech.is_some() {
                    self.final_result(false, true).await;
                } else {
                    self.empty_final(true).await;
                }
                Step::Continue
            }
            "CloseStream" => {
                self.close_stream = true;
                if self.speech.is_some() {
                    self.final_result(true, false).await;
                }
                self.metadata().await;
                self.close(1000, "").await;
                Step::Stop
            }
            other => {
                self.violation(format!("unknown control message {other:?}"));
                Step::Continue
            }
        }
    }

    /// The scripted text of the utterance that starts with `first_frame`.
    fn text_for(&self, first_frame: &[u8]) -> String {
        let mut hasher = DefaultHasher::new();
        first_frame.hash(&mut hasher);
        let fingerprint = hasher.finish();
        let mut s = lock(&self.shared);
        let next = s.utterances.len();
        let index = *s.utterances.entry(fingerprint).or_insert(next);
        self.config
            .transcripts
            .get(index)
            .cloned()
            .unwrap_or_else(|| "unscripted".to_string())
    }

    async fn interim(&mut self) {
        let Some(speech) = self.speech.clone() else {
            return;
        };
        let words: Vec<&str> = speech.text.split_whitespace().collect();
        let partial = words[..words.len().div_ceil(2)].join(" ");
        let value = self.results(&partial, &speech, self.samples, false, false, false);
        self.send(value).await;
    }

    /// Ends the open utterance with a final; returns its last word's end (seconds).
    async fn final_result(&mut self, speech_final: bool, from_finalize: bool) -> f64 {
        let end = self.samples;
        let speech = self.speech.take().unwrap_or(Speech {
            start: end,
            end,
            text: String::new(),
        });
        let value = self.results(
            &speech.text,
            &speech,
            end,
            true,
            speech_final,
            from_finalize,
        );
        self.segment_start = end;
        self.silence = 0;
        self.send(value).await;
        self.params.secs(speech.end)
    }

    async fn empty_final(&mut self, from_finalize: bool) {
        let end = self.samples;
        let value = self.results(
            "",
            &Speech {
                start: end,
                end,
                text: String::new(),
            },
            end,
            true,
            false,
            from_finalize,
        );
        self.segment_start = end;
        self.send(value).await;
    }

    fn results(
        &self,
        text: &str,
        speech: &Speech,
        end: u64,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> Value {
        let words: Vec<&str> = text.split_whitespace().collect();
        let span = speech.end.saturating_sub(speech.start) as f64 / words.len().max(1) as f64;
        let word_values: Vec<Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let start =
                    self.params.secs(speech.start) + span * i as f64 / self.params.rate as f64;
                let end = start + span / self.params.rate as f64;
                let bare: String = w
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
                    .to_lowercase();
                json!({"word":bare,"start":start,"end":end,"confidence":0.98,"punctuated_word":w})
            })
            .collect();
        let mut value = json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": self.params.secs(end - self.segment_start),
            "start": self.params.secs(self.segment_start),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": text,
                "confidence": if text.is_empty() { 0.0 } else { 0.97 },
                "words": word_values,
            }]},
            "metadata": {
                "request_id": "fake-req",
                "model_info": {"name": "general-nova-3", "version": "fake", "arch": "nova-3"},
                "model_uuid": "fake-model",
            },
        });
        if self.config.quirks {
            value["unknown_field"] = json!({"nested": [1, 2, 3]});
        }
        value
    }

    async fn metadata(&mut self) {
        let duration = self.params.secs(self.samples);
        self.send(json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": "fake-req",
            "sha256": "incomplete",
            "created": "2026-01-01T00:00:00.000Z",
            "duration": duration,
            "channels": 1,
        }))
        .await;
    }
}

fn message_type(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("type")?.as_str().map(str::to_string)
}
