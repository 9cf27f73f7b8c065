//! What the same codec work costs under different wake-up schedules, on this machine.
//!
//! ```sh
//! cargo run --release --example wake_cost -- --calls 25 --seconds 5 --rounds 5
//! ```
//!
//! K calls' worth of Opus work (decode a caller packet at 16 kHz; while the agent speaks, a
//! third of the time, encode a 24 kHz frame at complexity 5), each call with its own decoder and
//! encoder, run on one thread in eight schedules, and the thread's CPU time per call-frame:
//!
//! - `back-to-back`: every frame of every call in a loop, never idle;
//! - `back-to-back-one-state`: the same frames through one decoder and one encoder (how the
//!   load harness measures the codec floor), which shows what K calls' state costs the caches;
//! - `grid-G`: in real time, 20 ms per frame, each call's frame at its own phase spread over
//!   the 20 ms and snapped to a G ms grid, the thread sleeping in between — `grid-1` is one
//!   wake-up per call (each clock at its own phase), `grid-20` is one wake-up per frame for
//!   all K calls.
//!
//! - `grid-4-rtp`: `grid-4` with each call's frames carried over UDP on 127.0.0.1 as the engine
//!   carries them: the caller's packet sent to the call's socket, read there (and the socket
//!   read once more, empty, as a tick's drain does) before it is decoded, the agent's packet sent
//!   back and read by the caller;
//! - `grid-4-sockets-only`: those socket calls alone, no codec work.
//!
//! `grid-4-rtp` less `grid-4` less `grid-4-sockets-only` is what the socket calls cost the
//! codec work around them (its caches and branch predictors refilled after the kernel's
//! network path), beyond their own cost.
//!
//! Apart from those two: no sockets, no runtime, no engine: only the schedule differs. On a
//! virtual machine an idle vCPU halts and the host may run something else on its core, so the
//! work after a wake-up finds its caches cold; this shows how much that costs here, which is
//! what the engine's shared tick grid (`voxline::engine::tick_grid`) saves. The schedules take
//! turns for `--rounds` rounds (a burst on a shared host then hits all of them alike); prints
//! one JSON object per schedule with the median and the range over the rounds.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[path = "common/cpu.rs"]
mod cpu;

use cpu::this_thread_cpu;
use voxline::codecs::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use voxline::codecs::{AudioFrame, CodecError, SampleRate};
use voxline::engine::testkit::voiced_signal;

const USAGE: &str = "usage: wake_cost [--calls K (1-1000, default 25)] \
     [--seconds S per schedule and round (1-600, default 5)] [--rounds R (1-100, default 5)]";

/// One call's codec state and its place in the caller's and the agent's audio.
struct CallCodecs {
    decoder: OpusDecoder,
    encoder: OpusEncoder,
    frame: usize,
    packet: [u8; 1500],
}

/// A call's two UDP sockets on 127.0.0.1: the caller's and the engine's, non-blocking.
struct CallSockets {
    caller: UdpSocket,
    engine: UdpSocket,
    caller_at: SocketAddr,
    engine_at: SocketAddr,
}

impl CallSockets {
    fn new() -> std::io::Result<CallSockets> {
        let caller = UdpSocket::bind("127.0.0.1:0")?;
        let engine = UdpSocket::bind("127.0.0.1:0")?;
        caller.set_nonblocking(true)?;
        engine.set_nonblocking(true)?;
        Ok(CallSockets {
            caller_at: caller.local_addr()?,
            engine_at: engine.local_addr()?,
            caller,
            engine,
        })
    }

    /// Carries `packet` from the caller to the engine and drains the engine's socket as a tick
    /// does (until it is empty); returns the bytes read.
    fn inbound(&self, packet: &[u8], buf: &mut [u8]) -> std::io::Result<usize> {
        self.caller.send_to(packet, self.engine_at)?;
        let mut got = 0;
        while let Ok((n, _)) = self.engine.recv_from(buf) {
            got = n;
        }
        Ok(got)
    }

    /// Carries the agent's `packet` from the engine to the caller, which reads it.
    fn outbound(&self, packet: &[u8], buf: &mut [u8]) -> std::io::Result<()> {
        self.engine.send_to(packet, self.caller_at)?;
        while self.caller.recv_from(buf).is_ok() {}
        Ok(())
    }
}

/// The audio every call plays: caller packets (48 kHz Opus) and agent frames (24 kHz PCM).
struct Media {
    caller_packets: Vec<Vec<u8>>,
    agent_frames: Vec<AudioFrame>,
}

impl Media {
    fn new() -> Result<Media, CodecError> {
        const FRAMES: usize = 500;
        let mut encoder = OpusEncoder::new(SampleRate::Hz48000, OpusConfig::default())?;
        let mut pcm = vec![0i16; SampleRate::Hz48000.frame_samples()];
        let mut out = [0u8; 1500];
        let mut caller_packets = Vec::with_capacity(FRAMES);
        for f in 0..FRAMES {
            voiced_signal(SampleRate::Hz48000, f * pcm.len(), &mut pcm);
            encoder.push_frame(&AudioFrame::from_samples(SampleRate::Hz48000, &pcm)?)?;
            if let Some(p) = encoder.next_packet(&mut out)? {
                caller_packets.push(out[..p.len].to_vec());
            }
        }
        let mut pcm = vec![0i16; SampleRate::Hz24000.frame_samples()];
        let mut agent_frames = Vec::with_capacity(FRAMES);
        for f in 0..FRAMES {
            voiced_signal(SampleRate::Hz24000, f * pcm.len(), &mut pcm);
            agent_frames.push(AudioFrame::from_samples(SampleRate::Hz24000, &pcm)?);
        }
        Ok(Media {
            caller_packets,
            agent_frames,
        })
    }

    /// One call's work for one 20 ms frame.
    fn frame(&self, call: &mut CallCodecs) -> Result<(), CodecError> {
        let k = call.frame;
        call.decoder
            .decode(&self.caller_packets[k % self.caller_packets.len()])?;
        std::hint::black_box(call.decoder.next_frame());
        // The agent speaks one stretch of 100 frames in three.
        if Self::agent_speaks(k) {
            call.encoder
                .push_frame(&self.agent_frames[k % self.agent_frames.len()])?;
            std::hint::black_box(call.encoder.next_packet(&mut call.packet)?);
        }
        call.frame += 1;
        Ok(())
    }

    /// The agent speaks one stretch of 100 frames in three.
    fn agent_speaks(k: usize) -> bool {
        (k / 100).is_multiple_of(3)
    }

    /// One call's frame carried over its sockets: the caller's packet in (read before the
    /// decode, as the engine reads it), with `codecs` the codec work, and when the agent
    /// speaks a packet out of the caller packet's size (from the encoder's output buffer with
    /// `codecs`).
    fn frame_over_udp(
        &self,
        call: &mut CallCodecs,
        sockets: &CallSockets,
        codecs: bool,
        buf: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error>> {
        let k = call.frame;
        let packet = &self.caller_packets[k % self.caller_packets.len()];
        let n = sockets.inbound(packet, buf)?;
        if codecs {
            self.frame(call)?;
        } else {
            call.frame += 1;
        }
        if Self::agent_speaks(k) {
            let out = if codecs {
                &call.packet[..]
            } else {
                &packet[..]
            };
            sockets.outbound(&out[..n.min(out.len())], buf)?;
        }
        Ok(())
    }
}

fn calls(k: usize) -> Result<Vec<CallCodecs>, CodecError> {
    (0..k)
        .map(|i| {
            Ok(CallCodecs {
                decoder: OpusDecoder::new(SampleRate::Hz16000)?,
                encoder: OpusEncoder::new(
                    SampleRate::Hz24000,
                    OpusConfig {
                        complexity: 5,
                        ..OpusConfig::default()
                    },
                )?,
                // Calls at different places in their audio, as real calls would be.
                frame: i * 37,
                packet: [0u8; 1500],
            })
        })
        .collect()
}

/// How the frames are run.
#[derive(Clone, Copy)]
enum Schedule {
    /// Back to back through each call's own codecs.
    BackToBack,
    /// Back to back through one decoder and encoder.
    OneState,
    /// In real time, each call's phase snapped to a grid of this many ms.
    Grid(u64),
    /// `Grid`, each call's packets carried over UDP (`true`: with the codec work; `false`:
    /// the socket calls alone).
    GridUdp(u64, bool),
}

/// Runs `frames` frames of each of `k` calls in `schedule` and returns the thread's CPU per
/// call-frame.
fn measure(
    media: &Media,
    k: usize,
    frames: u64,
    schedule: Schedule,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut calls = calls(match schedule {
        Schedule::OneState => 1,
        _ => k,
    })?;
    let sockets = match schedule {
        Schedule::GridUdp(..) => (0..k)
            .map(|_| CallSockets::new())
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let cpu_before =
        this_thread_cpu().ok_or("no per-thread CPU clock (/proc/thread-self/schedstat)")?;
    match schedule {
        Schedule::BackToBack => {
            for _ in 0..frames {
                for call in calls.iter_mut() {
                    media.frame(call)?;
                }
            }
        }
        Schedule::OneState => {
            for _ in 0..frames * k as u64 {
                media.frame(&mut calls[0])?;
            }
        }
        Schedule::Grid(g) | Schedule::GridUdp(g, _) => {
            let start = Instant::now();
            let step = g * 1000;
            let mut buf = [0u8; 2048];
            for f in 0..frames {
                for (i, call) in calls.iter_mut().enumerate() {
                    let phase = (20_000 * i as u64 / k as u64) / step * step;
                    let due = start + Duration::from_micros(20_000 * f + phase);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    match schedule {
                        Schedule::GridUdp(_, codecs) => {
                            media.frame_over_udp(call, &sockets[i], codecs, &mut buf)?
                        }
                        _ => media.frame(call)?,
                    }
                }
            }
        }
    }
    let cpu = this_thread_cpu().ok_or("no per-thread CPU clock")? - cpu_before;
    Ok(cpu / (frames * k as u64) as u32)
}

fn parse() -> Result<(usize, u64, usize), String> {
    let mut k = 25usize;
    let mut seconds = 5u64;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        let n: u64 = value.parse().map_err(|_| USAGE.to_string())?;
        match arg.as_str() {
            "--calls" if (1..=1000).contains(&n) => k = n as usize,
            "--seconds" if (1..=600).contains(&n) => seconds = n,
            "--rounds" if (1..=100).contains(&n) => rounds = n as usize,
            _ => return Err(USAGE.to_string()),
        }
    }
    Ok((k, seconds, rounds))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (k, seconds, rounds) = parse()?;
    let media = Media::new()?;
    let frames = seconds * 50;
    let schedules: [(&str, Schedule); 8] = [
        ("back-to-back", Schedule::BackToBack),
        ("back-to-back-one-state", Schedule::OneState),
        ("grid-1", Schedule::Grid(1)),
        ("grid-2", Schedule::Grid(2)),
        ("grid-4", Schedule::Grid(4)),
        ("grid-20", Schedule::Grid(20)),
        ("grid-4-rtp", Schedule::GridUdp(4, true)),
        ("grid-4-sockets-only", Schedule::GridUdp(4, false)),
    ];
    let mut us: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); schedules.len()];
    for _ in 0..rounds {
        for (s, (_, schedule)) in schedules.iter().enumerate() {
            us[s].push(measure(&media, k, frames, *schedule)?.as_secs_f64() * 1e6);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&mut us[0]);
    for ((name, _), v) in schedules.iter().zip(us.iter_mut()) {
        let m = median(v);
        println!(
            "{{\"schedule\":\"{name}\",\"calls\":{k},\"frames_per_call\":{},\"cpu_us_per_call_frame_median\":{m:.2},\"min\":{:.2},\"max\":{:.2},\"vs_back_to_back\":{:.3}}}",
            frames * rounds as u64,
            v[0],
            v[v.len() - 1],
            m / base
        );
    }
    Ok(())
}
