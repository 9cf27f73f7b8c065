//! Fuzz target for the jitter buffer: the input is a script of insert and pop
//! operations (sequence and timestamp steps, payload sizes, time advances).
//! Any panic is a bug, as is a `Packet`/`Lost` that does not move forward.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use voxline_codecs::{JitterBuffer, JitterConfig, Playout};

/// Reads the script's bytes; a script that runs out simply ends.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
}

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut script = Script { data };
    let Some(setup) = script.byte() else {
        return;
    };
    let clock = [8_000u32, 16_000, 48_000][usize::from(setup % 3)];
    let cfg = JitterConfig {
        capacity: 2 + usize::from(setup >> 2) % 62,
        max_payload: 1 + usize::from(script.byte().unwrap_or(0)) * 6,
        ..JitterConfig::new(clock)
    };
    let Ok(mut jb) = JitterBuffer::new(cfg) else {
        return;
    };
    let frame = cfg.frame_ticks;
    let payload = [0x5Au8; 1600];
    let (mut now_us, mut seq, mut ts) = (0u64, 0u16, 0u32);
    let mut last_ext: Option<u64> = None;

    while let Some(op) = script.byte() {
        match op % 8 {
            // Insert: flags choose marker, explicit or stepped seq/ts.
            0..=3 => {
                let Some(flags) = script.byte() else { break };
                seq = if flags & 0x02 != 0 {
                    let Some(v) = script.u16() else { break };
                    v
                } else {
                    seq.wrapping_add(u16::from((flags >> 2) & 7)).wrapping_sub(2)
                };
                ts = if flags & 0x20 != 0 {
                    let Some(v) = script.u32() else { break };
                    v
                } else {
                    let frames = u32::from((flags >> 6) & 3);
                    ts.wrapping_add(frames * frame)
                };
                let Some(len) = script.byte() else { break };
                let len = usize::from(len) * 7 % (cfg.max_payload + 3);
                now_us += u64::from(op >> 3) * 1000;
                let now = Duration::from_micros(now_us);
                let marker = flags & 0x01 != 0;
                let ok = jb.insert(now, seq, ts, marker, &payload[..len]).is_ok();
                assert_eq!(ok, len >= 1 && len <= cfg.max_payload);
            }
            // Pop after advancing time by 0..31 ms.
            4..=6 => {
                now_us += u64::from(op >> 3) * 1000;
                let ext = match jb.pop(Duration::from_micros(now_us)) {
                    Playout::Packet {
                        payload, ext_seq, ..
                    } => {
                        assert!(!payload.is_empty() && payload.len() <= cfg.max_payload);
                        Some(ext_seq)
                    }
                    Playout::Lost { ext_seq, .. } => Some(ext_seq),
                    _ => None,
                };
                if let Some(ext) = ext {
                    assert!(last_ext.is_none_or(|prev| ext > prev));
                    last_ext = Some(ext);
                }
            }
            // Occasionally forget the stream.
            _ => {
                if op == 0xFF {
                    jb.reset();
                    last_ext = None;
                }
            }
        }
        let target = jb.target_delay();
        assert!(target >= cfg.min_delay && target <= cfg.max_delay);
        assert!(jb.buffered_packets() <= cfg.capacity);
    }
}
