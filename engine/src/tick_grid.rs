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
//! The gain is where few calls share each millisecond. With many calls per core a grid point
//! gathers many calls, and the last frame of a batch leaves as late as the batch is long, so
//! [`TickSnap::Auto`] spreads the calls as the process grows ([`AutoTier`]): all on the 4 ms
//! grid below [`AUTO_CALLS_PER_CORE`] calls per core, half of them (by [lane](GridSeat)) on the
//! same grid shifted by 2 ms up to [`AUTO_APART_PER_CORE`], and each at a phase of its own
//! above. A call already running moves when the tier changes, so calls placed while the
//! process was small do not stay piled on the points of the coarser tier.

use std::cell::Cell;
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

/// The grid the calls' ticks snap to: points a whole number of milliseconds apart that divides
/// the 20 ms frame, so a clock on the grid stays on it, counted from a process-wide origin
/// (plus an offset, for a grid shifted against the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickGrid {
    step: Duration,
    offset: Duration,
}

impl TickGrid {
    /// The default step: 4 ms, five wake-ups a frame per worker, a tick moved by at most 2 ms.
    pub const DEFAULT: TickGrid = TickGrid {
        step: Duration::from_millis(4),
        offset: Duration::ZERO,
    };

    /// A grid of `step`; refused unless it is 1, 2, 4, 5, 10 or 20 ms.
    pub fn new(step: Duration) -> Result<TickGrid, TickGridError> {
        let ms = step.as_millis();
        let whole = Duration::from_millis(ms as u64) == step;
        if !whole || ms == 0 || !(FRAME_MS as u128).is_multiple_of(ms) {
            return Err(TickGridError::NotADivisorOfTheFrame(step));
        }
        Ok(TickGrid {
            step,
            offset: Duration::ZERO,
        })
    }

    /// The same grid with its points `offset` later (taken modulo the step).
    pub fn shifted(self, offset: Duration) -> TickGrid {
        TickGrid {
            offset: nanos(offset.as_nanos() % self.step.as_nanos()),
            ..self
        }
    }

    /// The grid's step.
    pub fn step(&self) -> Duration {
        self.step
    }

    /// How far the grid's points lie after those of the unshifted grid of the same step.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// The grid point nearest to `t` (the later one at a tie).
    pub fn nearest(&self, t: Instant) -> Instant {
        let into = self.past_point(t);
        if into * 2 >= self.step {
            t + (self.step - into)
        } else {
            t - into
        }
    }

    /// The first grid point at or after `t`.
    pub fn at_or_after(&self, t: Instant) -> Instant {
        let into = self.past_point(t);
        if into.is_zero() {
            t
        } else {
            t + (self.step - into)
        }
    }

    /// How far `t` is past the grid point at or before it.
    fn past_point(&self, t: Instant) -> Duration {
        into_period(t, epoch() + self.offset, self.step)
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
    /// On grids that spread the calls further apart as the process runs more calls per core
    /// ([`AutoTier`]); a running call follows when the tier changes.
    #[default]
    Auto,
}

/// Calls per core from which [`TickSnap::Auto`] interleaves two 4 ms grids: on one grid, each
/// point of a worker would gather ten calls or more, and the last of a batch of Opus frames
/// leaves a millisecond and a half after the first (measured: 150 Opus calls on 2 cores, all
/// on one 4 ms grid, reach a pacing p99 of 5 ms; spread over all phases, 3 ms).
pub const AUTO_CALLS_PER_CORE: usize = 50;

/// Calls per core from which [`TickSnap::Auto`] gives each call a phase of its own: every
/// millisecond's wake-up of a worker then serves several calls anyway.
pub const AUTO_APART_PER_CORE: usize = 100;

/// How far apart [`TickSnap::Auto`] puts the calls' clocks, by the calls per core.
///
/// A tier is entered at its threshold and left downwards only 10 % below it, so a process
/// whose call count wavers around a threshold does not move its clocks back and forth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AutoTier {
    /// Every clock on [`TickGrid::DEFAULT`]: five wake-ups a frame per worker.
    Shared,
    /// Half of the clocks (odd [lanes](GridSeat)) on the default grid shifted by 2 ms: ten
    /// wake-ups a frame, each serving half as many calls.
    Interleaved,
    /// Each clock at a phase of its own: moved once, by its lane, to one of the four whole
    /// milliseconds of the 4 ms step (off the points it shared), then wherever the phase
    /// aligner takes it.
    Apart,
}

impl AutoTier {
    /// The tier for `calls` running on `cores`, for a clock now in tier `from` (`None`: a clock
    /// being placed).
    pub fn for_load(calls: usize, cores: usize, from: Option<AutoTier>) -> AutoTier {
        let cores = cores.max(1);
        // Staying in a tier takes 90 % of what entering it takes.
        let reaches = |per_core: usize, tier: AutoTier| {
            let needed = per_core * cores;
            let held = from.is_some_and(|f| f >= tier);
            calls >= needed || (held && calls * 10 >= needed * 9)
        };
        if reaches(AUTO_APART_PER_CORE, AutoTier::Apart) {
            AutoTier::Apart
        } else if reaches(AUTO_CALLS_PER_CORE, AutoTier::Interleaved) {
            AutoTier::Interleaved
        } else {
            AutoTier::Shared
        }
    }
}

/// One call's place among the process's clocks: counts the call in [`live_calls`] while it
/// lives and says which grid its clock follows.
///
/// Each seat has a lane, counted per thread (a per-core worker's calls alternate), which picks
/// its half in [`AutoTier::Interleaved`] and its phase in [`AutoTier::Apart`].
#[derive(Debug)]
pub struct GridSeat {
    snap: TickSnap,
    lane: u32,
    tier: Option<AutoTier>,
    _live: LiveCall,
}

impl GridSeat {
    /// A seat for a clock placed now.
    pub fn take(snap: TickSnap) -> GridSeat {
        let live = LiveCall::start();
        let lane = LANE.with(|next| {
            let lane = next.get();
            next.set(lane.wrapping_add(1));
            lane
        });
        let tier =
            (snap == TickSnap::Auto).then(|| AutoTier::for_load(live_calls(), cores(), None));
        GridSeat {
            snap,
            lane,
            tier,
            _live: live,
        }
    }

    /// This seat's lane.
    pub fn lane(&self) -> u32 {
        self.lane
    }

    /// The [`AutoTier`] the clock is in (`None` unless [`TickSnap::Auto`]).
    pub fn tier(&self) -> Option<AutoTier> {
        self.tier
    }

    /// The grid the clock keeps now: where its first tick and the phase aligner's moves snap
    /// (`None`: anywhere).
    pub fn grid(&self) -> Option<TickGrid> {
        match self.snap {
            TickSnap::Off => None,
            TickSnap::Fixed(grid) => Some(grid),
            TickSnap::Auto => match self.tier? {
                AutoTier::Shared => Some(TickGrid::DEFAULT),
                AutoTier::Interleaved => {
                    Some(TickGrid::DEFAULT.shifted(TickGrid::DEFAULT.step() / 2 * (self.lane % 2)))
                }
                AutoTier::Apart => None,
            },
        }
    }

    /// Looks at the process's calls again (each tick: one relaxed atomic load) and, when the
    /// tier changed, returns the grid whose nearest point the clock moves to now.
    pub fn update(&mut self) -> Option<TickGrid> {
        self.update_for(live_calls(), cores())
    }

    /// [`GridSeat::update`] for `calls` running on `cores`.
    pub fn update_for(&mut self, calls: usize, cores: usize) -> Option<TickGrid> {
        let from = self.tier?;
        let tier = AutoTier::for_load(calls, cores, Some(from));
        if tier == from {
            return None;
        }
        self.tier = Some(tier);
        match tier {
            // Off the shared points, to the lane's own whole millisecond of the step (tokio's
            // timers fire on whole milliseconds, so finer phases would not stay apart): four
            // consecutive lanes take four different ones, and the clock moves by at most half a
            // step.
            AutoTier::Apart => {
                Some(TickGrid::DEFAULT.shifted(Duration::from_millis(u64::from(self.lane % 4))))
            }
            _ => self.grid(),
        }
    }
}

thread_local! {
    /// The lane of the next seat taken on this thread.
    static LANE: Cell<u32> = const { Cell::new(0) };
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
    /// Counts a clock that starts now (a [`GridSeat`] holds one; this alone counts a clock
    /// that takes no seat).
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
    *CORES.get_or_init(crate::workers::available_cores)
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(n as u64)
}

/// How far `t` lies past the last of the points `period` apart through `origin` (at or before
/// `t`, on either side of `origin`).
pub(crate) fn into_period(t: Instant, origin: Instant, period: Duration) -> Duration {
    let step = period.as_nanos();
    if t >= origin {
        nanos((t - origin).as_nanos() % step)
    } else {
        let before = (origin - t).as_nanos() % step;
        nanos(if before == 0 { 0 } else { step - before })
    }
}

/// The origin every grid point (and media clock phase) is counted from, the same for every
/// call in the process.
pub(crate) fn epoch() -> Instant {
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
    fn auto_tiers_spread_the_calls_as_the_process_grows() {
        use AutoTier::*;
        let tier = |calls, from| AutoTier::for_load(calls, 2, from);
        assert_eq!(tier(0, None), Shared);
        assert_eq!(tier(99, None), Shared);
        assert_eq!(tier(100, None), Interleaved);
        assert_eq!(tier(199, None), Interleaved);
        assert_eq!(tier(200, None), Apart);
        assert_eq!(AutoTier::for_load(100, 4, None), Shared);
        assert_eq!(AutoTier::for_load(10, 0, None), Shared);
        // Up at the threshold, down only 10 % below it.
        assert_eq!(tier(100, Some(Shared)), Interleaved);
        assert_eq!(tier(90, Some(Interleaved)), Interleaved);
        assert_eq!(tier(89, Some(Interleaved)), Shared);
        assert_eq!(tier(180, Some(Apart)), Apart);
        assert_eq!(tier(179, Some(Apart)), Interleaved);
        assert_eq!(tier(90, Some(Apart)), Interleaved);
        assert_eq!(tier(89, Some(Apart)), Shared);
        assert_eq!(tier(180, Some(Interleaved)), Interleaved);
    }

    #[test]
    fn seats_alternate_lanes_and_follow_the_tier() {
        let a = GridSeat::take(TickSnap::Auto);
        let b = GridSeat::take(TickSnap::Auto);
        assert_eq!(b.lane(), a.lane().wrapping_add(1));
        let (mut even, mut odd) = if a.lane().is_multiple_of(2) {
            (a, b)
        } else {
            (b, a)
        };
        // Few calls: both on the default grid, nothing to move.
        assert_eq!(even.tier(), Some(AutoTier::Shared));
        assert_eq!(even.grid(), Some(TickGrid::DEFAULT));
        assert_eq!(odd.grid(), Some(TickGrid::DEFAULT));
        assert_eq!(even.update_for(10, 2), None);
        // Interleaved: the odd lane moves 2 ms over, the even one stays.
        assert_eq!(even.update_for(120, 2), Some(TickGrid::DEFAULT));
        let shifted = odd.update_for(120, 2).unwrap();
        assert_eq!(shifted.step(), ms(4));
        assert_eq!(shifted.offset(), ms(2));
        assert_eq!(odd.grid(), Some(shifted));
        assert_eq!(odd.update_for(110, 2), None);
        // Apart: each to a phase of its own, then no grid.
        let phase_even = even.update_for(250, 2).unwrap();
        let phase_odd = odd.update_for(250, 2).unwrap();
        assert_ne!(phase_even.offset(), phase_odd.offset());
        assert_eq!(even.grid(), None);
        assert_eq!(even.update_for(190, 2), None);
        // Back down to few calls: onto the shared grid again.
        assert_eq!(odd.update_for(20, 2), Some(TickGrid::DEFAULT));
        // Off and fixed seats never move.
        let mut off = GridSeat::take(TickSnap::Off);
        assert_eq!((off.grid(), off.update_for(250, 2)), (None, None));
        let five = TickGrid::new(ms(5)).unwrap();
        let mut fixed = GridSeat::take(TickSnap::Fixed(five));
        assert_eq!(
            (fixed.grid(), fixed.update_for(10_000, 2)),
            (Some(five), None)
        );
    }

    #[test]
    fn apart_phases_of_consecutive_lanes_cover_the_step() {
        // Any four consecutive lanes leave the shared points for the four whole milliseconds
        // of the 4 ms step, one each.
        let mut phases: Vec<u128> = (0..4)
            .map(|_| {
                let mut seat = GridSeat::take(TickSnap::Auto);
                seat.update_for(10_000, 1).unwrap().offset().as_micros()
            })
            .collect();
        phases.sort();
        assert_eq!(phases, vec![0, 1000, 2000, 3000]);
    }

    #[test]
    fn a_shifted_grid_has_its_points_offset() {
        let grid = TickGrid::new(ms(4)).unwrap();
        let shifted = grid.shifted(ms(6));
        assert_eq!(shifted.offset(), ms(2));
        let base = grid.at_or_after(Instant::now());
        assert_eq!(shifted.at_or_after(base), base + ms(2));
        assert_eq!(shifted.nearest(base + ms(1)), base + ms(2));
        assert_eq!(shifted.nearest(base - ms(1)), base - ms(2));
        assert_eq!(shifted.nearest(base + ms(4)), base + ms(6));
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
