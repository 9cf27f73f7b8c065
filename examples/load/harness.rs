//! The load harness behind `examples/load.rs` (the command line) and `tests/load_smoke.rs` (a
//! short CI run): N concurrent calls through the real engine over UDP on 127.0.0.1, each against
//! a simulated caller, measuring pacing, on-the-wire latency, CPU and memory.
//!
//! Per call:
//! - **engine side**: an [`RtpPort`] over a tokio `UdpSocket` and a [`new_call`] driver task on
//!   the engine runtime (`threads` workers, named `vx-engine`), with the in-process scripted
//!   providers of `voxline_engine::testkit` (STT, LLM and TTS stand-ins with fixed latencies);
//! - **caller side**: a task on a separate runtime (`vx-caller` threads) with its own UDP socket
//!   that streams RTP in real time — speech while talking, faint room noise otherwise — and
//!   decodes every agent packet to tell audible agent audio from silence.
//!
//! The callers' voice is encoded once before the calls start and only renumbered per packet, and
//! the callers run on their own threads, so the engine's CPU can be read from its own threads.
//! After the load, the same number of frames goes through the codec, resampler and VAD alone on
//! one thread (the codec floor), for the engine-to-floor ratio.

#[path = "stats.rs"]
pub mod stats;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cpu::this_thread_cpu;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use voxline::codecs::rtp::SenderConfig;
use voxline::codecs::{
    AudioFrame, CodecError, FrameDecoder, FrameEncoder, JitterStats, OpusConfig, OpusEncoder,
    PacketDuration, PayloadFormat, PayloadRegistry, Resampler, RtpError, RtpPacket, RtpSender,
    SampleRate,
};
use voxline::engine::call::chunker::TextChunker;
use voxline::engine::call::{CallEvent, CallSettings, EndReason, HistoryLimit};
use voxline::engine::driver::{
    new_call, DriverOptions, EventStream, LatenessHistogram, MediaCounters, ProviderSet,
};
use voxline::engine::load_shedding::LoadShedder;
use voxline::engine::media::{
    InboundCounters, MediaConfig, MediaError, OutboundCounters, PacketTransport, PolledUdpSocket,
    RtpPort,
};
use voxline::engine::media_clock::ClockSource;
use voxline::engine::provider::{ChatMessage, ToolCallRequest};
use voxline::engine::testkit::{voiced_signal, ScriptedLlm, ScriptedStt, ScriptedTts, WaitLog};
use voxline::engine::tick_grid::{TickGrid, TickSnap};
use voxline::engine::vad::{VadConfig, VadError, VoiceDetector};
use voxline::engine::workers::{
    set_current_thread_priority, CallWorker, CallWorkers, ThreadPriority,
};

use stats::{steady_growth, steady_window, Histogram, HistogramExport, RssGrowth, RssSeries};

/// One 20 ms frame.
const FRAME: Duration = Duration::from_millis(20);
/// Frames of caller audio at least this loud count as speech (the scripted STT's threshold).
const SPEECH_DBFS: f32 = -45.0;
/// Decoded agent frames louder than this are audible agent audio.
const AUDIBLE_DBFS: f32 = -50.0;
/// Pauses inside the caller's WAV longer than this many frames are shortened to it, so a turn
/// never ends in the middle (the engine's VAD stops after 300 ms of silence).
const MAX_KEPT_PAUSE_FRAMES: usize = 6;
/// The caller starts talking this long after the agent's last audible packet.
const REPLY_GAP: Duration = Duration::from_millis(600);
/// A barging caller starts talking this long into the agent's answer.
const BARGE_IN_AFTER: Duration = Duration::from_millis(1000);
/// No agent audio this long after the caller stopped (or since listening began): talk again.
const NO_ANSWER: Duration = Duration::from_secs(6);
/// A barge-in is over when the agent has been inaudible at the caller this long.
const BARGE_IN_SETTLED: Duration = Duration::from_millis(300);
/// Turn lengths vary by up to this much either way around the configured talk time.
const TALK_SPREAD_MS: u64 = 500;
/// A WAV turn may run this much past its talk time to end at a natural pause.
const MAX_TALK_EXTENSION: Duration = Duration::from_millis(1500);
/// A caller or engine tick later than this missed its deadline.
const LATE: Duration = Duration::from_millis(10);
/// The Opus payload type both sides negotiate.
const OPUS_PT: u8 = 111;
/// Linux reports process CPU times in USER_HZ ticks, 100 per second on every common architecture.
const USER_HZ: f64 = 100.0;
/// Name of the engine runtime's threads (CPU is attributed by thread name).
const ENGINE_THREAD: &str = "vx-engine";
/// The engine threads' real-time priority with `--engine-priority realtime`.
pub const ENGINE_RT_PRIORITY: u8 = 10;
/// The stall probes' real-time priority: above the engine's, so a probe waits for nothing in
/// this machine's scheduler and only a stall of the vCPU itself makes it late.
const PROBE_RT_PRIORITY: u8 = 20;
/// Name of the simulated callers' runtime threads.
const CALLER_THREAD: &str = "vx-caller";
/// About one conversation cycle (greeting, a turn, an answer, an interrupted answer): after
/// this, every call has been through every path once, and RSS should stay flat.
const WARM_UP: Duration = Duration::from_secs(15);
/// Time between two RSS readings.
const RSS_INTERVAL: Duration = Duration::from_secs(1);
/// RSS readings kept: a longer run keeps every second one, then every fourth… (see [`RssSeries`]).
const RSS_READINGS: usize = 1024;
/// Resolution of the latency histograms.
const LATENCY_BIN: Duration = Duration::from_micros(100);
/// Range of the latency histograms; longer values only count in the maximum.
const LATENCY_RANGE: Duration = Duration::from_secs(10);
/// Bin width of the latency histograms in the report.
const REPORT_BIN: Duration = Duration::from_micros(500);

/// What the agent says when the call starts (about 3.7 s of TTS).
const GREETING: &str = "Hello, thanks for calling the clinic. How can I help you today?";
/// The agent's answer to every caller turn (about 2.9 s of TTS).
const REPLY: &str = "Sure, I can help with that. Monday at ten works.";
/// What the scripted STT hears, turn after turn.
const USER_LINES: [&str; 5] = [
    "I would like to book a cleaning",
    "Do you have anything next week",
    "What about Monday morning",
    "Sorry, one more question",
    "Thanks, that works for me",
];

// ---------------------------------------------------------------------------------------------
// Configuration

/// How the call sockets of one side (engine or callers) are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// `PolledUdpSocket`: read at each 20 ms tick, no wake-up per datagram; arrivals carry
    /// the kernel's receive stamp.
    Polled,
    /// tokio `UdpSocket`: every datagram wakes its task through the reactor.
    Reactor,
}

impl SocketKind {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Polled => "polled",
            SocketKind::Reactor => "reactor",
        }
    }
}

/// How the engine's threads run the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// `voxline_engine::workers::CallWorkers`: one single-threaded runtime per thread, each
    /// call (with its provider tasks) on one worker for its whole life.
    PerCore,
    /// One multi-threaded work-stealing tokio runtime for every call.
    Shared,
}

impl RuntimeKind {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::PerCore => "per-core",
            RuntimeKind::Shared => "shared",
        }
    }
}

/// The codec the calls use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Opus, 48 kHz RTP clock; the engine decodes to 16 kHz and encodes 24 kHz TTS directly.
    Opus,
    /// G.711 µ-law, 8 kHz; TTS is resampled 24 → 8 kHz.
    Pcmu,
}

impl Codec {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "pcmu",
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            Codec::Opus => OPUS_PT,
            Codec::Pcmu => 0,
        }
    }

    fn ticks_per_frame(self) -> u32 {
        match self {
            Codec::Opus => 960,
            Codec::Pcmu => 160,
        }
    }

    /// The rate the simulated caller's voice is encoded at.
    fn caller_send_rate(self) -> SampleRate {
        match self {
            Codec::Opus => SampleRate::Hz48000,
            Codec::Pcmu => SampleRate::Hz8000,
        }
    }

    /// The rate the engine decodes the caller to (VAD and STT).
    fn engine_caller_rate(self) -> SampleRate {
        match self {
            Codec::Opus => SampleRate::Hz16000,
            Codec::Pcmu => SampleRate::Hz8000,
        }
    }

    /// The rate the engine encodes the agent at, which it asks the TTS for: Opus takes 24 kHz
    /// TTS as it is, G.711 8 kHz.
    fn agent_rate(self) -> SampleRate {
        match self {
            Codec::Opus => SampleRate::Hz24000,
            Codec::Pcmu => SampleRate::Hz8000,
        }
    }

    /// The format the engine encodes the agent with (and the callers' decoders expect).
    fn engine_format(self) -> PayloadFormat {
        match self {
            Codec::Opus => PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz24000,
            },
            Codec::Pcmu => PayloadFormat::Pcmu,
        }
    }
}

/// Where the simulated caller's voice comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerVoice {
    /// `assets/caller.wav` when the file exists, else the synthetic signal.
    Default,
    /// A spoken WAV file: 16 kHz, mono, 16-bit.
    Wav(PathBuf),
    /// The engine's synthetic voiced signal (`testkit::voiced_signal`), continuous speech.
    Synthetic,
}

/// Latencies of the in-process provider stand-ins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderLatencies {
    /// STT: finalize request → final transcript.
    pub stt_final: Duration,
    /// LLM: request → first token.
    pub llm_first_token: Duration,
    /// LLM: between streamed words.
    pub llm_token_interval: Duration,
    /// TTS: text → first audio.
    pub tts_first_byte: Duration,
}

impl Default for ProviderLatencies {
    fn default() -> Self {
        ProviderLatencies {
            stt_final: Duration::from_millis(150),
            llm_first_token: Duration::from_millis(200),
            llm_token_interval: Duration::from_millis(10),
            tts_first_byte: Duration::from_millis(120),
        }
    }
}

/// One load run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// Concurrent calls.
    pub calls: usize,
    /// Length of each call, in seconds.
    pub seconds: u64,
    /// Codec of every call.
    pub codec: Codec,
    /// Worker threads of the engine runtime.
    pub threads: usize,
    /// Worker threads of the simulated callers' runtime.
    pub caller_threads: usize,
    /// How the engine reads its call sockets.
    pub engine_socket: SocketKind,
    /// How the simulated callers read theirs.
    pub caller_socket: SocketKind,
    /// Move each call's media clock towards its packets (`DriverOptions::align_media_phase`).
    pub phase_align: bool,
    /// Take caller frames ahead of the clock in the caller's pauses
    /// (`DriverOptions::catch_up_in_pauses`).
    pub catch_up: bool,
    /// Run the stall probe thread (`host_stalls`); off, the process has only the engine's and
    /// the callers' threads (the probe's 1 ms wake-ups keep a vCPU from idling deeply).
    pub stall_probe: bool,
    /// `DriverOptions::tick_snap`: the shared grid the calls' ticks snap to.
    pub tick_snap: TickSnap,
    /// How the engine's threads run the calls.
    pub engine_runtime: RuntimeKind,
    /// `DriverOptions::media_clock`: what wakes the calls' media clocks.
    pub media_clock: ClockSource,
    /// `DriverOptions::load_shedding`: every call shares one `LoadShedder`, so a late tick
    /// lowers all Opus encoders' complexity for a while.
    pub load_shedding: bool,
    /// How long late ticks must keep coming before the calls shed load.
    pub shed_sustain: Duration,
    /// How long shedding holds after the last late tick.
    pub shed_hold: Duration,
    /// The engine threads' busy share in percent a late tick needs to engage shedding
    /// (`LoadShedder::with_busy_trigger`); 0: any late tick does.
    pub shed_busy_pct: u8,
    /// `MediaConfig::opus_shed_complexity`: the encoders' complexity while shedding (the
    /// engine's complexity itself measures the shedder's signals without shedding).
    pub shed_complexity: u8,
    /// Scheduling of the engine's threads: `Normal` (time-shared with the simulated callers
    /// and everything else), or real-time ([`ENGINE_RT_PRIORITY`]).
    pub engine_priority: ThreadPriority,
    /// Scheduling of the simulated callers' threads, likewise (`realtime`: the engine's
    /// priority, so neither side waits a time-sharing slice for the other).
    pub caller_priority: ThreadPriority,
    /// Call starts are spread evenly over this window.
    pub stagger: Duration,
    /// Network jitter on the callers' packets: each is held a uniformly random 0 to this long
    /// before it is sent (independently, so with more than a frame packets also reorder).
    pub net_jitter: Duration,
    /// Calls are answered (the agent greets) after a delay spread over this window, so their
    /// conversations run at unrelated phases — about half the agents speak at any moment — as
    /// calls that started at random times would. Before the answer the call rings with media
    /// flowing (the engine decodes the caller's line; the agent is silent).
    pub answer_spread: Duration,
    /// Opus encoder complexity of the engine (0–10).
    pub complexity: u8,
    /// Provider stand-in latencies.
    pub providers: ProviderLatencies,
    /// Typical length of a caller turn.
    pub talk: Duration,
    /// Every n-th agent answer is interrupted by the caller (0 = never).
    pub barge_in_every: u32,
    /// Keep the engine's default of pausing the agent as soon as the caller speaks (false
    /// interruption handling); off, the agent is cut at the barge-in decision.
    pub pause_on_speech: bool,
    /// The caller's voice.
    pub voice: CallerVoice,
    /// Measure the codec floor on at most this many frames per direction and scale up.
    pub floor_frames: Option<u64>,
    /// After the load, measure the load's codec work paced as its calls are (each call's share
    /// every 20 ms at its own phase, on the engine's thread count) for this long (0: not).
    pub paced_floor_seconds: u64,
    /// `CallSettings::history_limit`: messages kept for the model (default: the engine's).
    pub history_limit: HistoryLimit,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            calls: 50,
            seconds: 20,
            codec: Codec::Opus,
            threads: cores(),
            caller_threads: 1,
            engine_socket: SocketKind::Polled,
            caller_socket: SocketKind::Polled,
            phase_align: true,
            catch_up: true,
            stall_probe: true,
            tick_snap: TickSnap::Auto,
            engine_runtime: RuntimeKind::Shared,
            media_clock: ClockSource::default(),
            load_shedding: false,
            shed_sustain: LoadShedder::DEFAULT_SUSTAIN,
            shed_hold: LoadShedder::DEFAULT_HOLD,
            shed_busy_pct: 0,
            shed_complexity: 1,
            engine_priority: ThreadPriority::Normal,
            caller_priority: ThreadPriority::Normal,
            stagger: Duration::from_millis(1000),
            net_jitter: Duration::ZERO,
            answer_spread: Duration::from_millis(7000),
            complexity: 5,
            providers: ProviderLatencies::default(),
            talk: Duration::from_millis(3000),
            barge_in_every: 2,
            pause_on_speech: false,
            voice: CallerVoice::Default,
            floor_frames: None,
            paced_floor_seconds: 0,
            history_limit: HistoryLimit::default(),
        }
    }
}

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------------------------
// Command line

/// What the command line asks for.
// Built once per process: boxing the config would only complicate its users.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print the usage text.
    Help,
    /// Run the load (or the 1-thread vs all-cores comparison when `scaling`).
    Run {
        /// The run's settings.
        config: LoadConfig,
        /// Run on 1 thread and on `config.threads` and report the scaling efficiency.
        scaling: bool,
    },
}

/// A command line that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// An option the harness does not know.
    #[error("unknown option `{0}` (see --help)")]
    UnknownOption(String),
    /// A positional argument (every setting is an option).
    #[error("unexpected argument `{0}`: every setting is an option (see --help)")]
    UnexpectedArgument(String),
    /// An option given without its value.
    #[error("option `{0}` needs a value")]
    MissingValue(&'static str),
    /// A flag given a value.
    #[error("option `{0}` takes no value")]
    UnexpectedValue(&'static str),
    /// A value out of range or not a number.
    #[error("invalid value `{value}` for `{option}`: expected {expected}")]
    InvalidValue {
        /// The option.
        option: &'static str,
        /// What was given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

/// The usage text (`--help`).
pub const USAGE: &str = "\
Load harness: N concurrent calls through the voxline engine over UDP on 127.0.0.1.

Usage: cargo run --release --example load -- [OPTIONS]

Options:
  --calls N                concurrent calls [default: 50]
  --seconds S              length of every call [default: 20]
  --codec opus|pcmu        Opus (48 kHz clock, engine encoder complexity 5) or G.711 u-law
                           [default: opus]
  --threads T              engine runtime worker threads [default: number of cores]
  --caller-threads C       simulated callers' runtime threads [default: 1]
  --engine-socket polled|reactor
                           engine call sockets read at each 20 ms tick (no wake-up per
                           packet) or through the tokio reactor (one per packet)
                           [default: polled]
  --caller-socket polled|reactor
                           the same for the simulated callers' sockets; polled callers
                           take agent packets at their own tick, at the kernel's arrival
                           stamps [default: polled]
  --phase-align on|off     move each call's media clock towards its packets' arrivals
                           [default: on]
  --catch-up on|off        in the caller's pauses take frames already received ahead of the
                           media clock, draining the jitter buffer's delay out of the turn
                           (frames_ahead counts them) [default: on]
  --stall-probe on|off     run a thread that sleeps 1 ms at a time and records the
                           machine's stalls (host_stalls) [default: on]
  --load-shedding on|off   shed load together: at a tick 5 ms late every call's Opus
                           encoder complexity drops to 1 until 2 s after the last late
                           tick [default: off]
  --shed-sustain-ms MS     engage only when late ticks keep coming this long; 0 = at the
                           first one [default: 0]
  --shed-hold-ms MS        how long shedding holds after the last late tick
                           [default: 2000]
  --shed-busy-pct 0-100    engage only at late ticks while the engine threads' work fills
                           this share of their time (100 ms windows); lower shares are
                           stalls, let pass; 0 = every late tick [default: 0]
  --shed-complexity 0-10   Opus encoder complexity while shedding; the engine's own
                           complexity measures without shedding [default: 1]
  --tick-grid-ms auto|0|1|2|4|5|10|20
                           snap every call's ticks to a shared grid of this step so one
                           wake-up serves several calls; 0 = each clock at its own
                           phase; auto = one 4 ms grid below 50 calls per core, two
                           interleaved to 100, none above [default: auto]
  --engine-priority normal|realtime
                           the engine threads' scheduling: time-shared with the simulated
                           callers, or real-time (SCHED_FIFO 10; needs CAP_SYS_NICE)
                           [default: normal]
  --caller-priority normal|realtime
                           the same for the simulated callers' threads (realtime: the
                           engine's level, so neither waits a time-sharing slice for the
                           other) [default: normal]
  --engine-runtime shared|per-core
                           one work-stealing runtime for every call, or one
                           single-threaded runtime per engine thread with each call
                           staying on its worker [default: shared]
  --media-clock shared|interval
                           the calls' 20 ms clocks served by one timer per runtime, or
                           each its own tokio Interval in the runtime's timer wheel
                           [default: shared]
  --stagger-ms MS          spread call starts evenly over MS milliseconds [default: 1000]
  --net-jitter-ms MS       hold each caller packet a random 0 to MS milliseconds before it
                           is sent (network jitter; reorders above 20); the latencies count
                           from the packets' arrival, so the network's delay is not the
                           engine's [default: 0]
  --answer-spread-ms MS    answer the calls after delays spread over MS milliseconds, so their
                           conversations (and agent speech) are out of step [default: 7000]
  --complexity 0-10        engine Opus encoder complexity [default: 5]
  --history-limit N|all    keep at most N conversation messages per call for the model
                           (older ones leave the call's memory), or the whole call
                           [default: the engine's, 100]
  --stt-final-ms MS        STT stand-in: finalize -> final transcript [default: 150]
  --llm-first-token-ms MS  LLM stand-in: request -> first token [default: 200]
  --llm-token-ms MS        LLM stand-in: between words [default: 10]
  --tts-first-byte-ms MS   TTS stand-in: text -> first audio [default: 120]
  --talk-ms MS             typical caller turn [default: 3000]
  --barge-in-every N       the caller interrupts every N-th answer, 0 = never [default: 2]
  --pause-on-speech        keep the engine's default of pausing the agent when the caller
                           starts speaking (barge-in silence then comes at VAD start)
  --wav PATH               caller voice: 16 kHz mono 16-bit WAV [default: assets/caller.wav
                           when present, else a synthetic voiced signal]
  --synthetic              use the synthetic voiced signal even if assets/caller.wav exists
  --floor-frames N         measure the codec floor on at most N frames per direction and
                           scale up [default: all frames]
  --paced-floor-seconds S  after the load, also measure the same codec work paced as the
                           calls are: each call's share every 20 ms at its own phase (4 ms
                           grid), on --threads threads asleep in between, for S s
                           [default: 0 = not]
  --scaling                run the same calls on 1 thread and on --threads threads and
                           report the scaling efficiency
  -h, --help               print this text

Prints one JSON object on stdout. Exit status: 0 = no deadline misses, 1 = some call missed
deadlines (a 20 ms frame sent more than 10 ms late), 2 = bad command line, 3 = the harness
failed (sockets, audio file, codecs).
";

/// Parses the command line (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
    let mut config = LoadConfig::default();
    let mut scaling = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(Command::Help);
        }
        if !name.starts_with('-') {
            return Err(CliError::UnexpectedArgument(arg));
        }
        let option = option_name(&name).ok_or_else(|| CliError::UnknownOption(name.clone()))?;
        if matches!(option, "--scaling" | "--pause-on-speech" | "--synthetic") {
            if inline.is_some() {
                return Err(CliError::UnexpectedValue(option));
            }
            match option {
                "--scaling" => scaling = true,
                "--pause-on-speech" => config.pause_on_speech = true,
                _ => config.voice = CallerVoice::Synthetic,
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or(CliError::MissingValue(option))?,
        };
        let ms = |max: u64, expected: &'static str| {
            number(option, &value, 0, max, expected).map(Duration::from_millis)
        };
        match option {
            "--calls" => config.calls = number(option, &value, 1, 100_000, "1 to 100000")? as usize,
            "--seconds" => config.seconds = number(option, &value, 1, 86_400, "1 to 86400")?,
            "--codec" => {
                config.codec = choice(
                    option,
                    value,
                    &[("opus", Codec::Opus), ("pcmu", Codec::Pcmu)],
                    "`opus` or `pcmu`",
                )?
            }
            "--threads" => config.threads = number(option, &value, 1, 1024, "1 to 1024")? as usize,
            "--caller-threads" => {
                config.caller_threads = number(option, &value, 1, 1024, "1 to 1024")? as usize
            }
            "--engine-socket" | "--caller-socket" => {
                let kind = choice(
                    option,
                    value,
                    &[
                        ("polled", SocketKind::Polled),
                        ("reactor", SocketKind::Reactor),
                    ],
                    "`polled` or `reactor`",
                )?;
                if option == "--engine-socket" {
                    config.engine_socket = kind;
                } else {
                    config.caller_socket = kind;
                }
            }
            "--engine-runtime" => {
                config.engine_runtime = choice(
                    option,
                    value,
                    &[
                        ("per-core", RuntimeKind::PerCore),
                        ("shared", RuntimeKind::Shared),
                    ],
                    "`per-core` or `shared`",
                )?
            }
            "--media-clock" => {
                config.media_clock = choice(
                    option,
                    value,
                    &[
                        ("shared", ClockSource::Shared),
                        ("interval", ClockSource::Interval),
                    ],
                    "`shared` or `interval`",
                )?
            }
            "--engine-priority" | "--caller-priority" => {
                let priority = choice(
                    option,
                    value,
                    &[
                        ("normal", ThreadPriority::Normal),
                        ("realtime", ThreadPriority::Realtime(ENGINE_RT_PRIORITY)),
                    ],
                    "`normal` or `realtime`",
                )?;
                if option == "--engine-priority" {
                    config.engine_priority = priority;
                } else {
                    config.caller_priority = priority;
                }
            }
            "--phase-align" => config.phase_align = on_off(option, value)?,
            "--catch-up" => config.catch_up = on_off(option, value)?,
            "--stall-probe" => config.stall_probe = on_off(option, value)?,
            "--load-shedding" => config.load_shedding = on_off(option, value)?,
            "--shed-sustain-ms" => config.shed_sustain = ms(10_000, "0 to 10000 (ms)")?,
            "--shed-hold-ms" => config.shed_hold = ms(60_000, "0 to 60000 (ms)")?,
            "--shed-busy-pct" => {
                config.shed_busy_pct = number(option, &value, 0, 100, "0 to 100")? as u8
            }
            "--shed-complexity" => {
                config.shed_complexity = number(option, &value, 0, 10, "0 to 10")? as u8
            }
            "--tick-grid-ms" => {
                const EXPECTED: &str = "auto, 0, 1, 2, 4, 5, 10 or 20 (ms)";
                config.tick_snap = match value.as_str() {
                    "auto" => TickSnap::Auto,
                    _ => match number(option, &value, 0, 20, EXPECTED)? {
                        0 => TickSnap::Off,
                        n => TickSnap::Fixed(TickGrid::new(Duration::from_millis(n)).map_err(
                            |_| CliError::InvalidValue {
                                option,
                                value: value.clone(),
                                expected: EXPECTED,
                            },
                        )?),
                    },
                };
            }
            "--stagger-ms" => config.stagger = ms(3_600_000, "0 to 3600000 (ms)")?,
            "--net-jitter-ms" => config.net_jitter = ms(1_000, "0 to 1000 (ms)")?,
            "--answer-spread-ms" => config.answer_spread = ms(3_600_000, "0 to 3600000 (ms)")?,
            "--complexity" => config.complexity = number(option, &value, 0, 10, "0 to 10")? as u8,
            "--history-limit" => {
                config.history_limit = if value == "all" {
                    HistoryLimit::Whole
                } else {
                    HistoryLimit::Latest(
                        number(option, &value, 1, 100_000, "1 to 100000 or all")? as usize
                    )
                }
            }
            "--stt-final-ms" => config.providers.stt_final = ms(60_000, "0 to 60000 (ms)")?,
            "--llm-first-token-ms" => {
                config.providers.llm_first_token = ms(60_000, "0 to 60000 (ms)")?
            }
            "--llm-token-ms" => {
                config.providers.llm_token_interval = ms(10_000, "0 to 10000 (ms)")?
            }
            "--tts-first-byte-ms" => {
                config.providers.tts_first_byte = ms(60_000, "0 to 60000 (ms)")?
            }
            "--talk-ms" => {
                config.talk = number(option, &value, 1000, 60_000, "1000 to 60000 (ms)")
                    .map(Duration::from_millis)?
            }
            "--barge-in-every" => {
                config.barge_in_every = number(option, &value, 0, 1000, "0 to 1000")? as u32
            }
            "--wav" => {
                if value.is_empty() {
                    return Err(CliError::InvalidValue {
                        option,
                        value,
                        expected: "a file path",
                    });
                }
                config.voice = CallerVoice::Wav(PathBuf::from(value));
            }
            "--paced-floor-seconds" => {
                config.paced_floor_seconds = number(option, &value, 0, 600, "0 to 600 (s)")?
            }
            "--floor-frames" => {
                config.floor_frames = Some(number(option, &value, 1, u64::MAX, "a positive count")?)
            }
            _ => return Err(CliError::UnknownOption(name)),
        }
    }
    Ok(Command::Run { config, scaling })
}

/// The canonical name of a known option.
fn option_name(name: &str) -> Option<&'static str> {
    const OPTIONS: [&str; 38] = [
        "--calls",
        "--seconds",
        "--codec",
        "--threads",
        "--caller-threads",
        "--engine-socket",
        "--caller-socket",
        "--phase-align",
        "--catch-up",
        "--stall-probe",
        "--tick-grid-ms",
        "--engine-runtime",
        "--media-clock",
        "--load-shedding",
        "--shed-sustain-ms",
        "--shed-hold-ms",
        "--shed-busy-pct",
        "--shed-complexity",
        "--engine-priority",
        "--caller-priority",
        "--history-limit",
        "--stagger-ms",
        "--net-jitter-ms",
        "--answer-spread-ms",
        "--complexity",
        "--stt-final-ms",
        "--llm-first-token-ms",
        "--llm-token-ms",
        "--tts-first-byte-ms",
        "--talk-ms",
        "--barge-in-every",
        "--pause-on-speech",
        "--wav",
        "--synthetic",
        "--floor-frames",
        "--paced-floor-seconds",
        "--scaling",
        "--help",
    ];
    OPTIONS.iter().copied().find(|o| *o == name)
}

/// `value` as one of the named `choices`; `expected` lists them for the error.
fn choice<T: Copy>(
    option: &'static str,
    value: String,
    choices: &[(&str, T)],
    expected: &'static str,
) -> Result<T, CliError> {
    match choices.iter().find(|(name, _)| *name == value) {
        Some(&(_, chosen)) => Ok(chosen),
        None => Err(CliError::InvalidValue {
            option,
            value,
            expected,
        }),
    }
}

/// `on` or `off`.
fn on_off(option: &'static str, value: String) -> Result<bool, CliError> {
    choice(
        option,
        value,
        &[("on", true), ("off", false)],
        "`on` or `off`",
    )
}

fn number(
    option: &'static str,
    value: &str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, CliError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| CliError::InvalidValue {
            option,
            value: value.to_string(),
            expected,
        })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a load run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A socket, runtime or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The caller WAV cannot be used.
    #[error("caller audio {path}: {reason}")]
    Wav {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A thread priority was refused (`--engine-priority realtime` or `--caller-priority
    /// realtime` without `CAP_SYS_NICE`).
    #[error("thread priority: {0}")]
    Priority(#[from] voxline::engine::workers::PriorityError),
    /// A codec or resampler could not be set up or failed.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// RTP packets could not be built.
    #[error("rtp: {0}")]
    Rtp(#[from] RtpError),
    /// A call's media could not be set up.
    #[error("media: {0}")]
    Media(#[from] MediaError),
    /// The VAD could not be set up.
    #[error("vad: {0}")]
    Vad(#[from] VadError),
    /// A payload type could not be registered.
    #[error("payload registry: {0}")]
    Registry(String),
    /// A call or caller task panicked or was cancelled.
    #[error("call task failed: {0}")]
    Task(String),
    /// The settings cannot be run.
    #[error("invalid settings: {0}")]
    Config(&'static str),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> HarnessError {
    move |source| HarnessError::Io { what, source }
}

// ---------------------------------------------------------------------------------------------
// Caller audio, encoded once

/// One 20 ms packet of the caller's voice.
struct VoicePacket {
    payload: Box<[u8]>,
    /// The frame's source audio was speech (above [`SPEECH_DBFS`]).
    loud: bool,
}

/// The caller's voice and room noise, encoded for the call's codec, shared by all callers.
struct CallerAudio {
    /// The speech reel: the voice with long pauses shortened, frame by frame.
    speech: Vec<VoicePacket>,
    /// One second of faint room noise, looped between turns.
    noise: Vec<Box<[u8]>>,
    /// Every speech frame is loud (synthetic voice): turns end exactly at their talk time.
    all_loud: bool,
    /// Where the voice came from, for the report.
    source: String,
}

impl CallerAudio {
    fn prepare(codec: Codec, voice: &CallerVoice) -> Result<CallerAudio, HarnessError> {
        let default_wav = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/caller.wav");
        let (pcm, source) = match voice {
            CallerVoice::Wav(path) => (load_wav(path)?, path.display().to_string()),
            CallerVoice::Default if default_wav.is_file() => {
                (load_wav(&default_wav)?, "assets/caller.wav".to_string())
            }
            CallerVoice::Default | CallerVoice::Synthetic => {
                let mut pcm = vec![0i16; 16_000 * 12];
                voiced_signal(SampleRate::Hz16000, 0, &mut pcm);
                (
                    pcm,
                    "synthetic voiced signal (testkit::voiced_signal)".to_string(),
                )
            }
        };
        let rate = SampleRate::Hz16000;
        let mut reel: Vec<(AudioFrame, bool)> = Vec::new();
        let mut quiet_run = 0usize;
        for chunk in pcm.chunks_exact(rate.frame_samples()) {
            let frame = AudioFrame::from_samples(rate, chunk)?;
            let loud = frame.level_dbfs() >= SPEECH_DBFS;
            if loud {
                quiet_run = 0;
                reel.push((frame, true));
            } else {
                quiet_run += 1;
                if !reel.is_empty() && quiet_run <= MAX_KEPT_PAUSE_FRAMES {
                    reel.push((frame, false));
                }
            }
        }
        while reel.last().is_some_and(|(_, loud)| !loud) {
            reel.pop();
        }
        let loud_frames = reel.iter().filter(|(_, loud)| *loud).count();
        if loud_frames < 50 {
            return Err(HarnessError::Wav {
                path: source,
                reason: format!(
                    "holds {} ms of speech above {SPEECH_DBFS} dBFS; at least 1 s is needed",
                    loud_frames * 20
                ),
            });
        }
        let send_rate = codec.caller_send_rate();
        let mut resampler = Resampler::new(rate, send_rate)?;
        let mut encoder = match codec {
            Codec::Opus => FrameEncoder::from(OpusEncoder::new(send_rate, OpusConfig::default())?),
            Codec::Pcmu => FrameEncoder::new(PayloadFormat::Pcmu, PacketDuration::Ms20)?,
        };
        let mut resampled = AudioFrame::silent(send_rate);
        let mut buf = [0u8; 1500];
        let mut encode = |frame: &AudioFrame| -> Result<Box<[u8]>, HarnessError> {
            encoder.push_frame(frame)?;
            let packet = encoder.next_packet(&mut buf)?.ok_or(HarnessError::Config(
                "the caller encoder buffered a 20 ms frame",
            ))?;
            Ok(buf[..packet.len].into())
        };
        let mut speech = Vec::with_capacity(reel.len());
        for (frame, loud) in &reel {
            resampler.process_into(frame, &mut resampled)?;
            speech.push(VoicePacket {
                payload: encode(&resampled)?,
                loud: *loud,
            });
        }
        // Room noise from its own encoder, looped: the first pass only primes the encoder, so
        // the loop's first packet carries no tail of the speech (lookahead, in-band FEC) and
        // wraps around seamlessly.
        let mut encoder = match codec {
            Codec::Opus => FrameEncoder::from(OpusEncoder::new(send_rate, OpusConfig::default())?),
            Codec::Pcmu => FrameEncoder::new(PayloadFormat::Pcmu, PacketDuration::Ms20)?,
        };
        let mut noise = Vec::with_capacity(50);
        let mut frame = AudioFrame::silent(send_rate);
        for pass in 0..2 {
            let mut lcg = Lcg::new(0x5eed);
            for _ in 0..50 {
                // Uniform noise of ±24: about -67 dBFS, under the VAD's energy floor.
                for s in frame.samples_mut() {
                    *s = (lcg.next_u64() % 49) as i16 - 24;
                }
                encoder.push_frame(&frame)?;
                let packet = encoder.next_packet(&mut buf)?.ok_or(HarnessError::Config(
                    "the noise encoder buffered a 20 ms frame",
                ))?;
                if pass == 1 {
                    noise.push(buf[..packet.len].into());
                }
            }
        }
        Ok(CallerAudio {
            all_loud: speech.iter().all(|p| p.loud),
            speech,
            noise,
            source,
        })
    }
}

/// How long the engine's VAD keeps calling the caller voiced after the last loud frame of a
/// turn — webrtc-vad's own hang-over plus the codec's tail — measured on the callers' encoded
/// audio through the engine's decoder and detector, averaged over up to 16 turn ends. The
/// engine's configured stop hang-over counts from the end of the last *voiced* frame, so this
/// comes on top of it.
fn vad_tail(codec: Codec, audio: &CallerAudio) -> Result<Duration, HarnessError> {
    let rate = codec.engine_caller_rate();
    let format = match codec {
        Codec::Opus => PayloadFormat::Opus { pcm_rate: rate },
        Codec::Pcmu => PayloadFormat::Pcmu,
    };
    let speech = &audio.speech;
    let ends: Vec<usize> = if audio.all_loud {
        (150..speech.len()).step_by(150).take(16).collect()
    } else {
        (100..speech.len())
            .filter(|&i| speech[i].loud && speech.get(i + 1).is_none_or(|p| !p.loud))
            .take(16)
            .collect()
    };
    let (mut total, mut turns) = (0usize, 0u32);
    for end in ends {
        let mut decoder = FrameDecoder::new(format)?;
        let mut vad = VoiceDetector::new(rate, VadConfig::default())?;
        let start = end - 100;
        let packets = speech[start..=end]
            .iter()
            .map(|p| &p.payload[..])
            .chain(audio.noise.iter().cycle().take(40).map(|p| &p[..]));
        let mut last_voiced = None;
        for (k, payload) in packets.enumerate() {
            if decoder.decode(payload).is_err() {
                continue;
            }
            while let Some(frame) = decoder.next_frame() {
                let at = FRAME * k as u32;
                if vad.process(at, &frame).voiced == Some(true) {
                    last_voiced = Some(k);
                }
            }
        }
        if let Some(k) = last_voiced {
            total += k.saturating_sub(end - start);
            turns += 1;
        }
    }
    Ok(if turns == 0 {
        Duration::ZERO
    } else {
        FRAME * total as u32 / turns
    })
}

/// Reads a 16 kHz mono 16-bit WAV and normalises its peak to -3 dBFS.
fn load_wav(path: &Path) -> Result<Vec<i16>, HarnessError> {
    let fail = |reason: String| HarnessError::Wav {
        path: path.display().to_string(),
        reason,
    };
    let reader = hound::WavReader::open(path).map_err(|e| fail(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != 16_000
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(fail(format!(
            "expected 16 kHz mono 16-bit PCM, found {} Hz, {} channel(s), {}-bit {:?}",
            spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
        )));
    }
    let mut pcm = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    if peak > 0 {
        let gain = 0.708 * 32767.0 / f32::from(peak);
        for s in &mut pcm {
            *s = (f32::from(*s) * gain).round().clamp(-32768.0, 32767.0) as i16;
        }
    }
    Ok(pcm)
}

/// A small deterministic generator (numbering, turn lengths, noise).
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

// ---------------------------------------------------------------------------------------------
// What every call shares

struct Shared {
    config: LoadConfig,
    audio: CallerAudio,
    /// The TTS stand-in's voice: 5 s of the voiced signal at the codec's agent rate (what the
    /// engine asks the TTS for), looped.
    tts_clip: Arc<[i16]>,
    /// See [`vad_tail`].
    vad_tail: Duration,
    /// Every call's latency samples.
    samples: LatencySamples,
    /// How long the stand-ins' waits really took, over all calls.
    waits: StandInWaits,
    /// The calls' shared load shedder (`--load-shedding on`).
    shedder: Option<Arc<LoadShedder>>,
}

/// The stand-ins' wait logs, shared by every call.
#[derive(Default)]
struct StandInWaits {
    stt_final: Arc<WaitLog>,
    llm_first_token: Arc<WaitLog>,
    llm_token: Arc<WaitLog>,
    tts_first_byte: Arc<WaitLog>,
}

/// The latency samples of all calls, in fixed histograms that the callers and hosts record into
/// as they go: a long run's bookkeeping does not grow with its turns.
struct LatencySamples {
    /// Voice-to-voice on the wire at the caller: its last speech packet sent → first audible agent
    /// packet received.
    v2v: Histogram,
    /// Barge-in on the wire: the caller's first speech packet sent → the end of the last audible
    /// agent packet (its arrival + 20 ms).
    barge_in: Histogram,
    /// The engine's own voice-to-voice figure per turn (`Latency` events, whole ms).
    v2v_reported: Histogram,
    /// Model request → first token, as the engine saw it, per turn.
    llm_first_token: Histogram,
    /// Text → first TTS audio, as the engine saw it, per turn.
    tts_first_audio: Histogram,
}

impl LatencySamples {
    fn new() -> LatencySamples {
        let wire = || Histogram::new(LATENCY_BIN, LATENCY_RANGE);
        let whole_ms = || Histogram::new(Duration::from_millis(1), LATENCY_RANGE);
        LatencySamples {
            v2v: wire(),
            barge_in: wire(),
            v2v_reported: whole_ms(),
            llm_first_token: whole_ms(),
            tts_first_audio: whole_ms(),
        }
    }
}

impl Shared {
    fn media_config(&self, caller: SocketAddr) -> Result<MediaConfig, HarnessError> {
        let codec = self.config.codec;
        let mut registry = PayloadRegistry::new();
        if codec == Codec::Opus {
            registry
                .insert(OPUS_PT, codec.engine_format())
                .map_err(|e| HarnessError::Registry(e.to_string()))?;
        }
        let mut media = MediaConfig::new(registry, codec.payload_type());
        media.remote = Some(caller);
        media.opus.complexity = self.config.complexity;
        media.opus_shed_complexity = self.config.shed_complexity;
        Ok(media)
    }

    fn settings(&self) -> CallSettings {
        let mut settings = CallSettings {
            first_message: Some(GREETING.to_string()),
            ..Default::default()
        };
        if !self.config.pause_on_speech {
            settings.turn.false_interruption_timeout = None;
        }
        settings.history_limit = self.config.history_limit;
        settings
    }

    fn providers(&self, call: usize) -> ProviderSet {
        let latencies = self.config.providers;
        // More transcripts than the call can have turns (each turn is at least 3 s of talk).
        let turns = (self.config.seconds / 3 + 8) as usize;
        let script = (0..turns).map(|k| USER_LINES[(call + k) % USER_LINES.len()]);
        let mut stt = ScriptedStt::new(script);
        stt.final_latency = latencies.stt_final;
        stt.final_waits = self.waits.stt_final.clone();
        let mut llm = ScriptedLlm::always(REPLY);
        llm.first_token_latency = latencies.llm_first_token;
        llm.token_interval = latencies.llm_token_interval;
        llm.record_requests = false;
        llm.first_token_waits = self.waits.llm_first_token.clone();
        llm.token_waits = self.waits.llm_token.clone();
        let tts = ScriptedTts {
            first_byte_latency: latencies.tts_first_byte,
            clip: Some(self.tts_clip.clone()),
            rate: self.config.codec.agent_rate(),
            first_byte_waits: self.waits.tts_first_byte.clone(),
            ..Default::default()
        };
        ProviderSet {
            stt: Some(Arc::new(stt)),
            llm: Some(Arc::new(llm)),
            tts: Some(Arc::new(tts)),
            realtime: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The simulated caller

/// What one simulated caller sent and observed.
#[derive(Debug, Default)]
struct CallerReport {
    /// Speech packets sent.
    speech_packets: u64,
    /// Room-noise packets sent.
    noise_packets: u64,
    /// Packets the socket refused (full buffer or an error).
    send_failures: u64,
    /// Caller ticks more than 10 ms late (the harness itself was short of CPU).
    late_ticks: u64,
    /// Agent packets received.
    agent_packets: u64,
    /// Agent packets that decoded to audible audio.
    agent_audible: u64,
    /// Agent packets missing from the sequence.
    agent_lost: u64,
    /// Agent datagrams that were not valid RTP.
    agent_invalid: u64,
    /// Barge-ins after which the agent was still audible when the caller stopped talking.
    barge_in_failed: u32,
    /// Turns after which no agent audio came within [`NO_ANSWER`].
    unanswered: u32,
}

/// An interruption being measured.
#[derive(Debug, Default)]
struct BargeIn {
    /// When the caller's first speech packet reached the engine's side of the network (its
    /// send time plus its network jitter).
    onset: Option<Instant>,
    /// The last audible agent packet after the onset.
    last_audible: Option<Instant>,
    /// The agent has been inaudible for [`BARGE_IN_SETTLED`]: measured.
    settled: bool,
}

/// The caller's side of the conversation.
#[derive(Debug)]
enum Phase {
    /// Listening to the agent (greeting or answer) and sending room noise.
    Listen {
        since: Instant,
        /// First audible agent packet of this answer.
        heard: Option<Instant>,
        /// Interrupt this answer.
        barge_in: bool,
    },
    /// Talking: sending the speech reel.
    Talk {
        until: Instant,
        hard_stop: Instant,
        last_loud: Option<Instant>,
        barge: Option<BargeIn>,
    },
    /// Done talking: waiting for the agent's answer.
    Wait { speech_end: Instant },
}

/// A simulated caller: its RTP stream, its decoder and its turn-taking.
struct Caller {
    shared: Arc<Shared>,
    sender: RtpSender,
    decoder: FrameDecoder,
    rng: Lcg,
    cursor: usize,
    noise_at: usize,
    phase: Phase,
    answers: u32,
    last_audible: Option<Instant>,
    expected_seq: Option<u16>,
    packet: [u8; 1600],
    /// The agent frame being checked for sound (reused: no 2 KB frame built per packet).
    heard: AudioFrame,
    report: CallerReport,
    /// Draws each packet's network jitter (its own generator, so runs without jitter talk as
    /// they always did).
    jitter_rng: Lcg,
}

impl Caller {
    /// Caller `index`, listening for the greeting from `answered_at` on.
    fn new(
        index: usize,
        shared: Arc<Shared>,
        answered_at: Instant,
    ) -> Result<Caller, HarnessError> {
        let codec = shared.config.codec;
        let mut rng = Lcg::new(index as u64 + 1);
        let mut sender = RtpSender::new(SenderConfig {
            ssrc: rng.next_u64() as u32,
            payload_type: codec.payload_type(),
            initial_sequence: rng.next_u64() as u16,
            initial_timestamp: rng.next_u64() as u32,
            ticks_per_frame: codec.ticks_per_frame(),
        })?;
        sender.start_talk_spurt();
        let listen_format = match codec {
            // The cheapest rate to tell sound from silence; libopus decodes any packet at any rate.
            Codec::Opus => PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz8000,
            },
            Codec::Pcmu => PayloadFormat::Pcmu,
        };
        let cursor = (index * 7919) % shared.audio.speech.len();
        Ok(Caller {
            decoder: FrameDecoder::new(listen_format)?,
            shared,
            sender,
            rng,
            cursor,
            noise_at: 0,
            phase: Phase::Listen {
                since: answered_at,
                heard: None,
                barge_in: false,
            },
            answers: 0,
            last_audible: None,
            expected_seq: None,
            packet: [0; 1600],
            heard: AudioFrame::silent(SampleRate::Hz8000),
            jitter_rng: Lcg::new(0x6a09_e667 ^ index as u64),
            report: CallerReport::default(),
        })
    }

    fn start_talking(&mut self, now: Instant, barge: bool) {
        let spread = self.rng.next_u64() % (2 * TALK_SPREAD_MS + 1);
        let talk = (self.shared.config.talk + Duration::from_millis(spread))
            .saturating_sub(Duration::from_millis(TALK_SPREAD_MS));
        self.phase = Phase::Talk {
            until: now + talk,
            hard_stop: now + talk + MAX_TALK_EXTENSION,
            last_loud: None,
            barge: barge.then(BargeIn::default),
        };
    }

    /// One 20 ms tick: turn-taking, then the packet to send now and how long the network holds
    /// it first (its jitter).
    fn on_tick(&mut self, now: Instant) -> Result<(&[u8], Duration), HarnessError> {
        let max_us = self.shared.config.net_jitter.as_micros() as u64;
        let jitter = match max_us {
            0 => Duration::ZERO,
            m => Duration::from_micros(self.jitter_rng.next_u64() % (m + 1)),
        };
        // Where the packet is on the wire to the engine: what its latencies count from.
        let arrives = now + jitter;
        match self.phase {
            Phase::Listen {
                since,
                heard,
                barge_in,
            } => {
                let agent_recent = self.last_audible.is_some_and(|t| now < t + 5 * FRAME);
                let agent_done = self.last_audible.is_some_and(|t| now >= t + REPLY_GAP);
                match heard {
                    Some(h) if barge_in && agent_recent && now >= h + BARGE_IN_AFTER => {
                        self.start_talking(now, true)
                    }
                    Some(_) if agent_done => self.start_talking(now, false),
                    None if now >= since + NO_ANSWER => {
                        self.report.unanswered += 1;
                        self.start_talking(now, false);
                    }
                    _ => {}
                }
            }
            Phase::Wait { speech_end } => {
                if now >= speech_end + NO_ANSWER {
                    self.report.unanswered += 1;
                    self.start_talking(now, false);
                }
            }
            Phase::Talk { .. } => {}
        }
        let reel = &self.shared.audio.speech;
        let (payload, loud): (&[u8], bool) = if matches!(self.phase, Phase::Talk { .. }) {
            let p = &reel[self.cursor];
            self.cursor = (self.cursor + 1) % reel.len();
            self.report.speech_packets += 1;
            (&p.payload, p.loud)
        } else {
            let noise = &self.shared.audio.noise;
            let p = &noise[self.noise_at % noise.len()];
            self.noise_at += 1;
            self.report.noise_packets += 1;
            (p, false)
        };
        let n = self.sender.write_frame(payload, &mut self.packet)?;
        if let Phase::Talk {
            until,
            hard_stop,
            last_loud,
            barge,
        } = &mut self.phase
        {
            // The packet leaves right after this tick and reaches the engine's side at
            // `arrives` (`now` without network jitter).
            if loud {
                *last_loud = Some(arrives);
                if let Some(b) = barge.as_mut() {
                    b.onset.get_or_insert(arrives);
                }
            }
            if let Some(b) = barge.as_mut().filter(|b| !b.settled) {
                if let Some(onset) = b.onset {
                    match b.last_audible {
                        Some(t) if now >= t + BARGE_IN_SETTLED => {
                            b.settled = true;
                            // The agent is silent once the last audible packet's 20 ms have played.
                            let silent = t + FRAME;
                            self.shared
                                .samples
                                .barge_in
                                .record(silent.saturating_duration_since(onset));
                        }
                        // The agent had already stopped on its own: nothing to measure.
                        None if now >= onset + BARGE_IN_SETTLED => b.settled = true,
                        _ => {}
                    }
                }
            }
            let next_quiet = !reel[self.cursor].loud;
            let natural_end = loud && (next_quiet || self.shared.audio.all_loud);
            if (now >= *until && natural_end) || now >= *hard_stop {
                let failed = barge.as_ref().is_some_and(|b| !b.settled);
                let end = *last_loud;
                self.phase = match end {
                    _ if failed => {
                        // The agent talked through the interruption: listen to it finish.
                        self.report.barge_in_failed += 1;
                        Phase::Listen {
                            since: now,
                            heard: Some(now),
                            barge_in: false,
                        }
                    }
                    Some(speech_end) => Phase::Wait { speech_end },
                    None => Phase::Listen {
                        since: now,
                        heard: None,
                        barge_in: false,
                    },
                };
            }
        }
        Ok((&self.packet[..n], jitter))
    }

    /// An agent packet arrived at `now`.
    fn on_agent_packet(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(packet) = RtpPacket::parse(datagram) else {
            self.report.agent_invalid += 1;
            return;
        };
        self.report.agent_packets += 1;
        let seq = packet.sequence();
        match self.expected_seq {
            Some(expected) => {
                let ahead = seq.wrapping_sub(expected);
                if ahead < 0x8000 {
                    self.report.agent_lost += u64::from(ahead);
                    self.expected_seq = Some(seq.wrapping_add(1));
                }
            }
            None => self.expected_seq = Some(seq.wrapping_add(1)),
        }
        let mut audible = false;
        if self.decoder.decode(packet.payload()).is_ok() {
            while self.decoder.next_frame_into(&mut self.heard) {
                audible |= self.heard.level_dbfs() > AUDIBLE_DBFS;
            }
        }
        if !audible {
            return;
        }
        self.report.agent_audible += 1;
        self.last_audible = Some(now);
        match &mut self.phase {
            Phase::Wait { speech_end } => {
                self.shared
                    .samples
                    .v2v
                    .record(now.saturating_duration_since(*speech_end));
                self.answers += 1;
                let every = self.shared.config.barge_in_every;
                self.phase = Phase::Listen {
                    since: now,
                    heard: Some(now),
                    barge_in: self.answers.checked_rem(every) == Some(0),
                };
            }
            Phase::Listen { heard, .. } => {
                heard.get_or_insert(now);
            }
            Phase::Talk { barge: Some(b), .. } => {
                if b.onset.is_some() && !b.settled {
                    b.last_audible = Some(now);
                }
            }
            Phase::Talk { barge: None, .. } => {}
        }
    }
}

/// Streams the caller's RTP until `until`, answering the agent as a person would.
async fn run_caller<T: PacketTransport>(
    mut caller: Caller,
    mut socket: T,
    engine: SocketAddr,
    until: Instant,
) -> Result<CallerReport, HarnessError> {
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut buf = [0u8; 2048];
    // Packets the network still holds (with `--net-jitter-ms`), in the order they will arrive.
    let in_flight = caller.shared.config.net_jitter.as_millis() as usize / 20 + 2;
    let mut held: VecDeque<(Instant, usize, [u8; 1600])> = VecDeque::with_capacity(in_flight);
    let far = Instant::now() + Duration::from_secs(86_400);
    let release = tokio::time::sleep_until(far);
    tokio::pin!(release);
    loop {
        tokio::select! {
            () = &mut release, if !held.is_empty() => {
                let now = Instant::now();
                while held.front().is_some_and(|(at, _, _)| *at <= now) {
                    if let Some((_, n, packet)) = held.pop_front() {
                        if !matches!(socket.send_to(&packet[..n], engine), Ok(true)) {
                            caller.report.send_failures += 1;
                        }
                    }
                }
                release.as_mut().reset(held.front().map_or(far, |h| h.0));
            }
            due = tick.tick() => {
                // Agent packets waiting since the last tick (a polled socket), at their
                // kernel arrival stamps, so the latencies measured do not move.
                while let Some((n, from, at)) =
                    socket.try_recv_stamped(&mut buf).map_err(io("receiving agent RTP"))?
                {
                    if from == engine {
                        caller.on_agent_packet(at.unwrap_or_else(Instant::now), &buf[..n]);
                    }
                }
                let now = Instant::now();
                if now >= until {
                    break;
                }
                if now.saturating_duration_since(due) > LATE {
                    caller.report.late_ticks += 1;
                }
                let (packet, jitter) = caller.on_tick(now)?;
                if jitter.is_zero() {
                    if !matches!(socket.send_to(packet, engine), Ok(true)) {
                        caller.report.send_failures += 1;
                    }
                } else {
                    let at = now + jitter;
                    let mut copy = [0u8; 1600];
                    copy[..packet.len()].copy_from_slice(packet);
                    let i = held.partition_point(|(t, _, _)| *t <= at);
                    held.insert(i, (at, packet.len(), copy));
                    if i == 0 {
                        release.as_mut().reset(at);
                    }
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (n, from) = received.map_err(io("receiving agent RTP"))?;
                if from == engine {
                    caller.on_agent_packet(Instant::now(), &buf[..n]);
                }
            }
        }
    }
    Ok(caller.report)
}

// ---------------------------------------------------------------------------------------------
// One call

/// What the host saw on a call's event stream (its latencies go to the shared histograms).
#[derive(Debug, Default)]
struct EventSummary {
    interruptions: u32,
    provider_errors: u32,
}

async fn drain_events(mut events: EventStream, shared: Arc<Shared>) -> EventSummary {
    let mut summary = EventSummary::default();
    let samples = &shared.samples;
    while let Some(record) = events.next().await {
        match record.event {
            CallEvent::Latency { latency, .. } => {
                samples
                    .v2v_reported
                    .record(Duration::from_millis(latency.voice_to_voice_ms));
                if let Some(ms) = latency.llm_first_token_ms {
                    samples.llm_first_token.record(Duration::from_millis(ms));
                }
                if let Some(ms) = latency.tts_first_audio_ms {
                    samples.tts_first_audio.record(Duration::from_millis(ms));
                }
            }
            CallEvent::AgentInterrupted { .. } => summary.interruptions += 1,
            CallEvent::ProviderError { .. } => summary.provider_errors += 1,
            _ => {}
        }
    }
    summary
}

/// Everything measured on one call.
struct CallResult {
    /// When the call's task was handed to the engine (its media clock starts right after).
    started: std::time::Instant,
    end_reason: EndReason,
    media: MediaCounters,
    inbound: InboundCounters,
    inbound_lost: u64,
    jitter: Option<JitterStats>,
    outbound: OutboundCounters,
    unsent: u64,
    caller: CallerReport,
    events: EventSummary,
    /// Messages in the conversation history when the call ended.
    history_messages: usize,
    /// Their heap, estimated: see [`history_bytes`].
    history_bytes: usize,
}

/// The heap a conversation history holds, estimated: the vector's capacity in messages and the
/// capacity of every text in them (allocator overhead not included).
fn history_bytes(history: &[ChatMessage], capacity: usize) -> usize {
    let strings = history.iter().map(|m| {
        m.content.capacity()
            + m.tool_call_id.as_ref().map_or(0, String::capacity)
            + m.tool_calls.capacity() * std::mem::size_of::<ToolCallRequest>()
            + m.tool_calls
                .iter()
                .map(|c| c.id.capacity() + c.name.capacity() + c.arguments.capacity())
                .sum::<usize>()
    });
    capacity * std::mem::size_of::<ChatMessage>() + strings.sum::<usize>()
}

fn bind_loopback() -> Result<(std::net::UdpSocket, SocketAddr), HarnessError> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(io(
        "binding a UDP socket on 127.0.0.1 (too many calls for `ulimit -n`?)",
    ))?;
    socket
        .set_nonblocking(true)
        .map_err(io("making a UDP socket non-blocking"))?;
    let addr = socket
        .local_addr()
        .map_err(io("reading a socket address"))?;
    Ok((socket, addr))
}

/// Runs call `index` from `start` for the configured length: engine task on `engine`, caller on
/// the current runtime.
/// The engine's threads: a per-core worker pool or one shared runtime.
enum EngineRuntime {
    PerCore(CallWorkers),
    Shared(tokio::runtime::Runtime),
}

impl EngineRuntime {
    /// Starts the engine's threads with `priority`; a priority the system refuses is an error
    /// (the run would not measure what was asked).
    fn new(
        kind: RuntimeKind,
        threads: usize,
        priority: ThreadPriority,
    ) -> Result<Self, HarnessError> {
        Ok(match kind {
            RuntimeKind::PerCore => {
                let pool = CallWorkers::new(threads, ENGINE_THREAD)
                    .map_err(io("starting the engine workers"))?;
                pool.set_priority(priority)?;
                EngineRuntime::PerCore(pool)
            }
            RuntimeKind::Shared => EngineRuntime::Shared(
                with_priority(
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(threads)
                        .thread_name(ENGINE_THREAD),
                    priority,
                )?
                .enable_all()
                .build()
                .map_err(io("starting the engine runtime"))?,
            ),
        })
    }

    /// Where call `index` runs: calls go round-robin over the workers (every call lives to
    /// the end of the run, so that is also the least loaded worker at each start).
    fn for_call(&self, index: usize) -> EngineThread {
        match self {
            EngineRuntime::PerCore(pool) => EngineThread::Worker(pool.worker(index).clone()),
            EngineRuntime::Shared(rt) => EngineThread::Shared(rt.handle().clone()),
        }
    }

    fn shut_down(self) {
        match self {
            EngineRuntime::PerCore(pool) => drop(pool),
            EngineRuntime::Shared(rt) => rt.shutdown_timeout(Duration::from_secs(2)),
        }
    }
}

/// How a priority reads in the report.
fn priority_name(priority: ThreadPriority) -> String {
    match priority {
        ThreadPriority::Normal => "normal".to_string(),
        ThreadPriority::Realtime(p) => format!("realtime (SCHED_FIFO {p})"),
    }
}

/// Makes every thread `builder` starts take `priority`, once a scratch thread has shown that
/// this process may give it (the error says why not), so the runtime's threads cannot fail to.
fn with_priority(
    builder: &mut tokio::runtime::Builder,
    priority: ThreadPriority,
) -> Result<&mut tokio::runtime::Builder, HarnessError> {
    std::thread::spawn(move || set_current_thread_priority(priority))
        .join()
        .map_err(|_| HarnessError::Config("the priority check panicked"))??;
    Ok(builder.on_thread_start(move || {
        let _ = set_current_thread_priority(priority);
    }))
}

/// The engine thread(s) one call runs on.
#[derive(Clone)]
enum EngineThread {
    Worker(CallWorker),
    Shared(tokio::runtime::Handle),
}

impl EngineThread {
    fn handle(&self) -> &tokio::runtime::Handle {
        match self {
            EngineThread::Worker(w) => w.handle(),
            EngineThread::Shared(h) => h,
        }
    }

    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            EngineThread::Worker(w) => w.spawn(task),
            EngineThread::Shared(h) => h.spawn(task),
        }
    }
}

async fn one_call(
    index: usize,
    start: Instant,
    shared: Arc<Shared>,
    engine: EngineThread,
) -> Result<CallResult, HarnessError> {
    tokio::time::sleep_until(start).await;
    let (engine_std, engine_addr) = bind_loopback()?;
    let (caller_std, caller_addr) = bind_loopback()?;
    let media = shared.media_config(caller_addr)?;
    match shared.config.caller_socket {
        SocketKind::Polled => {
            let caller_socket =
                PolledUdpSocket::new(caller_std).map_err(io("setting up a caller socket"))?;
            engine_side(
                index,
                caller_socket,
                engine_std,
                engine_addr,
                &media,
                shared,
                engine,
            )
            .await
        }
        SocketKind::Reactor => {
            let caller_socket =
                UdpSocket::from_std(caller_std).map_err(io("registering the caller socket"))?;
            engine_side(
                index,
                caller_socket,
                engine_std,
                engine_addr,
                &media,
                shared,
                engine,
            )
            .await
        }
    }
}

/// Sets up the engine's socket as configured and runs the call.
async fn engine_side<C: PacketTransport>(
    index: usize,
    caller_socket: C,
    engine_std: std::net::UdpSocket,
    engine_addr: SocketAddr,
    media: &MediaConfig,
    shared: Arc<Shared>,
    engine: EngineThread,
) -> Result<CallResult, HarnessError> {
    match shared.config.engine_socket {
        SocketKind::Polled => {
            let socket =
                PolledUdpSocket::new(engine_std).map_err(io("setting up a call socket"))?;
            let port = RtpPort::new(socket, media)?;
            run_call(index, port, caller_socket, engine_addr, shared, engine).await
        }
        SocketKind::Reactor => {
            let port = {
                // The engine's socket belongs to the engine runtime's reactor.
                let _entered = engine.handle().enter();
                let socket =
                    UdpSocket::from_std(engine_std).map_err(io("registering the engine socket"))?;
                RtpPort::new(socket, media)?
            };
            run_call(index, port, caller_socket, engine_addr, shared, engine).await
        }
    }
}

/// Runs one call's engine task on `engine` and its caller here, and collects both sides.
async fn run_call<T: PacketTransport, C: PacketTransport>(
    index: usize,
    port: RtpPort<T>,
    caller_socket: C,
    engine_addr: SocketAddr,
    shared: Arc<Shared>,
    engine: EngineThread,
) -> Result<CallResult, HarnessError> {
    let options = DriverOptions {
        auto_answer: false,
        align_media_phase: shared.config.phase_align,
        catch_up_in_pauses: shared.config.catch_up,
        tick_snap: shared.config.tick_snap,
        media_clock: shared.config.media_clock,
        load_shedding: shared.shedder.clone(),
        ..DriverOptions::default()
    };
    let (task, control, events) =
        new_call(shared.settings(), shared.providers(index), port, options);
    let now = Instant::now();
    // Spread by the plastic number, unrelated to the clock phases' golden-ratio spread.
    let answer_delay = shared
        .config
        .answer_spread
        .mul_f64((index as f64 * 0.754_877_666_25).fract());
    let caller = Caller::new(index, shared.clone(), now + answer_delay)?;
    let until = now + Duration::from_secs(shared.config.seconds);
    let started = std::time::Instant::now();
    let call = engine.spawn(task.run_with_port());
    let host = tokio::spawn(drain_events(events, shared.clone()));
    let answer = {
        let control = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(answer_delay).await;
            let _ = control.answer();
        })
    };
    let caller = run_caller(caller, caller_socket, engine_addr, until).await;
    // The caller hangs up whatever happened on its side.
    answer.abort();
    let _ = control.hang_up();
    let (outcome, port) = call.await.map_err(|e| HarnessError::Task(e.to_string()))?;
    let events = host.await.map_err(|e| HarnessError::Task(e.to_string()))?;
    let caller = caller?;
    Ok(CallResult {
        started,
        history_messages: outcome.history.len(),
        history_bytes: history_bytes(&outcome.history, outcome.history.capacity()),
        end_reason: outcome.end_reason,
        media: outcome.media,
        inbound: port.inbound().counters(),
        inbound_lost: port
            .inbound()
            .receiver_stats()
            .map_or(0, |s| s.cumulative_lost().max(0) as u64),
        jitter: port.inbound().jitter_stats(),
        outbound: port.outbound().counters(),
        unsent: port.unsent,
        caller,
        events,
    })
}

/// Starts every call at its staggered time and collects them; samples RSS meanwhile.
async fn drive(
    shared: Arc<Shared>,
    engine: &EngineRuntime,
) -> (Result<Vec<CallResult>, HarnessError>, RssSeries) {
    let t0 = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let sampler = tokio::spawn(sample_rss(stopped));
    let n = shared.config.calls;
    let joins: Vec<_> = (0..n)
        .map(|i| {
            // Evenly over the stagger window, plus a phase within the 20 ms frame spread by the
            // golden ratio: real calls' clocks tick at unrelated phases, and a window that is a
            // multiple of 20 ms per call would otherwise line every call's clock up.
            let phase = FRAME.mul_f64((i as f64 * 0.618_033_988_75).fract());
            let offset = shared.config.stagger.mul_f64(i as f64 / n as f64) + phase;
            let engine = engine.for_call(i);
            tokio::spawn(one_call(i, t0 + offset, shared.clone(), engine))
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    let mut first_error = None;
    for join in joins {
        match join.await {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(HarnessError::Task(e.to_string()));
            }
        }
    }
    let _ = stop.send(());
    let rss = sampler
        .await
        .unwrap_or_else(|_| RssSeries::new(RSS_INTERVAL, RSS_READINGS));
    match first_error {
        Some(e) => (Err(e), rss),
        None => (Ok(results), rss),
    }
}

/// The probe's sleep, and the lateness from which it records a stall.
const PROBE_SLEEP: Duration = Duration::from_millis(1);
const PROBE_STALL: Duration = Duration::from_millis(5);

/// One stall a probe saw: when it woke (from the load's start), how late, and the CPU the probe
/// is pinned to (`None`: it could not be pinned and ran wherever the scheduler put it).
type Stall = (Duration, Duration, Option<usize>);

/// How long the probe's fixed piece of work takes on an unhindered CPU, about.
const PROBE_WORK: Duration = Duration::from_micros(5);
/// A probe's work taking this many times its calibrated time is a slow wake-up.
const PROBE_SLOWDOWN: f64 = 4.0;
/// Of a probe's last [`SLOWDOWN_OF`] wake-ups (about as many milliseconds), this many slow ones
/// make a slowdown of its CPU. One slow wake-up alone is mostly an interrupt that landed in the
/// work (the loopback traffic of a thousand calls raises many); a run of them is the CPU itself.
const SLOWDOWN_SLOW: u32 = 3;
const SLOWDOWN_OF: u32 = 5;

/// One slowdown a probe saw: when (from the load's start), how many times its calibrated time
/// its work took, and its CPU.
type Slowdown = (Duration, f64, Option<usize>);

/// The probe's fixed work: `n` dependent multiply-adds, which no compiler can skip.
fn probe_work(n: u32) -> u64 {
    let mut x = 1u64;
    for _ in 0..n {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// The median time of `probe_work(n)` over `rounds` runs.
fn probe_work_time(n: u32, rounds: usize) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(probe_work(n));
            start.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

/// Iterations of [`probe_work`] that take about [`PROBE_WORK`] here, and their median time.
fn calibrate_probe_work() -> (u32, Duration) {
    let trial = 1_000u32;
    let t = probe_work_time(trial, 21).max(Duration::from_nanos(1));
    let n = ((PROBE_WORK.as_nanos() * u128::from(trial)) / t.as_nanos()).clamp(1, 1 << 24) as u32;
    (n, probe_work_time(n, 41))
}

/// Threads that sleep [`PROBE_SLEEP`] at a time, one pinned to each CPU the process may use, and
/// record when they wake more than [`PROBE_STALL`] late: a stall of that CPU (the kernel, the
/// hypervisor, other tenants), since the threads do nothing else. A stall of one vCPU holds
/// whichever threads were on it, so one probe per CPU sees what one unpinned probe can miss.
///
/// The probes run at real-time priority [`PROBE_RT_PRIORITY`] where the system allows it. A
/// time-shared probe also waits for this machine's scheduler — behind the engine's and the
/// callers' threads on its CPU, a slice of a few ms — and counts that as a stall; at
/// real-time priority only a stall of the vCPU itself (or of the kernel) makes it late.
///
/// A vCPU can also run slow without stopping (the host sharing its core more finely, another
/// tenant on its sibling thread): every wake-up, each probe also times a fixed piece of work
/// calibrated to [`PROBE_WORK`], and records a slowdown when it takes [`PROBE_SLOWDOWN`] times
/// its calibrated time or more at [`SLOWDOWN_SLOW`] of [`SLOWDOWN_OF`] wake-ups in a row.
struct StallProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<ProbeThreadReport>>,
    cpus: Vec<usize>,
}

/// What one probe thread saw.
#[derive(Default)]
struct ProbeThreadReport {
    stalls: Vec<Stall>,
    slowdowns: Vec<Slowdown>,
    realtime: bool,
    work: Duration,
}

/// What the probes saw.
#[derive(Default)]
struct ProbeReport {
    /// The CPUs probed (empty: one unpinned probe).
    cpus: Vec<usize>,
    /// Every probe's stalls, in the order they ended.
    stalls: Vec<Stall>,
    /// Every probe's slowdowns, in time order.
    slowdowns: Vec<Slowdown>,
    /// Every probe ran at real-time priority.
    realtime: bool,
    /// The probes' calibrated work time (the longest of them).
    work: Duration,
}

impl StallProbe {
    /// Starts probing; stall times are counted from `epoch`.
    fn start(epoch: std::time::Instant) -> Result<StallProbe, HarnessError> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cpus = affinity::allowed_cpus();
        let places: Vec<Option<usize>> = if cpus.is_empty() {
            vec![None]
        } else {
            cpus.iter().copied().map(Some).collect()
        };
        let mut threads = Vec::new();
        for place in places {
            let flag = stop.clone();
            let name = place.map_or("vx-probe".to_string(), |cpu| format!("vx-probe-{cpu}"));
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let cpu = place.filter(|&cpu| affinity::pin_to(cpu));
                    let realtime =
                        set_current_thread_priority(ThreadPriority::Realtime(PROBE_RT_PRIORITY))
                            .is_ok();
                    let (n, work) = calibrate_probe_work();
                    let slow = work.mul_f64(PROBE_SLOWDOWN);
                    let mut stalls = Vec::new();
                    let mut slowdowns = Vec::new();
                    // The last `SLOWDOWN_OF` wake-ups, a bit each, set when slow.
                    let mut recent = 0u32;
                    while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                        let before = std::time::Instant::now();
                        std::thread::sleep(PROBE_SLEEP);
                        let woke = std::time::Instant::now();
                        let late = (woke - before).saturating_sub(PROBE_SLEEP);
                        if late > PROBE_STALL {
                            stalls.push((woke.saturating_duration_since(epoch), late, cpu));
                        }
                        let started = std::time::Instant::now();
                        std::hint::black_box(probe_work(n));
                        let took = started.elapsed();
                        recent =
                            ((recent << 1) | u32::from(took >= slow)) & ((1 << SLOWDOWN_OF) - 1);
                        if took >= slow && recent.count_ones() >= SLOWDOWN_SLOW {
                            let factor = took.as_secs_f64() / work.as_secs_f64();
                            slowdowns.push((woke.saturating_duration_since(epoch), factor, cpu));
                        }
                    }
                    ProbeThreadReport {
                        stalls,
                        slowdowns,
                        realtime,
                        work,
                    }
                })
                .map_err(io("starting the stall probe"))?;
            threads.push(thread);
        }
        Ok(StallProbe {
            stop,
            threads,
            cpus,
        })
    }

    /// Stops probing and reports what the probes saw.
    fn finish(self) -> ProbeReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut stalls = Vec::new();
        let mut slowdowns = Vec::new();
        let mut realtime = true;
        let mut work = Duration::ZERO;
        for thread in self.threads {
            let seen = thread.join().unwrap_or_default();
            stalls.extend(seen.stalls);
            slowdowns.extend(seen.slowdowns);
            realtime &= seen.realtime;
            work = work.max(seen.work);
        }
        stalls.sort_by_key(|s| s.0);
        slowdowns.sort_by_key(|s| s.0);
        ProbeReport {
            cpus: self.cpus,
            stalls,
            slowdowns,
            realtime,
            work,
        }
    }
}

/// The CPUs this process may run on, and pinning a thread to one (Linux; elsewhere the probe
/// runs unpinned).
#[cfg(target_os = "linux")]
mod affinity {
    /// The CPUs in this thread's affinity mask (empty if it cannot be read).
    pub fn allowed_cpus() -> Vec<usize> {
        // SAFETY: an all-zero `cpu_set_t` is the empty set; the call writes at most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live `cpu_set_t` of the size passed; 0 is this thread.
        let ok =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if ok != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    }

    /// Pins the calling thread to `cpu`; false if the kernel refuses.
    pub fn pin_to(cpu: usize) -> bool {
        // SAFETY: an all-zero `cpu_set_t` is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` comes from `allowed_cpus`, below CPU_SETSIZE, the set's capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: the set is initialised and its exact size is passed; 0 is this thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
    }
}

#[cfg(not(target_os = "linux"))]
mod affinity {
    pub fn allowed_cpus() -> Vec<usize> {
        Vec::new()
    }

    pub fn pin_to(_cpu: usize) -> bool {
        false
    }
}

/// How many of the misses due at `late` fell inside a probe stall: from 2 ms before the probe's
/// sleep should have ended (it was due `PROBE_SLEEP` before it woke, late by the stall) to
/// when it woke.
fn misses_in_stalls(late: &[Duration], stalls: &[Stall]) -> u64 {
    late.iter().filter(|&&t| in_stall(t, stalls)).count() as u64
}

/// Whether a miss due at `t` fell inside a probe stall (see [`misses_in_stalls`]).
fn in_stall(t: Duration, stalls: &[Stall]) -> bool {
    stalls.iter().any(|&(woke, by, _)| {
        let from = woke.saturating_sub(by + Duration::from_millis(2));
        t >= from && t <= woke
    })
}

/// How far before a slowdown a tick may have been due and still have waited or run through it
/// (a 20 ms frame's deadline and then some), and how far after.
const SLOWDOWN_BEFORE: Duration = Duration::from_millis(30);
const SLOWDOWN_AFTER: Duration = Duration::from_millis(2);

/// Whether a miss due at `t` waited or ran while a probe saw its CPU slowed down: a slowdown
/// seen from [`SLOWDOWN_AFTER`] before the tick was due to [`SLOWDOWN_BEFORE`] after.
fn in_slowdown(t: Duration, slowdowns: &[Slowdown]) -> bool {
    slowdowns
        .iter()
        .any(|&(at, _, _)| at + SLOWDOWN_AFTER >= t && at <= t + SLOWDOWN_BEFORE)
}

/// Reads the process RSS every [`RSS_INTERVAL`] from now until `stop` fires, into a series of
/// fixed size (a late reading is taken at once, so the readings keep their places in time).
async fn sample_rss(mut stop: tokio::sync::oneshot::Receiver<()>) -> RssSeries {
    let mut series = RssSeries::new(RSS_INTERVAL, RSS_READINGS);
    let mut tick = tokio::time::interval(RSS_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut last = proc_status_kib("VmRSS:").unwrap_or(0);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A failed read repeats the last reading rather than shifting the later ones.
                last = proc_status_kib("VmRSS:").unwrap_or(last);
                series.push(last);
            }
            _ = &mut stop => break,
        }
    }
    series
}

// ---------------------------------------------------------------------------------------------
// /proc readings

/// A `/proc/self/status` value in KiB (e.g. `VmRSS:`, `VmHWM:`).
fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Resets the peak RSS (`VmHWM`) so it covers only what follows; false if the kernel refuses.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// User + system CPU of the whole process, from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / USER_HZ))
}

/// CPU time of every live thread of the process: thread id → (name, nanoseconds on CPU).
fn thread_cpu() -> HashMap<u32, (String, u64)> {
    let mut threads = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let Some(ns) = ns {
            threads.insert(tid, (name.trim().to_string(), ns));
        }
    }
    threads
}

/// CPU the threads named `prefix…` used between two [`thread_cpu`] readings.
fn thread_group_cpu(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    prefix: &str,
) -> Duration {
    let ns: u64 = after
        .iter()
        .filter(|(_, (name, _))| name.starts_with(prefix))
        .map(|(tid, (_, ns))| ns.saturating_sub(before.get(tid).map_or(0, |b| b.1)))
        .sum();
    Duration::from_nanos(ns)
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

// ---------------------------------------------------------------------------------------------
// The codec floor

/// Frames the engine pushed through its codecs during the load.
#[derive(Clone, Copy, Debug)]
struct FloorWork {
    /// Caller frames decoded (and run through VAD).
    frames_in: u64,
    /// Share of the caller's packets that were speech (the rest room noise).
    speech_share: f64,
    /// Agent frames of TTS audio encoded (resampled first for G.711).
    agent_frames: u64,
    /// Frames of generated silence encoded (G.711 keeps sending during agent silence).
    silent_frames: u64,
}

/// The floor's result.
#[derive(Clone, Copy, Debug)]
struct Floor {
    /// CPU for all of the load's frames (scaled up from the measured ones when capped).
    cpu: Duration,
    /// Frames actually pushed through.
    frames_measured: u64,
    /// Measured on fewer frames than the load had.
    scaled: bool,
}

/// The load's media for the floor, shared by every stream of it: the caller's packets as RTP
/// (speech reel and room noise) and the TTS stand-in's voice in 20 ms frames.
struct FloorReels {
    speech: Vec<Vec<u8>>,
    noise: Vec<Vec<u8>>,
    tts: Vec<AudioFrame>,
    /// Noise packets after each talk spurt of 150 speech packets (3 s).
    noise_per_block: u64,
}

impl FloorReels {
    fn new(shared: &Shared, speech_share: f64) -> Result<FloorReels, HarnessError> {
        let codec = shared.config.codec;
        let tts_rate = codec.agent_rate();
        let mut sender = RtpSender::new(SenderConfig {
            ssrc: 1,
            payload_type: codec.payload_type(),
            initial_sequence: 0,
            initial_timestamp: 0,
            ticks_per_frame: codec.ticks_per_frame(),
        })?;
        let mut buf = [0u8; 1600];
        let mut rtp = |payload: &[u8]| -> Result<Vec<u8>, HarnessError> {
            let n = sender.write_frame(payload, &mut buf)?;
            Ok(buf[..n].to_vec())
        };
        let speech = shared
            .audio
            .speech
            .iter()
            .map(|p| rtp(&p.payload))
            .collect::<Result<_, _>>()?;
        let noise = shared
            .audio
            .noise
            .iter()
            .map(|p| rtp(p))
            .collect::<Result<_, _>>()?;
        let tts = shared
            .tts_clip
            .chunks_exact(tts_rate.frame_samples())
            .map(|c| AudioFrame::from_samples(tts_rate, c))
            .collect::<Result<_, _>>()?;
        let noise_per_block = if speech_share > 0.0 {
            (((1.0 - speech_share) / speech_share * 150.0).round() as u64).min(1_000_000)
        } else {
            1_000_000
        };
        Ok(FloorReels {
            speech,
            noise,
            tts,
            noise_per_block,
        })
    }
}

/// One stream of the load's frames through the codecs alone: RTP parse + decoder + VAD for the
/// caller's packets (talk spurts and room noise in the load's proportion), resampler + encoder
/// for the agent's frames and for generated silence. One call's codec state.
struct FloorCodecs<'a> {
    reels: &'a FloorReels,
    decoder: FrameDecoder,
    vad: VoiceDetector,
    encoder: FrameEncoder,
    resampler: Option<Resampler>,
    silence: AudioFrame,
    resampled: AudioFrame,
    decoded: AudioFrame,
    payload: [u8; 1500],
    speech_at: usize,
    noise_at: usize,
}

impl<'a> FloorCodecs<'a> {
    fn new(config: &LoadConfig, reels: &'a FloorReels) -> Result<FloorCodecs<'a>, HarnessError> {
        let codec = config.codec;
        let caller_rate = codec.engine_caller_rate();
        let decode_format = match codec {
            Codec::Opus => PayloadFormat::Opus {
                pcm_rate: caller_rate,
            },
            Codec::Pcmu => PayloadFormat::Pcmu,
        };
        let encoder = match codec {
            Codec::Opus => FrameEncoder::from(OpusEncoder::new(
                SampleRate::Hz24000,
                OpusConfig {
                    complexity: config.complexity,
                    ..OpusConfig::default()
                },
            )?),
            Codec::Pcmu => FrameEncoder::new(PayloadFormat::Pcmu, PacketDuration::Ms20)?,
        };
        let enc_rate = encoder.rate();
        let tts_rate = codec.agent_rate();
        let resampler = if enc_rate == tts_rate {
            None
        } else {
            Some(Resampler::new(tts_rate, enc_rate)?)
        };
        Ok(FloorCodecs {
            reels,
            decoder: FrameDecoder::new(decode_format)?,
            vad: VoiceDetector::new(caller_rate, VadConfig::default())?,
            encoder,
            resampler,
            silence: AudioFrame::silent(enc_rate),
            resampled: AudioFrame::silent(enc_rate),
            decoded: AudioFrame::silent(caller_rate),
            payload: [0u8; 1500],
            speech_at: 0,
            noise_at: 0,
        })
    }

    /// The caller's `k`-th packet: parsed, decoded, through the VAD.
    fn caller_frame(&mut self, k: u64) {
        let reels = self.reels;
        let packet = if k % (150 + reels.noise_per_block) < 150 {
            self.speech_at = (self.speech_at + 1) % reels.speech.len();
            &reels.speech[self.speech_at]
        } else {
            self.noise_at = (self.noise_at + 1) % reels.noise.len();
            &reels.noise[self.noise_at]
        };
        if let Ok(p) = RtpPacket::parse(packet) {
            let _ = self.decoder.decode(p.payload());
        }
        if let Some(f) = self.decoder.next_frame() {
            self.decoded = f;
            std::hint::black_box(
                self.vad
                    .process(Duration::from_millis(20 * k), &self.decoded),
            );
        }
    }

    /// The agent's `k`-th frame of speech: resampled where the line's rate differs, encoded.
    fn agent_frame(&mut self, k: u64) {
        let frame = &self.reels.tts[k as usize % self.reels.tts.len()];
        let input = match self.resampler.as_mut() {
            Some(r) => {
                let _ = r.process_into(frame, &mut self.resampled);
                &self.resampled
            }
            None => frame,
        };
        let _ = self.encoder.push_frame(input);
        std::hint::black_box(self.encoder.next_packet(&mut self.payload).ok());
    }

    /// A frame of generated silence, encoded.
    fn silent_frame(&mut self) {
        let _ = self.encoder.push_frame(&self.silence);
        std::hint::black_box(self.encoder.next_packet(&mut self.payload).ok());
    }
}

/// This thread's CPU time so far.
fn this_thread_cpu_now() -> Result<Duration, HarnessError> {
    this_thread_cpu().ok_or(HarnessError::Config("no per-thread CPU clock"))
}

/// Pushes the load's frames through the codecs alone ([`FloorCodecs`]), back to back on this
/// thread, and reads the thread's CPU time.
fn measure_floor(shared: &Shared, work: FloorWork) -> Result<Floor, HarnessError> {
    let cap = shared.config.floor_frames.unwrap_or(u64::MAX);
    let reels = FloorReels::new(shared, work.speech_share)?;
    let mut codecs = FloorCodecs::new(&shared.config, &reels)?;
    let mut measured = 0u64;
    let mut total = Duration::ZERO;
    let mut timed = |count: u64, step: &mut dyn FnMut(u64)| -> Result<(), HarnessError> {
        let n = count.min(cap);
        let t0 = this_thread_cpu_now()?;
        for k in 0..n {
            step(k);
        }
        let t1 = this_thread_cpu_now()?;
        if n > 0 {
            total += (t1 - t0).mul_f64(count as f64 / n as f64);
        }
        measured += n;
        Ok(())
    };
    timed(work.frames_in, &mut |k| codecs.caller_frame(k))?;
    timed(work.agent_frames, &mut |k| codecs.agent_frame(k))?;
    timed(work.silent_frames, &mut |_| codecs.silent_frame())?;
    let all = work.frames_in + work.agent_frames + work.silent_frames;
    Ok(Floor {
        cpu: total,
        frames_measured: measured,
        scaled: measured < all,
    })
}

/// Grid the paced floor's threads wake on: the engine's default tick grid.
const PACED_FLOOR_GRID: Duration = Duration::from_millis(4);

/// The floor paced as the load's media is: for `seconds`, each of the load's calls gets its
/// share of the load's frames every 20 ms through codec state of its own ([`FloorCodecs`]), at
/// its own phase (spread over the 20 ms as the calls' clocks are) snapped to a 4 ms grid, on
/// as many threads as the engine had, each asleep between its grid's slots. No sockets,
/// runtime or engine: the codec work with the load's schedule, and what it costs on this
/// machine when it cannot run back to back (after each sleep an idle vCPU's caches are cold,
/// the more so the busier the host). Returns the threads' CPU (their sleeps' system calls
/// included, as any paced work has them) per call-second.
fn measure_paced_floor(
    shared: &Shared,
    work: FloorWork,
    seconds: u64,
) -> Result<Duration, HarnessError> {
    let config = &shared.config;
    let calls = config.calls.max(1);
    let threads = config.threads.clamp(1, calls);
    let reels = FloorReels::new(shared, work.speech_share)?;
    let ticks = (calls as u64 * config.seconds * 50).max(1) as f64;
    let rates = [
        work.frames_in as f64 / ticks,
        work.agent_frames as f64 / ticks,
        work.silent_frames as f64 / ticks,
    ];
    let slots_per_frame = (FRAME.as_micros() / PACED_FLOOR_GRID.as_micros()).max(1) as usize;
    let start = std::time::Instant::now() + Duration::from_millis(50);
    let cpu = std::thread::scope(|scope| -> Result<Duration, HarnessError> {
        let runs: Vec<_> = (0..threads)
            .map(|t| {
                let (reels, config) = (&reels, config);
                std::thread::Builder::new()
                    .name(format!("vx-floor-{t}"))
                    .spawn_scoped(scope, move || -> Result<Duration, HarnessError> {
                        // This thread's calls: every `threads`-th, each with its slot of the
                        // grid (its phase) and a start in the agent's frames of its own, so
                        // they do not all encode at the same tick.
                        let mine: Vec<usize> = (t..calls).step_by(threads).collect();
                        let mut streams = Vec::with_capacity(mine.len());
                        for &call in &mine {
                            let codecs = FloorCodecs::new(config, reels)?;
                            let slot = call * slots_per_frame / calls;
                            let lead = call as f64 / calls as f64;
                            streams.push((codecs, slot, [lead; 3], [0u64; 3]));
                        }
                        let t0 = this_thread_cpu_now()?;
                        for step in 0..seconds as usize * 50 * slots_per_frame {
                            let next = start + PACED_FLOOR_GRID * step as u32;
                            if let Some(wait) =
                                next.checked_duration_since(std::time::Instant::now())
                            {
                                std::thread::sleep(wait);
                            }
                            let slot = step % slots_per_frame;
                            for (codecs, at, due, done) in streams.iter_mut() {
                                if *at != slot {
                                    continue;
                                }
                                for (kind, rate) in rates.iter().enumerate() {
                                    due[kind] += rate;
                                    while due[kind] >= 1.0 {
                                        due[kind] -= 1.0;
                                        let k = done[kind];
                                        match kind {
                                            0 => codecs.caller_frame(k),
                                            1 => codecs.agent_frame(k),
                                            _ => codecs.silent_frame(),
                                        }
                                        done[kind] += 1;
                                    }
                                }
                            }
                        }
                        Ok(this_thread_cpu_now()? - t0)
                    })
                    .map_err(io("starting a paced floor thread"))
            })
            .collect::<Result<_, _>>()?;
        let mut total = Duration::ZERO;
        for run in runs {
            total += run
                .join()
                .map_err(|_| HarnessError::Config("a paced floor thread panicked"))??;
        }
        Ok(total)
    })?;
    Ok(cpu.div_f64(calls as f64 * seconds.max(1) as f64))
}

// ---------------------------------------------------------------------------------------------
// The report

/// The machine the run was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Cores available to the process.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// 1-minute load average when the run started.
    pub load_average_1m_before: Option<f64>,
    /// 1-minute load average when the calls had ended.
    pub load_average_1m_after: Option<f64>,
}

/// Where voice-to-voice time goes, in milliseconds. The nominal parts follow from the call
/// settings and the stand-ins' latencies; the engine's share is what the wire shows beyond them.
#[derive(Clone, Debug, Serialize)]
pub struct LatencySplit {
    /// VAD hang-over: unvoiced time before the caller counts as stopped.
    pub vad_stop_hangover: f64,
    /// Extra endpointing wait when the minimum delay outlasts hang-over + final transcript.
    pub endpointing_extra: f64,
    /// STT stand-in's final transcript, when on the critical path.
    pub stt_final: f64,
    /// LLM stand-in's first token.
    pub llm_first_token: f64,
    /// Streaming the words up to the first speakable chunk.
    pub llm_stream_to_first_chunk: f64,
    /// TTS stand-in's first audio.
    pub tts_first_byte: f64,
    /// Sum of the above: voice-to-voice with an engine that took no time, had the stand-ins
    /// waited exactly as configured.
    pub nominal_total: f64,
    /// What the stand-ins' waits on the path took beyond their configured lengths, per turn
    /// (their mean excess: tokio timers wake on whole milliseconds). Part of the providers'
    /// latency, so it is taken out of the engine's share along with `nominal_total`.
    pub stand_in_timer_excess: f64,
    /// Voice-to-voice on the wire, median.
    pub v2v_p50: Option<f64>,
    /// The engine's own share (wire − nominal − stand-in timer excess), median.
    pub engine_p50: Option<f64>,
    /// The engine's own share, 99th percentile.
    pub engine_p99: Option<f64>,
    /// What the engine's share is made of, medians: see [`EngineShare`].
    pub engine_share_p50: EngineShare,
    /// The stand-ins' latencies as the engine saw them (1 ms timer granularity shows here).
    pub providers_seen_by_engine_p50: ProvidersSeen,
}

/// The engine's share of voice-to-voice, taken apart (medians, ms).
#[derive(Clone, Debug, Serialize)]
pub struct EngineShare {
    /// The jitter buffer's delay on the caller's audio (at the end of the calls).
    pub jitter_buffer: Option<f64>,
    /// How long the VAD still hears voice after the last loud frame (webrtc-vad's own
    /// hang-over and the codec's tail), measured on the same audio before the load.
    pub vad_tail: f64,
    /// The rest: scheduling, the media clock, encoding, the network stack, and the stand-ins'
    /// timers, which wake on whole milliseconds (about 1 ms per scripted wait, eight of them
    /// on a turn with the default settings).
    pub rest: Option<f64>,
}

/// Provider stand-in latencies as measured by the engine (`Latency` events), medians in ms.
#[derive(Clone, Debug, Serialize)]
pub struct ProvidersSeen {
    /// Model request → first token.
    pub llm_first_token: Option<f64>,
    /// First text → first TTS audio.
    pub tts_first_audio: Option<f64>,
}

/// The result of one load run (`--scaling` prints two of them).
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// The command line that ran it (set by `examples/load.rs`; `null` in-process).
    pub command: Option<String>,
    /// Concurrent calls.
    pub calls: usize,
    /// Length of each call (s).
    pub seconds: u64,
    /// Engine runtime worker threads.
    pub threads: usize,
    /// Simulated callers' runtime threads.
    pub caller_threads: usize,
    /// `polled` (read at each tick) or `reactor` (woken per datagram).
    pub engine_socket: &'static str,
    /// The same for the simulated callers.
    pub caller_socket: &'static str,
    /// Whether the media clocks followed their packets' arrivals.
    pub phase_align: bool,
    /// Whether the calls took caller frames ahead of the clock in pauses.
    pub catch_up: bool,
    /// Whether the stall probe ran (`host_stalls` is empty without it).
    pub stall_probe: bool,
    /// `realtime` when every probe ran at real-time priority (its stalls are the vCPU's),
    /// `normal` when the system refused (its stalls include waits for this machine's
    /// scheduler), `null` without a probe.
    pub stall_probe_priority: Option<&'static str>,
    /// `auto`, `off` or the fixed step of the shared tick grid (`4ms`).
    pub tick_grid: String,
    /// Moves of the calls' media clocks towards their packets (phase aligner), all calls.
    pub phase_shifts: u64,
    /// Moves of the calls' media clocks as the process changed tier on the tick grid (`auto`),
    /// all calls.
    pub tick_grid_moves: u64,
    /// `per-core` (a call stays on one single-threaded worker) or `shared` (one
    /// work-stealing runtime).
    pub engine_runtime: &'static str,
    /// What woke the calls' media clocks: `shared` (one timer per runtime) or `interval`
    /// (a tokio `Interval` per call).
    pub media_clock: &'static str,
    /// Whether the calls shed load together (`--load-shedding`).
    pub load_shedding: bool,
    /// How long late ticks had to keep coming before the calls shed load, in ms.
    pub shed_sustain_ms: u64,
    /// Times a late tick engaged load shedding from rest.
    pub load_shed_engagements: u64,
    /// How long shedding held after the last late tick, in ms (`--shed-hold-ms`).
    pub shed_hold_ms: u64,
    /// The busy share a late tick needed to engage shedding (`--shed-busy-pct`; 0: none).
    pub shed_busy_trigger: f64,
    /// Opus encoder complexity while shedding (`--shed-complexity`).
    pub shed_complexity: u8,
    /// Late ticks let pass as stalls: the engine threads were less busy than the trigger.
    pub shed_stalls_let_pass: u64,
    /// The engine threads' busy share over the shedder's 100 ms windows (its tick work
    /// against the threads' time), median (the upper edge of its 5 % bucket); `None` without
    /// a shedder.
    pub busy_share_p50: Option<f64>,
    /// The same, 99th percentile.
    pub busy_share_p99: Option<f64>,
    /// Windows per busy-share bucket (5 % each, the last 100 % and more).
    pub busy_share_windows: Vec<u64>,
    /// Ticks later than the shedder's trigger per busy-share bucket at that tick.
    pub late_tick_busy_shares: Vec<u64>,
    /// Share of all calls' ticks during which they shed load (0 to 1).
    pub shed_tick_share: f64,
    /// The engine threads' scheduling: `normal` or `realtime (SCHED_FIFO n)`.
    pub engine_priority: String,
    /// The simulated callers' threads' scheduling, likewise.
    pub caller_priority: String,
    /// `opus` or `pcmu`.
    pub codec: &'static str,
    /// Engine Opus encoder complexity (Opus only).
    pub opus_complexity: Option<u8>,
    /// Messages each call kept for the model (`null`: the whole conversation).
    pub history_limit: Option<usize>,
    /// Call starts spread over this window (ms).
    pub stagger_ms: u64,
    /// Network jitter on the callers' packets: each held a random 0 to this many ms.
    pub net_jitter_ms: u64,
    /// Answers spread over this window (ms).
    pub answer_spread_ms: u64,
    /// What the callers said.
    pub caller_audio: String,
    /// What the providers were.
    pub providers: String,
    /// Where it ran.
    pub machine: Machine,
    /// Wall time of the load phase (s).
    pub wall_seconds: f64,
    /// Calls ended by the caller's hang-up, as planned.
    pub calls_completed: usize,
    /// How the calls ended.
    pub end_reasons: BTreeMap<&'static str, usize>,
    /// Caller frames the engine processed (decoded, concealed or recovered).
    pub frames_in: u64,
    /// Agent frames the engine encoded and sent.
    pub frames_out: u64,
    /// Packets lost in either direction.
    pub frames_lost: u64,
    /// Caller → engine packets lost (engine's receiver statistics).
    pub frames_lost_inbound: u64,
    /// Engine → caller packets lost (sequence gaps at the caller).
    pub frames_lost_outbound: u64,
    /// Caller frames the engine concealed (PLC).
    pub frames_concealed: u64,
    /// Caller frames the engine rebuilt from in-band FEC.
    pub frames_recovered: u64,
    /// Caller frames taken ahead of the media clock in pauses (`--catch-up on`).
    pub frames_ahead: u64,
    /// The engine's jitter-buffer delay (above the fastest packet) when the calls ended, median
    /// over calls (ms).
    pub jitter_buffer_delay_ms_p50: Option<f64>,
    /// The jitter buffer's target delay when the calls ended, median over calls (ms).
    pub jitter_buffer_target_ms_p50: Option<f64>,
    /// Share of the engine's ticks that carried agent audio (how much of the time the agents
    /// spoke, over all calls).
    pub agent_talk_share: f64,
    /// Agent packets the callers received.
    pub agent_packets_received: u64,
    /// Of those, packets with audible audio.
    pub agent_audible_packets: u64,
    /// Ticks whose frame went out more than 10 ms late, over all calls.
    pub deadline_misses: u64,
    /// Calls with at least one deadline miss.
    pub calls_with_deadline_misses: usize,
    /// Pacing lateness of the engine's frames (due → handed to the socket), median (ms).
    pub pacing_jitter_ms_p50: f64,
    /// Pacing lateness, 99th percentile (ms).
    pub pacing_jitter_ms_p99: f64,
    /// Pacing lateness, maximum (ms).
    pub pacing_jitter_ms_max: f64,
    /// The longest a single tick's own work took in any call, from its task starting it to its
    /// frame leaving (ms).
    pub tick_work_ms_max: f64,
    /// The longest own work of a late tick (ms): far below 10 ms, the late frames waited for
    /// their thread rather than being slow to make.
    pub late_tick_work_ms_max: f64,
    /// Caller ticks more than 10 ms late: the harness itself was short of CPU.
    pub caller_late_ticks: u64,
    /// When the engine's deadline misses were due, seconds from the start of the load (the
    /// first 16 of each call, to the ms, distinct, at most 200).
    pub late_ticks_at_s: Vec<f64>,
    /// The harness's probe threads (one pinned to each CPU, sleeping 1 ms at a time), woken more
    /// than `host_stall_threshold_ms` late: [seconds from the start of the load when it woke,
    /// how late in ms, the CPU it is pinned to (-1: unpinned)] (at most 200). They do no work,
    /// and at real-time priority (`stall_probe_priority`) wait for no other thread, so their
    /// stalls are the machine's.
    pub host_stalls: Vec<[f64; 3]>,
    /// The CPUs a probe was pinned to (empty: one unpinned probe, or none).
    pub stall_probe_cpus: Vec<usize>,
    /// Lateness from which the probe records a stall (ms).
    pub host_stall_threshold_ms: f64,
    /// The probe's longest stall (ms).
    pub host_stall_max_ms: f64,
    /// Recorded deadline misses that were due while the probe itself was stalled (from 2 ms
    /// before its sleep should have ended to when it woke).
    pub late_ticks_in_host_stalls: u64,
    /// The probes' slowdowns: a wake-up at which their fixed work took at least
    /// `host_slowdown_factor` times its calibrated time (`probe_work_us`), as it did at two more
    /// of the probe's last five — the CPU ran, but slowly. [seconds from the start of the load,
    /// how many times slower, CPU] (at most 200).
    pub host_slowdowns: Vec<[f64; 3]>,
    /// Wake-ups with a slowdown, all of them.
    pub host_slowdown_count: u64,
    /// The factor from which a probe records a slowdown.
    pub host_slowdown_factor: f64,
    /// The probes' fixed work on an unhindered CPU, as calibrated when they started (µs).
    pub probe_work_us: f64,
    /// Recorded deadline misses due within 30 ms before (or 2 ms after) a slowdown: they waited
    /// or ran while the CPU was slow.
    pub late_ticks_in_host_slowdowns: u64,
    /// Recorded deadline misses neither in a stall nor in a slowdown.
    pub late_ticks_unexplained: u64,
    /// Deadline misses whose time was recorded (each call keeps its first 16).
    pub late_ticks_recorded: u64,
    /// Engine runtime threads' CPU seconds per call-second (media, VAD, turn logic, provider
    /// stand-ins).
    pub cpu_per_call_second: f64,
    /// Whole-process CPU seconds per call-second (engine + simulated callers + harness).
    pub process_cpu_per_call_second: f64,
    /// Simulated callers' threads' CPU seconds per call-second.
    pub caller_cpu_per_call_second: f64,
    /// Engine CPU over the engine threads' capacity during the load (0–1).
    pub engine_cpu_utilization: f64,
    /// The same frames through codec + resampler + VAD alone, CPU seconds per call-second.
    pub codec_floor_cpu_per_call_second: f64,
    /// `cpu_per_call_second / codec_floor_cpu_per_call_second`.
    pub engine_to_floor_ratio: Option<f64>,
    /// Frames pushed through the floor measurement.
    pub codec_floor_frames_measured: u64,
    /// The floor was measured on fewer frames than the load had and scaled up.
    pub codec_floor_scaled: bool,
    /// Seconds of the paced floor (`--paced-floor-seconds`; 0: not measured).
    pub codec_floor_paced_seconds: u64,
    /// The load's codec work paced as its calls are (each call's share every 20 ms at its own
    /// phase, on the engine's thread count, asleep in between), CPU per call-second.
    pub codec_floor_paced_cpu_per_call_second: Option<f64>,
    /// `cpu_per_call_second / codec_floor_paced_cpu_per_call_second`.
    pub engine_to_paced_floor_ratio: Option<f64>,
    /// Process RSS before the calls (KiB).
    pub rss_before_kib: u64,
    /// Peak process RSS during the calls (KiB).
    pub rss_peak_kib: u64,
    /// (peak − before) / calls (KiB); includes each simulated caller's socket state and decoder.
    pub rss_per_call_kib: f64,
    /// RSS change over the steady state, in percent: `rss_steady.growth_pct`; `null` when the run
    /// is too short to have one.
    pub rss_growth_pct: Option<f64>,
    /// RSS over the steady state — from 10 % into the run or 15 s after the last call was
    /// answered (a conversation cycle), whichever is later, to the end; at least 5 s — its
    /// readings at the start, the end and the largest, the growth to the end and to the
    /// largest, and the least-squares slope. `null` for shorter runs (under about 30 s with
    /// the default stagger and answer spread).
    pub rss_steady: Option<RssGrowth>,
    /// Time between two readings of `rss_samples_kib` (s): 1, doubled each time a long run
    /// fills the series' fixed size.
    pub rss_sample_interval_s: f64,
    /// Process RSS (KiB) from the start of the load, one reading per `rss_sample_interval_s`.
    pub rss_samples_kib: Vec<u64>,
    /// Messages in a call's conversation history when it ended, mean over calls: it grows with
    /// the turns up to `history_limit`.
    pub history_messages_per_call: f64,
    /// That history's heap when the call ended, mean over calls (KiB, estimated from the
    /// capacities: vector and texts, no allocator overhead): the part of the RSS growth of a
    /// long run that is the conversations themselves.
    pub history_kib_per_call: f64,
    /// Agent answers heard by the callers (voice-to-voice samples).
    pub turns_answered: usize,
    /// Caller turns no agent audio followed within 6 s.
    pub turns_unanswered: u64,
    /// Voice-to-voice on the wire (ms): caller's last speech packet → first audible agent packet.
    pub v2v_ms_p50: Option<f64>,
    /// Voice-to-voice, 99th percentile (ms).
    pub v2v_ms_p99: Option<f64>,
    /// Voice-to-voice, maximum (ms).
    pub v2v_ms_max: Option<f64>,
    /// The engine's own share of voice-to-voice, median (ms).
    pub v2v_engine_ms_p50: Option<f64>,
    /// The engine's own share, 99th percentile (ms).
    pub v2v_engine_ms_p99: Option<f64>,
    /// The engine's own share, maximum (ms).
    pub v2v_engine_ms_max: Option<f64>,
    /// The engine's `Latency` event (its VAD's speech end → first agent frame), median (ms).
    pub v2v_engine_reported_ms_p50: Option<f64>,
    /// The engine's `Latency` event, 99th percentile (ms).
    pub v2v_engine_reported_ms_p99: Option<f64>,
    /// The split of voice-to-voice.
    pub latency_split_ms: LatencySplit,
    /// Barge-ins measured.
    pub barge_ins: usize,
    /// Barge-ins the agent talked through.
    pub barge_ins_failed: u64,
    /// Barge-in on the wire (ms): caller's first speech packet sent → agent silent at the caller
    /// (the last audible agent packet's arrival + its 20 ms).
    pub barge_in_ms_p50: Option<f64>,
    /// Barge-in, 99th percentile (ms).
    pub barge_in_ms_p99: Option<f64>,
    /// Barge-in, maximum (ms).
    pub barge_in_ms_max: Option<f64>,
    /// Where the engine's rules decide on the barge-in, after the onset (ms): the voiced time
    /// needed, `max(VAD start, interruption_min_duration)` (VAD start alone with
    /// `--pause-on-speech`).
    pub barge_in_decision_ms: f64,
    /// Barge-in relative to that decision point, median (ms).
    pub barge_in_after_decision_ms_p50: Option<f64>,
    /// Barge-in relative to that decision point, 99th percentile (ms).
    pub barge_in_after_decision_ms_p99: Option<f64>,
    /// Interruptions the engine reported (`AgentInterrupted` events).
    pub engine_interruptions: u64,
    /// Provider errors the engine reported.
    pub provider_errors: u64,
    /// Agent packets the engine could not send (socket full).
    pub engine_unsent_packets: u64,
    /// Caller packets the callers could not send.
    pub caller_send_failures: u64,
    /// The latency distributions behind the quantiles above, for plots.
    pub latency_histograms: LatencyHistograms,
}

/// The run's latency distributions (bins of 0.5 ms, the engine's own figure in whole ms); the
/// quantiles in the report come from the same samples at 0.1 ms resolution.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyHistograms {
    /// Voice-to-voice on the wire, per answered turn.
    pub v2v_ms: HistogramExport,
    /// The engine's share of it: the same samples less the nominal path
    /// (`latency_split_ms.nominal_total`).
    pub v2v_engine_ms: HistogramExport,
    /// Barge-in on the wire, per interruption.
    pub barge_in_ms: HistogramExport,
    /// The same samples relative to the engine's decision point (`barge_in_decision_ms`).
    pub barge_in_after_decision_ms: HistogramExport,
    /// The engine's `Latency` event per turn (its VAD's speech end → first agent frame).
    pub v2v_engine_reported_ms: HistogramExport,
}

/// The 1-thread vs all-threads comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ScalingReport {
    /// Always `scaling`.
    pub mode: &'static str,
    /// The command line that ran it (set by `examples/load.rs`; `null` in-process).
    pub command: Option<String>,
    /// Concurrent calls in both runs.
    pub calls: usize,
    /// Call length (s).
    pub seconds: u64,
    /// Codec.
    pub codec: &'static str,
    /// Engine CPU per call-second on 1 thread over the same on N threads: 1.0 = spreading the
    /// calls over N threads costs nothing extra.
    pub cpu_scaling_efficiency: Option<f64>,
    /// Deadline misses per run, in run order.
    pub deadline_misses: Vec<u64>,
    /// Both runs: 1 thread, then N threads.
    pub runs: Vec<LoadReport>,
    /// How to read the two runs.
    pub note: &'static str,
}

impl ScalingReport {
    /// Deadline misses over both runs.
    pub fn total_deadline_misses(&self) -> u64 {
        self.deadline_misses.iter().sum()
    }
}

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1000.0, 2)
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(round(sorted[rank - 1], 2))
}

fn sorted_ms(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Words the model streams before the chunker releases the first speakable chunk.
fn words_to_first_chunk(reply: &str) -> u32 {
    let mut chunker = TextChunker::new();
    let words: Vec<&str> = reply.split_inclusive(' ').collect();
    for (i, word) in words.iter().enumerate() {
        if !chunker.push(word).is_empty() {
            return i as u32 + 1;
        }
    }
    words.len() as u32
}

// ---------------------------------------------------------------------------------------------
// Running

/// Runs one load and measures it.
pub fn run(config: &LoadConfig) -> Result<LoadReport, HarnessError> {
    if config.calls == 0 || config.seconds == 0 || config.threads == 0 || config.caller_threads == 0
    {
        return Err(HarnessError::Config(
            "calls, seconds and thread counts must be at least 1",
        ));
    }
    let load_before = load_average();
    let audio = CallerAudio::prepare(config.codec, &config.voice)?;
    let tts_rate = config.codec.agent_rate();
    let mut clip = vec![0i16; tts_rate.hz() as usize * 5];
    voiced_signal(tts_rate, 0, &mut clip);
    let shared = Arc::new(Shared {
        config: config.clone(),
        vad_tail: vad_tail(config.codec, &audio)?,
        audio,
        tts_clip: clip.into(),
        samples: LatencySamples::new(),
        waits: StandInWaits::default(),
        shedder: config.load_shedding.then(|| {
            Arc::new(
                LoadShedder::new(
                    LoadShedder::DEFAULT_TRIGGER,
                    config.shed_sustain,
                    config.shed_hold,
                )
                .with_busy_trigger(config.threads, f64::from(config.shed_busy_pct) / 100.0),
            )
        }),
    });
    let engine_rt = EngineRuntime::new(
        config.engine_runtime,
        config.threads,
        config.engine_priority,
    )?;
    let caller_rt = with_priority(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.caller_threads)
            .thread_name(CALLER_THREAD),
        config.caller_priority,
    )?
    .enable_all()
    .build()
    .map_err(io("starting the callers' runtime"))?;

    let rss_before = proc_status_kib("VmRSS:").unwrap_or(0);
    let hwm_reset = reset_peak_rss();
    let threads_before = thread_cpu();
    let process_before = process_cpu();
    let t0 = std::time::Instant::now();
    let probe = if config.stall_probe {
        Some(StallProbe::start(t0)?)
    } else {
        None
    };
    let (results, rss_samples) = caller_rt.block_on(drive(shared.clone(), &engine_rt));
    let wall = t0.elapsed();
    let probed = probe.map(StallProbe::finish).unwrap_or_default();
    let stalls = probed.stalls;
    let slowdowns = probed.slowdowns;
    let probed_work = probed.work;
    let threads_after = thread_cpu();
    let process_after = process_cpu();
    let hwm = if hwm_reset {
        proc_status_kib("VmHWM:")
    } else {
        None
    };
    let load_after = load_average();
    engine_rt.shut_down();
    caller_rt.shutdown_timeout(Duration::from_secs(2));
    let results = results?;

    let engine_cpu = thread_group_cpu(&threads_before, &threads_after, ENGINE_THREAD);
    let caller_cpu = thread_group_cpu(&threads_before, &threads_after, CALLER_THREAD);
    let process_cpu = match (process_before, process_after) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };

    // Sums over calls.
    let mut lateness = LatenessHistogram::default();
    let mut end_reasons = BTreeMap::new();
    let (mut frames_in, mut frames_out, mut agent_frames, mut ticks) = (0u64, 0u64, 0u64, 0u64);
    let (mut lost_in, mut lost_out, mut concealed, mut recovered) = (0u64, 0u64, 0u64, 0u64);
    let (mut misses, mut calls_missing, mut caller_late) = (0u64, 0usize, 0u64);
    let (mut agent_packets, mut agent_audible, mut unanswered, mut failed_barge) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut speech_sent, mut noise_sent, mut unsent, mut send_failures) = (0u64, 0u64, 0u64, 0u64);
    let (mut interruptions, mut provider_errors) = (0u64, 0u64);
    let (mut phase_shifts, mut grid_moves, mut shed_ticks, mut ahead) = (0u64, 0u64, 0u64, 0u64);
    let (mut tick_work_max, mut late_tick_work_max) = (Duration::ZERO, Duration::ZERO);
    let mut late_at: Vec<Duration> = Vec::new();
    for r in &results {
        lateness.merge(&r.media.lateness);
        *end_reasons.entry(r.end_reason.as_str()).or_insert(0) += 1;
        frames_in += r.media.caller_frames;
        ticks += r.media.ticks;
        frames_out += r.outbound.frames_encoded;
        agent_frames += r.media.agent_frames;
        lost_in += r.inbound_lost;
        lost_out += r.caller.agent_lost;
        concealed += r.inbound.frames_concealed;
        recovered += r.inbound.frames_recovered;
        ahead += r.media.caller_frames_ahead;
        misses += r.media.late_ticks;
        phase_shifts += r.media.phase_shifts;
        grid_moves += r.media.grid_moves;
        shed_ticks += r.media.shed_ticks;
        tick_work_max = tick_work_max.max(r.media.tick_work_max);
        late_tick_work_max = late_tick_work_max.max(r.media.late_tick_work_max);
        let offset = r.started.saturating_duration_since(t0);
        late_at.extend(
            r.media
                .late_tick_times
                .as_slice()
                .iter()
                .map(|&t| offset + t),
        );
        calls_missing += usize::from(r.media.late_ticks > 0);
        caller_late += r.caller.late_ticks;
        agent_packets += r.caller.agent_packets;
        agent_audible += r.caller.agent_audible;
        unanswered += u64::from(r.caller.unanswered);
        failed_barge += u64::from(r.caller.barge_in_failed);
        speech_sent += r.caller.speech_packets;
        noise_sent += r.caller.noise_packets;
        unsent += r.unsent;
        send_failures += r.caller.send_failures;
        interruptions += u64::from(r.events.interruptions);
        provider_errors += u64::from(r.events.provider_errors);
    }
    let jb_delay = sorted_ms(
        results
            .iter()
            .filter_map(|r| r.jitter)
            .map(|j| ms(j.playout_delay)),
    );
    let jb_target = sorted_ms(
        results
            .iter()
            .filter_map(|r| r.jitter)
            .map(|j| ms(j.target_delay)),
    );
    let completed = results
        .iter()
        .filter(|r| r.end_reason == EndReason::UserHangup)
        .count();

    // The codec floor, on this thread, now that the load is over.
    let work = FloorWork {
        frames_in,
        speech_share: speech_sent as f64 / (speech_sent + noise_sent).max(1) as f64,
        agent_frames,
        silent_frames: frames_out.saturating_sub(agent_frames),
    };
    let floor = measure_floor(&shared, work)?;

    let call_seconds = (config.calls as u64 * config.seconds) as f64;
    let per_call_second = |d: Duration| round(d.as_secs_f64() / call_seconds, 6);
    let cpu = per_call_second(engine_cpu);
    let floor_cpu = per_call_second(floor.cpu);
    let busy_quantile = |q: f64| {
        let shedder = shared.shedder.as_ref()?;
        shedder
            .window_share_quantile(q)
            .map(|share| round(share, 2))
    };
    let paced_floor_cpu = match config.paced_floor_seconds {
        0 => None,
        s => Some(round(
            measure_paced_floor(&shared, work, s)?.as_secs_f64(),
            6,
        )),
    };

    // Voice-to-voice split: the nominal path from the settings and the stand-ins.
    let vad = VadConfig::default();
    let turn = shared.settings().turn;
    let p = config.providers;
    let heard_by_endpoint = vad.stop_after + p.stt_final;
    let (stt_on_path, endpointing_extra) = if heard_by_endpoint >= turn.endpointing_min_delay {
        (p.stt_final, Duration::ZERO)
    } else {
        (
            Duration::ZERO,
            turn.endpointing_min_delay - heard_by_endpoint,
        )
    };
    let stream = p.llm_token_interval * words_to_first_chunk(REPLY).saturating_sub(1);
    let nominal = vad.stop_after
        + endpointing_extra
        + stt_on_path
        + p.llm_first_token
        + stream
        + p.tts_first_byte;
    // The stand-ins' real waits on the path beyond the configured ones (the providers' share).
    let excess = |log: &WaitLog, times: u32| log.mean_excess().unwrap_or_default() * times;
    let waits = &shared.waits;
    let timer_excess = if stt_on_path > Duration::ZERO {
        excess(&waits.stt_final, 1)
    } else {
        Duration::ZERO
    } + excess(&waits.llm_first_token, 1)
        + excess(
            &waits.llm_token,
            words_to_first_chunk(REPLY).saturating_sub(1),
        )
        + excess(&waits.tts_first_byte, 1);
    let provider_path = nominal + timer_excess;
    let samples = &shared.samples;
    // Quantiles in ms, shifted by `offset` (the engine's share is voice-to-voice − providers).
    let q = |h: &Histogram, q: f64, offset: Duration| {
        h.quantile(q).map(|d| round(ms(d) - ms(offset), 2))
    };
    let max = |h: &Histogram, offset: Duration| h.max().map(|d| round(ms(d) - ms(offset), 2));
    let (v2v, barge) = (&samples.v2v, &samples.barge_in);
    let decision = if config.pause_on_speech {
        vad.start_after
    } else {
        vad.start_after.max(turn.interruption_min_duration)
    };
    let engine_p50 = q(v2v, 0.5, provider_path);

    // Memory: peak over before, and growth while all calls were up and warmed up.
    let rss_points = rss_samples.points();
    let sampled_peak = rss_samples.readings().iter().copied().max();
    let rss_peak = sampled_peak.unwrap_or(rss_before).max(hwm.unwrap_or(0));
    let rss_steady = steady_window(
        config.seconds as f64,
        (config.stagger + config.answer_spread).as_secs_f64(),
        WARM_UP.as_secs_f64(),
    )
    .and_then(|(from, to)| steady_growth(&rss_points, from, to));

    let providers = format!(
        "in-process fakes (testkit ScriptedStt/ScriptedLlm/ScriptedTts), latencies: STT final {} ms, \
         LLM first token {} ms + {} ms per word, TTS first byte {} ms; no provider network cost",
        p.stt_final.as_millis(),
        p.llm_first_token.as_millis(),
        p.llm_token_interval.as_millis(),
        p.tts_first_byte.as_millis()
    );
    Ok(LoadReport {
        command: None,
        calls: config.calls,
        seconds: config.seconds,
        threads: config.threads,
        caller_threads: config.caller_threads,
        engine_socket: config.engine_socket.name(),
        caller_socket: config.caller_socket.name(),
        phase_align: config.phase_align,
        catch_up: config.catch_up,
        stall_probe: config.stall_probe,
        stall_probe_priority: match (config.stall_probe, probed.realtime) {
            (false, _) => None,
            (true, true) => Some("realtime"),
            (true, false) => Some("normal"),
        },
        tick_grid: match config.tick_snap {
            TickSnap::Auto => "auto".to_string(),
            TickSnap::Off => "off".to_string(),
            TickSnap::Fixed(g) => format!("{}ms", g.step().as_millis()),
        },
        phase_shifts,
        tick_grid_moves: grid_moves,
        engine_runtime: config.engine_runtime.name(),
        media_clock: match config.media_clock {
            ClockSource::Shared => "shared",
            ClockSource::Interval => "interval",
        },
        load_shedding: config.load_shedding,
        shed_sustain_ms: config.shed_sustain.as_millis() as u64,
        load_shed_engagements: shared.shedder.as_ref().map_or(0, |s| s.engagements()),
        shed_hold_ms: config.shed_hold.as_millis() as u64,
        shed_busy_trigger: f64::from(config.shed_busy_pct) / 100.0,
        shed_complexity: config.shed_complexity,
        shed_stalls_let_pass: shared.shedder.as_ref().map_or(0, |s| s.stalls_let_pass()),
        busy_share_p50: busy_quantile(0.5),
        busy_share_p99: busy_quantile(0.99),
        busy_share_windows: shared
            .shedder
            .as_ref()
            .map_or_else(Vec::new, |s| s.window_share_histogram().to_vec()),
        late_tick_busy_shares: shared
            .shedder
            .as_ref()
            .map_or_else(Vec::new, |s| s.late_tick_share_histogram().to_vec()),
        shed_tick_share: if ticks == 0 {
            0.0
        } else {
            round(shed_ticks as f64 / ticks as f64, 4)
        },
        engine_priority: priority_name(config.engine_priority),
        caller_priority: priority_name(config.caller_priority),
        codec: config.codec.name(),
        opus_complexity: (config.codec == Codec::Opus).then_some(config.complexity),
        history_limit: config.history_limit.messages(),
        stagger_ms: config.stagger.as_millis() as u64,
        net_jitter_ms: config.net_jitter.as_millis() as u64,
        answer_spread_ms: config.answer_spread.as_millis() as u64,
        caller_audio: shared.audio.source.clone(),
        providers,
        machine: Machine {
            nproc: cores(),
            cpu_model: cpu_model(),
            load_average_1m_before: load_before,
            load_average_1m_after: load_after,
        },
        wall_seconds: round(wall.as_secs_f64(), 2),
        calls_completed: completed,
        end_reasons,
        frames_in,
        frames_out,
        frames_lost: lost_in + lost_out,
        frames_lost_inbound: lost_in,
        frames_lost_outbound: lost_out,
        frames_concealed: concealed,
        frames_recovered: recovered,
        frames_ahead: ahead,
        jitter_buffer_delay_ms_p50: percentile(&jb_delay, 0.5),
        jitter_buffer_target_ms_p50: percentile(&jb_target, 0.5),
        agent_talk_share: round(agent_frames as f64 / ticks.max(1) as f64, 3),
        agent_packets_received: agent_packets,
        agent_audible_packets: agent_audible,
        deadline_misses: misses,
        calls_with_deadline_misses: calls_missing,
        pacing_jitter_ms_p50: ms(lateness.quantile(0.5)),
        pacing_jitter_ms_p99: ms(lateness.quantile(0.99)),
        pacing_jitter_ms_max: ms(lateness.max()),
        tick_work_ms_max: ms(tick_work_max),
        late_tick_work_ms_max: ms(late_tick_work_max),
        caller_late_ticks: caller_late,
        late_ticks_at_s: {
            let mut at: Vec<f64> = late_at.iter().map(|t| round(t.as_secs_f64(), 3)).collect();
            at.sort_by(f64::total_cmp);
            at.dedup();
            at.truncate(200);
            at
        },
        host_stalls: stalls
            .iter()
            .take(200)
            .map(|&(at, by, cpu)| {
                [
                    round(at.as_secs_f64(), 3),
                    round(ms(by), 2),
                    cpu.map_or(-1.0, |c| c as f64),
                ]
            })
            .collect(),
        stall_probe_cpus: probed.cpus,
        host_stall_threshold_ms: ms(PROBE_STALL),
        host_stall_max_ms: round(stalls.iter().map(|s| ms(s.1)).fold(0.0, f64::max), 2),
        late_ticks_in_host_stalls: misses_in_stalls(&late_at, &stalls),
        host_slowdowns: slowdowns
            .iter()
            .take(200)
            .map(|&(at, factor, cpu)| {
                [
                    round(at.as_secs_f64(), 3),
                    round(factor, 1),
                    cpu.map_or(-1.0, |c| c as f64),
                ]
            })
            .collect(),
        host_slowdown_count: slowdowns.len() as u64,
        host_slowdown_factor: PROBE_SLOWDOWN,
        probe_work_us: round(probed_work.as_secs_f64() * 1e6, 2),
        late_ticks_in_host_slowdowns: late_at
            .iter()
            .filter(|&&t| in_slowdown(t, &slowdowns))
            .count() as u64,
        late_ticks_unexplained: late_at
            .iter()
            .filter(|&&t| !in_stall(t, &stalls) && !in_slowdown(t, &slowdowns))
            .count() as u64,
        late_ticks_recorded: late_at.len() as u64,
        cpu_per_call_second: cpu,
        process_cpu_per_call_second: per_call_second(process_cpu),
        caller_cpu_per_call_second: per_call_second(caller_cpu),
        engine_cpu_utilization: round(
            engine_cpu.as_secs_f64() / (wall.as_secs_f64() * config.threads as f64),
            3,
        ),
        codec_floor_cpu_per_call_second: floor_cpu,
        engine_to_floor_ratio: (floor_cpu > 0.0).then(|| round(cpu / floor_cpu, 3)),
        codec_floor_frames_measured: floor.frames_measured,
        codec_floor_scaled: floor.scaled,
        codec_floor_paced_seconds: config.paced_floor_seconds,
        codec_floor_paced_cpu_per_call_second: paced_floor_cpu,
        engine_to_paced_floor_ratio: paced_floor_cpu
            .filter(|&p| p > 0.0)
            .map(|p| round(cpu / p, 3)),
        rss_before_kib: rss_before,
        rss_peak_kib: rss_peak,
        rss_per_call_kib: round(
            rss_peak.saturating_sub(rss_before) as f64 / config.calls as f64,
            1,
        ),
        rss_growth_pct: rss_steady.as_ref().map(|g| g.growth_pct),
        rss_steady,
        rss_sample_interval_s: rss_samples.interval().as_secs_f64(),
        rss_samples_kib: rss_samples.readings().to_vec(),
        history_messages_per_call: round(
            results.iter().map(|r| r.history_messages).sum::<usize>() as f64
                / results.len().max(1) as f64,
            1,
        ),
        history_kib_per_call: round(
            results.iter().map(|r| r.history_bytes).sum::<usize>() as f64
                / 1024.0
                / results.len().max(1) as f64,
            1,
        ),
        turns_answered: v2v.count() as usize,
        turns_unanswered: unanswered,
        v2v_ms_p50: q(v2v, 0.5, Duration::ZERO),
        v2v_ms_p99: q(v2v, 0.99, Duration::ZERO),
        v2v_ms_max: max(v2v, Duration::ZERO),
        v2v_engine_ms_p50: engine_p50,
        v2v_engine_ms_p99: q(v2v, 0.99, provider_path),
        v2v_engine_ms_max: max(v2v, provider_path),
        v2v_engine_reported_ms_p50: q(&samples.v2v_reported, 0.5, Duration::ZERO),
        v2v_engine_reported_ms_p99: q(&samples.v2v_reported, 0.99, Duration::ZERO),
        latency_split_ms: LatencySplit {
            vad_stop_hangover: ms(vad.stop_after),
            endpointing_extra: ms(endpointing_extra),
            stt_final: ms(stt_on_path),
            llm_first_token: ms(p.llm_first_token),
            llm_stream_to_first_chunk: ms(stream),
            tts_first_byte: ms(p.tts_first_byte),
            nominal_total: ms(nominal),
            stand_in_timer_excess: round(ms(timer_excess), 2),
            v2v_p50: q(v2v, 0.5, Duration::ZERO),
            engine_p50,
            engine_p99: q(v2v, 0.99, provider_path),
            engine_share_p50: EngineShare {
                jitter_buffer: percentile(&jb_delay, 0.5),
                vad_tail: ms(shared.vad_tail),
                rest: engine_p50.map(|e| {
                    round(
                        e - percentile(&jb_delay, 0.5).unwrap_or(0.0) - ms(shared.vad_tail),
                        2,
                    )
                }),
            },
            providers_seen_by_engine_p50: ProvidersSeen {
                llm_first_token: q(&samples.llm_first_token, 0.5, Duration::ZERO),
                tts_first_audio: q(&samples.tts_first_audio, 0.5, Duration::ZERO),
            },
        },
        barge_ins: barge.count() as usize,
        barge_ins_failed: failed_barge,
        barge_in_ms_p50: q(barge, 0.5, Duration::ZERO),
        barge_in_ms_p99: q(barge, 0.99, Duration::ZERO),
        barge_in_ms_max: max(barge, Duration::ZERO),
        barge_in_decision_ms: ms(decision),
        barge_in_after_decision_ms_p50: q(barge, 0.5, decision),
        barge_in_after_decision_ms_p99: q(barge, 0.99, decision),
        engine_interruptions: interruptions,
        provider_errors,
        engine_unsent_packets: unsent,
        caller_send_failures: send_failures,
        latency_histograms: LatencyHistograms {
            v2v_ms: v2v.export(REPORT_BIN, 0.0),
            v2v_engine_ms: v2v.export(REPORT_BIN, ms(provider_path)),
            barge_in_ms: barge.export(REPORT_BIN, 0.0),
            barge_in_after_decision_ms: barge.export(REPORT_BIN, ms(decision)),
            v2v_engine_reported_ms: samples.v2v_reported.export(Duration::from_millis(1), 0.0),
        },
    })
}

/// Runs the same calls on 1 engine thread and on `config.threads` (all cores when that is 1).
pub fn run_scaling(config: &LoadConfig) -> Result<ScalingReport, HarnessError> {
    let many = if config.threads > 1 {
        config.threads
    } else {
        cores()
    };
    let mut runs = Vec::with_capacity(2);
    for threads in [1, many] {
        let mut c = config.clone();
        c.threads = threads;
        runs.push(run(&c)?);
    }
    let efficiency = match (runs.first(), runs.last()) {
        (Some(one), Some(n)) if n.cpu_per_call_second > 0.0 => {
            Some(round(one.cpu_per_call_second / n.cpu_per_call_second, 3))
        }
        _ => None,
    };
    Ok(ScalingReport {
        mode: "scaling",
        command: None,
        calls: config.calls,
        seconds: config.seconds,
        codec: config.codec.name(),
        cpu_scaling_efficiency: efficiency,
        deadline_misses: runs.iter().map(|r| r.deadline_misses).collect(),
        runs,
        note: "both runs share one process: the second reuses the heap the first freed, so its \
               RSS figures understate the memory per call; take RSS from the first run",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline::engine::provider::Role;

    #[test]
    fn misses_count_as_in_a_stall_only_inside_its_window() {
        let ms = Duration::from_millis;
        // The probe woke at 10.000 s, 14 ms late: its sleep should have ended at 9.986 s.
        let stalls = [(ms(10_000), ms(14), Some(0)), (ms(15_000), ms(6), None)];
        let late = [
            ms(9_983),  // before the window (from 9.984 s)
            ms(9_984),  // its first moment
            ms(9_990),  // inside
            ms(10_000), // when the probe woke
            ms(10_001), // after
            ms(14_995), // inside the second stall's window (14.992–15.000)
        ];
        assert_eq!(misses_in_stalls(&late, &stalls), 4);
        assert_eq!(misses_in_stalls(&late, &[]), 0);
    }

    #[test]
    fn misses_count_as_in_a_slowdown_from_30_ms_before_it_to_2_ms_after() {
        let ms = Duration::from_millis;
        let slowdowns = [(ms(5_000), 6.0, Some(1))];
        // Due 30 ms before the slow wake-up: it was still waiting or running through it.
        assert!(in_slowdown(ms(4_970), &slowdowns));
        assert!(!in_slowdown(ms(4_969), &slowdowns));
        // Due just after it: the slow CPU was already holding it up.
        assert!(in_slowdown(ms(5_002), &slowdowns));
        assert!(!in_slowdown(ms(5_003), &slowdowns));
        assert!(!in_slowdown(ms(5_000), &[]));
    }

    #[test]
    fn the_probe_work_is_calibrated_near_its_target() {
        let (n, took) = calibrate_probe_work();
        assert!(n >= 1);
        // Calibrated against the same loop: within a wide margin of the target even on a busy
        // machine (only its order of magnitude matters).
        assert!(took > Duration::ZERO && took < PROBE_WORK * 20, "{took:?}");
    }

    #[test]
    fn probes_are_pinned_one_to_each_allowed_cpu() {
        let cpus = affinity::allowed_cpus();
        if cfg!(target_os = "linux") {
            assert!(!cpus.is_empty());
        }
        let probe = StallProbe::start(std::time::Instant::now()).expect("probe");
        assert_eq!(probe.threads.len(), cpus.len().max(1));
        let report = probe.finish();
        // The probes run at real-time priority exactly where this process may use it.
        let allowed = std::thread::spawn(|| {
            set_current_thread_priority(ThreadPriority::Realtime(PROBE_RT_PRIORITY)).is_ok()
        })
        .join()
        .expect("priority check");
        assert_eq!(report.realtime, allowed);
        assert!(report.work > Duration::ZERO);
        let (probed, stalls, slowdowns) = (report.cpus, report.stalls, report.slowdowns);
        assert_eq!(probed, cpus);
        // A stall's or slowdown's CPU is one of those probed (or none when pinning was refused).
        assert!(stalls
            .iter()
            .all(|s| s.2.is_none_or(|cpu| probed.contains(&cpu))));
        assert!(slowdowns
            .iter()
            .all(|s| s.1 >= PROBE_SLOWDOWN && s.2.is_none_or(|cpu| probed.contains(&cpu))));
        // Pinning this thread to its first CPU is allowed and leaves it on that CPU alone.
        if let Some(&first) = cpus.first() {
            std::thread::spawn(move || {
                assert!(affinity::pin_to(first));
                assert_eq!(affinity::allowed_cpus(), vec![first]);
            })
            .join()
            .expect("pinned thread");
        }
    }

    #[test]
    fn history_bytes_count_the_vector_and_the_texts() {
        let mut history = Vec::with_capacity(4);
        history.push(ChatMessage::text(Role::System, String::with_capacity(100)));
        history.push(ChatMessage::text(Role::User, "hello".to_string()));
        let message = std::mem::size_of::<ChatMessage>();
        assert_eq!(
            history_bytes(&history, history.capacity()),
            history.capacity() * message + 100 + 5
        );
        history.push(ChatMessage {
            tool_calls: vec![ToolCallRequest {
                id: "a".into(),
                name: "bc".into(),
                arguments: "{}".into(),
            }],
            tool_call_id: Some("xyz".into()),
            ..ChatMessage::text(Role::Assistant, String::new())
        });
        let call = std::mem::size_of::<ToolCallRequest>();
        assert_eq!(
            history_bytes(&history, history.capacity()),
            history.capacity() * message + 105 + call + 1 + 2 + 2 + 3
        );
        assert_eq!(history_bytes(&[], 0), 0);
    }
}
