//! The live transcript: one readable line per thing that happened in the call, stamped with
//! call time, and the summary printed when it is over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use voxline::engine::call::{CallEvent, CallStatus, EventRecord, TurnLatency};
use voxline::engine::provider::{Role, Stage};
use voxline::engine::report::CallReport;

/// Prints the transcript (to stdout, or stderr when stdout carries the event log). Clones
/// share the epoch notes are stamped from.
#[derive(Clone, Debug)]
pub struct Printer {
    epoch: Arc<Mutex<Instant>>,
    to_stderr: bool,
}

impl Printer {
    /// A printer whose notes are stamped from `epoch` until [`Printer::set_epoch`].
    pub fn new(epoch: Instant, to_stderr: bool) -> Self {
        Printer {
            epoch: Arc::new(Mutex::new(epoch)),
            to_stderr,
        }
    }

    /// Sets the call's start (for this printer and its clones): notes are stamped from here.
    pub fn set_epoch(&self, epoch: Instant) {
        if let Ok(mut e) = self.epoch.lock() {
            *e = epoch;
        }
    }

    fn emit(&self, line: &str) {
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// A plain line (headers, notices, the summary).
    pub fn say(&self, line: impl AsRef<str>) {
        self.emit(line.as_ref());
    }

    /// A line from the host or the caller, stamped with the current call time.
    pub fn note(&self, who: &str, text: impl AsRef<str>) {
        let at = self.epoch.lock().map_or(Duration::ZERO, |e| e.elapsed());
        self.emit(&stamp(at, who, text.as_ref()));
    }

    /// The transcript line of an event, if it has one.
    pub fn event(&self, record: &EventRecord) {
        if let Some(line) = line(record) {
            self.emit(&line);
        }
    }
}

fn stamp(at: Duration, who: &str, text: &str) -> String {
    format!("{:>7.2}s  {who:<7} {text}", at.as_secs_f64())
}

fn stage(stage: Stage) -> &'static str {
    match stage {
        Stage::Stt => "speech-to-text",
        Stage::Llm => "model",
        Stage::Tts => "text-to-speech",
        Stage::Realtime => "realtime model",
    }
}

/// One readable line for an event; `None` for events the transcript leaves out (partial
/// transcripts, VAD edges, usage).
pub fn line(record: &EventRecord) -> Option<String> {
    let at = Duration::from_millis(record.at_ms);
    let (who, text) = match &record.event {
        CallEvent::Status {
            status,
            end_reason,
            error,
        } => {
            let text = match (status, end_reason, error) {
                (CallStatus::Ringing, _, _) => "ringing".to_string(),
                (CallStatus::InProgress, _, _) => "answered: the call is in progress".to_string(),
                (_, reason, error) => {
                    let mut t = format!("call {}", status.as_str());
                    if let Some(r) = reason {
                        t.push_str(&format!(" ({})", r.as_str()));
                    }
                    if let Some(e) = error {
                        t.push_str(&format!(": {e}"));
                    }
                    t
                }
            };
            ("call", text)
        }
        // The caller went on talking: the line returns, extended, in a later message.
        CallEvent::MessageRetracted { .. } => return None,
        CallEvent::Message { role, content } => match role {
            Role::User => ("caller", content.clone()),
            Role::Assistant => ("agent", content.clone()),
            Role::System | Role::Tool => return None,
        },
        CallEvent::AgentInterrupted { spoken, full, .. } => {
            let unsaid = full.strip_prefix(spoken.as_str()).unwrap_or(full).trim();
            let text = if unsaid.is_empty() {
                "(barge-in: the caller talked over the end of it)".to_string()
            } else {
                format!("(barge-in: the caller interrupted; never said: \"{unsaid}\")")
            };
            ("agent", text)
        }
        CallEvent::AgentResumed { .. } => ("agent", "(resumes: it was not a barge-in)".into()),
        CallEvent::ToolCall {
            name,
            arguments,
            is_async,
            ..
        } => (
            "tool",
            format!(
                "{name}({arguments}){}",
                if *is_async { " [async]" } else { "" }
            ),
        ),
        CallEvent::ToolResult {
            name,
            result,
            timed_out,
            ..
        } => (
            "tool",
            if *timed_out {
                format!("{name} did not answer in time")
            } else {
                format!("{name} -> {result}")
            },
        ),
        CallEvent::Transfer { destination } => ("call", format!("transfer to {destination}")),
        CallEvent::Dtmf { digit } => ("caller", format!("(pressed {digit})")),
        CallEvent::VoicemailDetected { transcript } => {
            ("call", format!("voicemail detected: \"{transcript}\""))
        }
        CallEvent::Latency { turn, latency } => ("latency", latency_text(*turn, latency)),
        CallEvent::ProviderError { stage: s, message } => {
            ("error", format!("{}: {message}", stage(*s)))
        }
        CallEvent::Transcript { .. }
        | CallEvent::CallerSpeechStarted
        | CallEvent::CallerSpeechStopped
        | CallEvent::AgentSpeechStarted { .. }
        | CallEvent::AgentSpeechStopped { .. }
        | CallEvent::AgentPaused { .. }
        | CallEvent::Usage(_) => return None,
    };
    Some(stamp(at, who, &text))
}

fn latency_text(turn: u64, l: &TurnLatency) -> String {
    let part = |name: &str, ms: Option<u64>| ms.map(|ms| format!(", {name} {ms} ms"));
    format!(
        "turn {turn}: {} ms from the caller's last word to the agent's voice (endpointing {} ms{}{})",
        l.voice_to_voice_ms,
        l.endpointing_ms,
        part("first model token", l.llm_first_token_ms).unwrap_or_default(),
        part("first audio from TTS", l.tts_first_audio_ms).unwrap_or_default(),
    )
}

/// The end of the transcript: how the call ended, turn latencies and usage.
pub fn summary(report: &CallReport) -> Vec<String> {
    let mut lines = Vec::new();
    let r = &report.report;
    lines.push(format!(
        "call ended: {} after {} s{}",
        report.end_reason.as_str(),
        r.duration_seconds,
        report
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    ));
    if !report.latencies.is_empty() {
        let mut v2v: Vec<u64> = report
            .latencies
            .iter()
            .map(|(_, l)| l.voice_to_voice_ms)
            .collect();
        v2v.sort_unstable();
        let median = v2v[v2v.len() / 2];
        lines.push(format!(
            "agent turns answered: {}; caller's last word to agent's voice: median {median} ms, \
             best {} ms, worst {} ms",
            v2v.len(),
            v2v[0],
            v2v[v2v.len() - 1]
        ));
    }
    let u = &report.usage;
    lines.push(format!(
        "usage: {:.1} s of caller audio recognised, {:.1} s of agent audio played, \
         {} + {} model tokens, {} characters spoken",
        u.stt_audio_seconds,
        u.agent_audio_seconds,
        u.llm_prompt_tokens,
        u.llm_completion_tokens,
        u.tts_characters
    ));
    if !r.summary.is_empty() {
        lines.push(format!("summary: {}", r.summary));
    }
    if let Some(e) = &report.summary_error {
        lines.push(format!("summary: none ({e})"));
    }
    if let Some(analysis) = &r.analysis {
        lines.push(format!(
            "analysis: {}",
            serde_json::Value::Object(analysis.clone())
        ));
    }
    lines
}
