//! Per-stage and whole-chain cost of the media path on one 20 ms frame.
//!
//! The signal is `assets/caller.wav` (espeak-ng speech, 5.8 s at 16 kHz), peak-normalised to
//! -3 dBFS with white noise at -50 dBFS added (a phone line is never digital silence), then
//! resampled to 8, 24 and 48 kHz with the codecs `Resampler`. Every iteration processes the
//! NEXT frame (or packet) and wraps around at the end, so codec, jitter-buffer and resampler
//! state evolve as in a live stream and the cost averages over speech and pauses.
//!
//! Groups: `rtp` (parse, build), `jitter` (insert + pop), `opus_decode` / `opus_encode` at 16
//! and 48 kHz (encode at complexity 5, the voxline default, and 9, libopus's default),
//! `g711` (µ-law and A-law decode and encode of 160 samples), `resample` (48→16, 24→48),
//! `chain_in` (`InboundMedia::on_datagram` + `next_frame`: RTP → source check → jitter buffer
//! → decode → resample to 16 kHz) and `chain_out` (`OutboundMedia::next_packet`: 24 kHz TTS
//! frame → resample → encode → RTP).
//!
//! Run: `cargo bench --bench stages -- --warm-up-time 1 --measurement-time 3`.
//! Under `cargo test --all-targets` criterion runs each benchmark once (test mode).

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use voxline::codecs::g711::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};
use voxline::codecs::rtp::SenderConfig;
use voxline::codecs::{
    AudioFrame, FrameOrigin, JitterBuffer, JitterConfig, OpusConfig, OpusDecoder, OpusEncoder,
    PayloadFormat, PayloadRegistry, Playout, Resampler, RtpPacket, RtpSender, SampleRate,
};
use voxline::engine::media::{InboundMedia, OutboundMedia};
use voxline::MediaConfig;

/// The benchmark signal at every rate, as 20 ms frames.
struct Signal {
    f8: Vec<AudioFrame>,
    f16: Vec<AudioFrame>,
    f24: Vec<AudioFrame>,
    f48: Vec<AudioFrame>,
}

impl Signal {
    fn at(&self, rate: SampleRate) -> &[AudioFrame] {
        match rate {
            SampleRate::Hz8000 => &self.f8,
            SampleRate::Hz16000 => &self.f16,
            SampleRate::Hz24000 => &self.f24,
            SampleRate::Hz48000 => &self.f48,
        }
    }
}

/// Loads and conditions the WAV (see the module docs).
fn signal() -> Signal {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/caller.wav");
    let mut reader = hound::WavReader::open(&path)
        .unwrap_or_else(|e| panic!("benchmark signal {}: {e}", path.display()));
    let rate = SampleRate::from_hz(reader.spec().sample_rate).expect("a supported rate");
    let raw: Vec<f64> = reader
        .samples::<i16>()
        .map(|s| f64::from(s.expect("16-bit samples")))
        .collect();
    let peak = raw.iter().fold(1.0f64, |m, s| m.max(s.abs()));
    let gain = 32768.0 * 10f64.powf(-3.0 / 20.0) / peak;
    // Uniform white noise with an RMS of -50 dBFS (uniform in ±a has RMS a/√3).
    let noise_amp = 32768.0 * 10f64.powf(-50.0 / 20.0) * 3f64.sqrt();
    let mut lcg = 0x2545_F491_4F6C_DD1Du64;
    let samples: Vec<i16> = raw
        .iter()
        .map(|&s| {
            lcg = lcg
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (lcg >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            (s * gain + u * noise_amp).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let base: Vec<AudioFrame> = samples
        .chunks_exact(rate.frame_samples())
        .map(|c| AudioFrame::from_samples(rate, c).expect("one frame"))
        .collect();
    let convert = |to: SampleRate| -> Vec<AudioFrame> {
        let mut r = Resampler::new(rate, to).expect("resampler");
        base.iter()
            .map(|f| r.process(f).expect("resample"))
            .collect()
    };
    Signal {
        f8: convert(SampleRate::Hz8000),
        f16: convert(SampleRate::Hz16000),
        f24: convert(SampleRate::Hz24000),
        f48: convert(SampleRate::Hz48000),
    }
}

/// Cycles through a slice, one item per call.
struct Cycle<'a, T> {
    items: &'a [T],
    next: usize,
}

impl<'a, T> Cycle<'a, T> {
    fn new(items: &'a [T]) -> Self {
        assert!(!items.is_empty(), "nothing to cycle through");
        Cycle { items, next: 0 }
    }

    fn next_item(&mut self) -> &'a T {
        let item = &self.items[self.next];
        self.next = (self.next + 1) % self.items.len();
        item
    }
}

fn opus_config(complexity: u8) -> OpusConfig {
    OpusConfig {
        complexity,
        ..OpusConfig::default()
    }
}

/// Opus payloads of the whole signal, encoded at `rate` (what a sender at that rate emits).
fn opus_payloads(signal: &Signal, rate: SampleRate) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(rate, opus_config(5)).expect("encoder");
    let mut out = vec![0u8; 4000];
    signal
        .at(rate)
        .iter()
        .filter_map(|f| {
            enc.push_frame(f).expect("push");
            enc.next_packet(&mut out)
                .expect("encode")
                .map(|p| out[..p.len].to_vec())
        })
        .collect()
}

fn opus_registry() -> PayloadRegistry {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(
            111,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz48000,
            },
        )
        .expect("opus mapping");
    registry
}

fn sender(payload_type: u8, ticks_per_frame: u32) -> RtpSender {
    RtpSender::new(SenderConfig {
        ssrc: 0x5EED_0001,
        payload_type,
        initial_sequence: 1000,
        initial_timestamp: 160_000,
        ticks_per_frame,
    })
    .expect("sender")
}

fn rtp(c: &mut Criterion, signal: &Signal) {
    let payloads = opus_payloads(signal, SampleRate::Hz48000);
    let mut tx = sender(111, 960);
    let datagrams: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| {
            let mut buf = vec![0u8; 1500];
            let n = tx.write_frame(p, &mut buf).expect("write");
            buf.truncate(n);
            buf
        })
        .collect();
    let mut g = c.benchmark_group("rtp");
    let mut next = Cycle::new(&datagrams);
    g.bench_function("parse_opus48_datagram", |b| {
        b.iter(|| {
            let p = RtpPacket::parse(black_box(next.next_item())).expect("valid");
            black_box((p.sequence(), p.timestamp(), p.payload().len()))
        })
    });
    let mut next = Cycle::new(&payloads);
    let mut buf = [0u8; 1500];
    g.bench_function("build_opus48_datagram", |b| {
        b.iter(|| black_box(tx.write_frame(black_box(next.next_item()), &mut buf)))
    });
    g.finish();
}

fn jitter(c: &mut Criterion, signal: &Signal) {
    let payloads = opus_payloads(signal, SampleRate::Hz48000);
    let mut g = c.benchmark_group("jitter");
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000)).expect("jitter buffer");
    let mut next = Cycle::new(&payloads);
    let (mut seq, mut ts, mut now) = (0u16, 0u32, Duration::ZERO);
    g.bench_function("insert_pop_opus48", |b| {
        b.iter(|| {
            let outcome = jb.insert(now, seq, ts, false, next.next_item());
            let played = matches!(jb.pop(now), Playout::Packet { .. });
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(960);
            now += Duration::from_millis(20);
            black_box((outcome, played))
        })
    });
    g.finish();
}

fn opus_decode(c: &mut Criterion, signal: &Signal) {
    let mut g = c.benchmark_group("opus_decode");
    for (name, packets_at, decode_at) in [
        ("16k_silk_wb", SampleRate::Hz16000, SampleRate::Hz16000),
        ("48k_hybrid_fb", SampleRate::Hz48000, SampleRate::Hz48000),
        (
            "48k_packets_into_16k_decoder",
            SampleRate::Hz48000,
            SampleRate::Hz16000,
        ),
    ] {
        let payloads = opus_payloads(signal, packets_at);
        let mut dec = OpusDecoder::new(decode_at).expect("decoder");
        let mut next = Cycle::new(&payloads);
        g.bench_function(name, |b| {
            b.iter(|| {
                let _ = dec.decode(next.next_item());
                black_box(dec.next_frame())
            })
        });
    }
    g.finish();
}

fn opus_encode(c: &mut Criterion, signal: &Signal) {
    let mut g = c.benchmark_group("opus_encode");
    let mut out = [0u8; 4000];
    for (name, rate, complexity) in [
        ("16k_c5", SampleRate::Hz16000, 5),
        ("16k_c9_libopus_default", SampleRate::Hz16000, 9),
        ("48k_c5", SampleRate::Hz48000, 5),
        ("48k_c9_libopus_default", SampleRate::Hz48000, 9),
    ] {
        let mut enc = OpusEncoder::new(rate, opus_config(complexity)).expect("encoder");
        let mut next = Cycle::new(signal.at(rate));
        g.bench_function(name, |b| {
            b.iter(|| {
                enc.push_frame(next.next_item()).expect("push");
                black_box(enc.next_packet(&mut out).expect("encode"))
            })
        });
    }
    g.finish();
}

fn g711(c: &mut Criterion, signal: &Signal) {
    let mut g = c.benchmark_group("g711");
    let mut ulaw = Vec::new();
    let mut alaw = Vec::new();
    for f in &signal.f8 {
        let mut u = [0u8; 160];
        let mut a = [0u8; 160];
        encode_ulaw(f.samples(), &mut u);
        encode_alaw(f.samples(), &mut a);
        ulaw.push(u);
        alaw.push(a);
    }
    let mut pcm = [0i16; 160];
    let mut codes = [0u8; 160];
    let mut next = Cycle::new(&ulaw);
    g.bench_function("ulaw_decode_160", |b| {
        b.iter(|| black_box(decode_ulaw(next.next_item(), &mut pcm)))
    });
    let mut next = Cycle::new(&signal.f8);
    g.bench_function("ulaw_encode_160", |b| {
        b.iter(|| black_box(encode_ulaw(next.next_item().samples(), &mut codes)))
    });
    let mut next = Cycle::new(&alaw);
    g.bench_function("alaw_decode_160", |b| {
        b.iter(|| black_box(decode_alaw(next.next_item(), &mut pcm)))
    });
    let mut next = Cycle::new(&signal.f8);
    g.bench_function("alaw_encode_160", |b| {
        b.iter(|| black_box(encode_alaw(next.next_item().samples(), &mut codes)))
    });
    g.finish();
}

fn resample(c: &mut Criterion, signal: &Signal) {
    let mut g = c.benchmark_group("resample");
    for (name, from, to) in [
        ("48k_to_16k", SampleRate::Hz48000, SampleRate::Hz16000),
        ("24k_to_48k", SampleRate::Hz24000, SampleRate::Hz48000),
    ] {
        let mut r = Resampler::new(from, to).expect("resampler");
        let mut out = AudioFrame::silent(to);
        let mut next = Cycle::new(signal.at(from));
        g.bench_function(name, |b| {
            b.iter(|| {
                r.process_into(next.next_item(), &mut out)
                    .expect("resample");
                black_box(out.samples()[0])
            })
        });
    }
    g.finish();
}

fn chain_in(c: &mut Criterion, signal: &Signal) {
    let mut g = c.benchmark_group("chain_in");
    let from: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 4000));
    let pcmu: Vec<Vec<u8>> = signal
        .f8
        .iter()
        .map(|f| {
            let mut u = vec![0u8; 160];
            encode_ulaw(f.samples(), &mut u);
            u
        })
        .collect();
    let cases = [
        // A fullband Opus sender; InboundMedia decodes straight to 16 kHz (no resampler).
        (
            "opus48_rtp_jitter_dec16k",
            opus_payloads(signal, SampleRate::Hz48000),
            MediaConfig::new(opus_registry(), 111),
            111u8,
            960u32,
        ),
        // G.711 µ-law, decoded at 8 kHz and resampled to 16 kHz.
        (
            "pcmu_rtp_jitter_dec8k_resample16k",
            pcmu,
            {
                let mut cfg = MediaConfig::new(PayloadRegistry::new(), 0);
                cfg.caller_rate = SampleRate::Hz16000;
                cfg
            },
            0u8,
            160u32,
        ),
    ];
    for (name, payloads, config, pt, ticks) in cases {
        let mut inbound = InboundMedia::new(&config).expect("inbound media");
        let mut tx = sender(pt, ticks);
        let mut next = Cycle::new(&payloads);
        let mut datagram = [0u8; 1500];
        let mut out = AudioFrame::silent(config.caller_rate);
        let mut now = Duration::ZERO;
        g.bench_function(name, |b| {
            b.iter(|| {
                let n = tx
                    .write_frame(next.next_item(), &mut datagram)
                    .expect("write");
                let verdict = inbound.on_datagram(now, from, &datagram[..n]);
                let got = inbound.next_frame(now, &mut out);
                now += Duration::from_millis(20);
                black_box((verdict, got))
            })
        });
    }
    g.finish();
}

fn chain_out(c: &mut Criterion, signal: &Signal) {
    let mut g = c.benchmark_group("chain_out");
    let opus = |complexity| {
        let mut cfg = MediaConfig::new(opus_registry(), 111);
        cfg.opus = opus_config(complexity);
        cfg
    };
    for (name, config) in [
        ("tts24k_resample48k_opus48_c5_rtp", opus(5)),
        ("tts24k_resample48k_opus48_c9_rtp", opus(9)),
        (
            "tts24k_resample8k_pcmu_rtp",
            MediaConfig::new(PayloadRegistry::new(), 0),
        ),
    ] {
        let mut outbound = OutboundMedia::new(&config).expect("outbound media");
        let mut next = Cycle::new(&signal.f24);
        g.bench_function(name, |b| {
            b.iter(|| {
                let frame = next.next_item();
                debug_assert_eq!(frame.origin(), FrameOrigin::Received);
                black_box(outbound.next_packet(Some(frame)).map(<[u8]>::len))
            })
        });
    }
    g.finish();
}

fn stages(c: &mut Criterion) {
    let signal = signal();
    rtp(c, &signal);
    jitter(c, &signal);
    opus_decode(c, &signal);
    opus_encode(c, &signal);
    g711(c, &signal);
    resample(c, &signal);
    chain_in(c, &signal);
    chain_out(c, &signal);
}

criterion_group!(benches, stages);
criterion_main!(benches);
