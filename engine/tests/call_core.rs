//! Scenario tests of the sans-IO call core on virtual time: turn-taking, barge-in,
//! tools, timers, voicemail, consent and the realtime pipeline.

use std::time::Duration;

use serde_json::json;
use voxline_codecs::{AudioFrame, SampleRate};
use voxline_engine::call::{
    Action, Call, CallCommand, CallEvent, CallSettings, CallStatus, CallTool, Direction, EndReason,
    HistoryLimit, SilenceSettings, ToolKind, TransferDestination, DEFAULT_HISTORY_LIMIT,
};
use voxline_engine::provider::{
    LlmEvent, RealtimeControl, RealtimeEvent, Role, SpokenSpan, SttEvent, ToolCallRequest,
    ToolSpec, Transcript, TtsEvent,
};
use voxline_engine::vad::{VadOutcome, VadTransition};

const FRAME: Duration = Duration::from_millis(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Drives a `Call` on virtual time and records what it does.
struct Harness {
    call: Call,
    now: Duration,
    events: Vec<CallEvent>,
    actions: Vec<Action>,
    /// Agent frames played, with the time each was pulled.
    played: Vec<Duration>,
    frame: AudioFrame,
    /// The caller is voicing: every frame reports a voiced VAD decision.
    voicing: bool,
}

impl Harness {
    fn new(settings: CallSettings) -> Self {
        let mut h = Harness {
            call: Call::new(settings),
            now: Duration::ZERO,
            events: Vec::new(),
            actions: Vec::new(),
            played: Vec::new(),
            frame: AudioFrame::silent(SampleRate::Hz24000),
            voicing: false,
        };
        h.call.start(Duration::ZERO);
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(a) = self.call.poll_action() {
            if let Action::Emit(e) = &a {
                self.events.push(e.clone());
            }
            self.actions.push(a);
        }
    }

    /// Advances time frame by frame, pulling agent audio like the media clock does.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += FRAME;
            self.call.on_caller_vad(
                self.now,
                VadOutcome {
                    voiced: Some(self.voicing),
                    transition: None,
                },
            );
            self.call.tick(self.now);
            if self
                .call
                .pull_agent_frame(self.now, &mut self.frame)
                .is_some()
            {
                self.played.push(self.now);
            }
            self.drain();
        }
    }

    fn vad(&mut self, t: VadTransition) {
        self.call.on_caller_vad(
            self.now,
            VadOutcome {
                voiced: Some(matches!(t, VadTransition::SpeechStarted { .. })),
                transition: Some(t),
            },
        );
        self.drain();
    }

    fn speech_start(&mut self) {
        self.voicing = true;
        self.vad(VadTransition::SpeechStarted { at: self.now });
    }

    fn speech_stop(&mut self) {
        self.voicing = false;
        self.vad(VadTransition::SpeechStopped { at: self.now });
    }

    fn stt(&mut self, text: &str, is_final: bool) {
        self.call.on_stt(
            self.now,
            SttEvent::Transcript(Transcript {
                text: text.into(),
                is_final,
                speech_final: is_final,
                from_finalize: false,
                confidence: 0.9,
                words: vec![],
            }),
        );
        self.drain();
    }

    /// The caller says `text`: VAD start, speech for `dur`, stop, final transcript.
    fn caller_says(&mut self, text: &str, dur: Duration) {
        self.speech_start();
        self.advance(dur);
        self.speech_stop();
        self.stt(text, true);
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn last_llm_op(&self) -> u64 {
        self.actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::StartLlm { op, .. } => Some(*op),
                _ => None,
            })
            .expect("an LLM request")
    }

    fn tts_ops(&self) -> Vec<u64> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::StartTts { op } => Some(*op),
                _ => None,
            })
            .collect()
    }

    fn llm(&mut self, op: u64, e: LlmEvent) {
        self.call.on_llm(self.now, op, e);
        self.drain();
    }

    fn tts_audio(&mut self, op: u64, secs: f64) {
        let n = (24_000.0 * secs) as usize;
        self.call.on_tts(
            self.now,
            op,
            TtsEvent::Audio {
                rate: SampleRate::Hz24000,
                samples: vec![1000; n],
            },
        );
        self.drain();
    }

    fn tts_done(&mut self, op: u64) {
        self.call.on_tts(self.now, op, TtsEvent::Done);
        self.drain();
    }

    fn has_event(&self, f: impl Fn(&CallEvent) -> bool) -> bool {
        self.events.iter().any(f)
    }

    fn hangup_reason(&self) -> Option<EndReason> {
        self.actions.iter().find_map(|a| match a {
            Action::Hangup { reason } => Some(reason.clone()),
            _ => None,
        })
    }
}

fn settings() -> CallSettings {
    CallSettings {
        system_prompt: "You are a helpful receptionist.".into(),
        ..Default::default()
    }
}

/// Runs the model's reply `text` through TTS with `secs` of audio per speech.
fn reply(h: &mut Harness, text: &str, secs: f64) -> u64 {
    let speech = reply_streaming(h, text, secs);
    h.tts_done(speech);
    speech
}

/// Like `reply`, but TTS is still streaming (no `Done` yet).
fn reply_streaming(h: &mut Harness, text: &str, secs: f64) -> u64 {
    let op = h.last_llm_op();
    let before = h.tts_ops().len();
    h.llm(op, LlmEvent::TextDelta(text.into()));
    h.llm(op, LlmEvent::Done);
    let ops = h.tts_ops();
    let speech = *ops.get(before).expect("a speech started");
    h.tts_audio(speech, secs);
    speech
}

#[test]
fn normal_turn_answers_after_final_plus_min_delay() {
    let mut h = Harness::new(settings());
    assert!(h.has_event(|e| matches!(
        e,
        CallEvent::Status {
            status: CallStatus::InProgress,
            ..
        }
    )));
    h.caller_says("What are your opening hours?", ms(800));
    assert!(h.actions.contains(&Action::SttFinalize));
    // min delay 400 ms: no request yet at 380 ms.
    h.advance(ms(380));
    assert!(!h
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartLlm { .. })));
    h.advance(ms(40));
    let Some(Action::StartLlm { request, .. }) = h
        .actions
        .iter()
        .find(|a| matches!(a, Action::StartLlm { .. }))
    else {
        panic!("no llm request");
    };
    assert_eq!(
        request.messages.last().unwrap().content,
        "What are your opening hours?"
    );
    reply(&mut h, "We are open from nine to five.", 1.0);
    h.advance(ms(1200));
    assert!(
        h.played.len() >= 49 && h.played.len() <= 51,
        "played {}",
        h.played.len()
    );
    let hist = h.call.history();
    assert_eq!(hist.last().unwrap().role, Role::Assistant);
    assert_eq!(
        hist.last().unwrap().content,
        "We are open from nine to five."
    );
    assert!(h.has_event(|e| matches!(e, CallEvent::AgentSpeechStopped { .. })));
    assert!(h.has_event(
        |e| matches!(e, CallEvent::Latency { latency, .. } if latency.endpointing_ms >= 400)
    ));
}

#[test]
fn max_delay_commits_without_a_final() {
    let mut h = Harness::new(settings());
    h.speech_start();
    h.advance(ms(500));
    h.stt("I would like to", false);
    h.speech_stop();
    h.advance(ms(1980));
    assert!(!h
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartLlm { .. })));
    h.advance(ms(40));
    assert!(h
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartLlm { .. })));
    assert_eq!(h.call.history().last().unwrap().content, "I would like to");
}

#[test]
fn caller_resuming_during_endpointing_extends_the_turn() {
    let mut h = Harness::new(settings());
    h.caller_says("I need an appointment", ms(600));
    h.advance(ms(200));
    h.caller_says("for next Tuesday", ms(600));
    h.advance(ms(500));
    let msgs = &h.call.history();
    assert_eq!(
        msgs.last().unwrap().content,
        "I need an appointment for next Tuesday"
    );
    assert_eq!(
        h.actions
            .iter()
            .filter(|a| matches!(a, Action::StartLlm { .. }))
            .count(),
        1
    );
}

#[test]
fn barge_in_silences_within_a_frame_and_truncates_history() {
    let mut s = settings();
    s.turn.false_interruption_timeout = None; // classic barge-in: keep talking until thresholds are met
    let mut h = Harness::new(s);
    h.caller_says("Tell me about your services.", ms(600));
    h.advance(ms(420));
    let speech = reply_streaming(
        &mut h,
        "We offer cleaning, whitening, braces and implants for all ages.",
        4.0,
    );
    h.advance(ms(1000));
    let played_before = h.played.len();
    assert!(played_before >= 49);
    h.speech_start();
    h.advance(ms(280));
    assert!(
        h.played.len() > played_before,
        "still playing below min duration"
    );
    h.advance(ms(40));
    let decision = h.now;
    let cancel = h.actions.contains(&Action::CancelTts { op: speech });
    assert!(cancel, "TTS cancelled");
    let last_played = *h.played.last().unwrap();
    assert!(
        last_played <= decision,
        "no audio after the barge-in decision"
    );
    h.advance(ms(1000));
    assert!(h.played.iter().all(|&t| t <= decision));
    let interrupted = h.events.iter().find_map(|e| match e {
        CallEvent::AgentInterrupted { spoken, full, .. } => Some((spoken.clone(), full.clone())),
        _ => None,
    });
    let (spoken, full) = interrupted.expect("interrupted event");
    assert!(spoken.len() < full.len(), "{spoken:?} vs {full:?}");
    assert!(full.starts_with(&spoken));
    let assistant = h
        .call
        .history()
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .unwrap();
    assert_eq!(assistant.content, spoken);
    // Stale audio for the cancelled speech never plays.
    h.tts_audio(speech, 1.0);
    h.advance(ms(200));
    assert!(h.played.iter().all(|&t| t <= decision));
}

#[test]
fn barge_in_uses_tts_alignment_when_given() {
    let mut s = settings();
    s.turn.false_interruption_timeout = None;
    let mut h = Harness::new(s);
    h.caller_says("Hi", ms(300));
    h.advance(ms(420));
    let op = h.last_llm_op();
    h.llm(op, LlmEvent::TextDelta("One two three four.".into()));
    h.llm(op, LlmEvent::Done);
    let speech = *h.tts_ops().last().unwrap();
    let words = ["One ", "two ", "three ", "four."];
    let spans = words
        .iter()
        .enumerate()
        .map(|(i, w)| SpokenSpan {
            text: w.to_string(),
            start: ms(i as u64 * 500),
            end: ms(i as u64 * 500 + 450),
        })
        .collect();
    h.call.on_tts(h.now, speech, TtsEvent::Alignment(spans));
    h.tts_audio(speech, 2.0);
    h.advance(ms(1000)); // "One" and "two" fully played (ends at 450 and 950 ms)
    h.speech_start();
    h.advance(ms(300));
    let assistant = h
        .call
        .history()
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .unwrap();
    assert_eq!(assistant.content, "One two");
}

#[test]
fn false_interruption_pauses_then_resumes_the_same_utterance() {
    let mut h = Harness::new(settings());
    h.caller_says("Hello", ms(400));
    h.advance(ms(420));
    reply(
        &mut h,
        "Welcome to the clinic, how can I help you today?",
        3.0,
    );
    h.advance(ms(500));
    let before = h.played.len();
    // A cough: 100 ms of voice, no words.
    h.speech_start();
    h.advance(ms(100));
    h.speech_stop();
    assert!(h.has_event(|e| matches!(e, CallEvent::AgentPaused { .. })));
    h.advance(ms(1000));
    assert_eq!(h.played.len(), before, "paused at once");
    h.advance(ms(600));
    assert!(h.has_event(|e| matches!(e, CallEvent::AgentResumed { .. })));
    h.advance(ms(3000));
    assert!(!h.has_event(|e| matches!(e, CallEvent::AgentInterrupted { .. })));
    assert_eq!(
        h.call.history().last().unwrap().content,
        "Welcome to the clinic, how can I help you today?"
    );
    assert!(
        h.played.len() >= 150,
        "whole utterance played: {}",
        h.played.len()
    );
}

#[test]
fn min_words_rule_blocks_short_backchannels() {
    let mut s = settings();
    s.turn.interruption_min_words = 2;
    let mut h = Harness::new(s);
    h.caller_says("Hello", ms(400));
    h.advance(ms(420));
    reply(
        &mut h,
        "Let me explain our three plans in detail for you now.",
        4.0,
    );
    h.advance(ms(500));
    h.speech_start();
    h.stt("okay", false);
    h.advance(ms(500));
    assert!(
        !h.has_event(|e| matches!(e, CallEvent::AgentInterrupted { .. })),
        "one word is not enough"
    );
    h.stt("okay wait stop", false);
    h.advance(ms(20));
    assert!(h.has_event(|e| matches!(e, CallEvent::AgentInterrupted { .. })));
}

fn tool_settings(is_async: bool) -> CallSettings {
    let mut s = settings();
    s.tools.push(CallTool {
        spec: ToolSpec {
            name: "book_appointment".into(),
            description: "Books an appointment".into(),
            parameters: json!({"type": "object"}),
        },
        kind: ToolKind::Function {
            is_async,
            message: Some("One moment while I check.".into()),
            timeout: Duration::from_secs(10),
        },
    });
    s
}

fn call_tool(h: &mut Harness, name: &str, args: &str) -> u64 {
    h.caller_says("Book me for Tuesday at ten", ms(800));
    h.advance(ms(420));
    let op = h.last_llm_op();
    h.llm(
        op,
        LlmEvent::ToolCall(ToolCallRequest {
            id: "call_1".into(),
            name: name.into(),
            arguments: args.into(),
        }),
    );
    h.llm(op, LlmEvent::Done);
    op
}

#[test]
fn tool_call_round_trip() {
    let mut h = Harness::new(tool_settings(false));
    call_tool(
        &mut h,
        "book_appointment",
        r#"{"day":"tuesday","time":"10:00"}"#,
    );
    let args = h.events.iter().find_map(|e| match e {
        CallEvent::ToolCall { arguments, .. } => Some(arguments.clone()),
        _ => None,
    });
    assert_eq!(args, Some(json!({"day": "tuesday", "time": "10:00"})));
    // The tool's message is spoken while it runs.
    let msg_speech = *h.tts_ops().last().unwrap();
    assert!(h
        .actions
        .iter()
        .any(|a| matches!(a, Action::TtsText { op, text } if *op == msg_speech && text == "One moment while I check.")));
    let requests_before = h
        .actions
        .iter()
        .filter(|a| matches!(a, Action::StartLlm { .. }))
        .count();
    assert!(h
        .call
        .on_tool_result(h.now, "call_1", json!({"confirmed": true})));
    h.drain();
    let requests: Vec<_> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::StartLlm { request, .. } => Some(request),
            _ => None,
        })
        .collect();
    assert_eq!(
        requests.len(),
        requests_before + 1,
        "model asked again with the result"
    );
    let last = requests.last().unwrap();
    let tool_msg = last.messages.iter().find(|m| m.role == Role::Tool).unwrap();
    assert_eq!(tool_msg.tool_call_id.as_deref(), Some("call_1"));
    assert!(tool_msg.content.contains("confirmed"));
    let asst = last
        .messages
        .iter()
        .find(|m| !m.tool_calls.is_empty())
        .unwrap();
    assert_eq!(asst.tool_calls[0].id, "call_1");
    // A stale or duplicate result is ignored.
    assert!(!h.call.on_tool_result(h.now, "call_1", json!("again")));
}

#[test]
fn tool_timeout_speaks_a_fallback() {
    let mut h = Harness::new(tool_settings(false));
    call_tool(&mut h, "book_appointment", "{}");
    h.advance(ms(9_900));
    assert!(!h.has_event(|e| matches!(e, CallEvent::ToolResult { .. })));
    h.advance(ms(200));
    assert!(h.has_event(|e| matches!(
        e,
        CallEvent::ToolResult {
            timed_out: true,
            ..
        }
    )));
    assert!(h.actions.iter().any(
        |a| matches!(a, Action::TtsText { text, .. } if text.contains("longer than expected"))
    ));
    assert!(
        !h.call.on_tool_result(h.now, "call_1", json!("late")),
        "late result dropped"
    );
}

#[test]
fn async_tool_does_not_wait() {
    let mut h = Harness::new(tool_settings(true));
    let first = call_tool(&mut h, "book_appointment", "{}");
    assert!(h.has_event(|e| matches!(e, CallEvent::ToolCall { is_async: true, .. })));
    let next = h.last_llm_op();
    assert_ne!(next, first, "model continues at once");
}

#[test]
fn end_call_tool_speaks_message_then_hangs_up() {
    let mut s = settings();
    s.end_call_message = Some("Thanks for calling, goodbye!".into());
    s.tools.push(CallTool {
        spec: ToolSpec {
            name: "end_call".into(),
            description: "Ends the call".into(),
            parameters: json!({"type": "object"}),
        },
        kind: ToolKind::EndCall,
    });
    let mut h = Harness::new(s);
    call_tool(&mut h, "end_call", "{}");
    assert_eq!(h.hangup_reason(), None);
    let op = *h.tts_ops().last().unwrap();
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(1100));
    assert_eq!(h.hangup_reason(), Some(EndReason::AssistantEnded));
    assert_eq!(h.call.status(), CallStatus::Ended);
}

#[test]
fn transfer_tool_announces_then_transfers() {
    let mut s = settings();
    s.tools.push(CallTool {
        spec: ToolSpec {
            name: "transfer_call".into(),
            description: "Transfers".into(),
            parameters: json!({"type": "object"}),
        },
        kind: ToolKind::Transfer {
            destinations: vec![TransferDestination {
                number: "+31201234567".into(),
                description: "front desk".into(),
                message: Some("Transferring you now.".into()),
            }],
        },
    });
    let mut h = Harness::new(s);
    call_tool(&mut h, "transfer_call", r#"{"destination":"+31201234567"}"#);
    let op = *h.tts_ops().last().unwrap();
    h.tts_audio(op, 0.5);
    h.tts_done(op);
    h.advance(ms(600));
    assert!(h.actions.contains(&Action::Transfer {
        destination: "+31201234567".into()
    }));
    assert_eq!(h.call.status(), CallStatus::Transferred);
}

#[test]
fn silence_handling_prompts_then_hangs_up() {
    let mut s = settings();
    s.silence = Some(SilenceSettings::default()); // 3 s, then 12 s, 3 attempts
    let mut h = Harness::new(s);
    h.advance(ms(2900));
    assert!(h.tts_ops().is_empty());
    h.advance(ms(200));
    assert_eq!(h.tts_ops().len(), 1, "first check");
    let op = h.tts_ops()[0];
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(1100));
    h.advance(ms(12_000));
    assert_eq!(h.tts_ops().len(), 2, "second check");
    let op = h.tts_ops()[1];
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(13_100));
    assert_eq!(h.tts_ops().len(), 3, "final message");
    let op = h.tts_ops()[2];
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(1100));
    assert_eq!(h.hangup_reason(), Some(EndReason::SilenceTimeout));
}

#[test]
fn caller_speech_resets_silence_handling() {
    let mut s = settings();
    s.silence = Some(SilenceSettings::default());
    let mut h = Harness::new(s);
    h.advance(ms(2000));
    h.speech_start();
    h.advance(ms(300));
    h.speech_stop();
    // No words by the max delay: noise, not a turn. The 3 s wait restarts from the end of speech.
    h.advance(ms(2900));
    assert!(h.tts_ops().is_empty(), "timer restarted by speech");
    h.advance(ms(200));
    assert_eq!(h.tts_ops().len(), 1);
}

#[test]
fn voicemail_detected_on_outbound_first_utterance() {
    let mut s = settings();
    s.direction = Direction::Outbound;
    s.voicemail = Some(Some(
        "Hi, this is the clinic calling about your appointment.".into(),
    ));
    let mut h = Harness::new(s);
    h.caller_says(
        "Hi, you've reached Anna. Please leave a message after the beep.",
        ms(2000),
    );
    h.advance(ms(420));
    assert!(h.has_event(|e| matches!(e, CallEvent::VoicemailDetected { .. })));
    assert!(!h
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartLlm { .. })));
    let op = *h.tts_ops().last().unwrap();
    h.tts_audio(op, 2.0);
    h.tts_done(op);
    h.advance(ms(2100));
    assert_eq!(h.hangup_reason(), Some(EndReason::Voicemail));

    let mut s = settings();
    s.direction = Direction::Outbound;
    s.voicemail = Some(None);
    let mut h = Harness::new(s);
    h.caller_says(
        "Dit is de voicemail van Jan, spreek een bericht in na de piep.",
        ms(2000),
    );
    h.advance(ms(420));
    assert_eq!(h.hangup_reason(), Some(EndReason::Voicemail));
}

#[test]
fn max_duration_ends_the_call() {
    let mut s = settings();
    s.max_duration = Some(Duration::from_secs(5));
    let mut h = Harness::new(s);
    h.advance(ms(4980));
    assert_eq!(h.hangup_reason(), None);
    h.advance(ms(40));
    assert_eq!(h.hangup_reason(), Some(EndReason::MaxDuration));
    assert!(h.has_event(|e| matches!(e, CallEvent::Usage(_))));
    assert!(h
        .call
        .on_command(
            h.now,
            CallCommand::Say {
                content: "hi".into(),
                end_after: false
            }
        )
        .is_err());
}

#[test]
fn recording_consent_by_dtmf() {
    let mut s = settings();
    s.recording_consent = Some("This call is recorded. Press 1 to agree or 2 to decline.".into());
    s.first_message = Some("Hello, how can I help?".into());
    let mut h = Harness::new(s.clone());
    assert!(
        !h.call.forwards_caller_audio(),
        "no audio to STT before consent"
    );
    let op = h.tts_ops()[0];
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(1100));
    h.call.on_dtmf(h.now, '1');
    h.drain();
    assert!(h.call.forwards_caller_audio());
    assert!(h
        .actions
        .iter()
        .any(|a| matches!(a, Action::TtsText { text, .. } if text == "Hello, how can I help?")));

    let mut h = Harness::new(s.clone());
    h.call.on_dtmf(h.now, '2');
    h.drain();
    assert_eq!(h.hangup_reason(), Some(EndReason::ConsentDeclined));

    // No key: the prompt is repeated once, then the call ends.
    let mut h = Harness::new(s);
    let op = h.tts_ops()[0];
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(11_100));
    assert_eq!(h.tts_ops().len(), 2, "prompt repeated");
    let op = h.tts_ops()[1];
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(11_100));
    assert_eq!(h.hangup_reason(), Some(EndReason::ConsentDeclined));
}

#[test]
fn realtime_barge_in_cancels_and_truncates_the_item() {
    let mut s = settings();
    s.realtime = true;
    let mut h = Harness::new(s);
    h.call.on_realtime(
        h.now,
        RealtimeEvent::UserTranscript {
            item_id: "u1".into(),
            text: "What do you offer?".into(),
            is_final: true,
        },
    );
    h.call.on_realtime(
        h.now,
        RealtimeEvent::AgentTranscriptDelta {
            item_id: "a1".into(),
            delta: "We offer cleaning and whitening and much more.".into(),
        },
    );
    h.call.on_realtime(
        h.now,
        RealtimeEvent::AgentAudio {
            item_id: "a1".into(),
            rate: SampleRate::Hz24000,
            samples: vec![500; 24_000 * 3],
        },
    );
    h.drain();
    h.advance(ms(1000));
    h.call.on_realtime(h.now, RealtimeEvent::SpeechStarted);
    h.drain();
    let decision = h.now;
    assert!(h
        .actions
        .contains(&Action::Realtime(RealtimeControl::Cancel)));
    assert!(h
        .actions
        .contains(&Action::Realtime(RealtimeControl::Truncate {
            item_id: "a1".into(),
            played: ms(1000)
        })));
    h.advance(ms(500));
    assert!(h.played.iter().all(|&t| t <= decision));
    let roles: Vec<Role> = h.call.history().iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Role::System, Role::User, Role::Assistant]);
    let a = &h.call.history()[2].content;
    assert!(
        !a.is_empty() && a.len() < "We offer cleaning and whitening and much more.".len(),
        "{a}"
    );
}

#[test]
fn realtime_tool_round_trip_responds_once() {
    let mut s = tool_settings(false);
    s.realtime = true;
    let mut h = Harness::new(s);
    h.call.on_realtime(
        h.now,
        RealtimeEvent::ToolCall(ToolCallRequest {
            id: "c1".into(),
            name: "book_appointment".into(),
            arguments: "{\"day\":\"monday\"}".into(),
        }),
    );
    h.drain();
    assert!(h.has_event(|e| matches!(e, CallEvent::ToolCall { id, .. } if id == "c1")));
    assert!(h.call.on_tool_result(h.now, "c1", json!({"ok": true})));
    h.drain();
    assert!(h.actions.iter().any(|a| matches!(
        a,
        Action::Realtime(RealtimeControl::ToolResult { call_id, respond: true, .. }) if call_id == "c1"
    )));
}

#[test]
fn host_commands() {
    let mut h = Harness::new(settings());
    // inject-context without a response: context only.
    h.call
        .on_command(
            h.now,
            CallCommand::InjectContext {
                content: "Caller is a VIP.".into(),
                trigger_response: false,
            },
        )
        .unwrap();
    h.drain();
    assert!(!h
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartLlm { .. })));
    assert_eq!(h.call.history().last().unwrap().content, "Caller is a VIP.");
    // with a response: the model runs now.
    h.call
        .on_command(
            h.now,
            CallCommand::InjectContext {
                content: "Code is 1234.".into(),
                trigger_response: true,
            },
        )
        .unwrap();
    h.drain();
    assert!(h
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartLlm { .. })));
    let _ = h.take_actions();
    // say with end_after.
    h.call
        .on_command(
            h.now,
            CallCommand::Say {
                content: "Your code is one two three four.".into(),
                end_after: true,
            },
        )
        .unwrap();
    h.drain();
    let op = *h.tts_ops().last().unwrap();
    h.tts_audio(op, 1.0);
    h.tts_done(op);
    h.advance(ms(1100));
    assert_eq!(h.hangup_reason(), Some(EndReason::HostEnded));
    assert_eq!(
        h.call.history().last().unwrap().content,
        "Your code is one two three four."
    );

    let mut h = Harness::new(settings());
    let err = h.call.on_command(
        h.now,
        CallCommand::Transfer {
            destination: "not a number".into(),
            message: None,
        },
    );
    assert!(err.is_err());
    assert_eq!(
        h.call.status(),
        CallStatus::InProgress,
        "bad command leaves the call running"
    );
    h.call
        .on_command(
            h.now,
            CallCommand::Transfer {
                destination: "sip:desk@example.com".into(),
                message: Some("Please hold.".into()),
            },
        )
        .unwrap();
    h.drain();
    let op = *h.tts_ops().last().unwrap();
    h.tts_audio(op, 0.5);
    h.tts_done(op);
    h.advance(ms(600));
    assert!(h.actions.contains(&Action::Transfer {
        destination: "sip:desk@example.com".into()
    }));

    let mut h = Harness::new(settings());
    h.call
        .on_command(h.now, CallCommand::EndCall { message: None })
        .unwrap();
    h.drain();
    assert_eq!(h.hangup_reason(), Some(EndReason::HostEnded));
}

#[test]
fn llm_failure_speaks_fallback_and_keeps_the_call() {
    let mut h = Harness::new(settings());
    h.caller_says("Hello?", ms(400));
    h.advance(ms(420));
    let op = h.last_llm_op();
    h.call.on_llm_error(
        h.now,
        op,
        voxline_engine::provider::ProviderError::Http {
            provider: "openai".into(),
            status: 500,
            body: "boom".into(),
        },
    );
    h.drain();
    assert_eq!(h.call.status(), CallStatus::InProgress);
    assert!(h.has_event(|e| matches!(e, CallEvent::ProviderError { .. })));
    assert!(h
        .actions
        .iter()
        .any(|a| matches!(a, Action::TtsText { text, .. } if text.contains("problem"))));
}

#[test]
fn stale_llm_events_after_barge_in_are_ignored() {
    let mut s = settings();
    s.turn.false_interruption_timeout = None;
    let mut h = Harness::new(s);
    h.caller_says("Tell me a story", ms(400));
    h.advance(ms(420));
    let op = h.last_llm_op();
    h.llm(op, LlmEvent::TextDelta("Once upon a time, ".into()));
    let speech = *h.tts_ops().last().unwrap();
    h.tts_audio(speech, 2.0);
    h.advance(ms(500));
    h.speech_start();
    h.advance(ms(320));
    assert!(h.actions.contains(&Action::CancelLlm { op }));
    let tts_before = h
        .actions
        .iter()
        .filter(|a| matches!(a, Action::TtsText { .. }))
        .count();
    h.llm(op, LlmEvent::TextDelta("there was a dragon. ".into()));
    h.llm(op, LlmEvent::Done);
    let tts_after = h
        .actions
        .iter()
        .filter(|a| matches!(a, Action::TtsText { .. }))
        .count();
    assert_eq!(tts_before, tts_after, "no stale text reaches TTS");
    assert!(!h
        .call
        .history()
        .iter()
        .any(|m| m.content.contains("dragon")));
}

#[test]
fn rejected_assistant_request_speaks_the_error_then_hangs_up() {
    use voxline_engine::config::{resolve_assistant, Resolution};
    let resolution = resolve_assistant(r#"{"error": "Sorry, we are closed today."}"#, None, |_| {
        None
    })
    .unwrap();
    let Resolution::Reject { message } = resolution else {
        panic!("expected a rejection");
    };
    let mut call = Call::new(settings());
    call.start_rejected(Duration::ZERO, &message);
    let mut h = Harness {
        call,
        now: Duration::ZERO,
        events: Vec::new(),
        actions: Vec::new(),
        played: Vec::new(),
        frame: AudioFrame::silent(SampleRate::Hz24000),
        voicing: false,
    };
    h.drain();
    assert!(h.actions.iter().any(
        |a| matches!(a, Action::TtsText { text, .. } if text == "Sorry, we are closed today.")
    ));
    assert!(
        !h.call.forwards_caller_audio(),
        "a rejected call listens to nothing"
    );
    let op = *h.tts_ops().last().unwrap();
    h.tts_audio(op, 1.5);
    h.tts_done(op);
    h.advance(ms(1600));
    assert_eq!(h.hangup_reason(), Some(EndReason::Rejected));
    assert!(
        !h.actions
            .iter()
            .any(|a| matches!(a, Action::StartLlm { .. })),
        "no model runs"
    );

    // An empty error string hangs up at once.
    let mut call = Call::new(settings());
    call.start_rejected(Duration::ZERO, "");
    let mut got = None;
    while let Some(a) = call.poll_action() {
        if let Action::Hangup { reason } = a {
            got = Some(reason);
        }
    }
    assert_eq!(got, Some(EndReason::Rejected));
}

#[test]
fn caller_talking_on_before_the_answer_retracts_and_extends_the_message() {
    let mut h = Harness::new(settings());
    h.caller_says("I need an appointment", ms(600));
    h.advance(ms(420));
    assert!(
        h.actions
            .iter()
            .any(|a| matches!(a, Action::StartLlm { .. })),
        "answer started"
    );
    // The caller goes on before any agent audio: the answer is dropped, the line comes back longer.
    h.caller_says("for Tuesday", ms(500));
    h.advance(ms(420));
    let retracted = h.events.iter().any(|e| {
        matches!(e, CallEvent::MessageRetracted { role: Role::User, content } if content == "I need an appointment")
    });
    assert!(retracted, "{:#?}", h.events);
    let users: Vec<&str> = h
        .call
        .history()
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(users, vec!["I need an appointment for Tuesday"]);
    // Replaying the events the way a report does leaves one caller line.
    let mut lines: Vec<String> = Vec::new();
    for e in &h.events {
        match e {
            CallEvent::Message {
                role: Role::User,
                content,
            } => lines.push(content.clone()),
            CallEvent::MessageRetracted {
                role: Role::User,
                content,
            } => {
                let i = lines.iter().rposition(|l| l == content).unwrap();
                lines.remove(i);
            }
            _ => {}
        }
    }
    assert_eq!(lines, vec!["I need an appointment for Tuesday"]);
}

fn llm_requests(h: &Harness) -> Vec<&voxline_engine::provider::LlmRequest> {
    h.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartLlm { request, .. } => Some(request),
            _ => None,
        })
        .collect()
}

#[test]
fn a_history_limit_keeps_the_system_prompt_and_the_latest_messages() {
    let mut s = settings();
    s.history_limit = HistoryLimit::Latest(4);
    let mut h = Harness::new(s);
    for i in 0..6 {
        h.caller_says(&format!("Question number {i}"), ms(600));
        h.advance(ms(420));
        reply(&mut h, &format!("Answer number {i}."), 0.5);
        h.advance(ms(800));
    }
    let requests = llm_requests(&h);
    assert_eq!(requests.len(), 6);
    for (i, r) in requests.iter().enumerate() {
        assert!(r.messages.len() <= 1 + 4, "request {i}: {:?}", r.messages);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[0].content, "You are a helpful receptionist.");
        assert_eq!(
            r.messages.last().unwrap().content,
            format!("Question number {i}")
        );
    }
    // The last request still has the previous exchange for context.
    let last = requests.last().unwrap();
    let texts: Vec<&str> = last.messages.iter().map(|m| m.content.as_str()).collect();
    assert!(texts.contains(&"Question number 4") && texts.contains(&"Answer number 4."));
    // The call's history is bounded; the event stream has every message.
    assert!(h.call.history().len() <= 1 + 4 + 1);
    let messages = h
        .events
        .iter()
        .filter(|e| matches!(e, CallEvent::Message { .. }))
        .count();
    assert_eq!(messages, 12);
}

#[test]
fn without_a_history_limit_the_model_gets_the_whole_conversation() {
    let mut s = settings();
    s.history_limit = HistoryLimit::Whole;
    let mut h = Harness::new(s);
    for i in 0..6 {
        h.caller_says(&format!("Question number {i}"), ms(600));
        h.advance(ms(420));
        reply(&mut h, &format!("Answer number {i}."), 0.5);
        h.advance(ms(800));
    }
    assert_eq!(llm_requests(&h).last().unwrap().messages.len(), 1 + 11);
    assert_eq!(h.call.history().len(), 1 + 12);
}

#[test]
fn by_default_a_long_call_keeps_a_bounded_history_and_reports_every_message() {
    let s = settings();
    assert_eq!(s.history_limit, HistoryLimit::Latest(DEFAULT_HISTORY_LIMIT));
    let mut h = Harness::new(s);
    let exchanges = DEFAULT_HISTORY_LIMIT / 2 + 10;
    for i in 0..exchanges {
        h.caller_says(&format!("Question number {i}"), ms(600));
        h.advance(ms(420));
        reply(&mut h, &format!("Answer number {i}."), 0.5);
        h.advance(ms(800));
    }
    let requests = llm_requests(&h);
    assert_eq!(requests.len(), exchanges);
    let last = requests.last().unwrap();
    assert!(last.messages.len() <= 1 + DEFAULT_HISTORY_LIMIT);
    assert_eq!(last.messages[0].role, Role::System);
    assert_eq!(
        last.messages.last().unwrap().content,
        format!("Question number {}", exchanges - 1)
    );
    assert!(h.call.history().len() <= 1 + DEFAULT_HISTORY_LIMIT + 1);
    // The first exchanges left the model's context but not the event stream.
    assert!(!last
        .messages
        .iter()
        .any(|m| m.content == "Question number 0"));
    let messages = h
        .events
        .iter()
        .filter(|e| matches!(e, CallEvent::Message { .. }))
        .count();
    assert_eq!(messages, 2 * exchanges);
}

#[test]
fn a_history_limit_keeps_tool_results_with_their_call() {
    let mut s = tool_settings(false);
    s.history_limit = HistoryLimit::Latest(1);
    let mut h = Harness::new(s);
    call_tool(&mut h, "book_appointment", "{}");
    assert!(h
        .call
        .on_tool_result(h.now, "call_1", json!({"confirmed": true})));
    h.drain();
    let request = *llm_requests(&h).last().unwrap();
    let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
    // The window grew back to the assistant message that made the call.
    assert_eq!(roles, vec![Role::System, Role::Assistant, Role::Tool]);
    assert_eq!(request.messages[1].tool_calls[0].id, "call_1");
    assert_eq!(request.messages[2].tool_call_id.as_deref(), Some("call_1"));
}

#[test]
fn a_history_limit_still_cuts_an_interrupted_answer_to_what_was_heard() {
    let mut s = settings();
    s.history_limit = HistoryLimit::Latest(2);
    s.turn.false_interruption_timeout = None;
    let mut h = Harness::new(s);
    h.caller_says("Hello there.", ms(600));
    h.advance(ms(420));
    reply(&mut h, "Hello, how can I help?", 0.5);
    h.advance(ms(800));
    h.caller_says("Tell me about your services.", ms(600));
    h.advance(ms(420));
    reply_streaming(
        &mut h,
        "We offer cleaning, whitening, braces and implants for all ages.",
        4.0,
    );
    // The ticks while it plays trim the history past the first exchange.
    h.advance(ms(1000));
    assert_eq!(h.call.history().len(), 1 + 2);
    h.speech_start();
    h.advance(ms(400));
    let spoken = h
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::AgentInterrupted { spoken, .. } => Some(spoken.clone()),
            _ => None,
        })
        .expect("interrupted");
    let history = h.call.history();
    assert_eq!(history[1].content, "Tell me about your services.");
    assert_eq!(history[2].role, Role::Assistant);
    assert_eq!(history[2].content, spoken);
    assert!(spoken.len() < "We offer cleaning, whitening, braces and implants for all ages.".len());
}
