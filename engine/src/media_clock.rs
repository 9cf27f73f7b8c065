//! The calls' 20 ms media clocks, served by one timer per runtime instead of one each.
//!
//! A tokio `Interval` per call puts every call's clock into the runtime's timer wheel, one
//! structure behind one mutex: each tick re-arms the entry (a lock), and the worker parked on
//! the timer driver fires the entries due (the same lock, held while it walks them). At 1000
//! calls that is 50 000 re-arms a second.
//!
//! [`ClockSource::Shared`] keeps the clocks out of the wheel. A clock registers its phase (its
//! due time modulo the period) once with its runtime's hub, and again only when the phase
//! moves (the phase aligner, a change of grid tier). The hub keeps the phases sorted and one
//! timer set for the next of them; the timer's waker is the hub itself, so when the runtime's
//! driver fires it, the hub wakes the clocks due right inside the driver's wake-up batch, in
//! phase order, and sets the timer again. A tick takes no lock: the clock checks the time and,
//! when it must wait, leaves its waker in an [`AtomicWaker`]. A registration takes the hub's
//! lock (at a call's start and end and when its phase moves, not per tick).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::runtime::{Handle, Id as RuntimeId};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::tick_grid::{epoch, into_period};

/// Where a media clock's wake-ups come from.
///
/// The shared timer is the default on every runtime: at 1000 G.711 calls it lowered pacing p99
/// in every alternated run, on per-core workers (with CPU and voice-to-voice p99 lower too) and
/// on a work-stealing runtime, and it was even at 50 to 200 Opus calls (BENCHMARKS.md, "One
/// timer for all calls' clocks"). [`ClockSource::Interval`] stays for comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockSource {
    /// One timer per runtime for every clock of the same period; each clock registers its
    /// phase with it and is woken in phase order (no per-tick timer re-arm, no lock per tick).
    #[default]
    Shared,
    /// A tokio `Interval` per clock: an entry in the runtime's timer wheel, re-armed every
    /// tick.
    Interval,
}

/// A periodic clock that catches up in a burst when late (each missed tick fires at once),
/// like a tokio `Interval` with `MissedTickBehavior::Burst`.
///
/// Must be created inside a tokio runtime with the time driver enabled; with
/// [`ClockSource::Shared`] it is served by that runtime's hub, so keep it on that runtime.
#[derive(Debug)]
pub struct MediaClock {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Shared(HubClock),
    Interval(Interval),
}

impl MediaClock {
    /// A clock whose first tick is due at `first` and the next ones every `period` after.
    ///
    /// # Panics
    /// Outside a tokio runtime, or when `period` is zero.
    pub fn new(source: ClockSource, first: Instant, period: Duration) -> MediaClock {
        assert!(!period.is_zero(), "a media clock needs a period");
        let inner = match source {
            ClockSource::Shared => Inner::Shared(HubClock::new(first, period)),
            ClockSource::Interval => {
                let mut interval = tokio::time::interval_at(first, period);
                interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
                Inner::Interval(interval)
            }
        };
        MediaClock { inner }
    }

    /// Waits for the next tick and returns the instant it was due.
    pub async fn tick(&mut self) -> Instant {
        match &mut self.inner {
            Inner::Shared(clock) => poll_fn(|cx| clock.poll_tick(cx)).await,
            Inner::Interval(interval) => interval.tick().await,
        }
    }

    /// Makes the next tick due at `at`; the ones after follow every period from there.
    pub fn reset_at(&mut self, at: Instant) {
        match &mut self.inner {
            Inner::Shared(clock) => clock.reset_at(at),
            Inner::Interval(interval) => interval.reset_at(at),
        }
    }
}

/// A clock served by its runtime's hub.
#[derive(Debug)]
struct HubClock {
    hub: Arc<Hub>,
    key: u64,
    waker: Arc<AtomicWaker>,
    next: Instant,
    /// The phase the hub holds for this clock.
    phase: u64,
}

impl HubClock {
    fn new(first: Instant, period: Duration) -> HubClock {
        let hub = Hub::for_current_runtime(period);
        let key = hub.keys.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        let phase = hub.phase_of(first);
        hub.request(Request::Add {
            key,
            phase,
            waker: waker.clone(),
        });
        HubClock {
            hub,
            key,
            waker,
            next: first,
            phase,
        }
    }

    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if let Some(due) = self.take_due() {
            return Poll::Ready(due);
        }
        self.waker.register(cx.waker());
        // The hub may have passed the due time between the check and the registration.
        match self.take_due() {
            Some(due) => Poll::Ready(due),
            None => Poll::Pending,
        }
    }

    fn take_due(&mut self) -> Option<Instant> {
        if Instant::now() < self.next {
            return None;
        }
        let due = self.next;
        self.next = due + self.hub.period;
        Some(due)
    }

    fn reset_at(&mut self, at: Instant) {
        self.next = at;
        let phase = self.hub.phase_of(at);
        if phase != self.phase {
            self.phase = phase;
            self.hub.request(Request::Move {
                key: self.key,
                phase,
            });
        }
    }
}

impl Drop for HubClock {
    fn drop(&mut self) {
        self.hub.request(Request::Remove { key: self.key });
    }
}

/// A change to the hub's set of clocks.
enum Request {
    Add {
        key: u64,
        phase: u64,
        waker: Arc<AtomicWaker>,
    },
    Move {
        key: u64,
        phase: u64,
    },
    Remove {
        key: u64,
    },
}

/// The clocks of one period on one runtime, and the one timer that wakes them.
///
/// The timer's waker is the hub itself ([`HubWaker`]): when the runtime's timer driver fires
/// it, the hub wakes the clocks due right there, in the driver's own wake-up batch, the way the
/// driver wakes the tasks of its own timers (a work-stealing runtime then calls a sibling
/// worker once for the batch, not once per task).
struct Hub {
    period: Duration,
    keys: AtomicU64,
    state: Mutex<HubState>,
    /// A pass is wanted: set by whoever could not take `state`, run by whoever holds it.
    wanted: AtomicBool,
    /// Wakes this hub (holds it weakly, so the hub goes with its last clock).
    waker: Waker,
}

struct HubState {
    schedule: Schedule,
    /// Occurrences up to here have been woken.
    last: Instant,
    timer: Pin<Box<Sleep>>,
    /// What the timer is set for, while it is.
    armed: Option<Instant>,
    /// Wakers taken in a pass (kept for its capacity).
    woken: Vec<Waker>,
}

/// The hub's timer's waker: a wake-up runs a pass of the hub.
struct HubWaker(Weak<Hub>);

impl Wake for HubWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(hub) = self.0.upgrade() {
            hub.run_passes();
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// The hubs of the process, one per runtime and period (dead ones are swept on each lookup).
type Registry = Mutex<Vec<(RuntimeId, Duration, Weak<Hub>)>>;

fn registry() -> &'static Registry {
    static HUBS: OnceLock<Registry> = OnceLock::new();
    HUBS.get_or_init(Registry::default)
}

impl Hub {
    /// The current runtime's hub for `period`, started on first use.
    fn for_current_runtime(period: Duration) -> Arc<Hub> {
        let runtime = Handle::current();
        let id = runtime.id();
        let mut hubs = registry().lock().unwrap_or_else(|e| e.into_inner());
        hubs.retain(|(_, _, hub)| hub.strong_count() > 0);
        if let Some(hub) = hubs
            .iter()
            .find(|(rt, p, _)| *rt == id && *p == period)
            .and_then(|(_, _, hub)| hub.upgrade())
        {
            return hub;
        }
        let now = Instant::now();
        let hub = Arc::new_cyclic(|me| Hub {
            period,
            keys: AtomicU64::new(0),
            state: Mutex::new(HubState {
                schedule: Schedule::default(),
                last: now,
                timer: Box::pin(tokio::time::sleep_until(now)),
                armed: None,
                woken: Vec::new(),
            }),
            wanted: AtomicBool::new(false),
            waker: Waker::from(Arc::new(HubWaker(me.clone()))),
        });
        hubs.push((id, period, Arc::downgrade(&hub)));
        hub
    }

    /// Applies a clock's change and runs a pass (which re-arms the timer for it).
    fn request(&self, request: Request) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.schedule.entries.is_empty() {
            // Nothing was due while the hub had no clock.
            state.last = Instant::now();
        }
        state.schedule.apply(request);
        self.wanted.store(true, Ordering::SeqCst);
        self.passes_then_unlock(state);
    }

    /// Runs the passes wanted, unless another thread (or this one, further up the stack)
    /// holds the state: then that holder runs them before it lets go.
    fn run_passes(&self) {
        self.wanted.store(true, Ordering::SeqCst);
        if let Some(state) = self.try_state() {
            self.passes_then_unlock(state);
        }
    }

    /// The state, unless another thread (or this one) holds it.
    fn try_state(&self) -> Option<MutexGuard<'_, HubState>> {
        match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn passes_then_unlock<'a>(&'a self, mut state: MutexGuard<'a, HubState>) {
        loop {
            while self.wanted.swap(false, Ordering::SeqCst) {
                self.pass(&mut state);
            }
            drop(state);
            // A pass wanted between the last check and the unlock is ours to run.
            if !self.wanted.load(Ordering::SeqCst) {
                return;
            }
            match self.try_state() {
                Some(again) => state = again,
                None => return,
            }
        }
    }

    /// Wakes the clocks due since the last pass and sets the timer for the next phase.
    fn pass(&self, state: &mut HubState) {
        let period = self.period_nanos();
        let now = Instant::now();
        if now > state.last {
            let whole = (now - state.last).as_nanos() >= u128::from(period);
            let (from, to) = (self.phase_of(state.last), self.phase_of(now));
            let HubState {
                schedule, woken, ..
            } = state;
            schedule.collect(from, to, whole, woken);
            state.last = now;
        }
        for waker in state.woken.drain(..) {
            waker.wake();
        }
        let Some(wait) = state.schedule.next_after(self.phase_of(state.last), period) else {
            state.armed = None;
            return;
        };
        let at = state.last + Duration::from_nanos(wait);
        if state.armed != Some(at) {
            // A deadline already past wakes this hub at once (`run_passes` finds the state
            // held and leaves the pass to the loop above).
            state.timer.as_mut().reset(at);
            state.armed = Some(at);
        }
        // Registers the hub's waker; outside any task's budget, so it never refuses.
        let mut cx = Context::from_waker(&self.waker);
        let mut timer = tokio::task::unconstrained(state.timer.as_mut());
        if Pin::new(&mut timer).poll(&mut cx).is_ready() {
            state.armed = None;
            self.wanted.store(true, Ordering::SeqCst);
        }
    }

    fn period_nanos(&self) -> u64 {
        self.period.as_nanos() as u64
    }

    /// How far `t` lies into its period, in nanoseconds.
    fn phase_of(&self, t: Instant) -> u64 {
        into_period(t, epoch(), self.period).as_nanos() as u64
    }
}

/// The hub's own view of its clocks: phases in ascending order.
#[derive(Default)]
struct Schedule {
    entries: Vec<Entry>,
}

struct Entry {
    phase: u64,
    key: u64,
    waker: Arc<AtomicWaker>,
}

impl Schedule {
    fn apply(&mut self, request: Request) {
        match request {
            Request::Add { key, phase, waker } => self.insert(Entry { phase, key, waker }),
            Request::Move { key, phase } => {
                if let Some(mut entry) = self.take(key) {
                    entry.phase = phase;
                    self.insert(entry);
                }
            }
            Request::Remove { key } => {
                self.take(key);
            }
        }
    }

    fn insert(&mut self, entry: Entry) {
        let at = self
            .entries
            .partition_point(|e| (e.phase, e.key) < (entry.phase, entry.key));
        self.entries.insert(at, entry);
    }

    fn take(&mut self, key: u64) -> Option<Entry> {
        let at = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(at))
    }

    /// The first phase after `from` (wrapping past the period), as a distance from `from`.
    fn next_after(&self, from: u64, period: u64) -> Option<u64> {
        let first = self.entries.first()?.phase;
        let at = self.entries.partition_point(|e| e.phase <= from);
        Some(match self.entries.get(at) {
            Some(e) => e.phase - from,
            None => period - from + first,
        })
    }

    /// Takes the wakers of the clocks whose phase lies in `(from, to]` (wrapping past the
    /// period; `whole` means every clock, for a span of a whole period or more).
    fn collect(&self, from: u64, to: u64, whole: bool, out: &mut Vec<Waker>) {
        let mut take = |e: &Entry| {
            if let Some(w) = e.waker.take() {
                out.push(w);
            }
        };
        let lo = self.entries.partition_point(|e| e.phase <= from);
        let hi = self.entries.partition_point(|e| e.phase <= to);
        if whole {
            self.entries[lo..]
                .iter()
                .chain(&self.entries[..lo])
                .for_each(take);
        } else if from < to {
            self.entries[lo..hi].iter().for_each(take);
        } else if from > to {
            self.entries[lo..].iter().for_each(&mut take);
            self.entries[..hi].iter().for_each(take);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    #[tokio::test(start_paused = true)]
    async fn a_shared_clock_ticks_every_period_at_its_phase() {
        let start = Instant::now() + Duration::from_millis(7);
        let mut clock = MediaClock::new(ClockSource::Shared, start, FRAME);
        for k in 0..5u32 {
            let due = clock.tick().await;
            assert_eq!(due, start + FRAME * k);
            let late = Instant::now() - due;
            assert!(late < Duration::from_millis(1), "tick {k} {late:?} late");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn clocks_of_different_phases_tick_in_order_and_on_time() {
        let base = Instant::now();
        let offsets = [13u64, 2, 19, 7, 7, 0];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, off) in offsets.iter().enumerate() {
            let tx = tx.clone();
            let first = base + Duration::from_millis(*off);
            tokio::spawn(async move {
                let mut clock = MediaClock::new(ClockSource::Shared, first, FRAME);
                for _ in 0..3 {
                    let due = clock.tick().await;
                    tx.send((i, due, Instant::now())).unwrap();
                }
            });
        }
        drop(tx);
        let mut seen = Vec::new();
        while let Some(t) = rx.recv().await {
            seen.push(t);
        }
        assert_eq!(seen.len(), offsets.len() * 3);
        for (i, due, at) in &seen {
            assert!(*at >= *due && *at - *due < Duration::from_millis(1), "{i}");
            let off = (*due - base).as_millis() as u64 % 20;
            assert_eq!(off, offsets[*i]);
        }
        let dues: Vec<_> = seen.iter().map(|(_, due, _)| *due).collect();
        assert!(dues.windows(2).all(|w| w[0] <= w[1]), "out of order");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_moves_the_phase_earlier_or_later() {
        let base = Instant::now();
        let mut clock =
            MediaClock::new(ClockSource::Shared, base + Duration::from_millis(15), FRAME);
        assert_eq!(clock.tick().await, base + Duration::from_millis(15));
        // Earlier in the period than the old phase: due in 10 ms, not 20.
        clock.reset_at(base + Duration::from_millis(25));
        assert_eq!(clock.tick().await, base + Duration::from_millis(25));
        assert!(Instant::now() - (base + Duration::from_millis(25)) < Duration::from_millis(1));
        assert_eq!(clock.tick().await, base + Duration::from_millis(45));
        // Later.
        clock.reset_at(base + Duration::from_millis(62));
        assert_eq!(clock.tick().await, base + Duration::from_millis(62));
        assert_eq!(clock.tick().await, base + Duration::from_millis(82));
        assert!(Instant::now() - (base + Duration::from_millis(82)) < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_clock_catches_up_in_a_burst() {
        let base = Instant::now();
        let mut clock = MediaClock::new(ClockSource::Shared, base, FRAME);
        assert_eq!(clock.tick().await, base);
        tokio::time::advance(Duration::from_millis(65)).await;
        let dues = [clock.tick().await, clock.tick().await, clock.tick().await];
        assert_eq!(dues, [base + FRAME, base + FRAME * 2, base + FRAME * 3]);
        assert_eq!(clock.tick().await, base + FRAME * 4);
        assert!(Instant::now() - (base + FRAME * 4) < Duration::from_millis(1));
    }

    fn hub_of(clock: &MediaClock) -> Arc<Hub> {
        match &clock.inner {
            Inner::Shared(c) => c.hub.clone(),
            Inner::Interval(_) => panic!("not a shared clock"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_clocks_of_a_runtime_share_one_hub_which_outlives_them() {
        let clock = MediaClock::new(ClockSource::Shared, Instant::now(), FRAME);
        let other = MediaClock::new(ClockSource::Shared, Instant::now(), FRAME);
        let hub = hub_of(&clock);
        assert!(Arc::ptr_eq(&hub, &hub_of(&other)));
        // Another period is another hub.
        let slow = MediaClock::new(ClockSource::Shared, Instant::now(), FRAME * 2);
        assert!(!Arc::ptr_eq(&hub, &hub_of(&slow)));
        drop((clock, other, slow));
        tokio::task::yield_now().await;
        // With no clock left the hub idles; the next clock uses it and ticks.
        let mut clock = MediaClock::new(ClockSource::Shared, Instant::now(), FRAME);
        assert!(Arc::ptr_eq(&hub, &hub_of(&clock)));
        let first = clock.tick().await;
        assert_eq!(clock.tick().await, first + FRAME);
    }

    #[test]
    fn each_runtime_has_its_own_hub_which_ends_with_it() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let (a, b) = (runtime(), runtime());
        let clock_on = |rt: &tokio::runtime::Runtime| {
            rt.block_on(async { MediaClock::new(ClockSource::Shared, Instant::now(), FRAME) })
        };
        let (mut ca, mut cb) = (clock_on(&a), clock_on(&b));
        let (ha, hb) = (hub_of(&ca), hub_of(&cb));
        assert!(!Arc::ptr_eq(&ha, &hb));
        // Each ticks on its own runtime, served by that runtime's hub.
        let first = a.block_on(ca.tick());
        assert_eq!(a.block_on(ca.tick()), first + FRAME);
        let first = b.block_on(cb.tick());
        assert_eq!(b.block_on(cb.tick()), first + FRAME);
        let watch = Arc::downgrade(&ha);
        drop((ca, ha));
        drop(a);
        assert!(watch.upgrade().is_none(), "the hub went with its runtime");
        drop((cb, hb, b));
    }

    /// Only creating a clock looks up the registry; ticks, resets and the hub's passes run
    /// while another thread holds its lock.
    #[test]
    fn ticks_and_resets_take_no_lock() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let mut clocks: Vec<_> = rt.block_on(async {
            (0..3u64)
                .map(|i| {
                    let first = Instant::now() + Duration::from_millis(i * 5);
                    MediaClock::new(ClockSource::Shared, first, FRAME)
                })
                .collect()
        });
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _guard = registry().lock().unwrap();
            held_tx.send(()).unwrap();
            // Released after 10 s at the latest, so a tick that waits for it ends the test
            // with a failure instead of a hang.
            done_rx.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        held_rx.recv().unwrap();
        rt.block_on(async {
            for round in 0..10u32 {
                for clock in clocks.iter_mut() {
                    clock.tick().await;
                    if round == 5 {
                        clock.reset_at(Instant::now() + Duration::from_millis(3));
                    }
                }
            }
        });
        done_tx.send(()).unwrap();
        assert!(
            holder.join().unwrap(),
            "a tick waited for the registry's lock"
        );
    }

    #[test]
    fn the_shared_timer_is_the_default_and_both_sources_run_on_both_runtime_flavors() {
        assert_eq!(ClockSource::default(), ClockSource::Shared);
        let single = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for runtime in [&single, &multi] {
            for source in [ClockSource::Shared, ClockSource::Interval] {
                let dues = runtime.block_on(async {
                    // Started ten periods ago: the missed ticks come at once, no waiting.
                    let first = Instant::now() - FRAME * 10;
                    let mut clock = MediaClock::new(source, first, FRAME);
                    match (&clock.inner, source) {
                        (Inner::Shared(_), ClockSource::Shared)
                        | (Inner::Interval(_), ClockSource::Interval) => {}
                        _ => panic!("{source:?} built the other kind of clock"),
                    }
                    let mut dues = Vec::new();
                    for _ in 0..5 {
                        dues.push(clock.tick().await - first);
                    }
                    dues
                });
                let expected: Vec<_> = (0..5).map(|k| FRAME * k).collect();
                assert_eq!(
                    dues,
                    expected,
                    "{source:?} on {:?}",
                    runtime.handle().runtime_flavor()
                );
            }
        }
    }

    #[test]
    fn the_schedule_collects_phases_in_a_wrapping_span() {
        let mut s = Schedule::default();
        let wakers: Vec<_> = (0..4).map(|_| Arc::new(AtomicWaker::new())).collect();
        for (key, phase) in [(0u64, 5u64), (1, 10), (2, 15), (3, 19)] {
            s.apply(Request::Add {
                key,
                phase,
                waker: wakers[key as usize].clone(),
            });
        }
        assert_eq!(s.next_after(0, 20), Some(5));
        assert_eq!(s.next_after(5, 20), Some(5));
        assert_eq!(s.next_after(19, 20), Some(6));
        s.apply(Request::Move { key: 0, phase: 12 });
        let phases: Vec<_> = s.entries.iter().map(|e| (e.phase, e.key)).collect();
        assert_eq!(phases, vec![(10, 1), (12, 0), (15, 2), (19, 3)]);
        s.apply(Request::Remove { key: 2 });
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.next_after(19, 20), Some(11));
        // Only registered wakers are collected, once.
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waker = counting_waker(counter.clone());
        for w in &wakers {
            w.register(&waker);
        }
        let mut out = Vec::new();
        s.collect(18, 11, false, &mut out);
        assert_eq!(out.len(), 2, "19 and 10");
        s.collect(18, 11, false, &mut out);
        assert_eq!(out.len(), 2, "taken already");
        s.collect(11, 11, true, &mut out);
        assert_eq!(out.len(), 3, "12 (0's moved phase)");
        out.drain(..).for_each(Waker::wake);
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    }

    fn counting_waker(count: Arc<std::sync::atomic::AtomicUsize>) -> Waker {
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        Waker::from(Arc::new(Count(count)))
    }
}
