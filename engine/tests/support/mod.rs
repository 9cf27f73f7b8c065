//! Shared harness for calls through the real media path on virtual time: a simulated
//! caller on the far end of an in-memory RTP pipe that speaks (voiced signal), presses
//! keys (RFC 4733) and decodes what the agent sends back.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxline_codecs::dtmf::DtmfSender;
use voxline_codecs::{
    AudioFrame, FrameOrigin, PayloadFormat, PayloadRegistry, RtpPacket, SampleRate,
};
use voxline_engine::call::{CallEvent, CallSettings};
use voxline_engine::driver::{new_call, CallControl, CallOutcome, DriverOptions, ProviderSet};
use voxline_engine::media::{
    InboundMedia, MediaConfig, MemoryTransport, OutboundMedia, PacketTransport, RtpPort,
};
use voxline_engine::testkit::voiced_signal;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the simulated caller does.
#[derive(Clone, Default)]
pub struct CallerScript {
    /// (start, end) windows of speech.
    pub speech: Vec<(Duration, Duration)>,
    /// Key presses: (time, digit).
    pub keys: Vec<(Duration, char)>,
    /// How long the caller stays on the line.
    pub until: Duration,
}

/// What the simulated caller observed.
#[derive(Default)]
pub struct CallerLog {
    /// Arrival time of every agent packet and whether it decoded to audible audio.
    pub agent_packets: Vec<(Duration, bool)>,
    /// Timestamps of agent packets, in order.
    pub agent_ts: Vec<(u16, u32, bool)>,
}

/// Runs a caller on its end of the pipe: speech during `speech` windows, the rest low noise.
pub fn spawn_caller(
    mut transport: MemoryTransport,
    config: MediaConfig,
    script: CallerScript,
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
        let event_pt = config
            .registry
            .find(|f| matches!(f, PayloadFormat::TelephoneEvent { .. }));
        let clock = config
            .registry
            .get(config.send_payload_type)
            .map(|f| f.clock_rate())
            .unwrap_or(8000);
        let mut keys = script.keys.clone();
        keys.sort_by_key(|k| k.0);
        let mut keys = std::collections::VecDeque::from(keys);
        let mut tone: Option<std::collections::VecDeque<voxline_codecs::dtmf::DtmfPacket>> = None;
        let mut tone_started = Duration::ZERO;
        let speech = script.speech.clone();
        loop {
            tick.tick().await;
            let now = start.elapsed();
            if now >= script.until {
                break;
            }
            if tone.is_none() && keys.front().is_some_and(|k| k.0 <= now) {
                if let (Some((_, digit)), Some(_)) = (keys.pop_front(), event_pt) {
                    let sender = DtmfSender::new(clock).unwrap();
                    let t = sender.tone(digit, ms(120), out.next_timestamp()).unwrap();
                    tone = Some(t.collect());
                    tone_started = now;
                }
            }
            if let (Some(packets), Some(pt)) = (tone.as_mut(), event_pt) {
                // During a key press the caller sends telephone-events instead of audio.
                let elapsed_ticks =
                    ((now - tone_started).as_micros() as u64 * clock as u64 / 1_000_000) as u32;
                while packets
                    .front()
                    .is_some_and(|p| p.send_offset <= elapsed_ticks)
                {
                    let p = packets.pop_front().unwrap();
                    if let Some(bytes) = out.event_packet(pt, &p) {
                        transport.send_to(bytes, remote).unwrap();
                    }
                }
                if packets.is_empty() {
                    tone = None;
                }
                let _ = out.next_packet(None);
                continue;
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

/// A call over the in-memory RTP pipe: the engine's side, the caller's side, and the results.
pub struct RtpCall {
    pub events: Vec<CallEvent>,
    pub log: Arc<Mutex<CallerLog>>,
    pub outcome: CallOutcome,
}

pub fn opus_config() -> MediaConfig {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(
            111,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz24000,
            },
        )
        .unwrap();
    registry
        .insert(101, PayloadFormat::TelephoneEvent { clock_rate: 48_000 })
        .unwrap();
    MediaConfig::new(registry, 111)
}

pub fn pcmu_config() -> MediaConfig {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(101, PayloadFormat::TelephoneEvent { clock_rate: 8000 })
        .unwrap();
    MediaConfig::new(registry, 0)
}

/// Runs a whole call; `host` gets the control handle while the call runs (e.g. to answer tools).
pub async fn run_rtp_call<F, Fut>(
    config: MediaConfig,
    settings: CallSettings,
    providers: ProviderSet,
    script: CallerScript,
    host: F,
) -> RtpCall
where
    F: FnOnce(CallControl, voxline_engine::driver::EventStream) -> Fut,
    Fut: std::future::Future<Output = Vec<CallEvent>> + Send + 'static,
{
    let (engine_end, caller_end) =
        MemoryTransport::pair(addr("10.0.0.2:5000"), addr("10.0.0.1:4000"));
    let port = RtpPort::new(engine_end, &config).unwrap();
    let (task, control, events) = new_call(settings, providers, port, DriverOptions::default());
    let log = Arc::new(Mutex::new(CallerLog::default()));
    let until = script.until;
    let caller = spawn_caller(caller_end, config, script, log.clone());
    let call = tokio::spawn(task.run());
    let host_task = tokio::spawn(host(control.clone(), events));
    tokio::select! {
        _ = tokio::time::sleep(until) => {}
    }
    let _pipe = caller.await.unwrap();
    let _ = control.hang_up();
    let outcome = call.await.unwrap();
    let events = host_task.await.unwrap();
    RtpCall {
        events,
        log,
        outcome,
    }
}

/// A host that only collects events until the stream ends.
pub async fn collect(
    _control: CallControl,
    mut events: voxline_engine::driver::EventStream,
) -> Vec<CallEvent> {
    let mut all = Vec::new();
    while let Some(e) = events.next().await {
        all.push(e.event);
    }
    all
}
