//! mic_agent: talk to an agent with your microphone and speaker.
//!
//! The agent runs the assistant (`--assistant`, the platform's JSON) as a web call: the
//! microphone (at the device's own rate and format) is mixed to mono, resampled to 16 kHz and
//! handed to the call 20 ms at a time; the agent's voice is resampled to the speaker's rate
//! and played. The engine's media port is implemented directly on the sound card: no RTP, no
//! codec. Everything else is the engine as on a phone line: voice activity, turn-taking and
//! barge-in (talk over the agent to interrupt it), the model's tools (answered by the example
//! with a plausible result, as in `local_call`), the live transcript with per-turn latency, and
//! in `--out` the webhook bodies, the stereo recording and the event log.
//!
//! Use headphones: from a loudspeaker the agent hears itself and interrupts itself. Ctrl-C
//! hangs up. Providers follow the assistant JSON; hosted ones need their keys, and without a
//! key the offline one this build has stands in and a line says so.
//!
//! Needs the ALSA headers on Linux (Debian: `apt-get install libasound2-dev`), hence the
//! feature:
//!
//! ```text
//! cargo run --release --features mic --example mic_agent -- [OPTIONS]
//!
//!   --assistant FILE      assistant JSON (default examples/assistants/dental_booking.json)
//!   --input NAME          microphone: the first input device whose name contains NAME
//!                         (default: the system's default input)
//!   --output NAME         speaker: likewise for output devices (default: the default output)
//!   --list-devices        print the input and output devices and exit
//!   --out DIR             webhook bodies, recording, event log (default out/mic_agent)
//!   --max-seconds S       longest call (default 600)
//!   -h, --help            this text
//! ```
//!
//! Exit status: 0 after the call, 2 for a bad command line or input file, 1 when the sound
//! card or the call could not be set up or the call failed.

#[path = "common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use tokio::time::Instant;
use voxline::codecs::{AudioFrame, SampleRate};
use voxline::engine::driver::{new_call, MediaInput, MediaPort};
use voxline::engine::report::{CallReporter, PostCallAnalyzer};
use voxline::{CallDirection, CallSettings, DriverOptions, Voxline};

use common::cli::{self, AppError};
use common::host::{call_id, call_metadata, follow_call, now, LocalTools, ANALYSIS_TIMEOUT};
use common::output::{OutputDir, RECORDING};
use common::transcript::{summary, Printer};

const USAGE: &str = "usage: mic_agent [--assistant FILE] [--input NAME] [--output NAME] \
[--list-devices] [--out DIR] [--max-seconds S]\nrun with --help for details";

/// The rate the call hears the microphone at.
const CALLER_RATE: SampleRate = SampleRate::Hz16000;
/// Microphone audio kept waiting at most; older audio is dropped to keep the delay short.
const MAX_MIC_BACKLOG: Duration = Duration::from_millis(200);
/// Speaker audio buffered before playing starts (absorbs the two clocks' jitter).
const SPEAKER_PREBUFFER: Duration = Duration::from_millis(80);

/// The parsed command line.
#[derive(Clone, Debug)]
struct Args {
    assistant: PathBuf,
    input: Option<String>,
    output: Option<String>,
    list: bool,
    out: PathBuf,
    max_seconds: f64,
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, AppError> {
        let mut a = Args {
            assistant: "examples/assistants/dental_booking.json".into(),
            input: None,
            output: None,
            list: false,
            out: "out/mic_agent".into(),
            max_seconds: 600.0,
        };
        while let Some(flag) = it.next() {
            let f = flag.as_str();
            match f {
                "-h" | "--help" => return Ok(None),
                "--assistant" => a.assistant = cli::value(&mut it, f)?.into(),
                "--input" => a.input = Some(cli::value(&mut it, f)?),
                "--output" => a.output = Some(cli::value(&mut it, f)?),
                "--list-devices" => a.list = true,
                "--out" => a.out = cli::value(&mut it, f)?.into(),
                "--max-seconds" => {
                    a.max_seconds = cli::seconds(f, &cli::value(&mut it, f)?, 1.0, 86_400.0)?
                }
                other => return Err(AppError::Usage(format!("unknown option {other:?}"))),
            }
        }
        Ok(Some(a))
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            let doc = include_str!("mic_agent.rs");
            println!(
                "{}",
                cli::help_from_doc(doc, "mic_agent: talk to an agent.")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return e.report(USAGE),
    };
    match talk(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(USAGE),
    }
}

/// Mono audio between a sound-card callback and the call, at the device's rate.
type Shared = Arc<Mutex<VecDeque<f32>>>;

fn talk(args: &Args) -> Result<(), AppError> {
    let host = cpal::default_host();
    if args.list {
        list_devices(&host)?;
        return Ok(());
    }
    let mic = pick(&host, args.input.as_deref(), true)?;
    let speaker = pick(&host, args.output.as_deref(), false)?;
    let sound = |e: String| AppError::Setup(format!("sound card: {e}"));
    let in_config = mic
        .default_input_config()
        .map_err(|e| sound(e.to_string()))?;
    let out_config = speaker
        .default_output_config()
        .map_err(|e| sound(e.to_string()))?;

    let heard: Shared = Arc::new(Mutex::new(VecDeque::new()));
    let playing: Shared = Arc::new(Mutex::new(VecDeque::new()));
    let in_rate = in_config.sample_rate().0;
    let out_rate = out_config.sample_rate().0;
    let input = open_input(&mic, &in_config, heard.clone()).map_err(sound)?;
    let output = open_output(&speaker, &out_config, playing.clone(), out_rate).map_err(sound)?;
    input.play().map_err(|e| sound(e.to_string()))?;
    output.play().map_err(|e| sound(e.to_string()))?;
    println!(
        "mic_agent: microphone {:?} ({in_rate} Hz, {} ch), speaker {:?} ({out_rate} Hz, {} ch); \
         use headphones, Ctrl-C hangs up",
        mic.name().unwrap_or_default(),
        in_config.channels(),
        speaker.name().unwrap_or_default(),
        out_config.channels()
    );
    let port = SoundCardPort::new(heard, in_rate, playing, out_rate);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AppError::Setup(format!("cannot start the async runtime: {e}")))?;
    // The streams live on this thread until the call is over.
    let result = runtime.block_on(call(args, port));
    drop((input, output));
    result
}

fn list_devices(host: &cpal::Host) -> Result<(), AppError> {
    let fail = |e: String| AppError::Setup(format!("sound card: {e}"));
    println!("input devices:");
    for d in host.input_devices().map_err(|e| fail(e.to_string()))? {
        println!("  {}", d.name().unwrap_or_else(|_| "(unnamed)".into()));
    }
    println!("output devices:");
    for d in host.output_devices().map_err(|e| fail(e.to_string()))? {
        println!("  {}", d.name().unwrap_or_else(|_| "(unnamed)".into()));
    }
    Ok(())
}

/// The device named (by substring) or the default one.
fn pick(host: &cpal::Host, name: Option<&str>, input: bool) -> Result<cpal::Device, AppError> {
    let kind = if input { "input" } else { "output" };
    let Some(name) = name else {
        let device = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return device.ok_or_else(|| AppError::Setup(format!("no default {kind} device")));
    };
    let devices = if input {
        host.input_devices().map(|d| d.collect::<Vec<_>>())
    } else {
        host.output_devices().map(|d| d.collect::<Vec<_>>())
    }
    .map_err(|e| AppError::Setup(format!("sound card: {e}")))?;
    devices
        .into_iter()
        .find(|d| d.name().is_ok_and(|n| n.contains(name)))
        .ok_or_else(|| {
            AppError::Usage(format!(
                "--{kind}: no {kind} device named like {name:?} (see --list-devices)"
            ))
        })
}

fn open_input(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    heard: Shared,
) -> Result<cpal::Stream, String> {
    fn build<T: SizedSample>(
        device: &cpal::Device,
        config: &cpal::StreamConfig,
        heard: Shared,
    ) -> Result<cpal::Stream, cpal::BuildStreamError>
    where
        f32: FromSample<T>,
    {
        let channels = usize::from(config.channels.max(1));
        let cap = config.sample_rate.0 as usize * 2;
        device.build_input_stream(
            config,
            move |data: &[T], _| {
                let Ok(mut q) = heard.lock() else { return };
                for frame in data.chunks(channels) {
                    let sum: f32 = frame.iter().map(|s| s.to_sample::<f32>()).sum();
                    q.push_back(sum / frame.len() as f32);
                }
                let excess = q.len().saturating_sub(cap);
                q.drain(..excess);
            },
            |e| eprintln!("microphone: {e}"),
            None,
        )
    }
    let c = config.config();
    match config.sample_format() {
        SampleFormat::F32 => build::<f32>(device, &c, heard),
        SampleFormat::I16 => build::<i16>(device, &c, heard),
        SampleFormat::U16 => build::<u16>(device, &c, heard),
        SampleFormat::I32 => build::<i32>(device, &c, heard),
        other => {
            return Err(format!(
                "the microphone's sample format {other} is not supported"
            ))
        }
    }
    .map_err(|e| e.to_string())
}

fn open_output(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    playing: Shared,
    rate: u32,
) -> Result<cpal::Stream, String> {
    fn build<T: SizedSample + FromSample<f32>>(
        device: &cpal::Device,
        config: &cpal::StreamConfig,
        playing: Shared,
        prebuffer: usize,
    ) -> Result<cpal::Stream, cpal::BuildStreamError> {
        let channels = usize::from(config.channels.max(1));
        let mut started = false;
        device.build_output_stream(
            config,
            move |data: &mut [T], _| {
                let mut q = playing.lock().ok();
                for frame in data.chunks_mut(channels) {
                    let q = q.as_deref_mut();
                    // Wait for a little audio before playing, and again after running dry.
                    let v = match q {
                        Some(q) if started || q.len() >= prebuffer => {
                            started = true;
                            q.pop_front().unwrap_or_else(|| {
                                started = false;
                                0.0
                            })
                        }
                        _ => 0.0,
                    };
                    for s in frame.iter_mut() {
                        *s = T::from_sample(v);
                    }
                }
            },
            |e| eprintln!("speaker: {e}"),
            None,
        )
    }
    let c = config.config();
    let prebuffer = (SPEAKER_PREBUFFER.as_secs_f64() * f64::from(rate)) as usize;
    match config.sample_format() {
        SampleFormat::F32 => build::<f32>(device, &c, playing, prebuffer),
        SampleFormat::I16 => build::<i16>(device, &c, playing, prebuffer),
        SampleFormat::U16 => build::<u16>(device, &c, playing, prebuffer),
        SampleFormat::I32 => build::<i32>(device, &c, playing, prebuffer),
        other => {
            return Err(format!(
                "the speaker's sample format {other} is not supported"
            ))
        }
    }
    .map_err(|e| e.to_string())
}

/// Changes a mono stream's rate by linear interpolation, with a moving average in front when
/// lowering it (a plain anti-alias filter; enough for speech).
struct RateConverter {
    step: f64,
    pos: f64,
    buf: Vec<f32>,
    window: VecDeque<f32>,
    width: usize,
}

impl RateConverter {
    fn new(from: u32, to: u32) -> Self {
        let step = f64::from(from) / f64::from(to.max(1));
        RateConverter {
            step,
            pos: 0.0,
            buf: Vec::new(),
            window: VecDeque::new(),
            width: if step > 1.0 { step.ceil() as usize } else { 1 },
        }
    }

    fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
        for s in samples {
            self.window.push_back(s);
            if self.window.len() > self.width {
                self.window.pop_front();
            }
            let mean = self.window.iter().sum::<f32>() / self.window.len() as f32;
            self.buf.push(mean);
        }
    }

    /// Output samples ready now.
    fn available(&self) -> usize {
        let last = self.buf.len() as f64 - 2.0 - self.pos;
        if last < 0.0 {
            0
        } else {
            (last / self.step) as usize + 1
        }
    }

    /// Drops input so that at most `keep` output samples are ready.
    fn trim(&mut self, keep: usize) {
        let excess = self.available().saturating_sub(keep);
        self.pos += excess as f64 * self.step;
        self.compact();
    }

    /// Fills `out` when enough input has come.
    fn pull(&mut self, out: &mut [f32]) -> bool {
        if self.available() < out.len() {
            return false;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let x = self.pos + i as f64 * self.step;
            let k = x as usize;
            let f = (x - k as f64) as f32;
            *o = self.buf[k] * (1.0 - f) + self.buf[k + 1] * f;
        }
        self.pos += out.len() as f64 * self.step;
        self.compact();
        true
    }

    fn compact(&mut self) {
        let used = (self.pos as usize).min(self.buf.len());
        self.buf.drain(..used);
        self.pos -= used as f64;
    }
}

/// The call's media port on the sound card: microphone frames in, agent frames out.
struct SoundCardPort {
    heard: Shared,
    mic: RateConverter,
    playing: Shared,
    out_rate: u32,
    speaker: Option<(SampleRate, RateConverter)>,
    scratch: Vec<f32>,
}

impl SoundCardPort {
    fn new(heard: Shared, in_rate: u32, playing: Shared, out_rate: u32) -> Self {
        SoundCardPort {
            heard,
            mic: RateConverter::new(in_rate, CALLER_RATE.hz()),
            playing,
            out_rate,
            speaker: None,
            scratch: Vec::new(),
        }
    }
}

impl MediaPort for SoundCardPort {
    async fn recv(&mut self, _epoch: tokio::time::Instant) -> io::Result<MediaInput> {
        // No network: the sound card never closes and has no keys to press.
        std::future::pending().await
    }

    fn caller_frame(&mut self, _now: Duration, out: &mut AudioFrame) -> bool {
        if let Ok(mut q) = self.heard.lock() {
            self.mic.push(q.drain(..));
        }
        let backlog = (MAX_MIC_BACKLOG.as_secs_f64() * f64::from(CALLER_RATE.hz())) as usize;
        self.mic.trim(backlog);
        let n = CALLER_RATE.frame_samples();
        self.scratch.resize(n, 0.0);
        if !self.mic.pull(&mut self.scratch) {
            return false;
        }
        let samples: Vec<i16> = self
            .scratch
            .iter()
            .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .collect();
        match AudioFrame::from_samples(CALLER_RATE, &samples) {
            Ok(frame) => {
                *out = frame;
                true
            }
            Err(_) => false,
        }
    }

    fn send_agent_frame(&mut self, _now: Duration, frame: Option<&AudioFrame>) -> io::Result<()> {
        let Some(frame) = frame else { return Ok(()) };
        let rate = frame.rate();
        if self.speaker.as_ref().is_none_or(|(r, _)| *r != rate) {
            self.speaker = Some((rate, RateConverter::new(rate.hz(), self.out_rate)));
        }
        let Some((_, conv)) = self.speaker.as_mut() else {
            return Ok(());
        };
        conv.push(frame.samples().iter().map(|&s| f32::from(s) / 32768.0));
        let ready = conv.available();
        self.scratch.resize(ready, 0.0);
        if ready > 0 && conv.pull(&mut self.scratch) {
            if let Ok(mut q) = self.playing.lock() {
                q.extend(self.scratch.iter().copied());
            }
        }
        Ok(())
    }

    fn caller_rate(&self) -> SampleRate {
        CALLER_RATE
    }
}

/// Runs the call on the sound card until it ends.
async fn call(args: &Args, port: SoundCardPort) -> Result<(), AppError> {
    let mut assistant = cli::read_assistant(&args.assistant)?;
    let cap = args.max_seconds.ceil() as i64;
    let limit = assistant
        .assistant
        .max_duration_seconds
        .map_or(cap, |s| s.min(cap));
    assistant.assistant.max_duration_seconds = Some(limit);
    let mut out = OutputDir::create(&args.out)?;
    let printer = Printer::new(Instant::now(), false);
    let direction = CallDirection::Web;
    let voxline = Voxline::from_env().with_standins(voxline::offline_standins());
    let built = voxline
        .providers_for(&assistant.assistant)
        .map_err(|e| AppError::Setup(format!("cannot set up the call: {e}")))?;
    for notice in &built.notices {
        printer.say(format!("note: {notice}"));
    }
    let settings = CallSettings::from_assistant(&assistant.assistant, direction);
    let (task, control, events) =
        new_call(settings, built.set.clone(), port, DriverOptions::default());
    let analyzer = match built.set.llm.clone() {
        Some(llm) => PostCallAnalyzer::new(llm).with_timeout(ANALYSIS_TIMEOUT),
        None => PostCallAnalyzer::disabled(),
    };
    let (recorder, recording) = out.recording()?;
    let log = out.event_log()?;
    let metadata = call_metadata(call_id("mic"), direction, assistant.assistant.pipeline());
    let reporter = CallReporter::new(metadata, now()?).with_assistant(assistant.json.clone());
    printer.set_epoch(Instant::now());
    let call_task = tokio::spawn(task.with_recording(Box::new(recorder)).run());
    let hang_up = control.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = hang_up.hang_up();
        }
    });
    let mut host = LocalTools {
        delay: Duration::from_millis(700),
        printer: printer.clone(),
    };
    let followed = follow_call(
        events,
        reporter,
        analyzer,
        log,
        printer.clone(),
        Vec::new(),
        &mut out,
        &mut host,
        control,
    )
    .await;
    ctrl_c.abort();
    call_task
        .await
        .map_err(|e| AppError::Call(format!("the call task failed: {e}")))?;
    let recording = recording.finished().await.map_err(|e| AppError::Output {
        path: out.path(RECORDING),
        detail: e.to_string(),
    })?;
    printer.say("");
    for line in summary(&followed.report) {
        printer.say(line);
    }
    printer.say(format!(
        "wrote {} ({:.1} s, stereo: you left, agent right) and the webhook bodies to {}",
        out.path(RECORDING).display(),
        recording.duration().as_secs_f64(),
        out.root().display()
    ));
    if let Some(e) = followed.output_error {
        return Err(e);
    }
    match followed.report.error {
        Some(error) => Err(AppError::Call(format!("the call failed: {error}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::RateConverter;

    fn tone(rate: u32, hz: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn converts_rates_and_keeps_a_tone() {
        for (from, to) in [
            (48_000, 16_000),
            (44_100, 16_000),
            (24_000, 44_100),
            (16_000, 16_000),
        ] {
            let mut c = RateConverter::new(from, to);
            c.push(tone(from, 440.0, from as usize));
            let mut out = vec![0.0; to as usize / 2];
            assert!(c.pull(&mut out), "{from} -> {to}");
            // Half a second of a 440 Hz tone: 440 positive-going zero crossings per second.
            let crossings = out.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
            assert!(
                (218..=222).contains(&crossings),
                "{from} -> {to}: {crossings}"
            );
            let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak > 0.4 && peak <= 0.5, "{from} -> {to}: peak {peak}");
            // Nearly everything that came in is ready: one second in, one second out.
            assert!(c.available() + out.len() >= to as usize - 4);
        }
    }

    #[test]
    fn trim_bounds_the_backlog() {
        let mut c = RateConverter::new(48_000, 16_000);
        c.push(vec![0.1; 48_000]);
        c.trim(3200);
        assert!(c.available() <= 3200 && c.available() >= 3190);
        let mut out = vec![0.0; 320];
        assert!(c.pull(&mut out));
        assert!(!c.pull(&mut vec![0.0; 4000]), "not enough left");
    }
}
