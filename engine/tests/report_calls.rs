//! The platform's webhook bodies built by `CallReporter` from real calls on virtual time, checked
//! field by field against the spec (§2–§6): an inbound call ended by the caller, an outbound
//! call reaching voicemail, max duration, an STT failure, a transfer and a tool call. Every call
//! yields exactly one end-of-call report. Also: the reporter as a slow event consumer, and
//! signing a built body.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ms, providers, stt, FailingStt, PcmPort};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use voxline_engine::call::{CallEvent, CallSettings, CallTool, Direction, EndReason, ToolKind};
use voxline_engine::driver::{new_call, CallControl, CallOutcome, DriverOptions, ProviderSet};
use voxline_engine::platform::signing::{sign, verify, webhook_headers, SignatureError};
use voxline_engine::platform::{
    CallType, JsonObject, PhoneNumberInfo, Pipeline, Timestamp, WebhookBody, WebhookEvent,
    WebhookEventKind,
};
use voxline_engine::provider::{LlmRequest, Role, ToolSpec};
use voxline_engine::report::{CallMetadata, CallReport, CallReporter, PostCallAnalyzer};
use voxline_engine::testkit::{ScriptedLlm, ScriptedReply};
use voxline_engine::tick_grid::TickSnap;

const CALL_ID: &str = "5c4d030f-43e3-4e65-899e-8148521e660f";
const GREETING: &str = "Hello, how can I help you?";
const CALLER_SAYS: &str = "I would like to schedule an appointment for next week.";
const AGENT_ANSWERS: &str = "Of course! Which day did you have in mind?";
const SUMMARY: &str = "Customer wanted to schedule an appointment for next week.";
const RECORDING_URL: &str = "https://recordings.example.com/5c4d030f/recording.wav";

fn start() -> Timestamp {
    Timestamp::parse("2025-12-13T12:00:00.000Z").expect("valid")
}

fn at(ms: u64) -> String {
    start()
        .checked_add(Duration::from_millis(ms))
        .expect("in range")
        .to_string()
}

fn inbound_meta() -> CallMetadata {
    CallMetadata::new(CALL_ID, CallType::InboundPhoneCall)
        .with_phone_number(PhoneNumberInfo {
            id: None,
            number: Some("+31850835037".into()),
            name: Some("HMS Sovereign Demo".into()),
        })
        .with_customer("+31612345678")
        .with_pipeline(Pipeline::Standard)
}

/// The example report's assistant, with a schema added to its analysis plan.
fn assistant() -> JsonObject {
    let example: Value = serde_json::from_str(include_str!("fixtures/end-of-call-report.json"))
        .expect("fixture is JSON");
    let mut assistant = example["message"]["assistant"]
        .as_object()
        .expect("assistant object")
        .clone();
    assistant["analysis_plan"]["structured_data_plan"]["schema"] = json!({
        "type": "object",
        "properties": {
            "sentiment": {"type": "integer", "minimum": 1, "maximum": 10},
            "main_topic": {"type": "string"}
        }
    });
    assistant
}

fn analysis_reply() -> Value {
    json!({"sentiment": 8, "main_topic": "Scheduling appointment"})
}

/// Post-call model: summaries for summary prompts, the analysis JSON for extraction prompts.
fn analysis_llm() -> ScriptedLlm {
    ScriptedLlm::new(|req: &LlmRequest| {
        let system = req.messages.first().map_or("", |m| m.content.as_str());
        if system.contains("summarize") {
            vec![ScriptedReply::Text(SUMMARY.into())]
        } else {
            vec![ScriptedReply::Text(format!(
                "```json\n{}\n```",
                analysis_reply()
            ))]
        }
    })
}

fn call_llm() -> ScriptedLlm {
    ScriptedLlm::always(AGENT_ANSWERS)
}

fn inbound_settings() -> CallSettings {
    CallSettings {
        system_prompt: "You are the clinic's receptionist.".into(),
        first_message: Some(GREETING.into()),
        ..Default::default()
    }
}

struct Run {
    outcome: CallOutcome,
    report: CallReport,
    bodies: Vec<WebhookBody>,
}

impl Run {
    fn values(&self) -> Vec<Value> {
        self.bodies
            .iter()
            .map(|b| serde_json::to_value(b).expect("serializes"))
            .collect()
    }

    fn kinds(&self) -> Vec<WebhookEventKind> {
        self.bodies.iter().map(|b| b.message.kind()).collect()
    }

    fn reports(&self) -> usize {
        self.kinds()
            .iter()
            .filter(|k| **k == WebhookEventKind::EndOfCallReport)
            .count()
    }

    fn eocr(&self) -> Value {
        self.values()
            .into_iter()
            .rev()
            .find(|v| v["message"]["type"] == "end-of-call-report")
            .expect("a report")
    }
}

/// Runs a call with a reporter following its events; `host` drives the call meanwhile.
async fn run_reported<F, Fut>(
    settings: CallSettings,
    providers: ProviderSet,
    speech: Vec<(Duration, Duration)>,
    reporter: CallReporter,
    analyzer: PostCallAnalyzer,
    host: F,
) -> Run
where
    F: FnOnce(CallControl) -> Fut,
    Fut: Future<Output = ()>,
{
    let (port, _agent) = PcmPort::new(speech);
    // Ticks at whole 20 ms steps from the start, so the expected timestamps are exact (a
    // shared tick grid would move them by up to 4 ms).
    let options = DriverOptions {
        tick_snap: TickSnap::Off,
        ..DriverOptions::default()
    };
    let (task, control, mut events) = new_call(settings, providers, port, options);
    let call = tokio::spawn(task.run());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let reporting = tokio::spawn(async move {
        reporter
            .run(&mut events, &analyzer, move |body| {
                let sink = sink.clone();
                async move {
                    sink.lock().expect("lock").push(body);
                }
            })
            .await
    });
    host(control).await;
    let outcome = call.await.expect("call task");
    let report = reporting.await.expect("reporter task");
    let bodies = bodies.lock().expect("lock").clone();
    Run {
        outcome,
        report,
        bodies,
    }
}

fn envelope(
    kind: &str,
    timestamp: &str,
    status: &str,
    with_assistant: bool,
) -> serde_json::Map<String, Value> {
    let mut message = json!({
        "type": kind,
        "timestamp": timestamp,
        "call": {"id": CALL_ID, "type": "inbound_phone_call", "status": status},
        "phone_number": {"number": "+31850835037", "name": "HMS Sovereign Demo"},
        "customer": {"number": "+31612345678"}
    })
    .as_object()
    .cloned()
    .expect("object");
    if with_assistant {
        message.insert("assistant".into(), Value::Object(assistant()));
    }
    message
}

#[tokio::test(start_paused = true)]
async fn inbound_call_ended_by_the_caller() {
    let analysis = analysis_llm();
    let reporter = CallReporter::new(inbound_meta(), start())
        .with_assistant(assistant())
        .with_recording_url(RECORDING_URL);
    let run = run_reported(
        inbound_settings(),
        providers(stt([CALLER_SAYS]), call_llm()),
        vec![(ms(4000), ms(6000))],
        reporter,
        PostCallAnalyzer::new(Arc::new(analysis.clone())),
        |control| async move {
            tokio::time::sleep(ms(14_000)).await;
            control.hang_up().expect("live");
        },
    )
    .await;
    assert_eq!(run.outcome.end_reason, EndReason::UserHangup);
    assert_eq!(
        run.kinds(),
        [
            WebhookEventKind::StatusUpdate,
            WebhookEventKind::StatusUpdate,
            WebhookEventKind::EndOfCallReport
        ]
    );
    let values = run.values();

    // status-update: in progress, at the start of the call, with the assistant echoed.
    assert_eq!(
        values[0],
        json!({"message": envelope("status-update", &at(0), "in-progress", true)})
    );
    // status-update: ended by the caller, with the platform's end reason.
    let mut ended = envelope("status-update", &at(14_000), "ended", true);
    ended.insert("end_reason".into(), json!("user_hangup"));
    assert_eq!(values[1], json!({ "message": ended }));

    // end-of-call-report, field by field.
    let eocr = run.eocr();
    let m = &eocr["message"];
    let keys: Vec<&str> = m
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "timestamp",
            "call",
            "phone_number",
            "customer",
            "assistant",
            "duration_seconds",
            "summary",
            "messages",
            "analysis",
            "recording_url",
            "end_reason",
            "started_at",
            "ended_at"
        ]
    );
    assert_eq!(m["type"], "end-of-call-report");
    assert_eq!(
        m["call"],
        json!({"id": CALL_ID, "type": "inbound_phone_call", "status": "ended"})
    );
    assert_eq!(
        m["phone_number"],
        json!({"number": "+31850835037", "name": "HMS Sovereign Demo"})
    );
    assert_eq!(m["customer"], json!({"number": "+31612345678"}));
    assert_eq!(m["assistant"], Value::Object(assistant()));
    assert_eq!(
        m["assistant"]["metadata"],
        json!({"crm_id": "12345", "campaign_id": "summer-2025", "customer_tier": "premium"})
    );
    assert_eq!(m["duration_seconds"], 14);
    assert_eq!(m["summary"], SUMMARY);
    assert_eq!(
        m["messages"],
        json!([
            {"role": "assistant", "content": GREETING},
            {"role": "user", "content": CALLER_SAYS},
            {"role": "assistant", "content": AGENT_ANSWERS}
        ])
    );
    assert_eq!(m["analysis"], analysis_reply());
    assert_eq!(m["recording_url"], RECORDING_URL);
    assert_eq!(m["end_reason"], "user_hangup");
    assert_eq!(m["started_at"], at(0));
    assert_eq!(m["ended_at"], at(14_000));
    // Stamped when the analysis was done: after the end, within its timeout.
    let stamped = Timestamp::parse(m["timestamp"].as_str().expect("string")).expect("valid");
    let after_end = stamped
        .duration_since(Timestamp::parse(&at(14_000)).expect("valid"))
        .expect("not before the end");
    assert!(after_end > Duration::ZERO && after_end < Duration::from_secs(2));

    // The report parses back into the typed webhook and re-serializes unchanged.
    let parsed =
        WebhookBody::from_slice(&serde_json::to_vec(&eocr).expect("bytes")).expect("parses");
    assert_eq!(serde_json::to_value(&parsed).expect("serializes"), eocr);

    // Engine-side extras.
    assert_eq!(run.report.end_reason, EndReason::UserHangup);
    assert_eq!(run.report.error, None);
    assert_eq!(run.report.events_missing, 0);
    assert!(run.report.usage.llm_prompt_tokens > 0);
    // Text sent to TTS: the greeting and the answer (chunk joins drop a space).
    assert!(
        (60..=70).contains(&run.report.usage.tts_characters),
        "{:?}",
        run.report.usage
    );
    assert!(run.report.usage.agent_audio_seconds > 3.0);
    // Caller audio went to STT from the answer to the hang-up: 14 s.
    assert!(
        (13.9..=14.1).contains(&run.report.usage.stt_audio_seconds),
        "{:?}",
        run.report.usage
    );
    assert_eq!(run.report.latencies.len(), 1);
    assert!(run.report.summary_error.is_none() && run.report.analysis_error.is_none());
    assert!(!run.report.analysis_skipped);
    assert!(run.report.post_call_usage.prompt_tokens > 0);

    // The analysis ran through the LLM trait with every placeholder filled.
    let requests = analysis.requests.lock().expect("lock");
    assert_eq!(requests.len(), 2, "one summary, one extraction");
    let extraction = requests
        .iter()
        .find(|r| r.messages[0].content.contains("extract structured data"))
        .expect("extraction request");
    let schema = serde_json::to_string_pretty(
        &assistant()["analysis_plan"]["structured_data_plan"]["schema"],
    )
    .expect("schema");
    let transcript =
        format!("assistant: {GREETING}\nuser: {CALLER_SAYS}\nassistant: {AGENT_ANSWERS}");
    assert_eq!(extraction.messages[1].role, Role::User);
    assert_eq!(
        extraction.messages[1].content,
        format!("Schema: {schema}\n\nTranscript: {transcript}\n\nCall ended because: user_hangup")
    );
    let summary = requests
        .iter()
        .find(|r| r.messages[0].content.contains("summarize"))
        .expect("summary request");
    assert_eq!(
        summary.messages[1].content,
        format!("Transcript: {transcript}\n\nCall ended because: user_hangup")
    );
    assert!(requests
        .iter()
        .flat_map(|r| &r.messages)
        .all(|m| !m.content.contains("{{")));
}

#[tokio::test(start_paused = true)]
async fn assistant_request_at_ringing_matches_the_spec() {
    let body = inbound_meta().assistant_request(start());
    assert_eq!(body.event_name(), "assistant-request");
    assert_eq!(
        serde_json::to_value(&body).expect("serializes"),
        json!({"message": {
            "type": "assistant-request",
            "timestamp": "2025-12-13T12:00:00.000Z",
            "call": {"id": CALL_ID, "type": "inbound_phone_call", "status": "ringing", "pipeline": "standard"},
            "phone_number": {"number": "+31850835037", "name": "HMS Sovereign Demo"},
            "customer": {"number": "+31612345678"}
        }})
    );
    // The reporter builds the same body, stamped with the call's start.
    let reporter = CallReporter::new(inbound_meta(), start()).with_assistant(assistant());
    assert_eq!(reporter.assistant_request(), body);
    // A web call has null numbers.
    let web = CallMetadata::new("web-1", CallType::WebCall).with_phone_number(PhoneNumberInfo {
        id: Some(None),
        number: None,
        name: None,
    });
    let value = serde_json::to_value(web.assistant_request(start())).expect("serializes");
    assert_eq!(
        value["message"]["phone_number"],
        json!({"id": null, "number": null, "name": null})
    );
    assert_eq!(value["message"]["customer"], json!({"number": null}));
    assert_eq!(value["message"]["call"]["type"], "web_call");
}

#[tokio::test(start_paused = true)]
async fn outbound_call_reaching_voicemail() {
    let voicemail_message = "Hello, this is a message from the clinic. Please call us back.";
    let greeting = "You have reached the voicemail of John. Please leave a message after the beep.";
    let settings = CallSettings {
        direction: Direction::Outbound,
        voicemail: Some(Some(voicemail_message.into())),
        ..Default::default()
    };
    let meta = CallMetadata::new(CALL_ID, CallType::OutboundPhoneCall)
        .with_phone_number(PhoneNumberInfo {
            id: Some(Some("num_1".into())),
            number: Some("+31850835037".into()),
            name: Some("HMS Sovereign Demo".into()),
        })
        .with_customer("+31687654321");
    let analysis = analysis_llm();
    let run = run_reported(
        settings,
        providers(stt([greeting]), call_llm()),
        vec![(ms(1000), ms(4000))],
        CallReporter::new(meta, start()),
        PostCallAnalyzer::new(Arc::new(analysis.clone())),
        |_| async {},
    )
    .await;
    assert_eq!(run.outcome.end_reason, EndReason::Voicemail);
    assert_eq!(run.reports(), 1);
    let values = run.values();
    assert_eq!(values.len(), 3);
    assert_eq!(values[1]["message"]["call"]["status"], "ended");
    assert_eq!(values[1]["message"]["end_reason"], "voicemail");
    let m = &run.eocr()["message"];
    assert_eq!(
        m["call"],
        json!({"id": CALL_ID, "type": "outbound_phone_call", "status": "ended"})
    );
    assert_eq!(
        m["phone_number"],
        json!({"id": "num_1", "number": "+31850835037", "name": "HMS Sovereign Demo"})
    );
    assert_eq!(m["customer"], json!({"number": "+31687654321"}));
    assert!(m.get("assistant").is_none(), "no assistant was given");
    assert_eq!(
        m["summary"],
        format!("Voicemail detected. Left message: {voicemail_message}")
    );
    assert_eq!(
        m["messages"],
        json!([
            {"role": "user", "content": greeting},
            {"role": "assistant", "content": voicemail_message}
        ])
    );
    assert!(m.get("analysis").is_none());
    assert!(m.get("recording_url").is_none());
    assert_eq!(m["end_reason"], "voicemail");
    let ended_ms = Timestamp::parse(m["ended_at"].as_str().expect("string"))
        .expect("valid")
        .duration_since(start())
        .expect("after start")
        .as_millis() as u64;
    assert_eq!(m["duration_seconds"], (ended_ms + 500) / 1000);
    // The voicemail summary needs no model.
    assert!(analysis.requests.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn call_ended_by_max_duration() {
    let settings = CallSettings {
        max_duration: Some(Duration::from_secs(10)),
        ..inbound_settings()
    };
    let run = run_reported(
        settings,
        providers(stt(Vec::<String>::new()), call_llm()),
        Vec::new(),
        CallReporter::new(inbound_meta(), start()),
        PostCallAnalyzer::new(Arc::new(analysis_llm())),
        |_| async {},
    )
    .await;
    assert_eq!(run.outcome.end_reason, EndReason::MaxDuration);
    assert_eq!(run.reports(), 1);
    let values = run.values();
    let mut ended = envelope("status-update", &at(10_000), "ended", false);
    ended.insert("end_reason".into(), json!("max_duration"));
    assert_eq!(values[1], json!({ "message": ended }));
    let m = &run.eocr()["message"];
    assert_eq!(m["call"]["status"], "ended");
    assert_eq!(m["duration_seconds"], 10);
    assert_eq!(m["end_reason"], "max_duration");
    assert_eq!(m["started_at"], at(0));
    assert_eq!(m["ended_at"], at(10_000));
    assert_eq!(
        m["messages"],
        json!([{"role": "assistant", "content": GREETING}])
    );
    assert_eq!(m["summary"], SUMMARY);
}

#[tokio::test(start_paused = true)]
async fn call_ended_by_an_stt_failure() {
    let stt = FailingStt { after: ms(5000) };
    let run = run_reported(
        inbound_settings(),
        providers(stt, call_llm()),
        Vec::new(),
        CallReporter::new(inbound_meta(), start()).with_assistant(assistant()),
        PostCallAnalyzer::new(Arc::new(analysis_llm())),
        |_| async {},
    )
    .await;
    assert_eq!(run.outcome.end_reason, EndReason::Error);
    assert_eq!(run.reports(), 1);
    let values = run.values();
    assert_eq!(values.len(), 3);
    let error = "Stt failed: failing-stt: network error: connection reset by peer";
    let mut failed = envelope("status-update", &at(5000), "ended-with-error", true);
    failed.insert("error".into(), json!(error));
    failed.insert("end_reason".into(), json!("error"));
    assert_eq!(values[1], json!({ "message": failed }));
    let m = &run.eocr()["message"];
    assert_eq!(
        m["call"],
        json!({"id": CALL_ID, "type": "inbound_phone_call", "status": "ended-with-error"})
    );
    assert_eq!(m["end_reason"], "error");
    assert_eq!(m["duration_seconds"], 5);
    assert_eq!(run.report.error.as_deref(), Some(error));
    // One message is under the default threshold of 2: no structured analysis.
    assert!(m.get("analysis").is_none());
    assert!(run.report.analysis_skipped);
}

#[tokio::test(start_paused = true)]
async fn call_ended_by_transfer() {
    let run = run_reported(
        inbound_settings(),
        providers(stt(Vec::<String>::new()), call_llm()),
        Vec::new(),
        CallReporter::new(inbound_meta(), start()),
        PostCallAnalyzer::new(Arc::new(analysis_llm())),
        |control| async move {
            tokio::time::sleep(ms(3000)).await;
            let body = br#"{"type":"transfer","destination":"sip:desk@pbx.example.com","message":"Connecting you now."}"#;
            control.control_json(body).await.expect("accepted");
        },
    )
    .await;
    assert_eq!(run.outcome.end_reason, EndReason::Transferred);
    assert_eq!(run.reports(), 1);
    let values = run.values();
    assert_eq!(values.len(), 3);
    assert_eq!(values[1]["message"]["call"]["status"], "transferred");
    assert_eq!(values[1]["message"]["end_reason"], "transferred");
    assert!(values[1]["message"].get("error").is_none());
    let m = &run.eocr()["message"];
    assert_eq!(m["call"]["status"], "transferred");
    assert_eq!(m["end_reason"], "transferred");
    assert_eq!(
        m["messages"],
        json!([
            {"role": "assistant", "content": GREETING},
            {"role": "assistant", "content": "Connecting you now."}
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn tool_calls_webhook_and_the_host_result() {
    let settings = CallSettings {
        tools: vec![CallTool {
            spec: ToolSpec {
                name: "lookup_contact".into(),
                description: "Finds a contact".into(),
                parameters: json!({"type": "object", "properties": {"query": {"type": "string"}}}),
            },
            kind: ToolKind::Function {
                is_async: false,
                message: None,
                timeout: Duration::from_secs(10),
            },
        }],
        ..inbound_settings()
    };
    let llm = ScriptedLlm::new(|req: &LlmRequest| {
        if req.messages.last().is_some_and(|m| m.role == Role::Tool) {
            vec![ScriptedReply::Text("John Smith is in room four.".into())]
        } else {
            vec![ScriptedReply::Tool {
                name: "lookup_contact".into(),
                arguments: r#"{"query":"John Smith"}"#.into(),
            }]
        }
    });
    let (port, _agent) = PcmPort::new(vec![(ms(3000), ms(4500))]);
    let (task, control, mut events) = new_call(
        settings,
        providers(stt(["Where is John Smith"]), llm),
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    let reporter = CallReporter::new(inbound_meta(), start()).with_assistant(assistant());
    let host = control.clone();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let reporting = tokio::spawn(async move {
        reporter
            .run(&mut events, &PostCallAnalyzer::disabled(), move |body| {
                let sink = sink.clone();
                let host = host.clone();
                async move {
                    if let WebhookEvent::ToolCalls(calls) = &body.message {
                        // The host answers after a second.
                        tokio::time::sleep(ms(1000)).await;
                        for call in &calls.tool_call_list {
                            let _ = host.tool_result(&call.id, json!({"room": 4}));
                        }
                    }
                    sink.lock().expect("lock").push(body);
                }
            })
            .await
    });
    tokio::time::sleep(ms(12_000)).await;
    control.hang_up().expect("live");
    let outcome = call.await.expect("call");
    let report = reporting.await.expect("reporter");
    let bodies = bodies.lock().expect("lock").clone();
    let kinds: Vec<_> = bodies.iter().map(|b| b.message.kind()).collect();
    assert_eq!(
        kinds,
        [
            WebhookEventKind::StatusUpdate,
            WebhookEventKind::ToolCalls,
            WebhookEventKind::StatusUpdate,
            WebhookEventKind::EndOfCallReport
        ]
    );
    let tool_calls = serde_json::to_value(&bodies[1]).expect("serializes");
    let m = &tool_calls["message"];
    assert_eq!(m["type"], "tool-calls");
    assert_eq!(m["call"]["status"], "in-progress");
    assert_eq!(m["assistant"]["metadata"]["crm_id"], "12345");
    assert_eq!(
        m["tool_call_list"],
        json!([{
            "id": "call_lookup_contact_0",
            "type": "function",
            "function": {"name": "lookup_contact", "arguments": {"query": "John Smith"}}
        }])
    );
    let stamped = Timestamp::parse(m["timestamp"].as_str().expect("string")).expect("valid");
    assert!(stamped > start());
    // The result reached the model, which answered.
    let answered = outcome
        .history
        .iter()
        .any(|h| h.role == Role::Assistant && h.content == "John Smith is in room four.");
    assert!(answered, "{:?}", outcome.history);
    // Without a model there is no summary, and the report says why.
    let eocr = serde_json::to_value(report.to_body()).expect("serializes");
    assert_eq!(eocr["message"]["summary"], "");
    assert!(report.summary_error.is_some());
    assert!(
        eocr["message"]["analysis"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no language model")),
        "{eocr}"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_reporter_never_stalls_the_call_and_misses_nothing() {
    let (port, agent) = PcmPort::new(vec![(ms(4000), ms(5000)), (ms(9000), ms(10_000))]);
    let (task, control, mut events) = new_call(
        CallSettings {
            first_message: Some("Hi there, how can I help you today?".into()),
            ..Default::default()
        },
        providers(
            stt(["I have a question", "Thank you"]),
            ScriptedLlm::always("Of course, go ahead."),
        ),
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    let reporter = CallReporter::new(inbound_meta(), start());
    // The reporter pauses three seconds after every event and every webhook.
    let reporting = tokio::spawn(async move {
        let mut reporter = reporter;
        let mut bodies = Vec::new();
        let mut seqs = Vec::new();
        while let Some(record) = events.next().await {
            seqs.push(record.seq);
            let ended =
                matches!(&record.event, CallEvent::Status { status, .. } if status.is_terminal());
            if let Some(body) = reporter.on_event(&record) {
                bodies.push(body);
            }
            tokio::time::sleep(ms(3000)).await;
            if ended {
                break;
            }
        }
        let report = reporter
            .finish(&PostCallAnalyzer::new(Arc::new(analysis_llm())))
            .await;
        bodies.push(report.to_body());
        (report, bodies, seqs)
    });
    tokio::time::sleep(ms(15_000)).await;
    control.hang_up().expect("live");
    let outcome = call.await.expect("call");
    let (report, bodies, seqs) = reporting.await.expect("reporter");
    // The media clock ran the whole time, one frame per tick.
    assert!(outcome.media.ticks >= 749, "ticks {}", outcome.media.ticks);
    assert_eq!(outcome.media.late_ticks, 0);
    assert_eq!(
        agent.lock().expect("lock").len() as u64,
        outcome.media.ticks + 1
    );
    // Every event arrived, in order, long after the call was over.
    assert!(seqs.len() > 10);
    assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64));
    assert_eq!(report.events_seen, seqs.len() as u64);
    assert_eq!(report.events_missing, 0);
    let kinds: Vec<_> = bodies.iter().map(|b| b.message.kind()).collect();
    assert_eq!(
        kinds,
        [
            WebhookEventKind::StatusUpdate,
            WebhookEventKind::StatusUpdate,
            WebhookEventKind::EndOfCallReport
        ]
    );
    let m = &report.report;
    assert_eq!(m.duration_seconds, 15);
    let contents: Vec<&str> = m.messages.iter().map(|t| t.content.as_str()).collect();
    assert_eq!(
        contents,
        [
            "Hi there, how can I help you today?",
            "I have a question",
            "Of course, go ahead.",
            "Thank you",
            "Of course, go ahead."
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn events_lost_before_the_reporter_are_counted_and_a_cut_stream_still_reports() {
    let (port, _agent) = PcmPort::new(Vec::new());
    let (task, control, mut events) = new_call(
        inbound_settings(),
        providers(stt(Vec::<String>::new()), call_llm()),
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    tokio::time::sleep(ms(3000)).await;
    // The host skips the first event, then reads until the call is still live and stops.
    let _skipped = events.next().await.expect("status");
    let mut reporter = CallReporter::new(inbound_meta(), start());
    let mut bodies = Vec::new();
    while let Some(record) = events.try_next() {
        bodies.extend(reporter.on_event(&record));
    }
    control.hang_up().expect("live");
    call.await.expect("call");
    // The terminal status is never read: the report states the cut.
    let report = reporter.finish(&PostCallAnalyzer::disabled()).await;
    assert_eq!(report.events_missing, 1);
    assert_eq!(report.end_reason, EndReason::Error);
    assert_eq!(
        report.error.as_deref(),
        Some(voxline_engine::report::UNFINISHED_STREAM_ERROR)
    );
    assert_eq!(
        report.report.envelope.call.status,
        voxline_engine::platform::CallStatus::EndedWithError
    );
    // The in-progress status was the skipped event, so the call never counted as answered.
    assert_eq!(report.report.started_at, None);
    assert_eq!(report.report.duration_seconds, 0);
    assert!(bodies.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_built_report_is_signed_and_verified() {
    let run = run_reported(
        inbound_settings(),
        providers(stt([CALLER_SAYS]), call_llm()),
        vec![(ms(4000), ms(6000))],
        CallReporter::new(inbound_meta(), start()).with_assistant(assistant()),
        PostCallAnalyzer::new(Arc::new(analysis_llm())),
        |control| async move {
            tokio::time::sleep(ms(10_000)).await;
            control.hang_up().expect("live");
        },
    )
    .await;
    let body = run.report.to_body();
    let raw = body.to_vec().expect("serializes");
    let secret = b"whsec_report_secret";
    let ts = Timestamp::parse(&at(10_500)).expect("valid").unix_secs();
    let headers = webhook_headers(body.message.kind(), ts, &raw, Some(secret));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .expect("header present")
    };
    assert_eq!(header("X-Webhook-Event"), "end-of-call-report");
    assert_eq!(header("X-Webhook-Timestamp"), ts.to_string());
    let signature = header("X-Webhook-Signature");
    assert_eq!(signature, sign(secret, ts, &raw));

    // An independent HMAC-SHA256 over "{timestamp}.{raw_body}" gives the same digest.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key");
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&raw);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(signature, format!("sha256={hex}"));

    let now = ts + 2;
    assert_eq!(
        verify(secret, &signature, &ts.to_string(), &raw, now, 300),
        Ok(())
    );
    let mut tampered = raw.clone();
    let pos = tampered
        .windows(10)
        .position(|w| w == b"user_hangu")
        .expect("end reason in body");
    tampered[pos] = b'U';
    assert_eq!(
        verify(secret, &signature, &ts.to_string(), &tampered, now, 300),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(
            b"another secret",
            &signature,
            &ts.to_string(),
            &raw,
            now,
            300
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(secret, &signature, &ts.to_string(), &raw, ts + 301, 300),
        Err(SignatureError::Stale {
            age_secs: 301,
            max_age_secs: 300
        })
    );
    assert_eq!(
        verify(secret, &signature, &ts.to_string(), &raw, ts + 300, 300),
        Ok(())
    );
    // The received bytes parse back into the same report.
    assert_eq!(WebhookBody::from_slice(&raw).expect("parses"), body);
}
