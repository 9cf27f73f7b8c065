//! The OpenAI Realtime GA dialect of the Realtime family (`openai_realtime`).
//!
//! Differences from xAI handled here: the session needs `type:"realtime"` and
//! `output_modalities`, VAD and transcription live under `audio.input`, voice and speed
//! under `audio.output`; VAD also takes `create_response` and `interrupt_response`; a
//! transcription model must be named or no caller transcripts arrive; PCM is 24 kHz only.
//! There is no verbatim-speech item, so `Say` becomes a `response.create` whose
//! per-response instructions ask for exactly the text, with tools switched off for it.
//! `session.created` arrives first.

use serde_json::{json, Map, Value};
use voxline_engine::config::llm::ReasoningEffort;

use super::{millis, Dialect, SessionSpec};
use crate::net::endpoint::Service;

/// The OpenAI service as realtime sessions use it: `OPENAI_API_KEY`, `OPENAI_BASE_URL`,
/// `https://api.openai.com/v1` (sessions connect to `wss://api.openai.com/v1/realtime`).
pub const SERVICE: Service = Service {
    name: "openai_realtime",
    key_env: "OPENAI_API_KEY",
    base_url_env: "OPENAI_BASE_URL",
    default_base_url: "https://api.openai.com/v1",
};

/// The catalog's default model.
pub const DEFAULT_MODEL: &str = "gpt-realtime";

/// The transcription model used when the config names none.
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";

/// The first line of the per-response instructions of a `Say`; the text follows on the next
/// line.
pub const SAY_INSTRUCTIONS: &str =
    "Say exactly the following text, word for word, and nothing else:";

pub(crate) static DIALECT: Dialect = Dialect {
    provider: "openai_realtime",
    service: SERVICE,
    default_model: DEFAULT_MODEL,
    session,
    say,
    assistant_text: "output_text",
    reserved_tool_names: &[],
};

fn session(spec: &SessionSpec<'_>) -> Value {
    let mut s = Map::new();
    s.insert("type".into(), json!("realtime"));
    if let Some(instructions) = spec.instructions {
        s.insert("instructions".into(), json!(instructions));
    }
    s.insert("output_modalities".into(), json!(["audio"]));

    let mut vad = json!({
        "type": "server_vad",
        "threshold": spec.vad.threshold.clamp(0.0, 1.0),
        "prefix_padding_ms": millis(spec.vad.prefix_padding),
        "silence_duration_ms": millis(spec.vad.silence_duration),
        "create_response": spec.create_response,
        "interrupt_response": spec.interrupt_response,
    });
    if let Some(idle) = spec.vad.idle_timeout {
        vad["idle_timeout_ms"] = json!(millis(idle));
    }
    let mut input = json!({"format": spec.format.to_json(), "turn_detection": vad});
    if let Some(model) = spec.transcription_model {
        let mut transcription = json!({"model": model});
        if let Some(language) = spec.language_hint {
            transcription["language"] = json!(language);
        }
        if !spec.keyterms.is_empty() {
            transcription["prompt"] = json!(spec.keyterms.join(", "));
        }
        input["transcription"] = transcription;
    }
    let mut output = json!({"format": spec.format.to_json()});
    if let Some(voice) = spec.voice {
        output["voice"] = json!(voice);
    }
    output["speed"] = json!(spec.speed);
    s.insert("audio".into(), json!({"input": input, "output": output}));
    s.insert("tools".into(), Value::Array(spec.tools.clone()));
    s.insert("tool_choice".into(), json!("auto"));
    if let Some(effort) = spec.reasoning {
        let effort = match effort {
            ReasoningEffort::Disabled => "minimal",
            ReasoningEffort::High => "high",
        };
        s.insert("reasoning".into(), json!({"effort": effort}));
    }
    Value::Object(s)
}

/// The closest GA equivalent of a verbatim line: one response steered by per-response
/// instructions, without tools.
fn say(text: &str) -> Vec<Value> {
    vec![json!({
        "type": "response.create",
        "response": {
            "instructions": format!("{SAY_INSTRUCTIONS}\n{text}"),
            "tool_choice": "none",
        },
    })]
}
