//! TTS adapter for OpenAI's `POST {base}/audio/speech` with `response_format: "pcm"`:
//! the streamed body is raw 24 kHz s16le mono, forwarded as 20 ms pieces as it arrives.
//!
//! One request per batch of text: text that arrives while a request is streaming is
//! joined into the next request, so requests never overlap and the audio stays in order.
//! The endpoint gives no timing information, so no alignment is emitted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use voxline_engine::codecs::SampleRate;
use voxline_engine::provider::{
    BoxFuture, ProviderError, TtsEvent, TtsInput, TtsParams, TtsProvider,
};

use crate::net::backoff::{Backoff, SharedSleeper};
use crate::net::endpoint::{resolve_named, Env, ProcessEnv, Service};
use crate::net::http::{header_map, Auth, HttpClient, HttpTimeouts};
use crate::net::secret::ApiKey;
use crate::pcm::PcmAssembler;

/// The rate of `response_format: "pcm"`.
pub const OPENAI_PCM_RATE: SampleRate = SampleRate::Hz24000;

/// The longest `input` the endpoint accepts, in characters.
pub const MAX_INPUT_CHARS: usize = 4096;

/// Settings for an [`OpenAiTts`]. `Debug` hides the key and extra header values.
#[derive(Clone)]
pub struct OpenAiTtsConfig {
    /// The provider name in errors and [`TtsProvider::name`].
    pub name: String,
    /// The service whose env vars fill in a missing base URL and key; `None` reads none.
    pub env: Option<Service>,
    /// Base URL including the version path (e.g. `https://api.openai.com/v1`).
    pub base_url: Option<String>,
    /// The API key.
    pub api_key: Option<ApiKey>,
    /// `tts-1`, `tts-1-hd`, `gpt-4o-mini-tts`, …
    pub model: String,
    /// A built-in voice name (`alloy`, `marin`, …) or a custom voice id (`voice_…`),
    /// which is sent as `{"id": …}`.
    pub voice: String,
    /// Speaking speed, 0.25–4.0.
    pub speed: Option<f32>,
    /// Style instructions (not for `tts-1`/`tts-1-hd`).
    pub instructions: Option<String>,
    /// TCP connect plus TLS.
    pub connect_timeout: Duration,
    /// From sending a request to its first audio byte.
    pub first_byte_timeout: Duration,
    /// Longest silence mid-body.
    pub idle_timeout: Option<Duration>,
    /// Extra request headers.
    pub extra_headers: Vec<(String, String)>,
    /// Retries of a request before its first byte.
    pub backoff: Backoff,
    /// Samples per `TtsEvent::Audio` piece (480 = 20 ms at 24 kHz).
    pub piece_samples: usize,
}

impl OpenAiTtsConfig {
    /// OpenAI's speech endpoint with this model and voice (`OPENAI_API_KEY`,
    /// `OPENAI_BASE_URL`).
    pub fn new(model: impl Into<String>, voice: impl Into<String>) -> Self {
        let timeouts = HttpTimeouts::default();
        OpenAiTtsConfig {
            name: "openai".into(),
            env: Some(Service::OPENAI),
            base_url: None,
            api_key: None,
            model: model.into(),
            voice: voice.into(),
            speed: None,
            instructions: None,
            connect_timeout: timeouts.connect,
            first_byte_timeout: timeouts.first_byte,
            idle_timeout: timeouts.idle,
            extra_headers: Vec::new(),
            backoff: Backoff::default(),
            piece_samples: OPENAI_PCM_RATE.frame_samples(),
        }
    }
}

impl Default for OpenAiTtsConfig {
    /// `gpt-4o-mini-tts` with the `alloy` voice.
    fn default() -> Self {
        OpenAiTtsConfig::new("gpt-4o-mini-tts", "alloy")
    }
}

impl fmt::Debug for OpenAiTtsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.extra_headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OpenAiTtsConfig")
            .field("name", &self.name)
            .field("env", &self.env.map(|s| s.name))
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("speed", &self.speed)
            .field("instructions", &self.instructions)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("extra_headers", &header_names)
            .field("backoff", &self.backoff)
            .field("piece_samples", &self.piece_samples)
            .finish()
    }
}

/// OpenAI text-to-speech. Cheap to clone; one pooled HTTP client serves every utterance.
#[derive(Clone)]
pub struct OpenAiTts {
    inner: Arc<Inner>,
    sleeper: SharedSleeper,
}

struct Inner {
    name: String,
    url: String,
    key: Option<ApiKey>,
    model: String,
    voice: String,
    speed: Option<f32>,
    instructions: Option<String>,
    headers: HeaderMap,
    client: HttpClient,
    backoff: Backoff,
    piece_samples: usize,
}

impl fmt::Debug for OpenAiTts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiTts")
            .field("name", &self.inner.name)
            .field("url", &self.inner.url)
            .field("model", &self.inner.model)
            .field("voice", &self.inner.voice)
            .field("api_key", &self.inner.key)
            .finish()
    }
}

impl OpenAiTts {
    /// Builds the provider, filling gaps in `config` from the process environment.
    pub fn new(config: OpenAiTtsConfig) -> Result<Self, ProviderError> {
        OpenAiTts::with_env(config, &ProcessEnv)
    }

    /// Builds the provider, filling gaps in `config` from `env`.
    pub fn with_env(config: OpenAiTtsConfig, env: &dyn Env) -> Result<Self, ProviderError> {
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
        if config.voice.trim().is_empty() {
            return Err(config_error("no voice configured".into()));
        }
        if let Some(speed) = config.speed {
            if !(0.25..=4.0).contains(&speed) {
                return Err(config_error(format!("speed {speed} is outside 0.25..=4.0")));
            }
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
        Ok(OpenAiTts {
            inner: Arc::new(Inner {
                url: endpoint.url("/audio/speech"),
                headers: header_map(&config.name, &config.extra_headers)?,
                name: config.name,
                key,
                model: config.model,
                voice: config.voice,
                speed: config.speed,
                instructions: config.instructions.filter(|i| !i.trim().is_empty()),
                client,
                backoff: config.backoff,
                piece_samples: config.piece_samples.max(1),
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
}

impl TtsProvider for OpenAiTts {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn synthesize(
        &self,
        _params: TtsParams,
        input: mpsc::UnboundedReceiver<TtsInput>,
        events: mpsc::UnboundedSender<TtsEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let inner = self.inner.clone();
        let sleeper = self.sleeper.clone();
        Box::pin(async move { inner.run(input, events, sleeper).await })
    }
}

/// Whether the engine still listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    Present,
    Gone,
}

impl Inner {
    async fn run(
        &self,
        mut input: mpsc::UnboundedReceiver<TtsInput>,
        events: mpsc::UnboundedSender<TtsEvent>,
        sleeper: SharedSleeper,
    ) -> Result<(), ProviderError> {
        let mut pending = String::new();
        let mut ended = false;
        while !ended {
            // Wait for text, then take everything else already queued: one request for
            // all the text that arrived while the previous one was streaming.
            match input.recv().await {
                Some(TtsInput::Text(text)) => append_text(&mut pending, &text),
                // A closed input without End means the same: nothing more will come.
                Some(TtsInput::End) | None => ended = true,
            }
            while !ended {
                match input.try_recv() {
                    Ok(TtsInput::Text(text)) => append_text(&mut pending, &text),
                    Ok(TtsInput::End) | Err(TryRecvError::Disconnected) => ended = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            for part in split_input(&pending, MAX_INPUT_CHARS) {
                if self.speak(part, &events, &sleeper).await? == Listener::Gone {
                    return Ok(());
                }
            }
            pending.clear();
        }
        let _ = events.send(TtsEvent::Done);
        Ok(())
    }

    /// One request: streams its audio to `events`. Audio received before a failure is
    /// delivered before the error is returned.
    async fn speak(
        &self,
        text: &str,
        events: &mpsc::UnboundedSender<TtsEvent>,
        sleeper: &SharedSleeper,
    ) -> Result<Listener, ProviderError> {
        let body = SpeechBody {
            model: &self.model,
            input: text,
            voice: match self.voice.strip_prefix("voice_") {
                Some(_) => Voice::Custom { id: &self.voice },
                None => Voice::Named(&self.voice),
            },
            response_format: "pcm",
            speed: self.speed,
            instructions: self.instructions.as_deref(),
        };
        let (mut response, first) = self
            .client
            .open_stream(
                &self.url,
                Auth::bearer_if(self.key.as_ref()),
                &self.headers,
                &body,
                &self.backoff,
                sleeper,
            )
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type.starts_with("application/json") || content_type.starts_with("text/") {
            return Err(ProviderError::Protocol {
                provider: self.name.clone(),
                detail: format!("expected raw PCM audio, got Content-Type {content_type}"),
            });
        }
        let mut assembler = PcmAssembler::new(self.piece_samples);
        let mut listener = Listener::Present;
        let mut send = |samples: Vec<i16>| {
            let audio = TtsEvent::Audio {
                rate: OPENAI_PCM_RATE,
                samples,
            };
            if events.send(audio).is_err() {
                listener = Listener::Gone;
            }
        };
        let mut chunk = first;
        let outcome = loop {
            match chunk {
                Some(bytes) => assembler.push(&bytes, &mut send),
                None => break Ok(()),
            }
            chunk = match response.next_chunk().await {
                Ok(next) => next,
                Err(e) => break Err(e),
            };
        };
        // A half sample left over (odd body length) cannot be played; it is dropped.
        assembler.flush(&mut send);
        outcome.map(|()| listener)
    }
}

/// Appends a text chunk, putting a space between chunks the chunker trimmed.
fn append_text(pending: &mut String, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    let needs_space = !pending.is_empty()
        && !pending.ends_with(char::is_whitespace)
        && !text.starts_with(char::is_whitespace);
    if needs_space {
        pending.push(' ');
    }
    pending.push_str(text);
}

/// Cuts `text` into parts of at most `max_chars` characters, at whitespace where
/// possible; blank parts are dropped.
fn split_input(text: &str, max_chars: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((limit, next)) = rest.char_indices().nth(max_chars) else {
            parts.push(rest);
            break;
        };
        let cut = if next.is_whitespace() {
            limit
        } else {
            rest[..limit]
                .rfind(char::is_whitespace)
                .filter(|&i| i > 0)
                .unwrap_or(limit)
        };
        parts.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
    }
    parts
}

#[derive(Serialize)]
struct SpeechBody<'a> {
    model: &'a str,
    input: &'a str,
    voice: Voice<'a>,
    response_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Voice<'a> {
    Named(&'a str),
    Custom { id: &'a str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_chunks_join_with_one_space() {
        let mut s = String::new();
        append_text(&mut s, "Hello there.");
        append_text(&mut s, "How are you?");
        append_text(&mut s, "  ");
        append_text(&mut s, " Fine.");
        assert_eq!(s, "Hello there. How are you? Fine.");
    }

    #[test]
    fn long_input_splits_at_whitespace() {
        let text = "aaaa bbbb cccc dddd";
        assert_eq!(split_input(text, 9), vec!["aaaa bbbb", "cccc dddd"]);
        assert_eq!(split_input(text, 8), vec!["aaaa", "bbbb", "cccc", "dddd"]);
        assert_eq!(split_input(text, 100), vec![text]);
        assert_eq!(split_input("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(split_input("  ", 3), Vec::<&str>::new());
        let long: String = "é".repeat(10);
        assert!(split_input(&long, 4).iter().all(|p| p.chars().count() <= 4));
    }

    #[test]
    fn custom_voices_are_sent_as_ids() {
        let body = |voice| {
            serde_json::to_value(SpeechBody {
                model: "m",
                input: "i",
                voice,
                response_format: "pcm",
                speed: None,
                instructions: None,
            })
            .unwrap()
        };
        assert_eq!(body(Voice::Named("alloy"))["voice"], "alloy");
        assert_eq!(
            body(Voice::Custom { id: "voice_1" })["voice"],
            serde_json::json!({"id": "voice_1"})
        );
    }
}
