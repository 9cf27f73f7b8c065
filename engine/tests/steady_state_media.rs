//! The steady-state media path makes zero heap allocations per frame and takes no lock.
//!
//! One 20 ms frame of a call, both directions, exactly as the driver runs it:
//! RTP in → source check → jitter buffer → Opus decode → VAD → call core → ring to STT;
//! call core → playout → resample 24→48 kHz → Opus encode → RTP out.
//! A counting global allocator measures every allocation on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use voxline_codecs::{AudioFrame, FrameOrigin, PayloadFormat, PayloadRegistry, SampleRate};
use voxline_engine::call::{Call, CallSettings};
use voxline_engine::media::{InboundMedia, MediaConfig, OutboundMedia};
use voxline_engine::provider::{LlmEvent, TtsEvent};
use voxline_engine::ring::speech_ring;
use voxline_engine::testkit::voiced_signal;
use voxline_engine::vad::{VadConfig, VoiceDetector};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(|a| a.get()))
}

fn opus_registry() -> PayloadRegistry {
    let mut r = PayloadRegistry::new();
    r.insert(
        111,
        PayloadFormat::Opus {
            pcm_rate: SampleRate::Hz48000,
        },
    )
    .unwrap();
    r
}

/// `n` RTP/Opus packets of the voiced signal, as a caller on `config` sends them.
fn caller_packets(config: &MediaConfig, n: usize) -> Vec<Vec<u8>> {
    let mut caller = OutboundMedia::new(config).unwrap();
    let mut packets = Vec::new();
    let mut frame48 = AudioFrame::silent(SampleRate::Hz48000);
    for i in 0..n {
        frame48.reset(SampleRate::Hz48000, FrameOrigin::Received);
        voiced_signal(SampleRate::Hz48000, i * 960, frame48.samples_mut());
        if let Some(p) = caller.next_packet(Some(&frame48)) {
            packets.push(p.to_vec());
        }
    }
    packets
}

#[test]
fn steady_state_frame_allocates_nothing() {
    let remote: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let config = MediaConfig::new(opus_registry(), 111);
    // The caller's side produces real RTP/Opus packets up front (not measured).
    let packets = caller_packets(&config, 600);

    // The engine's side of the call.
    let mut inbound = InboundMedia::new(&config).unwrap();
    let mut outbound = OutboundMedia::new(&config).unwrap();
    let mut vad = VoiceDetector::new(SampleRate::Hz16000, VadConfig::default()).unwrap();
    let (stt_tx, stt_rx) = speech_ring(64);
    let mut settings = CallSettings {
        first_message: Some("Hello and welcome to the clinic, how can I help you today?".into()),
        ..Default::default()
    };
    // Both sides talk at once for the whole measurement: keep the agent speaking
    // (barge-in would need words, and STT is not part of this path).
    settings.turn.interruption_min_words = u32::MAX;
    settings.turn.false_interruption_timeout = None;
    let mut call = Call::new(settings);
    call.start(Duration::ZERO);
    // Give the agent a long utterance so playout, resampling and encoding run every frame.
    let mut speech_op = None;
    while let Some(a) = call.poll_action() {
        if let voxline_engine::call::Action::StartTts { op } = a {
            speech_op = Some(op);
        }
    }
    let op = speech_op.expect("greeting speech");
    let mut tts = vec![0i16; 24_000 * 30];
    voiced_signal(SampleRate::Hz24000, 0, &mut tts);
    call.on_tts(
        Duration::ZERO,
        op,
        TtsEvent::Audio {
            rate: SampleRate::Hz24000,
            samples: tts,
        },
    );
    call.on_llm(Duration::ZERO, 0, LlmEvent::Done); // stale op: ignored
    while call.poll_action().is_some() {}

    let mut caller_frame = AudioFrame::silent(SampleRate::Hz16000);
    let mut agent_frame = AudioFrame::silent(SampleRate::Hz24000);
    let mut sent = 0u64;
    let mut heard = 0u64;
    let mut run = |from: usize, to: usize, sent: &mut u64, heard: &mut u64| {
        for (i, p) in packets[from..to].iter().enumerate() {
            let now = Duration::from_millis(((from + i) as u64) * 20);
            inbound.on_datagram(now, remote, p);
            if inbound.next_frame(now, &mut caller_frame) {
                *heard += 1;
                let outcome = vad.process(now, &caller_frame);
                call.on_caller_vad(now, outcome);
                stt_tx.push(caller_frame);
                let _ = stt_rx.try_pop();
            }
            call.tick(now);
            let agent = call
                .pull_agent_frame(now, &mut agent_frame)
                .map(|_| &agent_frame);
            if outbound.next_packet(agent).is_some() {
                *sent += 1;
            }
            while call.poll_action().is_some() {}
        }
    };
    // Warm-up: buffers reach their working sizes, the resampler for 24→48 kHz is built.
    run(0, 100, &mut sent, &mut heard);
    let ((), allocs) = counted(|| run(100, 600, &mut sent, &mut heard));
    assert!(heard >= 480, "caller frames decoded: {heard}");
    assert!(sent >= 480, "agent packets encoded: {sent}");
    assert_eq!(allocs, 0, "allocations in 500 steady-state frames");
}

/// Catching up in the caller's pauses allocates nothing either: frames taken ahead of the clock
/// (jitter buffer `pop_ahead`, decode, resample) and the buffer taking its delay back.
#[test]
fn catching_up_takes_frames_ahead_without_allocating() {
    let remote: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let mut config = MediaConfig::new(opus_registry(), 111);
    // A buffer that holds 60 ms, so there is something to take ahead.
    config.jitter_delay = (
        Duration::from_millis(60),
        Duration::from_millis(60),
        config.jitter_delay.2,
    );
    let packets = caller_packets(&config, 800);
    let mut inbound = InboundMedia::new(&config).unwrap();
    let mut vad = VoiceDetector::new(SampleRate::Hz16000, VadConfig::default()).unwrap();
    let mut frame = AudioFrame::silent(SampleRate::Hz16000);
    let mut run = |from: usize, to: usize| {
        for (i, p) in packets[from..to].iter().enumerate() {
            let k = from + i;
            let now = Duration::from_millis(k as u64 * 20);
            inbound.on_datagram(now, remote, p);
            // Alternately drained (100 frames) and taking its delay back (100 frames).
            inbound.set_catch_up((k / 100) % 2 == 1);
            if inbound.next_frame(now, &mut frame) {
                vad.process(now, &frame);
            }
            while inbound.next_frame_ahead(now, &mut frame) {
                vad.process(now, &frame);
            }
        }
    };
    run(0, 200);
    let ((), allocs) = counted(|| run(200, 800));
    let counters = inbound.counters();
    assert!(
        counters.frames_ahead >= 6,
        "three drains of 60 ms: {counters:?}"
    );
    assert_eq!(allocs, 0, "allocations in 600 frames with catching up");
}

/// The media clock's ticks allocate nothing either: 50 calls' clocks on one runtime, served by
/// its shared timer, tick for 2 s of (paused) time after a warm-up with no allocation at all —
/// neither in the clocks nor in the hub that wakes them nor in tokio's timer beneath.
#[test]
fn the_shared_media_clock_ticks_without_allocating() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::time::Instant;
    use voxline_engine::media_clock::{ClockSource, MediaClock};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let frame = Duration::from_millis(20);
    rt.block_on(async {
        let base = Instant::now();
        for i in 0..50u64 {
            let ticks = ticks.clone();
            // Phases spread over the frame, some shared, as calls' clocks are.
            let first = base + Duration::from_micros(i * 730 % 20_000);
            tokio::spawn(async move {
                let mut clock = MediaClock::new(ClockSource::Shared, first, frame);
                loop {
                    clock.tick().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let before = ticks.load(Ordering::Relaxed);
    let ((), allocs) =
        counted(|| rt.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await }));
    let ticked = ticks.load(Ordering::Relaxed) - before;
    assert!(ticked >= 50 * 99, "ticks in 2 s: {ticked}");
    assert_eq!(allocs, 0, "allocations in {ticked} ticks");
}

/// The load shedder's per-tick work allocates nothing: 200 calls' ticks reporting their work
/// over 2 s, with busy windows closing, stalls let pass and late ticks engaging shedding.
#[test]
fn the_load_shedder_observes_ticks_without_allocating() {
    use tokio::time::Instant;
    use voxline_engine::load_shedding::LoadShedder;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let (shedder, t0) = rt.block_on(async {
        (
            LoadShedder::default().with_busy_trigger(2, 0.5),
            Instant::now(),
        )
    });
    let ms = Duration::from_millis;
    let run = |from: u64, to: u64| {
        let mut shed = 0u64;
        for at in (from..to).step_by(20) {
            for call in 0..200u64 {
                // Light ticks first (5 % of two threads' time), then heavy ones (95 %), every
                // 97th late: stalls while the threads are idle, a backlog once they are busy.
                let work = if at < from + (to - from) / 2 { 10 } else { 190 };
                let late = if call % 97 == 0 { ms(8) } else { ms(1) };
                let now = t0 + ms(at);
                shedder.observe(now, late, Duration::from_micros(work));
                shed += u64::from(shedder.is_shedding(now));
            }
        }
        shed
    };
    run(0, 1000);
    let (shed, allocs) = counted(|| run(1000, 3000));
    assert!(shedder.stalls_let_pass() > 0, "some late ticks were stalls");
    assert!(
        shedder.engagements() > 0 && shed > 0,
        "the busy ones engaged shedding"
    );
    assert_eq!(allocs, 0, "allocations in 20 000 observed ticks");
}

/// No lock on the media path: the types it is built from hold none. This reads the
/// sources the per-frame path runs through and fails if a lock type appears in them.
#[test]
fn media_path_sources_hold_no_locks() {
    let root = env!("CARGO_MANIFEST_DIR");
    let files = [
        "src/media/inbound.rs",
        "src/media/outbound.rs",
        "src/media/port.rs",
        "src/call/core.rs",
        "src/call/playout.rs",
        "src/vad.rs",
        "src/ring.rs",
        "src/driver.rs",
        "src/load_shedding.rs",
    ];
    for f in files {
        let text = std::fs::read_to_string(format!("{root}/{f}")).unwrap();
        for lock in ["Mutex", "RwLock", "Condvar"] {
            assert!(!text.contains(lock), "{f} mentions {lock}");
        }
    }
    let codecs = format!("{root}/../codecs/src");
    for entry in std::fs::read_dir(codecs).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for lock in ["Mutex", "RwLock", "Condvar"] {
            assert!(!text.contains(lock), "{path:?} mentions {lock}");
        }
    }
}
