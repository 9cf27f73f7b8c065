//! rtp_agent: an agent as a plain RTP endpoint, for any peer that sends and receives RTP
//! (a SIP stack's media, a PBX, ffmpeg, GStreamer).
//!
//! It binds `--listen`, runs the assistant (`--assistant`, the platform's JSON) on the RTP
//! that arrives there and sends the agent's voice back. With `--remote` the agent sends to
//! that address from the start and greets at once; media is then accepted from any source
//! address (asymmetric RTP: ffmpeg and many gateways send from another port than they receive
//! on; the stream's SSRC is still locked to the first one). Without `--remote` the agent
//! answers when the first packet arrives and sends back to where it came from (symmetric RTP).
//! RFC 4733 key presses are understood on `--dtmf-payload-type` (101). The agent sends RTP
//! continuously, silence included, as trunks expect.
//!
//! The call ends when the agent ends it (`end_call`), after `--max-seconds` (the call's
//! `max_duration`), on Ctrl-C, or when the peer goes silent: no packet at all for
//! `--idle-seconds` after media started counts as the caller hanging up (a phone keeps sending
//! while it listens; a peer that stops has gone). Tool calls are answered by the example itself
//! with a plausible result, as in `local_call` (see `webhook_host` for tools over HTTP).
//!
//! The transcript goes to stdout (stderr with `--events -`); `--events` gets every event as a
//! JSON line; `--out` gets the webhook bodies (`assistant-request.json`,
//! `status-update-N.json`, `tool-calls-N.json`, `end-of-call-report.json`) and the stereo
//! `recording.wav` (caller left, agent right).
//!
//! ```text
//! cargo run --release --example rtp_agent -- [OPTIONS]
//!
//!   --listen ADDR         address to receive RTP on (default 127.0.0.1:5004)
//!   --remote ADDR         where to send RTP (default: where the first packet came from)
//!   --codec C             opus | pcmu | pcma (default opus)
//!   --payload-type N      RTP payload type (default 111 for opus, 0 for pcmu, 8 for pcma)
//!   --dtmf-payload-type N telephone-event payload type, 0-127 (default 101; "none" to disable)
//!   --assistant FILE      assistant JSON (default examples/assistants/dental_booking.json)
//!   --direction D         inbound | outbound (default inbound; outbound greets with
//!                         first_message_outbound and checks for voicemail)
//!   --events FILE         event log as JSON lines, - for stdout (default OUT/events.jsonl)
//!   --out DIR             webhook bodies and recording (default out/rtp_agent)
//!   --max-seconds N       longest call, and longest wait for the first packet (default 300)
//!   --idle-seconds N      silence from the peer that ends the call (default 5)
//!   -h, --help            this text
//! ```
//!
//! For example, with ffmpeg as the caller (it records the agent through an SDP file naming
//! port 5006 and payload type 111 as `opus/48000/2`, and sends a sentence followed by ten
//! seconds of silence, as a phone keeps sending while its user listens):
//!
//! ```text
//! cargo run --release --example rtp_agent -- --listen 127.0.0.1:5004 --remote 127.0.0.1:5006
//! ffmpeg -protocol_whitelist file,udp,rtp -i agent.sdp -ar 16000 agent.wav
//! ffmpeg -i assets/caller.wav -af apad=pad_dur=10 caller_then_silence.wav
//! ffmpeg -re -i caller_then_silence.wav -c:a libopus -ar 48000 -ac 1 -payload_type 111 \
//!     -f rtp rtp://127.0.0.1:5004
//! ```
//!
//! Exit status: 0 after a call, 3 when no RTP arrived within `--max-seconds`, 2 for a bad
//! command line or input file, 1 when the call could not be set up or failed.

#[path = "common/mod.rs"]
mod common;

pub use common::codec::Codec;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use voxline::codecs::{PayloadFormat, PayloadRegistry};
use voxline::engine::call::EndReason;
use voxline::engine::media::PacketTransport;
use voxline::engine::report::{CallReport, CallReporter, PostCallAnalyzer};
use voxline::{
    CallControl, CallDirection, CallOutcome, DriverOptions, MediaConfig, Standins, Voxline,
};

use common::cli::{self, AppError};
use common::host::{call_id, call_metadata, follow_call, now, LocalTools, ANALYSIS_TIMEOUT};
use common::output::{EventLog, OutputDir, EVENTS, RECORDING};
use common::transcript::{summary, Printer};

const USAGE: &str = "usage: rtp_agent [--listen ADDR] [--remote ADDR] [--codec opus|pcmu|pcma] \
[--payload-type N] [--dtmf-payload-type N|none] [--assistant FILE] [--direction inbound|outbound] \
[--events FILE] [--out DIR] [--max-seconds N] [--idle-seconds N]\nrun with --help for details";

/// How long the example's "booking system" takes to answer a tool call.
const TOOL_DELAY: Duration = Duration::from_millis(700);

/// The parsed command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// Where to receive RTP.
    pub listen: SocketAddr,
    /// Where to send RTP; learned from the first packet when `None`.
    pub remote: Option<SocketAddr>,
    /// The codec.
    pub codec: Codec,
    /// Its payload type (the codec's usual one when `None`).
    pub payload_type: Option<u8>,
    /// The telephone-event payload type, if any.
    pub dtmf_payload_type: Option<u8>,
    /// The assistant JSON.
    pub assistant: PathBuf,
    /// Inbound or outbound.
    pub direction: CallDirection,
    /// The event log (`None`: `events.jsonl` in `out`).
    pub events: Option<PathBuf>,
    /// Webhook bodies and recording.
    pub out: PathBuf,
    /// Longest call, and longest wait for the first packet.
    pub max_seconds: f64,
    /// Peer silence that ends the call.
    pub idle_seconds: f64,
    /// Hang up on Ctrl-C (the binary sets it; not an option).
    pub ctrl_c: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            listen: SocketAddr::from(([127, 0, 0, 1], 5004)),
            remote: None,
            codec: Codec::Opus,
            payload_type: None,
            dtmf_payload_type: Some(101),
            assistant: PathBuf::from("examples/assistants/dental_booking.json"),
            direction: CallDirection::Inbound,
            events: None,
            out: PathBuf::from("out/rtp_agent"),
            max_seconds: 300.0,
            idle_seconds: 5.0,
            ctrl_c: false,
        }
    }
}

impl Args {
    /// Parses the options; `Ok(None)` for `--help`.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, AppError> {
        let mut a = Args::default();
        while let Some(flag) = it.next() {
            let f = flag.as_str();
            match f {
                "-h" | "--help" => return Ok(None),
                "--listen" => a.listen = cli::address(f, &cli::value(&mut it, f)?)?,
                "--remote" => a.remote = Some(cli::address(f, &cli::value(&mut it, f)?)?),
                "--codec" => {
                    a.codec = Codec::parse(&cli::value(&mut it, f)?).map_err(AppError::Usage)?
                }
                "--payload-type" => {
                    a.payload_type = Some(payload_type(f, &cli::value(&mut it, f)?)?)
                }
                "--dtmf-payload-type" => {
                    let v = cli::value(&mut it, f)?;
                    a.dtmf_payload_type = match v.as_str() {
                        "none" => None,
                        _ => Some(payload_type(f, &v)?),
                    }
                }
                "--assistant" => a.assistant = cli::value(&mut it, f)?.into(),
                "--direction" => {
                    a.direction = match cli::value(&mut it, f)?.to_ascii_lowercase().as_str() {
                        "inbound" => CallDirection::Inbound,
                        "outbound" => CallDirection::Outbound,
                        other => {
                            return Err(AppError::Usage(format!(
                                "--direction: {other:?} is not inbound or outbound"
                            )))
                        }
                    }
                }
                "--events" => a.events = Some(cli::value(&mut it, f)?.into()),
                "--out" => a.out = cli::value(&mut it, f)?.into(),
                "--max-seconds" => {
                    a.max_seconds = cli::seconds(f, &cli::value(&mut it, f)?, 1.0, 86_400.0)?
                }
                "--idle-seconds" => {
                    a.idle_seconds = cli::seconds(f, &cli::value(&mut it, f)?, 0.5, 3600.0)?
                }
                other => return Err(AppError::Usage(format!("unknown option {other:?}"))),
            }
        }
        if a.dtmf_payload_type.is_some() && a.dtmf_payload_type == Some(a.payload_type()) {
            return Err(AppError::Usage(format!(
                "payload type {} is both the audio (--payload-type) and telephone-event \
                 (--dtmf-payload-type) one; give another --dtmf-payload-type, or none",
                a.payload_type()
            )));
        }
        Ok(Some(a))
    }

    /// The audio payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
            .unwrap_or_else(|| self.codec.default_payload_type())
    }

    /// The session's media configuration.
    fn media(&self) -> Result<MediaConfig, AppError> {
        let format = self.codec.format();
        let mut registry = PayloadRegistry::empty();
        registry
            .insert(self.payload_type(), format)
            .map_err(|e| AppError::Usage(format!("--payload-type: {e}")))?;
        if let Some(pt) = self.dtmf_payload_type {
            registry
                .insert(
                    pt,
                    PayloadFormat::TelephoneEvent {
                        clock_rate: format.clock_rate(),
                    },
                )
                .map_err(|e| AppError::Usage(format!("--dtmf-payload-type: {e}")))?;
        }
        let mut media = MediaConfig::new(registry, self.payload_type());
        media.remote = self.remote;
        // Continuous RTP, silence included: trunks and gateways expect it.
        media.send_silence = true;
        Ok(media)
    }
}

fn payload_type(flag: &str, v: &str) -> Result<u8, AppError> {
    let pt: u8 = cli::number(flag, v)?;
    if pt > 127 {
        return Err(AppError::Usage(format!(
            "{flag}: {pt} is not an RTP payload type (0-127)"
        )));
    }
    Ok(pt)
}

fn main() -> ExitCode {
    let mut args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!(
                "{}",
                cli::help_from_doc(
                    include_str!("rtp_agent.rs"),
                    "rtp_agent: an agent as a plain RTP endpoint."
                )
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return e.report(USAGE),
    };
    args.ctrl_c = true;
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
    match runtime.block_on(run(&args, voxline::offline_standins(), |_| {})) {
        Ok(done) if done.datagrams == 0 => {
            eprintln!(
                "no RTP arrived on {} within {} s",
                args.listen, args.max_seconds
            );
            ExitCode::from(3)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => e.report(USAGE),
    }
}

/// What the peer's packets did, shared between the socket and the watchdog.
#[derive(Debug, Default)]
struct Activity {
    /// Datagrams received.
    datagrams: AtomicU64,
    /// When the last one arrived, in ms since the watchdog's epoch (0: none yet).
    last_ms: AtomicU64,
}

/// The agent's UDP socket: notes every datagram for the watchdog and, when the remote address
/// is fixed, reports datagrams as coming from it (asymmetric RTP).
struct AgentSocket {
    socket: UdpSocket,
    remote: Option<SocketAddr>,
    activity: Arc<Activity>,
    epoch: Instant,
}

impl AgentSocket {
    fn arrived(&self, from: SocketAddr) -> SocketAddr {
        self.activity.datagrams.fetch_add(1, Ordering::Relaxed);
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.activity.last_ms.store(ms, Ordering::Relaxed);
        self.remote.unwrap_or(from)
    }
}

impl PacketTransport for AgentSocket {
    async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf).await?;
        Ok((n, self.arrived(from)))
    }

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<bool> {
        match self.socket.try_send_to(buf, to) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        match self.socket.try_recv_from(buf) {
            Ok((n, from)) => Ok(Some((n, self.arrived(from)))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What one run of the agent left behind.
pub struct AgentRun {
    /// The end-of-call report.
    pub report: CallReport,
    /// How the call task ended.
    pub outcome: CallOutcome,
    /// Datagrams received from the peer.
    pub datagrams: u64,
    /// Events written to the event log.
    pub events_logged: u64,
}

/// Runs one call of the agent: binds `args.listen`, calls `on_ready` with the bound address,
/// and returns when the call has ended and its report was written.
pub async fn run(
    args: &Args,
    standins: Standins,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<AgentRun, AppError> {
    let mut assistant = cli::read_assistant(&args.assistant)?;
    // --max-seconds caps the call as the assistant's own limit does (end reason max_duration).
    let cap = args.max_seconds.ceil() as i64;
    let limit = assistant
        .assistant
        .max_duration_seconds
        .map_or(cap, |s| s.min(cap));
    assistant.assistant.max_duration_seconds = Some(limit);
    let media = args.media()?;
    let mut out = OutputDir::create(&args.out)?;
    let log = match &args.events {
        Some(path) => EventLog::create(path)?,
        None => out.event_log()?,
    };
    let printer = Printer::new(Instant::now(), log.is_stdout());

    let socket = UdpSocket::bind(args.listen)
        .await
        .map_err(|e| AppError::Setup(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = socket
        .local_addr()
        .map_err(|e| AppError::Setup(format!("socket: {e}")))?;
    let epoch = Instant::now();
    let activity = Arc::new(Activity::default());
    let transport = AgentSocket {
        socket,
        remote: args.remote,
        activity: activity.clone(),
        epoch,
    };

    let metadata = call_metadata(
        call_id("rtp"),
        args.direction,
        assistant.assistant.pipeline(),
    );
    out.write_webhook(&metadata.assistant_request(now()?))?;
    // Without a remote address the agent answers when the peer's first packet arrives.
    let options = DriverOptions {
        auto_answer: args.remote.is_some(),
        ..DriverOptions::default()
    };
    let voxline = Voxline::from_env()
        .with_standins(standins)
        .with_options(options);
    let call = voxline
        .prepare_call(&assistant.assistant, args.direction, transport, media)
        .map_err(|e| AppError::Setup(format!("cannot set up the call: {e}")))?;
    let name = assistant
        .assistant
        .name
        .as_deref()
        .unwrap_or("the assistant");
    printer.say(format!(
        "rtp_agent: {name} ({}) on {local}, RTP/{} payload type {}{}, {}",
        assistant.path.display(),
        args.codec.name(),
        args.payload_type(),
        args.dtmf_payload_type
            .map(|pt| format!(" (keys on {pt})"))
            .unwrap_or_default(),
        match args.remote {
            Some(r) => format!("sending to {r}"),
            None => "waiting for the first packet".to_string(),
        }
    ));
    for notice in &call.notices {
        printer.say(format!("note: {notice}"));
    }
    let analyzer = match call.providers.llm.clone() {
        Some(llm) => PostCallAnalyzer::new(llm).with_timeout(ANALYSIS_TIMEOUT),
        None => PostCallAnalyzer::disabled(),
    };
    let (recorder, recording) = out.recording()?;
    let task = call.task.with_recording(Box::new(recorder));
    let control = call.control.clone();

    let started_at = now()?;
    printer.set_epoch(Instant::now());
    let call_task = tokio::spawn(task.run());
    on_ready(local);
    let watchdog = tokio::spawn(watch(
        control.clone(),
        activity.clone(),
        epoch,
        args.remote.is_none(),
        Duration::from_secs_f64(args.max_seconds),
        Duration::from_secs_f64(args.idle_seconds),
        args.ctrl_c,
        printer.clone(),
    ));
    let reporter = CallReporter::new(metadata, started_at).with_assistant(assistant.json.clone());
    let mut host = LocalTools {
        delay: TOOL_DELAY,
        printer: printer.clone(),
    };
    let followed = follow_call(
        call.events,
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
    watchdog.abort();
    let outcome = call_task
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
    let datagrams = activity.datagrams.load(Ordering::Relaxed);
    printer.say(format!(
        "media: {datagrams} datagrams from the peer, {} caller frames heard, {} agent frames sent",
        outcome.media.caller_frames, outcome.media.agent_frames
    ));
    printer.say(format!(
        "wrote {} ({:.1} s, stereo: caller left, agent right), the webhook bodies to {}, and {} events to {}",
        out.path(RECORDING).display(),
        recording.duration().as_secs_f64(),
        out.root().display(),
        followed.events_logged,
        args.events
            .clone()
            .unwrap_or_else(|| out.path(EVENTS))
            .display()
    ));
    if let Some(e) = followed.output_error {
        return Err(e);
    }
    if outcome.end_reason == EndReason::Error {
        let why = followed.report.error.clone().unwrap_or_default();
        return Err(AppError::Call(format!("the call failed: {why}")));
    }
    Ok(AgentRun {
        report: followed.report,
        outcome,
        datagrams,
        events_logged: followed.events_logged,
    })
}

/// Answers the call on the first packet (when waiting for one) and hangs up for a peer that
/// never sent, went silent, or on Ctrl-C.
#[allow(clippy::too_many_arguments)]
async fn watch(
    control: CallControl,
    activity: Arc<Activity>,
    epoch: Instant,
    answer_on_first_packet: bool,
    max_wait: Duration,
    idle: Duration,
    ctrl_c: bool,
    printer: Printer,
) {
    let interrupted = async {
        if ctrl_c && tokio::signal::ctrl_c().await.is_ok() {
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::pin!(interrupted);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut answered = false;
    loop {
        tokio::select! {
            _ = &mut interrupted => {
                printer.note("host", "(Ctrl-C: hanging up)");
                let _ = control.hang_up();
                return;
            }
            _ = tick.tick() => {}
        }
        let last = activity.last_ms.load(Ordering::Relaxed);
        let now = epoch.elapsed();
        if last == 0 {
            if now >= max_wait {
                printer.note(
                    "host",
                    format!("(no RTP within {} s: giving up)", max_wait.as_secs_f64()),
                );
                let _ = control.hang_up();
                return;
            }
            continue;
        }
        if answer_on_first_packet && !answered {
            answered = true;
            printer.note("host", "(first packet: answering)");
            if control.answer().is_err() {
                return;
            }
        }
        let silent = now.saturating_sub(Duration::from_millis(last - 1));
        if silent >= idle {
            printer.note(
                "caller",
                format!(
                    "(no RTP for {:.1} s: the caller has gone)",
                    silent.as_secs_f64()
                ),
            );
            let _ = control.hang_up();
            return;
        }
    }
}
