//! The example assistants in `examples/assistants/` parse and validate as the platform's
//! assistant JSON, and each shows what it is there to show.

use std::path::{Path, PathBuf};

use voxline::engine::call::settings::ToolKind;
use voxline::engine::config::{Assistant, CallDirection, Pipeline, Tool};
use voxline::CallSettings;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/assistants")
}

fn load(name: &str) -> Assistant {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Assistant::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_assistant_parses() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("examples/assistants exists")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dental_booking.json",
            "outbound_voicemail.json",
            "realtime_xai.json"
        ]
    );
    for name in &names {
        let assistant = load(name);
        assert!(
            assistant.name.as_deref().is_some_and(|n| !n.is_empty()),
            "{name}: has a name"
        );
        // The settings a call runs with can be built for every direction.
        for direction in [CallDirection::Inbound, CallDirection::Outbound] {
            let settings = CallSettings::from_assistant(&assistant, direction);
            assert!(!settings.system_prompt.is_empty(), "{name}: system prompt");
            assert!(settings.first_message.is_some(), "{name}: greeting");
        }
    }
}

#[test]
fn dental_booking_has_a_booking_tool_and_the_built_ins() {
    let assistant = load("dental_booking.json");
    assert_eq!(assistant.pipeline(), Pipeline::Standard);
    let stt = assistant.stt_config.as_ref().expect("stt_config");
    assert_eq!(
        (stt.provider.as_str(), stt.model.as_str()),
        ("deepgram", "nova-3")
    );
    assert_eq!(assistant.llm_config.provider.as_str(), "openai");
    let tts = assistant.tts_config.as_ref().expect("tts_config");
    assert_eq!(tts.provider.as_str(), "elevenlabs");

    let tools = assistant.tools();
    let booking = tools
        .iter()
        .find_map(Tool::as_function)
        .expect("a function tool");
    assert_eq!(booking.name, "book_appointment");
    assert!(booking.message.as_deref().is_some_and(|m| !m.is_empty()));
    let params = booking.parameters.as_ref().expect("parameters");
    assert_eq!(
        params["required"],
        serde_json::json!(["day", "time", "name"])
    );
    for field in ["day", "time", "name"] {
        assert_eq!(params["properties"][field]["type"], "string", "{field}");
    }
    assert!(tools.iter().any(|t| matches!(t, Tool::EndCall)));
    assert!(tools.iter().any(|t| matches!(t, Tool::TransferCall(_))));

    let prompt = assistant.llm_config.system_prompt().expect("system prompt");
    for fact in [
        "42 Harbour Street",
        "8 am to 6 pm",
        "95 dollars",
        "whitening",
    ] {
        assert!(prompt.contains(fact), "the prompt states {fact:?}");
    }
    let turn = assistant.turn_taking();
    assert_eq!(turn.interruption_min_duration.as_millis(), 300);
    let plan = assistant.analysis_plan.as_ref().expect("analysis_plan");
    assert!(plan.structured_data().is_some());

    let settings = CallSettings::from_assistant(&assistant, CallDirection::Inbound);
    let kinds: Vec<(&str, &ToolKind)> = settings
        .tools
        .iter()
        .map(|t| (t.spec.name.as_str(), &t.kind))
        .collect();
    assert!(matches!(
        kinds.as_slice(),
        [
            (
                "book_appointment",
                ToolKind::Function {
                    is_async: false,
                    message: Some(_),
                    ..
                }
            ),
            ("end_call", ToolKind::EndCall),
            ("transfer_call", ToolKind::Transfer { .. }),
        ]
    ));
    assert_eq!(
        settings.end_call_message.as_deref(),
        Some("Thanks for calling Bright Smile Dental. Goodbye!")
    );
}

#[test]
fn realtime_xai_is_speech_to_speech() {
    let assistant = load("realtime_xai.json");
    assert_eq!(assistant.pipeline(), Pipeline::Realtime);
    assert!(assistant.tts_config.is_none(), "tts_config is null");
    assert!(assistant.stt_config.is_none());
    let realtime = assistant.realtime().expect("realtime settings");
    assert_eq!(realtime.provider.as_str(), "xai_realtime");
    assert_eq!(realtime.voice.as_deref(), Some("ara"));
    assert_eq!(realtime.turn_detection.silence_duration.as_millis(), 400);
    let settings = CallSettings::from_assistant(&assistant, CallDirection::Inbound);
    assert!(settings.realtime);
    assert!(settings.tool("book_appointment").is_some());
}

#[test]
fn outbound_voicemail_detects_voicemail_on_outbound_calls_only() {
    let assistant = load("outbound_voicemail.json");
    let voicemail = assistant
        .voicemail_for(CallDirection::Outbound)
        .expect("voicemail detection on outbound calls");
    assert!(voicemail
        .message
        .as_deref()
        .is_some_and(|m| m.contains("Bright Smile Dental")));
    assert!(assistant.voicemail_for(CallDirection::Inbound).is_none());
    let outbound = assistant
        .first_message_for(CallDirection::Outbound)
        .expect("outbound greeting");
    assert!(
        outbound.contains("calling from Bright Smile Dental"),
        "{outbound}"
    );
    assert_ne!(
        Some(outbound),
        assistant.first_message_for(CallDirection::Inbound)
    );
    let settings = CallSettings::from_assistant(&assistant, CallDirection::Outbound);
    assert!(matches!(settings.voicemail, Some(Some(_))));
    assert!(settings.silence.is_some(), "autonomous silence handling");
    assert_eq!(assistant.metadata()["campaign"], "reminders-next-day");
}
