//! A call's heap stays the same size however long it runs once its history is at its bound.
//!
//! One whole call on virtual time (driver, call core, scripted STT/LLM/TTS, an event reader that
//! keeps nothing) with a turn every 5 s. A counting global allocator tracks the live heap bytes
//! of the process; they are sampled at checkpoints long after the conversation history reached
//! its bound. Whatever a call kept per turn (a log, a queue that is never drained, a capacity
//! that only grows) would show as growth between the checkpoints.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use voxline_engine::call::{CallSettings, EndReason, HistoryLimit};
use voxline_engine::driver::{new_call, DriverOptions};
use voxline_engine::testkit::{ScriptedLlm, ScriptedStt};

mod common;
use common::{providers, PcmPort};

struct LiveBytes;

/// Live heap bytes of the process.
static LIVE: AtomicI64 = AtomicI64::new(0);

/// Sizes tracked one by one; larger blocks share the last bucket.
const SIZES: usize = 4097;

/// Live blocks by size, so a failure says what kind of block piled up.
static BY_SIZE: [AtomicI64; SIZES] = [const { AtomicI64::new(0) }; SIZES];

/// `BY_SIZE` at the first checkpoint (copied without allocating).
static BY_SIZE_AT_FIRST: [AtomicI64; SIZES] = [const { AtomicI64::new(0) }; SIZES];

fn block(size: usize, delta: i64) {
    LIVE.fetch_add(size as i64 * delta, Ordering::Relaxed);
    BY_SIZE[size.min(SIZES - 1)].fetch_add(delta, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        block(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        block(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        block(layout.size(), -1);
        block(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

/// Seconds between the starts of the caller's utterances.
const TURN_S: u64 = 5;

#[tokio::test(start_paused = true)]
async fn a_long_call_keeps_a_fixed_heap_once_its_history_is_full() {
    const LIMIT: usize = 10;
    const TURNS: u64 = 160;
    // Every transcript the same length, so the script's own shrinking is known exactly:
    // each utterance frees one of them.
    let utterance = "Could you tell me more about that one";
    let stt = ScriptedStt::new((0..TURNS + 10).map(|_| String::from(utterance)));
    let settings = CallSettings {
        system_prompt: "You are the clinic's receptionist.".into(),
        first_message: Some("Hello, thanks for calling.".into()),
        history_limit: HistoryLimit::Latest(LIMIT),
        ..Default::default()
    };
    // The stand-in's own request log would grow per turn; the harness turns it off too.
    let mut llm = ScriptedLlm::always("Of course, here is what I know.");
    llm.record_requests = false;
    let (task, control, mut events) = new_call(
        settings,
        providers(stt, llm),
        // The caller talks for a second every `TURN_S` seconds, line noise between.
        PcmPort::without_log(
            (1..=TURNS + 10)
                .map(|k| {
                    (
                        Duration::from_secs(k * TURN_S),
                        Duration::from_secs(k * TURN_S + 1),
                    )
                })
                .collect(),
        ),
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    let reader = tokio::spawn(async move {
        let mut finals = 0u64;
        while let Some(e) = events.next().await {
            if let voxline_engine::call::CallEvent::Transcript { is_final: true, .. } = e.event {
                finals += 1;
            }
        }
        finals
    });

    // Checkpoints from turn 40 (the history of 10 messages is full after about 5 turns) on.
    let checkpoints = [40u64, 70, 100, 130, 160];
    // Reserved up front: the measurement itself allocates nothing between checkpoints.
    let mut samples = Vec::with_capacity(checkpoints.len());
    let mut at = Duration::ZERO;
    for turn in checkpoints {
        let until = Duration::from_secs(turn * TURN_S + 2);
        tokio::time::sleep(until - at).await;
        at = until;
        // Each utterance so far freed one script entry; count them back in.
        let popped = (turn as i64) * utterance.len() as i64;
        samples.push((turn, LIVE.load(Ordering::Relaxed) + popped));
        if turn == checkpoints[0] {
            for (first, now) in BY_SIZE_AT_FIRST.iter().zip(&BY_SIZE) {
                first.store(now.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }
    let grown: Vec<(usize, i64)> = (0..SIZES)
        .map(|size| {
            let now = BY_SIZE[size].load(Ordering::Relaxed);
            (size, now - BY_SIZE_AT_FIRST[size].load(Ordering::Relaxed))
        })
        .filter(|&(_, d)| d > 0)
        .collect();
    control.hang_up().unwrap();
    let outcome = call.await.unwrap();
    let finals = reader.await.unwrap();
    assert_eq!(outcome.end_reason, EndReason::UserHangup);
    assert!(finals >= TURNS - 2, "turns heard: {finals}");
    assert!(
        outcome.history.len() <= LIMIT + 2,
        "history: {}",
        outcome.history.len()
    );

    let first = samples[0].1;
    let spread: Vec<i64> = samples.iter().map(|&(_, b)| b - first).collect();
    eprintln!("live heap at turns {samples:?}, growth from turn 40: {spread:?}");
    let worst = spread.iter().copied().max().unwrap_or(0);
    // 120 turns after the first checkpoint: a byte kept per turn would already be 120.
    assert!(
        worst < 64,
        "the call's heap grew after its history was full: {spread:?} bytes; \
         more live blocks (size, count) than at turn 40: {grown:?}"
    );
}
