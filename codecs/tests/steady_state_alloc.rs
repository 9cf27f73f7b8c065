//! The media path must not touch the heap per frame: after construction and a
//! warm-up, decoding, concealing, FEC, encoding and resampling allocate nothing.
//!
//! A counting global allocator records allocations made on the test's own
//! thread, so the harness's other threads do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use voxline_codecs::{
    AudioFrame, FrameDecoder, FrameEncoder, PacketDuration, PayloadFormat, Resampler, SampleRate,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// A frame of a 440 Hz tone with a little movement, at `rate`.
fn tone(rate: SampleRate, k: usize) -> AudioFrame {
    let mut f = AudioFrame::silent(rate);
    let n = rate.frame_samples();
    for (i, s) in f.samples_mut().iter_mut().enumerate() {
        let t = (k * n + i) as f32 / rate.hz() as f32;
        *s = (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16;
    }
    f
}

/// One call's worth of per-frame work for `format`: encode, lose two packets
/// in ten (one rebuilt from FEC, one concealed), decode, resample to 16 kHz and back.
fn run_frames(format: PayloadFormat, frames: usize) {
    let rate = format.pcm_rate().expect("audio format");
    let mut enc = FrameEncoder::new(format, PacketDuration::Ms20).unwrap();
    let mut dec = FrameDecoder::new(format).unwrap();
    let mut to16 = Resampler::new(rate, SampleRate::Hz16000).unwrap();
    let mut back = Resampler::new(SampleRate::Hz16000, rate).unwrap();
    let mut packet = [0u8; 4000];
    let mut out16 = AudioFrame::silent(SampleRate::Hz16000);
    let mut out = AudioFrame::silent(rate);
    let ticks = format.ticks_per_frame();

    let mut step = |k: usize| {
        enc.push_frame(&tone(rate, k)).unwrap();
        while let Some(p) = enc.next_packet(&mut packet).unwrap() {
            match k % 10 {
                // Lost, and the jitter buffer has the next packet: filled from FEC below.
                3 => {}
                4 => {
                    dec.recover_fec(&packet[..p.len], ticks).unwrap();
                    dec.decode(&packet[..p.len]).unwrap();
                }
                // Lost with nothing after it yet: concealed.
                7 => {
                    dec.conceal(ticks).unwrap();
                }
                _ => {
                    dec.decode(&packet[..p.len]).unwrap();
                }
            }
        }
        while let Some(frame) = dec.next_frame() {
            to16.process_into(&frame, &mut out16).unwrap();
            back.process_into(&out16, &mut out).unwrap();
        }
    };
    // Warm-up: first calls may initialise lazily inside the libraries.
    for k in 0..10 {
        step(k);
    }
    let before = allocations();
    for k in 10..10 + frames {
        step(k);
    }
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "{format:?}: {} heap allocations in {frames} frames",
        after - before
    );
}

#[test]
fn steady_state_does_not_allocate() {
    // The counter works: a heap allocation on this thread is seen.
    let before = allocations();
    let probe = std::hint::black_box(vec![1u8; 64]);
    assert!(allocations() > before);
    drop(probe);
    for format in [
        PayloadFormat::Opus {
            pcm_rate: SampleRate::Hz48000,
        },
        PayloadFormat::Opus {
            pcm_rate: SampleRate::Hz16000,
        },
        PayloadFormat::Pcmu,
        PayloadFormat::Pcma,
        PayloadFormat::L16 {
            rate: SampleRate::Hz24000,
        },
    ] {
        run_frames(format, 200);
    }
}
