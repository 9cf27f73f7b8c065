//! local_call: a whole phone call with an agent on this machine, over RTP on 127.0.0.1.
//!
//! The example is both ends of a call and the host between them. The engine runs the
//! assistant (`--assistant`, the platform's JSON) on one UDP socket; a simulated caller on
//! another socket sends speech from WAV files as RTP/Opus and decodes the agent's voice. The
//! agent greets; the caller asks (`assets/caller.wav`); the agent answers and calls the
//! assistant's tool, which the example answers as a booking system would
//! (`{"confirmed": true, …}`); while the agent is speaking its answer the caller talks over it
//! (`assets/caller_followup.wav`: a barge-in); the call then ends by the agent's `end_call`,
//! or the caller hangs up once the agent stays quiet, and at the latest after `--max-seconds`.
//!
//! Providers follow the assistant JSON. Hosted providers need their keys
//! (`DEEPGRAM_API_KEY`, `OPENAI_API_KEY`, `ELEVENLABS_API_KEY`, …); a provider without a key
//! is replaced by the offline one this build has, and a line says so. The live transcript
//! shows what each side said, the tool calls and the latency of every agent turn; the output
//! folder gets the platform's webhook bodies (`assistant-request.json`,
//! `status-update-N.json`, `tool-calls-N.json`, `end-of-call-report.json`), the stereo
//! recording `recording.wav` (caller left, agent right) and `events.jsonl` (every event).
//!
//! ```text
//! cargo run --release --example local_call -- [OPTIONS]
//!
//!   --assistant FILE      assistant JSON (default examples/assistants/dental_booking.json)
//!   --caller FILE.wav     what the caller says, once per utterance, in order; the second
//!                         one is spoken over the agent's answer (default assets/caller.wav
//!                         then assets/caller_followup.wav); 8/16/24/48 kHz, any channels
//!   --out DIR             output folder (default out/)
//!   --max-seconds S       the caller hangs up after this long at the latest (default 40)
//!   -h, --help            this text
//! ```
//!
//! Exit status: 0 when the call ran to its end, 2 for a bad command line or input file,
//! 1 when the call could not be set up or failed.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use voxline::engine::report::CallReporter;
use voxline::{CallDirection, Standins, Voxline};

use common::caller::Clip;
use common::cli::{self, AppError};
use common::host::{call_id, call_metadata, now, LocalTools};
use common::output::{OutputDir, EVENTS, RECORDING};
use common::sim_call::{self, SimCallOptions, SimOutcome};
use common::transcript::{summary, Printer};

const USAGE: &str = "usage: local_call [--assistant FILE] [--caller FILE.wav]... [--out DIR] \
[--max-seconds S]\nrun with --help for details";

/// The defaults, relative to the repository.
const DEFAULT_ASSISTANT: &str = "examples/assistants/dental_booking.json";
const DEFAULT_CALLER: [&str; 2] = ["assets/caller.wav", "assets/caller_followup.wav"];

/// How long the example's "booking system" takes to answer a tool call.
const TOOL_DELAY: Duration = Duration::from_millis(700);

/// The parsed command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// The assistant JSON.
    pub assistant: PathBuf,
    /// The caller's utterances.
    pub callers: Vec<PathBuf>,
    /// The output folder.
    pub out: PathBuf,
    /// The latest the caller hangs up.
    pub max_seconds: f64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            assistant: PathBuf::from(DEFAULT_ASSISTANT),
            callers: DEFAULT_CALLER.iter().map(PathBuf::from).collect(),
            out: PathBuf::from("out"),
            max_seconds: 40.0,
        }
    }
}

impl Args {
    /// Parses the options; `Ok(None)` for `--help`.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, AppError> {
        let mut args = Args::default();
        let mut callers = Vec::new();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--assistant" => args.assistant = cli::value(&mut it, &flag)?.into(),
                "--caller" => callers.push(PathBuf::from(cli::value(&mut it, &flag)?)),
                "--out" => args.out = cli::value(&mut it, &flag)?.into(),
                "--max-seconds" => {
                    args.max_seconds =
                        cli::seconds(&flag, &cli::value(&mut it, &flag)?, 5.0, 3600.0)?
                }
                other => return Err(AppError::Usage(format!("unknown option {other:?}"))),
            }
        }
        if !callers.is_empty() {
            args.callers = callers;
        }
        Ok(Some(args))
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!(
                "{}",
                cli::help_from_doc(
                    include_str!("local_call.rs"),
                    "local_call: a whole phone call with an agent on this machine."
                )
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return e.report(USAGE),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, voxline::offline_standins())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => e.report(USAGE),
    }
}

/// Runs the call of `args` with `standins` for hosted providers that have no key.
pub async fn run(args: &Args, standins: Standins) -> Result<SimOutcome, AppError> {
    let assistant = cli::read_assistant(&args.assistant)?;
    let mut clips = Vec::with_capacity(args.callers.len());
    for path in &args.callers {
        let path = cli::repo_path(path);
        let samples = common::audio::read_voice(&path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        clips.push(Clip {
            name,
            samples: Arc::new(samples),
        });
    }
    let mut out = OutputDir::create(&args.out)?;
    let printer = Printer::new(Instant::now(), false);
    let name = assistant
        .assistant
        .name
        .as_deref()
        .unwrap_or("the assistant");
    printer.say(format!(
        "local_call: {name} ({}) answers a simulated caller over RTP on 127.0.0.1",
        assistant.path.display()
    ));

    // Before answering, the platform asks the host which assistant takes the call; this host
    // answers `{}`: the number's own assistant, the file given.
    let direction = CallDirection::Inbound;
    let metadata = call_metadata(call_id("local"), direction, assistant.assistant.pipeline());
    let request = metadata.assistant_request(now()?);
    let path = out.write_webhook(&request)?;
    printer.say(format!(
        "webhook assistant-request -> {}; the host answers {{}}: the number's assistant",
        path.display()
    ));

    let voxline = Voxline::from_env().with_standins(standins);
    let options = SimCallOptions {
        clips,
        max_call: Duration::from_secs_f64(args.max_seconds),
        direction,
    };
    let mut host = LocalTools {
        delay: TOOL_DELAY,
        printer: printer.clone(),
    };
    let echoed = assistant.json.clone();
    let mut done = sim_call::run(
        &voxline,
        &assistant.assistant,
        |started| CallReporter::new(metadata, started).with_assistant(echoed),
        &options,
        &mut out,
        &printer,
        &mut host,
        |_| {},
    )
    .await?;

    printer.say("");
    for line in summary(&done.followed.report) {
        printer.say(line);
    }
    printer.say(format!(
        "the caller sent {} RTP packets and heard {:.1} s of the agent",
        done.caller.packets_sent,
        done.caller.agent_frames_audible as f64 * 0.02
    ));
    let recording = done.recording.as_ref().map_err(|e| AppError::Output {
        path: out.path(RECORDING),
        detail: e.to_string(),
    })?;
    printer.say(format!(
        "wrote {} files to {}: {} ({:.1} s, stereo: caller left, agent right), {} ({} events)",
        out.written().len(),
        out.root().display(),
        RECORDING,
        recording.duration().as_secs_f64(),
        EVENTS,
        done.followed.events_logged
    ));
    if let Some(e) = done.followed.output_error.take() {
        return Err(e);
    }
    if let Some(error) = &done.followed.report.error {
        return Err(AppError::Call(format!("the call failed: {error}")));
    }
    Ok(done)
}
