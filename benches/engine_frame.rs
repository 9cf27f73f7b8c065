//! Per-frame cost of the engine (media path + VAD + turn logic, providers idle) beside
//! the raw codec cost of the same frame (libopus / G.711 + resampler + VAD alone).
//!
//! Both directions run every frame: a caller frame comes in as RTP and goes through
//! VAD and the call core; the agent is speaking and its frame goes out as RTP.
//! `cargo bench --bench engine_frame -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use voxline::codecs::{
    AudioFrame, FrameDecoder, FrameEncoder, FrameOrigin, OpusConfig, OpusEncoder, PacketDuration,
    PayloadFormat, PayloadRegistry, Resampler, RtpPacket, SampleRate,
};
use voxline::engine::call::{Action, Call, CallSettings};
use voxline::engine::media::{InboundMedia, MediaConfig, OutboundMedia};
use voxline::engine::provider::TtsEvent;
use voxline::engine::ring::speech_ring;
use voxline::engine::testkit::voiced_signal;
use voxline::engine::vad::{VadConfig, VoiceDetector};

/// A codec setup: what the caller sends and what the engine encodes.
struct Variant {
    name: &'static str,
    config: MediaConfig,
    caller_rate: SampleRate,
}

fn variants() -> Vec<Variant> {
    let mut opus = PayloadRegistry::new();
    opus.insert(
        111,
        PayloadFormat::Opus {
            pcm_rate: SampleRate::Hz24000,
        },
    )
    .expect("dynamic payload type");
    let mut opus_cfg = MediaConfig::new(opus, 111);
    opus_cfg.opus = OpusConfig {
        complexity: 5,
        ..OpusConfig::default()
    };
    vec![
        Variant {
            name: "opus48_c5",
            config: opus_cfg,
            caller_rate: SampleRate::Hz48000,
        },
        Variant {
            name: "pcmu",
            config: MediaConfig::new(PayloadRegistry::new(), 0),
            caller_rate: SampleRate::Hz8000,
        },
    ]
}

/// Caller packets of a voiced signal, produced with the engine's own encoder.
fn caller_packets(v: &Variant, n: usize) -> Vec<Vec<u8>> {
    let mut out = OutboundMedia::new(&v.config).expect("media config");
    let mut frame = AudioFrame::silent(v.caller_rate);
    let mut packets = Vec::with_capacity(n);
    let mut i = 0;
    while packets.len() < n {
        frame.reset(v.caller_rate, FrameOrigin::Received);
        voiced_signal(
            v.caller_rate,
            i * v.caller_rate.frame_samples(),
            frame.samples_mut(),
        );
        i += 1;
        if let Some(p) = out.next_packet(Some(&frame)) {
            packets.push(p.to_vec());
        }
    }
    packets
}

fn engine_frame(c: &mut Criterion) {
    let remote: SocketAddr = "10.0.0.1:4000".parse().expect("address");
    let mut group = c.benchmark_group("frame");
    for v in variants() {
        let packets = caller_packets(&v, 3000);
        // Engine: the whole per-frame path of a call.
        {
            let mut inbound = InboundMedia::new(&v.config).expect("inbound");
            let mut outbound = OutboundMedia::new(&v.config).expect("outbound");
            let caller_rate = v.config.caller_rate;
            let mut vad = VoiceDetector::new(caller_rate, VadConfig::default()).expect("vad");
            let (stt_tx, stt_rx) = speech_ring(64);
            let mut settings = CallSettings {
                first_message: Some("Welcome to the clinic.".into()),
                ..Default::default()
            };
            settings.turn.interruption_min_words = u32::MAX;
            settings.turn.false_interruption_timeout = None;
            let mut call = Call::new(settings);
            call.start(Duration::ZERO);
            let mut op = 0;
            while let Some(a) = call.poll_action() {
                if let Action::StartTts { op: o } = a {
                    op = o;
                }
            }
            // A minute of agent audio, topped up every 50 s of frames (one push per 2500
            // iterations), keeps the outbound side busy for the whole measurement.
            let mut tts = vec![0i16; 24_000 * 60];
            voiced_signal(SampleRate::Hz24000, 0, &mut tts);
            call.on_tts(
                Duration::ZERO,
                op,
                TtsEvent::Audio {
                    rate: SampleRate::Hz24000,
                    samples: tts.clone(),
                },
            );
            let mut caller_frame = AudioFrame::silent(caller_rate);
            let mut agent_frame = AudioFrame::silent(SampleRate::Hz24000);
            let mut k = 0usize;
            let ticks = format_ticks(&v);
            let mut scratch = [0u8; 1600];
            group.bench_function(format!("engine_{}", v.name), |b| {
                b.iter(|| {
                    let now = Duration::from_millis(k as u64 * 20);
                    if k % 2500 == 2499 {
                        call.on_tts(
                            now,
                            op,
                            TtsEvent::Audio {
                                rate: SampleRate::Hz24000,
                                samples: tts.clone(),
                            },
                        );
                    }
                    // Replay the recorded packets with ever-increasing numbering, as a live stream.
                    let p = renumber(&packets[k % packets.len()], k, ticks, &mut scratch);
                    k += 1;
                    inbound.on_datagram(now, remote, p);
                    if inbound.next_frame(now, &mut caller_frame) {
                        let outcome = vad.process(now, &caller_frame);
                        call.on_caller_vad(now, outcome);
                        stt_tx.push(caller_frame);
                        let _ = stt_rx.try_pop();
                    }
                    call.tick(now);
                    let agent = call
                        .pull_agent_frame(now, &mut agent_frame)
                        .map(|_| &agent_frame);
                    black_box(outbound.next_packet(agent).map(|p| p.len()));
                    while call.poll_action().is_some() {}
                })
            });
            let c = inbound.counters();
            eprintln!(
                "engine_{}: {} frames decoded, {} concealed, {} packets out",
                v.name,
                c.frames_decoded,
                c.frames_concealed,
                outbound.counters().packets
            );
        }
        // Floor: the same frames through the codec, resampler and VAD alone.
        {
            let caller_rate = v.config.caller_rate;
            let format = v
                .config
                .registry
                .get(v.config.send_payload_type)
                .expect("format");
            let decode_format = match format {
                PayloadFormat::Opus { .. } => PayloadFormat::Opus {
                    pcm_rate: caller_rate,
                },
                f => f,
            };
            let mut decoder = FrameDecoder::new(decode_format).expect("decoder");
            let mut encoder = match format {
                PayloadFormat::Opus { pcm_rate } => {
                    FrameEncoder::from(OpusEncoder::new(pcm_rate, v.config.opus).expect("encoder"))
                }
                f => FrameEncoder::new(f, PacketDuration::Ms20).expect("encoder"),
            };
            let enc_rate = encoder.rate();
            let mut resampler = (enc_rate != SampleRate::Hz24000)
                .then(|| Resampler::new(SampleRate::Hz24000, enc_rate).expect("resampler"));
            let mut vad = VoiceDetector::new(caller_rate, VadConfig::default()).expect("vad");
            let tts_frames: Vec<AudioFrame> = (0..500)
                .map(|i| {
                    let mut f = AudioFrame::silent(SampleRate::Hz24000);
                    voiced_signal(SampleRate::Hz24000, i * 480, f.samples_mut());
                    f
                })
                .collect();
            let mut resampled = AudioFrame::silent(enc_rate);
            let mut payload = [0u8; 1500];
            let mut k = 0usize;
            group.bench_function(format!("codec_floor_{}", v.name), |b| {
                b.iter(|| {
                    let p = &packets[k % packets.len()];
                    let rtp = RtpPacket::parse(p).expect("rtp");
                    let _ = decoder.decode(rtp.payload());
                    if let Some(f) = decoder.next_frame() {
                        black_box(vad.process(Duration::ZERO, &f));
                    }
                    let tts = &tts_frames[k % tts_frames.len()];
                    k += 1;
                    let input = match resampler.as_mut() {
                        Some(r) => {
                            let _ = r.process_into(tts, &mut resampled);
                            &resampled
                        }
                        None => tts,
                    };
                    let _ = encoder.push_frame(input);
                    black_box(encoder.next_packet(&mut payload).ok());
                })
            });
        }
    }
    group.finish();
}

fn format_ticks(v: &Variant) -> u32 {
    v.config
        .registry
        .get(v.config.send_payload_type)
        .map(|f| f.ticks_per_frame())
        .unwrap_or(160)
}

/// Copies an RTP packet with sequence number `k` and timestamp `k * ticks`.
fn renumber<'a>(packet: &[u8], k: usize, ticks: u32, out: &'a mut [u8; 1600]) -> &'a [u8] {
    let n = packet.len();
    out[..n].copy_from_slice(packet);
    out[2..4].copy_from_slice(&(k as u16).to_be_bytes());
    out[4..8].copy_from_slice(&((k as u32).wrapping_mul(ticks)).to_be_bytes());
    &out[..n]
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = engine_frame
}
criterion_main!(benches);
