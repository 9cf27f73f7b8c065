//! The xAI Grok Voice Agent dialect of the Realtime family (`xai_realtime`).
//!
//! Differences from OpenAI GA handled here: `voice` and `turn_detection` sit at the top of
//! the session (no `session.type`), VAD knows only `server_vad` (no `create_response` /
//! `interrupt_response`) with a threshold of 0.1–0.9, speed and transcription hints are
//! newer optional fields sent only when set, server-side tools (`web_search`, `x_search`,
//! `file_search`) sit beside the flat function tools, and "say this verbatim" is a
//! `force_message` item the server answers with its own response lifecycle.
//! `conversation.created` arrives first and `ping`s any time; the shared session loop
//! handles both.

use serde_json::{json, Map, Value};
use voxline_engine::config::llm::{ProviderTool, ReasoningEffort};

use super::{millis, Dialect, SessionSpec};
use crate::net::endpoint::Service;

/// The xAI service as realtime sessions use it: `XAI_API_KEY`, `XAI_BASE_URL`,
/// `https://api.x.ai/v1` (sessions connect to `wss://api.x.ai/v1/realtime`).
pub const SERVICE: Service = Service {
    name: "xai_realtime",
    key_env: "XAI_API_KEY",
    base_url_env: "XAI_BASE_URL",
    default_base_url: "https://api.x.ai/v1",
};

/// The catalog's default model.
pub const DEFAULT_MODEL: &str = "grok-voice-think-fast-2.0";

/// Function names xAI reserves for its built-in tools; a client function with one of these
/// names makes the first response fail.
pub const RESERVED_TOOL_NAMES: &[&str] = &[
    "web_search",
    "browse_page",
    "x_keyword_search",
    "x_semantic_search",
    "x_user_search",
    "x_thread_fetch",
    "collections_search",
    "file_search",
];

/// The VAD threshold range xAI accepts; config values outside it are clamped.
pub const THRESHOLD_RANGE: (f64, f64) = (0.1, 0.9);

pub(crate) static DIALECT: Dialect = Dialect {
    provider: "xai_realtime",
    service: SERVICE,
    default_model: DEFAULT_MODEL,
    session,
    say,
    assistant_text: "text",
    reserved_tool_names: RESERVED_TOOL_NAMES,
};

fn session(spec: &SessionSpec<'_>) -> Value {
    let mut s = Map::new();
    if let Some(instructions) = spec.instructions {
        s.insert("instructions".into(), json!(instructions));
    }
    if let Some(voice) = spec.voice {
        s.insert("voice".into(), json!(voice));
    }
    let mut vad = json!({
        "type": "server_vad",
        "threshold": spec.vad.threshold.clamp(THRESHOLD_RANGE.0, THRESHOLD_RANGE.1),
        "silence_duration_ms": millis(spec.vad.silence_duration),
        "prefix_padding_ms": millis(spec.vad.prefix_padding),
    });
    if let Some(idle) = spec.vad.idle_timeout {
        vad["idle_timeout_ms"] = json!(millis(idle));
    }
    s.insert("turn_detection".into(), vad);

    let mut input = json!({"format": spec.format.to_json()});
    let mut transcription = Map::new();
    if let Some(model) = spec.transcription_model {
        transcription.insert("model".into(), json!(model));
    }
    if let Some(hint) = spec.language_hint {
        transcription.insert("language_hint".into(), json!(hint));
    }
    if !spec.keyterms.is_empty() {
        transcription.insert("keyterms".into(), json!(spec.keyterms));
    }
    if !transcription.is_empty() {
        input["transcription"] = Value::Object(transcription);
    }
    let mut output = json!({"format": spec.format.to_json()});
    if (spec.speed - 1.0).abs() > f64::EPSILON {
        output["speed"] = json!(spec.speed);
    }
    s.insert("audio".into(), json!({"input": input, "output": output}));

    let mut tools = spec.tools.clone();
    tools.extend(spec.provider_tools.iter().map(provider_tool));
    s.insert("tools".into(), Value::Array(tools));
    if let Some(effort) = spec.reasoning {
        let effort = match effort {
            ReasoningEffort::Disabled => "none",
            ReasoningEffort::High => "high",
        };
        s.insert("reasoning".into(), json!({"effort": effort}));
    }
    Value::Object(s)
}

fn provider_tool(tool: &ProviderTool) -> Value {
    match tool {
        ProviderTool::WebSearch => json!({"type": "web_search"}),
        ProviderTool::XSearch { allowed_x_handles } if allowed_x_handles.is_empty() => {
            json!({"type": "x_search"})
        }
        ProviderTool::XSearch { allowed_x_handles } => {
            json!({"type": "x_search", "allowed_x_handles": allowed_x_handles})
        }
        ProviderTool::FileSearch {
            vector_store_ids,
            max_num_results,
        } => {
            let mut t = json!({"type": "file_search", "vector_store_ids": vector_store_ids});
            if let Some(n) = max_num_results {
                t["max_num_results"] = json!(n);
            }
            t
        }
    }
}

/// A `force_message` item: spoken verbatim, and the server runs the response itself, so no
/// `response.create` follows.
fn say(text: &str) -> Vec<Value> {
    vec![json!({
        "type": "conversation.item.create",
        "item": {
            "type": "force_message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
        },
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::WireFormat;
    use std::time::Duration;
    use voxline_engine::config::llm::TurnDetectionSettings;

    #[test]
    fn threshold_is_clamped_and_optional_fields_stay_out() {
        let spec = SessionSpec {
            instructions: None,
            voice: None,
            vad: TurnDetectionSettings {
                threshold: 1.0,
                prefix_padding: Duration::from_millis(300),
                silence_duration: Duration::from_millis(500),
                idle_timeout: None,
            },
            create_response: true,
            interrupt_response: true,
            format: WireFormat::Pcma,
            speed: 1.0,
            tools: Vec::new(),
            provider_tools: &[ProviderTool::XSearch {
                allowed_x_handles: Vec::new(),
            }],
            reasoning: None,
            language_hint: None,
            keyterms: &[],
            transcription_model: None,
        };
        assert_eq!(
            session(&spec),
            json!({
                "turn_detection": {"type": "server_vad", "threshold": 0.9,
                                   "silence_duration_ms": 500, "prefix_padding_ms": 300},
                "audio": {"input": {"format": {"type": "audio/pcma"}},
                          "output": {"format": {"type": "audio/pcma"}}},
                "tools": [{"type": "x_search"}],
            })
        );
    }
}
