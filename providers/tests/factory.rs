//! Providers by the assistant's `provider` strings, with keys from the environment and
//! offline stand-ins (each announced) for hosted providers that have none.

use std::collections::HashMap;

use voxline_engine::config::Assistant;
use voxline_providers::factory::{build_providers, FactoryError, Standins};

fn assistant() -> Assistant {
    Assistant::from_json(
        r#"{
        "stt_config": {"provider": "deepgram", "model": "nova-3", "language": "en"},
        "llm_config": {"provider": "openai", "model": "gpt-4.1"},
        "tts_config": {"provider": "elevenlabs", "voice_id": "v1", "model": "eleven_flash_v2_5"}
    }"#,
    )
    .unwrap()
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn hosted_providers_with_keys_are_used() {
    let e = env(&[
        ("DEEPGRAM_API_KEY", "d"),
        ("OPENAI_API_KEY", "o"),
        ("ELEVENLABS_API_KEY", "e"),
    ]);
    let built = build_providers(&assistant(), &e, &Standins::default()).unwrap();
    assert!(built.notices.is_empty(), "{:?}", built.notices);
    assert_eq!(built.set.stt.as_ref().unwrap().name(), "deepgram");
    assert_eq!(built.set.llm.as_ref().unwrap().name(), "openai");
    assert_eq!(built.set.tts.as_ref().unwrap().name(), "elevenlabs");
    let debug = format!("{built:?}");
    assert!(!debug.contains("\"o\""), "no key in Debug: {debug}");
}

#[test]
fn no_keys_means_offline_stand_ins_each_announced() {
    let built = build_providers(&assistant(), &env(&[]), &Standins::default()).unwrap();
    assert_eq!(built.notices.len(), 3, "{:?}", built.notices);
    assert!(built.notices.iter().any(|n| n.contains("DEEPGRAM_API_KEY")));
    assert!(built.notices.iter().any(|n| n.contains("OPENAI_API_KEY")));
    assert!(built
        .notices
        .iter()
        .any(|n| n.contains("ELEVENLABS_API_KEY")));
    assert_eq!(built.set.stt.as_ref().unwrap().name(), "pocketsphinx");
    assert_eq!(built.set.tts.as_ref().unwrap().name(), "espeak");
    assert_eq!(built.set.llm.as_ref().unwrap().name(), "scripted");
}

#[test]
fn a_local_openai_compatible_server_answers_when_its_url_is_set() {
    let e = env(&[("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")]);
    let built = build_providers(&assistant(), &e, &Standins::default()).unwrap();
    assert!(
        built
            .notices
            .iter()
            .any(|n| n.contains("http://127.0.0.1:8080/v1")),
        "{:?}",
        built.notices
    );
    assert_eq!(built.set.llm.as_ref().unwrap().name(), "openai-compatible");
}

#[test]
fn unknown_pairings_name_the_field() {
    let a = Assistant::from_json(
        r#"{
        "stt_config": {"provider": "gladia", "model": "solaria-1", "language": "en"},
        "llm_config": {"provider": "openai", "model": "gpt-4.1"},
        "tts_config": {"provider": "elevenlabs", "voice_id": "v1"}
    }"#,
    )
    .unwrap();
    let err = build_providers(&a, &env(&[]), &Standins::default()).unwrap_err();
    assert!(
        matches!(
            err,
            FactoryError::Unsupported {
                stage: "stt_config",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("stt_config.provider"), "{err}");
}
