//! Post-call analysis in the end-of-call report: prompts through the LLM trait with the
//! placeholders filled, `min_messages_threshold`, and failures (bad JSON, provider errors,
//! timeouts, an unreadable plan) that still yield a report stating them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use voxline_engine::call::{CallEvent, CallStatus, EndReason, EventRecord, Usage};
use voxline_engine::config::{AnalysisPlan, ConfigSection};
use voxline_engine::platform::{CallType, JsonObject, Timestamp};
use voxline_engine::provider::{BoxFuture, LlmEvent, LlmProvider, LlmRequest, ProviderError, Role};
use voxline_engine::report::{
    AnalysisError, CallMetadata, CallReport, CallReporter, PostCallAnalyzer,
};
use voxline_engine::testkit::{ScriptedLlm, ScriptedReply};

fn start() -> Timestamp {
    Timestamp::parse("2025-12-13T12:00:00.000Z").expect("valid")
}

/// A finished call's events: answered at 0, `lines` as messages, ended by the caller at 30 s.
fn events(lines: &[(Role, &str)]) -> Vec<EventRecord> {
    let mut list = vec![CallEvent::Status {
        status: CallStatus::InProgress,
        end_reason: None,
        error: None,
    }];
    list.extend(lines.iter().map(|(role, content)| CallEvent::Message {
        role: *role,
        content: (*content).to_owned(),
    }));
    list.push(CallEvent::Usage(Usage {
        stt_audio_seconds: 30.0,
        agent_audio_seconds: 12.5,
        llm_prompt_tokens: 420,
        llm_completion_tokens: 37,
        tts_characters: 180,
    }));
    list.push(CallEvent::Status {
        status: CallStatus::Ended,
        end_reason: Some(EndReason::UserHangup),
        error: None,
    });
    let n = list.len() as u64;
    list.into_iter()
        .enumerate()
        .map(|(i, event)| EventRecord {
            seq: i as u64,
            at_ms: if i as u64 + 1 == n {
                30_000
            } else {
                i as u64 * 1000
            },
            event,
        })
        .collect()
}

const CONVERSATION: [(Role, &str); 3] = [
    (Role::Assistant, "Hello, how can I help you?"),
    (Role::User, "I want to cancel my appointment on Friday."),
    (
        Role::Assistant,
        "Done, your Friday appointment is cancelled.",
    ),
];

fn assistant(plan: Value) -> JsonObject {
    json!({"first_message": "Hello, how can I help you?", "analysis_plan": plan, "metadata": {"crm_id": "9"}})
        .as_object()
        .cloned()
        .expect("object")
}

fn plan_with_prompt(threshold: u32) -> Value {
    json!({
        "structured_data_plan": {
            "enabled": true,
            "schema": {"type": "object", "properties": {"cancelled": {"type": "boolean"}}},
            "messages": [
                {"role": "system", "content": "Extract data. Reply with JSON only."},
                {"role": "user", "content": "S={{schema}}|T={{transcript}}|R={{ended_reason}}|R2={{endedReason}}"}
            ]
        },
        "min_messages_threshold": threshold
    })
}

async fn report(
    assistant: JsonObject,
    lines: &[(Role, &str)],
    analyzer: &PostCallAnalyzer,
) -> CallReport {
    let mut reporter = CallReporter::new(
        CallMetadata::new("call-1", CallType::InboundPhoneCall).with_customer("+31612345678"),
        start(),
    )
    .with_assistant(assistant);
    for record in events(lines) {
        reporter.on_event(&record);
    }
    reporter.finish(analyzer).await
}

/// A model that answers summaries with prose and extraction with `extraction`.
fn model(extraction: &'static str) -> ScriptedLlm {
    ScriptedLlm::new(move |req: &LlmRequest| {
        let system = req.messages.first().map_or("", |m| m.content.as_str());
        if system.contains("summarize") {
            vec![ScriptedReply::Text(
                "The caller cancelled a Friday appointment.".into(),
            )]
        } else {
            vec![ScriptedReply::Text(extraction.into())]
        }
    })
}

#[tokio::test(start_paused = true)]
async fn placeholders_are_filled_in_the_model_request() {
    let llm = model(r#"{"cancelled": true}"#);
    let report = report(
        assistant(plan_with_prompt(2)),
        &CONVERSATION,
        &PostCallAnalyzer::new(Arc::new(llm.clone())),
    )
    .await;
    let r = &report.report;
    assert_eq!(r.summary, "The caller cancelled a Friday appointment.");
    assert_eq!(
        Value::Object(r.analysis.clone().expect("analysis")),
        json!({"cancelled": true})
    );
    assert_eq!(r.duration_seconds, 30);
    assert_eq!(
        r.end_reason.as_ref().map(|e| e.as_str()),
        Some("user_hangup")
    );
    assert_eq!(report.usage.llm_prompt_tokens, 420);
    assert_eq!(report.usage.tts_characters, 180);

    let requests = llm.requests.lock().expect("lock");
    let extraction = requests
        .iter()
        .find(|r| r.messages[0].content == "Extract data. Reply with JSON only.")
        .expect("extraction request");
    assert_eq!(extraction.messages.len(), 2);
    assert_eq!(extraction.messages[1].role, Role::User);
    let schema = "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"cancelled\": {\n      \"type\": \"boolean\"\n    }\n  }\n}";
    let transcript = "assistant: Hello, how can I help you?\nuser: I want to cancel my appointment on Friday.\nassistant: Done, your Friday appointment is cancelled.";
    assert_eq!(
        extraction.messages[1].content,
        format!("S={schema}|T={transcript}|R=user_hangup|R2=user_hangup")
    );
    assert_eq!(extraction.temperature, Some(0.0));
    assert!(extraction.tools.is_empty());
}

#[tokio::test(start_paused = true)]
async fn calls_under_the_threshold_are_not_analysed() {
    let llm = model(r#"{"cancelled": true}"#);
    let report = report(
        assistant(plan_with_prompt(4)),
        &CONVERSATION,
        &PostCallAnalyzer::new(Arc::new(llm.clone())),
    )
    .await;
    assert!(report.report.analysis.is_none());
    assert!(report.analysis_skipped);
    assert!(report.analysis_error.is_none());
    // The summary is still written: the threshold is for structured data only.
    assert_eq!(
        report.report.summary,
        "The caller cancelled a Friday appointment."
    );
    {
        let requests = llm.requests.lock().expect("lock");
        assert_eq!(requests.len(), 1);
        assert!(requests[0].messages[0].content.contains("summarize"));
    }
    // At the threshold it runs.
    let at_threshold = report_with_threshold(3).await;
    assert!(at_threshold.report.analysis.is_some());
    assert!(!at_threshold.analysis_skipped);
}

async fn report_with_threshold(threshold: u32) -> CallReport {
    report(
        assistant(plan_with_prompt(threshold)),
        &CONVERSATION,
        &PostCallAnalyzer::new(Arc::new(model(r#"{"cancelled": true}"#))),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn default_threshold_skips_one_message_calls() {
    let plan = json!({"structured_data_plan": {"enabled": true}});
    let llm = model(r#"{"x": 1}"#);
    let report = report(
        assistant(plan),
        &CONVERSATION[..1],
        &PostCallAnalyzer::new(Arc::new(llm.clone())),
    )
    .await;
    assert!(report.analysis_skipped);
    assert!(report.report.analysis.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_unparsable_reply_is_stated_in_the_analysis() {
    let report = report(
        assistant(plan_with_prompt(2)),
        &CONVERSATION,
        &PostCallAnalyzer::new(Arc::new(model("Sure! The caller cancelled."))),
    )
    .await;
    let analysis = Value::Object(report.report.analysis.clone().expect("stated"));
    let error = analysis["error"].as_str().expect("error string");
    assert!(
        error.starts_with("structured data reply is not JSON"),
        "{error}"
    );
    assert!(error.contains("Sure! The caller cancelled."), "{error}");
    assert_eq!(analysis.as_object().map(|o| o.len()), Some(1));
    assert!(matches!(
        report.analysis_error,
        Some(AnalysisError::NotJson { .. })
    ));
    // The rest of the report is intact.
    assert_eq!(
        report.report.summary,
        "The caller cancelled a Friday appointment."
    );
    assert_eq!(report.report.messages.len(), 3);

    let array = report_with_reply("[1, 2, 3]").await;
    assert_eq!(array.analysis_error, Some(AnalysisError::NotAnObject));
}

async fn report_with_reply(reply: &'static str) -> CallReport {
    report(
        assistant(plan_with_prompt(2)),
        &CONVERSATION,
        &PostCallAnalyzer::new(Arc::new(model(reply))),
    )
    .await
}

/// A model whose every request fails.
struct BrokenLlm;

impl LlmProvider for BrokenLlm {
    fn name(&self) -> &str {
        "broken"
    }

    fn stream(
        &self,
        _request: LlmRequest,
        _events: mpsc::UnboundedSender<LlmEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        Box::pin(async {
            Err(ProviderError::Http {
                provider: "broken".into(),
                status: 503,
                body: "overloaded".into(),
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_model_still_yields_a_report() {
    let report = report(
        assistant(plan_with_prompt(2)),
        &CONVERSATION,
        &PostCallAnalyzer::new(Arc::new(BrokenLlm)),
    )
    .await;
    assert_eq!(report.report.summary, "");
    assert!(matches!(
        report.summary_error,
        Some(AnalysisError::Provider(ProviderError::Http {
            status: 503,
            ..
        }))
    ));
    let analysis = Value::Object(report.report.analysis.clone().expect("stated"));
    assert_eq!(
        analysis,
        json!({"error": "post-call model request failed: broken: HTTP 503: overloaded"})
    );
    assert_eq!(report.report.messages.len(), 3);
    assert_eq!(report.report.duration_seconds, 30);
}

#[tokio::test(start_paused = true)]
async fn a_slow_model_times_out() {
    let mut slow = model(r#"{"cancelled": true}"#);
    slow.first_token_latency = Duration::from_secs(120);
    let analyzer = PostCallAnalyzer::new(Arc::new(slow)).with_timeout(Duration::from_secs(5));
    let report = report(assistant(plan_with_prompt(2)), &CONVERSATION, &analyzer).await;
    assert_eq!(
        report.summary_error,
        Some(AnalysisError::TimedOut(Duration::from_secs(5)))
    );
    assert_eq!(
        report.analysis_error,
        Some(AnalysisError::TimedOut(Duration::from_secs(5)))
    );
    let analysis = Value::Object(report.report.analysis.clone().expect("stated"));
    assert!(analysis["error"]
        .as_str()
        .is_some_and(|e| e.contains("timed out after 5s")));
    // Both requests ran side by side: the report is stamped 5 s after the call ended.
    assert_eq!(
        report.report.envelope.timestamp.to_string(),
        "2025-12-13T12:00:35.000Z"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_plan_is_stated() {
    let report = report(
        assistant(json!({"structured_data_plan": {"schema": "not a schema"}})),
        &CONVERSATION,
        &PostCallAnalyzer::new(Arc::new(model("{}"))),
    )
    .await;
    let analysis = Value::Object(report.report.analysis.clone().expect("stated"));
    let error = analysis["error"].as_str().expect("string");
    assert!(error.starts_with("analysis_plan is invalid"), "{error}");
    assert!(error.contains("structured_data_plan.schema"), "{error}");
    assert!(matches!(
        report.analysis_error,
        Some(AnalysisError::InvalidPlan(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn no_plan_means_no_analysis_and_a_disabled_summary_is_empty() {
    let llm = model("{}");
    let mut reporter = CallReporter::new(CallMetadata::new("c", CallType::WebCall), start())
        .with_analysis_plan(
            AnalysisPlan::from_value(&json!({"summary_plan": {"enabled": false}}))
                .expect("valid plan"),
        );
    for record in events(&CONVERSATION) {
        reporter.on_event(&record);
    }
    let report = reporter
        .finish(&PostCallAnalyzer::new(Arc::new(llm.clone())))
        .await;
    assert_eq!(report.report.summary, "");
    assert!(report.summary_error.is_none());
    assert!(report.report.analysis.is_none());
    assert!(!report.analysis_skipped);
    assert!(llm.requests.lock().expect("lock").is_empty());
    // With a summary prompt of its own, the plan's prompt is used.
    let llm = model("{}");
    let plan = AnalysisPlan::from_value(&json!({"summary_plan": {"messages": [
        {"role": "user", "content": "Summarize in one line ({{ended_reason}}): {{transcript}}"}
    ]}}))
    .expect("valid plan");
    let mut reporter = CallReporter::new(CallMetadata::new("c", CallType::WebCall), start())
        .with_analysis_plan(plan);
    for record in events(&CONVERSATION[1..2]) {
        reporter.on_event(&record);
    }
    reporter
        .finish(&PostCallAnalyzer::new(Arc::new(llm.clone())))
        .await;
    let requests = llm.requests.lock().expect("lock");
    assert_eq!(
        requests[0].messages[0].content,
        "Summarize in one line (user_hangup): user: I want to cancel my appointment on Friday."
    );
}
