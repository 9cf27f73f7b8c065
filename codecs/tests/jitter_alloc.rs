//! The jitter buffer's steady state is allocation-free: after warm-up, inserting
//! and popping (with reordering, losses, FEC hand-outs and delay changes) never
//! touches the heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use voxline_codecs::{JitterBuffer, JitterConfig, Playout};

/// Counts the allocations made by threads that opted in, delegating to `System`.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` so allocations during thread teardown are simply not counted.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made on this thread while running `f`.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

/// Drives one 20 ms cycle: packet `i` arrives (some reordered, some lost, jittered),
/// then the endpoint pops until it has a frame. Returns bytes seen, so nothing is optimized out.
/// Packet `k`'s payload is `size(k)` bytes.
fn cycle(
    jb: &mut JitterBuffer,
    i: u32,
    held: &mut Option<u32>,
    payload: &mut [u8; 1500],
    size: fn(u32) -> usize,
) -> usize {
    let now_us = u64::from(i) * 20_000;
    let jitter = u64::from(i.wrapping_mul(2_654_435_761) >> 27); // 0..31 ms
    let arrival = Duration::from_micros(now_us + jitter * 1000);
    let send = |jb: &mut JitterBuffer, k: u32, payload: &mut [u8; 1500]| {
        payload[0] = k as u8;
        let _ = jb.insert(
            arrival,
            k as u16,
            k.wrapping_mul(960),
            k.is_multiple_of(50),
            &payload[..size(k)],
        );
    };
    match i % 17 {
        5 => *held = Some(i), // delivered after its successor
        11 => {}              // lost
        _ => {
            send(jb, i, payload);
            if let Some(k) = held.take() {
                send(jb, k, payload);
            }
        }
    }
    let now = Duration::from_micros(now_us + 40_000);
    let mut seen = 0;
    for _ in 0..4 {
        match jb.pop(now) {
            Playout::Packet { payload, .. } => {
                seen += payload.len();
                break;
            }
            Playout::Lost { next, ticks, .. } => {
                seen += next.map_or(0, <[u8]>::len);
                if ticks > 0 {
                    break;
                }
            }
            _ => break,
        }
    }
    seen + jb.stats().buffered_packets
}

#[test]
fn a_thousand_insert_pop_cycles_allocate_nothing_after_warm_up() {
    steady_state_allocates_nothing(|_| 160);
}

#[test]
fn packets_too_large_for_a_slot_allocate_nothing_either() {
    // Past a slot's own room: every other packet, some at the largest size accepted.
    steady_state_allocates_nothing(|k| match k % 4 {
        0 => 1500,
        1 => 321,
        _ => 160,
    });
}

fn steady_state_allocates_nothing(size: fn(u32) -> usize) {
    let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
    let mut held = None;
    let mut payload = [0u8; 1500];
    let mut seen = 0;
    for i in 0..600 {
        seen += cycle(&mut jb, i, &mut held, &mut payload, size);
    }
    assert!(jb.is_playing());
    let allocations = allocations_in(|| {
        for i in 600..1600 {
            seen += cycle(&mut jb, i, &mut held, &mut payload, size);
        }
    });
    let stats = jb.stats();
    assert!(seen > 0);
    assert!(stats.lost > 50 && stats.fec_available > 0, "{stats:?}");
    assert_eq!(allocations, 0, "steady state allocated: {stats:?}");
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_in(|| {
        let v: Vec<u64> = Vec::with_capacity(8);
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}
