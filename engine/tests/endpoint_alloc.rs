//! The endpoint's steady state allocates nothing: over real UDP on a single-threaded runtime,
//! a counting allocator sees no allocation while packets arrive, frames are decoded, echoed
//! through the rings, encoded and paced out.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use voxline_codecs::{AudioFrame, FrameOrigin, PayloadFormat, PayloadRegistry, SampleRate};
use voxline_engine::media::{MediaConfig, OutboundMedia, RtpEndpoint};
use voxline_engine::testkit::voiced_signal;

/// Counts allocations made on threads that switched counting on.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a side effect.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn opus_config() -> MediaConfig {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(
            111,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz48000,
            },
        )
        .expect("opus mapping");
    MediaConfig::new(registry, 111)
}

#[test]
fn steady_state_echo_does_not_allocate() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let allocations = runtime.block_on(async {
        let (endpoint, audio) =
            RtpEndpoint::bind("127.0.0.1:0".parse().expect("addr"), opus_config())
                .await
                .expect("bind");
        let target = endpoint.local_addr();
        let echo = tokio::spawn(async move {
            while let Some(frame) = audio.received.recv().await {
                audio.send.push(frame);
            }
        });
        let caller = UdpSocket::bind("127.0.0.1:0").await.expect("caller");
        let mut out = OutboundMedia::new(&opus_config()).expect("caller media");
        let mut frame = AudioFrame::silent(SampleRate::Hz48000);
        let mut buf = [0u8; 1500];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut echoed = 0u32;
        // 1 s to reach the steady state (jitter buffer playing, echo flowing), then 1 s counted.
        for i in 0..100usize {
            if i == 50 {
                COUNTING.with(|c| c.set(true));
            }
            tick.tick().await;
            // Shedding load and giving it back changes the encoder in place.
            match i {
                60 => out.set_load_shedding(true),
                80 => out.set_load_shedding(false),
                _ => {}
            }
            frame.reset(SampleRate::Hz48000, FrameOrigin::Received);
            voiced_signal(SampleRate::Hz48000, i * 960, frame.samples_mut());
            if let Some(p) = out.next_packet(Some(&frame)) {
                caller.send_to(p, target).await.expect("send");
            }
            while let Ok((_, _)) = caller.try_recv_from(&mut buf) {
                echoed += 1;
            }
        }
        COUNTING.with(|c| c.set(false));
        let stats = endpoint.close().await;
        echo.abort();
        assert!(echoed > 60, "the echo flowed: {echoed} packets");
        assert_eq!(out.counters().encode_errors, 0);
        assert_eq!(out.opus_complexity(), Some(5));
        assert!(stats.inbound.frames_decoded >= 95, "{:?}", stats.inbound);
        ALLOCATIONS.load(Ordering::Relaxed)
    });
    assert_eq!(
        allocations, 0,
        "allocations during 1 s of steady-state media"
    );
}
