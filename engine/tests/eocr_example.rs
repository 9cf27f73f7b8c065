//! The platform's end-of-call-report example parses into the typed webhook and serializes back to the
//! same JSON, value for value and byte for byte in pretty form.

use voxline_engine::platform::{
    CallStatus, CallType, EndOfCallReport, Role, Timestamp, WebhookBody, WebhookEvent,
    WebhookEventKind,
};

const EXAMPLE: &str = include_str!("fixtures/end-of-call-report.json");

fn parse() -> WebhookBody {
    WebhookBody::from_slice(EXAMPLE.as_bytes()).expect("the platform's example parses")
}

fn report(body: &WebhookBody) -> &EndOfCallReport {
    match &body.message {
        WebhookEvent::EndOfCallReport(report) => report,
        other => panic!("expected an end-of-call-report, got {}", other.event_name()),
    }
}

#[test]
fn parses_into_typed_fields() {
    let body = parse();
    assert_eq!(body.event_name(), "end-of-call-report");
    assert_eq!(body.message.kind(), WebhookEventKind::EndOfCallReport);
    let report = report(&body);
    let envelope = &report.envelope;
    assert_eq!(
        envelope.timestamp,
        Timestamp::parse("2025-12-13T12:05:30.000Z").expect("valid")
    );
    assert_eq!(envelope.call.id, "5c4d030f-43e3-4e65-899e-8148521e660f");
    assert_eq!(envelope.call.call_type, CallType::InboundPhoneCall);
    assert_eq!(envelope.call.status, CallStatus::Ended);
    assert_eq!(envelope.call.pipeline, None);
    assert_eq!(envelope.phone_number.id, None);
    assert_eq!(
        envelope.phone_number.number.as_deref(),
        Some("+31850835037")
    );
    assert_eq!(
        envelope.phone_number.name.as_deref(),
        Some("HMS Sovereign Demo")
    );
    assert_eq!(envelope.customer.number.as_deref(), Some("+31612345678"));

    let metadata = envelope.metadata().expect("metadata is echoed");
    assert_eq!(metadata["crm_id"], "12345");
    assert_eq!(metadata["customer_tier"], "premium");

    assert_eq!(report.duration_seconds, 84);
    assert!(report
        .summary
        .starts_with("Customer asked about opening hours"));
    let roles: Vec<Role> = report.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::Assistant, Role::User, Role::Assistant]);
    assert_eq!(report.messages[0].content, "Hello, how can I help you?");
    let analysis = report.analysis.as_ref().expect("analysis present");
    assert_eq!(analysis["sentiment"], 8);
    assert_eq!(analysis["question_answered"], true);
    assert!(report
        .recording_url
        .as_deref()
        .is_some_and(|url| url.ends_with("recording.ogg?token=eyJ...")));
    assert_eq!(report.end_reason, None);
    assert_eq!(report.started_at, None);
    assert_eq!(report.ended_at, None);
}

#[test]
fn reserializes_to_the_same_value() {
    let original: serde_json::Value = serde_json::from_str(EXAMPLE).expect("example is JSON");
    let back = serde_json::to_value(parse()).expect("serializes");
    assert_eq!(back, original);
}

#[test]
fn reserializes_to_the_same_text_and_key_order() {
    let pretty = serde_json::to_string_pretty(&parse()).expect("serializes");
    assert_eq!(pretty.trim_end(), EXAMPLE.trim_end());
}

#[test]
fn compact_bytes_round_trip() {
    let body = parse();
    let bytes = body.to_vec().expect("serializes");
    let compact: serde_json::Value = serde_json::from_str(EXAMPLE).expect("example is JSON");
    assert_eq!(bytes, serde_json::to_vec(&compact).expect("serializes"));
    assert_eq!(WebhookBody::from_slice(&bytes).expect("parses again"), body);
}

#[test]
fn typed_report_alone_round_trips() {
    // The event can also be handled without the `{"message": …}` wrapper.
    let original: serde_json::Value = serde_json::from_str(EXAMPLE).expect("example is JSON");
    let event: WebhookEvent =
        serde_json::from_value(original["message"].clone()).expect("message parses");
    assert_eq!(
        serde_json::to_value(&event).expect("serializes"),
        original["message"]
    );
}
