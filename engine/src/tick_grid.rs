//! A shared grid for the calls' 20 ms media clocks, so that one wake-up of a worker thread
//! serves several calls.
//!
//! Each call's clock has its own phase (the phase aligner moves it to the caller's packets), so
//! 50 calls on a worker spread their ticks over the whole frame and the thread wakes, runs one
//! or two calls and goes idle again, about once a millisecond. Going idle is not free: on a
//! virtual machine an idle vCPU halts, the host runs something else on it, and the next
//! wake-up finds its caches cold. Measured on the 2-core development VM, the same libopus work
//! costs about 1.7× as much CPU when it runs one call a millisecond as when it runs back to
//! back, and about 1.2× when the calls' ticks are snapped to a 4–5 ms grid (see BENCHMARKS.md,
//! "Fewer, fuller wake-ups"). Snapping moves a tick by at most half a grid step, so on average
//! it adds nothing to a packet's wait.
//!
//! The gain is where few calls share each millisecond. With many calls per core every wake-up
//! already serves several, and a grid only makes the calls of one point wait for each other
//! (the last frame of a batch leaves later), so [`TickSnap::Auto`] snaps only while the
//! process runs fewer than [`AUTO_CALLS_PER_CORE`] calls per core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;
use voxline_codecs::FRAME_MS;

/// Why a grid step was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TickGridError {
    /// The step is not a whole number of milliseconds that divides the 20 ms frame.
    #[error("a tick grid step must be 1, 2, 4, 5, 10 or 20 ms, got {0:?}")]
    NotADivisorOfTheFrame(Duration),
}

/// The step of the grid the calls' ticks snap to: a whole number of milliseconds that divides
/// the 20 ms frame, so a clock on the grid stays on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickGrid {
    step: Duration,
}

impl TickGrid {
    /// The default step: 4 ms, five wake-ups a frame per worker, a tick moved by at most 2 ms.
    pub const DEFAULT: TickGrid = TickGrid {
        step: Duration::from_millis(4),
    };

    /// A grid of `step`; refused unless it is 1, 2, 4, 5, 10 or 20 ms.
    pub fn new(step: Duration) -> Result<TickGrid, TickGridError> {
        let ms = step.as_millis();
        let whole = Duration::from_millis(ms as u64) == step;
        if !whole || ms == 0 || !(FRAME_MS as u128).is_multiple_of(ms) {
            return Err(TickGridError::NotADivisorOfTheFrame(step));
        }
        Ok(TickGrid { step })
    }

    /// The grid's step.
    pub fn step(&self) -> Duration {
        self.step
    }

    /// The grid point nearest to `t` (the later one at a tie).
    pub fn nearest(&self, t: Instant) -> Instant {
        let into = self.offset(t);
        if into * 2 >= self.step {
            t + (self.step - into)
        } else {
            t - into
        }
    }

    /// The first grid point at or after `t`.
    pub fn at_or_after(&self, t: Instant) -> Instant {
        let into = self.offset(t);
        if into.is_zero() {
            t
        } else {
            t + (self.step - into)
        }
    }

    /// How far `t` is past the grid point at or before it.
    fn offset(&self, t: Instant) -> Duration {
        let epoch = epoch();
        let step = self.step.as_nanos();
        if t >= epoch {
            nanos((t - epoch).as_nanos() % step)
        } else {
            let before = (epoch - t).as_nanos() % step;
            nanos(if before == 0 { 0 } else { step - before })
        }
    }
}

impl Default for TickGrid {
    fn default() -> Self {
        TickGrid::DEFAULT
    }
}

/// Where a call's ticks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TickSnap {
    /// Each call's clock keeps its own phase.
    Off,
    /// Always on this grid.
    Fixed(TickGrid),
    /// On [`TickGrid::DEFAULT`] while the process runs fewer than [`AUTO_CALLS_PER_CORE`] calls
    /// per core, else off (decided at each move of the clock).
    #[default]
    Auto,
}

/// Calls per core from which [`TickSnap::Auto`] stops snapping: each millisecond's wake-up of
/// a worker then serves a few calls already (measured: 150 Opus calls on 2 cores keep pacing
/// p99 near 3 ms without a grid and reach 5 ms on a 4 ms one).
pub const AUTO_CALLS_PER_CORE: usize = 50;

impl TickSnap {
    /// The grid for a clock placed now, given the calls running and the cores.
    pub fn grid(&self) -> Option<TickGrid> {
        self.grid_for(live_calls(), cores())
    }

    /// The grid for `calls` calls on `cores` cores.
    pub fn grid_for(&self, calls: usize, cores: usize) -> Option<TickGrid> {
        match *self {
            TickSnap::Off => None,
            TickSnap::Fixed(grid) => Some(grid),
            TickSnap::Auto => {
                (calls < AUTO_CALLS_PER_CORE * cores.max(1)).then_some(TickGrid::DEFAULT)
            }
        }
    }
}

static LIVE_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Calls whose media clock runs in this process now.
pub fn live_calls() -> usize {
    LIVE_CALLS.load(Ordering::Relaxed)
}

/// Counts one running media clock in [`live_calls`] until dropped.
#[derive(Debug)]
pub struct LiveCall(());

impl LiveCall {
    /// Counts a clock that starts now.
    pub fn start() -> LiveCall {
        LIVE_CALLS.fetch_add(1, Ordering::Relaxed);
        LiveCall(())
    }
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        LIVE_CALLS.fetch_sub(1, Ordering::Relaxed);
    }
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(n as u64)
}

/// The origin every grid point is counted from, shared by all calls in the process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    Instant::from_std(*EPOCH.get_or_init(std::time::Instant::now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn only_whole_divisors_of_the_frame_are_steps() {
        for ok in [1, 2, 4, 5, 10, 20] {
            assert_eq!(TickGrid::new(ms(ok)).unwrap().step(), ms(ok));
        }
        for bad in [ms(0), ms(3), ms(6), ms(40), Duration::from_micros(2500)] {
            assert_eq!(
                TickGrid::new(bad),
                Err(TickGridError::NotADivisorOfTheFrame(bad))
            );
        }
    }

    #[test]
    fn points_snap_to_a_shared_grid() {
        let grid = TickGrid::new(ms(4)).unwrap();
        let base = grid.at_or_after(Instant::now());
        assert_eq!(grid.at_or_after(base), base);
        assert_eq!(grid.nearest(base), base);
        assert_eq!(grid.nearest(base + ms(1)), base);
        assert_eq!(grid.nearest(base + ms(2)), base + ms(4));
        assert_eq!(grid.nearest(base + ms(3)), base + ms(4));
        assert_eq!(
            grid.at_or_after(base + Duration::from_micros(1)),
            base + ms(4)
        );
        // Before the epoch too (a paused test clock may start earlier than another test's).
        let early = base - ms(4000);
        assert_eq!(grid.at_or_after(early), early);
        assert_eq!(grid.nearest(early - ms(1)), early);
        assert_eq!(grid.at_or_after(early - ms(1)), early);
    }

    #[test]
    fn auto_snaps_only_while_few_calls_share_a_core() {
        let auto = TickSnap::Auto;
        assert_eq!(auto.grid_for(0, 2), Some(TickGrid::DEFAULT));
        assert_eq!(auto.grid_for(99, 2), Some(TickGrid::DEFAULT));
        assert_eq!(auto.grid_for(100, 2), None);
        assert_eq!(auto.grid_for(100, 4), Some(TickGrid::DEFAULT));
        assert_eq!(auto.grid_for(10, 0), Some(TickGrid::DEFAULT));
        assert_eq!(TickSnap::Off.grid_for(1, 2), None);
        let five = TickGrid::new(ms(5)).unwrap();
        assert_eq!(TickSnap::Fixed(five).grid_for(10_000, 2), Some(five));
    }

    #[test]
    fn live_calls_count_running_clocks() {
        // Other tests may run calls meanwhile: compare within this thread's own guards.
        let a = LiveCall::start();
        let b = LiveCall::start();
        assert!(live_calls() >= 2);
        drop(a);
        drop(b);
    }

    #[test]
    fn a_clock_on_the_grid_stays_on_it() {
        let grid = TickGrid::new(ms(5)).unwrap();
        let tick = grid.nearest(Instant::now() + ms(7));
        for k in 1..10u32 {
            let next = tick + ms(FRAME_MS as u64) * k;
            assert_eq!(grid.nearest(next), next);
        }
    }
}
