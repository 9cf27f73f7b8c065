//! A short run of the load harness (`examples/load.rs`) in-process: a few calls over real UDP on
//! 127.0.0.1 for a few seconds. Asserts that everything runs and the counters are plausible —
//! never timing, which depends on the machine's load.

#[path = "../examples/common/cpu.rs"]
mod cpu;
#[path = "../examples/load/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::{CallerVoice, CliError, Codec, Command, LoadConfig, RuntimeKind};
use voxline::engine::call::HistoryLimit;
use voxline::engine::media_clock::ClockSource;
use voxline::engine::workers::ThreadPriority;

fn smoke(codec: Codec, runtime: RuntimeKind, clock: ClockSource) -> LoadConfig {
    LoadConfig {
        engine_runtime: runtime,
        media_clock: clock,
        calls: 3,
        seconds: 3,
        codec,
        threads: 2,
        stagger: Duration::from_millis(100),
        answer_spread: Duration::from_millis(300),
        voice: CallerVoice::Synthetic,
        floor_frames: Some(100),
        ..LoadConfig::default()
    }
}

/// `clock` is what the report should name: the source the calls used.
fn check(codec: Codec, runtime: RuntimeKind, source: ClockSource, clock: &str) {
    let report = harness::run(&smoke(codec, runtime, source)).expect("the harness runs");
    assert_eq!(report.calls, 3);
    assert_eq!(report.codec, codec.name());
    assert_eq!(report.engine_runtime, runtime.name());
    assert_eq!(report.media_clock, clock);
    assert_eq!(report.calls_completed, 3, "{:?}", report.end_reasons);
    // About 150 caller frames per call; the jitter buffer holds back a few.
    assert!(
        report.frames_in >= 3 * 50 && report.frames_in <= 3 * 200,
        "frames in {}",
        report.frames_in
    );
    // The greeting plays for most of the call.
    assert!(
        report.frames_out >= 3 * 25,
        "frames out {}",
        report.frames_out
    );
    assert!(report.agent_audible_packets > 0);
    assert!(report.agent_packets_received <= report.frames_out);
    assert!(report.frames_lost <= report.frames_in / 10);
    assert_eq!(report.provider_errors, 0);
    assert!(report.codec_floor_frames_measured > 0);
    assert!(report.codec_floor_cpu_per_call_second >= 0.0);
    assert!(report.rss_peak_kib >= report.rss_before_kib);
    assert!(report.providers.contains("no provider network cost"));
    let json = serde_json::to_value(&report).expect("the report serialises");
    for key in [
        "calls",
        "seconds",
        "threads",
        "codec",
        "frames_in",
        "frames_out",
        "frames_lost",
        "frames_concealed",
        "deadline_misses",
        "pacing_jitter_ms_p50",
        "pacing_jitter_ms_p99",
        "pacing_jitter_ms_max",
        "tick_work_ms_max",
        "late_tick_work_ms_max",
        "host_slowdowns",
        "late_ticks_in_host_slowdowns",
        "late_ticks_unexplained",
        "cpu_per_call_second",
        "codec_floor_cpu_per_call_second",
        "engine_to_floor_ratio",
        "rss_per_call_kib",
        "v2v_engine_ms_p99",
        "barge_in_ms_p99",
        "latency_split_ms",
        "media_clock",
        "load_shedding",
        "shed_tick_share",
    ] {
        assert!(json.get(key).is_some(), "report lacks `{key}`");
    }
}

/// The shedder's busy share and the paced floor reach the report: every tick reports its work
/// (windows of 100 ms close), and the calls' codec work paced at 20 ms costs about what it costs
/// back to back (the same frames: not a fraction of it).
#[test]
fn load_shedding_reports_the_busy_share_and_the_paced_floor_is_measured() {
    let config = LoadConfig {
        load_shedding: true,
        shed_busy_pct: 70,
        paced_floor_seconds: 1,
        ..smoke(Codec::Opus, RuntimeKind::Shared, ClockSource::default())
    };
    let report = harness::run(&config).expect("the harness runs");
    assert_eq!(report.calls_completed, 3, "{:?}", report.end_reasons);
    assert_eq!(report.shed_busy_trigger, 0.7);
    let windows: u64 = report.busy_share_windows.iter().sum();
    assert!(
        windows >= 20,
        "3 s of calls close about 30 windows: {windows}"
    );
    assert!(report.busy_share_p50.is_some() && report.busy_share_p99.is_some());
    assert_eq!(report.codec_floor_paced_seconds, 1);
    let paced = report
        .codec_floor_paced_cpu_per_call_second
        .expect("measured");
    let floor = report.codec_floor_cpu_per_call_second;
    assert!(
        paced > 0.5 * floor,
        "paced floor {paced} against {floor} back to back: the codec work was not all done"
    );
    assert!(report.engine_to_paced_floor_ratio.is_some());
}

/// Network jitter on the callers' packets reaches the engine: its jitter buffers grow to cover
/// it, and the calls run through (packets held up to three frames arrive out of order and are
/// put back in order).
#[test]
fn network_jitter_on_the_callers_packets_grows_the_jitter_buffers() {
    let config = LoadConfig {
        net_jitter: Duration::from_millis(60),
        catch_up: true,
        ..smoke(Codec::Pcmu, RuntimeKind::Shared, ClockSource::default())
    };
    let report = harness::run(&config).expect("the harness runs");
    assert_eq!(report.net_jitter_ms, 60);
    assert!(report.catch_up);
    assert_eq!(report.calls_completed, 3, "{:?}", report.end_reasons);
    let target = report.jitter_buffer_target_ms_p50.expect("measured");
    assert!(
        target >= 40.0,
        "a buffer facing 0-60 ms of jitter aims higher: {target} ms"
    );
    assert!(report.frames_lost <= report.frames_in / 10);
}

#[test]
fn three_opus_calls_run_end_to_end_on_per_core_workers_with_the_shared_timer() {
    check(
        Codec::Opus,
        RuntimeKind::PerCore,
        ClockSource::default(),
        "shared",
    );
}

#[test]
fn three_opus_calls_run_end_to_end_on_a_shared_runtime_with_interval_clocks() {
    check(
        Codec::Opus,
        RuntimeKind::Shared,
        ClockSource::Interval,
        "interval",
    );
}

#[test]
fn three_pcmu_calls_run_end_to_end_on_a_shared_runtime_with_the_shared_timer() {
    check(
        Codec::Pcmu,
        RuntimeKind::Shared,
        ClockSource::default(),
        "shared",
    );
}

fn parse(args: &[&str]) -> Result<Command, CliError> {
    harness::parse_args(args.iter().map(|s| s.to_string()))
}

#[test]
fn command_line_options_parse_into_the_config() {
    let Ok(Command::Run { config, scaling }) = parse(&[
        "--calls",
        "150",
        "--seconds=30",
        "--codec",
        "pcmu",
        "--threads",
        "1",
        "--stagger-ms",
        "500",
        "--net-jitter-ms",
        "30",
        "--catch-up",
        "off",
        "--engine-runtime",
        "per-core",
        "--media-clock",
        "interval",
        "--load-shedding",
        "on",
        "--shed-sustain-ms",
        "60",
        "--shed-hold-ms",
        "500",
        "--shed-busy-pct",
        "70",
        "--shed-complexity",
        "3",
        "--paced-floor-seconds",
        "4",
        "--history-limit",
        "40",
        "--scaling",
    ]) else {
        panic!("valid options");
    };
    assert!(scaling);
    assert_eq!(config.calls, 150);
    assert_eq!(config.seconds, 30);
    assert_eq!(config.codec, Codec::Pcmu);
    assert_eq!(config.threads, 1);
    assert_eq!(config.stagger, Duration::from_millis(500));
    assert_eq!(config.net_jitter, Duration::from_millis(30));
    assert!(!config.catch_up);
    assert_eq!(config.engine_runtime, RuntimeKind::PerCore);
    assert_eq!(config.media_clock, ClockSource::Interval);
    assert!(config.load_shedding);
    assert_eq!(config.shed_sustain, Duration::from_millis(60));
    assert_eq!(config.shed_hold, Duration::from_millis(500));
    assert_eq!(config.shed_busy_pct, 70);
    assert_eq!(config.shed_complexity, 3);
    assert_eq!(config.paced_floor_seconds, 4);
    assert_eq!(config.history_limit, HistoryLimit::Latest(40));
    assert_eq!(parse(&["-h"]), Ok(Command::Help));
    let Ok(Command::Run { config, scaling }) = parse(&[]) else {
        panic!("defaults");
    };
    assert!(!scaling);
    assert_eq!((config.calls, config.seconds), (50, 20));
    assert_eq!(config.codec, Codec::Opus);
    assert_eq!(config.complexity, 5);
    assert_eq!(config.engine_runtime, RuntimeKind::Shared);
    assert_eq!(config.media_clock, ClockSource::Shared);
    assert!(
        !config.load_shedding,
        "the encoders keep their complexity by default"
    );
    assert_eq!(config.shed_sustain, Duration::ZERO);
    assert_eq!(config.shed_hold, Duration::from_secs(2));
    assert_eq!(
        config.shed_busy_pct, 0,
        "any late tick engages shedding by default"
    );
    assert_eq!(config.shed_complexity, 1);
    assert_eq!(config.paced_floor_seconds, 0, "no paced floor by default");
    assert_eq!(
        config.net_jitter,
        Duration::ZERO,
        "no network jitter by default"
    );
    assert_eq!(
        config.catch_up,
        voxline::engine::driver::DriverOptions::default().catch_up_in_pauses,
        "the engine's default"
    );
    assert_eq!(config.history_limit, HistoryLimit::default());
    let Ok(Command::Run { config, .. }) = parse(&["--history-limit", "all"]) else {
        panic!("the whole conversation");
    };
    assert_eq!(config.history_limit, HistoryLimit::Whole);
    assert!(config.stall_probe, "the probe runs by default");
    let Ok(Command::Run { config, .. }) = parse(&["--stall-probe", "off"]) else {
        panic!("no probe");
    };
    assert!(!config.stall_probe);
    assert!(matches!(
        parse(&["--stall-probe", "maybe"]),
        Err(CliError::InvalidValue { .. })
    ));
    assert_eq!(
        (config.engine_priority, config.caller_priority),
        (ThreadPriority::Normal, ThreadPriority::Normal),
        "every thread time-shared by default"
    );
    let Ok(Command::Run { config, .. }) = parse(&[
        "--engine-priority",
        "realtime",
        "--caller-priority=realtime",
    ]) else {
        panic!("real-time threads");
    };
    let realtime = ThreadPriority::Realtime(harness::ENGINE_RT_PRIORITY);
    assert_eq!(
        (config.engine_priority, config.caller_priority),
        (realtime, realtime)
    );
    assert!(matches!(
        parse(&["--engine-priority", "high"]),
        Err(CliError::InvalidValue {
            option: "--engine-priority",
            ..
        })
    ));
}

#[test]
fn bad_options_are_typed_errors() {
    assert!(matches!(
        parse(&["--calls", "0"]),
        Err(CliError::InvalidValue {
            option: "--calls",
            ..
        })
    ));
    assert!(matches!(
        parse(&["--codec", "g729"]),
        Err(CliError::InvalidValue {
            option: "--codec",
            ..
        })
    ));
    assert!(matches!(
        parse(&["--seconds", "-3"]),
        Err(CliError::InvalidValue { .. })
    ));
    assert_eq!(
        parse(&["--threads"]),
        Err(CliError::MissingValue("--threads"))
    );
    assert_eq!(
        parse(&["--turbo"]),
        Err(CliError::UnknownOption("--turbo".into()))
    );
    assert_eq!(
        parse(&["--scaling=yes"]),
        Err(CliError::UnexpectedValue("--scaling"))
    );
    assert_eq!(
        parse(&["150"]),
        Err(CliError::UnexpectedArgument("150".into()))
    );
    let message = parse(&["--complexity", "11"]).unwrap_err().to_string();
    assert!(
        message.contains("--complexity") && message.contains("0 to 10"),
        "{message}"
    );
}
