//! LLM adapter for OpenAI Chat Completions streaming and every server that speaks it
//! (xAI, Mistral, Groq, vLLM, llama.cpp, Ollama): `POST {base}/chat/completions` with
//! `stream: true`, read as SSE into text deltas, assembled tool calls, usage and done.
//!
//! Tolerant of what the compatible servers vary in (missing `finish_reason`, `index` or
//! `logprobs`, whole or fragmented tool calls, usage on any chunk, unknown fields), strict
//! about what the engine relies on: a truncated stream or an in-stream error is an error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use voxline_engine::provider::{
    BoxFuture, ChatMessage, LlmEvent, LlmProvider, LlmRequest, ProviderError, Role, TokenUsage,
    ToolCallRequest, ToolSpec,
};

use crate::net::backoff::{Backoff, SharedSleeper};
use crate::net::endpoint::{resolve_named, Env, ProcessEnv, Service};
use crate::net::http::{header_map, Auth, HttpClient, HttpTimeouts};
use crate::net::secret::ApiKey;
use crate::net::sse::{SseEvent, SseParser};

/// Which request field carries the output-token cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_completion_tokens`: what OpenAI's newer models (o-series, gpt-5) require.
    MaxCompletionTokens,
    /// `max_tokens`: the legacy name most compatible servers understand.
    MaxTokens,
}

/// Settings for an [`OpenAiLlm`]. `Debug` hides the key and extra header values.
#[derive(Clone)]
pub struct OpenAiLlmConfig {
    /// The provider name in errors and [`LlmProvider::name`] (`openai`, `xai`, `groq`, …).
    pub name: String,
    /// The service whose env vars fill in a missing base URL and key; `None` reads no
    /// environment (a self-hosted server must not receive an OpenAI key from the env).
    pub env: Option<Service>,
    /// Base URL including the version path (e.g. `https://api.openai.com/v1`).
    pub base_url: Option<String>,
    /// The API key; self-hosted servers may need none.
    pub api_key: Option<ApiKey>,
    /// The model id.
    pub model: String,
    /// Default sampling temperature; a request's own value wins.
    pub temperature: Option<f32>,
    /// Default output-token cap; a request's own value wins.
    pub max_tokens: Option<u32>,
    /// The request field the cap is sent in.
    pub max_tokens_field: MaxTokensField,
    /// TCP connect plus TLS.
    pub connect_timeout: Duration,
    /// From sending the request to the first byte of the stream.
    pub first_byte_timeout: Duration,
    /// Longest silence mid-stream before the stream counts as dropped.
    pub idle_timeout: Option<Duration>,
    /// Send `stream_options: {include_usage: true}`; turn off for servers that reject it.
    pub include_usage: bool,
    /// Extra request headers (`OpenAI-Organization`, `OpenAI-Project`, gateway headers).
    pub extra_headers: Vec<(String, String)>,
    /// Retries before the first byte (429 honouring `Retry-After`, 5xx, timeouts).
    pub backoff: Backoff,
}

impl OpenAiLlmConfig {
    /// OpenAI itself (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
    pub fn openai(model: impl Into<String>) -> Self {
        OpenAiLlmConfig::for_service(Service::OPENAI, model, MaxTokensField::MaxCompletionTokens)
    }

    /// xAI's chat API (`XAI_API_KEY`, `XAI_BASE_URL`).
    pub fn xai(model: impl Into<String>) -> Self {
        OpenAiLlmConfig::for_service(Service::XAI, model, MaxTokensField::MaxTokens)
    }

    /// Mistral's chat API (`MISTRAL_API_KEY`, `MISTRAL_BASE_URL`).
    pub fn mistral(model: impl Into<String>) -> Self {
        OpenAiLlmConfig::for_service(Service::MISTRAL, model, MaxTokensField::MaxTokens)
    }

    /// Groq's chat API (`GROQ_API_KEY`, `GROQ_BASE_URL`).
    pub fn groq(model: impl Into<String>) -> Self {
        OpenAiLlmConfig::for_service(Service::GROQ, model, MaxTokensField::MaxTokens)
    }

    /// Any other OpenAI-compatible server (vLLM, llama.cpp, Ollama, a gateway) at
    /// `base_url`, reading no environment variables.
    pub fn compatible(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        OpenAiLlmConfig {
            name: name.into(),
            env: None,
            base_url: Some(base_url.into()),
            ..OpenAiLlmConfig::for_service(Service::OPENAI, model, MaxTokensField::MaxTokens)
        }
    }

    fn for_service(service: Service, model: impl Into<String>, field: MaxTokensField) -> Self {
        let timeouts = HttpTimeouts::default();
        OpenAiLlmConfig {
            name: service.name.to_string(),
            env: Some(service),
            base_url: None,
            api_key: None,
            model: model.into(),
            temperature: None,
            max_tokens: None,
            max_tokens_field: field,
            connect_timeout: timeouts.connect,
            first_byte_timeout: timeouts.first_byte,
            idle_timeout: timeouts.idle,
            include_usage: true,
            extra_headers: Vec::new(),
            backoff: Backoff::default(),
        }
    }
}

impl fmt::Debug for OpenAiLlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.extra_headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OpenAiLlmConfig")
            .field("name", &self.name)
            .field("env", &self.env.map(|s| s.name))
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("max_tokens_field", &self.max_tokens_field)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("include_usage", &self.include_usage)
            .field("extra_headers", &header_names)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// A chat-completions model behind an OpenAI-compatible endpoint. Cheap to clone; one
/// pooled HTTP client is shared by every request.
#[derive(Clone)]
pub struct OpenAiLlm {
    inner: Arc<Inner>,
    sleeper: SharedSleeper,
}

struct Inner {
    name: String,
    url: String,
    key: Option<ApiKey>,
    model: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    max_tokens_field: MaxTokensField,
    include_usage: bool,
    headers: HeaderMap,
    client: HttpClient,
    backoff: Backoff,
}

impl fmt::Debug for OpenAiLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiLlm")
            .field("name", &self.inner.name)
            .field("url", &self.inner.url)
            .field("model", &self.inner.model)
            .field("api_key", &self.inner.key)
            .finish()
    }
}

impl OpenAiLlm {
    /// Builds the provider, filling gaps in `config` from the process environment.
    pub fn new(config: OpenAiLlmConfig) -> Result<Self, ProviderError> {
        OpenAiLlm::with_env(config, &ProcessEnv)
    }

    /// Builds the provider, filling gaps in `config` from `env`. The public service
    /// needs a key; a custom base URL (a self-hosted server) may go without.
    pub fn with_env(config: OpenAiLlmConfig, env: &dyn Env) -> Result<Self, ProviderError> {
        let name = config.name.clone();
        let config_error = |detail: String| ProviderError::Config {
            provider: name.clone(),
            detail,
        };
        let endpoint = resolve_named(
            &name,
            config.env,
            config.base_url.as_deref(),
            config.api_key.as_ref(),
            env,
        )?;
        if config.model.trim().is_empty() {
            return Err(config_error("no model configured".into()));
        }
        let key = endpoint.api_key.clone();
        let client = HttpClient::new(
            &config.name,
            HttpTimeouts {
                connect: config.connect_timeout,
                first_byte: config.first_byte_timeout,
                idle: config.idle_timeout,
            },
        )?;
        Ok(OpenAiLlm {
            inner: Arc::new(Inner {
                url: endpoint.url("/chat/completions"),
                headers: header_map(&config.name, &config.extra_headers)?,
                name: config.name,
                key,
                model: config.model,
                temperature: config.temperature,
                max_tokens: config.max_tokens,
                max_tokens_field: config.max_tokens_field,
                include_usage: config.include_usage,
                client,
                backoff: config.backoff,
            }),
            sleeper: SharedSleeper::default(),
        })
    }

    /// Replaces how retry waits are slept (tests record them instead of sleeping).
    pub fn with_sleeper(mut self, sleeper: SharedSleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The full URL requests go to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The JSON body this provider sends for `request`.
    pub fn request_body(&self, request: &LlmRequest) -> Result<Value, ProviderError> {
        let body = self.inner.body(request)?;
        serde_json::to_value(&body).map_err(|e| ProviderError::Config {
            provider: self.inner.name.clone(),
            detail: format!("cannot encode the request: {e}"),
        })
    }
}

impl LlmProvider for OpenAiLlm {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn stream(
        &self,
        request: LlmRequest,
        events: mpsc::UnboundedSender<LlmEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let inner = self.inner.clone();
        let sleeper = self.sleeper.clone();
        Box::pin(async move { inner.run(request, events, sleeper).await })
    }
}

impl Inner {
    fn body<'a>(&'a self, request: &'a LlmRequest) -> Result<ChatBody<'a>, ProviderError> {
        let messages = request
            .messages
            .iter()
            .map(|m| wire_message(m).map_err(|detail| self.config_error(detail)))
            .collect::<Result<Vec<_>, _>>()?;
        if messages.is_empty() {
            return Err(self.config_error("the request has no messages".into()));
        }
        let tools: Vec<WireTool<'_>> = request.tools.iter().map(wire_tool).collect();
        let max_tokens = request.max_tokens.or(self.max_tokens);
        let (max_tokens, max_completion_tokens) = match self.max_tokens_field {
            MaxTokensField::MaxTokens => (max_tokens, None),
            MaxTokensField::MaxCompletionTokens => (None, max_tokens),
        };
        Ok(ChatBody {
            model: &self.model,
            stream: true,
            stream_options: self.include_usage.then_some(StreamOptions {
                include_usage: true,
            }),
            messages,
            tools,
            temperature: request.temperature.or(self.temperature),
            max_tokens,
            max_completion_tokens,
        })
    }

    fn config_error(&self, detail: String) -> ProviderError {
        ProviderError::Config {
            provider: self.name.clone(),
            detail,
        }
    }

    async fn run(
        &self,
        request: LlmRequest,
        events: mpsc::UnboundedSender<LlmEvent>,
        sleeper: SharedSleeper,
    ) -> Result<(), ProviderError> {
        let body = self.body(&request)?;
        let (mut response, first) = self
            .client
            .open_stream(
                &self.url,
                Auth::bearer_if(self.key.as_ref()),
                &self.headers,
                &body,
                &self.backoff,
                &sleeper,
            )
            .await?;
        let mut turn = Turn::new(&self.name, events);
        if !turn.emit(LlmEvent::FirstByte) {
            return Ok(());
        }
        let mut parser = SseParser::new();
        let mut chunk = first;
        loop {
            match chunk {
                Some(bytes) => {
                    parser.push(&bytes);
                    while let Some(event) = parser.next_event().map_err(|e| turn.protocol(e))? {
                        turn.on_event(event)?;
                        if turn.done || turn.receiver_gone {
                            break;
                        }
                    }
                }
                None => {
                    if let Some(event) = parser.finish().map_err(|e| turn.protocol(e))? {
                        turn.on_event(event)?;
                    }
                    break;
                }
            }
            if turn.done || turn.receiver_gone {
                break;
            }
            chunk = match response.next_chunk().await {
                Ok(chunk) => chunk,
                // The content is complete once a finish_reason arrived; only the
                // terminator (and perhaps usage) was lost with the connection.
                Err(_) if turn.finished => None,
                Err(e) => return Err(e),
            };
        }
        let drain = turn.done && !turn.receiver_gone;
        let result = turn.complete();
        if drain {
            // Servers end the body right after [DONE]; reading that end keeps the
            // connection (and its TLS session) warm for the next turn.
            response.drain(Duration::from_millis(100)).await;
        }
        result
    }
}

/// The state of one streamed completion.
struct Turn<'a> {
    provider: &'a str,
    events: mpsc::UnboundedSender<LlmEvent>,
    calls: ToolCalls,
    usage: Option<TokenUsage>,
    /// A `finish_reason` arrived for choice 0.
    finished: bool,
    /// `[DONE]` arrived.
    done: bool,
    /// The engine dropped its receiver; stop quietly.
    receiver_gone: bool,
}

impl<'a> Turn<'a> {
    fn new(provider: &'a str, events: mpsc::UnboundedSender<LlmEvent>) -> Self {
        Turn {
            provider,
            events,
            calls: ToolCalls::default(),
            usage: None,
            finished: false,
            done: false,
            receiver_gone: false,
        }
    }

    fn emit(&mut self, event: LlmEvent) -> bool {
        if self.events.send(event).is_err() {
            self.receiver_gone = true;
        }
        !self.receiver_gone
    }

    fn protocol(&self, detail: impl fmt::Display) -> ProviderError {
        ProviderError::Protocol {
            provider: self.provider.to_string(),
            detail: detail.to_string(),
        }
    }

    fn on_event(&mut self, event: SseEvent<'_>) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if event.event == "error" {
            let parsed: Option<Chunk> = serde_json::from_str(data).ok();
            return Err(parsed
                .and_then(|c| c.server_error(self.provider))
                .unwrap_or_else(|| {
                    server_error(self.provider, Some(&Value::String(data.to_string())), None)
                }));
        }
        if data.starts_with("[DONE]") {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| self.protocol(format!("malformed chunk ({e}): {}", preview(data))))?;
        if let Some(err) = chunk.server_error(self.provider) {
            return Err(err);
        }
        if let Some(usage) = chunk
            .usage
            .filter(|u| u.prompt_tokens.is_some() || u.completion_tokens.is_some())
        {
            self.usage = Some(TokenUsage {
                prompt_tokens: usage.prompt_tokens.unwrap_or(0),
                completion_tokens: usage.completion_tokens.unwrap_or(0),
            });
        }
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                let texts = [delta.content, delta.refusal];
                for text in texts.into_iter().flatten().filter_map(content_text) {
                    if !text.is_empty() && !self.emit(LlmEvent::TextDelta(text)) {
                        return Ok(());
                    }
                }
                for fragment in delta.tool_calls.unwrap_or_default() {
                    self.calls.merge(fragment);
                }
            }
            if choice.finish_reason.is_some() {
                self.finished = true;
            }
        }
        Ok(())
    }

    /// Ends the turn: a stream with neither `[DONE]` nor a finish is truncated; otherwise
    /// the assembled tool calls, the usage and `Done` go out, in that order.
    fn complete(mut self) -> Result<(), ProviderError> {
        if self.receiver_gone {
            return Ok(());
        }
        if !self.done && !self.finished {
            return Err(ProviderError::Closed {
                provider: self.provider.to_string(),
                code: None,
                reason: "the stream ended without [DONE] or a finish_reason (truncated)".into(),
            });
        }
        let calls = std::mem::take(&mut self.calls).finish(self.provider)?;
        for call in calls {
            if !self.emit(LlmEvent::ToolCall(call)) {
                return Ok(());
            }
        }
        if let Some(usage) = self.usage {
            self.emit(LlmEvent::Usage(usage));
        }
        self.emit(LlmEvent::Done);
        Ok(())
    }
}

impl Chunk {
    /// An error object inside a 200 stream: `{"error": {...}}` (OpenAI, new vLLM,
    /// llama.cpp), `{"error": "text"}`, or the flat `{"object": "error", "message": ...}`
    /// (old vLLM).
    fn server_error(&self, provider: &str) -> Option<ProviderError> {
        let (message, code) = match &self.error {
            Some(err @ Value::Object(_)) => {
                (err.get("message"), err.get("code").or(err.get("type")))
            }
            Some(message @ Value::String(_)) => (Some(message), self.code.as_ref()),
            _ if self.object.as_deref() == Some("error") => (
                self.message.as_ref(),
                self.code.as_ref().or(self.kind.as_ref()),
            ),
            _ => return None,
        };
        Some(server_error(provider, message, code))
    }
}

fn server_error(provider: &str, message: Option<&Value>, code: Option<&Value>) -> ProviderError {
    let message = match message {
        Some(Value::String(m)) => m.clone(),
        Some(Value::Null) | None => "unspecified error".to_string(),
        Some(other) => other.to_string(),
    };
    let code = match code {
        Some(Value::String(c)) => Some(c.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    ProviderError::Server {
        provider: provider.to_string(),
        code,
        message,
    }
}

/// The text of a `content` delta: a string, or the `text` parts of a content-part array
/// (servers that stream reasoning as typed parts); other parts are not spoken.
fn content_text(content: Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text),
        Value::Array(parts) => {
            let text: String = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            Some(text)
        }
        _ => None,
    }
}

/// The first part of a chunk for an error message.
fn preview(data: &str) -> &str {
    let mut end = data.len().min(120);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    &data[..end]
}

/// Tool calls being assembled from fragments.
#[derive(Default)]
struct ToolCalls {
    calls: Vec<PartialCall>,
}

#[derive(Default)]
struct PartialCall {
    index: Option<u32>,
    id: String,
    name: String,
    arguments: String,
}

impl ToolCalls {
    /// Folds one fragment in. Fragments join the call with the same `index`; a fragment
    /// whose new `id` differs from that call's starts another call (servers that number
    /// every whole call 0). Without an `index`, the `id` decides, else the latest call.
    fn merge(&mut self, fragment: ToolCallFragment) {
        let id = fragment.id.filter(|id| !id.is_empty());
        let position = match fragment.index {
            Some(index) => self
                .calls
                .iter()
                .rposition(|c| c.index == Some(index))
                .filter(|&p| match &id {
                    Some(id) => self.calls[p].id.is_empty() || self.calls[p].id == *id,
                    None => true,
                }),
            None => match &id {
                Some(id) => self.calls.iter().rposition(|c| c.id == *id),
                None => self.calls.len().checked_sub(1),
            },
        };
        let position = position.unwrap_or_else(|| {
            self.calls.push(PartialCall {
                index: fragment.index,
                ..PartialCall::default()
            });
            self.calls.len() - 1
        });
        let call = &mut self.calls[position];
        if let Some(id) = id {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                // Some servers repeat the name on every fragment; others never split it.
                if call.name.is_empty() {
                    call.name = name;
                } else if call.name != name {
                    call.name.push_str(&name);
                }
            }
            match function.arguments {
                Some(Value::String(piece)) => call.arguments.push_str(&piece),
                Some(Value::Null) | None => {}
                // A server that sends the arguments as an object rather than JSON text.
                Some(other) => call.arguments.push_str(&other.to_string()),
            }
        }
    }

    /// The assembled calls in order; every call needs a name, a missing id is made up
    /// and empty arguments become `{}`.
    fn finish(self, provider: &str) -> Result<Vec<ToolCallRequest>, ProviderError> {
        self.calls
            .into_iter()
            .enumerate()
            .map(|(n, call)| {
                if call.name.is_empty() {
                    return Err(ProviderError::Protocol {
                        provider: provider.to_string(),
                        detail: format!("tool call {n} has no function name"),
                    });
                }
                let id = if call.id.is_empty() {
                    format!("call_{n}")
                } else {
                    call.id
                };
                let arguments = if call.arguments.trim().is_empty() {
                    "{}".to_string()
                } else {
                    call.arguments
                };
                Ok(ToolCallRequest {
                    id,
                    name: call.name,
                    arguments,
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types: requests as the API documents them, chunks as tolerant as the servers need.

/// The request. `tool_choice` is left out: every server defaults to `auto` when tools
/// are given, and some older compatible servers reject the field.
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` only for an assistant message that just calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    /// JSON text, as the API wants it (a string, not an object).
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    parameters: &'a Value,
}

fn wire_message(m: &ChatMessage) -> Result<WireMessage<'_>, String> {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let tool_calls: Vec<WireToolCall<'_>> = if m.role == Role::Assistant {
        m.tool_calls
            .iter()
            .map(|c| WireToolCall {
                id: &c.id,
                kind: "function",
                function: WireFunctionCall {
                    name: &c.name,
                    arguments: if c.arguments.trim().is_empty() {
                        "{}"
                    } else {
                        &c.arguments
                    },
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    let tool_call_id = match m.role {
        Role::Tool => Some(
            m.tool_call_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .ok_or("a tool message needs the tool_call_id it answers")?,
        ),
        _ => None,
    };
    let content = if m.content.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(m.content.as_str())
    };
    Ok(WireMessage {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

fn wire_tool(tool: &ToolSpec) -> WireTool<'_> {
    WireTool {
        kind: "function",
        function: WireFunction {
            name: &tool.name,
            description: &tool.description,
            parameters: &tool.parameters,
        },
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
    /// `"chat.completion.chunk"`, or `"error"` in old vLLM's flat error envelope.
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    refusal: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallFragment>>,
}

#[derive(Deserialize)]
struct ToolCallFragment {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}
