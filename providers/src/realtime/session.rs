//! The one session loop of the Realtime family: connect, configure on the server's first
//! event, then pump caller audio, engine commands and server events until the call closes
//! or the session fails. Vendor differences come in as [`Dialect`] data; the behaviour is
//! documented on the `realtime` module.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::{interval_at, sleep_until, timeout, timeout_at, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Error as WsError;
use voxline_codecs::AudioFrame;
use voxline_engine::provider::{
    ProviderError, RealtimeControl, RealtimeEvent, RealtimeIo, RealtimeParams, ToolCallRequest,
};
use voxline_engine::ring::SpeechRing;

use super::audio::{InputEncoder, OutputDecoder, WireFormat};
use super::events::{CallInfo, ServerError, ServerEvent, Severity, TextFamily};
use super::{millis, Dialect, RealtimeTimeouts, Shared};
use crate::net::http::Auth;
use crate::net::secret::ApiKey;
use crate::net::ws::{self, Message, WsRequest, WsSink, WsSource};

/// How many recent items, calls and transcripts the session remembers.
const RECENT: usize = 64;

/// Runs one session to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    params: RealtimeParams,
    io: RealtimeIo,
) -> Result<(), ProviderError> {
    let config = &shared.config;
    let dialect = config.vendor.dialect();
    let format = config.audio.resolve(params.input_rate);
    let session_update = super::session_update(config, &params, format)?;
    let history = super::history_items(dialect, &params);
    let request = WsRequest::new(shared.url.clone())
        .auth(Auth::bearer_if(shared.key.as_ref()))
        .connect_timeout(config.timeouts.connect);
    let connection = ws::connect(dialect.provider, request).await?;
    let RealtimeIo {
        audio,
        control,
        events,
    } = io;
    let session = Session {
        provider: dialect.provider,
        dialect,
        timeouts: config.timeouts,
        key: shared.key.clone(),
        sink: connection.sink,
        events,
        phase: Phase::AwaitHello,
        setup: Some((session_update, history)),
        format,
        encoder: InputEncoder::new(format, config.append_batch, config.max_buffered_audio),
        decoder: OutputDecoder::new(format),
        held: VecDeque::new(),
        response_active: false,
        inflight: None,
        cancel_sent: false,
        queue: VecDeque::new(),
        user_text: Recent::new(RECENT),
        text_family: Recent::new(RECENT),
        item_samples: Recent::new(RECENT),
        call_names: Recent::new(RECENT),
        delivered_calls: Recent::new(RECENT),
        last_error: None,
        last_inbound: Instant::now(),
        muted: false,
        send_failed: false,
    };
    session.drive(connection.stream, audio, control).await
}

/// Where the session is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Connected; waiting for `conversation.created` / `session.created`.
    AwaitHello,
    /// `session.update` sent; waiting for `session.updated`.
    AwaitUpdated,
    /// Configured: audio and commands flow.
    Ready,
    /// Our close frame is out; late events are still delivered.
    Closing,
}

/// What the loop does after one step.
enum Flow {
    Continue,
    /// Close the session politely.
    Close,
    /// The server ended the session.
    End(Result<(), ProviderError>),
}

/// A request for a response, held while another response is running.
#[derive(Clone, Debug, PartialEq)]
enum Request {
    /// A plain `response.create`.
    Create,
    /// Speak this text verbatim (dialect-specific events).
    Say(String),
}

/// A small map of the most recent keys (item ids, call ids), oldest dropped first.
struct Recent<V> {
    cap: usize,
    entries: VecDeque<(String, V)>,
}

impl<V> Recent<V> {
    fn new(cap: usize) -> Self {
        Recent {
            cap: cap.max(1),
            entries: VecDeque::new(),
        }
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn insert(&mut self, key: String, value: V) {
        if let Some(slot) = self.get_mut(&key) {
            *slot = value;
            return;
        }
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        self.entries.remove(at).map(|(_, v)| v)
    }
}

struct Session {
    provider: &'static str,
    dialect: &'static Dialect,
    timeouts: RealtimeTimeouts,
    key: Option<ApiKey>,
    sink: WsSink,
    events: UnboundedSender<RealtimeEvent>,
    phase: Phase,
    /// `session.update` and the history items, sent on the server's first event.
    setup: Option<(Value, Vec<Value>)>,
    format: WireFormat,
    encoder: InputEncoder,
    decoder: OutputDecoder,
    /// Commands received before the session was ready.
    held: VecDeque<RealtimeControl>,
    /// Between `response.created` and `response.done`.
    response_active: bool,
    /// A response request sent and not yet answered by `response.created`.
    inflight: Option<(Request, Instant)>,
    /// `response.cancel` already sent for the active response.
    cancel_sent: bool,
    /// Response requests waiting for the active response to finish.
    queue: VecDeque<Request>,
    /// Caller transcript so far per user item (OpenAI sends deltas).
    user_text: Recent<String>,
    /// The event family each agent item's text is taken from.
    text_family: Recent<TextFamily>,
    /// Agent audio samples received per item, for clamping truncation.
    item_samples: Recent<u64>,
    /// Function names by call id, from `response.output_item.*`.
    call_names: Recent<String>,
    /// Call ids already delivered as `ToolCall`.
    delivered_calls: Recent<()>,
    /// The last recoverable server error, until another event arrives.
    last_error: Option<ServerError>,
    last_inbound: Instant,
    /// While draining after a failed send: nothing more is sent.
    muted: bool,
    send_failed: bool,
}

impl Session {
    async fn drive(
        mut self,
        mut stream: WsSource,
        audio: SpeechRing,
        mut control: UnboundedReceiver<RealtimeControl>,
    ) -> Result<(), ProviderError> {
        let setup_deadline = Instant::now() + self.timeouts.setup;
        let period = self.timeouts.keepalive.max(Duration::from_millis(10));
        let mut keepalive = interval_at(Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut audio_open = true;
        loop {
            // Commands first: a cancel queued before more caller audio must reach the server
            // before that audio can start another response.
            let step = tokio::select! {
                biased;
                command = control.recv() => match command {
                    None | Some(RealtimeControl::Close) => Ok(Flow::Close),
                    Some(command) => self.on_control(command).await,
                },
                message = stream.next() => self.on_message(message).await,
                frame = audio.recv(), if audio_open => match frame {
                    Some(frame) => self.on_audio(&frame, &audio).await,
                    None => {
                        audio_open = false;
                        Ok(Flow::Continue)
                    }
                },
                _ = keepalive.tick() => self.on_keepalive().await,
                _ = sleep_until(setup_deadline), if self.phase < Phase::Ready => {
                    Err(ProviderError::FirstByteTimeout {
                        provider: self.provider.to_string(),
                        after: self.timeouts.setup,
                    })
                }
            };
            match step {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => return self.close(stream, &audio).await,
                Ok(Flow::End(result)) => {
                    // Answer the server's close frame (best effort) before returning.
                    let _ = timeout(Duration::from_millis(200), self.sink.close()).await;
                    return result;
                }
                Err(error) => return Err(self.fail(error, &mut stream).await),
            }
        }
    }

    fn emit(&self, event: RealtimeEvent) {
        // A closed channel means the engine is gone; the command channel ends the session.
        let _ = self.events.send(event);
    }

    async fn send(&mut self, event: Value) -> Result<(), ProviderError> {
        if self.muted {
            return Ok(());
        }
        match self.sink.send(Message::text(event.to_string())).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.send_failed = true;
                Err(ws::map_error(self.provider, e, self.key.as_ref()))
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Caller audio

    async fn on_audio(
        &mut self,
        frame: &AudioFrame,
        ring: &SpeechRing,
    ) -> Result<Flow, ProviderError> {
        self.encoder.push(frame);
        while let Some(frame) = ring.try_pop() {
            self.encoder.push(&frame);
        }
        if self.phase == Phase::Ready {
            self.send_audio(false).await?;
        } else {
            self.encoder.trim();
        }
        Ok(Flow::Continue)
    }

    async fn send_audio(&mut self, flush: bool) -> Result<(), ProviderError> {
        while let Some(audio) = self.encoder.take(flush) {
            self.send(json!({"type": "input_audio_buffer.append", "audio": audio}))
                .await?;
        }
        Ok(())
    }

    async fn on_keepalive(&mut self) -> Result<Flow, ProviderError> {
        if self.last_inbound.elapsed() >= self.timeouts.idle {
            return Err(ProviderError::Closed {
                provider: self.provider.to_string(),
                code: None,
                reason: format!(
                    "no data from the server for {:?} (idle connection)",
                    self.timeouts.idle
                ),
            });
        }
        // A request the server never answered must not hold back the ones after it.
        if let Some((_, since)) = &self.inflight {
            if since.elapsed() >= self.timeouts.setup {
                self.inflight = None;
                self.send_next_request().await?;
            }
        }
        if !self.muted {
            if let Err(e) = self.sink.send(Message::Ping(Default::default())).await {
                self.send_failed = true;
                return Err(ws::map_error(self.provider, e, self.key.as_ref()));
            }
        }
        Ok(Flow::Continue)
    }

    // -----------------------------------------------------------------------------------------
    // Engine commands

    async fn on_control(&mut self, command: RealtimeControl) -> Result<Flow, ProviderError> {
        if self.phase < Phase::Ready {
            self.held.push_back(command);
            return Ok(Flow::Continue);
        }
        match command {
            RealtimeControl::ToolResult {
                call_id,
                output,
                respond,
            } => {
                self.send(json!({
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": call_id, "output": output},
                }))
                .await?;
                if respond {
                    self.request(Request::Create).await?;
                }
            }
            RealtimeControl::Cancel => {
                self.queue.retain(|r| *r != Request::Create);
                self.cancel().await?;
            }
            RealtimeControl::Truncate { item_id, played } => {
                if self.response_active {
                    self.cancel().await?;
                }
                let mut audio_end_ms = millis(played);
                if let Some(samples) = self.item_samples.get(&item_id) {
                    let received_ms = samples * 1000 / u64::from(self.format.rate().hz());
                    audio_end_ms = audio_end_ms.min(received_ms);
                }
                self.send(json!({
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": audio_end_ms,
                }))
                .await?;
            }
            RealtimeControl::InjectText { text, respond } => {
                self.send(json!({
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "user",
                             "content": [{"type": "input_text", "text": text}]},
                }))
                .await?;
                if respond {
                    self.request(Request::Create).await?;
                }
            }
            RealtimeControl::Say { text } => self.request(Request::Say(text)).await?,
            RealtimeControl::Close => return Ok(Flow::Close),
        }
        Ok(Flow::Continue)
    }

    /// One `response.cancel` per running response; with nothing running it is still sent
    /// (the server may be about to start one) and the "nothing to cancel" answer is benign.
    async fn cancel(&mut self) -> Result<(), ProviderError> {
        if self.response_active && self.cancel_sent {
            return Ok(());
        }
        self.send(json!({"type": "response.cancel"})).await?;
        self.cancel_sent = self.response_active;
        Ok(())
    }

    async fn request(&mut self, request: Request) -> Result<(), ProviderError> {
        if self.response_active || self.inflight.is_some() {
            if request == Request::Create && self.queue.contains(&Request::Create) {
                return Ok(());
            }
            self.queue.push_back(request);
            return Ok(());
        }
        self.send_request(request).await
    }

    async fn send_request(&mut self, request: Request) -> Result<(), ProviderError> {
        match &request {
            Request::Create => self.send(json!({"type": "response.create"})).await?,
            Request::Say(text) => {
                for event in (self.dialect.say)(text) {
                    self.send(event).await?;
                }
            }
        }
        self.inflight = Some((request, Instant::now()));
        Ok(())
    }

    async fn send_next_request(&mut self) -> Result<(), ProviderError> {
        if self.phase != Phase::Ready || self.response_active || self.inflight.is_some() {
            return Ok(());
        }
        match self.queue.pop_front() {
            Some(request) => self.send_request(request).await,
            None => Ok(()),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Server events

    async fn on_message(
        &mut self,
        message: Option<Result<Message, WsError>>,
    ) -> Result<Flow, ProviderError> {
        let message = match message {
            None => {
                let base = ProviderError::Closed {
                    provider: self.provider.to_string(),
                    code: None,
                    reason: "the server ended the stream".into(),
                };
                return Ok(self.end(base));
            }
            Some(Err(e)) => {
                let base = ws::map_error(self.provider, e, self.key.as_ref());
                return Ok(self.end(base));
            }
            Some(Ok(message)) => message,
        };
        self.last_inbound = Instant::now();
        match message {
            Message::Text(text) => {
                let value: Value =
                    serde_json::from_str(text.as_str()).map_err(|e| ProviderError::Protocol {
                        provider: self.provider.to_string(),
                        detail: format!(
                            "a server event is not valid JSON ({e}): {}",
                            snippet(text.as_str())
                        ),
                    })?;
                self.on_event(&value).await
            }
            Message::Close(frame) => {
                let base = ws::close_error(self.provider, frame.as_ref());
                Ok(self.end(base))
            }
            // Binary (an unrequested transport), ping, pong and raw frames carry no events.
            _ => Ok(Flow::Continue),
        }
    }

    /// The server ended the connection: fine while closing, otherwise the most telling error.
    fn end(&mut self, base: ProviderError) -> Flow {
        if self.phase == Phase::Closing {
            return Flow::End(Ok(()));
        }
        if let Some(error) = self.last_error.take() {
            return Flow::End(Err(self.server_error(error)));
        }
        let error = match base {
            ProviderError::Closed {
                provider,
                code,
                reason,
            } if self.response_active => ProviderError::Closed {
                provider,
                code,
                reason: format!("{reason}; a response was cut off before response.done"),
            },
            other => other,
        };
        Flow::End(Err(error))
    }

    fn server_error(&self, error: ServerError) -> ProviderError {
        let redact = |text: &str| match &self.key {
            Some(key) => key.redact(text),
            None => text.to_string(),
        };
        ProviderError::Server {
            provider: self.provider.to_string(),
            code: error.code.or(error.kind),
            message: redact(&error.message),
        }
    }

    async fn on_event(&mut self, value: &Value) -> Result<Flow, ProviderError> {
        let event = ServerEvent::parse(value);
        if !matches!(event, ServerEvent::Error(_) | ServerEvent::Ping) {
            self.last_error = None;
        }
        match event {
            ServerEvent::Hello => {
                if self.phase == Phase::AwaitHello {
                    if let Some((update, history)) = self.setup.take() {
                        self.send(update).await?;
                        for item in history {
                            self.send(item).await?;
                        }
                    }
                    self.phase = Phase::AwaitUpdated;
                }
            }
            ServerEvent::SessionUpdated => {
                if self.phase == Phase::AwaitUpdated {
                    return self.on_ready().await;
                }
            }
            ServerEvent::Ping | ServerEvent::Other => {}
            ServerEvent::SpeechStarted => self.emit(RealtimeEvent::SpeechStarted),
            ServerEvent::SpeechStopped => self.emit(RealtimeEvent::SpeechStopped),
            ServerEvent::UserDelta { item_id, delta } => {
                let mut text = self.user_text.remove(&item_id).unwrap_or_default();
                text.push_str(&delta);
                self.user_text.insert(item_id.clone(), text.clone());
                self.emit(RealtimeEvent::UserTranscript {
                    item_id,
                    text,
                    is_final: false,
                });
            }
            ServerEvent::UserText {
                item_id,
                text,
                is_final,
            } => {
                if is_final {
                    self.user_text.remove(&item_id);
                } else {
                    self.user_text.insert(item_id.clone(), text.clone());
                }
                self.emit(RealtimeEvent::UserTranscript {
                    item_id,
                    text,
                    is_final,
                });
            }
            ServerEvent::ResponseCreated => {
                self.response_active = true;
                self.cancel_sent = false;
                self.inflight = None;
            }
            ServerEvent::AudioDelta { key, audio } => {
                // An undecodable delta is skipped: one bad chunk should not end a call.
                if let Ok(samples) = self.decoder.decode(&key, &audio) {
                    if !samples.is_empty() {
                        let total = self.item_samples.get(&key).copied().unwrap_or(0);
                        self.item_samples
                            .insert(key.clone(), total + samples.len() as u64);
                        self.emit(RealtimeEvent::AgentAudio {
                            item_id: key,
                            rate: self.format.rate(),
                            samples,
                        });
                    }
                }
            }
            ServerEvent::TextDelta { key, family, delta } => {
                match self.text_family.get(&key) {
                    Some(owner) if *owner != family => return Ok(Flow::Continue),
                    Some(_) => {}
                    None => self.text_family.insert(key.clone(), family),
                }
                if !delta.is_empty() {
                    self.emit(RealtimeEvent::AgentTranscriptDelta {
                        item_id: key,
                        delta,
                    });
                }
            }
            ServerEvent::CallItem { call, .. } => {
                if let Some(name) = call.name {
                    self.call_names.insert(call.call_id, name);
                }
            }
            ServerEvent::CallDone { call, .. } => self.deliver_call(call),
            ServerEvent::ResponseDone {
                status,
                usage,
                calls,
            } => {
                for call in calls {
                    // A call cut off by a cancel is not run.
                    if call.status.as_deref().is_none_or(|s| s == "completed") {
                        self.deliver_call(call);
                    }
                }
                self.emit(RealtimeEvent::ResponseDone { status, usage });
                self.response_active = false;
                self.cancel_sent = false;
                self.send_next_request().await?;
            }
            ServerEvent::Error(error) => return self.on_error(error).await,
        }
        Ok(Flow::Continue)
    }

    async fn on_ready(&mut self) -> Result<Flow, ProviderError> {
        self.phase = Phase::Ready;
        self.emit(RealtimeEvent::Ready);
        self.send_audio(false).await?;
        while let Some(command) = self.held.pop_front() {
            match self.on_control(command).await? {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Continue)
    }

    /// Delivers a call once it has an id and a name (the name may come from the call's item
    /// event, or only with `response.done`).
    fn deliver_call(&mut self, call: CallInfo) {
        if self.delivered_calls.get(&call.call_id).is_some() {
            return;
        }
        let Some(name) = call
            .name
            .or_else(|| self.call_names.get(&call.call_id).cloned())
        else {
            return;
        };
        self.delivered_calls.insert(call.call_id.clone(), ());
        let arguments = if call.arguments.trim().is_empty() {
            "{}".to_string()
        } else {
            call.arguments
        };
        self.emit(RealtimeEvent::ToolCall(ToolCallRequest {
            id: call.call_id,
            name,
            arguments,
        }));
    }

    async fn on_error(&mut self, error: ServerError) -> Result<Flow, ProviderError> {
        match error.severity() {
            Severity::Benign => {
                if error.is_active_response_conflict() {
                    // The server is busy with a response: ours goes after it.
                    if let Some((request, _)) = self.inflight.take() {
                        self.queue.push_front(request);
                    }
                    self.response_active = true;
                }
                Ok(Flow::Continue)
            }
            Severity::Fatal => Err(self.server_error(error)),
            // The configuration was rejected: the session cannot start.
            Severity::Recoverable if self.phase < Phase::Ready => Err(self.server_error(error)),
            Severity::Recoverable => {
                self.last_error = Some(error);
                if self.inflight.take().is_some() {
                    // Most likely our request failed; later requests must not wait for it.
                    self.send_next_request().await?;
                }
                Ok(Flow::Continue)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Endings

    async fn close(mut self, mut stream: WsSource, ring: &SpeechRing) -> Result<(), ProviderError> {
        // Audio the caller said before the close still goes out.
        while let Some(frame) = ring.try_pop() {
            self.encoder.push(&frame);
        }
        if self.phase == Phase::Ready {
            // Best effort: a broken socket here changes nothing for a session that ends.
            let _ = self.send_audio(true).await;
        }
        self.phase = Phase::Closing;
        self.queue.clear();
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = timeout(
            self.timeouts.close,
            self.sink.send(Message::Close(Some(frame))),
        )
        .await;
        let deadline = Instant::now() + self.timeouts.close;
        loop {
            match timeout_at(deadline, stream.next()).await {
                Err(_) => return Ok(()),
                Ok(message) => match self.on_message(message).await {
                    Ok(Flow::Continue) => {}
                    _ => return Ok(()),
                },
            }
        }
    }

    /// Ends the session with `error`. When a send broke, the events the server sent before
    /// the break are read first: they are delivered, and a server error among them is the
    /// better reason.
    async fn fail(mut self, error: ProviderError, stream: &mut WsSource) -> ProviderError {
        if self.send_failed {
            self.muted = true;
            let deadline = Instant::now() + self.timeouts.close;
            loop {
                match timeout_at(deadline, stream.next()).await {
                    Err(_) => break,
                    Ok(message) => match self.on_message(message).await {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::End(Err(better))) => return better,
                        Ok(_) => break,
                        Err(better) => return better,
                    },
                }
            }
            return match self.end(error) {
                Flow::End(Err(e)) => e,
                _ => ProviderError::Closed {
                    provider: self.provider.to_string(),
                    code: None,
                    reason: "the connection broke".into(),
                },
            };
        }
        let code = match error {
            ProviderError::Protocol { .. } => CloseCode::Protocol,
            _ => CloseCode::Away,
        };
        let frame = CloseFrame {
            code,
            reason: "".into(),
        };
        let _ = timeout(
            Duration::from_millis(200),
            self.sink.send(Message::Close(Some(frame))),
        )
        .await;
        error
    }
}

/// The start of a bad frame for an error message, cut on a character boundary.
fn snippet(text: &str) -> String {
    const MAX: usize = 120;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
