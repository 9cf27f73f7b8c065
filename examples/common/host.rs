//! The host side of a call: follows the event stream (event log, live transcript, webhook
//! bodies through the [`CallReporter`]) and hands each webhook body to a [`Host`], which
//! answers tool calls and sends webhooks wherever it sends them.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use voxline::engine::call::EventRecord;
use voxline::engine::config::Pipeline as AssistantPipeline;
use voxline::engine::platform::{
    CallType, JsonObject, PhoneNumberInfo, Pipeline, Timestamp, ToolCall, WebhookBody, WebhookEvent,
};
use voxline::engine::report::{CallMetadata, CallReport, CallReporter, PostCallAnalyzer};
use voxline::{CallControl, CallDirection, EventStream};

use super::cli::AppError;
use super::output::{EventLog, OutputDir};
use super::transcript::Printer;

/// How long post-call analysis may take per model request before the report goes out without it.
pub const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(15);

/// What a host does with the webhook bodies of a call (already written to the output folder).
pub trait Host: Send {
    /// One body: `status-update`, `tool-calls` or the `end-of-call-report`. Must not block:
    /// slow work (HTTP, a booking system) goes to a task, results back through `control`.
    fn on_webhook(&mut self, body: &WebhookBody, control: &CallControl);
}

/// A random-enough call id for an example call.
pub fn call_id(prefix: &str) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{prefix}-{:016x}", h.finish())
}

/// The metadata the webhooks of an example call carry: a made-up platform number and caller
/// (none for a web call).
pub fn call_metadata(
    id: String,
    direction: CallDirection,
    pipeline: AssistantPipeline,
) -> CallMetadata {
    let call_type = match direction {
        CallDirection::Inbound => CallType::InboundPhoneCall,
        CallDirection::Outbound => CallType::OutboundPhoneCall,
        CallDirection::Web => CallType::WebCall,
    };
    let pipeline = match pipeline {
        AssistantPipeline::Realtime => Pipeline::Realtime,
        _ => Pipeline::Standard,
    };
    let meta = CallMetadata::new(id, call_type).with_pipeline(pipeline);
    if direction == CallDirection::Web {
        // A web call has no phone numbers: the platform sends them as null.
        return meta.with_phone_number(PhoneNumberInfo {
            id: Some(None),
            number: None,
            name: None,
        });
    }
    meta.with_phone_number(PhoneNumberInfo {
        id: Some(Some("pn-example-1".to_string())),
        number: Some("+15550142000".to_string()),
        name: Some("Bright Smile Dental main line".to_string()),
    })
    .with_customer("+15550100123")
}

/// Wall time now, as webhooks stamp it.
pub fn now() -> Result<Timestamp, AppError> {
    Timestamp::from_system_time(SystemTime::now())
        .map_err(|e| AppError::Setup(format!("the system clock is unusable: {e}")))
}

/// What following a call left behind.
pub struct Followed {
    /// The end-of-call report (also delivered as a webhook).
    pub report: CallReport,
    /// Events written to the log.
    pub events_logged: u64,
    /// The first output error (a webhook file or the log), if any; the call itself went on.
    pub output_error: Option<AppError>,
}

/// Follows a call to its end: every event goes to the log, the transcript and each of `taps`;
/// the reporter turns them into webhook bodies, which are written to `out` and handed to
/// `host`. Returns when the call's event stream has ended and the report was delivered.
#[allow(clippy::too_many_arguments)]
pub async fn follow_call(
    mut events: EventStream,
    reporter: CallReporter,
    analyzer: PostCallAnalyzer,
    mut log: EventLog,
    printer: Printer,
    taps: Vec<mpsc::UnboundedSender<EventRecord>>,
    out: &mut OutputDir,
    host: &mut dyn Host,
    control: CallControl,
) -> Followed {
    let (tx, mut reporter_events) = EventStream::channel();
    let tee_printer = printer.clone();
    let tee = tokio::spawn(async move {
        while let Some(record) = events.next().await {
            log.write(&record);
            tee_printer.event(&record);
            for tap in &taps {
                let _ = tap.send(record.clone());
            }
            let _ = tx.send(record);
        }
        log
    });
    let mut output_error = None;
    let report = reporter
        .run(&mut reporter_events, &analyzer, |body| {
            match out.write_webhook(&body) {
                Ok(path) => printer.note("host", webhook_note(&body, &path.display().to_string())),
                Err(e) => {
                    output_error.get_or_insert(e);
                }
            }
            host.on_webhook(&body, &control);
            async {}
        })
        .await;
    let (events_logged, log_error) = match tee.await {
        Ok(log) => match log.finish() {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e)),
        },
        Err(e) => (
            0,
            Some(AppError::Call(format!("the event reader failed: {e}"))),
        ),
    };
    Followed {
        report,
        events_logged,
        output_error: output_error.or(log_error),
    }
}

fn webhook_note(body: &WebhookBody, path: &str) -> String {
    let detail = match &body.message {
        WebhookEvent::StatusUpdate(s) => format!(" ({})", s.envelope.call.status.as_str()),
        WebhookEvent::ToolCalls(t) => {
            let names: Vec<&str> = t
                .tool_call_list
                .iter()
                .map(|c| c.function.name.as_str())
                .collect();
            format!(" ({})", names.join(", "))
        }
        _ => String::new(),
    };
    format!("webhook {}{detail} -> {path}", body.event_name())
}

/// The tool calls of a `tool-calls` body (empty for the other events).
pub fn tool_calls(body: &WebhookBody) -> &[ToolCall] {
    match &body.message {
        WebhookEvent::ToolCalls(t) => &t.tool_call_list,
        _ => &[],
    }
}

/// A host that answers tool calls itself, like a booking system behind the platform would:
/// after `delay`, with [`canned_result`].
pub struct LocalTools {
    /// How long the "booking system" takes.
    pub delay: Duration,
    /// Where answers are noted.
    pub printer: Printer,
}

impl Host for LocalTools {
    fn on_webhook(&mut self, body: &WebhookBody, control: &CallControl) {
        for call in tool_calls(body) {
            let (id, name) = (call.id.clone(), call.function.name.clone());
            let result = canned_result(&name, &call.function.arguments);
            let (control, printer, delay) = (control.clone(), self.printer.clone(), self.delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                printer.note("host", format!("answers {name}: {result}"));
                // A call that has ended does not need the answer any more.
                let _ = control.tool_result(id, result);
            });
        }
    }
}

/// A plausible result for the example assistants' tools: a booking is confirmed with a
/// reference, a confirmation is recorded, anything else is acknowledged.
pub fn canned_result(name: &str, arguments: &JsonObject) -> Value {
    let text = |key: &str| arguments.get(key).and_then(Value::as_str).unwrap_or("");
    match name {
        "book_appointment" => {
            let (day, time, who) = (text("day"), text("time"), text("name"));
            let missing: Vec<&str> = [("day", day), ("time", time), ("name", who)]
                .iter()
                .filter(|(_, v)| v.trim().is_empty())
                .map(|(k, _)| *k)
                .collect();
            if !missing.is_empty() {
                return json!({
                    "confirmed": false,
                    "error": format!("missing {}", missing.join(", ")),
                });
            }
            let reference: u32 = format!("{day}{time}{who}")
                .bytes()
                .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
                % 9000
                + 1000;
            let service = arguments
                .get("service")
                .and_then(Value::as_str)
                .unwrap_or("check-up");
            json!({
                "confirmed": true,
                "message": format!(
                    "You're booked in for a {service} on {day} at {time} with Dr. Maya Lindqvist, \
                     and your reference is BSD-{reference}."
                ),
                "day": day,
                "time": time,
                "name": who,
                "service": service,
                "dentist": "Dr. Maya Lindqvist",
                "reference": format!("BSD-{reference}"),
                "address": "42 Harbour Street, second floor",
            })
        }
        "confirm_appointment" => json!({"recorded": true}),
        _ => json!({"ok": true}),
    }
}
