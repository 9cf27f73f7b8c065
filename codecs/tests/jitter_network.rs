//! The jitter buffer behind a simulated lossy, jittery, reordering network,
//! driven on virtual time by an endpoint that plays one 20 ms frame per tick.

use std::collections::BTreeMap;
use std::time::Duration;

use voxline_codecs::{InsertOutcome, JitterBuffer, JitterConfig, Playout, PlayoutAdjust};

/// xorshift64*: a tiny deterministic generator, good enough to shape traffic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `[lo, hi)`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// How the simulated network treats the packets.
struct Network {
    random_loss: f64,
    burst_start: f64,
    burst_len: u32,
    reorder: f64,
    base_delay_us: u64,
    jitter_us: u64,
}

const NETWORK: Network = Network {
    random_loss: 0.05,
    burst_start: 0.01,
    burst_len: 3,
    reorder: 0.10,
    base_delay_us: 30_000,
    jitter_us: 40_000,
};

/// One packet as the sender emitted it.
#[derive(Clone, Copy, Debug)]
struct Sent {
    index: u32,
    send_us: u64,
    seq: u16,
    ts: u32,
    marker: bool,
    frames: u8,
}

/// Delivery of the sent packets: arrival times of the survivors, and which were lost.
struct Delivery {
    arrivals: Vec<(u64, Sent)>,
    dropped: Vec<u32>,
}

fn deliver(net: &Network, packets: &[Sent], rng: &mut Rng) -> Delivery {
    let mut arrivals = Vec::new();
    let mut dropped = Vec::new();
    let mut burst_left = 0;
    for &p in packets {
        if burst_left == 0 && rng.unit() < net.burst_start {
            burst_left = net.burst_len;
        }
        if burst_left > 0 {
            burst_left -= 1;
            dropped.push(p.index);
            continue;
        }
        if rng.unit() < net.random_loss {
            dropped.push(p.index);
            continue;
        }
        let mut delay = net.base_delay_us + rng.range(0, net.jitter_us);
        if rng.unit() < net.reorder {
            // Held back long enough to arrive after one to three of its successors.
            delay += rng.range(20_000, 60_000);
        }
        arrivals.push((p.send_us + delay, p));
    }
    arrivals.sort_by_key(|&(at, p)| (at, p.index));
    Delivery { arrivals, dropped }
}

/// What the endpoint saw, per playout decision.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    Packet { ext: u64, index: u32 },
    Lost { ext: u64, seq: u16, next: bool },
    Filler,
}

/// Everything a run produced.
struct Run {
    seen: Vec<Seen>,
    /// For each Lost: whether its successor had been stored before the pop.
    successor_stored: Vec<bool>,
    too_late: Vec<u32>,
    jb: JitterBuffer,
    min_target: Duration,
    max_target: Duration,
}

/// Plays the arrivals through a jitter buffer with an endpoint that pops whenever its
/// FIFO of decoded audio is empty, one 20 ms tick at a time, for `duration_ms`.
fn play(cfg: JitterConfig, delivery: &Delivery, duration_ms: u64) -> Run {
    let frame = i64::from(cfg.frame_ticks);
    let mut jb = JitterBuffer::new(cfg).unwrap();
    let mut fifo = 0i64;
    let mut seen = Vec::new();
    let mut successor_stored = Vec::new();
    let mut stored: BTreeMap<u16, bool> = BTreeMap::new();
    let mut too_late = Vec::new();
    let mut next_arrival = 0;
    let (mut min_target, mut max_target) = (Duration::MAX, Duration::ZERO);
    for tick in 0..duration_ms / 20 {
        let now_us = tick * 20_000;
        while let Some(&(at, p)) = delivery.arrivals.get(next_arrival) {
            if at > now_us {
                break;
            }
            next_arrival += 1;
            let mut payload = [0u8; 40];
            payload[..4].copy_from_slice(&p.index.to_be_bytes());
            payload[4] = p.frames;
            let out = jb
                .insert(Duration::from_micros(at), p.seq, p.ts, p.marker, &payload)
                .unwrap();
            match out {
                InsertOutcome::Stored => {
                    stored.insert(p.seq, true);
                }
                InsertOutcome::TooLate => too_late.push(p.index),
                other => panic!("unexpected {other:?} for {p:?}"),
            }
        }
        let now = Duration::from_micros(now_us);
        let mut pops = 0;
        while fifo < frame {
            pops += 1;
            assert!(pops < 1000, "endpoint never got a frame");
            let entry = match jb.pop(now) {
                Playout::Packet {
                    payload,
                    ext_seq,
                    adjust,
                    ..
                } => {
                    let index =
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    let mut add = i64::from(payload[4]) * frame;
                    match adjust {
                        PlayoutAdjust::None => {}
                        PlayoutAdjust::Shorten => add -= frame,
                        PlayoutAdjust::Lengthen => add += frame,
                    }
                    fifo += add.max(0);
                    Seen::Packet {
                        ext: ext_seq,
                        index,
                    }
                }
                Playout::Lost {
                    seq,
                    ext_seq,
                    ticks,
                    next,
                    ..
                } => {
                    fifo += i64::from(ticks);
                    successor_stored.push(stored.contains_key(&seq.wrapping_add(1)));
                    Seen::Lost {
                        ext: ext_seq,
                        seq,
                        next: next.is_some(),
                    }
                }
                Playout::Silence | Playout::Underrun | Playout::Buffering => {
                    fifo += frame;
                    Seen::Filler
                }
            };
            seen.push(entry);
        }
        fifo -= frame;
        let target = jb.target_delay();
        if jb.is_playing() {
            min_target = min_target.min(target);
            max_target = max_target.max(target);
        }
    }
    Run {
        seen,
        successor_stored,
        too_late,
        jb,
        min_target,
        max_target,
    }
}

/// Filler frames (silence, underrun) handed out between the first and last packet.
fn fillers_mid_stream(run: &Run) -> usize {
    let is_slot = |s: &Seen| !matches!(s, Seen::Filler);
    let first = run.seen.iter().position(is_slot).unwrap_or(0);
    let last = run.seen.iter().rposition(is_slot).unwrap_or(0);
    run.seen[first..=last]
        .iter()
        .filter(|s| matches!(s, Seen::Filler))
        .count()
}

/// Checks that Packet/Lost outputs cover consecutive slots in order, each exactly
/// once; returns the first and last packet index handed out.
fn check_slots(run: &Run, seq0: u16) -> (u32, u32) {
    let mut prev: Option<(u64, u32)> = None;
    let mut first = None;
    for s in &run.seen {
        let (ext, index) = match *s {
            Seen::Packet { ext, index } => (ext, index),
            Seen::Lost { ext, seq, .. } => (ext, u32::from(seq.wrapping_sub(seq0))),
            Seen::Filler => continue,
        };
        if let Some((prev_ext, prev_index)) = prev {
            assert_eq!(ext, prev_ext + 1, "ext_seq must step by one");
            assert_eq!(index, prev_index + 1, "slots must be handed out in order");
        }
        first.get_or_insert(index);
        prev = Some((ext, index));
    }
    (first.unwrap(), prev.unwrap().1)
}

fn speech_packets(count: u32, seq0: u16, ts0: u32) -> Vec<Sent> {
    (0..count)
        .map(|i| Sent {
            index: i,
            send_us: u64::from(i) * 20_000,
            seq: seq0.wrapping_add(i as u16),
            ts: ts0.wrapping_add(i * 960),
            marker: i == 0,
            frames: 1,
        })
        .collect()
}

#[test]
fn sixty_seconds_of_lossy_jittery_reordered_speech() {
    let cfg = JitterConfig::default();
    for seed in [1u64, 0x5EED, 0xC0FFEE] {
        let mut rng = Rng::new(seed);
        // Start near both wrap points so they are crossed mid-call.
        let (seq0, ts0) = (64_000u16, u32::MAX - 48_000 * 10);
        let packets = speech_packets(3000, seq0, ts0);
        let delivery = deliver(&NETWORK, &packets, &mut rng);
        let run = play(cfg, &delivery, 61_000);
        let stats = run.jb.stats();

        let (first, last) = check_slots(&run, seq0);
        assert_eq!(first, 0, "seed {seed}");
        assert!(last >= 2990, "seed {seed}: played up to {last}");

        let injected = delivery
            .dropped
            .iter()
            .filter(|&&i| (first..=last).contains(&i))
            .count() as u64;
        let late = run
            .too_late
            .iter()
            .filter(|&&i| (first..=last).contains(&i))
            .count() as u64;
        let lost_outputs = run
            .seen
            .iter()
            .filter(|s| matches!(s, Seen::Lost { .. }))
            .count() as u64;
        assert_eq!(stats.lost, lost_outputs);
        assert_eq!(
            stats.lost,
            injected + late,
            "seed {seed}: every loss is a dropped or a too-late packet"
        );
        assert!(late * 100 <= 3000, "seed {seed}: {late} packets too late");
        assert_eq!(stats.duplicates + stats.overflow + stats.resyncs, 0);

        // FEC: a loss whose successor was already buffered must offer it.
        let mut single_with_next = 0;
        let losses = run.seen.iter().filter_map(|s| match *s {
            Seen::Lost { next, .. } => Some(next),
            _ => None,
        });
        for (next, successor_stored) in losses.zip(&run.successor_stored) {
            assert_eq!(next, *successor_stored, "seed {seed}");
            single_with_next += u64::from(next);
        }
        assert_eq!(stats.fec_available, single_with_next);
        assert!(single_with_next * 3 >= stats.lost, "seed {seed}: {stats:?}");

        // The target stays in bounds and covers the 40 ms jitter.
        assert!(run.min_target >= cfg.min_delay, "seed {seed}");
        assert!(run.max_target <= cfg.max_delay, "seed {seed}");
        assert!(
            stats.target_delay >= Duration::from_millis(40),
            "seed {seed}: {stats:?}"
        );

        // Gaps in the audio other than concealed losses are rare.
        let fillers = fillers_mid_stream(&run);
        assert!(
            fillers <= 30,
            "seed {seed}: {fillers} filler frames mid-stream"
        );

        eprintln!(
            "seed {seed:#x}: {} sent, {injected} dropped by the network, {late} too late, \
             {} lost ({} with FEC), {fillers} filler frames mid-stream, target {:?} \
             (range {:?}..{:?}), playout delay {:?}, {} shortened, {} lengthened",
            packets.len(),
            stats.lost,
            stats.fec_available,
            stats.target_delay,
            run.min_target,
            run.max_target,
            stats.playout_delay,
            stats.shortened,
            stats.lengthened,
        );
    }
}

#[test]
fn talk_spurts_of_sixty_ms_packets_with_dtx_pauses() {
    let cfg = JitterConfig::default();
    let mut rng = Rng::new(42);
    let (seq0, ts0) = (65_500u16, 123_456u32);
    // Talk spurts of 1-3 s in 60 ms packets, separated by 0.5-2 s of DTX with no packets.
    let mut packets = Vec::new();
    let mut t_ms = 0u64;
    let mut index = 0u32;
    while t_ms < 60_000 {
        let spurt_end = t_ms + rng.range(1000, 3000);
        let mut first = true;
        while t_ms < spurt_end {
            packets.push(Sent {
                index,
                send_us: t_ms * 1000,
                seq: seq0.wrapping_add(index as u16),
                ts: ts0.wrapping_add((t_ms * 48) as u32),
                marker: first,
                frames: 3,
            });
            first = false;
            index += 1;
            t_ms += 60;
        }
        t_ms += rng.range(500, 2000) / 60 * 60;
    }
    let delivery = deliver(&NETWORK, &packets, &mut rng);
    let run = play(cfg, &delivery, 62_000);
    let stats = run.jb.stats();
    let (first, last) = check_slots(&run, seq0);
    assert_eq!(first, 0);
    assert!(last + 2 >= index, "played up to {last} of {index}");
    let injected = delivery
        .dropped
        .iter()
        .filter(|&&i| (first..=last).contains(&i))
        .count() as u64;
    let late = run
        .too_late
        .iter()
        .filter(|&&i| (first..=last).contains(&i))
        .count() as u64;
    // The pauses are not losses: only dropped and too-late packets are concealed.
    assert_eq!(stats.lost, injected + late, "{stats:?}");
    assert!(
        stats.underrun_frames + stats.silence_frames > 500,
        "{stats:?}"
    );
    assert!(stats.target_delay >= Duration::from_millis(40), "{stats:?}");
    assert!(stats.target_delay <= cfg.max_delay);
    eprintln!(
        "dtx/60 ms: {} packets, {injected} dropped, {late} too late, {} lost, {} silence + {} underrun frames, target {:?}",
        packets.len(),
        stats.lost,
        stats.silence_frames,
        stats.underrun_frames,
        stats.target_delay
    );
}

#[test]
fn g711_stream_at_8_khz_without_jitter_never_conceals() {
    let cfg = JitterConfig::new(8000);
    let packets: Vec<Sent> = (0..500u32)
        .map(|i| Sent {
            index: i,
            send_us: u64::from(i) * 20_000,
            seq: i as u16,
            ts: i * 160,
            marker: false,
            frames: 1,
        })
        .collect();
    let arrivals = packets.iter().map(|&p| (p.send_us + 25_000, p)).collect();
    let delivery = Delivery {
        arrivals,
        dropped: Vec::new(),
    };
    let run = play(cfg, &delivery, 10_500);
    let (first, last) = check_slots(&run, 0);
    assert_eq!((first, last), (0, 499));
    let stats = run.jb.stats();
    assert_eq!((stats.lost, stats.played), (0, 500));
    assert_eq!(fillers_mid_stream(&run), 0);
    // No jitter and no loss: no look-ahead, half a frame for the pop's phase.
    assert_eq!(stats.target_delay, Duration::from_millis(10));
}
