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
//! restores it afterwards. The state is three atomic words: a tick reads one and a late tick
//! writes them, with no lock and no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Shared by the calls of one machine (or one pool of cores): they shed load together.
#[derive(Debug)]
pub struct LoadShedder {
    origin: Instant,
    trigger: Duration,
    sustain: Duration,
    hold: Duration,
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

    /// A shedder engaged once ticks later than `trigger` have kept coming for `sustain`,
    /// holding `hold` after the last one.
    pub fn new(trigger: Duration, sustain: Duration, hold: Duration) -> LoadShedder {
        LoadShedder {
            origin: Instant::now(),
            trigger,
            sustain,
            hold,
            until_us: AtomicU64::new(0),
            streak_from_us: AtomicU64::new(0),
            last_late_us: AtomicU64::new(0),
            engaged: AtomicU64::new(0),
        }
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

    /// Notes how late a tick's frame left at `now`. Late ticks that keep coming for the
    /// sustain engage shedding; while it holds, each late tick extends it.
    pub fn observe(&self, now: Instant, late: Duration) {
        if late <= self.trigger {
            return;
        }
        let at = self.micros(now);
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

    fn micros(&self, at: Instant) -> u64 {
        // Never 0 after the origin's first microsecond, so "until 0" means never engaged.
        at.saturating_duration_since(self.origin).as_micros() as u64 + 1
    }
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
            shedder.observe(t0 + at * MS, 6 * MS);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn late_ticks_that_keep_coming_engage_shedding_for_the_hold() {
        let shedder = LoadShedder::new(5 * MS, 60 * MS, 2000 * MS);
        let t0 = Instant::now();
        // On time, or late within the trigger: nothing.
        shedder.observe(t0, 3 * MS);
        shedder.observe(t0, 5 * MS);
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
        shedder.observe(t0 + 2000 * MS, 12 * MS);
        assert!(shedder.is_shedding(t0 + 3999 * MS));
        assert!(!shedder.is_shedding(t0 + 4001 * MS));
        assert_eq!(shedder.engagements(), 1);
        // An observation of an earlier time never shortens it.
        shedder.observe(t0 + 1500 * MS, 20 * MS);
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
}
