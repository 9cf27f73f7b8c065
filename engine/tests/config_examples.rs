//! The platform's documentation examples (under `tests/fixtures/platform/`) parse, round-trip to
//! snake_case, accept camelCase, and bad configs fail with errors that name the field.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};
use voxline_engine::config::analysis::AnalysisPlan;
use voxline_engine::config::{
    resolve_assistant, Assistant, AssistantRequestResponse, CallDirection, ConfigSection,
    LlmConfig, Pipeline, RecordingConsent, Resolution, ResolvedAssistant, ResponseMode,
    SpeechConfig, SttConfig, Tool, TtsConfig, WebhookEvent,
};

fn fixtures(kind: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/platform")
        .join(kind);
    let mut files: Vec<(PathBuf, String)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = fs::read_to_string(&p).expect("readable fixture");
            (p, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn fixture(kind: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/platform")
        .join(kind)
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Keys under which the JSON is user content (schemas, free metadata), not schema fields.
const OPAQUE_KEYS: &[&str] = &["metadata", "parameters", "schema"];

fn snake_violations(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k.chars().any(|c| c.is_ascii_uppercase()) {
                    out.push(format!("{path}.{k}"));
                }
                if !OPAQUE_KEYS.contains(&k.as_str()) {
                    snake_violations(v, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                snake_violations(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn camel(key: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Rewrites every schema key to camelCase (user content left alone).
fn camelize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if OPAQUE_KEYS.contains(&k.as_str()) {
                        v.clone()
                    } else {
                        camelize(v)
                    };
                    (camel(k), v)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camelize).collect()),
        other => other.clone(),
    }
}

/// Every fixture of `kind` parses as `T`, serializes to snake_case keys, re-parses to the same
/// value, and its camelCase rewrite parses to the same value too. Returns how many were checked.
fn check_kind<T: ConfigSection + PartialEq + std::fmt::Debug>(kind: &str) -> usize {
    let files = fixtures(kind);
    for (path, text) in &files {
        let name = path.display();
        let parsed = T::from_json(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = serde_json::to_value(&parsed).expect("serializable");
        let mut bad = Vec::new();
        snake_violations(&out, "", &mut bad);
        assert!(bad.is_empty(), "{name}: camelCase keys in output: {bad:?}");
        let again = T::from_value(&out).unwrap_or_else(|e| panic!("{name} round trip: {e}"));
        assert_eq!(again, parsed, "{name}: round trip changed the value");
        let input: Value = serde_json::from_str(text).expect("fixture is JSON");
        let camel_input = camelize(&input);
        let from_camel =
            T::from_value(&camel_input).unwrap_or_else(|e| panic!("{name} camelCase: {e}"));
        assert_eq!(from_camel, parsed, "{name}: camelCase parsed differently");
    }
    files.len()
}

#[test]
fn assistant_examples_parse_round_trip_and_accept_camel_case() {
    assert_eq!(check_kind::<Assistant>("assistant"), 10);
}

#[test]
fn llm_config_examples() {
    assert_eq!(check_kind::<LlmConfig>("llm_config"), 11);
}

#[test]
fn stt_config_examples() {
    assert_eq!(check_kind::<SttConfig>("stt_config"), 6);
}

#[test]
fn tts_config_examples() {
    assert_eq!(check_kind::<TtsConfig>("tts_config"), 8);
}

#[test]
fn speech_config_examples() {
    assert_eq!(check_kind::<SpeechConfig>("speech_config"), 2);
}

#[test]
fn tool_examples() {
    assert_eq!(check_kind::<Tool>("tool"), 9);
}

#[test]
fn analysis_plan_examples() {
    assert_eq!(check_kind::<AnalysisPlan>("analysis_plan"), 3);
}

#[test]
fn recording_consent_examples() {
    assert_eq!(check_kind::<RecordingConsent>("recording_consent"), 1);
}

#[test]
fn end_of_call_report_assistant_object_parses() {
    let report: Value =
        serde_json::from_str(&fixture("webhook", "end-of-call-report.json")).expect("JSON");
    let assistant = Assistant::from_value(&report["message"]["assistant"]).expect("valid");
    assert_eq!(assistant.pipeline(), Pipeline::Standard);
    assert_eq!(assistant.metadata()["crm_id"], "12345");
    assert_eq!(
        assistant.first_message_for(CallDirection::Inbound),
        Some("Hello, how can I help you?")
    );
    let plan = assistant.analysis_plan.as_ref().expect("plan");
    assert!(plan.structured_data().is_some());
    assert!(plan.should_analyze(3));
}

#[test]
fn every_fixture_is_covered_by_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/platform");
    let mut kinds: Vec<String> = fs::read_dir(&root)
        .expect("fixture root")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "analysis_plan",
            "assistant",
            "assistant_request_response",
            "llm_config",
            "recording_consent",
            "speech_config",
            "stt_config",
            "tool",
            "tts_config",
            "webhook"
        ]
    );
}

// ---------- accessors on the documented examples ----------

#[test]
fn realtime_example_is_speech_to_speech() {
    let a = Assistant::from_json(&fixture("assistant", "s9.1_realtime_xai.json")).unwrap();
    assert_eq!(a.pipeline(), Pipeline::Realtime);
    assert!(a.tts_config.is_none());
    let rt = a.realtime().expect("realtime settings");
    assert_eq!(rt.voice.as_deref(), Some("ara"));
    assert_eq!(
        rt.instructions.as_deref(),
        Some("You answer calls for a dental practice.")
    );
    assert_eq!(
        a.first_message_for(CallDirection::Outbound),
        Some("Hi, this is the practice calling.")
    );
    assert_eq!(
        a.first_message_for(CallDirection::Inbound),
        Some("Hallo, waarmee kan ik helpen?")
    );
}

#[test]
fn silence_example_schedule_and_end_call_tool() {
    let a = Assistant::from_json(&fixture(
        "assistant",
        "s9.2_autonomous_silence_handling.json",
    ))
    .unwrap();
    let plan = a.silence_handling().expect("silence handling on");
    assert_eq!(plan.check_at(0), Some(Duration::from_secs(7)));
    assert_eq!(plan.check_at(1), Some(Duration::from_secs(19)));
    assert_eq!(plan.check_at(2), Some(Duration::from_secs(31)));
    assert_eq!(plan.check_at(3), None);
    assert_eq!(plan.message_for(0), Some("Are you still there?"));
    assert_eq!(
        plan.message_for(2),
        Some("I'll end the call now. Feel free to call back.")
    );
    assert_eq!(a.tools(), vec![Tool::EndCall], "end_call auto-added (§9.2)");
    assert_eq!(a.end_call_message(), Some("Goodbye!"));
}

#[test]
fn voicemail_example_applies_to_outbound_only() {
    let a = Assistant::from_json(&fixture("assistant", "s9.3_voicemail_detection.json")).unwrap();
    assert!(a.voicemail_for(CallDirection::Inbound).is_none());
    let vm = a.voicemail_for(CallDirection::Outbound).expect("outbound");
    assert!(vm
        .message
        .as_deref()
        .is_some_and(|m| m.contains("call us back")));
    assert!(vm.is_voicemail("Please leave a message after the beep"));
}

#[test]
fn agent_example_accessors() {
    let a = Assistant::from_json(&fixture("assistant", "s8.8_agent_all_fields.json")).unwrap();
    assert_eq!(a.max_duration(), Some(Duration::from_secs(300)));
    assert!(a.sends_webhook(WebhookEvent::EndOfCallReport));
    assert!(a.recording_consent_for(CallDirection::Inbound).is_some());
    assert!(a.recording_consent_for(CallDirection::Outbound).is_none());
    let tt = a.turn_taking();
    assert_eq!(tt.endpointing_min_delay, Duration::from_millis(400));
    assert_eq!(tt.endpointing_max_delay, Duration::from_secs(2));
    assert_eq!(
        a.stt_config.as_ref().map(SttConfig::keyterms),
        Some(&["ja".to_owned(), "nee".to_owned(), "oké".to_owned()][..])
    );
}

#[test]
fn camel_variant_example_tools_normalize() {
    let a = Assistant::from_json(&fixture("assistant", "s1_flireo_camel_variant.json")).unwrap();
    let tools = a.tools();
    assert_eq!(tools.len(), 3);
    let sms = tools[0].as_function().expect("function");
    assert!(sms.is_async);
    assert_eq!(sms.message.as_deref(), Some("I'll text you right away."));
    assert_eq!(tools[1], Tool::EndCall);
    assert_eq!(tools[2].name(), "transfer_call");
    let out = serde_json::to_value(&a).unwrap();
    assert_eq!(out["llm_config"]["tools"][1], json!({"type": "end_call"}));
    assert_eq!(out["llm_config"]["tools"][2]["type"], "transfer_call");
    assert_eq!(
        out["llm_config"]["tools"][0]["message"],
        "I'll text you right away."
    );
    assert_eq!(out["analysis_plan"]["min_messages_threshold"], 3);
    assert_eq!(out["tts_config"]["voice_id"], "ukiwGs47sHyibruHJ1vg");
}

// ---------- assistant-request responses (§3) ----------

fn number_assistant() -> Value {
    serde_json::from_str(&fixture("assistant", "s8.8_agent_all_fields.json")).unwrap()
}

fn lookup(id: &str) -> Option<Value> {
    (id == "3f0c9a52-8d1e-4c5b-9a57-1b2f6e8d4c11").then(number_assistant)
}

fn resolve(name: &str) -> Resolution {
    let base = number_assistant();
    resolve_assistant(
        &fixture("assistant_request_response", name),
        Some(&base),
        lookup,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assistant_of(r: Resolution) -> ResolvedAssistant {
    match r {
        Resolution::Assistant(a) => *a,
        Resolution::Reject { message } => panic!("unexpected reject: {message}"),
    }
}

#[test]
fn every_response_example_parses() {
    let files = fixtures("assistant_request_response");
    for (path, text) in &files {
        AssistantRequestResponse::from_json(text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let camel = camelize(&serde_json::from_str::<Value>(text).unwrap());
        AssistantRequestResponse::from_value(&camel)
            .unwrap_or_else(|e| panic!("{} camelCase: {e}", path.display()));
    }
    assert_eq!(files.len(), 7);
}

#[test]
fn default_response_keeps_the_number_assistant() {
    let r = assistant_of(resolve("s3_default.json"));
    assert_eq!(r.mode, ResponseMode::Default);
    assert_eq!(r.assistant.name.as_deref(), Some("Support NL"));
    assert!(r.metadata.is_empty());
}

#[test]
fn transient_response_overrides_blocks() {
    let r = assistant_of(resolve("s3_transient.json"));
    assert_eq!(r.mode, ResponseMode::Transient);
    assert_eq!(
        r.assistant.first_message.as_deref(),
        Some("Hello Jan, welcome back!")
    );
    assert_eq!(
        r.assistant.tts_config.as_ref().unwrap().voice_id,
        "21m00Tcm4TlvDq8ikWAM"
    );
    assert_eq!(r.metadata["customer_tier"], "premium");
    assert_eq!(r.webhook_object["metadata"]["crm_id"], "12345");
    assert!(r.assistant.analysis_plan.is_some());
}

#[test]
fn hybrid_response_is_a_shallow_merge() {
    let r = assistant_of(resolve("s3_hybrid.json"));
    assert_eq!(r.mode, ResponseMode::Hybrid);
    let tts = r.assistant.tts_config.as_ref().unwrap();
    assert_eq!(tts.voice_id, "21m00Tcm4TlvDq8ikWAM");
    assert_eq!(
        tts.model, None,
        "tts_config replaced as a whole, the saved model is gone"
    );
    assert_eq!(r.assistant.first_message.as_deref(), Some("Goedemorgen!"));
    assert_eq!(
        r.assistant.name.as_deref(),
        Some("Support NL"),
        "untouched key kept"
    );
    assert_eq!(
        r.metadata,
        json!({"crm_id": "67890"}).as_object().unwrap().clone()
    );
}

#[test]
fn reject_response_is_spoken_then_hangs_up() {
    assert_eq!(
        resolve("s3_reject.json"),
        Resolution::Reject {
            message: "Sorry, we are closed. Please call back during opening hours.".into()
        }
    );
    assert_eq!(
        resolve("s3_fref_reject_next_to_assistant.json"),
        Resolution::Reject {
            message: "We are closed today.".into()
        }
    );
}

#[test]
fn top_level_duration_cap_applies() {
    let r = assistant_of(resolve("s3_duration_cap.json"));
    assert_eq!(r.mode, ResponseMode::Default);
    assert_eq!(r.assistant.max_duration(), Some(Duration::from_secs(300)));
    let r = assistant_of(resolve("s3_fref_camel_top_level.json"));
    assert_eq!(r.mode, ResponseMode::Transient);
    assert_eq!(r.assistant.max_duration_seconds, Some(300));
    assert_eq!(r.assistant.first_message.as_deref(), Some("Hello!"));
}

// ---------- bad configs ----------

fn base() -> Value {
    serde_json::from_str(&fixture("assistant", "s2.4_webhook_assistant_object.json")).unwrap()
}

fn error_of(doc: &Value) -> String {
    Assistant::from_value(doc).unwrap_err().to_string()
}

#[test]
fn unknown_provider_names_the_field_and_choices() {
    let mut doc = base();
    doc["llm_config"]["provider"] = json!("foo");
    assert_eq!(
        error_of(&doc),
        "llm_config.provider: unknown provider \"foo\" (expected one of: openai, xai, mistral, \
         google, anthropic, groq, google_realtime, xai_realtime, openai_live, openai_realtime)"
    );
    let mut doc = base();
    doc["tts_config"]["provider"] = json!("cartesia");
    assert!(error_of(&doc).starts_with("tts_config.provider: unknown provider \"cartesia\""));
    let mut doc = base();
    doc["stt_config"]["provider"] = json!("whisper");
    assert!(error_of(&doc).starts_with("stt_config.provider: unknown provider \"whisper\""));
}

#[test]
fn missing_required_fields_are_named() {
    let mut doc = base();
    doc["stt_config"].as_object_mut().unwrap().remove("model");
    assert_eq!(error_of(&doc), "stt_config.model: missing required field");
    let mut doc = base();
    doc.as_object_mut().unwrap().remove("llm_config");
    assert_eq!(error_of(&doc), "llm_config: missing required field");
    let mut doc = base();
    doc.as_object_mut().unwrap().remove("tts_config");
    assert_eq!(error_of(&doc), "tts_config: missing required field");
    let mut doc = base();
    doc["llm_config"]["tools"] = json!([{"type": "end_call"}, {"description": "no name"}]);
    assert_eq!(
        error_of(&doc),
        "llm_config.tools[1].name: missing required field"
    );
}

#[test]
fn out_of_range_values_are_rejected_or_clamped() {
    let mut doc = base();
    doc["speech_config"] = json!({"turn_taking": {"endpointing_max_delay": 90}});
    assert_eq!(
        error_of(&doc),
        "speech_config.turn_taking.endpointing_max_delay: 90 out of range 0.1..=5"
    );
    let mut doc = base();
    doc["speech_config"] = json!({"silence": {"interval_seconds": 1}});
    assert_eq!(
        error_of(&doc),
        "speech_config.silence.interval_seconds: 1 out of range 3..=120"
    );
    let mut doc = base();
    doc["llm_config"]["temperature"] = json!(-0.1);
    assert_eq!(
        error_of(&doc),
        "llm_config.temperature: -0.1 out of range 0..=2"
    );
    let mut doc = base();
    doc["tts_config"]["similarity_boost"] = json!(1.5);
    assert_eq!(
        error_of(&doc),
        "tts_config.similarity_boost: 1.5 out of range 0..=1"
    );
    // xAI realtime clamps (§8.5).
    let doc = json!({
        "llm_config": {"provider": "xai_realtime", "model": "grok-voice-think-fast-2.0",
                       "speed": 0.1, "turn_detection": {"silence_duration_ms": 5000}}
    });
    let a = Assistant::from_value(&doc).unwrap();
    let rt = a.realtime().unwrap();
    assert_eq!(rt.speed, 0.7);
    assert_eq!(rt.turn_detection.silence_duration, Duration::from_secs(2));
}

#[test]
fn wrong_types_are_named() {
    let mut doc = base();
    doc["max_duration_seconds"] = json!("300");
    assert_eq!(
        error_of(&doc),
        "max_duration_seconds: invalid type: string \"300\", expected i64"
    );
    let mut doc = base();
    doc["metadata"] = json!(["not", "an", "object"]);
    assert!(error_of(&doc).starts_with("metadata: invalid type: sequence"));
    let mut doc = base();
    doc["webhook_events"] = json!(["call-started"]);
    assert!(error_of(&doc).starts_with("webhook_events[0]: unknown webhook event \"call-started\""));
    let mut doc = base();
    doc["stt_config"]["language"] = json!("xx");
    assert!(error_of(&doc).starts_with("stt_config.language: unknown language \"xx\""));
}

#[test]
fn camel_case_input_errors_use_snake_case_paths() {
    let doc = json!({
        "sttConfig": {"provider": "deepgram", "model": "nova-3", "language": "en"},
        "llmConfig": {"provider": "openai", "model": "gpt-4.1", "maxCompletionTokens": 0},
        "ttsConfig": {"provider": "elevenlabs", "voiceId": "v"}
    });
    assert_eq!(
        error_of(&doc),
        "llm_config.max_completion_tokens: 0 out of range 1..=32768"
    );
    let doc = json!({"llmConfig": {"provider": "openai"}});
    assert_eq!(error_of(&doc), "llm_config.model: missing required field");
}

#[test]
fn realtime_assistant_with_tts_is_rejected() {
    let mut doc = base();
    doc["llm_config"] = json!({"provider": "xai_realtime", "model": "grok-voice-think-fast-2.0"});
    assert_eq!(
        error_of(&doc),
        "tts_config: must be null for a realtime llm_config (provider \"xai_realtime\")"
    );
    doc["tts_config"] = Value::Null;
    assert!(Assistant::from_value(&doc).is_ok());
}

#[test]
fn not_json_is_reported_with_position() {
    let err = Assistant::from_json("{\"llm_config\": ").unwrap_err();
    assert!(err.path().is_empty());
    assert!(
        err.to_string().starts_with("invalid JSON at line 1"),
        "{err}"
    );
}
