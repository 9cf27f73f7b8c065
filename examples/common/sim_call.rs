//! A whole simulated phone call on 127.0.0.1: the engine on one UDP socket, a simulated caller
//! on another, RTP/Opus between them, and a director that cues the caller from what the agent
//! does:
//!
//! 1. the agent greets; 0.6 s after the greeting the caller speaks the first clip;
//! 2. the caller speaks the second clip 1.5 s into the agent's answer (not a tool's hold
//!    message, and once no tool call is waiting for its result), so the agent gets
//!    interrupted: a barge-in;
//! 3. the call then ends by itself (the agent's `end_call`), or the caller hangs up when the
//!    agent has been quiet for [`QUIET_HANG_UP`], and at the latest after the call's time limit.

use std::fs::File;
use std::io::BufWriter;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use voxline::engine::call::settings::ToolKind;
use voxline::engine::call::{CallEvent, EventRecord};
use voxline::engine::config::Assistant;
use voxline::engine::platform::Timestamp;
use voxline::engine::report::{CallReporter, FinishedRecording, PostCallAnalyzer, RecordingError};
use voxline::{CallControl, CallDirection, CallOutcome, CallSettings, Voxline};

use super::caller::{opus_media, spawn_caller, CallerLog, Clip, Cue, Heard};
use super::cli::AppError;
use super::host::{follow_call, now, Followed, Host, ANALYSIS_TIMEOUT};
use super::output::OutputDir;
use super::transcript::Printer;

/// The caller hangs up when the agent has said nothing for this long after the caller's last
/// clip (and has not ended the call itself).
pub const QUIET_HANG_UP: Duration = Duration::from_secs(8);

/// Pause between the end of the greeting and the caller's first words.
const ANSWER_PAUSE: Duration = Duration::from_millis(600);

/// How far into the agent's answer the caller starts talking over it.
const BARGE_IN_AFTER: Duration = Duration::from_millis(1500);

/// How long the caller waits for a greeting before speaking anyway.
const GREETING_WAIT: Duration = Duration::from_secs(6);

/// What the simulated call does.
#[derive(Clone, Debug)]
pub struct SimCallOptions {
    /// The caller's utterances, in order (the second one barges in).
    pub clips: Vec<Clip>,
    /// The caller hangs up at the latest this long after the call started.
    pub max_call: Duration,
    /// Which way the call goes (the greeting and voicemail rules depend on it).
    pub direction: CallDirection,
}

/// What a simulated call left behind.
pub struct SimOutcome {
    /// The followed call: report, events logged, output errors.
    pub followed: Followed,
    /// How the call task ended.
    pub outcome: CallOutcome,
    /// The stereo recording, completed.
    pub recording: Result<FinishedRecording<BufWriter<File>>, RecordingError>,
    /// What the caller observed.
    pub caller: CallerLog,
}

/// Runs one simulated call of `assistant` to its end.
///
/// `reporter` builds the call's webhook reporter from the wall time the call started;
/// `on_start` gets the call's control handle as soon as the call runs (e.g. to drive it from
/// stdin); `host` receives every webhook body after it was written to `out`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    voxline: &Voxline,
    assistant: &Assistant,
    reporter: impl FnOnce(Timestamp) -> CallReporter,
    options: &SimCallOptions,
    out: &mut OutputDir,
    printer: &Printer,
    host: &mut dyn Host,
    on_start: impl FnOnce(&CallControl),
) -> Result<SimOutcome, AppError> {
    let setup = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| AppError::Setup(format!("{what}: {e}"))
    };
    let engine_socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(setup("engine socket"))?;
    let caller_socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(setup("caller socket"))?;
    let engine_addr = engine_socket.local_addr().map_err(setup("engine socket"))?;
    let caller_addr = caller_socket.local_addr().map_err(setup("caller socket"))?;

    let media = opus_media()?;
    let mut engine_media = media.clone();
    engine_media.remote = Some(caller_addr);
    let call = voxline
        .prepare_call(assistant, options.direction, engine_socket, engine_media)
        .map_err(|e| AppError::Setup(format!("cannot set up the call: {e}")))?;
    for notice in &call.notices {
        printer.say(format!("note: {notice}"));
    }
    let analyzer = match call.providers.llm.clone() {
        Some(llm) => PostCallAnalyzer::new(llm).with_timeout(ANALYSIS_TIMEOUT),
        None => PostCallAnalyzer::disabled(),
    };
    let (recorder, recording) = out.recording()?;
    let log = out.event_log()?;
    let task = call.task.with_recording(Box::new(recorder));
    let control = call.control.clone();

    let started_at = now()?;
    let epoch = Instant::now();
    printer.set_epoch(epoch);
    printer.say(format!(
        "{:>7}   {:<7} RTP/Opus between the caller on {caller_addr} and the agent on {engine_addr}",
        "time", "who"
    ));
    let call_task = tokio::spawn(task.run());
    on_start(&control);
    let (caller, heard) = spawn_caller(caller_socket, engine_addr, media, options.clips.clone())?;
    let (tap, taps) = mpsc::unbounded_channel();
    let director = tokio::spawn(direct(
        Director {
            events: taps,
            heard,
            state: State {
                held_tools: held_tools(&call.settings),
                ..State::default()
            },
            deadline: epoch + options.max_call,
        },
        caller.cues(),
        control.clone(),
        printer.clone(),
        options.clips.clone(),
    ));

    let followed = follow_call(
        call.events,
        reporter(started_at),
        analyzer,
        log,
        printer.clone(),
        vec![tap],
        out,
        host,
        control,
    )
    .await;
    director.abort();
    let caller_log = caller.stop().await;
    let outcome = call_task
        .await
        .map_err(|e| AppError::Call(format!("the call task failed: {e}")))?;
    let recording = recording.finished().await;
    Ok(SimOutcome {
        followed,
        outcome,
        recording,
        caller: caller_log,
    })
}

/// What the director has seen of the call so far.
#[derive(Default, Debug)]
struct State {
    ended: bool,
    agent_speaking: bool,
    tools_waiting: usize,
    /// Tools that speak a message while they run ("One moment while I check the calendar").
    held_tools: Vec<String>,
    /// Hold messages announced by tool calls and not yet started.
    holds_due: usize,
    /// The latest agent speech is a tool's hold message, not an answer.
    speaking_hold: bool,
}

/// Follows the call's events for the director.
struct Director {
    events: mpsc::UnboundedReceiver<EventRecord>,
    heard: mpsc::UnboundedReceiver<Heard>,
    state: State,
    deadline: Instant,
}

/// Why a wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    Matched,
    TimedOut,
    CallOver,
}

impl Director {
    fn observe(&mut self, record: &EventRecord) {
        let s = &mut self.state;
        match &record.event {
            CallEvent::Status { status, .. } if status.is_terminal() => s.ended = true,
            CallEvent::AgentSpeechStarted { .. } => {
                s.agent_speaking = true;
                s.speaking_hold = s.holds_due > 0;
                s.holds_due = s.holds_due.saturating_sub(1);
            }
            CallEvent::AgentResumed { .. } => s.agent_speaking = true,
            CallEvent::AgentSpeechStopped { .. }
            | CallEvent::AgentInterrupted { .. }
            | CallEvent::AgentPaused { .. } => s.agent_speaking = false,
            CallEvent::ToolCall { name, is_async, .. } => {
                if !is_async {
                    s.tools_waiting += 1;
                }
                if s.held_tools.contains(name) {
                    s.holds_due += 1;
                }
            }
            CallEvent::ToolResult { .. } => s.tools_waiting = s.tools_waiting.saturating_sub(1),
            _ => {}
        }
    }

    /// Waits until an event satisfies `matches` (judged after the state took it in), until
    /// `until`, or until the call is over (ended, or past the deadline).
    async fn wait(
        &mut self,
        until: Instant,
        mut matches: impl FnMut(&EventRecord, &State) -> bool,
    ) -> Wait {
        let until = until.min(self.deadline);
        loop {
            if self.state.ended {
                return Wait::CallOver;
            }
            tokio::select! {
                record = self.events.recv() => match record {
                    Some(record) => {
                        self.observe(&record);
                        if self.state.ended {
                            return Wait::CallOver;
                        }
                        if matches(&record, &self.state) {
                            return Wait::Matched;
                        }
                    }
                    None => return Wait::CallOver,
                },
                _ = sleep_until(until) => {
                    return if until >= self.deadline { Wait::CallOver } else { Wait::TimedOut };
                }
            }
        }
    }

    /// Keeps following events until the caller reports clip `n` finished.
    async fn spoken(&mut self, n: usize) -> Wait {
        loop {
            if self.state.ended {
                return Wait::CallOver;
            }
            tokio::select! {
                h = self.heard.recv() => match h {
                    Some(Heard::Finished(k)) if k == n => return Wait::Matched,
                    Some(_) => {}
                    None => return Wait::CallOver,
                },
                record = self.events.recv() => match record {
                    Some(record) => self.observe(&record),
                    None => return Wait::CallOver,
                },
                _ = sleep_until(self.deadline) => return Wait::CallOver,
            }
        }
    }
}

/// The director: cues the caller from the agent's behaviour (see the module docs) and hangs up
/// for the caller when the call would otherwise not end.
async fn direct(
    mut d: Director,
    cues: mpsc::UnboundedSender<Cue>,
    control: CallControl,
    printer: Printer,
    clips: Vec<Clip>,
) {
    let say = |n: usize, what: &str| {
        if let Some(clip) = clips.get(n) {
            printer.note(
                "caller",
                format!(
                    "({what}: {}, {:.1} s)",
                    clip.name,
                    clip.duration().as_secs_f64()
                ),
            );
            let _ = cues.send(Cue::Say(n));
        }
    };
    let hang_up = |why: &str| {
        printer.note("caller", format!("(hangs up: {why})"));
        let _ = control.hang_up();
    };
    let over = |d: &Director| {
        if d.state.ended {
            None
        } else {
            Some("the call reached its time limit")
        }
    };

    // 1. The greeting, then the first clip.
    let greeting = Instant::now() + GREETING_WAIT;
    match d
        .wait(greeting, |r, _| {
            matches!(r.event, CallEvent::AgentSpeechStarted { .. })
        })
        .await
    {
        Wait::CallOver => return over(&d).map_or((), &hang_up),
        Wait::TimedOut => {}
        Wait::Matched => {
            let stopped = d.wait(far(), |_, s| !s.agent_speaking).await;
            if stopped == Wait::CallOver {
                return over(&d).map_or((), &hang_up);
            }
        }
    }
    if d.wait(Instant::now() + ANSWER_PAUSE, |_, _| false).await == Wait::CallOver {
        return over(&d).map_or((), &hang_up);
    }
    if clips.is_empty() {
        return;
    }
    say(0, "speaks");
    if d.spoken(0).await == Wait::CallOver {
        return over(&d).map_or((), &hang_up);
    }

    // 2. The second clip, over the agent's answer: not a tool's hold message, and no tool call
    //    waiting for its result.
    if clips.len() > 1 {
        let answer = d
            .wait(far(), |r, s| {
                matches!(r.event, CallEvent::AgentSpeechStarted { .. })
                    && !s.speaking_hold
                    && s.tools_waiting == 0
            })
            .await;
        if answer == Wait::CallOver {
            return over(&d).map_or((), &hang_up);
        }
        let into = d
            .wait(Instant::now() + BARGE_IN_AFTER, |_, s| !s.agent_speaking)
            .await;
        match into {
            Wait::CallOver => return over(&d).map_or((), &hang_up),
            // The answer was shorter: speak after it.
            Wait::Matched => {
                if d.wait(Instant::now() + ANSWER_PAUSE, |_, _| false).await == Wait::CallOver {
                    return over(&d).map_or((), &hang_up);
                }
                say(1, "speaks");
            }
            Wait::TimedOut => say(1, "talks over the agent"),
        }
        if d.spoken(1).await == Wait::CallOver {
            return over(&d).map_or((), &hang_up);
        }
    }

    // 3. Wait for the agent to end the call; hang up when it stays quiet.
    let mut quiet_since = Instant::now();
    loop {
        let until = quiet_since + QUIET_HANG_UP;
        match d
            .wait(until, |r, _| {
                matches!(
                    r.event,
                    CallEvent::AgentSpeechStarted { .. }
                        | CallEvent::AgentSpeechStopped { .. }
                        | CallEvent::AgentInterrupted { .. }
                )
            })
            .await
        {
            Wait::CallOver => return over(&d).map_or((), &hang_up),
            Wait::Matched => quiet_since = Instant::now(),
            Wait::TimedOut if d.state.agent_speaking => quiet_since = Instant::now(),
            Wait::TimedOut => return hang_up("the agent has nothing more to say"),
        }
    }
}

/// The tools that speak a message while they run.
fn held_tools(settings: &CallSettings) -> Vec<String> {
    settings
        .tools
        .iter()
        .filter(|t| matches!(&t.kind, ToolKind::Function { message: Some(m), .. } if !m.trim().is_empty()))
        .map(|t| t.spec.name.clone())
        .collect()
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}
