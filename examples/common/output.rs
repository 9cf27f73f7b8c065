//! The output folder of a call: the webhook bodies as pretty JSON, the event log as JSON
//! lines and the stereo recording.
//!
//! File names: `assistant-request.json`, `status-update-N.json` and `tool-calls-N.json`
//! (numbered from 1 in the order they happened) and `end-of-call-report.json`; `events.jsonl`
//! holds one [`EventRecord`] per line and `recording.wav` the caller (left) and the agent
//! (right) as they were heard. Files of these names left by an earlier run are removed first,
//! so the folder always describes one call.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use voxline::engine::call::EventRecord;
use voxline::engine::platform::{WebhookBody, WebhookEventKind};
use voxline::engine::report::{RecordingHandle, WavRecorder};

use super::cli::AppError;

/// The recording's file name.
pub const RECORDING: &str = "recording.wav";
/// The event log's file name.
pub const EVENTS: &str = "events.jsonl";

/// A recording being written to a file.
pub type FileRecording = (
    WavRecorder<BufWriter<File>>,
    RecordingHandle<BufWriter<File>>,
);

/// The folder a call's files go to.
#[derive(Debug)]
pub struct OutputDir {
    root: PathBuf,
    counts: HashMap<WebhookEventKind, u32>,
    written: Vec<PathBuf>,
}

impl OutputDir {
    /// Creates the folder (and its parents) and removes files an earlier call left there.
    pub fn create(root: &Path) -> Result<Self, AppError> {
        let fail = |detail: String| AppError::Output {
            path: root.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(root).map_err(|e| fail(e.to_string()))?;
        let entries = std::fs::read_dir(root).map_err(|e| fail(e.to_string()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_call_file(&name) {
                std::fs::remove_file(entry.path()).map_err(|e| AppError::Output {
                    path: entry.path(),
                    detail: format!("cannot remove the previous run's file: {e}"),
                })?;
            }
        }
        Ok(OutputDir {
            root: root.to_path_buf(),
            counts: HashMap::new(),
            written: Vec::new(),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Every file written so far, in order.
    pub fn written(&self) -> &[PathBuf] {
        &self.written
    }

    /// Writes a webhook body as pretty JSON under its event's name; returns the file.
    pub fn write_webhook(&mut self, body: &WebhookBody) -> Result<PathBuf, AppError> {
        let kind = body.message.kind();
        let name = match kind {
            WebhookEventKind::AssistantRequest | WebhookEventKind::EndOfCallReport => {
                format!("{}.json", kind.as_str())
            }
            WebhookEventKind::StatusUpdate | WebhookEventKind::ToolCalls => {
                let n = self.counts.entry(kind).or_insert(0);
                *n += 1;
                format!("{}-{n}.json", kind.as_str())
            }
        };
        let path = self.path(&name);
        let json = serde_json::to_vec_pretty(body).map_err(|e| AppError::Output {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        self.write_file(&path, &json)?;
        Ok(path)
    }

    /// Writes `bytes` to `path` and remembers it.
    pub fn write_file(&mut self, path: &Path, bytes: &[u8]) -> Result<(), AppError> {
        std::fs::write(path, bytes).map_err(|e| AppError::Output {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        self.written.push(path.to_path_buf());
        Ok(())
    }

    /// Starts `recording.wav`: a stereo WAV recorder for the call task and its handle.
    pub fn recording(&mut self) -> Result<FileRecording, AppError> {
        let path = self.path(RECORDING);
        let fail = |detail: String| AppError::Output {
            path: path.clone(),
            detail,
        };
        let file = File::create(&path).map_err(|e| fail(e.to_string()))?;
        let recording = WavRecorder::new(BufWriter::new(file)).map_err(|e| fail(e.to_string()))?;
        self.written.push(path);
        Ok(recording)
    }

    /// Opens `events.jsonl` in the folder.
    pub fn event_log(&mut self) -> Result<EventLog, AppError> {
        let path = self.path(EVENTS);
        let log = EventLog::create(&path)?;
        self.written.push(path);
        Ok(log)
    }
}

/// Whether `name` is one of the files a call writes.
fn is_call_file(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".json"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(
        name,
        "assistant-request.json" | "end-of-call-report.json" | RECORDING | EVENTS
    ) || numbered("status-update-")
        || numbered("tool-calls-")
}

/// Where the event log goes: a file, or standard output.
enum LogSink {
    File(BufWriter<File>),
    Stdout,
}

/// The call's events as JSON lines, one [`EventRecord`] per line, flushed per line so the
/// file can be followed while the call runs (`tail -f`).
pub struct EventLog {
    path: PathBuf,
    sink: LogSink,
    lines: u64,
    error: Option<String>,
}

impl EventLog {
    /// A log written to `path` (`-` for standard output).
    pub fn create(path: &Path) -> Result<Self, AppError> {
        let sink = if path == Path::new("-") {
            LogSink::Stdout
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| AppError::Output {
                    path: dir.to_path_buf(),
                    detail: e.to_string(),
                })?;
            }
            let file = File::create(path).map_err(|e| AppError::Output {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
            LogSink::File(BufWriter::new(file))
        };
        Ok(EventLog {
            path: path.to_path_buf(),
            sink,
            lines: 0,
            error: None,
        })
    }

    /// Where the log goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the log goes to standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self.sink, LogSink::Stdout)
    }

    /// Appends one event. A write error stops the log (the call goes on); [`EventLog::finish`]
    /// reports it.
    pub fn write(&mut self, record: &EventRecord) {
        if self.error.is_some() {
            return;
        }
        let result = serde_json::to_string(record)
            .map_err(|e| e.to_string())
            .and_then(|line| {
                let io = match &mut self.sink {
                    LogSink::File(w) => writeln!(w, "{line}").and_then(|()| w.flush()),
                    LogSink::Stdout => {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{line}").and_then(|()| out.flush())
                    }
                };
                io.map_err(|e| e.to_string())
            });
        match result {
            Ok(()) => self.lines += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Lines written.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes the log; the first write error, if there was one.
    pub fn finish(mut self) -> Result<u64, AppError> {
        if let LogSink::File(w) = &mut self.sink {
            if let Err(e) = w.flush() {
                self.error.get_or_insert(e.to_string());
            }
        }
        match self.error {
            Some(detail) => Err(AppError::Output {
                path: self.path,
                detail,
            }),
            None => Ok(self.lines),
        }
    }
}
