//! Calls through the real media path on virtual time: a simulated caller sends RTP/Opus
//! (or PCMU) of a voiced signal into an `RtpPort`, the driver runs VAD, turn-taking and
//! scripted providers, and the caller decodes the agent's RTP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxline_codecs::{
    AudioFrame, FrameOrigin, PayloadFormat, PayloadRegistry, RtpPacket, SampleRate,
};
use voxline_engine::call::{CallEvent, CallSettings, EndReason};
use voxline_engine::driver::{new_call, DriverOptions, ProviderSet};
use voxline_engine::media::{
    InboundMedia, MediaConfig, MemoryTransport, OutboundMedia, PacketTransport, RtpPort,
};
use voxline_engine::testkit::{voiced_signal, ScriptedLlm, ScriptedStt, ScriptedTts};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the simulated caller observed.
#[derive(Default)]
struct CallerLog {
    /// Arrival time of every agent packet and whether it decoded to audible audio.
    agent_packets: Vec<(Duration, bool)>,
    /// Timestamps of agent packets, in order.
    agent_ts: Vec<(u16, u32, bool)>,
}

/// Runs a caller on its end of the pipe: speech during `speech` windows, the rest low noise.
fn spawn_caller(
    mut transport: MemoryTransport,
    config: MediaConfig,
    speech: Vec<(Duration, Duration)>,
    until: Duration,
    log: Arc<Mutex<CallerLog>>,
) -> tokio::task::JoinHandle<MemoryTransport> {
    tokio::spawn(async move {
        let rate = match config.registry.get(config.send_payload_type) {
            Some(PayloadFormat::Opus { pcm_rate }) => pcm_rate,
            _ => SampleRate::Hz8000,
        };
        let mut out = OutboundMedia::new(&config).unwrap();
        let mut inbound = InboundMedia::new(&config).unwrap();
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(ms(20));
        let mut sample = 0usize;
        let mut frame = AudioFrame::silent(rate);
        let mut decoded = AudioFrame::silent(config.caller_rate);
        let remote = addr("10.0.0.1:4000");
        loop {
            tick.tick().await;
            let now = start.elapsed();
            if now >= until {
                break;
            }
            frame.reset(rate, FrameOrigin::Received);
            if speech.iter().any(|&(a, b)| now >= a && now < b) {
                voiced_signal(rate, sample, frame.samples_mut());
            } else {
                for (i, s) in frame.samples_mut().iter_mut().enumerate() {
                    *s = (((sample + i) * 7919 % 41) as i16) - 20;
                }
            }
            sample += rate.frame_samples();
            if let Some(p) = out.next_packet(Some(&frame)) {
                transport.send_to(p, remote).unwrap();
            }
            while let Some((pkt, from)) = transport.try_recv() {
                let parsed = RtpPacket::parse(&pkt).expect("agent sends valid RTP");
                inbound.on_datagram(now, from, &pkt);
                let audible =
                    inbound.next_frame(now + ms(100), &mut decoded) && decoded.level_dbfs() > -50.0;
                let mut log = log.lock().unwrap();
                log.agent_packets.push((now, audible));
                log.agent_ts
                    .push((parsed.sequence(), parsed.timestamp(), parsed.marker()));
            }
        }
        // Keep the pipe open until the host hangs up.
        transport
    })
}

fn opus_config() -> MediaConfig {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(
            111,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz24000,
            },
        )
        .unwrap();
    MediaConfig::new(registry, 111)
}

fn pcmu_config() -> MediaConfig {
    MediaConfig::new(PayloadRegistry::new(), 0)
}

async fn run_call(
    config: MediaConfig,
    settings: CallSettings,
    speech: Vec<(Duration, Duration)>,
    length: Duration,
    script: Vec<&'static str>,
    reply: &'static str,
) -> (
    Vec<CallEvent>,
    Arc<Mutex<CallerLog>>,
    voxline_engine::driver::CallOutcome,
) {
    let (engine_end, caller_end) =
        MemoryTransport::pair(addr("10.0.0.2:5000"), addr("10.0.0.1:4000"));
    let port = RtpPort::new(engine_end, &config).unwrap();
    let providers = ProviderSet {
        stt: Some(Arc::new(ScriptedStt::new(script))),
        llm: Some(Arc::new(ScriptedLlm::always(reply))),
        tts: Some(Arc::new(ScriptedTts::default())),
        realtime: None,
    };
    let (task, control, mut events) = new_call(settings, providers, port, DriverOptions::default());
    let log = Arc::new(Mutex::new(CallerLog::default()));
    let caller = spawn_caller(caller_end, config, speech, length, log.clone());
    let call = tokio::spawn(task.run());
    let _pipe = caller.await.unwrap();
    control.hang_up().unwrap();
    let outcome = call.await.unwrap();
    let mut all = Vec::new();
    while let Some(e) = events.try_next() {
        all.push(e.event);
    }
    (all, log, outcome)
}

#[tokio::test(start_paused = true)]
async fn opus_call_turn_through_real_media() {
    let settings = CallSettings {
        first_message: Some("Hello, you are speaking with the clinic.".into()),
        ..Default::default()
    };
    let (events, log, outcome) = run_call(
        opus_config(),
        settings,
        vec![(ms(4000), ms(5600))],
        ms(12_000),
        vec!["Can I book a cleaning"],
        "Yes, we have a slot on Monday at ten.",
    )
    .await;
    assert_eq!(outcome.end_reason, EndReason::UserHangup);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::CallerSpeechStarted)),
        "VAD heard the caller over RTP/Opus"
    );
    assert!(events.iter().any(
        |e| matches!(e, CallEvent::AgentSpeechStopped { text, .. } if text.contains("Monday"))
    ));
    let user = outcome
        .history
        .iter()
        .find(|m| m.role == voxline_engine::provider::Role::User)
        .unwrap();
    assert_eq!(user.content, "Can I book a cleaning");
    let log = log.lock().unwrap();
    let audible = log.agent_packets.iter().filter(|(_, a)| *a).count();
    assert!(
        audible > 100,
        "caller decoded the agent's Opus audio: {audible}"
    );
    // Continuous numbering: sequence +1 per packet; timestamps advance by 960 per 20 ms,
    // including through agent silence (gaps are multiples of 960), and a marker on each talk-spurt.
    for w in log.agent_ts.windows(2) {
        let (s0, t0, _) = w[0];
        let (s1, t1, m1) = w[1];
        assert_eq!(s1, s0.wrapping_add(1));
        let step = t1.wrapping_sub(t0);
        assert_eq!(step % 960, 0, "timestamp step {step}");
        if step > 960 {
            assert!(m1, "a packet after silence carries the marker");
        }
    }
    assert!(log.agent_ts[0].2, "first packet starts a talk-spurt");
}

#[tokio::test(start_paused = true)]
async fn pcmu_barge_in_silences_the_agent_within_a_frame() {
    let mut settings = CallSettings {
        first_message: Some(
            "Welcome to the clinic. We offer cleanings, whitening, braces, implants and emergency care every day of the week."
                .into(),
        ),
        ..Default::default()
    };
    settings.turn.false_interruption_timeout = None;
    let (events, log, outcome) = run_call(
        pcmu_config(),
        settings,
        vec![(ms(2000), ms(3500))],
        ms(6000),
        vec!["Sorry to interrupt"],
        "No problem.",
    )
    .await;
    let interrupted = events
        .iter()
        .find_map(|e| match e {
            CallEvent::AgentInterrupted { spoken, full, .. } => {
                Some((spoken.clone(), full.clone()))
            }
            _ => None,
        })
        .expect("barge-in");
    assert!(interrupted.0.len() < interrupted.1.len());
    let greeting = &outcome.history[0];
    assert_eq!(
        greeting.content, interrupted.0,
        "history holds only what was played"
    );
    // From the caller's side: agent audio stops soon after the caller starts speaking:
    // VAD start (60 ms) + interruption_min_duration (300 ms) + one frame + transit.
    let log = log.lock().unwrap();
    let last_audible_during_greeting = log
        .agent_packets
        .iter()
        .filter(|(t, a)| *a && *t < ms(3600))
        .map(|(t, _)| *t)
        .max()
        .unwrap();
    assert!(
        last_audible_during_greeting <= ms(2000 + 60 + 300 + 60),
        "agent still audible at {last_audible_during_greeting:?}"
    );
    assert!(
        last_audible_during_greeting >= ms(2300),
        "not cut before the min duration"
    );
    // G.711 keeps sending (silence) packets: media stays continuous.
    let sent = log.agent_packets.len();
    assert!(sent >= 280, "continuous PCMU media: {sent}");
}
