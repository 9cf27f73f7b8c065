//! The call core: one phone call as a sans-IO state machine.
//!
//! Inputs are caller speech decisions, provider events, host commands, DTMF and
//! the current call time; outputs are `Action`s (provider requests, events,
//! hang-up) and agent audio frames. It owns no sockets, tasks or clocks.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use voxline_codecs::AudioFrame;

use super::chunker::TextChunker;
use super::events::{CallEvent, CallStatus, EndReason, TurnLatency, Usage};
use super::playout::Playout;
use super::settings::{CallSettings, Direction, ToolKind};
use crate::provider::{
    ChatMessage, LlmEvent, LlmRequest, ProviderError, RealtimeControl, RealtimeEvent, Role,
    SpokenSpan, Stage, SttEvent, ToolCallRequest, TtsEvent,
};
use crate::vad::{VadOutcome, VadTransition};

/// Identifies a provider operation (a model request or a TTS speech); events
/// carrying an id that is no longer current are stale and ignored.
pub type OpId = u64;

/// What the call asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Publish an event on the call's stream.
    Emit(CallEvent),
    /// Ask STT to flush buffered audio into final transcripts.
    SttFinalize,
    /// Start a model request; tag its events with `op`.
    StartLlm {
        /// Operation id.
        op: OpId,
        /// The request.
        request: LlmRequest,
    },
    /// Cancel a model request.
    CancelLlm {
        /// Operation id.
        op: OpId,
    },
    /// Start a TTS speech; tag its events with `op`.
    StartTts {
        /// Operation id.
        op: OpId,
    },
    /// Send text to a TTS speech.
    TtsText {
        /// Operation id.
        op: OpId,
        /// Text, with pronunciation replacements applied.
        text: String,
    },
    /// No more text for a TTS speech.
    TtsEnd {
        /// Operation id.
        op: OpId,
    },
    /// Cancel a TTS speech.
    CancelTts {
        /// Operation id.
        op: OpId,
    },
    /// A command for the realtime session.
    Realtime(RealtimeControl),
    /// Hand the call to another destination (the host's SIP layer does the transfer).
    Transfer {
        /// E.164 number or SIP URI.
        destination: String,
    },
    /// The call is over: stop media and close every provider.
    Hangup {
        /// Why.
        reason: EndReason,
    },
}

/// A host command to a live call (the platform's call-control commands).
#[derive(Clone, Debug, PartialEq)]
pub enum CallCommand {
    /// Add text to the agent's context; optionally make it respond now.
    InjectContext {
        /// The text.
        content: String,
        /// Respond immediately.
        trigger_response: bool,
    },
    /// Speak text verbatim; optionally hang up after.
    Say {
        /// The text.
        content: String,
        /// Hang up once spoken.
        end_after: bool,
    },
    /// End the call, after an optional goodbye.
    EndCall {
        /// Spoken before hanging up.
        message: Option<String>,
    },
    /// Transfer the call, after an optional announcement.
    Transfer {
        /// E.164 number or SIP URI.
        destination: String,
        /// Spoken before transferring.
        message: Option<String>,
    },
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Commands are accepted only while the call is in progress.
    #[error("call is not in progress (status {0:?})")]
    NotActive(CallStatus),
    /// A field was empty or invalid.
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// What to do once a speech has been fully played.
#[derive(Clone, Debug, PartialEq)]
enum AfterSpeech {
    Nothing,
    Hangup(EndReason),
    Transfer(String),
}

/// One agent speech: text streamed to TTS and the audio that came back.
#[derive(Debug)]
struct Speech {
    turn: u64,
    /// Original text per chunk, and what was sent to TTS after pronunciation rules.
    chunks: Vec<(String, String)>,
    spans: Vec<SpokenSpan>,
    text_done: bool,
    audio_done: bool,
    received: Duration,
    played: Duration,
    started: bool,
    /// History entry holding this speech's text, to cut on interruption.
    history_index: Option<usize>,
    after: AfterSpeech,
    /// Realtime item id when the speech comes from a realtime model.
    item_id: Option<String>,
    first_text_at: Option<Duration>,
    first_audio_at: Option<Duration>,
}

impl Speech {
    fn new(turn: u64) -> Self {
        Speech {
            turn,
            chunks: Vec::new(),
            spans: Vec::new(),
            text_done: false,
            audio_done: false,
            received: Duration::ZERO,
            played: Duration::ZERO,
            started: false,
            history_index: None,
            after: AfterSpeech::Nothing,
            item_id: None,
            first_text_at: None,
            first_audio_at: None,
        }
    }

    fn full_text(&self) -> String {
        join_chunks(self.chunks.iter().map(|(o, _)| o.as_str()))
    }

    /// The original text the caller actually heard: from TTS alignment when given,
    /// else proportional to the audio played, cut at a word boundary.
    fn spoken_text(&self) -> String {
        if self.played >= self.received && self.audio_done {
            return self.full_text();
        }
        let sent_total: usize = self.chunks.iter().map(|(_, s)| s.chars().count()).sum();
        let spoken_sent_chars = if !self.spans.is_empty() {
            self.spans
                .iter()
                .filter(|s| s.end <= self.played)
                .map(|s| s.text.chars().count())
                .sum::<usize>()
        } else if self.received.is_zero() {
            0
        } else {
            let estimate_total = if self.audio_done {
                self.received
            } else {
                // Audio still streaming: assume ~14 characters per second of speech.
                self.received
                    .max(Duration::from_millis(sent_total as u64 * 1000 / 14))
            };
            (sent_total as f64 * self.played.as_secs_f64() / estimate_total.as_secs_f64()) as usize
        };
        // Map sent characters back to original chunks.
        let mut remaining = spoken_sent_chars;
        let mut parts: Vec<String> = Vec::new();
        for (orig, sent) in &self.chunks {
            let n = sent.chars().count();
            if remaining >= n {
                parts.push(orig.clone());
                remaining -= n;
            } else {
                let frac = remaining as f64 / n.max(1) as f64;
                let cut = (orig.chars().count() as f64 * frac) as usize;
                let prefix: String = orig.chars().take(cut).collect();
                // Keep only whole words.
                let whole = if orig.chars().nth(cut).is_none_or(|c| c.is_whitespace()) {
                    prefix.trim_end().to_string()
                } else {
                    match prefix.rfind(char::is_whitespace) {
                        Some(p) => prefix[..p].trim_end().to_string(),
                        None => String::new(),
                    }
                };
                if !whole.is_empty() {
                    parts.push(whole);
                }
                break;
            }
        }
        join_chunks(parts.iter().map(|s| s.as_str()))
    }
}

fn join_chunks<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in parts {
        if p.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(p);
    }
    out
}

/// A tool call waiting for the host.
#[derive(Debug)]
struct PendingTool {
    name: String,
    deadline: Duration,
}

/// The agent's current turn.
#[derive(Debug)]
struct AgentTurn {
    id: u64,
    /// The model request in flight, if any.
    llm: Option<OpId>,
    /// Speech currently receiving model text.
    open_speech: Option<OpId>,
    chunker: TextChunker,
    text: String,
    tool_calls: Vec<ToolCallRequest>,
    pending_tools: HashMap<String, PendingTool>,
    /// A built-in tool decided how the turn ends.
    after: AfterSpeech,
}

/// Timestamps of an agent turn answering the caller, reported when its first audio plays.
#[derive(Debug, Clone, Copy)]
struct PendingLatency {
    turn: u64,
    user_stopped_at: Duration,
    committed_at: Duration,
    llm_first_token_at: Option<Duration>,
}

/// What the caller is doing in the current user turn.
#[derive(Debug, Default)]
struct CallerTurn {
    speaking: bool,
    started_at: Option<Duration>,
    stopped_at: Option<Duration>,
    finals: String,
    interim: String,
    final_since_stop: bool,
    words_since_start: u32,
    /// Voiced audio heard since the current speech started (VAD hang-over not counted).
    voiced_since_start: Duration,
}

impl CallerTurn {
    fn text(&self) -> String {
        join_chunks([self.finals.trim(), self.interim.trim()].into_iter())
    }
}

/// An agent pause for possible interruption.
#[derive(Debug, Clone, Copy)]
struct Pause {
    resume_at: Option<Duration>,
}

/// Recording consent in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Consent {
    NotNeeded,
    Waiting { deadline: Duration, repeated: bool },
    Given,
}

/// One call as a sans-IO state machine.
pub struct Call {
    settings: CallSettings,
    status: CallStatus,
    now: Duration,
    next_op: OpId,
    next_turn: u64,
    actions: VecDeque<Action>,
    history: Vec<ChatMessage>,
    caller: CallerTurn,
    agent: Option<AgentTurn>,
    speeches: HashMap<OpId, Speech>,
    /// Speeches in play order.
    speech_order: VecDeque<OpId>,
    playout: Playout,
    pause: Option<Pause>,
    respond_after_speech: bool,
    silence_since: Option<Duration>,
    silence_attempts: u32,
    voicemail_checked: bool,
    consent: Consent,
    usage: Usage,
    started_at: Duration,
    latency: Option<PendingLatency>,
    /// Answered only to turn the caller away: nothing is listened to.
    rejected: bool,
}

/// Voicemail greeting phrases (English and Dutch) checked on the first utterance of outbound calls.
const VOICEMAIL_PHRASES: &[&str] = &[
    "voicemail",
    "leave a message",
    "please record",
    "unavailable",
    "not available",
    "not here",
    "after the tone",
    "after the beep",
    "press star",
    "speak your message",
    "call back later",
    "mailbox",
    "beep",
    "message",
    "voicemail",
    "spreek een bericht in",
    "laat een bericht achter",
    "na de piep",
    "na de toon",
    "niet bereikbaar",
    "niet beschikbaar",
    "ingesproken",
    "bericht",
    "piep",
    "terugbellen",
];

/// Spoken when a tool result does not arrive in time.
const TOOL_TIMEOUT_FALLBACK: &str =
    "I'm sorry, that is taking longer than expected. Could you give me a moment and ask again?";
/// Spoken when a provider fails on a turn (unless the settings give another message).
const DEFAULT_ERROR_MESSAGE: &str =
    "I'm sorry, I had a problem just now. Could you say that again?";
/// How long the caller has to press a key for recording consent.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(10);

impl Call {
    /// A new call in the `ringing` state.
    pub fn new(settings: CallSettings) -> Self {
        let consent =
            if settings.recording_consent.is_some() && settings.direction == Direction::Inbound {
                Consent::Waiting {
                    deadline: Duration::MAX,
                    repeated: false,
                }
            } else {
                Consent::NotNeeded
            };
        let mut history = Vec::new();
        if !settings.system_prompt.is_empty() {
            history.push(ChatMessage::text(
                Role::System,
                settings.system_prompt.clone(),
            ));
        }
        Call {
            settings,
            status: CallStatus::Ringing,
            now: Duration::ZERO,
            next_op: 1,
            next_turn: 1,
            actions: VecDeque::with_capacity(64),
            history,
            caller: CallerTurn::default(),
            agent: None,
            speeches: HashMap::new(),
            speech_order: VecDeque::new(),
            playout: Playout::new(),
            pause: None,
            respond_after_speech: false,
            silence_since: None,
            silence_attempts: 0,
            voicemail_checked: false,
            consent,
            usage: Usage::default(),
            started_at: Duration::ZERO,
            latency: None,
            rejected: false,
        }
    }

    /// The call's settings.
    pub fn settings(&self) -> &CallSettings {
        &self.settings
    }

    /// Current status.
    pub fn status(&self) -> CallStatus {
        self.status
    }

    /// The conversation as the model gets it: system prompt first, then the messages (the
    /// latest ones within [`CallSettings::history_limit`]).
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    /// Usage counters so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// True once the call has ended.
    pub fn is_ended(&self) -> bool {
        matches!(
            self.status,
            CallStatus::Ended | CallStatus::EndedWithError | CallStatus::Transferred
        )
    }

    /// True when caller audio may be sent to STT / the realtime model (not before recording consent).
    pub fn forwards_caller_audio(&self) -> bool {
        self.status == CallStatus::InProgress
            && !self.rejected
            && matches!(self.consent, Consent::NotNeeded | Consent::Given)
    }

    /// Counts caller audio handed to speech recognition (or the realtime model) in the usage
    /// totals; the driver calls it for every frame it forwards.
    pub fn count_forwarded_audio(&mut self, duration: Duration) {
        self.usage.stt_audio_seconds += duration.as_secs_f64();
    }

    /// True while agent audio is queued or being produced.
    pub fn agent_speaking(&self) -> bool {
        !self.speech_order.is_empty()
    }

    /// True when [`Call::pull_agent_frame`] would return audio now (queued and not paused).
    pub fn agent_audio_ready(&self) -> bool {
        !self.playout.is_paused() && !self.playout.is_empty()
    }

    /// Takes the next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn emit(&mut self, event: CallEvent) {
        self.actions.push_back(Action::Emit(event));
    }

    fn op(&mut self) -> OpId {
        let id = self.next_op;
        self.next_op += 1;
        id
    }

    // -----------------------------------------------------------------------------------------
    // Lifecycle

    /// The agent answers: status in-progress, then the greeting (or the consent prompt).
    pub fn start(&mut self, now: Duration) {
        if self.status != CallStatus::Ringing {
            return;
        }
        self.now = now;
        self.started_at = now;
        self.status = CallStatus::InProgress;
        self.emit(CallEvent::Status {
            status: CallStatus::InProgress,
            end_reason: None,
            error: None,
        });
        if let Consent::Waiting { .. } = self.consent {
            let prompt = self.settings.recording_consent.clone().unwrap_or_default();
            self.say_scripted(&prompt, AfterSpeech::Nothing, false);
            self.consent = Consent::Waiting {
                deadline: Duration::MAX,
                repeated: false,
            };
            return;
        }
        self.greet();
    }

    /// Answers only to turn the caller away (assistant-request rejected): speaks
    /// `message` (when not empty), then hangs up with `EndReason::Rejected`.
    pub fn start_rejected(&mut self, now: Duration, message: &str) {
        if self.status != CallStatus::Ringing {
            return;
        }
        self.now = now;
        self.started_at = now;
        self.status = CallStatus::InProgress;
        self.consent = Consent::NotNeeded;
        self.rejected = true;
        self.emit(CallEvent::Status {
            status: CallStatus::InProgress,
            end_reason: None,
            error: None,
        });
        self.say_scripted(message, AfterSpeech::Hangup(EndReason::Rejected), false);
    }

    fn greet(&mut self) {
        if let Some(first) = self.settings.first_message.clone() {
            if self.settings.realtime {
                self.actions
                    .push_back(Action::Realtime(RealtimeControl::Say {
                        text: first.clone(),
                    }));
                self.history
                    .push(ChatMessage::text(Role::Assistant, first.clone()));
                self.emit(CallEvent::Message {
                    role: Role::Assistant,
                    content: first,
                });
            } else {
                self.say_scripted(&first, AfterSpeech::Nothing, true);
            }
        } else {
            self.silence_since = Some(self.now);
        }
    }

    /// The caller (or the network) hung up.
    pub fn caller_hung_up(&mut self, now: Duration) {
        self.now = now;
        self.finish(EndReason::UserHangup, None);
    }

    /// A fatal failure (media or provider) ends the call with an error.
    pub fn fail(&mut self, now: Duration, error: String) {
        self.now = now;
        self.finish(EndReason::Error, Some(error));
    }

    /// Ends the call: cuts open speech, records usage, emits the terminal status, asks for hang-up.
    fn finish(&mut self, reason: EndReason, error: Option<String>) {
        if self.is_ended() {
            return;
        }
        // Whatever was not played is not part of the conversation.
        let open: Vec<OpId> = self.speech_order.iter().copied().collect();
        for op in open {
            self.cut_speech(op, false);
        }
        if let Some(turn) = self.agent.take() {
            if let Some(op) = turn.llm {
                self.actions.push_back(Action::CancelLlm { op });
            }
        }
        self.playout.clear();
        self.status = match (&reason, &error) {
            (EndReason::Transferred, _) => CallStatus::Transferred,
            (_, Some(_)) => CallStatus::EndedWithError,
            _ => CallStatus::Ended,
        };
        self.emit(CallEvent::Usage(self.usage));
        self.emit(CallEvent::Status {
            status: self.status,
            end_reason: Some(reason.clone()),
            error,
        });
        self.actions.push_back(Action::Hangup { reason });
    }

    // -----------------------------------------------------------------------------------------
    // Time

    /// Advances call time; runs every timer (endpointing, tools, silence, max duration, consent).
    pub fn tick(&mut self, now: Duration) {
        self.now = now;
        if self.status != CallStatus::InProgress {
            return;
        }
        // Messages that arrive without a model request (the realtime pipeline) are bounded too.
        self.trim_history();
        if let Some(max) = self.settings.max_duration {
            if now.saturating_sub(self.started_at) >= max {
                self.finish(EndReason::MaxDuration, None);
                return;
            }
        }
        if let Consent::Waiting { deadline, repeated } = self.consent {
            if deadline == Duration::MAX && !self.agent_speaking() {
                self.consent = Consent::Waiting {
                    deadline: now + CONSENT_TIMEOUT,
                    repeated,
                };
            } else if now >= deadline {
                if repeated {
                    self.finish(EndReason::ConsentDeclined, None);
                } else {
                    let prompt = self.settings.recording_consent.clone().unwrap_or_default();
                    self.say_scripted(&prompt, AfterSpeech::Nothing, false);
                    self.consent = Consent::Waiting {
                        deadline: Duration::MAX,
                        repeated: true,
                    };
                }
            }
            return;
        }
        self.check_interruption();
        self.check_endpoint();
        self.check_tools();
        self.check_silence();
    }

    // -----------------------------------------------------------------------------------------
    // Caller audio

    /// One caller frame's VAD outcome, for the frame starting at `at`.
    pub fn on_caller_vad(&mut self, at: Duration, outcome: VadOutcome) {
        self.now = self.now.max(at);
        if !self.forwards_caller_audio() {
            return;
        }
        let frame = Duration::from_millis(voxline_codecs::FRAME_MS as u64);
        match outcome.transition {
            Some(VadTransition::SpeechStarted { at: start }) => {
                self.caller_speech_started(start);
                // The detector already heard this much voice before it declared speech.
                self.caller.voiced_since_start = (at + frame).saturating_sub(start);
            }
            Some(VadTransition::SpeechStopped { at: stop }) => self.caller_speech_stopped(stop),
            None => {
                if self.caller.speaking && outcome.voiced == Some(true) {
                    self.caller.voiced_since_start += frame;
                }
            }
        }
        if self.caller.speaking {
            self.check_interruption();
        }
    }

    fn caller_speech_started(&mut self, at: Duration) {
        self.caller.speaking = true;
        self.caller.started_at.get_or_insert(at);
        self.caller.stopped_at = None;
        self.caller.final_since_stop = false;
        self.caller.words_since_start = 0;
        self.silence_since = None;
        self.silence_attempts = 0;
        self.emit(CallEvent::CallerSpeechStarted);
        if self.settings.realtime {
            return;
        }
        // The caller keeps talking before the agent said anything: fold the answer back into their turn.
        let audible = self
            .speech_order
            .iter()
            .any(|op| self.speeches.get(op).is_some_and(|s| s.started));
        if let Some(turn) = &self.agent {
            if !audible && turn.llm.is_some() && turn.tool_calls.is_empty() {
                self.abandon_turn_before_audio();
                return;
            }
        }
        if audible {
            let pause = Pause { resume_at: None };
            if self.settings.turn.false_interruption_timeout.is_some() && !self.playout.is_paused()
            {
                self.playout.set_paused(true);
                let turn = self.current_speech_turn();
                self.emit(CallEvent::AgentPaused { turn });
            }
            self.pause = Some(pause);
        }
    }

    fn caller_speech_stopped(&mut self, at: Duration) {
        self.caller.speaking = false;
        self.caller.stopped_at = Some(at);
        self.emit(CallEvent::CallerSpeechStopped);
        if self.settings.realtime {
            self.silence_since = Some(at);
            return;
        }
        if let Some(pause) = &mut self.pause {
            if let Some(t) = self.settings.turn.false_interruption_timeout {
                pause.resume_at = Some(at + t);
            }
        }
        if self.pause.is_none() && self.agent.is_none() && !self.agent_speaking() {
            self.actions.push_back(Action::SttFinalize);
        }
    }

    fn current_speech_turn(&self) -> u64 {
        self.speech_order
            .front()
            .and_then(|op| self.speeches.get(op))
            .map(|s| s.turn)
            .unwrap_or(0)
    }

    /// Barge-in and false-interruption rules.
    fn check_interruption(&mut self) {
        let Some(pause) = self.pause else {
            return;
        };
        let rules = self.settings.turn;
        if self.caller.speaking {
            // Count voiced audio, not time: a cough followed by the VAD's hang-over is short.
            let long_enough = self.caller.voiced_since_start >= rules.interruption_min_duration;
            let enough_words = self.caller.words_since_start >= rules.interruption_min_words;
            if long_enough && enough_words {
                self.barge_in();
            }
            return;
        }
        if let Some(resume_at) = pause.resume_at {
            if self.now >= resume_at {
                self.pause = None;
                if self.playout.is_paused() {
                    self.playout.set_paused(false);
                    let turn = self.current_speech_turn();
                    self.emit(CallEvent::AgentResumed { turn });
                }
                // Whatever the caller said was not a turn of its own.
                self.caller = CallerTurn::default();
            }
        }
    }

    /// The caller took the floor: stop audio now, cancel generation, keep only what was heard.
    fn barge_in(&mut self) {
        self.pause = None;
        self.playout.clear();
        let ops: Vec<OpId> = self.speech_order.iter().copied().collect();
        for op in ops {
            self.cut_speech(op, true);
        }
        if let Some(turn) = self.agent.take() {
            if let Some(op) = turn.llm {
                self.actions.push_back(Action::CancelLlm { op });
            }
            self.close_pending_tools(&turn, "cancelled: the caller interrupted");
        }
        self.respond_after_speech = false;
        if self.settings.realtime {
            self.actions
                .push_back(Action::Realtime(RealtimeControl::Cancel));
        }
    }

    /// Stops a speech: cancels its TTS and cuts its history entry to what was played.
    fn cut_speech(&mut self, op: OpId, interrupted: bool) {
        self.speech_order.retain(|&o| o != op);
        self.playout.discard(op);
        let Some(speech) = self.speeches.remove(&op) else {
            return;
        };
        let spoken = speech.spoken_text();
        let full = speech.full_text();
        if (!speech.audio_done || !speech.text_done) && speech.item_id.is_none() {
            self.actions.push_back(Action::CancelTts { op });
        }
        if let (Some(item_id), true) = (&speech.item_id, interrupted) {
            self.actions
                .push_back(Action::Realtime(RealtimeControl::Truncate {
                    item_id: item_id.clone(),
                    played: speech.played,
                }));
        }
        self.commit_speech_text(&speech, spoken.clone());
        if interrupted && speech.started {
            self.emit(CallEvent::AgentInterrupted {
                turn: speech.turn,
                spoken,
                full,
            });
        } else if speech.started {
            self.emit(CallEvent::AgentSpeechStopped {
                turn: speech.turn,
                text: spoken,
            });
        }
    }

    fn commit_speech_text(&mut self, speech: &Speech, spoken: String) {
        match speech.history_index {
            Some(i) => {
                if let Some(m) = self.history.get_mut(i) {
                    m.content = spoken.clone();
                }
            }
            None if !spoken.is_empty() => {
                self.history
                    .push(ChatMessage::text(Role::Assistant, spoken.clone()));
            }
            None => return,
        }
        if !spoken.is_empty() {
            self.emit(CallEvent::Message {
                role: Role::Assistant,
                content: spoken,
            });
        }
    }

    fn abandon_turn_before_audio(&mut self) {
        let Some(turn) = self.agent.take() else {
            return;
        };
        if let Some(op) = turn.llm {
            self.actions.push_back(Action::CancelLlm { op });
        }
        let ops: Vec<OpId> = self.speech_order.iter().copied().collect();
        for op in ops {
            if self.speeches.get(&op).is_some_and(|s| s.turn == turn.id) {
                self.speech_order.retain(|&o| o != op);
                self.playout.discard(op);
                self.speeches.remove(&op);
                self.actions.push_back(Action::CancelTts { op });
            }
        }
        // Put the committed user text back so the next commit answers everything at once.
        if let Some(last) = self.history.last() {
            if last.role == Role::User {
                let text = last.content.clone();
                self.history.pop();
                self.caller.finals =
                    join_chunks([text.as_str(), self.caller.finals.as_str()].into_iter());
                // Readers drop the message: it comes back, extended, when the turn is committed.
                self.emit(CallEvent::MessageRetracted {
                    role: Role::User,
                    content: text,
                });
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Speech recognition and endpointing

    /// An event from the STT session.
    pub fn on_stt(&mut self, now: Duration, event: SttEvent) {
        self.now = now;
        if !self.forwards_caller_audio() {
            return;
        }
        match event {
            SttEvent::Transcript(t) => {
                let text = t.text.trim().to_string();
                if text.is_empty() {
                    if t.is_final {
                        self.caller.interim.clear();
                    }
                    return;
                }
                let words = text.split_whitespace().count() as u32;
                self.emit(CallEvent::Transcript {
                    text: text.clone(),
                    is_final: t.is_final,
                });
                if t.is_final {
                    self.caller.finals =
                        join_chunks([self.caller.finals.as_str(), text.as_str()].into_iter());
                    self.caller.interim.clear();
                    self.caller.words_since_start = self.caller.words_since_start.max(words);
                    if !self.caller.speaking {
                        self.caller.final_since_stop = true;
                    }
                    if t.speech_final && !self.caller.speaking && self.caller.stopped_at.is_none() {
                        // The recogniser heard an utterance end that VAD missed.
                        self.caller.stopped_at = Some(now);
                        self.caller.final_since_stop = true;
                    }
                } else {
                    self.caller.words_since_start = self.caller.words_since_start.max(words);
                    self.caller.interim = text;
                }
                self.silence_since = None;
                self.check_interruption();
                self.check_endpoint();
            }
            SttEvent::Failed(err) => self.provider_failed(Stage::Stt, err),
            SttEvent::Reconnecting { error, .. } => self.emit(CallEvent::ProviderError {
                stage: Stage::Stt,
                message: error.to_string(),
            }),
            SttEvent::Ready | SttEvent::SpeechStarted | SttEvent::UtteranceEnd => {}
        }
    }

    fn check_endpoint(&mut self) {
        if self.caller.speaking || self.pause.is_some() {
            return;
        }
        let Some(stopped) = self.caller.stopped_at else {
            return;
        };
        let rules = self.settings.turn;
        let waited = self.now.saturating_sub(stopped);
        let has_final = self.caller.final_since_stop && !self.caller.finals.trim().is_empty();
        let commit = (has_final && waited >= rules.endpointing_min_delay)
            || waited >= rules.endpointing_max_delay;
        if !commit {
            return;
        }
        let text = self.caller.text();
        let caller = std::mem::take(&mut self.caller);
        if text.is_empty() {
            self.silence_since.get_or_insert(stopped);
            return;
        }
        self.commit_user_turn(text, caller.stopped_at);
    }

    fn commit_user_turn(&mut self, text: String, stopped_at: Option<Duration>) {
        self.history
            .push(ChatMessage::text(Role::User, text.clone()));
        self.emit(CallEvent::Message {
            role: Role::User,
            content: text.clone(),
        });
        if self.settings.direction == Direction::Outbound
            && self.settings.voicemail.is_some()
            && !self.voicemail_checked
        {
            self.voicemail_checked = true;
            if is_voicemail(&text) {
                self.emit(CallEvent::VoicemailDetected { transcript: text });
                let message = self.settings.voicemail.clone().flatten();
                match message {
                    Some(m) if !m.trim().is_empty() => {
                        self.say_scripted(&m, AfterSpeech::Hangup(EndReason::Voicemail), false)
                    }
                    _ => self.finish(EndReason::Voicemail, None),
                }
                return;
            }
        }
        self.voicemail_checked = true;
        self.begin_llm_turn(stopped_at);
    }

    // -----------------------------------------------------------------------------------------
    // Agent turns

    fn begin_llm_turn(&mut self, user_stopped_at: Option<Duration>) {
        if let Some(old) = self.agent.take() {
            if let Some(op) = old.llm {
                self.actions.push_back(Action::CancelLlm { op });
            }
        }
        let id = self.next_turn;
        self.next_turn += 1;
        self.agent = Some(AgentTurn {
            id,
            llm: None,
            open_speech: None,
            chunker: TextChunker::new(),
            text: String::new(),
            tool_calls: Vec::new(),
            pending_tools: HashMap::new(),
            after: AfterSpeech::Nothing,
        });
        self.latency = user_stopped_at.map(|stopped| PendingLatency {
            turn: id,
            user_stopped_at: stopped,
            committed_at: self.now,
            llm_first_token_at: None,
        });
        self.request_llm();
    }

    /// Drops the oldest messages beyond [`CallSettings::history_limit`]. The system prompt
    /// stays; a message a speech will still cut to what was heard stays (with everything
    /// after it); and the kept messages never start with a tool result whose call is gone.
    fn trim_history(&mut self) {
        let Some(limit) = self.settings.history_limit.messages() else {
            return;
        };
        let pinned = usize::from(!self.settings.system_prompt.is_empty()).min(self.history.len());
        if self.history.len() <= pinned + limit {
            return;
        }
        // Tool results stay with the assistant message that called them: the window grows
        // back to it rather than starting with an answer to a call the model cannot see.
        let mut cut = self.history.len() - limit;
        while cut > pinned && self.history[cut].role == Role::Tool {
            cut -= 1;
        }
        if cut == pinned {
            return;
        }
        let referenced = self
            .speeches
            .values()
            .filter_map(|s| s.history_index)
            .min()
            .unwrap_or(usize::MAX);
        if cut > referenced {
            // Try again once that speech is done.
            return;
        }
        let removed = cut - pinned;
        self.history.drain(pinned..cut);
        for speech in self.speeches.values_mut() {
            if let Some(i) = speech.history_index.as_mut() {
                *i -= removed;
            }
        }
    }

    fn request_llm(&mut self) {
        self.trim_history();
        let op = self.op();
        let request = LlmRequest {
            messages: self.history.clone(),
            tools: self.settings.tool_specs(),
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
        };
        if let Some(turn) = &mut self.agent {
            turn.llm = Some(op);
            turn.text.clear();
            turn.tool_calls.clear();
            turn.chunker = TextChunker::new();
            turn.open_speech = None;
        }
        self.actions.push_back(Action::StartLlm { op, request });
    }

    /// An event from model request `op`.
    pub fn on_llm(&mut self, now: Duration, op: OpId, event: LlmEvent) {
        self.now = now;
        let Some(turn) = self.agent.as_mut().filter(|t| t.llm == Some(op)) else {
            return; // stale: the turn was cancelled or replaced
        };
        if matches!(event, LlmEvent::TextDelta(_) | LlmEvent::ToolCall(_)) {
            if let Some(l) = self.latency.as_mut().filter(|l| l.turn == turn.id) {
                l.llm_first_token_at.get_or_insert(now);
            }
        }
        match event {
            LlmEvent::FirstByte => {}
            LlmEvent::TextDelta(delta) => {
                turn.text.push_str(&delta);
                let chunks = turn.chunker.push(&delta);
                for chunk in chunks {
                    self.speak_turn_chunk(chunk);
                }
            }
            LlmEvent::ToolCall(call) => {
                turn.tool_calls.push(call);
            }
            LlmEvent::Usage(u) => {
                self.usage.llm_prompt_tokens += u.prompt_tokens;
                self.usage.llm_completion_tokens += u.completion_tokens;
            }
            LlmEvent::Done => self.llm_done(),
        }
    }

    /// Model request `op` failed.
    pub fn on_llm_error(&mut self, now: Duration, op: OpId, error: ProviderError) {
        self.now = now;
        if self.agent.as_ref().is_none_or(|t| t.llm != Some(op)) {
            return;
        }
        self.provider_failed(Stage::Llm, error);
    }

    fn llm_done(&mut self) {
        let Some(turn) = self.agent.as_mut() else {
            return;
        };
        turn.llm = None;
        let rest = turn.chunker.finish();
        if let Some(rest) = rest {
            self.speak_turn_chunk(rest);
        }
        let Some(turn) = self.agent.as_mut() else {
            return;
        };
        let calls = std::mem::take(&mut turn.tool_calls);
        let text = std::mem::take(&mut turn.text);
        let open = turn.open_speech.take();
        if let Some(op) = open {
            self.actions.push_back(Action::TtsEnd { op });
            if let Some(s) = self.speeches.get_mut(&op) {
                s.text_done = true;
            }
        }
        if text.trim().is_empty() && calls.is_empty() {
            self.agent = None;
            self.after_agent_idle();
            return;
        }
        // The assistant message is committed now (tool calls need it in order) and cut later if interrupted.
        let index = self.history.len();
        let mut message = ChatMessage::text(Role::Assistant, text.trim().to_string());
        message.tool_calls = calls.clone();
        self.history.push(message);
        if let Some(op) = open {
            if let Some(s) = self.speeches.get_mut(&op) {
                s.history_index = Some(index);
            }
        }
        if calls.is_empty() {
            if self.contains_end_phrase(&text) {
                self.set_turn_after(AfterSpeech::Hangup(EndReason::AssistantEnded));
            }
            self.finish_turn_when_spoken(open);
            return;
        }
        self.run_tool_calls(calls);
    }

    fn contains_end_phrase(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        self.settings
            .end_call_phrases
            .iter()
            .any(|p| !p.trim().is_empty() && lower.contains(&p.to_lowercase()))
    }

    fn set_turn_after(&mut self, after: AfterSpeech) {
        if let Some(t) = &mut self.agent {
            t.after = after;
        }
    }

    /// The model's reply is complete: once its last speech has played, apply the turn's ending.
    fn finish_turn_when_spoken(&mut self, last_speech: Option<OpId>) {
        let Some(turn) = self.agent.take() else {
            return;
        };
        match last_speech.and_then(|op| self.speeches.get_mut(&op)) {
            Some(speech) => speech.after = turn.after,
            None => self.apply_after(turn.after),
        }
        self.after_agent_idle();
    }

    fn apply_after(&mut self, after: AfterSpeech) {
        match after {
            AfterSpeech::Nothing => {}
            AfterSpeech::Hangup(reason) => self.finish(reason, None),
            AfterSpeech::Transfer(destination) => {
                self.emit(CallEvent::Transfer {
                    destination: destination.clone(),
                });
                self.actions.push_back(Action::Transfer { destination });
                self.finish(EndReason::Transferred, None);
            }
        }
    }

    fn after_agent_idle(&mut self) {
        if self.respond_after_speech && self.agent.is_none() && self.speech_order.is_empty() {
            self.respond_after_speech = false;
            self.begin_llm_turn(None);
        }
    }

    /// Sends one chunk of model text to the turn's open speech (starting it if needed).
    fn speak_turn_chunk(&mut self, chunk: String) {
        let Some(turn_id) = self.agent.as_ref().map(|t| t.id) else {
            return;
        };
        let op = match self.agent.as_ref().and_then(|t| t.open_speech) {
            Some(op) => op,
            None => {
                let op = self.start_speech(turn_id);
                if let Some(t) = &mut self.agent {
                    t.open_speech = Some(op);
                }
                op
            }
        };
        self.send_speech_text(op, chunk);
    }

    fn start_speech(&mut self, turn: u64) -> OpId {
        let op = self.op();
        self.speeches.insert(op, Speech::new(turn));
        self.speech_order.push_back(op);
        self.actions.push_back(Action::StartTts { op });
        op
    }

    fn send_speech_text(&mut self, op: OpId, chunk: String) {
        let sent = self.settings.pronounce(&chunk);
        self.usage.tts_characters += sent.chars().count() as u64;
        let now = self.now;
        if let Some(s) = self.speeches.get_mut(&op) {
            s.chunks.push((chunk, sent.clone()));
            s.first_text_at.get_or_insert(now);
        }
        self.actions.push_back(Action::TtsText { op, text: sent });
    }

    /// Speaks fixed text (greeting, `say`, prompts) as its own turn.
    fn say_scripted(&mut self, text: &str, after: AfterSpeech, interruptible: bool) {
        let _ = interruptible;
        let text = text.trim();
        if text.is_empty() {
            self.apply_after(after);
            return;
        }
        let turn = self.next_turn;
        self.next_turn += 1;
        let op = self.start_speech(turn);
        self.send_speech_text(op, text.to_string());
        self.actions.push_back(Action::TtsEnd { op });
        if let Some(s) = self.speeches.get_mut(&op) {
            s.text_done = true;
            s.after = after;
        }
    }

    /// An event from TTS speech `op`.
    pub fn on_tts(&mut self, now: Duration, op: OpId, event: TtsEvent) {
        self.now = now;
        let Some(speech) = self.speeches.get_mut(&op) else {
            return; // stale: cancelled speech
        };
        match event {
            TtsEvent::Audio { rate, samples } => {
                speech.first_audio_at.get_or_insert(now);
                speech.received +=
                    Duration::from_micros(samples.len() as u64 * 1_000_000 / rate.hz() as u64);
                self.playout.push(op, rate, samples);
            }
            TtsEvent::Alignment(spans) => speech.spans.extend(spans),
            TtsEvent::Done => {
                speech.audio_done = true;
                self.maybe_finish_speech(op);
            }
        }
    }

    /// TTS speech `op` failed.
    pub fn on_tts_error(&mut self, now: Duration, op: OpId, error: ProviderError) {
        self.now = now;
        if !self.speeches.contains_key(&op) {
            return;
        }
        if let Some(s) = self.speeches.get_mut(&op) {
            s.audio_done = true;
            s.text_done = true;
        }
        self.emit(CallEvent::ProviderError {
            stage: Stage::Tts,
            message: error.to_string(),
        });
        self.maybe_finish_speech(op);
    }

    fn maybe_finish_speech(&mut self, op: OpId) {
        let Some(speech) = self.speeches.get(&op) else {
            return;
        };
        if !(speech.audio_done && speech.text_done) || self.playout.has(op) {
            return;
        }
        let Some(speech) = self.speeches.remove(&op) else {
            return;
        };
        self.speech_order.retain(|&o| o != op);
        let text = speech.full_text();
        self.commit_speech_text(&speech, text.clone());
        if speech.started {
            self.emit(CallEvent::AgentSpeechStopped {
                turn: speech.turn,
                text,
            });
        }
        if self.speech_order.is_empty() {
            self.silence_since = Some(self.now);
        }
        if let Consent::Waiting { deadline, repeated } = self.consent {
            if deadline == Duration::MAX {
                self.consent = Consent::Waiting {
                    deadline: self.now + CONSENT_TIMEOUT,
                    repeated,
                };
            }
        }
        self.apply_after(speech.after);
        self.after_agent_idle();
    }

    /// The next 20 ms of agent audio, written into `out`; `None` when the agent is silent.
    /// Called once per frame by the media clock; never allocates.
    pub fn pull_agent_frame(&mut self, now: Duration, out: &mut AudioFrame) -> Option<u64> {
        self.now = now;
        // The earliest unfinished speech plays first; a later one waits even if its audio is here.
        let head = *self.speech_order.front()?;
        let op = self.playout.pull_from(head, out)?;
        let frame = Duration::from_millis(voxline_codecs::FRAME_MS as u64);
        self.usage.agent_audio_seconds += frame.as_secs_f64();
        let mut report = None;
        if let Some(speech) = self.speeches.get_mut(&op) {
            speech.played += frame;
            if !speech.started {
                speech.started = true;
                report = Some(speech.turn);
            }
        }
        if let Some(turn) = report {
            self.emit(CallEvent::AgentSpeechStarted { turn });
            self.report_latency(op);
        }
        if !self.playout.has(op) {
            self.maybe_finish_speech(op);
        }
        Some(op)
    }

    fn report_latency(&mut self, op: OpId) {
        let now = self.now;
        let Some(speech) = self.speeches.get(&op) else {
            return;
        };
        let Some(pending) = self.latency.filter(|l| l.turn == speech.turn) else {
            return;
        };
        self.latency = None;
        let stopped = pending.user_stopped_at;
        let ms = |d: Duration| d.as_millis() as u64;
        let latency = TurnLatency {
            voice_to_voice_ms: ms(now.saturating_sub(stopped)),
            endpointing_ms: ms(pending.committed_at.saturating_sub(stopped)),
            llm_first_token_ms: pending
                .llm_first_token_at
                .map(|a| ms(a.saturating_sub(pending.committed_at))),
            tts_first_audio_ms: speech
                .first_audio_at
                .zip(speech.first_text_at)
                .map(|(a, b)| ms(a.saturating_sub(b))),
        };
        self.emit(CallEvent::Latency {
            turn: pending.turn,
            latency,
        });
    }

    // -----------------------------------------------------------------------------------------
    // Tools

    fn run_tool_calls(&mut self, calls: Vec<ToolCallRequest>) {
        let now = self.now;
        let mut waiting = false;
        for call in calls {
            let args: serde_json::Value =
                serde_json::from_str(if call.arguments.trim().is_empty() {
                    "{}"
                } else {
                    &call.arguments
                })
                .unwrap_or_else(|_| serde_json::json!({ "_raw": call.arguments }));
            let kind = self.settings.tool(&call.name).map(|t| t.kind.clone());
            match kind {
                Some(ToolKind::EndCall) => {
                    self.tool_message(&call.id, "{\"status\":\"ending call\"}");
                    let message = self.settings.end_call_message.clone();
                    self.set_turn_after(AfterSpeech::Hangup(EndReason::AssistantEnded));
                    if let Some(m) = message {
                        self.speak_turn_chunk(m);
                    }
                }
                Some(ToolKind::Transfer { destinations }) => {
                    let wanted = args
                        .get("destination")
                        .or_else(|| args.get("number"))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default();
                    let dest = destinations
                        .iter()
                        .find(|d| d.number == wanted)
                        .or_else(|| destinations.first())
                        .cloned();
                    match dest {
                        Some(d) => {
                            self.tool_message(&call.id, "{\"status\":\"transferring\"}");
                            self.set_turn_after(AfterSpeech::Transfer(d.number.clone()));
                            if let Some(m) = d.message {
                                self.speak_turn_chunk(m);
                            }
                        }
                        None => self.tool_message(
                            &call.id,
                            "{\"error\":\"no transfer destination configured\"}",
                        ),
                    }
                }
                Some(ToolKind::Function {
                    is_async,
                    message,
                    timeout,
                }) => {
                    self.emit(CallEvent::ToolCall {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        arguments: args,
                        is_async,
                    });
                    if let Some(m) = message {
                        self.speak_turn_chunk(m);
                    }
                    if is_async {
                        self.tool_message(&call.id, "{\"status\":\"started\"}");
                    } else {
                        waiting = true;
                        if let Some(t) = &mut self.agent {
                            t.pending_tools.insert(
                                call.id.clone(),
                                PendingTool {
                                    name: call.name.clone(),
                                    deadline: now + timeout,
                                },
                            );
                        }
                    }
                }
                None => {
                    let err = format!(
                        "{{\"error\":\"unknown tool {}\"}}",
                        call.name.replace('"', "'")
                    );
                    self.tool_message(&call.id, &err);
                }
            }
        }
        // Close the speech that carried the tool's spoken message.
        if let Some(op) = self.agent.as_mut().and_then(|t| t.open_speech.take()) {
            self.actions.push_back(Action::TtsEnd { op });
            if let Some(s) = self.speeches.get_mut(&op) {
                s.text_done = true;
            }
        }
        let after = self
            .agent
            .as_ref()
            .map(|t| t.after.clone())
            .unwrap_or(AfterSpeech::Nothing);
        if after != AfterSpeech::Nothing {
            let last = self.speech_order.back().copied();
            self.finish_turn_when_spoken(last);
        } else if !waiting {
            self.request_llm();
        }
    }

    fn tool_message(&mut self, id: &str, content: &str) {
        self.history.push(ChatMessage {
            role: Role::Tool,
            content: content.to_string(),
            tool_calls: Vec::new(),
            tool_call_id: Some(id.to_string()),
        });
    }

    /// The host's result for tool call `id`; stale or unknown ids are ignored (returns false).
    pub fn on_tool_result(&mut self, now: Duration, id: &str, result: serde_json::Value) -> bool {
        self.now = now;
        if self.settings.realtime {
            return self.realtime_tool_result(id, result);
        }
        let Some(pending) = self.agent.as_mut().and_then(|t| t.pending_tools.remove(id)) else {
            return false;
        };
        let content = match &result {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.tool_message(id, &content);
        self.emit(CallEvent::ToolResult {
            id: id.to_string(),
            name: pending.name,
            result,
            timed_out: false,
        });
        if self
            .agent
            .as_ref()
            .is_some_and(|t| t.pending_tools.is_empty())
        {
            self.request_llm();
        }
        true
    }

    fn check_tools(&mut self) {
        let now = self.now;
        let Some(turn) = &mut self.agent else {
            return;
        };
        let expired: Vec<String> = turn
            .pending_tools
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in expired {
            let Some(p) = self
                .agent
                .as_mut()
                .and_then(|t| t.pending_tools.remove(&id))
            else {
                continue;
            };
            self.tool_message(&id, "{\"error\":\"the tool did not answer in time\"}");
            self.emit(CallEvent::ToolResult {
                id,
                name: p.name,
                result: serde_json::json!({"error": "timeout"}),
                timed_out: true,
            });
        }
        if self
            .agent
            .as_ref()
            .is_some_and(|t| t.pending_tools.is_empty())
        {
            self.agent = None;
            self.say_scripted(TOOL_TIMEOUT_FALLBACK, AfterSpeech::Nothing, true);
        }
    }

    fn close_pending_tools(&mut self, turn: &AgentTurn, why: &str) {
        for id in turn.pending_tools.keys() {
            self.tool_message(id, &serde_json::json!({ "error": why }).to_string());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Silence handling

    fn check_silence(&mut self) {
        let Some(cfg) = self.settings.silence.as_ref() else {
            return;
        };
        if self.agent.is_some()
            || self.agent_speaking()
            || self.caller.speaking
            || self.caller.stopped_at.is_some()
        {
            return;
        }
        let Some(since) = self.silence_since else {
            return;
        };
        let wait = if self.silence_attempts == 0 {
            cfg.first_check
        } else {
            cfg.interval
        };
        if self.now.saturating_sub(since) < wait {
            return;
        }
        // Only a check that fires pays for copying the settings.
        let cfg = cfg.clone();
        self.silence_attempts += 1;
        self.silence_since = None;
        if self.silence_attempts >= cfg.max_attempts.max(1) {
            match cfg.final_message.clone() {
                Some(m) => {
                    self.say_scripted(&m, AfterSpeech::Hangup(EndReason::SilenceTimeout), false)
                }
                None => self.finish(EndReason::SilenceTimeout, None),
            }
            return;
        }
        let idx = (self.silence_attempts as usize - 1).min(cfg.messages.len().saturating_sub(1));
        let message = cfg
            .messages
            .get(idx)
            .cloned()
            .unwrap_or_else(|| "Are you still there?".to_string());
        let attempts = self.silence_attempts;
        self.say_scripted(&message, AfterSpeech::Nothing, true);
        self.silence_attempts = attempts;
    }

    // -----------------------------------------------------------------------------------------
    // Errors

    fn provider_failed(&mut self, stage: Stage, error: ProviderError) {
        self.emit(CallEvent::ProviderError {
            stage,
            message: error.to_string(),
        });
        match stage {
            Stage::Stt | Stage::Realtime => {
                self.finish(EndReason::Error, Some(format!("{stage:?} failed: {error}")));
            }
            Stage::Llm | Stage::Tts => {
                // One failed turn does not end the call: apologise and listen again.
                if let Some(turn) = self.agent.take() {
                    self.close_pending_tools(&turn, "the model failed");
                }
                let message = self
                    .settings
                    .error_message
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ERROR_MESSAGE.to_string());
                self.say_scripted(&message, AfterSpeech::Nothing, true);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Host commands and DTMF

    /// Applies a host command.
    pub fn on_command(&mut self, now: Duration, command: CallCommand) -> Result<(), CommandError> {
        self.now = now;
        if self.status != CallStatus::InProgress {
            return Err(CommandError::NotActive(self.status));
        }
        match command {
            CallCommand::InjectContext {
                content,
                trigger_response,
            } => {
                if content.trim().is_empty() {
                    return Err(CommandError::Invalid(
                        "inject-context: content is empty".into(),
                    ));
                }
                self.history
                    .push(ChatMessage::text(Role::System, content.clone()));
                if self.settings.realtime {
                    self.actions
                        .push_back(Action::Realtime(RealtimeControl::InjectText {
                            text: content,
                            respond: trigger_response,
                        }));
                } else if trigger_response {
                    if self.agent.is_none() && self.speech_order.is_empty() {
                        self.begin_llm_turn(None);
                    } else {
                        self.respond_after_speech = true;
                    }
                }
            }
            CallCommand::Say { content, end_after } => {
                if content.trim().is_empty() {
                    return Err(CommandError::Invalid("say: content is empty".into()));
                }
                let after = if end_after {
                    AfterSpeech::Hangup(EndReason::HostEnded)
                } else {
                    AfterSpeech::Nothing
                };
                if self.settings.realtime {
                    self.actions
                        .push_back(Action::Realtime(RealtimeControl::Say {
                            text: content.clone(),
                        }));
                    self.history
                        .push(ChatMessage::text(Role::Assistant, content));
                    if end_after {
                        self.finish(EndReason::HostEnded, None);
                    }
                } else {
                    self.say_scripted(&content, after, true);
                }
            }
            CallCommand::EndCall { message } => match message.filter(|m| !m.trim().is_empty()) {
                Some(m) if !self.settings.realtime => {
                    self.barge_in_silently();
                    self.say_scripted(&m, AfterSpeech::Hangup(EndReason::HostEnded), false);
                }
                _ => self.finish(EndReason::HostEnded, None),
            },
            CallCommand::Transfer {
                destination,
                message,
            } => {
                let destination = destination.trim().to_string();
                if !is_valid_destination(&destination) {
                    return Err(CommandError::Invalid(format!(
                        "transfer: destination {destination:?} is not an E.164 number or SIP URI"
                    )));
                }
                match message.filter(|m| !m.trim().is_empty()) {
                    Some(m) if !self.settings.realtime => {
                        self.barge_in_silently();
                        self.say_scripted(&m, AfterSpeech::Transfer(destination), false);
                    }
                    _ => self.apply_after(AfterSpeech::Transfer(destination)),
                }
            }
        }
        Ok(())
    }

    /// Stops the agent (as a barge-in would) before a host's final announcement.
    fn barge_in_silently(&mut self) {
        if self.agent.is_some() || !self.speech_order.is_empty() {
            self.barge_in();
        }
    }

    /// A DTMF digit from the caller.
    pub fn on_dtmf(&mut self, now: Duration, digit: char) {
        self.now = now;
        if self.status != CallStatus::InProgress {
            return;
        }
        self.emit(CallEvent::Dtmf { digit });
        if let Consent::Waiting { .. } = self.consent {
            match digit {
                '1' => {
                    self.consent = Consent::Given;
                    self.barge_in_silently();
                    self.greet();
                }
                '2' => self.finish(EndReason::ConsentDeclined, None),
                _ => {}
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Realtime pipeline

    /// An event from the realtime session.
    pub fn on_realtime(&mut self, now: Duration, event: RealtimeEvent) {
        self.now = now;
        if self.is_ended() {
            return;
        }
        match event {
            RealtimeEvent::Ready | RealtimeEvent::SpeechStopped => {}
            RealtimeEvent::SpeechStarted => {
                self.silence_since = None;
                self.silence_attempts = 0;
                if self
                    .speech_order
                    .iter()
                    .any(|op| self.speeches.get(op).is_some_and(|s| s.started))
                {
                    self.barge_in();
                }
            }
            RealtimeEvent::UserTranscript { text, is_final, .. } => {
                let text = text.trim().to_string();
                if text.is_empty() {
                    return;
                }
                self.emit(CallEvent::Transcript {
                    text: text.clone(),
                    is_final,
                });
                if is_final {
                    self.history
                        .push(ChatMessage::text(Role::User, text.clone()));
                    self.emit(CallEvent::Message {
                        role: Role::User,
                        content: text.clone(),
                    });
                    if self.settings.direction == Direction::Outbound
                        && self.settings.voicemail.is_some()
                        && !self.voicemail_checked
                    {
                        self.voicemail_checked = true;
                        if is_voicemail(&text) {
                            self.emit(CallEvent::VoicemailDetected { transcript: text });
                            self.finish(EndReason::Voicemail, None);
                        }
                    }
                    self.voicemail_checked = true;
                }
            }
            RealtimeEvent::AgentAudio {
                item_id,
                rate,
                samples,
            } => {
                let op = self.realtime_speech(&item_id);
                self.on_tts(now, op, TtsEvent::Audio { rate, samples });
            }
            RealtimeEvent::AgentTranscriptDelta { item_id, delta } => {
                let op = self.realtime_speech(&item_id);
                if let Some(s) = self.speeches.get_mut(&op) {
                    match s.chunks.last_mut() {
                        Some((orig, sent)) => {
                            orig.push_str(&delta);
                            sent.push_str(&delta);
                        }
                        None => s.chunks.push((delta.clone(), delta)),
                    }
                }
            }
            RealtimeEvent::ToolCall(call) => {
                let args: serde_json::Value =
                    serde_json::from_str(&call.arguments).unwrap_or_else(|_| serde_json::json!({}));
                match self.settings.tool(&call.name).map(|t| t.kind.clone()) {
                    Some(ToolKind::EndCall) => {
                        self.finish(EndReason::AssistantEnded, None);
                    }
                    Some(ToolKind::Transfer { destinations }) => {
                        if let Some(d) = destinations.first() {
                            self.apply_after(AfterSpeech::Transfer(d.number.clone()));
                        }
                    }
                    _ => {
                        let is_async = matches!(
                            self.settings.tool(&call.name).map(|t| &t.kind),
                            Some(ToolKind::Function { is_async: true, .. })
                        );
                        self.emit(CallEvent::ToolCall {
                            id: call.id.clone(),
                            name: call.name.clone(),
                            arguments: args,
                            is_async,
                        });
                        let turn = self.next_turn;
                        let agent = self.agent.get_or_insert_with(|| AgentTurn {
                            id: turn,
                            llm: None,
                            open_speech: None,
                            chunker: TextChunker::new(),
                            text: String::new(),
                            tool_calls: Vec::new(),
                            pending_tools: HashMap::new(),
                            after: AfterSpeech::Nothing,
                        });
                        agent.pending_tools.insert(
                            call.id,
                            PendingTool {
                                name: call.name,
                                deadline: now + Duration::from_secs(10),
                            },
                        );
                    }
                }
            }
            RealtimeEvent::ResponseDone { usage, .. } => {
                if let Some(u) = usage {
                    self.usage.llm_prompt_tokens += u.prompt_tokens;
                    self.usage.llm_completion_tokens += u.completion_tokens;
                }
                let ops: Vec<OpId> = self.speech_order.iter().copied().collect();
                for op in ops {
                    if let Some(s) = self.speeches.get_mut(&op) {
                        if s.item_id.is_some() {
                            s.audio_done = true;
                            s.text_done = true;
                        }
                    }
                    self.maybe_finish_speech(op);
                }
            }
            RealtimeEvent::Failed(err) => self.provider_failed(Stage::Realtime, err),
        }
    }

    fn realtime_speech(&mut self, item_id: &str) -> OpId {
        if let Some(op) =
            self.speech_order.iter().copied().find(|op| {
                self.speeches.get(op).and_then(|s| s.item_id.as_deref()) == Some(item_id)
            })
        {
            return op;
        }
        let op = self.op();
        let turn = self.next_turn;
        self.next_turn += 1;
        let mut speech = Speech::new(turn);
        speech.item_id = Some(item_id.to_string());
        self.speeches.insert(op, speech);
        self.speech_order.push_back(op);
        op
    }

    fn realtime_tool_result(&mut self, id: &str, result: serde_json::Value) -> bool {
        let Some(pending) = self.agent.as_mut().and_then(|t| t.pending_tools.remove(id)) else {
            return false;
        };
        let output = match &result {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let respond = self
            .agent
            .as_ref()
            .is_none_or(|t| t.pending_tools.is_empty());
        if respond {
            self.agent = None;
        }
        self.emit(CallEvent::ToolResult {
            id: id.to_string(),
            name: pending.name,
            result,
            timed_out: false,
        });
        self.actions
            .push_back(Action::Realtime(RealtimeControl::ToolResult {
                call_id: id.to_string(),
                output,
                respond,
            }));
        true
    }
}

/// True when a first utterance sounds like a voicemail greeting (English or Dutch).
pub fn is_voicemail(text: &str) -> bool {
    let lower = text.to_lowercase();
    VOICEMAIL_PHRASES.iter().any(|p| lower.contains(p))
}

/// True for an E.164 number (`+` and 8–15 digits) or a `sip:`/`sips:` URI.
pub fn is_valid_destination(d: &str) -> bool {
    if let Some(rest) = d.strip_prefix("sip:").or_else(|| d.strip_prefix("sips:")) {
        return rest.contains('@') || !rest.is_empty();
    }
    let Some(digits) = d.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}
