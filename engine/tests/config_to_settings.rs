//! From the platform's assistant JSON to the settings a call runs with.

use std::time::Duration;

use voxline_engine::call::{CallSettings, Direction, ToolKind};
use voxline_engine::config::{Assistant, CallDirection};

fn fixture(name: &str) -> Assistant {
    let path = format!(
        "{}/tests/fixtures/platform/assistant/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    Assistant::from_json(&text).unwrap()
}

#[test]
fn camel_case_assistant_becomes_call_settings() {
    let a = fixture("s1_flireo_camel_variant.json");
    let s = CallSettings::from_assistant(&a, CallDirection::Inbound);
    assert_eq!(s.direction, Direction::Inbound);
    assert_eq!(
        s.first_message.as_deref(),
        Some("Hello, how can I help you?")
    );
    assert_eq!(s.max_duration, Some(Duration::from_secs(300)));
    assert!(s.silence.is_some(), "autonomous silence handling on");
    assert!(!s.realtime);
    let sms = s.tool("send_sms").expect("function tool");
    assert!(
        matches!(&sms.kind, ToolKind::Function { is_async: true, message: Some(m), .. } if m.contains("text you"))
    );
    assert!(matches!(
        s.tool("end_call").map(|t| &t.kind),
        Some(ToolKind::EndCall)
    ));
    match s.tool("transfer_call").map(|t| &t.kind) {
        Some(ToolKind::Transfer { destinations }) => {
            assert_eq!(destinations[0].number, "+31850835037")
        }
        other => panic!("transfer tool missing: {other:?}"),
    }
    // Defaults of speech_config.turn_taking apply.
    assert_eq!(s.turn.endpointing_min_delay, Duration::from_millis(400));
    assert_eq!(s.turn.endpointing_max_delay, Duration::from_secs(2));
}

#[test]
fn realtime_and_voicemail_assistants() {
    let rt =
        CallSettings::from_assistant(&fixture("s9.1_realtime_xai.json"), CallDirection::Inbound);
    assert!(rt.realtime);
    let vm = fixture("s9.3_voicemail_detection.json");
    assert!(CallSettings::from_assistant(&vm, CallDirection::Outbound)
        .voicemail
        .is_some());
    assert!(
        CallSettings::from_assistant(&vm, CallDirection::Inbound)
            .voicemail
            .is_none(),
        "voicemail detection is outbound only"
    );
    let consent = fixture("s9.6_recording_consent.json");
    assert!(
        CallSettings::from_assistant(&consent, CallDirection::Inbound)
            .recording_consent
            .is_some()
    );
}
