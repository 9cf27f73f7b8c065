//! Fixed-size measurement stores for the load harness, so a long run's bookkeeping does not grow:
//! a latency histogram shared by every simulated caller, a bounded RSS time series, and the RSS
//! growth over the run's steady state.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Histogram of durations with linear buckets of one width from zero, and one overflow bucket;
/// count, minimum and maximum are exact. Recording is a division and atomic increments, so every
/// caller task can record into one shared histogram, and its memory is fixed when it is made
/// (the counters are written once there, so their pages are resident before the load starts).
/// Quantiles resolve to their bucket's lower edge, clamped to the exact minimum and maximum.
pub struct Histogram {
    bin_ns: u64,
    /// One counter per bucket; the last holds everything at or past the range.
    counts: Box<[AtomicU32]>,
    total: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("bin_ns", &self.bin_ns)
            .field("buckets", &self.counts.len())
            .field("count", &self.count())
            .finish()
    }
}

impl Histogram {
    /// Buckets `bin` wide (at least 1 ns) covering `0..range`, plus the overflow bucket.
    pub fn new(bin: Duration, range: Duration) -> Histogram {
        let bin_ns = (bin.as_nanos() as u64).max(1);
        let buckets = (range.as_nanos() as u64).div_ceil(bin_ns) as usize + 1;
        Histogram {
            bin_ns,
            counts: (0..buckets).map(|_| AtomicU32::new(0)).collect(),
            total: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Counts one value.
    pub fn record(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let last = self.counts.len() - 1;
        let bucket = usize::try_from(ns / self.bin_ns).map_or(last, |b| b.min(last));
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.min_ns.fetch_min(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The smallest value recorded (exact).
    pub fn min(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.min_ns.load(Ordering::Relaxed)))
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)))
    }

    /// Nearest-rank quantile (`q` in 0–1): the lower edge of the bucket holding that rank,
    /// clamped to the exact minimum and maximum (so the overflow bucket reads as the maximum).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        let (min, max) = (self.min()?, self.max()?);
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(c.load(Ordering::Relaxed));
            if seen >= rank {
                if i == self.counts.len() - 1 {
                    return Some(max);
                }
                let edge = Duration::from_nanos(i as u64 * self.bin_ns);
                return Some(edge.clamp(min, max));
            }
        }
        Some(max)
    }

    /// The counts re-binned to `bin` (rounded to a whole number of buckets, at least one) for a
    /// report, from the first non-empty bin to the last, every value shifted by `-offset_ms`
    /// (e.g. to turn voice-to-voice into the engine's share of it).
    pub fn export(&self, bin: Duration, offset_ms: f64) -> HistogramExport {
        let per = ((bin.as_nanos() as u64) / self.bin_ns).max(1) as usize;
        let last = self.counts.len() - 1;
        let mut merged: Vec<u32> = self.counts[..last]
            .chunks(per)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .fold(0u32, u32::saturating_add)
            })
            .collect();
        let first = merged.iter().position(|&c| c > 0);
        let end = merged.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        let first = first.unwrap_or(end);
        merged.truncate(end);
        merged.drain(..first);
        let bin_ms = (per as u64 * self.bin_ns) as f64 / 1e6;
        let to_ms = |d: Duration| round(d.as_secs_f64() * 1000.0 - offset_ms, 3);
        HistogramExport {
            count: self.count(),
            bin_ms: round(bin_ms, 6),
            first_ms: if merged.is_empty() {
                0.0
            } else {
                round(first as f64 * bin_ms - offset_ms, 3)
            },
            counts: merged,
            overflow: u64::from(self.counts[last].load(Ordering::Relaxed)),
            min_ms: self.min().map(to_ms),
            max_ms: self.max().map(to_ms),
        }
    }
}

/// A histogram as the report carries it: `counts[i]` values fell in
/// `[first_ms + i × bin_ms, first_ms + (i + 1) × bin_ms)`; `overflow` values lay beyond the
/// histogram's range (only `max_ms` says where).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramExport {
    /// Values recorded, overflow included.
    pub count: u64,
    /// Width of a bin (ms).
    pub bin_ms: f64,
    /// Lower edge of the first bin (ms).
    pub first_ms: f64,
    /// Values per bin, from the first non-empty bin to the last.
    pub counts: Vec<u32>,
    /// Values past the histogram's range.
    pub overflow: u64,
    /// Smallest value (ms, exact).
    pub min_ms: Option<f64>,
    /// Largest value (ms, exact).
    pub max_ms: Option<f64>,
}

/// A time series of RSS readings in fixed memory: the sampler offers one reading per `interval`
/// from the start; when `capacity` readings are held, every second one is dropped and only every
/// second reading is kept from then on, so a run of any length keeps at most `capacity` evenly
/// spaced readings.
#[derive(Clone, Debug, PartialEq)]
pub struct RssSeries {
    /// Time between two offered readings.
    base: Duration,
    /// Offered readings per kept reading (a power of two).
    stride: u32,
    capacity: usize,
    /// Reading `i` was taken `i × stride × base` after the start (KiB).
    kib: Vec<u64>,
    /// Readings offered so far.
    offered: u64,
}

impl RssSeries {
    /// An empty series for readings offered every `interval`, holding at most `capacity`
    /// (rounded up to an even number, at least 2).
    pub fn new(interval: Duration, capacity: usize) -> RssSeries {
        let capacity = capacity.max(2).next_multiple_of(2);
        RssSeries {
            base: interval,
            stride: 1,
            capacity,
            kib: Vec::with_capacity(capacity),
            offered: 0,
        }
    }

    /// The next reading (taken one interval after the previous one; the first at the start).
    pub fn push(&mut self, kib: u64) {
        let n = self.offered;
        self.offered += 1;
        if !n.is_multiple_of(u64::from(self.stride)) {
            return;
        }
        if self.kib.len() == self.capacity {
            let mut i = 0usize;
            self.kib.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = self.stride.saturating_mul(2);
            if !n.is_multiple_of(u64::from(self.stride)) {
                return;
            }
        }
        self.kib.push(kib);
    }

    /// Time between the kept readings.
    pub fn interval(&self) -> Duration {
        self.base * self.stride
    }

    /// The kept readings (KiB), `interval()` apart from the start.
    pub fn readings(&self) -> &[u64] {
        &self.kib
    }

    /// `(seconds since the start, KiB)` of every kept reading.
    pub fn points(&self) -> Vec<(f64, u64)> {
        let step = self.interval().as_secs_f64();
        self.kib
            .iter()
            .enumerate()
            .map(|(i, &k)| (i as f64 * step, k))
            .collect()
    }
}

/// RSS over the steady state of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RssGrowth {
    /// The window measured, seconds from the start of the load: `[from, to]`.
    pub window_s: [f64; 2],
    /// First reading in the window (KiB).
    pub start_kib: u64,
    /// Last reading in the window (KiB).
    pub end_kib: u64,
    /// Largest reading in the window (KiB).
    pub max_kib: u64,
    /// `(end − start) / start`, percent.
    pub growth_pct: f64,
    /// `(max − start) / start`, percent.
    pub max_growth_pct: f64,
    /// Least-squares slope of the readings in the window (KiB per minute).
    pub slope_kib_per_min: f64,
}

/// The steady state of a run of `seconds` whose calls have all been answered `answered` seconds
/// in and then need `warm_up` seconds to go through every step of a conversation: from 10 %
/// into the run or the end of the warm-up, whichever is later, to the end; `None` when under
/// 5 s would be left.
pub fn steady_window(seconds: f64, answered: f64, warm_up: f64) -> Option<(f64, f64)> {
    let from = (0.1 * seconds).max(answered + warm_up);
    (seconds - from >= 5.0).then_some((from, seconds))
}

/// The RSS growth over `[from, to]` seconds of `points` (`(seconds, KiB)`, in time order):
/// `None` when the window holds fewer than two readings or starts at zero RSS.
pub fn steady_growth(points: &[(f64, u64)], from: f64, to: f64) -> Option<RssGrowth> {
    let window: Vec<(f64, u64)> = points
        .iter()
        .copied()
        .filter(|&(t, _)| t >= from && t <= to)
        .collect();
    let (&(t0, start), &(t1, end)) = (window.first()?, window.last()?);
    if window.len() < 2 || start == 0 {
        return None;
    }
    let max = window.iter().map(|p| p.1).max().unwrap_or(start);
    let pct = |v: u64| round((v as f64 - start as f64) / start as f64 * 100.0, 2);
    let n = window.len() as f64;
    let mean_t = window.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_k = window.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(t, k) in &window {
        sxy += (t - mean_t) * (k as f64 - mean_k);
        sxx += (t - mean_t) * (t - mean_t);
    }
    let slope = if sxx > 0.0 { sxy / sxx * 60.0 } else { 0.0 };
    Some(RssGrowth {
        window_s: [round(t0, 2), round(t1, 2)],
        start_kib: start,
        end_kib: end,
        max_kib: max,
        growth_pct: pct(end),
        max_growth_pct: pct(max),
        slope_kib_per_min: round(slope, 1),
    })
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_nanos((v * 1e6).round() as u64)
    }

    #[test]
    fn histogram_quantiles_resolve_to_the_bucket_and_the_exact_extremes() {
        let h = Histogram::new(ms(0.1), ms(1000.0));
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
        for v in 1..=100 {
            h.record(ms(f64::from(v) + 0.04));
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.min(), Some(ms(1.04)));
        assert_eq!(h.max(), Some(ms(100.04)));
        // Rank 50 is 50.04 ms: bucket [50.0, 50.1).
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1000.0;
        assert!((p50 - 50.0).abs() < 1e-6, "{p50}");
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1000.0;
        assert!((p99 - 99.0).abs() < 1e-6, "{p99}");
        // The lowest rank's bucket edge (1.0) is clamped up to the exact minimum.
        assert_eq!(h.quantile(0.0), Some(ms(1.04)));
        assert_eq!(h.quantile(1.0), Some(ms(100.0)));
    }

    #[test]
    fn histogram_values_past_the_range_overflow_and_read_as_the_maximum() {
        let h = Histogram::new(ms(1.0), ms(10.0));
        h.record(ms(5.5));
        h.record(ms(50.0));
        h.record(ms(70.0));
        assert_eq!(h.quantile(0.5), Some(ms(70.0)));
        assert_eq!(h.quantile(0.2), Some(ms(5.5)));
        let e = h.export(ms(1.0), 0.0);
        assert_eq!(e.count, 3);
        assert_eq!(e.overflow, 2);
        assert_eq!(e.counts, vec![1]);
        assert_eq!(e.first_ms, 5.0);
        assert_eq!(e.max_ms, Some(70.0));
    }

    #[test]
    fn histogram_export_rebins_trims_and_shifts() {
        let h = Histogram::new(ms(0.1), ms(100.0));
        for v in [20.01, 20.3, 20.6, 22.9, 22.95] {
            h.record(ms(v));
        }
        let e = h.export(ms(0.5), 0.0);
        assert_eq!(e.bin_ms, 0.5);
        assert_eq!(e.first_ms, 20.0);
        // [20.0, 20.5): 2; [20.5, 21.0): 1; 21.0–22.5 empty; [22.5, 23.0): 2.
        assert_eq!(e.counts, vec![2, 1, 0, 0, 0, 2]);
        assert_eq!(e.counts.iter().map(|&c| u64::from(c)).sum::<u64>(), e.count);
        let shifted = h.export(ms(0.5), 20.0);
        assert_eq!(shifted.first_ms, 0.0);
        assert_eq!(shifted.counts, e.counts);
        assert_eq!(shifted.min_ms, Some(0.01));
        assert_eq!(shifted.max_ms, Some(2.95));
        let empty = Histogram::new(ms(0.1), ms(10.0)).export(ms(0.5), 0.0);
        assert!(empty.counts.is_empty());
        assert_eq!((empty.count, empty.min_ms), (0, None));
    }

    #[test]
    fn histogram_is_shared_between_threads() {
        let h = std::sync::Arc::new(Histogram::new(ms(1.0), ms(100.0)));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for v in 0..1000 {
                        h.record(ms(f64::from(v % 50 + t)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 4000);
        assert_eq!(h.export(ms(1.0), 0.0).counts.len(), 53);
    }

    #[test]
    fn rss_series_keeps_every_reading_until_full_then_halves_its_resolution() {
        let mut s = RssSeries::new(Duration::from_secs(1), 4);
        for k in 0..4 {
            s.push(100 + k);
        }
        assert_eq!(s.readings(), &[100, 101, 102, 103]);
        assert_eq!(s.interval(), Duration::from_secs(1));
        // Full: readings 0 and 2 stay, 4 joins them, 5 is skipped, 6 joins.
        s.push(104);
        assert_eq!(s.readings(), &[100, 102, 104]);
        assert_eq!(s.interval(), Duration::from_secs(2));
        s.push(105);
        s.push(106);
        assert_eq!(s.readings(), &[100, 102, 104, 106]);
        for k in 7..=16 {
            s.push(100 + k);
        }
        // 17 readings in 4 slots: every 4th, then every 8th… the times stay exact.
        let points = s.points();
        assert!(points.len() <= 4);
        for (t, kib) in points {
            assert_eq!(kib, 100 + t as u64, "reading at {t} s");
        }
    }

    #[test]
    fn rss_series_of_a_long_run_stays_within_its_capacity() {
        let mut s = RssSeries::new(Duration::from_secs(1), 1024);
        for k in 0..36_000u64 {
            s.push(k);
        }
        assert!(s.readings().len() <= 1024 && s.readings().len() > 512);
        assert_eq!(s.interval(), Duration::from_secs(64));
        assert!(s.points().iter().all(|&(t, kib)| kib == t as u64));
    }

    #[test]
    fn steady_growth_reads_the_window_only() {
        // A ramp to 20 s (calls starting), then flat with one bump.
        let mut points: Vec<(f64, u64)> = (0..=20u32)
            .map(|t| (f64::from(t), 1000 * u64::from(t)))
            .collect();
        points.extend((21..=100u32).map(|t| (f64::from(t), if t == 65 { 21_000 } else { 20_000 })));
        let g = steady_growth(&points, 30.0, 100.0).unwrap();
        assert_eq!(g.window_s, [30.0, 100.0]);
        assert_eq!(
            (g.start_kib, g.end_kib, g.max_kib),
            (20_000, 20_000, 21_000)
        );
        assert_eq!(g.growth_pct, 0.0);
        assert_eq!(g.max_growth_pct, 5.0);
        assert!(g.slope_kib_per_min.abs() < 5.0, "{}", g.slope_kib_per_min);
    }

    #[test]
    fn steady_growth_measures_a_leak() {
        // 10 KiB per second on 10 000 KiB: 600 KiB per minute, +6 % over the minute.
        let points: Vec<(f64, u64)> = (0..=60u32)
            .map(|t| (f64::from(t), 10_000 + 10 * u64::from(t)))
            .collect();
        let g = steady_growth(&points, 0.0, 60.0).unwrap();
        assert_eq!(g.growth_pct, 6.0);
        assert_eq!(g.max_growth_pct, 6.0);
        assert_eq!(g.slope_kib_per_min, 600.0);
    }

    #[test]
    fn the_steady_window_starts_after_the_warm_up_or_a_tenth_of_the_run() {
        // 10-minute run: a tenth of it is longer than answering and warming up.
        assert_eq!(steady_window(600.0, 8.0, 15.0), Some((60.0, 600.0)));
        // A minute: the warm-up decides.
        assert_eq!(steady_window(60.0, 8.0, 15.0), Some((23.0, 60.0)));
        // 20 s: nothing steady to measure.
        assert_eq!(steady_window(20.0, 8.0, 15.0), None);
        assert_eq!(steady_window(28.0, 8.0, 15.0), Some((23.0, 28.0)));
    }

    #[test]
    fn steady_growth_needs_two_readings() {
        assert_eq!(steady_growth(&[], 0.0, 10.0), None);
        assert_eq!(steady_growth(&[(5.0, 100)], 0.0, 10.0), None);
        assert_eq!(steady_growth(&[(1.0, 100), (20.0, 100)], 2.0, 10.0), None);
        assert_eq!(steady_growth(&[(1.0, 0), (2.0, 100)], 0.0, 10.0), None);
    }
}
