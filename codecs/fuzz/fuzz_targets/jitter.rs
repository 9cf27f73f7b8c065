//! Fuzzes the jitter buffer: the input is a configuration followed by a script of inserts,
//! pops, clock moves and resets. Nothing may panic, and the playout contract must hold:
//! `Packet` and `Lost` carry strictly increasing extended sequence numbers (until a
//! resynchronisation restarts the numbering), packets come back with the bytes they were
//! inserted with, and the buffer never holds more packets than it has slots.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use voxline_codecs::jitter::{JitterBuffer, JitterConfig, Playout};

/// Reads the script one byte (or field) at a time; zeros once it runs out.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);

    // Configuration: mostly realistic, sometimes invalid (which must be refused, not panic).
    let clock_rate = match s.byte() % 4 {
        0 => 8_000,
        1 => 16_000,
        2 => 48_000,
        _ => u32::from(s.u16()),
    };
    let min_ms = u64::from(s.byte());
    let initial_ms = min_ms + u64::from(s.byte());
    let max_ms = initial_ms + u64::from(s.u16() % 1000);
    let config = JitterConfig {
        clock_rate,
        frame_ticks: clock_rate / 50,
        min_delay: Duration::from_millis(min_ms),
        initial_delay: Duration::from_millis(initial_ms),
        max_delay: Duration::from_millis(max_ms),
        capacity: usize::from(s.byte()) + 1,
        max_payload: usize::from(s.byte() % 64) + 1,
    };
    let Ok(mut jb) = JitterBuffer::new(config) else {
        return;
    };

    let mut now = Duration::ZERO;
    let mut seq: u16 = s.u16();
    let mut ts: u32 = s.u32();
    let mut last_ext_seq: Option<u64> = None;
    let mut resyncs = 0;
    let mut rounds = 0u32;
    while !s.is_empty() && rounds < 10_000 {
        rounds += 1;
        match s.byte() % 8 {
            // Insert the next packet, nudged by a signed sequence step and timestamp jitter.
            0..=3 => {
                let step = s.byte() as i8;
                seq = seq.wrapping_add_signed(i16::from(step));
                ts = ts.wrapping_add(
                    config
                        .frame_ticks
                        .wrapping_mul(u32::from(step as u8))
                        .wrapping_add(u32::from(s.byte())),
                );
                let marker = s.byte() & 1 == 1;
                let len = usize::from(s.byte() % 80);
                let payload = s.bytes(len).to_vec();
                now += Duration::from_micros(u64::from(s.u16()));
                let _ = jb.insert(now, seq, ts, marker, &payload);
            }
            // Pop and check the contract.
            4 | 5 => {
                now += Duration::from_millis(u64::from(s.byte() % 41));
                let stats_before = jb.stats();
                let played = match jb.pop(now) {
                    Playout::Packet {
                        payload, ext_seq, ..
                    } => {
                        assert!(!payload.is_empty(), "an empty payload was played");
                        assert!(payload.len() <= config.max_payload);
                        Some(ext_seq)
                    }
                    Playout::Lost { ext_seq, next, .. } => {
                        if let Some(next) = next {
                            assert!(!next.is_empty() && next.len() <= config.max_payload);
                        }
                        Some(ext_seq)
                    }
                    Playout::Buffering | Playout::Silence | Playout::Underrun => None,
                };
                let stats = jb.stats();
                if stats.resyncs != resyncs {
                    // A restarted stream starts its numbering over.
                    resyncs = stats.resyncs;
                    last_ext_seq = None;
                }
                if let Some(ext) = played {
                    if let Some(last) = last_ext_seq {
                        assert!(
                            ext > last,
                            "ext_seq went from {last} to {ext} (before: {stats_before:?})"
                        );
                    }
                    last_ext_seq = Some(ext);
                }
            }
            // The clock jumps, forwards or (as a broken host clock might) backwards.
            6 => now = Duration::from_micros(u64::from(s.u32())),
            // Reset, as on a new stream.
            _ => {
                if s.byte() % 4 == 0 {
                    jb.reset();
                    last_ext_seq = None;
                    resyncs = jb.stats().resyncs;
                }
            }
        }
        let stats = jb.stats();
        assert!(stats.buffered_packets <= config.capacity);
        assert!(jb.buffered_packets() <= config.capacity);
        assert!(jb.target_delay() <= config.max_delay);
    }
});
