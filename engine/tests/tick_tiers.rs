//! The calls' clocks follow the process as it grows and shrinks through the tiers of
//! `TickSnap::Auto`, on virtual time. A test binary of its own: it raises the process's count
//! of live calls, which every call in the process reads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use voxline_engine::call::CallSettings;
use voxline_engine::driver::{new_call, CallOutcome, DriverOptions, ProviderSet};
use voxline_engine::media_clock::ClockSource;
use voxline_engine::tick_grid::{LiveCall, TickSnap, AUTO_APART_PER_CORE, AUTO_CALLS_PER_CORE};

mod common;
use common::{ms, TickClock};

type Ticks = Arc<Mutex<Vec<Instant>>>;

/// Each call's ticks within `[from, to)`.
fn window(logs: &[Ticks], from: Instant, to: Instant) -> Vec<Vec<Instant>> {
    logs.iter()
        .map(|log| {
            log.lock()
                .unwrap()
                .iter()
                .copied()
                .filter(|&t| t >= from && t < to)
                .collect()
        })
        .collect()
}

/// Lets the calls run `settle` and then records their ticks for `span`.
async fn ticks_after(logs: &[Ticks], settle: Duration, span: Duration) -> Vec<Vec<Instant>> {
    tokio::time::sleep(settle).await;
    let from = Instant::now();
    tokio::time::sleep(span).await;
    window(logs, from, Instant::now())
}

/// Each call's phase within a 4 ms step, in microseconds, measured from `origin`; asserts the
/// call keeps one phase all through the window.
fn phases(calls: &[Vec<Instant>], origin: Instant) -> Vec<u128> {
    calls
        .iter()
        .map(|ticks| {
            assert!(ticks.len() >= 9, "{} ticks", ticks.len());
            let phase = |t: &Instant| t.duration_since(origin).as_micros() % 4000;
            let first = phase(&ticks[0]);
            assert!(ticks.iter().all(|t| phase(t) == first), "{ticks:?}");
            first
        })
        .collect()
}

/// Both clock sources, one after the other (not in parallel: the live-call count is the
/// process's), each on a runtime of its own with paused time.
#[test]
fn running_clocks_spread_out_and_gather_again_with_the_process() {
    for source in [ClockSource::Interval, ClockSource::Shared] {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(spread_and_gather(source));
    }
}

async fn spread_and_gather(source: ClockSource) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut logs = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..4 {
        let ticks: Ticks = Arc::default();
        logs.push(ticks.clone());
        let options = DriverOptions {
            tick_snap: TickSnap::Auto,
            media_clock: source,
            ..DriverOptions::default()
        };
        let (task, control, _events) = new_call(
            CallSettings::default(),
            ProviderSet::default(),
            TickClock::new(ticks),
            options,
        );
        calls.push((tokio::spawn(task.run()), control));
        tokio::time::sleep(ms(1)).await;
    }

    // Four calls: every clock on the one 4 ms grid.
    let few = ticks_after(&logs, ms(100), ms(200)).await;
    let origin = few[0][0];
    assert_eq!(phases(&few, origin), vec![0; 4]);

    // As many calls per core as interleave the grids: the calls of odd lanes (every other
    // call, as seats alternate on a thread) move 2 ms over; the others stay.
    let mut crowd: Vec<LiveCall> = (0..AUTO_CALLS_PER_CORE * cores)
        .map(|_| LiveCall::start())
        .collect();
    let interleaved = phases(&ticks_after(&logs, ms(100), ms(200)).await, origin);
    let mut sorted = interleaved.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 0, 2000, 2000], "{interleaved:?}");
    assert_ne!(interleaved[0], interleaved[1]);

    // So many that each clock takes a phase of its own: the four consecutive lanes take the
    // four whole milliseconds of the step.
    crowd.extend((0..AUTO_APART_PER_CORE * cores).map(|_| LiveCall::start()));
    let mut apart = phases(&ticks_after(&logs, ms(100), ms(200)).await, origin);
    apart.sort();
    assert_eq!(apart, vec![0, 1000, 2000, 3000]);

    // The crowd leaves: back on the one grid.
    drop(crowd);
    let gathered = phases(&ticks_after(&logs, ms(100), ms(200)).await, origin);
    assert_eq!(gathered, vec![0; 4]);

    // No move made a tick longer or shorter than 2 ms; each clock moved at most three times.
    for log in &logs {
        let ticks = log.lock().unwrap();
        for pair in ticks.windows(2) {
            let apart = pair[1].duration_since(pair[0]);
            assert!(
                (ms(18)..=ms(22)).contains(&apart),
                "a tick {apart:?} after the last"
            );
        }
    }
    let mut moves = 0;
    for (call, control) in calls {
        control.hang_up().unwrap();
        let outcome: CallOutcome = call.await.unwrap();
        assert!(outcome.media.grid_moves <= 3, "{:?}", outcome.media);
        moves += outcome.media.grid_moves;
    }
    // Odd lanes moved three times; of the even ones, the lane on the second millisecond
    // twice and the lane on the grid's own points not at all: eight moves in all.
    assert_eq!(moves, 8);
}
