//! Load shedding: when the calls' media ticks run late because the CPU cannot keep up, every
//! call sharing the [`LoadShedder`] encodes more cheaply for a while.
//!
//! On an Opus call the encoder is most of the work (BENCHMARKS.md: libopus is over 80 % of the
//! engine threads' samples), and the load peaks when many agents speak at once. Past the point
//! where the machine keeps up, every call's frames go out late together. A tick later than
//! [`LoadShedder::trigger`] engages shedding; with a [`LoadShedder::sustain`], only ticks that
//! keep coming that long do (a gap of more than two frames without one starts over), so a
//! stall of the machine of a frame or so, which shedding would not help, is let pass. It then
//! holds for [`LoadShedder::hold`], extended by every late tick: while it holds, each call's
//! port lowers its encoder's complexity ([`crate::driver::MediaPort::set_load_shedding`]), and
//! restores it afterwards.
//!
//! A late tick alone cannot tell a backlog from a stall of the machine (a virtual CPU held by
//! its hypervisor for 10 ms makes every call's tick late, and shedding would not help). The
//! shedder therefore also measures the engine threads' **busy share**: every tick reports how
//! long its work took, and over windows of [`LoadShedder::WINDOW`] the work summed against the
//! threads' time ([`LoadShedder::with_busy_trigger`]) says whether the calls' work filled the
//! CPU. With a busy trigger set, a late tick engages shedding only when the share over the
//! last window and the current one reaches it; the others count as stalls
//! ([`LoadShedder::stalls_let_pass`]). The busy share is also a load signal for the host
//! ([`LoadShedder::busy_share`]), e.g. to turn new calls away.
//!
//! The state is atomic words: every tick adds its work to one, a late tick writes a few more,
//! with no lock and no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Buckets of the busy-share histograms: 5 % wide, the last one for 100 % and more.
pub const BUSY_BUCKETS: usize = 21;

/// Shared by the calls of one machine (or one pool of cores): they shed load together.
#[derive(Debug)]
pub struct LoadShedder {
    origin: Instant,
    trigger: Duration,
    sustain: Duration,
    hold: Duration,
    /// Threads the calls' ticks run on, and the busy share (per mille) a late tick needs to
    /// engage shedding (0: any late tick does).
    threads: u32,
    busy_trigger_permille: u64,
    /// The current busy window: when it began (µs after `origin`) and the work in it so far.
    window_from_us: AtomicU64,
    window_work_us: AtomicU64,
    /// The last closed window: its length and its work, in µs.
    last_window_us: AtomicU64,
    last_window_work_us: AtomicU64,
    /// How many closed windows had each busy share, and the busy share at each late tick.
    window_shares: [AtomicU64; BUSY_BUCKETS],
    late_tick_shares: [AtomicU64; BUSY_BUCKETS],
    /// Late ticks that did not engage shedding because the threads were not busy enough.
    stalls: AtomicU64,
    /// Microseconds after `origin` until which shedding holds (0: never engaged).
    until_us: AtomicU64,
    /// When the current streak of late ticks began, and when its last late tick was seen.
    streak_from_us: AtomicU64,
    last_late_us: AtomicU64,
    /// Times a late tick engaged shedding that was not holding.
    engaged: AtomicU64,
}

impl LoadShedder {
    /// A tick later than this engages shedding by default (pacing p99 is 2–4 ms at loads the
    /// machine carries; a frame is a deadline miss at 10 ms).
    pub const DEFAULT_TRIGGER: Duration = Duration::from_millis(5);
    /// How long late ticks must keep coming before shedding engages by default: none, the
    /// first late tick engages it. At 200 Opus calls on two vCPUs that kept every frame on
    /// time in five runs of five, where waiting 20 or 60 ms for a backlog to show let bursts
    /// of late frames through (BENCHMARKS.md, "Shedding load at the knee"); a sustain makes
    /// the calls shed less often, for hosts that value the encoder's quality more.
    pub const DEFAULT_SUSTAIN: Duration = Duration::ZERO;
    /// A streak of late ticks ends after this long without one.
    pub const STREAK_GAP: Duration = Duration::from_millis(40);
    /// How long shedding holds after the last late tick by default: long enough to ride out a
    /// peak of agent speech, short enough to give the quality back soon after.
    pub const DEFAULT_HOLD: Duration = Duration::from_secs(2);
    /// Length of a busy-share window: five frames, long enough to average over the calls'
    /// ticks, short enough to see a peak of agent speech build up.
    pub const WINDOW: Duration = Duration::from_millis(100);

    /// A shedder engaged once ticks later than `trigger` have kept coming for `sustain`,
    /// holding `hold` after the last one.
    pub fn new(trigger: Duration, sustain: Duration, hold: Duration) -> LoadShedder {
        LoadShedder {
            origin: Instant::now(),
            trigger,
            sustain,
            hold,
            threads: 1,
            busy_trigger_permille: 0,
            window_from_us: AtomicU64::new(0),
            window_work_us: AtomicU64::new(0),
            last_window_us: AtomicU64::new(0),
            last_window_work_us: AtomicU64::new(0),
            window_shares: Default::default(),
            late_tick_shares: Default::default(),
            stalls: AtomicU64::new(0),
            until_us: AtomicU64::new(0),
            streak_from_us: AtomicU64::new(0),
            last_late_us: AtomicU64::new(0),
            engaged: AtomicU64::new(0),
        }
    }

    /// Late ticks engage shedding only while the calls' work fills at least `share` (0–1) of
    /// `threads` threads' time; later ticks at a lower busy share are stalls of the machine,
    /// let pass. `threads` is how many threads run the calls sharing this shedder (at least 1).
    pub fn with_busy_trigger(mut self, threads: usize, share: f64) -> LoadShedder {
        self.threads = u32::try_from(threads.max(1)).unwrap_or(u32::MAX);
        self.busy_trigger_permille = (share.clamp(0.0, 1.0) * 1000.0).round() as u64;
        self
    }

    /// The busy share (0–1) a late tick needs to engage shedding; 0 when any late tick does.
    pub fn busy_trigger(&self) -> f64 {
        self.busy_trigger_permille as f64 / 1000.0
    }

    /// Lateness that engages shedding.
    pub fn trigger(&self) -> Duration {
        self.trigger
    }

    /// How long late ticks must keep coming before shedding engages.
    pub fn sustain(&self) -> Duration {
        self.sustain
    }

    /// How long shedding holds after the last late tick.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Notes a tick that finished at `now`, `late` after it was due, after `work` of its own.
    /// Late ticks that keep coming for the sustain, while the threads are busy enough, engage
    /// shedding; while it holds, each late tick extends it.
    pub fn observe(&self, now: Instant, late: Duration, work: Duration) {
        let at = self.micros(now);
        self.add_work(at, work);
        if late <= self.trigger {
            return;
        }
        let share = self.share_permille(at);
        self.late_tick_shares[busy_bucket(share)].fetch_add(1, Ordering::Relaxed);
        if share < self.busy_trigger_permille {
            self.stalls.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let previous = self.last_late_us.fetch_max(at, Ordering::Relaxed);
        if previous == 0 || at.saturating_sub(previous) > Self::STREAK_GAP.as_micros() as u64 {
            // Calls on other threads may start the same streak at the same moment: either
            // start will do.
            self.streak_from_us.store(at, Ordering::Relaxed);
        }
        let holding = at < self.until_us.load(Ordering::Relaxed);
        let streak = at.saturating_sub(self.streak_from_us.load(Ordering::Relaxed));
        if !holding && streak < self.sustain.as_micros() as u64 {
            return;
        }
        let until = at.saturating_add(self.hold.as_micros() as u64);
        let before = self.until_us.fetch_max(until, Ordering::Relaxed);
        if before <= at {
            self.engaged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the calls should shed load at `now`.
    pub fn is_shedding(&self, now: Instant) -> bool {
        self.micros(now) < self.until_us.load(Ordering::Relaxed)
    }

    /// Times shedding was engaged from rest so far.
    pub fn engagements(&self) -> u64 {
        self.engaged.load(Ordering::Relaxed)
    }

    /// Late ticks let pass so far because the threads were not busy enough: stalls of the
    /// machine rather than a backlog of work.
    pub fn stalls_let_pass(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }

    /// The share of the threads' time the calls' ticks worked over the last closed window and
    /// the current one, as of `now`: 0–1 (above 1 only by measuring error) against the threads
    /// given to [`Self::with_busy_trigger`], or against one thread when none were given.
    pub fn busy_share(&self, now: Instant) -> f64 {
        self.share_permille(self.micros(now)) as f64 / 1000.0
    }

    /// How many closed windows had each busy share: bucket `i` counts shares from `5 i` % to
    /// below `5 (i + 1)` %, the last one 100 % and more.
    pub fn window_share_histogram(&self) -> [u64; BUSY_BUCKETS] {
        std::array::from_fn(|i| self.window_shares[i].load(Ordering::Relaxed))
    }

    /// The busy share at or below which a fraction `q` (0–1) of the closed windows fell: the
    /// upper edge of its 5 % bucket (1.05 for the last, open one); `None` before any window.
    pub fn window_share_quantile(&self, q: f64) -> Option<f64> {
        let histogram = self.window_share_histogram();
        let total = histogram.iter().sum();
        crate::driver::quantile_bucket(histogram, total, q).map(|i| (i + 1) as f64 * 0.05)
    }

    /// The busy share at each late tick, in the buckets of [`Self::window_share_histogram`].
    pub fn late_tick_share_histogram(&self) -> [u64; BUSY_BUCKETS] {
        std::array::from_fn(|i| self.late_tick_shares[i].load(Ordering::Relaxed))
    }

    /// Adds a tick's work to the current window, closing it first once it is a window long.
    fn add_work(&self, at: u64, work: Duration) {
        // Capped at an hour, so that no report, however wrong, overflows the windows' sums.
        let work = u64::try_from(work.as_micros()).map_or(MAX_WORK_US, |w| w.min(MAX_WORK_US));
        let from = self.window_from_us.load(Ordering::Relaxed);
        let length = at.saturating_sub(from);
        if length >= Self::WINDOW.as_micros() as u64
            && self
                .window_from_us
                .compare_exchange(from, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // This tick closed the window; a tick on another thread adding its work meanwhile
            // lands in either window, which the share's precision allows.
            let closed = self.window_work_us.swap(work, Ordering::Relaxed);
            self.last_window_work_us.store(closed, Ordering::Relaxed);
            self.last_window_us.store(length, Ordering::Relaxed);
            let share = permille(closed, length, self.threads);
            self.window_shares[busy_bucket(share)].fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.window_work_us.fetch_add(work, Ordering::Relaxed);
    }

    /// Busy share in per mille over the last closed window and the current one.
    fn share_permille(&self, at: u64) -> u64 {
        let from = self.window_from_us.load(Ordering::Relaxed);
        let work = self
            .window_work_us
            .load(Ordering::Relaxed)
            .saturating_add(self.last_window_work_us.load(Ordering::Relaxed));
        let length = at
            .saturating_sub(from)
            .saturating_add(self.last_window_us.load(Ordering::Relaxed));
        permille(work, length, self.threads)
    }

    fn micros(&self, at: Instant) -> u64 {
        // Never 0 after the origin's first microsecond, so "until 0" means never engaged.
        at.saturating_duration_since(self.origin).as_micros() as u64 + 1
    }
}

/// The most work one tick may report, in µs (an hour).
const MAX_WORK_US: u64 = 3_600_000_000;

/// `work` against `threads` × `length`, in per mille (0 for an empty span).
fn permille(work: u64, length: u64, threads: u32) -> u64 {
    let time = length.saturating_mul(u64::from(threads));
    work.saturating_mul(1000).checked_div(time).unwrap_or(0)
}

/// Histogram bucket of a busy share in per mille.
fn busy_bucket(permille: u64) -> usize {
    ((permille / 50) as usize).min(BUSY_BUCKETS - 1)
}

impl Default for LoadShedder {
    fn default() -> Self {
        LoadShedder::new(
            Self::DEFAULT_TRIGGER,
            Self::DEFAULT_SUSTAIN,
            Self::DEFAULT_HOLD,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Late ticks (6 ms each) from `from` every 20 ms up to `to`, as seen by the shedder.
    fn late_ticks(shedder: &LoadShedder, t0: Instant, from: u32, to: u32) {
        for at in (from..=to).step_by(20) {
            shedder.observe(t0 + at * MS, 6 * MS, MS);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn late_ticks_that_keep_coming_engage_shedding_for_the_hold() {
        let shedder = LoadShedder::new(5 * MS, 60 * MS, 2000 * MS);
        let t0 = Instant::now();
        // On time, or late within the trigger: nothing.
        shedder.observe(t0, 3 * MS, MS);
        shedder.observe(t0, 5 * MS, MS);
        assert!(!shedder.is_shedding(t0));
        // A stall: late ticks for 40 ms, then on time again. No shedding.
        late_ticks(&shedder, t0, 100, 140);
        assert!(!shedder.is_shedding(t0 + 141 * MS));
        // Another short streak after a gap does not add up with the first.
        late_ticks(&shedder, t0, 200, 240);
        assert!(!shedder.is_shedding(t0 + 241 * MS));
        assert_eq!(shedder.engagements(), 0);
        // A backlog: late ticks for 60 ms engage it, 2 s past the last one.
        late_ticks(&shedder, t0, 1000, 1040);
        assert!(!shedder.is_shedding(t0 + 1041 * MS));
        late_ticks(&shedder, t0, 1060, 1060);
        assert!(shedder.is_shedding(t0 + 1061 * MS));
        assert_eq!(shedder.engagements(), 1);
        // While it holds, every late tick extends it, and is not a new engagement.
        late_ticks(&shedder, t0, 1080, 1100);
        assert!(shedder.is_shedding(t0 + 3099 * MS));
        assert!(!shedder.is_shedding(t0 + 3101 * MS));
        shedder.observe(t0 + 2000 * MS, 12 * MS, MS);
        assert!(shedder.is_shedding(t0 + 3999 * MS));
        assert!(!shedder.is_shedding(t0 + 4001 * MS));
        assert_eq!(shedder.engagements(), 1);
        // An observation of an earlier time never shortens it.
        shedder.observe(t0 + 1500 * MS, 20 * MS, MS);
        assert!(shedder.is_shedding(t0 + 3999 * MS));
        // After it lapsed, a lone late tick does nothing; a new streak engages it again.
        late_ticks(&shedder, t0, 5000, 5000);
        assert!(!shedder.is_shedding(t0 + 5001 * MS));
        late_ticks(&shedder, t0, 6000, 6060);
        assert!(shedder.is_shedding(t0 + 6061 * MS));
        assert_eq!(shedder.engagements(), 2);
    }

    #[test]
    fn calls_on_other_threads_see_one_state() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let shedder = std::sync::Arc::new(rt.block_on(async { LoadShedder::default() }));
        let now = rt.block_on(async { Instant::now() });
        let other = shedder.clone();
        std::thread::spawn(move || late_ticks(&other, now, 0, 60))
            .join()
            .unwrap();
        let now = now + 60 * MS;
        assert!(shedder.is_shedding(now));
        assert_eq!(shedder.engagements(), 1);
    }

    /// Ticks on `threads` threads every 20 ms from `from` to before `to` (ms), `calls` per
    /// thread, each working `work`, all on time.
    fn busy_ticks(
        shedder: &LoadShedder,
        t0: Instant,
        from: u32,
        to: u32,
        calls: u32,
        work: Duration,
    ) {
        for at in (from..to).step_by(20) {
            for _ in 0..calls {
                shedder.observe(t0 + at * MS, Duration::ZERO, work);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_busy_share_is_the_ticks_work_against_the_threads_time() {
        let shedder = LoadShedder::default().with_busy_trigger(2, 0.8);
        assert_eq!(shedder.busy_trigger(), 0.8);
        let t0 = Instant::now();
        // Two threads, ten ticks of 1 ms each per 20 ms on each: half their time.
        busy_ticks(&shedder, t0, 0, 1000, 20, MS);
        let share = shedder.busy_share(t0 + 1000 * MS);
        assert!((0.45..=0.55).contains(&share), "{share}");
        // Then 1.9 ms each: 95 %.
        busy_ticks(
            &shedder,
            t0,
            1000,
            1400,
            20,
            1900 * Duration::from_micros(1),
        );
        let share = shedder.busy_share(t0 + 1400 * MS);
        assert!((0.9..=1.0).contains(&share), "{share}");
        // Half the closed windows were near half busy, the busiest near full.
        let median = shedder.window_share_quantile(0.5).unwrap();
        assert!((0.5..=0.55).contains(&median), "{median}");
        assert!(shedder.window_share_quantile(1.0).unwrap() >= 0.95);
        assert_eq!(LoadShedder::default().window_share_quantile(0.5), None);
        // Every closed window lands in a bucket: ten near half (the last closed by the first
        // busy tick), then busy ones.
        let windows = shedder.window_share_histogram();
        assert_eq!(windows[10] + windows[9], 10, "{windows:?}");
        assert!(windows[18] + windows[19] >= 3, "{windows:?}");
        // Idle for a second: the share falls.
        busy_ticks(&shedder, t0, 2400, 2401, 1, MS);
        assert!(shedder.busy_share(t0 + 2500 * MS) < 0.1);
        // Absurd reports of work neither panic nor wrap the sums around to an idle share.
        for _ in 0..1000 {
            shedder.observe(t0 + 2600 * MS, Duration::ZERO, Duration::MAX);
        }
        assert!(shedder.busy_share(t0 + 2600 * MS) > 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_busy_trigger_late_ticks_of_idle_threads_are_stalls_let_pass() {
        let shedder = LoadShedder::default().with_busy_trigger(2, 0.8);
        let t0 = Instant::now();
        // Threads half busy, then a stall: every call's tick 15 ms late at once.
        busy_ticks(&shedder, t0, 0, 1000, 20, MS);
        for _ in 0..40 {
            shedder.observe(t0 + 1015 * MS, 15 * MS, MS);
        }
        assert!(!shedder.is_shedding(t0 + 1016 * MS));
        assert_eq!(shedder.stalls_let_pass(), 40);
        assert_eq!(shedder.engagements(), 0);
        // A backlog: the threads fill up, and the late ticks that follow engage shedding.
        busy_ticks(
            &shedder,
            t0,
            1020,
            1300,
            20,
            1950 * Duration::from_micros(1),
        );
        shedder.observe(t0 + 1306 * MS, 6 * MS, 2 * MS);
        assert!(shedder.is_shedding(t0 + 1307 * MS));
        assert_eq!(shedder.engagements(), 1);
        assert_eq!(shedder.stalls_let_pass(), 40);
        // Each late tick is counted at its busy share: 40 at about half, one near full.
        let late = shedder.late_tick_share_histogram();
        assert_eq!(late.iter().sum::<u64>(), 41);
        assert_eq!(late[17..].iter().sum::<u64>(), 1, "{late:?}");
        // Without a busy trigger, the stall's late ticks engage it as before.
        let plain = LoadShedder::default();
        assert_eq!(plain.busy_trigger(), 0.0);
        busy_ticks(&plain, t0, 0, 1000, 20, MS);
        plain.observe(t0 + 1015 * MS, 15 * MS, MS);
        assert!(plain.is_shedding(t0 + 1016 * MS));
        assert_eq!(plain.stalls_let_pass(), 0);
    }
}
