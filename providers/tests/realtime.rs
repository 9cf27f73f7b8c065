//! The realtime adapter in both dialects (xAI Grok Voice Agent, OpenAI Realtime GA) against
//! the strict fake realtime server: the exact `session.update`, caller audio as the server
//! decodes it, agent audio and transcripts, user transcripts, tool round trips, barge-in,
//! verbatim speech, injected text and history, benign errors, and every fault ending in its
//! documented typed error with nothing lost before it. The fake randomises event order from
//! a seed; the order-sensitive tests run several seeds.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use voxline_codecs::{g711, AudioFrame, SampleRate};
use voxline_engine::config::llm::{ProviderTool, TurnDetectionSettings};
use voxline_engine::provider::{
    ChatMessage, ProviderError, RealtimeControl, RealtimeEvent, RealtimeIo, RealtimeParams,
    RealtimeProvider, Role, TokenUsage, ToolCallRequest, ToolSpec,
};
use voxline_engine::ring::{speech_ring, SpeechRingProducer};
use voxline_providers::fake::realtime::{
    FakeFault, FakeRealtimeLog, FakeRealtimeScript, FakeRealtimeServer, FakeReply, FakeTurn,
    FAKE_USAGE,
};
use voxline_providers::fake::ws::{FakeWsServer, WsReply};
use voxline_providers::net::endpoint::NoEnv;
use voxline_providers::realtime::{
    openai, AudioMode, RealtimeAdapter, RealtimeConfig, RealtimeTimeouts, Vendor,
};

const KEY: &str = "rt-test-key-0042";
const PROMPT: &str = "You are the phone agent for Acme Dental. Be brief.";
const WAIT: Duration = Duration::from_secs(10);

fn model(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Xai => "grok-voice-think-fast-1.0",
        Vendor::OpenAi => "gpt-realtime",
    }
}

fn timeouts() -> RealtimeTimeouts {
    RealtimeTimeouts {
        connect: Duration::from_secs(2),
        setup: Duration::from_secs(3),
        idle: Duration::from_secs(5),
        keepalive: Duration::from_millis(500),
        close: Duration::from_secs(1),
    }
}

fn config(vendor: Vendor, server: &FakeRealtimeServer) -> RealtimeConfig {
    RealtimeConfig::new(vendor, model(vendor))
        .with_base_url(server.base_url())
        .with_api_key(KEY)
        .with_timeouts(timeouts())
}

fn adapter(config: RealtimeConfig) -> RealtimeAdapter {
    RealtimeAdapter::with_env(config, &NoEnv).expect("adapter")
}

fn find_slot() -> ToolSpec {
    ToolSpec {
        name: "find_slot".into(),
        description: "Find appointment slots".into(),
        parameters: json!({"type": "object", "properties": {"day": {"type": "string"}},
                           "required": ["day"]}),
    }
}

fn params(rate: SampleRate) -> RealtimeParams {
    RealtimeParams {
        input_rate: rate,
        instructions: PROMPT.into(),
        tools: vec![find_slot()],
        history: Vec::new(),
    }
}

async fn serve(script: FakeRealtimeScript) -> FakeRealtimeServer {
    FakeRealtimeServer::start(script)
        .await
        .expect("fake server")
}

fn script(vendor: Vendor) -> FakeRealtimeScript {
    FakeRealtimeScript::new(vendor, KEY, model(vendor))
}

// ---------------------------------------------------------------------------------------------
// A stand-in for the engine: a ring of caller frames, the command channel and the events.

struct Harness {
    audio: SpeechRingProducer,
    control: mpsc::UnboundedSender<RealtimeControl>,
    events: mpsc::UnboundedReceiver<RealtimeEvent>,
    task: JoinHandle<Result<(), ProviderError>>,
    rate: SampleRate,
    pushed: Vec<i16>,
    phase: f32,
}

impl Harness {
    fn start(adapter: &RealtimeAdapter, params: RealtimeParams) -> Self {
        let rate = params.input_rate;
        let (audio, consumer) = speech_ring(4096);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let io = RealtimeIo {
            audio: consumer,
            control: control_rx,
            events: events_tx,
        };
        let task = tokio::spawn(adapter.run(params, io));
        Harness {
            audio,
            control,
            events,
            task,
            rate,
            pushed: Vec::new(),
            phase: 0.0,
        }
    }

    /// Pushes `ms` of a 440 Hz tone as 20 ms frames.
    fn speak(&mut self, ms: u64) {
        let step = 2.0 * std::f32::consts::PI * 440.0 / self.rate.hz() as f32;
        for _ in 0..ms / 20 {
            let samples: Vec<i16> = (0..self.rate.frame_samples())
                .map(|_| {
                    self.phase += step;
                    (self.phase.sin() * 4000.0) as i16
                })
                .collect();
            let frame = AudioFrame::from_samples(self.rate, &samples).expect("frame");
            assert!(self.audio.push(frame), "ring full");
            self.pushed.extend(samples);
        }
    }

    fn send(&self, command: RealtimeControl) {
        self.control.send(command).expect("session alive");
    }

    async fn next(&mut self) -> RealtimeEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the session ended early")
    }

    /// Events up to and including the first one `stop` accepts.
    async fn until(&mut self, mut stop: impl FnMut(&RealtimeEvent) -> bool) -> Vec<RealtimeEvent> {
        let mut out = Vec::new();
        loop {
            let event = self.next().await;
            let done = stop(&event);
            out.push(event);
            if done {
                return out;
            }
        }
    }

    async fn ready(&mut self) {
        self.until(|e| *e == RealtimeEvent::Ready).await;
    }

    async fn responses(&mut self, n: usize) -> Vec<RealtimeEvent> {
        let mut seen = 0;
        self.until(|e| {
            if matches!(e, RealtimeEvent::ResponseDone { .. }) {
                seen += 1;
            }
            seen == n
        })
        .await
    }

    /// Sends `Close` and waits for the session to end.
    async fn close(self) -> (Result<(), ProviderError>, Vec<RealtimeEvent>) {
        let _ = self.control.send(RealtimeControl::Close);
        self.ended().await
    }

    /// Waits for the session to end on its own; returns its result and the events left.
    async fn ended(mut self) -> (Result<(), ProviderError>, Vec<RealtimeEvent>) {
        let result = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the session ends in time")
            .expect("the session task does not panic");
        let mut rest = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            rest.push(e);
        }
        (result, rest)
    }
}

/// What a list of events amounts to.
#[derive(Debug, Default)]
struct Seen {
    ready: usize,
    speech_started: usize,
    speech_stopped: usize,
    user_partials: Vec<String>,
    user_finals: Vec<String>,
    agent_text: String,
    audio: Vec<(String, SampleRate, Vec<i16>)>,
    tool_calls: Vec<ToolCallRequest>,
    done: Vec<(String, Option<TokenUsage>)>,
}

impl Seen {
    fn of(events: &[RealtimeEvent]) -> Seen {
        let mut seen = Seen::default();
        for e in events {
            match e {
                RealtimeEvent::Ready => seen.ready += 1,
                RealtimeEvent::SpeechStarted => seen.speech_started += 1,
                RealtimeEvent::SpeechStopped => seen.speech_stopped += 1,
                RealtimeEvent::UserTranscript { text, is_final, .. } => {
                    if *is_final {
                        seen.user_finals.push(text.clone());
                    } else {
                        seen.user_partials.push(text.clone());
                    }
                }
                RealtimeEvent::AgentAudio {
                    item_id,
                    rate,
                    samples,
                } => match seen.audio.iter_mut().find(|(i, _, _)| i == item_id) {
                    Some((_, r, s)) => {
                        assert_eq!(r, rate, "one rate per item");
                        s.extend_from_slice(samples);
                    }
                    None => seen.audio.push((item_id.clone(), *rate, samples.clone())),
                },
                RealtimeEvent::AgentTranscriptDelta { delta, .. } => {
                    seen.agent_text.push_str(delta)
                }
                RealtimeEvent::ToolCall(call) => seen.tool_calls.push(call.clone()),
                RealtimeEvent::ResponseDone { status, usage } => {
                    seen.done.push((status.clone(), *usage))
                }
                RealtimeEvent::Failed(e) => panic!("the session sends no Failed event: {e}"),
            }
        }
        seen
    }

    fn audio_of(&self, item: &str) -> &[i16] {
        self.audio
            .iter()
            .find(|(i, _, _)| i == item)
            .map_or(&[][..], |(_, _, s)| s)
    }
}

fn no_violations(log: &FakeRealtimeLog) {
    assert!(
        log.violations.is_empty(),
        "violations: {:#?}",
        log.violations
    );
}

fn usage_ok(usage: &Option<TokenUsage>) {
    if let Some(u) = usage {
        assert_eq!((u.prompt_tokens, u.completion_tokens), FAKE_USAGE);
    }
}

fn client_events<'a>(log: &'a FakeRealtimeLog, kind: &str) -> Vec<&'a Value> {
    log.client_events
        .iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Session configuration

#[tokio::test]
async fn xai_session_update_is_exact_and_the_upgrade_is_authenticated() {
    let server = serve(script(Vendor::Xai)).await;
    let mut cfg = config(Vendor::Xai, &server);
    cfg.voice = Some("ara".into());
    cfg.turn_detection = TurnDetectionSettings {
        threshold: 0.6,
        prefix_padding: Duration::from_millis(250),
        silence_duration: Duration::from_millis(700),
        idle_timeout: None,
    };
    cfg.provider_tools = vec![ProviderTool::WebSearch];
    let adapter = adapter(cfg);
    let mut h = Harness::start(&adapter, params(SampleRate::Hz8000));
    h.ready().await;
    let (result, _) = h.close().await;
    result.unwrap();

    let log = server.log();
    no_violations(&log);
    let expected = json!({"type": "session.update", "session": {
    "instructions": PROMPT,
    "voice": "ara",
    "turn_detection": {"type": "server_vad", "threshold": 0.6,
                       "silence_duration_ms": 700, "prefix_padding_ms": 250},
    "audio": {"input": {"format": {"type": "audio/pcmu"}},
              "output": {"format": {"type": "audio/pcmu"}}},
    "tools": [
        {"type": "function", "name": "find_slot", "description": "Find appointment slots",
         "parameters": {"type": "object", "properties": {"day": {"type": "string"}},
                        "required": ["day"]}},
        {"type": "web_search"}
    ]}});
    assert_eq!(log.session_update, Some(expected.clone()));
    assert_eq!(
        adapter.session_update(&params(SampleRate::Hz8000)).unwrap(),
        expected
    );
    assert_eq!(log.client_events[0]["type"], "session.update");
    let request = &server.requests()[0];
    assert_eq!(request.path, "/v1/realtime");
    assert_eq!(
        request.query.as_deref(),
        Some("model=grok-voice-think-fast-1.0")
    );
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn openai_session_update_is_exact() {
    let server = serve(script(Vendor::OpenAi)).await;
    let mut cfg = config(Vendor::OpenAi, &server);
    cfg.voice = Some("marin".into());
    cfg.speed = 1.1;
    cfg.turn_detection = TurnDetectionSettings {
        threshold: 0.5,
        prefix_padding: Duration::from_millis(300),
        silence_duration: Duration::from_millis(500),
        idle_timeout: Some(Duration::from_secs(8)),
    };
    cfg.language_hint = Some("en".into());
    cfg.keyterms = vec!["Acme".into(), "Dental".into()];
    let adapter = adapter(cfg);
    let mut h = Harness::start(&adapter, params(SampleRate::Hz16000));
    h.ready().await;
    let (result, _) = h.close().await;
    result.unwrap();

    let log = server.log();
    no_violations(&log);
    assert_eq!(
        log.session_update,
        Some(json!({"type": "session.update", "session": {
            "type": "realtime",
            "instructions": PROMPT,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": {"type": "server_vad", "threshold": 0.5,
                        "prefix_padding_ms": 300, "silence_duration_ms": 500,
                        "create_response": true, "interrupt_response": true,
                        "idle_timeout_ms": 8000},
                    "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en",
                                      "prompt": "Acme, Dental"}
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin",
                           "speed": 1.1}
            },
            "tools": [{"type": "function", "name": "find_slot",
                       "description": "Find appointment slots",
                       "parameters": {"type": "object", "properties": {"day": {"type": "string"}},
                                      "required": ["day"]}}],
            "tool_choice": "auto"
        }}))
    );
    assert_eq!(
        server.requests()[0].query.as_deref(),
        Some("model=gpt-realtime")
    );
}

// ---------------------------------------------------------------------------------------------
// Caller audio as the server decodes it

async fn audio_in(
    vendor: Vendor,
    rate: SampleRate,
    mode: AudioMode,
) -> (FakeRealtimeLog, Vec<i16>) {
    let server = serve(script(vendor)).await;
    let adapter = adapter(config(vendor, &server).with_audio(mode));
    let mut h = Harness::start(&adapter, params(rate));
    h.ready().await;
    h.speak(1000);
    let pushed = h.pushed.clone();
    let (result, _) = h.close().await;
    result.unwrap();
    let log = server.log();
    no_violations(&log);
    (log, pushed)
}

fn batches(log: &FakeRealtimeLog) -> Vec<u64> {
    client_events(log, "input_audio_buffer.append")
        .iter()
        .map(|e| e["bytes"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn caller_audio_is_resampled_to_pcm24k_in_40ms_batches() {
    let (log, _) = audio_in(Vendor::OpenAi, SampleRate::Hz16000, AudioMode::Auto).await;
    assert_eq!(log.input_rate, Some(24000));
    assert_eq!(log.audio_in.len(), 50 * 480);
    assert_eq!(log.audio_in_bytes, 50 * 960);
    let sizes = batches(&log);
    let (last, full) = sizes.split_last().unwrap();
    assert!(full.iter().all(|&b| b == 1920), "{sizes:?}");
    assert!(*last <= 1920 && *last > 0);
    // The tone survives the resampler (past its start-up delay).
    let tail = &log.audio_in[480..];
    let rms = (tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
    assert!(rms > 2000.0, "rms {rms}");
}

#[tokio::test]
async fn caller_audio_at_24k_arrives_bit_exact() {
    let (log, pushed) = audio_in(Vendor::Xai, SampleRate::Hz24000, AudioMode::Auto).await;
    assert_eq!(log.input_rate, Some(24000));
    assert_eq!(log.audio_in, pushed);
}

#[tokio::test]
async fn caller_audio_at_8k_passes_through_as_g711() {
    let (log, pushed) = audio_in(Vendor::Xai, SampleRate::Hz8000, AudioMode::Auto).await;
    assert_eq!(log.input_rate, Some(8000));
    assert_eq!(log.audio_in_bytes, 50 * 160);
    let expected: Vec<i16> = pushed
        .iter()
        .map(|&s| g711::ulaw_to_linear(g711::linear_to_ulaw(s)))
        .collect();
    assert_eq!(log.audio_in, expected);
    assert!(batches(&log)[..24].iter().all(|&b| b == 320));

    let (log, pushed) = audio_in(Vendor::OpenAi, SampleRate::Hz8000, AudioMode::Pcma).await;
    let expected: Vec<i16> = pushed
        .iter()
        .map(|&s| g711::alaw_to_linear(g711::linear_to_alaw(s)))
        .collect();
    assert_eq!(log.audio_in, expected);
    assert_eq!(
        log.session_update.unwrap()["session"]["audio"]["output"]["format"],
        json!({"type": "audio/pcma"})
    );
}

// ---------------------------------------------------------------------------------------------
// A turn: VAD, user transcript, agent audio and transcript, usage

const USER: &str = "What time do you open tomorrow";
const AGENT: &str = "We open at nine in the morning.";

async fn one_turn(
    vendor: Vendor,
    rate: SampleRate,
    mode: AudioMode,
    seed: u64,
    tweak: impl FnOnce(&mut FakeRealtimeScript),
) {
    let mut s =
        script(vendor)
            .seed(seed)
            .turn(FakeTurn::new(300, USER, FakeReply::say(AGENT, 600)));
    tweak(&mut s);
    let server = serve(s).await;
    let adapter = adapter(config(vendor, &server).with_audio(mode));
    let mut h = Harness::start(&adapter, params(rate));
    h.ready().await;
    h.speak(400);
    let events = h.responses(1).await;
    let (result, rest) = h.close().await;
    result.unwrap();
    let log = server.log();
    no_violations(&log);

    let seen = Seen::of(&events);
    assert_eq!(
        (seen.speech_started, seen.speech_stopped),
        (1, 1),
        "seed {seed}"
    );
    assert_eq!(seen.user_finals, vec![USER.to_string()], "seed {seed}");
    for partial in &seen.user_partials {
        assert!(USER.starts_with(partial.as_str()), "partial {partial:?}");
    }
    assert_eq!(seen.agent_text, AGENT, "seed {seed}");
    let sent = &log.sent_audio[0];
    assert_eq!(seen.audio.len(), 1);
    assert_eq!(
        seen.audio_of(&sent.item_id),
        &sent.samples[..],
        "seed {seed}"
    );
    let wire_rate = mode.resolve(rate).rate();
    assert_eq!(seen.audio[0].1, wire_rate);
    assert_eq!(sent.samples.len(), 600 * wire_rate.samples_per_ms());
    assert_eq!(seen.done.len(), 1);
    assert_eq!(seen.done[0].0, "completed");
    usage_ok(&seen.done[0].1);
    assert!(Seen::of(&rest).agent_text.is_empty());
}

#[tokio::test]
async fn xai_turn_over_g711_reassembles_audio_and_transcripts() {
    for seed in 1..=4 {
        one_turn(
            Vendor::Xai,
            SampleRate::Hz8000,
            AudioMode::Auto,
            seed,
            |_| {},
        )
        .await;
    }
}

#[tokio::test]
async fn xai_turn_over_pcm24k() {
    for seed in 5..=7 {
        one_turn(
            Vendor::Xai,
            SampleRate::Hz16000,
            AudioMode::Auto,
            seed,
            |_| {},
        )
        .await;
    }
}

#[tokio::test]
async fn xai_duplicate_text_deltas_are_heard_once() {
    for seed in 1..=3 {
        one_turn(
            Vendor::Xai,
            SampleRate::Hz8000,
            AudioMode::Auto,
            seed,
            |s| s.duplicate_text_deltas = true,
        )
        .await;
    }
}

#[tokio::test]
async fn openai_turn_with_transcription_deltas() {
    for seed in 1..=4 {
        one_turn(
            Vendor::OpenAi,
            SampleRate::Hz24000,
            AudioMode::Auto,
            seed,
            |_| {},
        )
        .await;
    }
}

#[tokio::test]
async fn openai_beta_event_names_are_accepted() {
    for seed in 1..=2 {
        one_turn(
            Vendor::OpenAi,
            SampleRate::Hz8000,
            AudioMode::Pcmu,
            seed,
            |s| s.beta_names = true,
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tools

async fn tool_round_trip(vendor: Vendor, seed: u64, result_before_done: bool) {
    let reply = FakeReply::say("Let me check.", 300)
        .with_tool_call("find_slot", r#"{"day":"monday"}"#)
        .with_tool_call("find_slot", r#"{"day":"tuesday"}"#);
    let s = script(vendor).seed(seed).turn(
        FakeTurn::new(300, "Is there a slot on Monday or Tuesday", reply)
            .after_tool(FakeReply::say("Monday at ten is free.", 400)),
    );
    let server = serve(s).await;
    let adapter = adapter(config(vendor, &server));
    let mut h = Harness::start(&adapter, params(SampleRate::Hz8000));
    h.ready().await;
    h.speak(400);

    let mut calls = Vec::new();
    let mut events = h
        .until(|e| {
            if let RealtimeEvent::ToolCall(call) = e {
                calls.push(call.clone());
            }
            calls.len() == 2
        })
        .await;
    assert_eq!(calls[0].name, "find_slot");
    // A call without `arguments.done` arrives with `response.done`, so the order may vary.
    let mut days: Vec<String> = calls
        .iter()
        .map(|c| {
            let args: Value = serde_json::from_str(&c.arguments).unwrap();
            args["day"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    days.sort();
    assert_eq!(days, ["monday", "tuesday"]);
    if !result_before_done {
        events.extend(h.responses(1).await);
    }
    // As the engine does: one response request, with the last result.
    h.send(RealtimeControl::ToolResult {
        call_id: calls[0].id.clone(),
        output: r#"{"slots":["10:00"]}"#.into(),
        respond: false,
    });
    h.send(RealtimeControl::ToolResult {
        call_id: calls[1].id.clone(),
        output: r#"{"slots":[]}"#.into(),
        respond: true,
    });
    let wanted = if result_before_done { 2 } else { 1 };
    events.extend(h.responses(wanted).await);
    let (result, _) = h.close().await;
    result.unwrap();

    let seen = Seen::of(&events);
    assert_eq!(seen.tool_calls.len(), 2, "each call once (seed {seed})");
    assert_eq!(seen.agent_text, "Let me check.Monday at ten is free.");
    assert_eq!(seen.done.len(), 2);
    let log = server.log();
    no_violations(&log);
    assert_eq!(
        log.tool_outputs,
        vec![
            (calls[0].id.clone(), r#"{"slots":["10:00"]}"#.to_string()),
            (calls[1].id.clone(), r#"{"slots":[]}"#.to_string())
        ]
    );
    assert_eq!(log.response_creates, 1, "exactly one response.create");
    assert_eq!(log.benign_errors, 0);
    let outputs = client_events(&log, "conversation.item.create");
    assert_eq!(
        outputs[0],
        &json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
                "call_id": calls[0].id, "output": r#"{"slots":["10:00"]}"#}})
    );
    assert_eq!(
        client_events(&log, "response.create")[0],
        &json!({"type": "response.create"})
    );
}

#[tokio::test]
async fn xai_tool_round_trip() {
    for seed in 1..=4 {
        tool_round_trip(Vendor::Xai, seed, false).await;
    }
}

#[tokio::test]
async fn openai_tool_round_trip() {
    for seed in 1..=4 {
        tool_round_trip(Vendor::OpenAi, seed, false).await;
    }
}

#[tokio::test]
async fn a_result_before_response_done_waits_for_it() {
    for seed in 1..=3 {
        tool_round_trip(Vendor::Xai, seed, true).await;
        tool_round_trip(Vendor::OpenAi, seed, true).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Barge-in

async fn barge_in(vendor: Vendor, seed: u64) {
    let s = script(vendor)
        .seed(seed)
        .turn(
            FakeTurn::new(
                300,
                "Tell me about your hours",
                FakeReply::say(
                    "We are open from nine to five on weekdays and ten to two on Saturdays.",
                    2000,
                ),
            )
            .barge_in_after(3),
        )
        .turn(FakeTurn::new(
            300,
            "Thanks",
            FakeReply::say("You are welcome.", 300),
        ));
    let server = serve(s).await;
    let adapter = adapter(config(vendor, &server));
    let mut h = Harness::start(&adapter, params(SampleRate::Hz24000));
    h.ready().await;
    h.speak(400);

    let mut item = None;
    let mut received = 0usize;
    h.until(|e| match e {
        RealtimeEvent::AgentAudio {
            item_id, samples, ..
        } => {
            item = Some(item_id.clone());
            received += samples.len();
            false
        }
        RealtimeEvent::SpeechStarted => item.is_some(),
        _ => false,
    })
    .await;
    let item = item.unwrap();
    // The engine cuts the item at what was played, then cancels.
    let played_ms = (received / 24 / 2) as u64;
    h.send(RealtimeControl::Truncate {
        item_id: item.clone(),
        played: Duration::from_millis(played_ms),
    });
    h.send(RealtimeControl::Cancel);
    let events = h.responses(1).await;
    assert_eq!(Seen::of(&events).done[0].0, "cancelled");
    // The session lives on after the benign "nothing to cancel" answer (OpenAI).
    h.speak(400);
    let events = h.responses(1).await;
    let seen = Seen::of(&events);
    assert_eq!(seen.done[0].0, "completed");
    assert_eq!(seen.agent_text, "You are welcome.");
    let (result, _) = h.close().await;
    result.unwrap();

    let log = server.log();
    no_violations(&log);
    assert_eq!(log.barge_ins.len(), 1);
    let barge = &log.barge_ins[0];
    assert_eq!(barge.item_id, item);
    assert!(barge.cancelled);
    assert_eq!(barge.truncated_at_ms, Some(played_ms));
    assert_eq!(log.cancels, 1, "one response.cancel per barge-in");
    assert_eq!(
        client_events(&log, "conversation.item.truncate")[0],
        &json!({"type": "conversation.item.truncate", "item_id": item, "content_index": 0,
                "audio_end_ms": played_ms})
    );
    if vendor == Vendor::OpenAi {
        assert_eq!(log.benign_errors, 1, "the server had cancelled already");
    }
}

#[tokio::test]
async fn xai_barge_in_cancels_and_truncates_at_the_played_position() {
    for seed in 1..=3 {
        barge_in(Vendor::Xai, seed).await;
    }
}

#[tokio::test]
async fn openai_barge_in_tolerates_the_servers_own_cancel() {
    for seed in 1..=3 {
        barge_in(Vendor::OpenAi, seed).await;
    }
}

#[tokio::test]
async fn truncation_never_claims_more_audio_than_received() {
    let s = script(Vendor::OpenAi).turn(FakeTurn::new(300, USER, FakeReply::say(AGENT, 400)));
    let server = serve(s).await;
    let adapter = adapter(config(Vendor::OpenAi, &server));
    let mut h = Harness::start(&adapter, params(SampleRate::Hz24000));
    h.ready().await;
    h.speak(400);
    let seen = Seen::of(&h.responses(1).await);
    let item = seen.audio[0].0.clone();
    h.send(RealtimeControl::Truncate {
        item_id: item.clone(),
        played: Duration::from_secs(30),
    });
    let (result, _) = h.close().await;
    result.unwrap();
    let log = server.log();
    no_violations(&log);
    assert_eq!(log.truncations, vec![(item, 400)]);
    assert_eq!(log.cancels, 0, "nothing was running");
}

#[tokio::test]
async fn a_cancel_with_nothing_running_is_benign() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let s = script(vendor).turn(FakeTurn::new(300, USER, FakeReply::say(AGENT, 300)));
        let server = serve(s).await;
        let adapter = adapter(config(vendor, &server));
        let mut h = Harness::start(&adapter, params(SampleRate::Hz24000));
        h.ready().await;
        h.send(RealtimeControl::Cancel);
        h.speak(400);
        let seen = Seen::of(&h.responses(1).await);
        assert_eq!(seen.agent_text, AGENT);
        let (result, _) = h.close().await;
        result.unwrap();
        let log = server.log();
        no_violations(&log);
        assert_eq!((log.cancels, log.benign_errors), (1, 1));
    }
}

#[tokio::test]
async fn a_response_request_racing_a_server_response_goes_after_it() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let mut s = script(vendor).turn(FakeTurn::new(300, USER, FakeReply::say(AGENT, 300)));
        // Slow events: the request leaves before the client hears `response.created`.
        s.pace = Duration::from_millis(15);
        let server = serve(s).await;
        let adapter = adapter(config(vendor, &server));
        let mut h = Harness::start(&adapter, params(SampleRate::Hz24000));
        h.ready().await;
        h.speak(400);
        let mut events = h.until(|e| *e == RealtimeEvent::SpeechStarted).await;
        h.send(RealtimeControl::InjectText {
            text: "The caller is a member.".into(),
            respond: true,
        });
        events.extend(h.responses(2).await);
        let (result, _) = h.close().await;
        result.unwrap();

        let seen = Seen::of(&events);
        assert_eq!(seen.agent_text, format!("{AGENT}Noted."));
        assert_eq!(seen.done.len(), 2);
        let log = server.log();
        no_violations(&log);
        // Either the server refused the early request (benign) and it was sent again after
        // the running response, or the client already knew and held it.
        assert_eq!(log.response_creates, 1 + log.benign_errors, "{log:?}");
        assert!(log.benign_errors <= 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Verbatim speech, injected text, history

const GREETING: &str = "Hello, this is Acme Dental. How can I help?";

#[tokio::test]
async fn xai_say_is_a_force_message_without_response_create() {
    let mut s = script(Vendor::Xai).turn(FakeTurn::new(300, USER, FakeReply::say(AGENT, 800)));
    // Slow enough that the second Say arrives while the turn's response still runs.
    s.pace = Duration::from_millis(5);
    let server = serve(s).await;
    let adapter = adapter(config(Vendor::Xai, &server));
    let mut h = Harness::start(&adapter, params(SampleRate::Hz8000));
    // Sent before the session is ready: held, then delivered.
    h.send(RealtimeControl::Say {
        text: GREETING.into(),
    });
    let events = h.responses(1).await;
    let seen = Seen::of(&events);
    assert_eq!(seen.ready, 1);
    assert_eq!(seen.agent_text, GREETING);
    assert!(!seen.audio[0].2.is_empty());

    // A Say while a response runs waits for its response.done.
    h.speak(400);
    let mut events = h
        .until(|e| matches!(e, RealtimeEvent::AgentAudio { .. }))
        .await;
    h.send(RealtimeControl::Say {
        text: "One more thing.".into(),
    });
    events.extend(h.responses(2).await);
    let seen = Seen::of(&events);
    assert_eq!(seen.agent_text, format!("{AGENT}One more thing."));
    let (result, _) = h.close().await;
    result.unwrap();

    let log = server.log();
    no_violations(&log);
    assert_eq!(log.force_messages, vec![GREETING, "One more thing."]);
    assert_eq!(log.response_creates, 0);
    assert_eq!(
        client_events(&log, "conversation.item.create")[0],
        &json!({"type": "conversation.item.create", "item": {"type": "force_message",
                "role": "assistant", "content": [{"type": "text", "text": GREETING}]}})
    );
}

#[tokio::test]
async fn openai_say_is_a_response_with_verbatim_instructions() {
    let server = serve(script(Vendor::OpenAi)).await;
    let adapter = adapter(config(Vendor::OpenAi, &server));
    let mut h = Harness::start(&adapter, params(SampleRate::Hz24000));
    h.ready().await;
    h.send(RealtimeControl::Say {
        text: GREETING.into(),
    });
    let seen = Seen::of(&h.responses(1).await);
    assert_eq!(seen.agent_text, GREETING);
    let (result, _) = h.close().await;
    result.unwrap();

    let log = server.log();
    no_violations(&log);
    assert_eq!(log.says, vec![GREETING]);
    assert_eq!(log.response_creates, 1);
    assert_eq!(
        client_events(&log, "response.create")[0],
        &json!({"type": "response.create", "response": {
            "instructions": format!("{}\n{GREETING}", openai::SAY_INSTRUCTIONS),
            "tool_choice": "none"}})
    );
}

#[tokio::test]
async fn history_is_replayed_and_injected_text_can_ask_for_a_response() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let server = serve(script(vendor)).await;
        let adapter = adapter(config(vendor, &server));
        let mut p = params(SampleRate::Hz8000);
        p.history = vec![
            ChatMessage::text(Role::User, "I am calling about my booking."),
            ChatMessage::text(Role::Assistant, "Sure, under which name?"),
            ChatMessage::text(Role::Tool, "{}"),
        ];
        let mut h = Harness::start(&adapter, p);
        h.ready().await;
        h.send(RealtimeControl::InjectText {
            text: "The caller's plan renews on Friday.".into(),
            respond: false,
        });
        h.send(RealtimeControl::InjectText {
            text: "The caller is a member.".into(),
            respond: true,
        });
        let seen = Seen::of(&h.responses(1).await);
        assert_eq!(seen.agent_text, "Noted.");
        let (result, _) = h.close().await;
        result.unwrap();

        let log = server.log();
        no_violations(&log);
        let role = |r: &str, t: &str| (r.to_string(), t.to_string());
        assert_eq!(
            log.messages,
            vec![
                role("user", "I am calling about my booking."),
                role("assistant", "Sure, under which name?"),
                role("user", "The caller's plan renews on Friday."),
                role("user", "The caller is a member."),
            ]
        );
        let assistant = if vendor == Vendor::Xai {
            "text"
        } else {
            "output_text"
        };
        assert_eq!(
            client_events(&log, "conversation.item.create")[1]["item"]["content"][0]["type"],
            assistant
        );
        assert_eq!(log.response_creates, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn a_wrong_key_is_rejected_at_the_handshake_as_auth() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let server = serve(script(vendor)).await;
        let adapter = adapter(config(vendor, &server).with_api_key("not-the-key"));
        let h = Harness::start(&adapter, params(SampleRate::Hz8000));
        let (result, events) = h.ended().await;
        let err = result.unwrap_err();
        assert_eq!(
            err,
            ProviderError::Auth {
                provider: vendor.provider_id().into(),
                status: 401
            }
        );
        assert!(events.is_empty());
        assert_eq!(server.log().connections, 0);
    }
}

#[tokio::test]
async fn a_429_at_the_handshake_is_rate_limited_with_retry_after() {
    let s = script(Vendor::Xai).fault(FakeFault::Reject {
        status: 429,
        retry_after: Some(3),
    });
    let server = serve(s).await;
    let h = Harness::start(
        &adapter(config(Vendor::Xai, &server)),
        params(SampleRate::Hz8000),
    );
    let (result, _) = h.ended().await;
    assert_eq!(
        result.unwrap_err(),
        ProviderError::RateLimited {
            provider: "xai_realtime".into(),
            retry_after: Some(Duration::from_secs(3))
        }
    );
}

/// Runs one turn against a faulty script and returns the session's end and every event.
async fn faulty_turn(
    vendor: Vendor,
    fault: FakeFault,
    audio_ms: u64,
    timeouts: RealtimeTimeouts,
) -> (ProviderError, Vec<RealtimeEvent>, FakeRealtimeLog) {
    let s = script(vendor)
        .seed(3)
        .turn(FakeTurn::new(300, USER, FakeReply::say(AGENT, audio_ms)))
        .fault(fault);
    let server = serve(s).await;
    let adapter = adapter(config(vendor, &server).with_timeouts(timeouts));
    let mut h = Harness::start(&adapter, params(SampleRate::Hz24000));
    h.speak(400);
    let (result, events) = h.ended().await;
    (result.unwrap_err(), events, server.log())
}

#[tokio::test]
async fn an_error_then_close_ends_with_the_server_error_after_the_turn() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let (err, events, log) = faulty_turn(
            vendor,
            FakeFault::ErrorThenClose { after_turns: 1 },
            600,
            timeouts(),
        )
        .await;
        assert_eq!(
            err,
            ProviderError::Server {
                provider: vendor.provider_id().into(),
                code: Some("server_error".into()),
                message: "The server had an error while processing your request.".into()
            }
        );
        let seen = Seen::of(&events);
        assert_eq!(seen.user_finals, vec![USER]);
        assert_eq!(seen.agent_text, AGENT);
        assert_eq!(
            seen.audio_of(&log.sent_audio[0].item_id),
            &log.sent_audio[0].samples[..]
        );
        assert_eq!(seen.done.len(), 1);
        no_violations(&log);
    }
}

#[tokio::test]
async fn an_idle_close_is_closed_with_its_code() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let (err, events, log) = faulty_turn(
            vendor,
            FakeFault::IdleClose { after_turns: 1 },
            300,
            timeouts(),
        )
        .await;
        assert_eq!(
            err,
            ProviderError::Closed {
                provider: vendor.provider_id().into(),
                code: Some(1001),
                reason: "idle timeout".into()
            }
        );
        assert_eq!(Seen::of(&events).done.len(), 1);
        no_violations(&log);
    }
}

#[tokio::test]
async fn a_silent_server_is_detected_by_the_idle_timeout() {
    let quick = RealtimeTimeouts {
        idle: Duration::from_millis(600),
        keepalive: Duration::from_millis(100),
        ..timeouts()
    };
    let (err, events, _) = faulty_turn(
        Vendor::Xai,
        FakeFault::GoSilent { after_turns: 0 },
        300,
        quick,
    )
    .await;
    let ProviderError::Closed { code, reason, .. } = &err else {
        panic!("expected Closed, got {err:?}");
    };
    assert_eq!(*code, None);
    assert!(reason.contains("idle"), "{reason}");
    assert!(err.is_retryable());
    assert_eq!(Seen::of(&events).ready, 1);
}

#[tokio::test]
async fn a_truncated_stream_is_closed_and_keeps_the_audio_received() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let (err, events, log) = faulty_turn(
            vendor,
            FakeFault::Truncate {
                turn: 0,
                after_audio_deltas: 4,
            },
            1500,
            timeouts(),
        )
        .await;
        let ProviderError::Closed { code, reason, .. } = &err else {
            panic!("expected Closed, got {err:?}");
        };
        assert_eq!(*code, None);
        assert!(reason.contains("before response.done"), "{reason}");
        let seen = Seen::of(&events);
        assert!(seen.done.is_empty());
        let sent = &log.sent_audio[0];
        assert!(sent.bytes_sent > 0);
        assert_eq!(seen.audio_of(&sent.item_id), sent.delivered());
    }
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error_after_what_came_before() {
    for vendor in [Vendor::Xai, Vendor::OpenAi] {
        let (err, events, log) = faulty_turn(
            vendor,
            FakeFault::MalformedJson {
                turn: 0,
                after_audio_deltas: 3,
            },
            1500,
            timeouts(),
        )
        .await;
        assert_eq!(err.kind(), "protocol", "{err}");
        let seen = Seen::of(&events);
        let sent = &log.sent_audio[0];
        assert_eq!(seen.audio_of(&sent.item_id), sent.delivered());
        assert!(!sent.delivered().is_empty());
    }
}

#[tokio::test]
async fn a_rejected_configuration_ends_the_session_with_the_server_error() {
    // OpenAI's session shape sent to an xAI server: voice and VAD would be lost there.
    let server = serve(script(Vendor::Xai)).await;
    let mut cfg = config(Vendor::OpenAi, &server);
    cfg.model = model(Vendor::Xai).into();
    cfg.voice = Some("ara".into());
    let h = Harness::start(&adapter(cfg), params(SampleRate::Hz8000));
    let (result, events) = h.ended().await;
    let err = result.unwrap_err();
    let ProviderError::Server { code, message, .. } = &err else {
        panic!("expected Server, got {err:?}");
    };
    assert_eq!(code.as_deref(), Some("invalid_value"));
    assert!(message.contains("audio.output"), "{message}");
    assert!(events.is_empty(), "never ready: {events:?}");
}

#[tokio::test]
async fn a_server_that_never_configures_the_session_times_out() {
    let server = FakeWsServer::start(|_| {
        WsReply::accept(|mut socket| async move {
            use futures_util::StreamExt;
            while socket.next().await.is_some() {}
        })
    })
    .await
    .unwrap();
    let cfg = RealtimeConfig::new(Vendor::OpenAi, "gpt-realtime")
        .with_base_url(server.url())
        .with_timeouts(RealtimeTimeouts {
            setup: Duration::from_millis(300),
            ..timeouts()
        });
    let h = Harness::start(&adapter(cfg), params(SampleRate::Hz24000));
    let (result, _) = h.ended().await;
    assert_eq!(
        result.unwrap_err(),
        ProviderError::FirstByteTimeout {
            provider: "openai_realtime".into(),
            after: Duration::from_millis(300)
        }
    );
}
