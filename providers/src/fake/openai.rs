//! A fake OpenAI REST server: `POST /v1/chat/completions` (streamed SSE) and
//! `POST /v1/audio/speech` (streamed PCM), strict about the request and scripted in its
//! replies, including the faults real servers produce.
//!
//! Requests are checked like the real service would (method, path, `Authorization:
//! Bearer`, JSON body shape); a bad request gets a 400 in OpenAI's error envelope whose
//! message says what was wrong. Replies come from FIFO queues of scripts.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{split_sizes, BodyPart, FakeHttpServer, RecordedRequest, Reply};

/// The key a [`FakeOpenAi`] accepts unless started with another.
pub const FAKE_OPENAI_KEY: &str = "sk-fake-openai-0123456789abcdef";

/// What the next chat-completions request receives.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatReply {
    /// A `200 text/event-stream` reply.
    Stream(ChatStream),
    /// Any other reply (an error status, a custom body).
    Raw(Reply),
}

impl ChatReply {
    /// An error in OpenAI's envelope: `{"error":{"message","type","param","code"}}`.
    pub fn error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Self {
        ChatReply::Raw(error_reply(status, kind, code, message))
    }

    /// 401 `invalid_api_key`.
    pub fn unauthorized() -> Self {
        ChatReply::error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        )
    }

    /// 429 `rate_limit_exceeded` with this `Retry-After` header value.
    pub fn rate_limited(retry_after: &str) -> Self {
        let mut reply = error_reply(
            429,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests.",
        );
        reply = reply.header("retry-after", retry_after);
        ChatReply::Raw(reply)
    }

    /// 500 `server_error`.
    pub fn server_error() -> Self {
        ChatReply::error(
            500,
            "server_error",
            None,
            "The server had an error while processing your request.",
        )
    }
}

impl From<ChatStream> for ChatReply {
    fn from(stream: ChatStream) -> Self {
        ChatReply::Stream(stream)
    }
}

impl From<Reply> for ChatReply {
    fn from(reply: Reply) -> Self {
        ChatReply::Raw(reply)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Item {
    Sse(String),
    Pause(Duration),
}

/// A scripted chat-completions SSE stream, built chunk by chunk in the real shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatStream {
    model: String,
    items: Vec<Item>,
    split: Vec<usize>,
    crlf: bool,
    first_byte_delay: Option<Duration>,
    headers_delay: Option<Duration>,
    abort: bool,
}

impl Default for ChatStream {
    fn default() -> Self {
        ChatStream::new()
    }
}

impl ChatStream {
    /// An empty stream (add chunks, then usually [`done`](ChatStream::done)).
    pub fn new() -> Self {
        ChatStream {
            model: "gpt-4o-mini-2024-07-18".into(),
            items: Vec::new(),
            split: Vec::new(),
            crlf: false,
            first_byte_delay: None,
            headers_delay: None,
            abort: false,
        }
    }

    /// The usual text turn: role chunk, one chunk per piece, `stop`, usage, `[DONE]`.
    pub fn text_reply(pieces: &[&str]) -> Self {
        let mut s = ChatStream::new().role();
        for piece in pieces {
            s = s.text(piece);
        }
        s.finish("stop").usage(12, pieces.len() as u64).done()
    }

    /// The first chunk of a turn: `delta: {role: "assistant", content: "", refusal: null}`.
    pub fn role(self) -> Self {
        self.delta_raw(json!({"role": "assistant", "content": "", "refusal": null}))
    }

    /// A text delta.
    pub fn text(self, text: &str) -> Self {
        self.delta_raw(json!({ "content": text }))
    }

    /// A delta whose `content` is `null`.
    pub fn null_content(self) -> Self {
        self.delta_raw(json!({ "content": null }))
    }

    /// The first fragment of a tool call: index, id, type, name and empty arguments.
    pub fn tool_call_start(self, index: u32, id: &str, name: &str) -> Self {
        self.delta_raw(json!({"tool_calls": [{
            "index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": ""}
        }]}))
    }

    /// A later fragment of a tool call: a piece of its arguments text.
    pub fn tool_call_args(self, index: u32, piece: &str) -> Self {
        self.delta_raw(json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    }

    /// A whole tool call as the first fragment plus `arguments` cut every `piece_chars`
    /// characters (so cuts land inside keys, strings and `\u` escapes).
    pub fn tool_call_fragmented(
        mut self,
        index: u32,
        id: &str,
        name: &str,
        arguments: &str,
        piece_chars: usize,
    ) -> Self {
        self = self.tool_call_start(index, id, name);
        let chars: Vec<char> = arguments.chars().collect();
        for piece in chars.chunks(piece_chars.max(1)) {
            let piece: String = piece.iter().collect();
            self = self.tool_call_args(index, &piece);
        }
        self
    }

    /// A complete tool call in one chunk, as Groq, xAI and Ollama send them.
    pub fn tool_call_whole(self, index: u32, id: &str, name: &str, arguments: &str) -> Self {
        self.delta_raw(json!({"tool_calls": [{
            "index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": arguments}
        }]}))
    }

    /// A chunk with this `delta` for choice 0.
    pub fn delta_raw(self, delta: Value) -> Self {
        let choices =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]);
        self.chunk_with(choices, Value::Null)
    }

    /// The closing chunk for choice 0 with this `finish_reason`.
    pub fn finish(self, reason: &str) -> Self {
        let choices = json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]);
        self.chunk_with(choices, Value::Null)
    }

    /// The usage chunk (`choices: []`), as sent with `include_usage`.
    pub fn usage(self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}
        });
        self.chunk_with(json!([]), usage)
    }

    /// Any chunk object, sent verbatim as one `data:` event.
    pub fn chunk_raw(self, chunk: Value) -> Self {
        self.data_raw(&chunk.to_string())
    }

    /// An SSE comment line (`: text`), as gateways send for keep-alive.
    pub fn comment(mut self, text: &str) -> Self {
        self.items.push(Item::Sse(format!(": {text}\n\n")));
        self
    }

    /// One `data:` event with this exact text (e.g. malformed JSON).
    pub fn data_raw(mut self, data: &str) -> Self {
        self.items.push(Item::Sse(format!("data: {data}\n\n")));
        self
    }

    /// Raw event-stream text, sent as is (its own line ends included).
    pub fn sse_raw(mut self, text: &str) -> Self {
        self.items.push(Item::Sse(text.to_string()));
        self
    }

    /// An error object inside the 200 stream, as OpenAI sends when generation fails.
    pub fn error(self, message: &str, code: Option<&str>) -> Self {
        self.chunk_raw(json!({"error": {
            "message": message, "type": "server_error", "param": null, "code": code
        }}))
    }

    /// The terminator `data: [DONE]`.
    pub fn done(self) -> Self {
        self.data_raw("[DONE]")
    }

    /// A pause at this point of the stream (chunks before it are sent first).
    pub fn pause(mut self, pause: Duration) -> Self {
        self.items.push(Item::Pause(pause));
        self
    }

    /// Cut the bytes into network chunks of these sizes (cycled) instead of one per event.
    pub fn split_sizes(mut self, sizes: &[usize]) -> Self {
        self.split = sizes.to_vec();
        self
    }

    /// Send every byte as its own chunk.
    pub fn bytewise(self) -> Self {
        self.split_sizes(&[1])
    }

    /// End lines with CRLF instead of LF.
    pub fn crlf(mut self) -> Self {
        self.crlf = true;
        self
    }

    /// Wait this long after the headers before the first body byte.
    pub fn first_byte_delay(mut self, pause: Duration) -> Self {
        self.first_byte_delay = Some(pause);
        self
    }

    /// Wait this long before sending the status line.
    pub fn headers_delay(mut self, pause: Duration) -> Self {
        self.headers_delay = Some(pause);
        self
    }

    /// Drop the connection after the scripted events instead of ending cleanly.
    pub fn abort(mut self) -> Self {
        self.abort = true;
        self
    }

    /// The model name put in chunks.
    pub fn model(mut self, model: &str) -> Self {
        self.model = model.into();
        self
    }

    fn chunk_with(self, choices: Value, usage: Value) -> Self {
        let chunk = json!({
            "id": "chatcmpl-fake0001",
            "object": "chat.completion.chunk",
            "created": 1_760_000_000u64,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
            "usage": usage,
            "obfuscation": "Zq3"
        });
        self.chunk_raw(chunk)
    }

    /// The event-stream bytes of this script, pauses left out.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for item in &self.items {
            if let Item::Sse(text) = item {
                out.extend_from_slice(self.line_ends(text).as_bytes());
            }
        }
        out
    }

    fn line_ends(&self, text: &str) -> String {
        if self.crlf {
            text.replace("\r\n", "\n").replace('\n', "\r\n")
        } else {
            text.to_string()
        }
    }

    /// The HTTP reply this script produces.
    pub fn to_reply(&self) -> Reply {
        let mut reply = Reply::new(200)
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("x-request-id", "req_fake");
        reply.headers_delay = self.headers_delay;
        if let Some(pause) = self.first_byte_delay {
            reply = reply.delay(pause);
        }
        let mut run = Vec::new();
        let flush = |run: &mut Vec<u8>, reply: &mut Reply| {
            if run.is_empty() {
                return;
            }
            if self.split.is_empty() {
                reply.body.push(BodyPart::Bytes(std::mem::take(run).into()));
            } else {
                reply.body.extend(
                    split_sizes(run, &self.split)
                        .into_iter()
                        .map(BodyPart::Bytes),
                );
                run.clear();
            }
        };
        for item in &self.items {
            match item {
                Item::Sse(text) => {
                    let text = self.line_ends(text);
                    if self.split.is_empty() {
                        // One network chunk per event, like a real server flushing each one.
                        flush(&mut run, &mut reply);
                        reply.body.push(BodyPart::Bytes(text.into_bytes().into()));
                    } else {
                        run.extend_from_slice(text.as_bytes());
                    }
                }
                Item::Pause(pause) => {
                    flush(&mut run, &mut reply);
                    reply.body.push(BodyPart::Delay(*pause));
                }
            }
        }
        flush(&mut run, &mut reply);
        if self.abort {
            reply = reply.abort();
        }
        reply
    }
}

/// What the next speech request receives.
#[derive(Clone, Debug, PartialEq)]
pub enum SpeechReply {
    /// `200` with raw 24 kHz s16le mono PCM.
    Pcm(PcmStream),
    /// Any other reply.
    Raw(Reply),
}

impl SpeechReply {
    /// An error in OpenAI's envelope.
    pub fn error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Self {
        SpeechReply::Raw(error_reply(status, kind, code, message))
    }
}

impl From<PcmStream> for SpeechReply {
    fn from(stream: PcmStream) -> Self {
        SpeechReply::Pcm(stream)
    }
}

impl From<Reply> for SpeechReply {
    fn from(reply: Reply) -> Self {
        SpeechReply::Raw(reply)
    }
}

/// Scripted PCM audio, sent in chunks of odd sizes so samples straddle chunk borders.
#[derive(Clone, Debug, PartialEq)]
pub struct PcmStream {
    samples: Vec<i16>,
    chunk_sizes: Vec<usize>,
    first_byte_delay: Option<Duration>,
    abort_after: Option<usize>,
}

impl PcmStream {
    /// These samples, in chunks of 1001, 7, 1 and 333 bytes (cycled).
    pub fn new(samples: Vec<i16>) -> Self {
        PcmStream {
            samples,
            chunk_sizes: vec![1001, 7, 1, 333],
            first_byte_delay: None,
            abort_after: None,
        }
    }

    /// Network chunk sizes in bytes (cycled).
    pub fn chunk_sizes(mut self, sizes: &[usize]) -> Self {
        self.chunk_sizes = sizes.to_vec();
        self
    }

    /// Wait this long after the headers before the first byte.
    pub fn first_byte_delay(mut self, pause: Duration) -> Self {
        self.first_byte_delay = Some(pause);
        self
    }

    /// Drop the connection after this many bytes.
    pub fn abort_after_bytes(mut self, bytes: usize) -> Self {
        self.abort_after = Some(bytes);
        self
    }

    /// The samples as little-endian bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// The HTTP reply this script produces.
    pub fn to_reply(&self) -> Reply {
        let mut bytes = self.bytes();
        if let Some(n) = self.abort_after {
            bytes.truncate(n);
        }
        let mut reply = Reply::new(200).header("content-type", "audio/pcm");
        if let Some(pause) = self.first_byte_delay {
            reply = reply.delay(pause);
        }
        reply = reply.chunks(&bytes, &self.chunk_sizes);
        if self.abort_after.is_some() {
            reply = reply.abort();
        }
        reply
    }
}

/// The audio the fake speaks for `input` when no speech reply is scripted: 120 samples
/// (5 ms) per character of a deterministic pattern, so tests can predict it.
pub fn speech_samples(input: &str) -> Vec<i16> {
    input
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            (0..120u32).map(move |k| {
                let v = (k * 37 + c as u32 * 11 + i as u32 * 101) % 4000;
                v as i16 - 2000
            })
        })
        .collect()
}

struct State {
    key: String,
    chat: Mutex<VecDeque<ChatReply>>,
    speech: Mutex<VecDeque<SpeechReply>>,
}

/// The running fake. Stops when dropped.
pub struct FakeOpenAi {
    server: FakeHttpServer,
    state: Arc<State>,
}

impl std::fmt::Debug for FakeOpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpenAi")
            .field("addr", &self.server.addr())
            .finish()
    }
}

impl FakeOpenAi {
    /// Starts on a free port, accepting [`FAKE_OPENAI_KEY`].
    pub async fn start() -> io::Result<Self> {
        FakeOpenAi::start_with_key(FAKE_OPENAI_KEY).await
    }

    /// Starts on a free port, accepting `key`.
    pub async fn start_with_key(key: &str) -> io::Result<Self> {
        let state = Arc::new(State {
            key: key.to_string(),
            chat: Mutex::new(VecDeque::new()),
            speech: Mutex::new(VecDeque::new()),
        });
        let handler_state = state.clone();
        let server = FakeHttpServer::start(move |req| handle(&handler_state, req)).await?;
        Ok(FakeOpenAi { server, state })
    }

    /// The base URL to configure a client with: `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// The key the fake accepts.
    pub fn api_key(&self) -> &str {
        &self.state.key
    }

    /// Queues the reply for the next chat-completions request.
    pub fn push_chat(&self, reply: impl Into<ChatReply>) {
        if let Ok(mut q) = self.state.chat.lock() {
            q.push_back(reply.into());
        }
    }

    /// Queues the reply for the next speech request (unscripted requests get
    /// [`speech_samples`] of their input).
    pub fn push_speech(&self, reply: impl Into<SpeechReply>) {
        if let Ok(mut q) = self.state.speech.lock() {
            q.push_back(reply.into());
        }
    }

    /// Every request received, in order (including rejected ones).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// The chat-completions requests received.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests_to("/v1/chat/completions")
    }

    /// The speech requests received.
    pub fn speech_requests(&self) -> Vec<RecordedRequest> {
        self.requests_to("/v1/audio/speech")
    }

    fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

fn handle(state: &State, req: &RecordedRequest) -> Reply {
    let route = req.path.as_str();
    if route != "/v1/chat/completions" && route != "/v1/audio/speech" {
        return error_reply(
            404,
            "invalid_request_error",
            Some("unknown_url"),
            &format!("Unknown request URL: {} {}.", req.method, req.path),
        );
    }
    if req.method != "POST" {
        return error_reply(
            405,
            "invalid_request_error",
            None,
            &format!("Method {} not allowed for {}.", req.method, req.path),
        );
    }
    if let Err(reply) = check_auth(state, req) {
        return reply;
    }
    let body = match parse_json_body(req) {
        Ok(body) => body,
        Err(message) => return bad_request(&message),
    };
    if route == "/v1/chat/completions" {
        if let Err(message) = check_chat_body(&body) {
            return bad_request(&message);
        }
        let next = state.chat.lock().ok().and_then(|mut q| q.pop_front());
        match next {
            Some(ChatReply::Stream(stream)) => stream.to_reply(),
            Some(ChatReply::Raw(reply)) => reply,
            None => error_reply(
                500,
                "server_error",
                None,
                "fake-openai: no scripted chat reply left",
            ),
        }
    } else {
        let input = match check_speech_body(&body) {
            Ok(input) => input,
            Err(message) => return bad_request(&message),
        };
        let next = state.speech.lock().ok().and_then(|mut q| q.pop_front());
        match next {
            Some(SpeechReply::Pcm(stream)) => stream.to_reply(),
            Some(SpeechReply::Raw(reply)) => reply,
            None => PcmStream::new(speech_samples(&input)).to_reply(),
        }
    }
}

fn check_auth(state: &State, req: &RecordedRequest) -> Result<(), Reply> {
    let expected = format!("Bearer {}", state.key);
    match req.header("authorization") {
        Some(value) if value == expected => Ok(()),
        Some(_) => Err(error_reply(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        )),
        None => Err(error_reply(
            401,
            "invalid_request_error",
            None,
            "You didn't provide an API key.",
        )),
    }
}

fn parse_json_body(req: &RecordedRequest) -> Result<Value, String> {
    let content_type = req.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(format!(
            "expected Content-Type application/json, got {content_type:?}"
        ));
    }
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| format!("the body is not valid JSON: {e}"))?;
    if !body.is_object() {
        return Err("the body must be a JSON object".into());
    }
    Ok(body)
}

/// The chat request rules the fake enforces, as the real API would reject them.
fn check_chat_body(body: &Value) -> Result<(), String> {
    non_empty_str(body, "model")?;
    if body.get("stream") != Some(&Value::Bool(true)) {
        return Err("'stream' must be true".into());
    }
    if let Some(options) = body.get("stream_options") {
        match options.get("include_usage") {
            Some(Value::Bool(_)) | None if options.is_object() => {}
            _ => return Err("'stream_options.include_usage' must be a boolean".into()),
        }
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("'messages' must be a non-empty array")?;
    for (i, m) in messages.iter().enumerate() {
        check_message(m).map_err(|e| format!("messages[{i}]: {e}"))?;
    }
    if let Some(tools) = body.get("tools") {
        let tools = tools.as_array().ok_or("'tools' must be an array")?;
        for (i, t) in tools.iter().enumerate() {
            check_tool(t).map_err(|e| format!("tools[{i}]: {e}"))?;
        }
    }
    for field in ["temperature"] {
        if let Some(v) = body.get(field) {
            let ok = v.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t));
            if !ok {
                return Err(format!("'{field}' must be a number in 0..=2"));
            }
        }
    }
    for field in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = body.get(field) {
            if !matches!(v.as_u64(), Some(n) if n > 0) {
                return Err(format!("'{field}' must be a positive integer"));
            }
        }
    }
    Ok(())
}

fn check_message(m: &Value) -> Result<(), String> {
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or("'role' must be a string")?;
    let content = m.get("content");
    let content_is_text = content.is_some_and(Value::is_string);
    match role {
        "system" | "developer" | "user" => {
            if !content_is_text {
                return Err(format!("a {role} message needs string 'content'"));
            }
        }
        "assistant" => {
            let calls = m.get("tool_calls");
            if let Some(calls) = calls {
                let calls = calls
                    .as_array()
                    .filter(|c| !c.is_empty())
                    .ok_or("'tool_calls' must be a non-empty array")?;
                for call in calls {
                    check_history_call(call)?;
                }
            }
            let content_null = matches!(content, Some(Value::Null) | None);
            if !(content_is_text || (calls.is_some() && content_null)) {
                return Err("an assistant message needs 'content' or 'tool_calls'".into());
            }
        }
        "tool" => {
            non_empty_str(m, "tool_call_id")?;
            if !content_is_text {
                return Err("a tool message needs string 'content'".into());
            }
        }
        other => return Err(format!("unknown role {other:?}")),
    }
    Ok(())
}

fn check_history_call(call: &Value) -> Result<(), String> {
    non_empty_str(call, "id")?;
    if call.get("type").and_then(Value::as_str) != Some("function") {
        return Err("a tool call needs type 'function'".into());
    }
    let function = call.get("function").ok_or("a tool call needs 'function'")?;
    non_empty_str(function, "name")?;
    let args = function
        .get("arguments")
        .and_then(Value::as_str)
        .ok_or("'function.arguments' must be a string holding JSON")?;
    serde_json::from_str::<Value>(args)
        .map_err(|e| format!("'function.arguments' is not JSON: {e}"))?;
    Ok(())
}

fn check_tool(tool: &Value) -> Result<(), String> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err("'type' must be 'function'".into());
    }
    let function = tool.get("function").ok_or("'function' is missing")?;
    non_empty_str(function, "name")?;
    if let Some(d) = function.get("description") {
        if !d.is_string() {
            return Err("'function.description' must be a string".into());
        }
    }
    if let Some(p) = function.get("parameters") {
        if !p.is_object() {
            return Err("'function.parameters' must be a JSON Schema object".into());
        }
    }
    Ok(())
}

/// Checks a speech request; returns its input text.
fn check_speech_body(body: &Value) -> Result<String, String> {
    non_empty_str(body, "model")?;
    let input = non_empty_str(body, "input")?;
    if input.chars().count() > 4096 {
        return Err("'input' is longer than 4096 characters".into());
    }
    match body.get("voice") {
        Some(Value::String(v)) if !v.is_empty() => {}
        Some(v @ Value::Object(_)) if v.get("id").is_some_and(Value::is_string) => {}
        _ => return Err("'voice' must be a voice name or {\"id\": …}".into()),
    }
    if body.get("response_format").and_then(Value::as_str) != Some("pcm") {
        return Err("this fake serves only response_format 'pcm'".into());
    }
    if let Some(speed) = body.get("speed") {
        if !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s)) {
            return Err("'speed' must be in 0.25..=4.0".into());
        }
    }
    if let Some(instructions) = body.get("instructions") {
        if !instructions.is_string() {
            return Err("'instructions' must be a string".into());
        }
    }
    if let Some(format) = body.get("stream_format") {
        if format.as_str() != Some("audio") {
            return Err("this fake serves only stream_format 'audio'".into());
        }
    }
    Ok(input.to_string())
}

fn non_empty_str<'a>(obj: &'a Value, field: &str) -> Result<&'a str, String> {
    obj.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("'{field}' must be a non-empty string"))
}

fn bad_request(message: &str) -> Reply {
    error_reply(400, "invalid_request_error", None, message)
}

/// A reply in OpenAI's error envelope.
pub fn error_reply(status: u16, kind: &str, code: Option<&str>, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_rules() {
        let ok = json!({"model": "m", "stream": true, "messages": [
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{}"}
        ]});
        assert_eq!(check_chat_body(&ok), Ok(()));
        let mut no_stream = ok.clone();
        no_stream["stream"] = json!(false);
        assert!(check_chat_body(&no_stream).is_err());
        let mut bad_tool = ok.clone();
        bad_tool["messages"][2] = json!({"role": "tool", "content": "x"});
        assert!(check_chat_body(&bad_tool)
            .unwrap_err()
            .contains("tool_call_id"));
        let mut bad_args = ok;
        bad_args["messages"][1]["tool_calls"][0]["function"]["arguments"] = json!({"a": 1});
        assert!(check_chat_body(&bad_args).is_err());
    }

    #[test]
    fn scripted_streams_keep_their_bytes_when_split() {
        let s = ChatStream::text_reply(&["Hel", "lo"]).split_sizes(&[3, 5]);
        let reply = s.to_reply();
        let sent: Vec<u8> = reply
            .body
            .iter()
            .filter_map(|p| match p {
                BodyPart::Bytes(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(sent, s.body_bytes());
        assert!(reply.body.len() > 10);
    }
}
