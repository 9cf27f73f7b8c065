//! webhook_host: the host side of the platform in about a page of code, around a local call.
//!
//! A telephony host links voxline in and talks HTTP to the customer's servers. This example
//! does what such a host does for one call, with a simulated caller on 127.0.0.1 (as in
//! `local_call`) instead of a SIP stack:
//!
//! - before answering, it POSTs the signed `assistant-request` to `--assistant-url` and builds
//!   the call's assistant from the reply (`{}`, `{"assistant": …}`, `{"assistant_id": …,
//!   "assistant_override": …}` or `{"error": …}`) over the number's own assistant
//!   (`--assistant`); `assistant_id` names a file `<id>.json` next to it. No answer within 5 s
//!   keeps the number's assistant, as the platform does;
//! - it POSTs signed `status-update` and `end-of-call-report` webhooks to `--webhook-url`
//!   (else the assistant's `webhook_url`; only the events in `webhook_events` when it lists
//!   them), in order, retrying connection errors, 429 and 5xx with backoff (0.5 s, doubling,
//!   4 attempts);
//! - it answers `tool-calls` through an HTTP tool endpoint: the body is POSTed to `--tool-url`
//!   (else the tool's own `url`, else the webhook URL) and the reply (`{"results": […]}`,
//!   `{"result": …}`, `{"error": …}` or any JSON) goes back to the model;
//! - each line on standard input is a call-control command (`{"type": "say", "content": …}`,
//!   `inject-context`, `end-call`, `transfer`), answered with the platform's response JSON.
//!
//! Signatures are HMAC-SHA256 over `{timestamp}.{body}` (`X-Webhook-Signature: sha256=…`)
//! with `--webhook-secret` (else the assistant's `webhook_secret`, else the environment's
//! `VOXLINE_WEBHOOK_SECRET`); without a secret the requests go unsigned. Every body is also
//! written to `--out`, with the recording and the event log, as `local_call` does.
//!
//! ```text
//! cargo run --release --example webhook_host -- [OPTIONS]
//!
//!   --assistant FILE        the number's assistant (default examples/assistants/dental_booking.json)
//!   --assistant-url URL     where assistant-request goes (default: none, the number's assistant)
//!   --webhook-url URL       where status-update and end-of-call-report go
//!   --webhook-secret TEXT   HMAC key for the signatures
//!   --tool-url URL          where tool-calls go
//!   --caller FILE.wav       the caller's utterances, as in local_call (repeatable)
//!   --out DIR               output folder (default out/webhook_host)
//!   --max-seconds S         the caller hangs up after this long at the latest (default 40)
//!   -h, --help              this text
//! ```
//!
//! Exit status: 0 after the call (or when the host rejected it), 2 for a bad command line or
//! input file, 1 when the call could not be set up or failed.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use voxline::engine::config::{resolve_assistant, Resolution, WebhookEvent as Subscribed};
use voxline::engine::platform::{
    webhook_headers, CallControlResponse, ToolCallsResponse, ToolOutcome, WebhookBody,
    WebhookEventKind,
};
use voxline::engine::report::CallReporter;
use voxline::{CallControl, CallDirection, Standins, Voxline};

use common::caller::Clip;
use common::cli::{self, AppError, AssistantFile};
use common::host::{call_id, call_metadata, now, tool_calls, Host};
use common::output::OutputDir;
use common::sim_call::{self, SimCallOptions, SimOutcome};
use common::transcript::{summary, Printer};

const USAGE: &str = "usage: webhook_host [--assistant FILE] [--assistant-url URL] \
[--webhook-url URL] [--webhook-secret TEXT] [--tool-url URL] [--caller FILE.wav]... [--out DIR] \
[--max-seconds S]\nrun with --help for details";

/// The parsed command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// The number's own assistant.
    pub assistant: PathBuf,
    /// Where `assistant-request` goes.
    pub assistant_url: Option<String>,
    /// Where `status-update` and `end-of-call-report` go.
    pub webhook_url: Option<String>,
    /// HMAC key.
    pub webhook_secret: Option<String>,
    /// Where `tool-calls` go.
    pub tool_url: Option<String>,
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
            assistant: "examples/assistants/dental_booking.json".into(),
            assistant_url: None,
            webhook_url: None,
            webhook_secret: None,
            tool_url: None,
            callers: vec![
                "assets/caller.wav".into(),
                "assets/caller_followup.wav".into(),
            ],
            out: "out/webhook_host".into(),
            max_seconds: 40.0,
        }
    }
}

impl Args {
    /// Parses the options; `Ok(None)` for `--help`.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, AppError> {
        let mut a = Args::default();
        let mut callers = Vec::new();
        while let Some(flag) = it.next() {
            let f = flag.as_str();
            match f {
                "-h" | "--help" => return Ok(None),
                "--assistant" => a.assistant = cli::value(&mut it, f)?.into(),
                "--assistant-url" => a.assistant_url = Some(cli::url(f, &cli::value(&mut it, f)?)?),
                "--webhook-url" => a.webhook_url = Some(cli::url(f, &cli::value(&mut it, f)?)?),
                "--webhook-secret" => a.webhook_secret = Some(cli::value(&mut it, f)?),
                "--tool-url" => a.tool_url = Some(cli::url(f, &cli::value(&mut it, f)?)?),
                "--caller" => callers.push(cli::value(&mut it, f)?.into()),
                "--out" => a.out = cli::value(&mut it, f)?.into(),
                "--max-seconds" => {
                    a.max_seconds = cli::seconds(f, &cli::value(&mut it, f)?, 5.0, 3600.0)?
                }
                other => return Err(AppError::Usage(format!("unknown option {other:?}"))),
            }
        }
        if !callers.is_empty() {
            a.callers = callers;
        }
        Ok(Some(a))
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            let doc = include_str!("webhook_host.rs");
            println!(
                "{}",
                cli::help_from_doc(doc, "webhook_host: a host around a local call.")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return e.report(USAGE),
    };
    // Standard input is read on a thread of its own, so a blocked read never holds up the exit.
    let (lines_tx, lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
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
    match runtime.block_on(run(&args, voxline::offline_standins(), lines)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => e.report(USAGE),
    }
}

/// Signs and POSTs webhook bodies, retrying with backoff.
#[derive(Clone)]
pub struct Poster {
    client: reqwest::Client,
    secret: Option<Vec<u8>>,
}

impl Poster {
    /// A poster signing with `secret` (unsigned without one).
    pub fn new(secret: Option<&str>) -> Result<Self, AppError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| AppError::Setup(format!("HTTP client: {e}")))?;
        let secret = secret
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec());
        Ok(Poster { client, secret })
    }

    /// POSTs `body` to `url` and returns the reply body of the first 2xx. Connection errors,
    /// 429 and 5xx are retried (4 attempts, 0.5 s doubling, longer when `Retry-After` says so),
    /// each attempt signed afresh, all within `deadline`.
    pub async fn post(
        &self,
        url: &str,
        body: &WebhookBody,
        deadline: Duration,
    ) -> Result<Vec<u8>, String> {
        let bytes = body.to_vec().map_err(|e| e.to_string())?;
        let kind = body.message.kind();
        let give_up = Instant::now() + deadline;
        let mut backoff = Duration::from_millis(500);
        let mut last_error = String::new();
        for attempt in 1..=4 {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut request = self.client.post(url).timeout(left).body(bytes.clone());
            for (name, value) in webhook_headers(kind, unix, &bytes, self.secret.as_deref()) {
                request = request.header(name, value);
            }
            let mut wait = backoff;
            match request.send().await {
                Ok(reply) if reply.status().is_success() => {
                    return reply
                        .bytes()
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| e.to_string())
                }
                Ok(reply) => {
                    let status = reply.status();
                    last_error = format!("HTTP {status}");
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(last_error);
                    }
                    let retry_after = reply
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if let Some(secs) = retry_after {
                        wait = wait.max(Duration::from_secs(secs));
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            if attempt < 4 {
                tokio::time::sleep(wait.min(give_up.saturating_duration_since(Instant::now())))
                    .await;
                backoff *= 2;
            }
        }
        Err(format!("gave up after retries: {last_error}"))
    }
}

/// One webhook delivery, for the summary.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The event name.
    pub event: &'static str,
    /// Where it went.
    pub url: String,
    /// `Ok` or why it failed.
    pub result: Result<(), String>,
}

/// The host: webhooks in order through a queue, tool calls over HTTP.
pub struct WebhookHost {
    poster: Poster,
    webhook_url: Option<String>,
    subscribed: Option<Vec<Subscribed>>,
    tool_url: Option<String>,
    tool_urls: Vec<(String, String)>,
    queue: mpsc::UnboundedSender<(String, WebhookBody)>,
    worker: JoinHandle<Vec<Delivery>>,
    printer: Printer,
}

impl WebhookHost {
    /// A host for `assistant` posting with `poster`.
    pub fn new(
        args: &Args,
        assistant: &voxline::Assistant,
        poster: Poster,
        printer: Printer,
    ) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<(String, WebhookBody)>();
        let (p, pr) = (poster.clone(), printer.clone());
        let worker = tokio::spawn(async move {
            let mut done = Vec::new();
            while let Some((url, body)) = rx.recv().await {
                let result = p
                    .post(&url, &body, Duration::from_secs(30))
                    .await
                    .map(|_| ());
                let event = body.event_name();
                match &result {
                    Ok(()) => pr.note("host", format!("posted {event} to {url}")),
                    Err(e) => pr.note("host", format!("could not post {event} to {url}: {e}")),
                }
                done.push(Delivery { event, url, result });
            }
            done
        });
        let tool_urls = assistant
            .tools()
            .iter()
            .filter_map(|t| t.as_function())
            .filter_map(|f| {
                let url = f
                    .url
                    .clone()
                    .or_else(|| f.server.as_ref().map(|s| s.url.clone()))?;
                Some((f.name.clone(), url))
            })
            .collect();
        WebhookHost {
            poster,
            webhook_url: args
                .webhook_url
                .clone()
                .or_else(|| assistant.webhook_url.clone()),
            subscribed: assistant.webhook_events.clone(),
            tool_url: args.tool_url.clone(),
            tool_urls,
            queue,
            worker,
            printer,
        }
    }

    /// Waits until every queued webhook was delivered (or given up on).
    pub async fn finish(self) -> Vec<Delivery> {
        drop(self.queue);
        self.worker.await.unwrap_or_default()
    }
}

impl Host for WebhookHost {
    fn on_webhook(&mut self, body: &WebhookBody, control: &CallControl) {
        let kind = body.message.kind();
        if kind != WebhookEventKind::ToolCalls {
            let wanted = Subscribed::from_name(kind.as_str()).is_some_and(|e| {
                self.subscribed
                    .as_ref()
                    .is_none_or(|list| list.contains(&e))
            });
            if let (Some(url), true) = (&self.webhook_url, wanted) {
                let _ = self.queue.send((url.clone(), body.clone()));
            }
            return;
        }
        for call in tool_calls(body) {
            let name = call.function.name.clone();
            let own = self
                .tool_urls
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, u)| u.clone());
            let url = self
                .tool_url
                .clone()
                .or(own)
                .or_else(|| self.webhook_url.clone());
            let (id, body) = (call.id.clone(), body.clone());
            let (poster, control, printer) =
                (self.poster.clone(), control.clone(), self.printer.clone());
            tokio::spawn(async move {
                let result = match url {
                    None => json!({"error": "no tool endpoint configured (--tool-url)"}),
                    Some(url) => match poster.post(&url, &body, Duration::from_secs(10)).await {
                        Err(e) => json!({"error": format!("the tool endpoint failed: {e}")}),
                        Ok(reply) => match ToolCallsResponse::from_slice(&reply)
                            .map(|r| r.outcome_for(&id))
                        {
                            Ok(Some(ToolOutcome::Result(v))) => v,
                            Ok(Some(ToolOutcome::Error(e))) => json!({ "error": e }),
                            Ok(None) => {
                                json!({"error": "the tool endpoint's reply has no result for this call"})
                            }
                            Err(e) => {
                                json!({"error": format!("the tool endpoint's reply is not valid: {e}")})
                            }
                        },
                    },
                };
                printer.note("host", format!("{name} answered: {result}"));
                let _ = control.tool_result(id, result);
            });
        }
    }
}

/// What a run of the host did.
pub struct HostRun {
    /// The call, unless the host rejected it.
    pub call: Option<SimOutcome>,
    /// Webhook deliveries, in order.
    pub deliveries: Vec<Delivery>,
    /// Control commands from the input, with the replies.
    pub control: Vec<(String, CallControlResponse)>,
}

/// Runs the host around one simulated call; `commands` are call-control lines.
pub async fn run(
    args: &Args,
    standins: Standins,
    mut commands: mpsc::UnboundedReceiver<String>,
) -> Result<HostRun, AppError> {
    let number = cli::read_assistant(&args.assistant)?;
    let mut clips = Vec::new();
    for path in &args.callers {
        let path = cli::repo_path(path);
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let samples = Arc::new(common::audio::read_voice(&path)?);
        clips.push(Clip { name, samples });
    }
    let mut out = OutputDir::create(&args.out)?;
    let printer = Printer::new(Instant::now(), false);
    let secret = args
        .webhook_secret
        .clone()
        .or_else(|| number.assistant.webhook_secret.clone())
        .or_else(|| std::env::var("VOXLINE_WEBHOOK_SECRET").ok());
    let poster = Poster::new(secret.as_deref())?;

    // assistant-request: which assistant answers this call.
    let metadata = call_metadata(
        call_id("host"),
        CallDirection::Inbound,
        number.assistant.pipeline(),
    );
    let request = metadata.assistant_request(now()?);
    out.write_webhook(&request)?;
    let reply = match &args.assistant_url {
        None => "{}".to_string(),
        Some(url) => {
            match poster.post(url, &request, Duration::from_secs(5)).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    printer.say(format!("note: assistant-request to {url} failed ({e}): the number's assistant answers"));
                    "{}".to_string()
                }
            }
        }
    };
    let base = Value::Object(number.json.clone());
    let resolved = match resolve_assistant(&reply, Some(&base), |id| saved_assistant(&number, id)) {
        Ok(Resolution::Assistant(resolved)) => resolved,
        Ok(Resolution::Reject { message }) => {
            printer.say(format!("the host rejected the call: {message:?}"));
            return Ok(HostRun {
                call: None,
                deliveries: Vec::new(),
                control: Vec::new(),
            });
        }
        Err(e) => {
            return Err(AppError::Call(format!(
                "the assistant-request reply is not usable: {e}"
            )))
        }
    };
    printer.say(format!(
        "webhook_host: {} answers ({:?} reply to assistant-request)",
        resolved
            .assistant
            .name
            .as_deref()
            .unwrap_or("the assistant"),
        resolved.mode
    ));

    let voxline = Voxline::from_env().with_standins(standins);
    let mut host = WebhookHost::new(args, &resolved.assistant, poster, printer.clone());
    let answered = Arc::new(Mutex::new(Vec::new()));
    let mut control_task = None;
    let options = SimCallOptions {
        clips,
        max_call: Duration::from_secs_f64(args.max_seconds),
        direction: CallDirection::Inbound,
    };
    let call = sim_call::run(
        &voxline,
        &resolved.assistant,
        |started| CallReporter::new(metadata, started).with_resolved(&resolved),
        &options,
        &mut out,
        &printer,
        &mut host,
        |control| {
            let (control, answered, printer) = (control.clone(), answered.clone(), printer.clone());
            control_task = Some(tokio::spawn(async move {
                while let Some(line) = commands.recv().await {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let reply = control.control_response(line.as_bytes()).await;
                    printer.note(
                        "host",
                        format!("control {} -> {}", line.trim(), json!(reply)),
                    );
                    if let Ok(mut a) = answered.lock() {
                        a.push((line, reply));
                    }
                }
            }));
        },
    )
    .await?;
    if let Some(task) = control_task {
        task.abort();
    }
    let deliveries = host.finish().await;
    printer.say("");
    for line in summary(&call.followed.report) {
        printer.say(line);
    }
    let failed = deliveries.iter().filter(|d| d.result.is_err()).count();
    printer.say(format!(
        "{} webhooks posted, {failed} failed; files in {}",
        deliveries.len(),
        out.root().display()
    ));
    let control = answered.lock().map(|a| a.clone()).unwrap_or_default();
    Ok(HostRun {
        call: Some(call),
        deliveries,
        control,
    })
}

/// A saved assistant by id: `<id>.json` next to the number's assistant file.
fn saved_assistant(number: &AssistantFile, id: &str) -> Option<Value> {
    let safe = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !safe {
        return None;
    }
    let dir = number.path.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(dir.join(format!("{id}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}
