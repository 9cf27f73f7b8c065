//! Plots of load harness runs: reads the JSON reports that `examples/load.rs` prints and writes
//! SVG charts.
//!
//! ```sh
//! cargo run --release --example load_plot                          # benches/results/ → benches/plots/
//! cargo run --release --example load_plot -- --out /tmp/plots run1.json run2.json some/dir/
//! ```
//!
//! Inputs are report files or folders of them (every `*.json` inside; default
//! `benches/results/`); `scripts/load_sweep.sh` fills that folder. Reports of `--scaling` runs
//! are skipped. Charts, written to `--out` (default `benches/plots/`), one set per codec present:
//!
//! - `cpu_<codec>.svg`: the engine runtime's CPU per call-second (ms) against the number of
//!   concurrent calls, with the codec floor measured in the same runs (codec, resampler and VAD
//!   alone) and the engine-to-floor ratio at each point; runs with deadline misses are marked.
//!   Several runs at the same N are all drawn; the lines join their means.
//! - `v2v_engine_<codec>.svg`, `v2v_total_<codec>.svg`: the distribution (cumulative share of
//!   turns) of the engine's share of voice-to-voice and of voice-to-voice on the wire, one line
//!   per run, from the report's `latency_histograms`; the engine-share chart marks the 25 ms
//!   target.
//! - `barge_in_<codec>.svg`: barge-in on the wire relative to the engine's decision point, one
//!   line per run, with the 40 ms target.
//! - `rss_<report file name>.svg`: RSS over time for every run of at least `--rss-min-seconds`
//!   (default 60; 0 plots every run), with the steady-state window the report's growth figure
//!   covers and the +5 % line above its start.
//!
//! Reports written before the RSS series and latency histograms existed still give the CPU
//! chart. Exit status: 0 = charts written, 2 = bad command line, 3 = no usable report or a chart
//! could not be written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::prelude::*;
use serde::Deserialize;

/// The engine's share of voice-to-voice that issue 7 aims for (p99, ms).
const ENGINE_SHARE_TARGET_MS: f64 = 25.0;
/// Barge-in after the decision point that issue 7 aims for (p99, ms).
const BARGE_IN_TARGET_MS: f64 = 40.0;
/// RSS growth over the steady state that issue 7 allows (%).
const RSS_GROWTH_LIMIT_PCT: f64 = 5.0;
/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";
/// Colours of the runs on a distribution chart, in order (no red: red marks targets).
const SERIES_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

const USAGE: &str = "\
Plots load harness reports (examples/load.rs JSON) as SVG charts.

Usage: cargo run --release --example load_plot -- [OPTIONS] [FILE.json | DIR]...

Inputs: report files, or folders whose *.json files are reports [default: benches/results]

Options:
  --out DIR               where the SVG files go [default: benches/plots]
  --rss-min-seconds S     RSS-over-time charts for runs of at least S seconds, 0 = every run
                          [default: 60]
  -h, --help              print this text
";

// ---------------------------------------------------------------------------------------------
// Reports

/// The parts of a harness report the charts use.
#[derive(Clone, Debug, Deserialize, PartialEq)]
struct Report {
    calls: usize,
    seconds: u64,
    codec: String,
    cpu_per_call_second: f64,
    codec_floor_cpu_per_call_second: f64,
    deadline_misses: u64,
    #[serde(default)]
    rss_sample_interval_s: Option<f64>,
    #[serde(default)]
    rss_samples_kib: Vec<u64>,
    #[serde(default)]
    rss_steady: Option<RssSteady>,
    #[serde(default)]
    latency_histograms: Option<LatencyHistograms>,
}

/// `rss_steady` of a report.
#[derive(Clone, Debug, Deserialize, PartialEq)]
struct RssSteady {
    window_s: [f64; 2],
    start_kib: u64,
    growth_pct: f64,
    max_growth_pct: f64,
}

/// `latency_histograms` of a report.
#[derive(Clone, Debug, Deserialize, PartialEq)]
struct LatencyHistograms {
    v2v_ms: Hist,
    v2v_engine_ms: Hist,
    barge_in_after_decision_ms: Hist,
}

/// One histogram of a report: `counts[i]` values in `[first_ms + i × bin_ms, … + bin_ms)`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
struct Hist {
    count: u64,
    bin_ms: f64,
    first_ms: f64,
    counts: Vec<u64>,
}

impl Hist {
    /// Values inside the histogram's bins (the rest overflowed its range).
    fn binned(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Cumulative share of all values (overflow included) at each bin edge, from
    /// `(first_ms, 0)`: a line through these points is the distribution function.
    fn cdf(&self) -> Vec<(f64, f64)> {
        if self.count == 0 {
            return Vec::new();
        }
        let mut seen = 0u64;
        let mut points = Vec::with_capacity(self.counts.len() + 1);
        points.push((self.first_ms, 0.0));
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            let edge = self.first_ms + (i + 1) as f64 * self.bin_ms;
            points.push((edge, seen as f64 / self.count as f64));
        }
        points
    }

    /// Nearest-rank quantile: the upper edge of the bin holding that rank; `None` when the
    /// rank lies past the bins (overflow) or there are no values.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(self.first_ms + (i + 1) as f64 * self.bin_ms);
            }
        }
        None
    }
}

/// A report read from a file.
#[derive(Clone, Debug)]
struct Run {
    /// The file's name without `.json`.
    name: String,
    report: Report,
}

/// Parses one harness report; `Ok(None)` for a `--scaling` report (two runs at one N).
fn parse_report(text: &str) -> Result<Option<Report>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if value.get("mode").and_then(|m| m.as_str()) == Some("scaling") {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The `*.json` files among `inputs` (files as given, folders' files sorted by name).
fn report_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| format!("{}: {e}", input.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Reads every report, warning about files that are not reports.
fn load_runs(files: &[PathBuf]) -> Vec<Run> {
    let mut runs = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("load_plot: skipping {}: {e}", file.display());
                continue;
            }
        };
        match parse_report(&text) {
            Ok(Some(report)) => runs.push(Run {
                name: file
                    .file_stem()
                    .map_or_else(|| "run".into(), |s| s.to_string_lossy().into_owned()),
                report,
            }),
            Ok(None) => eprintln!("load_plot: skipping {}: a --scaling report", file.display()),
            Err(e) => eprintln!(
                "load_plot: skipping {}: not a load report ({e})",
                file.display()
            ),
        }
    }
    runs
}

// ---------------------------------------------------------------------------------------------
// Chart data

/// One point of the CPU chart: a run's N and its costs in ms per call-second.
#[derive(Clone, Debug, PartialEq)]
struct CpuPoint {
    calls: usize,
    engine_ms: f64,
    floor_ms: f64,
    deadline_misses: u64,
}

/// The CPU chart's points of one codec, by N, and the mean engine and floor cost per N.
fn cpu_points(runs: &[Run], codec: &str) -> (Vec<CpuPoint>, Vec<(usize, f64, f64)>) {
    let mut points: Vec<CpuPoint> = runs
        .iter()
        .filter(|r| r.report.codec == codec)
        .map(|r| CpuPoint {
            calls: r.report.calls,
            engine_ms: r.report.cpu_per_call_second * 1000.0,
            floor_ms: r.report.codec_floor_cpu_per_call_second * 1000.0,
            deadline_misses: r.report.deadline_misses,
        })
        .collect();
    points.sort_by_key(|p| p.calls);
    let mut by_n: BTreeMap<usize, (f64, f64, usize)> = BTreeMap::new();
    for p in &points {
        let e = by_n.entry(p.calls).or_default();
        e.0 += p.engine_ms;
        e.1 += p.floor_ms;
        e.2 += 1;
    }
    let means = by_n
        .into_iter()
        .map(|(n, (e, f, k))| (n, e / k as f64, f / k as f64))
        .collect();
    (points, means)
}

/// The codecs present, in a fixed order (Opus first).
fn codecs(runs: &[Run]) -> Vec<String> {
    let mut codecs: Vec<String> = runs.iter().map(|r| r.report.codec.clone()).collect();
    codecs.sort_by_key(|c| (c != "opus", c.clone()));
    codecs.dedup();
    codecs
}

/// How a codec is named on a chart.
fn codec_title(codec: &str) -> String {
    match codec {
        "opus" => "Opus".to_string(),
        "pcmu" => "G.711 µ-law".to_string(),
        other => other.to_string(),
    }
}

/// The legend label of a run among `peers` (the runs on the same chart): its N, and its length
/// when the peers' lengths differ.
fn run_label(run: &Run, peers: &[&Run]) -> String {
    let same_length = peers.iter().all(|p| p.report.seconds == run.report.seconds);
    if same_length {
        format!("N = {}", run.report.calls)
    } else {
        format!("N = {}, {} s", run.report.calls, run.report.seconds)
    }
}

/// A range around `lo..hi` with some room at both ends (and a non-empty one for a single value).
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let span = (hi - lo).max(hi.abs() * 0.1).max(1.0);
    (lo - span * 0.05)..(hi + span * 0.05)
}

// ---------------------------------------------------------------------------------------------
// Charts

type ChartResult<T> = Result<T, Box<dyn std::error::Error>>;

/// `cpu_<codec>.svg`.
fn plot_cpu(runs: &[Run], codec: &str, path: &Path) -> ChartResult<()> {
    let (points, means) = cpu_points(runs, codec);
    let max_n = points.iter().map(|p| p.calls).max().unwrap_or(1) as f64;
    let max_ms = points
        .iter()
        .map(|p| p.engine_ms.max(p.floor_ms))
        .fold(0.0, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: CPU per call-second against concurrent calls",
                codec_title(codec)
            ),
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..(max_n * 1.08).max(10.0), 0.0..max_ms * 1.25)?;
    chart
        .configure_mesh()
        .x_desc("concurrent calls (N)")
        .y_desc("CPU ms per call-second")
        .x_label_formatter(&|n| format!("{n:.0}"))
        .light_line_style(BLACK.mix(0.04))
        .label_style((FONT, 14))
        .draw()?;
    let engine = BLUE.stroke_width(2);
    chart
        .draw_series(LineSeries::new(
            means.iter().map(|&(n, e, _)| (n as f64, e)),
            engine,
        ))?
        .label("engine (runtime threads: media, VAD, turn logic, stand-in providers)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], engine));
    chart.draw_series(
        points
            .iter()
            .map(|p| Circle::new((p.calls as f64, p.engine_ms), 4, BLUE.filled())),
    )?;
    let floor = ShapeStyle::from(&BLACK).stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(
            means.iter().map(|&(n, _, f)| (n as f64, f)),
            8,
            5,
            floor,
        ))?
        .label("codec floor (RTP parse, codec, resampler, VAD alone)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], floor));
    chart.draw_series(
        points
            .iter()
            .map(|p| TriangleMarker::new((p.calls as f64, p.floor_ms), 5, BLACK.filled())),
    )?;
    chart.draw_series(points.iter().filter(|p| p.floor_ms > 0.0).map(|p| {
        EmptyElement::at((p.calls as f64, p.engine_ms))
            + Text::new(
                format!("{:.2}×", p.engine_ms / p.floor_ms),
                (-12, -22),
                (FONT, 13),
            )
    }))?;
    if points.iter().any(|p| p.deadline_misses > 0) {
        let missed = RED.stroke_width(2);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.deadline_misses > 0)
                    .map(|p| Cross::new((p.calls as f64, p.engine_ms), 8, missed)),
            )?
            .label("run with deadline misses (frames > 10 ms late)")
            .legend(move |(x, y)| Cross::new((x + 10, y), 6, missed));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Which distribution a latency chart shows.
#[derive(Clone, Copy)]
enum Latency {
    EngineShare,
    Total,
    BargeIn,
}

impl Latency {
    fn hist(self, h: &LatencyHistograms) -> &Hist {
        match self {
            Latency::EngineShare => &h.v2v_engine_ms,
            Latency::Total => &h.v2v_ms,
            Latency::BargeIn => &h.barge_in_after_decision_ms,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Latency::EngineShare => "engine's share of voice-to-voice",
            Latency::Total => "voice-to-voice on the wire",
            Latency::BargeIn => "barge-in after the engine's decision point",
        }
    }

    fn x_desc(self) -> &'static str {
        match self {
            Latency::EngineShare => "engine's share (ms): wire voice-to-voice − nominal path",
            Latency::Total => "caller's last speech packet → first audible agent packet (ms)",
            Latency::BargeIn => "agent silent at the caller, after the decision point (ms)",
        }
    }

    fn target(self) -> Option<f64> {
        match self {
            Latency::EngineShare => Some(ENGINE_SHARE_TARGET_MS),
            Latency::Total => None,
            Latency::BargeIn => Some(BARGE_IN_TARGET_MS),
        }
    }
}

/// A latency distribution chart of one codec; false when no run has samples.
fn plot_latency(runs: &[Run], codec: &str, which: Latency, path: &Path) -> ChartResult<bool> {
    let mut peers: Vec<&Run> = runs
        .iter()
        .filter(|r| r.report.codec == codec)
        .filter(|r| {
            r.report
                .latency_histograms
                .as_ref()
                .is_some_and(|h| which.hist(h).binned() > 0)
        })
        .collect();
    peers.sort_by_key(|r| (r.report.calls, r.report.seconds));
    let series: Vec<(&Run, Vec<(f64, f64)>)> = peers
        .iter()
        .filter_map(|r| {
            let h = which.hist(r.report.latency_histograms.as_ref()?);
            Some((*r, h.cdf()))
        })
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    let lo = series
        .iter()
        .filter_map(|(_, c)| c.first().map(|p| p.0))
        .fold(f64::INFINITY, f64::min);
    let mut hi = series
        .iter()
        .filter_map(|(_, c)| c.last().map(|p| p.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let target = which.target();
    if let Some(t) = target {
        hi = hi.max(t);
    }
    let x_range = padded(lo.min(target.unwrap_or(lo)), hi);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: {}", codec_title(codec), which.title()),
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), 0.0..1.02)?;
    chart
        .configure_mesh()
        .x_desc(which.x_desc())
        .y_desc("share of samples at or below")
        .light_line_style(BLACK.mix(0.04))
        .label_style((FONT, 14))
        .draw()?;
    let p99 = ShapeStyle::from(&BLACK.mix(0.4)).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(
            [(x_range.start, 0.99), (x_range.end, 0.99)],
            4,
            4,
            p99,
        ))?
        .label("99 %")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], p99));
    if let Some(t) = target {
        let style = RED.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(t, 0.0), (t, 1.02)], 8, 5, style))?
            .label(format!("target: p99 ≤ {t} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    let names: Vec<&Run> = series.iter().map(|(r, _)| *r).collect();
    for (i, (run, cdf)) in series.iter().enumerate() {
        let style = SERIES_COLORS[i % SERIES_COLORS.len()].stroke_width(2);
        let h = run
            .report
            .latency_histograms
            .as_ref()
            .map(|h| which.hist(h));
        let stat = |q: f64| {
            h.and_then(|h| h.quantile(q))
                .map_or("—".to_string(), |v| format!("{v:.1}"))
        };
        let label = format!(
            "{} ({} samples, p50 {} / p99 {} ms)",
            run_label(run, &names),
            h.map_or(0, |h| h.count),
            stat(0.5),
            stat(0.99)
        );
        chart
            .draw_series(LineSeries::new(cdf.iter().copied(), style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

/// `rss_<name>.svg`: one run's RSS readings over time; false when it has too few readings.
fn plot_rss(run: &Run, path: &Path) -> ChartResult<bool> {
    let report = &run.report;
    let step = report.rss_sample_interval_s.unwrap_or(1.0);
    if report.rss_samples_kib.len() < 2 {
        return Ok(false);
    }
    let points: Vec<(f64, f64)> = report
        .rss_samples_kib
        .iter()
        .enumerate()
        .map(|(i, &k)| (i as f64 * step, k as f64 / 1024.0))
        .collect();
    let t_max = points.last().map_or(1.0, |p| p.0).max(1.0);
    let limit = report
        .rss_steady
        .as_ref()
        .map(|s| s.start_kib as f64 / 1024.0 * (1.0 + RSS_GROWTH_LIMIT_PCT / 100.0));
    let y_max = points
        .iter()
        .map(|p| p.1)
        .fold(limit.unwrap_or(0.0), f64::max);
    let growth = report.rss_steady.as_ref().map_or_else(
        || "no steady window".to_string(),
        |s| {
            format!(
                "steady state {:+.2} % (peak {:+.2} %)",
                s.growth_pct, s.max_growth_pct
            )
        },
    );
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "RSS: {} {} calls for {} s, {growth}",
                report.calls,
                codec_title(&report.codec),
                report.seconds
            ),
            (FONT, 20),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first call started")
        .y_desc("process RSS (MiB)")
        .x_label_formatter(&|t| format!("{t:.0}"))
        .light_line_style(BLACK.mix(0.04))
        .label_style((FONT, 14))
        .draw()?;
    if let Some(s) = &report.rss_steady {
        let [from, to] = s.window_s;
        let shade = BLUE.mix(0.08).filled();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from, 0.0), (to, y_max * 1.15)],
                shade,
            )))?
            .label("steady-state window (growth measured over it)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade));
    }
    if let Some(limit) = limit {
        let style = RED.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, limit), (t_max, limit)],
                8,
                5,
                style,
            ))?
            .label(format!(
                "+{RSS_GROWTH_LIMIT_PCT} % over the window's first reading"
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    let line = BLUE.stroke_width(2);
    chart
        .draw_series(LineSeries::new(points, line))?
        .label(format!("RSS, one reading per {step} s"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Command line

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Options {
    inputs: Vec<PathBuf>,
    out: PathBuf,
    rss_min_seconds: u64,
}

/// Parses the command line (without the program name); `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        inputs: Vec::new(),
        out: PathBuf::from("benches/plots"),
        rss_min_seconds: 60,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--out" => options.out = args.next().ok_or("--out needs a folder")?.into(),
            "--rss-min-seconds" => {
                let v = args.next().ok_or("--rss-min-seconds needs a number")?;
                options.rss_min_seconds = v
                    .parse()
                    .map_err(|_| format!("--rss-min-seconds: `{v}` is not a number of seconds"))?;
            }
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            path => options.inputs.push(path.into()),
        }
    }
    if options.inputs.is_empty() {
        options.inputs.push("benches/results".into());
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("load_plot: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    let runs = match report_files(&options.inputs) {
        Ok(files) => load_runs(&files),
        Err(e) => {
            eprintln!("load_plot: {e}");
            return ExitCode::from(3);
        }
    };
    if runs.is_empty() {
        eprintln!("load_plot: no load report among the inputs");
        return ExitCode::from(3);
    }
    match write_charts(&runs, &options) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load_plot: {e}");
            ExitCode::from(3)
        }
    }
}

/// Writes every chart the runs allow; returns the files written.
fn write_charts(runs: &[Run], options: &Options) -> ChartResult<Vec<PathBuf>> {
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("creating {}: {e}", options.out.display()))?;
    let mut written = Vec::new();
    for codec in codecs(runs) {
        let path = options.out.join(format!("cpu_{codec}.svg"));
        plot_cpu(runs, &codec, &path)?;
        written.push(path);
        for (which, name) in [
            (Latency::EngineShare, "v2v_engine"),
            (Latency::Total, "v2v_total"),
            (Latency::BargeIn, "barge_in"),
        ] {
            let path = options.out.join(format!("{name}_{codec}.svg"));
            if plot_latency(runs, &codec, which, &path)? {
                written.push(path);
            }
        }
    }
    for run in runs
        .iter()
        .filter(|r| r.report.seconds >= options.rss_min_seconds)
    {
        let path = options.out.join(format!("rss_{}.svg", run.name));
        if plot_rss(run, &path)? {
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{
      "command": "cargo run --release --example load -- --calls 50",
      "calls": 50, "seconds": 20, "codec": "opus",
      "cpu_per_call_second": 0.006651, "codec_floor_cpu_per_call_second": 0.004538,
      "deadline_misses": 0, "rss_growth_pct": 1.5,
      "rss_steady": {"window_s": [3.0, 20.0], "start_kib": 20000, "end_kib": 20300,
                     "max_kib": 20400, "growth_pct": 1.5, "max_growth_pct": 2.0,
                     "slope_kib_per_min": 900.0},
      "rss_sample_interval_s": 1.0, "rss_samples_kib": [5000, 15000, 20000, 20300],
      "latency_histograms": {
        "v2v_ms": {"count": 4, "bin_ms": 0.5, "first_ms": 870.0, "counts": [1, 0, 2, 1],
                   "overflow": 0, "min_ms": 870.1, "max_ms": 871.9},
        "v2v_engine_ms": {"count": 4, "bin_ms": 0.5, "first_ms": 50.0, "counts": [1, 0, 2, 1],
                          "overflow": 0, "min_ms": 50.1, "max_ms": 51.9},
        "barge_in_ms": {"count": 0, "bin_ms": 0.5, "first_ms": 0.0, "counts": [],
                        "overflow": 0, "min_ms": null, "max_ms": null},
        "barge_in_after_decision_ms": {"count": 0, "bin_ms": 0.5, "first_ms": 0.0,
                                       "counts": [], "overflow": 0, "min_ms": null,
                                       "max_ms": null},
        "v2v_engine_reported_ms": {"count": 0, "bin_ms": 1.0, "first_ms": 0.0, "counts": [],
                                   "overflow": 0, "min_ms": null, "max_ms": null}
      },
      "some_future_field": [1, 2, 3]
    }"#;

    fn run(calls: usize, codec: &str, engine: f64, floor: f64, misses: u64) -> Run {
        let mut report = parse_report(REPORT).unwrap().unwrap();
        report.calls = calls;
        report.codec = codec.to_string();
        report.cpu_per_call_second = engine;
        report.codec_floor_cpu_per_call_second = floor;
        report.deadline_misses = misses;
        Run {
            name: format!("{codec}-{calls}"),
            report,
        }
    }

    #[test]
    fn a_report_parses_with_its_series_and_histograms() {
        let r = parse_report(REPORT).unwrap().unwrap();
        assert_eq!((r.calls, r.seconds, r.codec.as_str()), (50, 20, "opus"));
        assert_eq!(r.rss_samples_kib, vec![5000, 15000, 20000, 20300]);
        assert_eq!(r.rss_steady.as_ref().unwrap().window_s, [3.0, 20.0]);
        let h = r.latency_histograms.unwrap();
        assert_eq!(h.v2v_engine_ms.counts, vec![1, 0, 2, 1]);
        assert_eq!(h.barge_in_after_decision_ms.count, 0);
    }

    #[test]
    fn older_reports_parse_without_series_and_scaling_reports_are_skipped() {
        let old = r#"{"calls": 150, "seconds": 20, "codec": "pcmu",
            "cpu_per_call_second": 0.0013, "codec_floor_cpu_per_call_second": 0.0001,
            "deadline_misses": 3, "rss_growth_pct": null}"#;
        let r = parse_report(old).unwrap().unwrap();
        assert!(r.rss_samples_kib.is_empty());
        assert_eq!(r.latency_histograms, None);
        let scaling = r#"{"mode": "scaling", "calls": 50, "runs": []}"#;
        assert_eq!(parse_report(scaling), Ok(None));
        assert!(parse_report("{\"calls\": 1}").is_err());
        assert!(parse_report("not json").is_err());
    }

    #[test]
    fn the_cdf_rises_to_the_share_inside_the_bins() {
        let h = Hist {
            count: 5,
            bin_ms: 0.5,
            first_ms: 50.0,
            counts: vec![1, 0, 2, 1],
        };
        // One value overflowed the histogram: the line ends at 4/5.
        assert_eq!(
            h.cdf(),
            vec![
                (50.0, 0.0),
                (50.5, 0.2),
                (51.0, 0.2),
                (51.5, 0.6),
                (52.0, 0.8)
            ]
        );
        assert_eq!(h.quantile(0.5), Some(51.5));
        assert_eq!(h.quantile(0.0), Some(50.5));
        assert_eq!(h.quantile(0.8), Some(52.0));
        assert_eq!(h.quantile(0.99), None);
        let empty = Hist {
            count: 0,
            bin_ms: 0.5,
            first_ms: 0.0,
            counts: vec![],
        };
        assert!(empty.cdf().is_empty());
        assert_eq!(empty.quantile(0.5), None);
    }

    #[test]
    fn cpu_points_are_per_codec_sorted_with_means_per_n() {
        let runs = vec![
            run(150, "opus", 0.006, 0.0045, 0),
            run(50, "opus", 0.007, 0.0045, 0),
            run(150, "opus", 0.008, 0.0047, 2),
            run(500, "pcmu", 0.0013, 0.0001, 0),
        ];
        let (points, means) = cpu_points(&runs, "opus");
        assert_eq!(
            points.iter().map(|p| p.calls).collect::<Vec<_>>(),
            [50, 150, 150]
        );
        assert_eq!(points[2].deadline_misses, 2);
        assert_eq!(means.len(), 2);
        assert_eq!(means[1].0, 150);
        assert!((means[1].1 - 7.0).abs() < 1e-9);
        assert!((means[1].2 - 4.6).abs() < 1e-9);
        assert_eq!(codecs(&runs), ["opus", "pcmu"]);
    }

    #[test]
    fn labels_name_the_length_only_when_runs_differ() {
        let a = run(150, "opus", 0.006, 0.0045, 0);
        let mut b = run(150, "opus", 0.006, 0.0045, 0);
        assert_eq!(run_label(&a, &[&a, &b]), "N = 150");
        b.report.seconds = 600;
        assert_eq!(run_label(&b, &[&a, &b]), "N = 150, 600 s");
    }

    #[test]
    fn command_line() {
        let o = parse_args(Vec::<String>::new()).unwrap().unwrap();
        assert_eq!(o.inputs, [PathBuf::from("benches/results")]);
        assert_eq!(o.out, PathBuf::from("benches/plots"));
        assert_eq!(o.rss_min_seconds, 60);
        let args = ["--out", "/tmp/p", "a.json", "--rss-min-seconds", "0", "dir"];
        let o = parse_args(args.map(String::from)).unwrap().unwrap();
        assert_eq!(o.inputs, [PathBuf::from("a.json"), PathBuf::from("dir")]);
        assert_eq!((o.out, o.rss_min_seconds), (PathBuf::from("/tmp/p"), 0));
        assert_eq!(parse_args(["--help".to_string()]), Ok(None));
        assert!(parse_args(["--bogus".to_string()]).is_err());
        assert!(parse_args(["--rss-min-seconds".to_string(), "x".to_string()]).is_err());
    }

    #[test]
    fn charts_are_written_as_svg() {
        let dir = std::env::temp_dir().join(format!("load_plot_test_{}", std::process::id()));
        let runs = vec![
            run(1, "opus", 0.011, 0.0047, 0),
            run(50, "opus", 0.007, 0.0045, 0),
            run(500, "pcmu", 0.0013, 0.0001, 4),
        ];
        let options = Options {
            inputs: vec![],
            out: dir.clone(),
            rss_min_seconds: 0,
        };
        let written = write_charts(&runs, &options).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in [
            "cpu_opus.svg",
            "v2v_engine_opus.svg",
            "v2v_total_opus.svg",
            "cpu_pcmu.svg",
            "rss_opus-50.svg",
        ] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
        // No barge-in samples in these reports: no barge-in chart.
        assert!(
            !names.iter().any(|n| n.starts_with("barge_in")),
            "{names:?}"
        );
        let svg = std::fs::read_to_string(dir.join("cpu_opus.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("codec floor"));
        assert!(!svg.contains("deadline misses"));
        let svg = std::fs::read_to_string(dir.join("cpu_pcmu.svg")).unwrap();
        assert!(svg.contains("deadline misses"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
