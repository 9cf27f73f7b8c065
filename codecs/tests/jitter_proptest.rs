//! Property tests of the jitter buffer: no input sequence makes it panic, and the
//! slots it hands out (`Packet` and `Lost`) are strictly increasing in sequence.

use std::time::Duration;

use proptest::prelude::*;
use voxline_codecs::{JitterBuffer, JitterConfig, JitterError, Playout};

/// How an inserted packet's sequence number or timestamp relates to the previous one.
#[derive(Clone, Debug)]
enum Step<T> {
    /// A small step from the previous value (in order, reordered, repeated).
    Near(i32),
    /// Any value at all.
    Any(T),
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        dt_us: u32,
        seq: Step<u16>,
        ts: Step<u32>,
        marker: bool,
        len: usize,
        fill: u8,
    },
    Pop {
        dt_us: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let seq = prop_oneof![
        8 => (-4i32..8).prop_map(Step::Near),
        1 => any::<u16>().prop_map(Step::Any),
    ];
    let ts = prop_oneof![
        8 => (-4000i32..12_000).prop_map(Step::Near),
        1 => any::<u32>().prop_map(Step::Any),
    ];
    prop_oneof![
        (
            0u32..40_000,
            seq,
            ts,
            any::<bool>(),
            0usize..1700,
            any::<u8>()
        )
            .prop_map(|(dt_us, seq, ts, marker, len, fill)| Op::Insert {
                dt_us,
                seq,
                ts,
                marker,
                len,
                fill
            }),
        (0u32..60_000).prop_map(|dt_us| Op::Pop { dt_us }),
    ]
}

fn config() -> impl Strategy<Value = JitterConfig> {
    (
        prop_oneof![Just(8000u32), Just(16_000), Just(48_000)],
        2usize..80,
        1usize..1600,
        0u64..60,
        0u64..300,
    )
        .prop_map(|(clock, capacity, max_payload, min_ms, span_ms)| {
            let min_delay = Duration::from_millis(min_ms);
            JitterConfig {
                capacity,
                max_payload,
                min_delay,
                initial_delay: min_delay + Duration::from_millis(span_ms / 2),
                max_delay: min_delay + Duration::from_millis(span_ms),
                ..JitterConfig::new(clock)
            }
        })
}

/// Runs a script, checking every output; returns how many slots were handed out.
fn run(cfg: JitterConfig, ops: &[Op]) -> Result<u64, TestCaseError> {
    let mut jb = JitterBuffer::new(cfg).expect("valid config");
    let mut now = 0u64;
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut last_ext: Option<u64> = None;
    let mut slots = 0u64;
    let payload_buf = vec![0u8; 1700];
    for op in ops {
        match *op {
            Op::Insert {
                dt_us,
                seq: ref s,
                ts: ref t,
                marker,
                len,
                fill,
            } => {
                now += u64::from(dt_us);
                seq = match *s {
                    Step::Near(d) => seq.wrapping_add(d as u16),
                    Step::Any(v) => v,
                };
                ts = match *t {
                    Step::Near(d) => ts.wrapping_add(d as u32),
                    Step::Any(v) => v,
                };
                let mut payload = payload_buf[..len].to_vec();
                payload.iter_mut().for_each(|b| *b = fill);
                let res = jb.insert(Duration::from_micros(now), seq, ts, marker, &payload);
                match res {
                    Ok(_) => prop_assert!(len >= 1 && len <= cfg.max_payload),
                    Err(JitterError::EmptyPayload) => prop_assert_eq!(len, 0),
                    Err(JitterError::PayloadTooLarge { len: l, max }) => {
                        prop_assert_eq!((l, max), (len, cfg.max_payload));
                        prop_assert!(len > cfg.max_payload);
                    }
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            Op::Pop { dt_us } => {
                now += u64::from(dt_us);
                let ext = match jb.pop(Duration::from_micros(now)) {
                    Playout::Packet {
                        payload, ext_seq, ..
                    } => {
                        prop_assert!(!payload.is_empty() && payload.len() <= cfg.max_payload);
                        prop_assert!(payload.iter().all(|&b| b == payload[0]));
                        Some(ext_seq)
                    }
                    Playout::Lost { ext_seq, next, .. } => {
                        prop_assert!(next.is_none_or(|p| !p.is_empty()));
                        Some(ext_seq)
                    }
                    _ => None,
                };
                if let Some(ext) = ext {
                    if let Some(prev) = last_ext {
                        prop_assert!(ext > prev, "ext_seq {} after {}", ext, prev);
                    }
                    last_ext = Some(ext);
                    slots += 1;
                }
            }
        }
        let target = jb.target_delay();
        prop_assert!(target >= cfg.min_delay && target <= cfg.max_delay);
        prop_assert!(jb.buffered_packets() <= cfg.capacity);
    }
    let stats = jb.stats();
    prop_assert_eq!(stats.played + stats.lost, slots);
    Ok(slots)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_script_is_handled_in_order_without_panicking(
        cfg in config(),
        ops in prop::collection::vec(op(), 0..400),
    ) {
        run(cfg, &ops)?;
    }

    #[test]
    fn arbitrary_times_even_going_backwards_never_panic(
        events in prop::collection::vec(
            (any::<bool>(), any::<u64>(), any::<u16>(), any::<u32>(), any::<bool>(), 0usize..64),
            0..300,
        ),
    ) {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000)).unwrap();
        let payload = [7u8; 64];
        let mut last_ext = None;
        for (is_pop, micros, seq, ts, marker, len) in events {
            let now = Duration::from_micros(micros);
            if is_pop {
                if let Playout::Packet { ext_seq, .. } | Playout::Lost { ext_seq, .. } = jb.pop(now) {
                    prop_assert!(last_ext.is_none_or(|p| ext_seq > p));
                    last_ext = Some(ext_seq);
                }
            } else {
                let _ = jb.insert(now, seq, ts, marker, &payload[..len]);
            }
        }
    }
}

#[test]
fn a_steady_stream_script_hands_out_every_slot() {
    let ops: Vec<Op> = (0..200)
        .flat_map(|_| {
            [
                Op::Insert {
                    dt_us: 0,
                    seq: Step::Near(1),
                    ts: Step::Near(960),
                    marker: false,
                    len: 10,
                    fill: 3,
                },
                Op::Pop { dt_us: 20_000 },
            ]
        })
        .collect();
    let slots = run(JitterConfig::default(), &ops).unwrap();
    assert!(slots >= 195, "{slots}");
}
