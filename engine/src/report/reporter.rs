//! [`CallReporter`]: turns one call's event stream into the platform's webhook bodies.
//!
//! It runs on the host side, reading [`EventRecord`]s at its own pace (the stream is unbounded,
//! so a slow reporter never holds up the call). Call time in the records is mapped to wall time
//! through the [`Timestamp`] the host took when the call task started.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use super::analysis::{transcript_text, AnalysisError, PostCallAnalyzer};
use super::{platform_end_reason, platform_role, platform_status};
use crate::call::{CallEvent, CallStatus, EndReason, EventRecord, TurnLatency, Usage};
use crate::config::{AnalysisPlan, ConfigSection, PlaceholderValues, ResolvedAssistant};
use crate::driver::EventStream;
use crate::platform::{
    AssistantRequest, CallInfo, CallType, Customer, EndOfCallReport, Envelope, FunctionCall,
    JsonObject, PhoneNumberInfo, Pipeline, StatusUpdate, Timestamp, ToolCall, ToolCallKind,
    ToolCalls, TranscriptMessage, WebhookBody, WebhookEvent,
};
use crate::provider::TokenUsage;

/// The `error` stated when the event stream ends before the call reported how it ended.
pub const UNFINISHED_STREAM_ERROR: &str =
    "the call's event stream ended before the call reported its end";

/// Who and what a call is, as every webhook's envelope names it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMetadata {
    /// The platform's call id.
    pub call_id: String,
    /// Inbound, outbound or web.
    pub call_type: CallType,
    /// The pipeline, shown in `assistant-request` only (the one place the platform shows it).
    pub pipeline: Option<Pipeline>,
    /// The platform number; all `null` on web calls.
    pub phone_number: PhoneNumberInfo,
    /// The other party.
    pub customer: Customer,
}

impl CallMetadata {
    /// Metadata with empty number fields; fill them with the `with_*` methods.
    pub fn new(call_id: impl Into<String>, call_type: CallType) -> Self {
        Self {
            call_id: call_id.into(),
            call_type,
            pipeline: None,
            phone_number: PhoneNumberInfo::default(),
            customer: Customer::default(),
        }
    }

    /// Sets the platform number the call came in on or went out from.
    pub fn with_phone_number(mut self, phone_number: PhoneNumberInfo) -> Self {
        self.phone_number = phone_number;
        self
    }

    /// Sets the other party's number.
    pub fn with_customer(mut self, number: impl Into<String>) -> Self {
        self.customer = Customer {
            number: Some(number.into()),
        };
        self
    }

    /// Sets the pipeline shown in `assistant-request`.
    pub fn with_pipeline(mut self, pipeline: Pipeline) -> Self {
        self.pipeline = Some(pipeline);
        self
    }

    /// The `assistant-request` body for a ringing call, sent before any assistant is resolved
    /// (so without `assistant`), stamped `at`.
    pub fn assistant_request(&self, at: Timestamp) -> WebhookBody {
        WebhookBody::new(WebhookEvent::AssistantRequest(AssistantRequest {
            envelope: Envelope {
                timestamp: at,
                call: CallInfo {
                    id: self.call_id.clone(),
                    call_type: self.call_type,
                    status: crate::platform::CallStatus::Ringing,
                    pipeline: self.pipeline.clone(),
                },
                phone_number: self.phone_number.clone(),
                customer: self.customer.clone(),
                assistant: None,
            },
        }))
    }
}

/// How the call ended, as its terminal status event said.
#[derive(Debug, Clone)]
struct Ending {
    at_ms: u64,
    status: CallStatus,
    reason: EndReason,
    error: Option<String>,
}

/// Builds the webhook bodies of one call from its events.
///
/// Feed every record to [`CallReporter::on_event`] and send what it returns; then
/// [`CallReporter::finish`] runs the post-call analysis and returns the end-of-call report. It
/// consumes the reporter, so a call can never get a second report. [`CallReporter::run`] does
/// all of it over an [`EventStream`].
///
/// ```
/// # use voxline_engine::platform::{CallType, Timestamp};
/// # use voxline_engine::report::{CallMetadata, CallReporter, PostCallAnalyzer};
/// # async fn report_once() {
/// let reporter = CallReporter::new(CallMetadata::new("c1", CallType::WebCall), Timestamp::UNIX_EPOCH);
/// let report = reporter.finish(&PostCallAnalyzer::disabled()).await;
/// # let _ = report;
/// # }
/// ```
///
/// A second report does not compile:
///
/// ```compile_fail
/// # use voxline_engine::platform::{CallType, Timestamp};
/// # use voxline_engine::report::{CallMetadata, CallReporter, PostCallAnalyzer};
/// # async fn report_twice() {
/// let reporter = CallReporter::new(CallMetadata::new("c1", CallType::WebCall), Timestamp::UNIX_EPOCH);
/// let report = reporter.finish(&PostCallAnalyzer::disabled()).await;
/// let again = reporter.finish(&PostCallAnalyzer::disabled()).await; // use of moved value
/// # }
/// ```
#[derive(Debug)]
pub struct CallReporter {
    meta: CallMetadata,
    started_at: Timestamp,
    assistant: Option<JsonObject>,
    plan: Result<Option<AnalysisPlan>, String>,
    recording_url: Option<String>,
    next_seq: u64,
    events_seen: u64,
    events_missing: u64,
    last_at_ms: u64,
    answered_at_ms: Option<u64>,
    ending: Option<Ending>,
    messages: Vec<TranscriptMessage>,
    voicemail_from: Option<usize>,
    usage: Usage,
    latencies: Vec<(u64, TurnLatency)>,
}

/// The end-of-call report and what the engine knows beyond the platform's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    /// The `end-of-call-report` webhook, field for field as the platform sends it.
    pub report: EndOfCallReport,
    /// How the call ended, in the engine's terms.
    pub end_reason: EndReason,
    /// What failed, for calls that ended with an error.
    pub error: Option<String>,
    /// Usage totals: audio seconds, LLM tokens, TTS characters. The platform's report has no
    /// field for them, so they are only here.
    pub usage: Usage,
    /// Per-turn latency, by agent turn.
    pub latencies: Vec<(u64, TurnLatency)>,
    /// Why the summary is empty, when writing it failed. The wire `summary` is then `""`.
    pub summary_error: Option<AnalysisError>,
    /// Why structured data is missing; the wire `analysis` is then `{"error": "<this>"}`.
    pub analysis_error: Option<AnalysisError>,
    /// True when structured data is configured but the call had fewer messages than
    /// `min_messages_threshold`; the wire `analysis` is then absent.
    pub analysis_skipped: bool,
    /// Tokens the post-call model requests used (not part of [`CallReport::usage`]).
    pub post_call_usage: TokenUsage,
    /// Events read from the stream.
    pub events_seen: u64,
    /// Sequence numbers that never arrived (0 unless events were lost on the way).
    pub events_missing: u64,
}

impl CallReport {
    /// The report as a webhook body, ready to serialize, sign and send.
    pub fn to_body(&self) -> WebhookBody {
        WebhookBody::new(WebhookEvent::EndOfCallReport(self.report.clone()))
    }
}

impl CallReporter {
    /// A reporter for a call whose task started at wall time `started_at` (event time 0).
    pub fn new(meta: CallMetadata, started_at: Timestamp) -> Self {
        Self {
            meta,
            started_at,
            assistant: None,
            plan: Ok(None),
            recording_url: None,
            next_seq: 0,
            events_seen: 0,
            events_missing: 0,
            last_at_ms: 0,
            answered_at_ms: None,
            ending: None,
            messages: Vec::new(),
            voicemail_from: None,
            usage: Usage::default(),
            latencies: Vec::new(),
        }
    }

    /// Echoes the resolved assistant (config plus `metadata`) in every later webhook and takes
    /// its `analysis_plan`.
    pub fn with_resolved(mut self, resolved: &ResolvedAssistant) -> Self {
        self.assistant = resolved.webhook_object.as_object().cloned();
        self.plan = Ok(resolved.assistant.analysis_plan.clone());
        self
    }

    /// Echoes `assistant` (the resolved config object plus `metadata`) in every later webhook
    /// and reads `analysis_plan` from it. An unreadable plan is stated in the report's
    /// `analysis`.
    pub fn with_assistant(mut self, assistant: JsonObject) -> Self {
        self.plan = match assistant
            .get("analysis_plan")
            .or_else(|| assistant.get("analysisPlan"))
        {
            None | Some(Value::Null) => Ok(None),
            Some(value) => AnalysisPlan::from_value(value)
                .map(Some)
                .map_err(|e| e.to_string()),
        };
        self.assistant = Some(assistant);
        self
    }

    /// Uses `plan` for the post-call analysis instead of the assistant's.
    pub fn with_analysis_plan(mut self, plan: AnalysisPlan) -> Self {
        self.plan = Ok(Some(plan));
        self
    }

    /// Sets the `recording_url` of the report.
    pub fn with_recording_url(mut self, url: impl Into<String>) -> Self {
        self.recording_url = Some(url.into());
        self
    }

    /// Sets the `recording_url` once known (e.g. after the upload), before [`CallReporter::finish`].
    pub fn set_recording_url(&mut self, url: impl Into<String>) {
        self.recording_url = Some(url.into());
    }

    /// The call's metadata.
    pub fn metadata(&self) -> &CallMetadata {
        &self.meta
    }

    /// The `assistant-request` body, stamped with the call's start.
    pub fn assistant_request(&self) -> WebhookBody {
        self.meta.assistant_request(self.started_at)
    }

    /// True once the call's terminal status has been read.
    pub fn is_ended(&self) -> bool {
        self.ending.is_some()
    }

    /// The transcript so far.
    pub fn messages(&self) -> &[TranscriptMessage] {
        &self.messages
    }

    /// Reads one event; returns the webhook it causes, if any: `status-update` when the call
    /// goes in progress and when it ends, `tool-calls` for each host tool call.
    ///
    /// Each transition is reported once; events after the terminal status are counted but
    /// otherwise ignored.
    pub fn on_event(&mut self, record: &EventRecord) -> Option<WebhookBody> {
        self.events_seen += 1;
        self.events_missing += record.seq.saturating_sub(self.next_seq);
        self.next_seq = self.next_seq.max(record.seq.saturating_add(1));
        self.last_at_ms = self.last_at_ms.max(record.at_ms);
        if self.ending.is_some() {
            return None;
        }
        match &record.event {
            CallEvent::Status {
                status,
                end_reason,
                error,
            } => self.on_status(record.at_ms, *status, end_reason.clone(), error.clone()),
            CallEvent::Message { role, content } => {
                if let Some(role) = platform_role(*role) {
                    self.messages.push(TranscriptMessage {
                        role,
                        content: content.clone(),
                    });
                }
                None
            }
            CallEvent::MessageRetracted { role, content } => {
                if let Some(role) = platform_role(*role) {
                    if let Some(i) = self
                        .messages
                        .iter()
                        .rposition(|m| m.role == role && &m.content == content)
                    {
                        self.messages.remove(i);
                    }
                }
                None
            }
            CallEvent::VoicemailDetected { .. } => {
                self.voicemail_from.get_or_insert(self.messages.len());
                None
            }
            CallEvent::ToolCall {
                id,
                name,
                arguments,
                ..
            } => Some(self.tool_calls(record.at_ms, id, name, arguments)),
            CallEvent::Usage(usage) => {
                self.usage = *usage;
                None
            }
            CallEvent::Latency { turn, latency } => {
                self.latencies.push((*turn, latency.clone()));
                None
            }
            _ => None,
        }
    }

    fn on_status(
        &mut self,
        at_ms: u64,
        status: CallStatus,
        end_reason: Option<EndReason>,
        error: Option<String>,
    ) -> Option<WebhookBody> {
        match status {
            CallStatus::Ringing => None,
            CallStatus::InProgress => {
                if self.answered_at_ms.is_some() {
                    return None;
                }
                self.answered_at_ms = Some(at_ms);
                Some(self.status_update(at_ms, status, None, None))
            }
            CallStatus::Ended | CallStatus::EndedWithError | CallStatus::Transferred => {
                let reason = end_reason.unwrap_or(match status {
                    CallStatus::Transferred => EndReason::Transferred,
                    CallStatus::EndedWithError => EndReason::Error,
                    _ => EndReason::HostEnded,
                });
                let error = match status {
                    CallStatus::EndedWithError => {
                        Some(error.unwrap_or_else(|| "the call failed".to_owned()))
                    }
                    _ => None,
                };
                let body = self.status_update(at_ms, status, Some(&reason), error.clone());
                self.ending = Some(Ending {
                    at_ms,
                    status,
                    reason,
                    error,
                });
                Some(body)
            }
        }
    }

    /// Wall time of a call-time offset.
    fn wall(&self, at_ms: u64) -> Timestamp {
        self.started_at
            .checked_add(Duration::from_millis(at_ms))
            .unwrap_or(self.started_at)
    }

    fn envelope(&self, at: Timestamp, status: CallStatus) -> Envelope {
        Envelope {
            timestamp: at,
            call: CallInfo {
                id: self.meta.call_id.clone(),
                call_type: self.meta.call_type,
                status: platform_status(status),
                pipeline: None,
            },
            phone_number: self.meta.phone_number.clone(),
            customer: self.meta.customer.clone(),
            assistant: self.assistant.clone(),
        }
    }

    fn status_update(
        &self,
        at_ms: u64,
        status: CallStatus,
        reason: Option<&EndReason>,
        error: Option<String>,
    ) -> WebhookBody {
        WebhookBody::new(WebhookEvent::StatusUpdate(StatusUpdate {
            envelope: self.envelope(self.wall(at_ms), status),
            error,
            end_reason: reason.map(platform_end_reason),
        }))
    }

    fn tool_calls(&self, at_ms: u64, id: &str, name: &str, arguments: &Value) -> WebhookBody {
        // The platform sends arguments as an object; anything else is kept under `_raw`, as the
        // core does for arguments that are not JSON.
        let arguments = match arguments {
            Value::Object(map) => map.clone(),
            other => {
                let mut map = JsonObject::new();
                map.insert("_raw".to_owned(), other.clone());
                map
            }
        };
        WebhookBody::new(WebhookEvent::ToolCalls(ToolCalls {
            envelope: self.envelope(self.wall(at_ms), CallStatus::InProgress),
            tool_call_list: vec![ToolCall {
                id: id.to_owned(),
                kind: ToolCallKind::Function,
                function: FunctionCall {
                    name: name.to_owned(),
                    arguments,
                },
            }],
        }))
    }

    /// When the stream ended without a terminal status: records the call as ended with an
    /// error at the last event's time and returns the `status-update` saying so.
    fn end_unfinished(&mut self) -> Option<WebhookBody> {
        if self.ending.is_some() {
            return None;
        }
        self.on_status(
            self.last_at_ms,
            CallStatus::EndedWithError,
            Some(EndReason::Error),
            Some(UNFINISHED_STREAM_ERROR.to_owned()),
        )
    }

    /// Runs the post-call analysis and builds the call's one end-of-call report.
    ///
    /// Consumes the reporter: there is no way to build a second report for the call. If the
    /// terminal status was never read, the call counts as ended with an error
    /// ([`UNFINISHED_STREAM_ERROR`]) at the last event's time.
    ///
    /// Times: `started_at` is when the call was answered (the `in-progress` status; absent if it
    /// never was), `ended_at` when the terminal status came, `duration_seconds` the time between
    /// them rounded to the nearest second (0 if never answered), and `timestamp` the end of the
    /// call plus the time the analysis took. Summary and structured data are requested side by
    /// side; a voicemail call gets the platform's fixed summary
    /// (`Voicemail detected. Left message: …`) without a model request.
    pub async fn finish(mut self, analyzer: &PostCallAnalyzer) -> CallReport {
        let analysis_started = tokio::time::Instant::now();
        self.end_unfinished();
        let ending = match self.ending.take() {
            Some(ending) => ending,
            // `end_unfinished` always sets an ending; this arm only keeps the code total.
            None => Ending {
                at_ms: self.last_at_ms,
                status: CallStatus::EndedWithError,
                reason: EndReason::Error,
                error: Some(UNFINISHED_STREAM_ERROR.to_owned()),
            },
        };
        let ended_reason = ending.reason.as_str();
        let transcript = transcript_text(&self.messages);
        let values = PlaceholderValues {
            schema: None,
            transcript: &transcript,
            ended_reason,
        };

        let plan = match &self.plan {
            Ok(plan) => plan.clone().unwrap_or_default(),
            Err(_) => AnalysisPlan::default(),
        };
        let summary_task = async {
            if let Some(from) = self.voicemail_from {
                return (
                    Ok(voicemail_summary(
                        &self.messages[from.min(self.messages.len())..],
                    )),
                    TokenUsage::default(),
                );
            }
            if self.messages.is_empty() || !plan.summary_enabled() {
                return (Ok(String::new()), TokenUsage::default());
            }
            match analyzer.summarize(&plan, &values).await {
                Ok(reply) => (Ok(reply.text), reply.usage),
                Err(e) => (Err(e), TokenUsage::default()),
            }
        };
        let analysis_task = async {
            if let Err(reason) = &self.plan {
                return Some((
                    Err(AnalysisError::InvalidPlan(reason.clone())),
                    TokenUsage::default(),
                ));
            }
            let structured = plan.structured_data()?;
            if !plan.should_analyze(self.messages.len()) {
                return None;
            }
            Some(match analyzer.extract(structured, &values).await {
                Ok((object, usage)) => (Ok(object), usage),
                Err(e) => (Err(e), TokenUsage::default()),
            })
        };
        let ((summary, summary_usage), analysis) = tokio::join!(summary_task, analysis_task);

        let mut post_call_usage = summary_usage;
        let (summary, summary_error) = match summary {
            Ok(text) => (text, None),
            Err(e) => (String::new(), Some(e)),
        };
        let analysis_skipped =
            analysis.is_none() && self.plan.is_ok() && plan.structured_data().is_some();
        let (analysis, analysis_error) = match analysis {
            None => (None, None),
            Some((Ok(object), usage)) => {
                post_call_usage.prompt_tokens += usage.prompt_tokens;
                post_call_usage.completion_tokens += usage.completion_tokens;
                (Some(object), None)
            }
            Some((Err(e), _)) => {
                let mut object = JsonObject::new();
                object.insert("error".to_owned(), Value::String(e.to_string()));
                (Some(object), Some(e))
            }
        };

        let ended_at = self.wall(ending.at_ms);
        let started_at = self.answered_at_ms.map(|ms| self.wall(ms));
        let duration_ms = self
            .answered_at_ms
            .map_or(0, |answered| ending.at_ms.saturating_sub(answered));
        let reported_at = ended_at
            .checked_add(analysis_started.elapsed())
            .unwrap_or(ended_at);
        let report = EndOfCallReport {
            envelope: self.envelope(reported_at, ending.status),
            duration_seconds: (duration_ms + 500) / 1000,
            summary,
            messages: std::mem::take(&mut self.messages),
            analysis,
            recording_url: self.recording_url.take(),
            end_reason: Some(platform_end_reason(&ending.reason)),
            started_at,
            ended_at: Some(ended_at),
        };
        CallReport {
            report,
            end_reason: ending.reason,
            error: ending.error,
            usage: self.usage,
            latencies: std::mem::take(&mut self.latencies),
            summary_error,
            analysis_error,
            analysis_skipped,
            post_call_usage,
            events_seen: self.events_seen,
            events_missing: self.events_missing,
        }
    }

    /// Follows a call to its end: reads `events`, hands every webhook body to `deliver` in
    /// order (`status-update`, `tool-calls`, then exactly one `end-of-call-report`), and returns
    /// the report.
    ///
    /// Reading stops at the terminal status. If the stream ends first, a `status-update` with
    /// `ended-with-error` is delivered before the report. `assistant-request` is not part of
    /// this: it is sent before the call starts ([`CallMetadata::assistant_request`]).
    pub async fn run<F, Fut>(
        mut self,
        events: &mut EventStream,
        analyzer: &PostCallAnalyzer,
        mut deliver: F,
    ) -> CallReport
    where
        F: FnMut(WebhookBody) -> Fut,
        Fut: Future<Output = ()>,
    {
        while !self.is_ended() {
            let Some(record) = events.next().await else {
                break;
            };
            if let Some(body) = self.on_event(&record) {
                deliver(body).await;
            }
        }
        if let Some(body) = self.end_unfinished() {
            deliver(body).await;
        }
        let report = self.finish(analyzer).await;
        deliver(report.to_body()).await;
        report
    }
}

/// The summary of a call that reached a voicemail box, in the platform's words:
/// `Voicemail detected. Left message: …` (or that none was left).
fn voicemail_summary(after_detection: &[TranscriptMessage]) -> String {
    let left: Vec<&str> = after_detection
        .iter()
        .filter(|m| m.role == crate::platform::Role::Assistant)
        .map(|m| m.content.as_str())
        .collect();
    if left.is_empty() {
        "Voicemail detected. No message left.".to_owned()
    } else {
        format!("Voicemail detected. Left message: {}", left.join(" "))
    }
}
