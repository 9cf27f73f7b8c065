//! Every webhook, reply and control example of the platform spec parses into the typed wire structs and
//! serializes back unchanged (same value; same text and key order in pretty form).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use voxline_engine::platform::{
    AssistantRequestResponse, AssistantSelection, CallControlResponse, CallStatus, CallType,
    ControlCommand, EndReason, Pipeline, Role, ToolCallKind, ToolCallsResponse, ToolOutcome,
    WebhookBody, WebhookEvent, WebhookEventKind,
};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/platform-webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Parses `name` as `T`, then checks that serializing gives back the same value and the same pretty text.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let text = fixture(name);
    let parsed: T =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    let original: Value = serde_json::from_str(&text).expect("fixture is JSON");
    assert_eq!(
        serde_json::to_value(&parsed).expect("serializes"),
        original,
        "{name}: value changed"
    );
    assert_eq!(
        serde_json::to_string_pretty(&parsed).expect("serializes"),
        text.trim_end(),
        "{name}: text or key order changed"
    );
    parsed
}

fn webhook(name: &str, kind: WebhookEventKind) -> WebhookEvent {
    let body: WebhookBody = round_trip(name);
    assert_eq!(body.message.kind(), kind, "{name}");
    assert_eq!(body.event_name(), kind.as_str());
    body.message
}

#[test]
fn assistant_request() {
    let event = webhook("assistant-request.json", WebhookEventKind::AssistantRequest);
    let call = &event.envelope().call;
    assert_eq!(call.status, CallStatus::Ringing);
    assert_eq!(call.pipeline, Some(Pipeline::Standard));
    assert_eq!(event.envelope().phone_number.id, None);
    assert_eq!(event.envelope().assistant, None);
}

#[test]
fn assistant_request_compact_form_with_number_id() {
    let event = webhook(
        "assistant-request-compact.json",
        WebhookEventKind::AssistantRequest,
    );
    assert_eq!(
        event.envelope().phone_number.id,
        Some(Some("8d2f6c1e-3b7a-4f0e-9a51-2c6d8e4b7f10".to_owned()))
    );
}

#[test]
fn tool_calls() {
    let WebhookEvent::ToolCalls(calls) = webhook("tool-calls.json", WebhookEventKind::ToolCalls)
    else {
        panic!("not tool-calls");
    };
    assert_eq!(calls.envelope.call.status, CallStatus::InProgress);
    assert_eq!(calls.tool_call_list.len(), 1);
    let call = &calls.tool_call_list[0];
    assert_eq!(call.id, "tool_abc123def456");
    assert_eq!(call.kind, ToolCallKind::Function);
    assert_eq!(call.function.name, "lookup_contact");
    assert_eq!(call.function.arguments["query"], "John Smith");
    assert_eq!(
        calls.envelope.metadata().expect("metadata")["campaign_id"],
        "summer-2025"
    );
}

#[test]
fn status_updates() {
    let WebhookEvent::StatusUpdate(failed) = webhook(
        "status-update-ended-with-error.json",
        WebhookEventKind::StatusUpdate,
    ) else {
        panic!("not status-update");
    };
    assert_eq!(failed.envelope.call.status, CallStatus::EndedWithError);
    assert_eq!(failed.error.as_deref(), Some("STT connection failed"));
    assert_eq!(failed.end_reason, None);

    let live = webhook(
        "status-update-in-progress.json",
        WebhookEventKind::StatusUpdate,
    );
    assert_eq!(live.envelope().call.status, CallStatus::InProgress);

    let WebhookEvent::StatusUpdate(ended) =
        webhook("status-update-ended.json", WebhookEventKind::StatusUpdate)
    else {
        panic!("not status-update");
    };
    assert_eq!(ended.end_reason, Some(EndReason::UserHangup));
    assert_eq!(ended.envelope.call.status, CallStatus::Ended);
}

#[test]
fn web_call_has_null_phone_fields() {
    let event = webhook(
        "status-update-web-call.json",
        WebhookEventKind::StatusUpdate,
    );
    let envelope = event.envelope();
    assert_eq!(envelope.call.call_type, CallType::WebCall);
    assert_eq!(envelope.phone_number.id, Some(None));
    assert_eq!(envelope.phone_number.number, None);
    assert_eq!(envelope.customer.number, None);
}

#[test]
fn end_of_call_report_voicemail_and_all_fields() {
    let WebhookEvent::EndOfCallReport(voicemail) = webhook(
        "end-of-call-report-voicemail.json",
        WebhookEventKind::EndOfCallReport,
    ) else {
        panic!("not end-of-call-report");
    };
    assert_eq!(
        voicemail.envelope.call.call_type,
        CallType::OutboundPhoneCall
    );
    assert_eq!(voicemail.messages[0].role, Role::User);
    assert_eq!(voicemail.analysis, None);
    assert_eq!(voicemail.envelope.assistant, None);

    let WebhookEvent::EndOfCallReport(full) = webhook(
        "end-of-call-report-all-fields.json",
        WebhookEventKind::EndOfCallReport,
    ) else {
        panic!("not end-of-call-report");
    };
    assert_eq!(full.end_reason, Some(EndReason::MaxDuration));
    assert_eq!(full.messages[0].role, Role::System);
    let (started, ended) = (
        full.started_at.expect("started_at"),
        full.ended_at.expect("ended_at"),
    );
    assert_eq!(
        ended.duration_since(started).map(|d| d.as_secs()),
        Some(full.duration_seconds)
    );
}

#[test]
fn abridged_report_without_messages_gains_an_empty_transcript() {
    // The spec's abridged example leaves out `messages`, which the platform always sends; the engine
    // accepts its absence and writes the field back as an empty list.
    let text = fixture("end-of-call-report-abridged.json");
    let body = WebhookBody::from_slice(text.as_bytes()).expect("parses");
    let WebhookEvent::EndOfCallReport(report) = &body.message else {
        panic!("not end-of-call-report");
    };
    assert!(report.messages.is_empty());
    assert_eq!(
        report.analysis.as_ref().expect("analysis")["primary_topic"],
        "Schedule appointment"
    );
    let mut expected: Value = serde_json::from_str(&text).expect("JSON");
    expected["message"]["messages"] = json!([]);
    assert_eq!(serde_json::to_value(&body).expect("serializes"), expected);
}

#[test]
fn tool_call_responses_in_all_four_shapes() {
    let results: ToolCallsResponse = round_trip("tool-calls-response-results.json");
    assert!(matches!(results, ToolCallsResponse::Results(ref r) if r.len() == 1));
    assert_eq!(
        results.outcome_for("tool_abc123def456"),
        Some(ToolOutcome::Result(
            json!({"name": "John Smith", "phone": "+31612345678"})
        ))
    );
    assert_eq!(results.outcome_for("tool_other"), None);

    let failed: ToolCallsResponse = round_trip("tool-calls-response-results-error.json");
    assert_eq!(
        failed.outcome_for("tool_abc123def456"),
        Some(ToolOutcome::Error("Contact not found".into()))
    );

    let simple: ToolCallsResponse = round_trip("tool-calls-response-simple.json");
    assert_eq!(
        simple,
        ToolCallsResponse::Single(json!("John Smith is a premium customer."))
    );
    assert_eq!(
        simple.outcome_for("any"),
        Some(ToolOutcome::Result(json!(
            "John Smith is a premium customer."
        )))
    );

    let direct: ToolCallsResponse = round_trip("tool-calls-response-direct.json");
    assert!(matches!(direct, ToolCallsResponse::Direct(ref v) if v["tier"] == "premium"));

    let error: ToolCallsResponse = round_trip("tool-calls-response-error.json");
    assert_eq!(error, ToolCallsResponse::Error("Contact not found".into()));
}

#[test]
fn tool_call_response_edge_cases() {
    // The camelCase id key of older references is accepted and written back in snake_case.
    let camel = ToolCallsResponse::from_slice(br#"{"results":[{"toolCallId":"t1","result":42}]}"#)
        .expect("parses");
    assert_eq!(
        serde_json::to_value(&camel).expect("serializes"),
        json!({"results": [{"tool_call_id": "t1", "result": 42}]})
    );
    // A null result is still a result.
    let null =
        ToolCallsResponse::from_slice(br#"{"results":[{"tool_call_id":"t1","result":null}]}"#)
            .expect("parses");
    assert_eq!(
        null.outcome_for("t1"),
        Some(ToolOutcome::Result(Value::Null))
    );
    // Non-object bodies are direct results.
    let text = ToolCallsResponse::from_slice(br#""done""#).expect("parses");
    assert_eq!(text, ToolCallsResponse::Direct(json!("done")));
    // An entry without an outcome is an error that says where.
    let err = ToolCallsResponse::from_slice(br#"{"results":[{"tool_call_id":"t1"}]}"#)
        .expect_err("no outcome");
    assert!(err.to_string().contains("results"), "{err}");
    let err = ToolCallsResponse::from_slice(b"{not json").expect_err("not JSON");
    assert!(
        err.to_string().contains("invalid platform webhook JSON"),
        "{err}"
    );
}

#[test]
fn assistant_request_responses() {
    let default: AssistantRequestResponse = round_trip("assistant-request-response-default.json");
    assert_eq!(
        default.selection(),
        AssistantSelection::Saved {
            assistant_id: None,
            overrides: None
        }
    );
    let transient: AssistantRequestResponse =
        round_trip("assistant-request-response-transient.json");
    assert!(matches!(
        transient.selection(),
        AssistantSelection::Transient { assistant } if assistant.contains_key("metadata")
    ));
    let hybrid: AssistantRequestResponse = round_trip("assistant-request-response-hybrid.json");
    assert!(matches!(
        hybrid.selection(),
        AssistantSelection::Saved {
            assistant_id: Some(_),
            overrides: Some(_)
        }
    ));
    let reject: AssistantRequestResponse = round_trip("assistant-request-response-reject.json");
    assert!(matches!(
        reject.selection(),
        AssistantSelection::Reject { message } if message.starts_with("Sorry, we are closed")
    ));
    let capped: AssistantRequestResponse =
        round_trip("assistant-request-response-max-duration.json");
    assert_eq!(capped.max_duration_seconds, Some(300));
}

#[test]
fn control_examples() {
    let inject: ControlCommand = round_trip("control-inject-context.json");
    assert!(matches!(
        inject,
        ControlCommand::InjectContext {
            trigger_response: false,
            ..
        }
    ));
    let say: ControlCommand = round_trip("control-say.json");
    assert!(matches!(
        say,
        ControlCommand::Say {
            end_after: false,
            ..
        }
    ));
    let end: ControlCommand = round_trip("control-end-call.json");
    assert_eq!(
        end,
        ControlCommand::EndCall {
            message: Some("Thank you for calling, goodbye!".into())
        }
    );
    let to_number: ControlCommand = round_trip("control-transfer-number.json");
    assert!(
        matches!(to_number, ControlCommand::Transfer { ref destination, .. } if destination == "+31201234567")
    );
    let to_sip: ControlCommand = round_trip("control-transfer-sip.json");
    assert!(to_sip.ends_call());
    let response: CallControlResponse = round_trip("control-response.json");
    assert_eq!(response, CallControlResponse::sent());
}

#[test]
fn camel_case_input_is_written_back_in_snake_case() {
    let camel = json!({"message": {
        "type": "end-of-call-report",
        "timestamp": "2025-12-13T12:05:30.000Z",
        "call": {"id": "c1", "type": "inboundPhoneCall", "status": "ended"},
        "phoneNumber": {"number": "+31850835037", "name": "Demo"},
        "customer": {"number": "+31612345678"},
        "durationSeconds": 12,
        "summary": "Short call.",
        "messages": [],
        "recordingUrl": "https://example.com/r.ogg",
        "endReason": "user_hangup",
        "startedAt": "2025-12-13T12:05:18.000Z",
        "endedAt": "2025-12-13T12:05:30.000Z"
    }});
    let body: WebhookBody = serde_json::from_value(camel).expect("camel aliases accepted");
    assert_eq!(
        serde_json::to_value(&body).expect("serializes"),
        json!({"message": {
            "type": "end-of-call-report",
            "timestamp": "2025-12-13T12:05:30.000Z",
            "call": {"id": "c1", "type": "inbound_phone_call", "status": "ended"},
            "phone_number": {"number": "+31850835037", "name": "Demo"},
            "customer": {"number": "+31612345678"},
            "duration_seconds": 12,
            "summary": "Short call.",
            "messages": [],
            "recording_url": "https://example.com/r.ogg",
            "end_reason": "user_hangup",
            "started_at": "2025-12-13T12:05:18.000Z",
            "ended_at": "2025-12-13T12:05:30.000Z"
        }})
    );

    let tool_calls = json!({"message": {
        "type": "tool-calls",
        "timestamp": "2025-12-13T12:01:15.000Z",
        "call": {"id": "c1", "type": "webCall", "status": "in-progress"},
        "phone_number": {"id": null, "number": null, "name": null},
        "customer": {"number": null},
        "toolCallList": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": {}}}]
    }});
    let body: WebhookBody = serde_json::from_value(tool_calls).expect("camel aliases accepted");
    let out = serde_json::to_value(&body).expect("serializes");
    assert_eq!(out["message"]["tool_call_list"][0]["id"], "t1");
    assert_eq!(out["message"]["call"]["type"], "web_call");
}

#[test]
fn unknown_values_survive_and_unknown_events_are_rejected() {
    let future = json!({"message": {
        "type": "status-update",
        "timestamp": "2025-12-13T12:05:00.000Z",
        "call": {"id": "c1", "type": "outbound_phone_call", "status": "voicemail-detected", "pipeline": "hybrid"},
        "phone_number": {"number": "+31850835037", "name": "Demo"},
        "customer": {"number": "+31612345678"},
        "end_reason": "silence_timeout",
        "some_future_field": true
    }});
    let body: WebhookBody = serde_json::from_value(future.clone()).expect("tolerant of new values");
    let call = &body.message.envelope().call;
    assert_eq!(call.status, CallStatus::Other("voicemail-detected".into()));
    assert_eq!(call.pipeline, Some(Pipeline::Other("hybrid".into())));
    let mut expected = future;
    if let Some(message) = expected["message"].as_object_mut() {
        message.remove("some_future_field");
    }
    assert_eq!(serde_json::to_value(&body).expect("serializes"), expected);

    let err = WebhookBody::from_slice(
        br#"{"message":{"type":"call-started","timestamp":"2025-12-13T12:00:00.000Z"}}"#,
    )
    .expect_err("unknown event");
    assert!(err.to_string().contains("call-started"), "{err}");
}

#[test]
fn missing_or_invalid_fields_are_named() {
    let mut report: Value =
        serde_json::from_str(&fixture("end-of-call-report-voicemail.json")).expect("JSON");
    if let Some(message) = report["message"].as_object_mut() {
        message.remove("duration_seconds");
    }
    let err = serde_json::from_value::<WebhookBody>(report).expect_err("missing duration");
    assert!(err.to_string().contains("duration_seconds"), "{err}");

    let mut bad_time: Value = serde_json::from_str(&fixture("tool-calls.json")).expect("JSON");
    bad_time["message"]["timestamp"] = json!("13/12/2025 12:00");
    let err = serde_json::from_value::<WebhookBody>(bad_time).expect_err("bad timestamp");
    assert!(err.to_string().contains("13/12/2025 12:00"), "{err}");
}
