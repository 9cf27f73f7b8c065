//! The host's answer to an `assistant-request` webhook, and the assistant it selects (spec §3).
//!
//! Four modes: `{}` keeps the number's assistant, `{"assistant": …}` gives a transient config,
//! `{"assistant_id": …, "assistant_override": …}` shallow-merges onto a saved assistant, and
//! `{"error": "…"}` rejects the call with a sentence spoken to the caller.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::assistant::{canonical_assistant_key, Assistant, ASSISTANT_FIELDS};
use super::error::ConfigError;
use super::llm::{LlmKind, LlmProvider};

/// Body of the `assistant-request` webhook response (schema AssistantRequestResponse).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantRequestResponse {
    /// Transient mode: the whole assistant for this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<Value>,
    /// Hybrid mode: the saved assistant to start from (`agent_id` is the deprecated alias).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "assistantId",
        alias = "agent_id",
        alias = "agentId"
    )]
    pub assistant_id: Option<String>,
    /// Hybrid mode: top-level keys that replace the saved assistant's blocks.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "assistantOverride"
    )]
    pub assistant_override: Option<Value>,
    /// Reject mode: spoken to the caller, then the call ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Duration cap given next to the assistant (shown at top level in the docs); wins over the
    /// assistant's own `max_duration_seconds` (spec §3, §13 item 15).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "maxDurationSeconds"
    )]
    pub max_duration_seconds: Option<i64>,
}

/// Which of the documented modes a response uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseMode {
    /// `{}`: the number's saved assistant.
    Default,
    /// `{"assistant": …}`: a config for this call only.
    Transient,
    /// `{"assistant_id": …, "assistant_override": …}`: saved assistant plus shallow override.
    Hybrid,
    /// `{"error": …}`: the call is rejected.
    Reject,
}

/// The outcome of an assistant-request: run a call with an assistant, or reject it.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Answer the call with this assistant.
    Assistant(Box<ResolvedAssistant>),
    /// Speak `message` to the caller (when not empty), then hang up.
    Reject {
        /// The host's `error` string.
        message: String,
    },
}

/// The assistant a call runs with, plus what later webhooks must echo.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedAssistant {
    /// The validated assistant.
    pub assistant: Assistant,
    /// The mode that produced it.
    pub mode: ResponseMode,
    /// Custom `metadata`, echoed in `message.assistant.metadata` of every later webhook.
    pub metadata: Map<String, Value>,
    /// The resolved config as later webhooks carry it in `message.assistant`: the assistant in
    /// canonical form plus any extra top-level keys the host returned (spec §3 metadata echo).
    pub webhook_object: Value,
}

impl AssistantRequestResponse {
    /// Parses a response body. An empty body counts as `{}` (keep the number's assistant).
    pub fn from_json(body: &str) -> Result<Self, ConfigError> {
        if body.trim().is_empty() {
            return Ok(Self::default());
        }
        let value: Value = serde_json::from_str(body).map_err(|e| ConfigError::from_syntax(&e))?;
        Self::from_value(&value)
    }

    /// Reads a response from a JSON value and checks its shape.
    pub fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let response: Self =
            serde_path_to_error::deserialize(value).map_err(ConfigError::from_serde)?;
        response.check_shape()?;
        Ok(response)
    }

    /// The mode: reject wins over everything, then transient, then hybrid, else default.
    pub fn mode(&self) -> ResponseMode {
        if self.error.is_some() {
            ResponseMode::Reject
        } else if self.assistant.is_some() {
            ResponseMode::Transient
        } else if self.assistant_id.is_some() || self.assistant_override.is_some() {
            ResponseMode::Hybrid
        } else {
            ResponseMode::Default
        }
    }

    fn check_shape(&self) -> Result<(), ConfigError> {
        if self.mode() == ResponseMode::Reject {
            return Ok(());
        }
        if let Some(a) = &self.assistant {
            if !a.is_object() {
                return Err(ConfigError::invalid("assistant", "must be a JSON object"));
            }
            if self.assistant_override.is_some() || self.assistant_id.is_some() {
                return Err(ConfigError::invalid(
                    "assistant",
                    "a transient assistant cannot be combined with assistant_id or \
                     assistant_override",
                ));
            }
        }
        if let Some(o) = &self.assistant_override {
            if !o.is_object() {
                return Err(ConfigError::invalid(
                    "assistant_override",
                    "must be a JSON object",
                ));
            }
        }
        if let Some(seconds) = self.max_duration_seconds {
            if seconds < 1 {
                return Err(ConfigError::invalid(
                    "max_duration_seconds",
                    format!("{seconds} is not a positive number of seconds"),
                ));
            }
        }
        Ok(())
    }

    /// Builds the call's assistant.
    ///
    /// `number_assistant` is the assistant linked to the called number; `lookup` finds a saved
    /// assistant by id. The response's blocks are laid over a base per top-level key (spec §3
    /// shallow merge): hybrid mode over the saved assistant `assistant_id` names (or the number's
    /// when no id is given), transient mode over the number's assistant when there is one, so a
    /// partial transient config works ("full or partial config", spec §3). A full transient
    /// config replaces every block it contains; without a number assistant it must be complete.
    ///
    /// When the response switches `llm_config` to a realtime provider and leaves `tts_config`
    /// out, the base's `tts_config` is dropped: a realtime assistant has none (spec §8.5).
    pub fn resolve<F>(
        &self,
        number_assistant: Option<&Value>,
        lookup: F,
    ) -> Result<Resolution, ConfigError>
    where
        F: Fn(&str) -> Option<Value>,
    {
        let mode = self.mode();
        let (base, patch): (Option<Value>, Option<(&Value, &'static str)>) = match mode {
            ResponseMode::Reject => {
                return Ok(Resolution::Reject {
                    message: self.error.clone().unwrap_or_default(),
                })
            }
            ResponseMode::Default => {
                let base = number_assistant.cloned().ok_or_else(|| {
                    ConfigError::invalid(
                        "",
                        "the response keeps the number's assistant, but the number has none",
                    )
                })?;
                (Some(base), None)
            }
            ResponseMode::Transient => (
                number_assistant.cloned(),
                self.assistant.as_ref().map(|a| (a, "assistant")),
            ),
            ResponseMode::Hybrid => {
                let base = match &self.assistant_id {
                    Some(id) => lookup(id).ok_or_else(|| {
                        ConfigError::invalid(
                            "assistant_id",
                            format!("no saved assistant with id \"{id}\""),
                        )
                    })?,
                    None => number_assistant.cloned().ok_or_else(|| {
                        ConfigError::invalid(
                            "assistant_override",
                            "needs assistant_id, or an assistant linked to the number",
                        )
                    })?,
                };
                (
                    Some(base),
                    self.assistant_override
                        .as_ref()
                        .map(|o| (o, "assistant_override")),
                )
            }
        };

        let mut layers = Layers::default();
        if let Some(base) = &base {
            let path = if mode == ResponseMode::Hybrid && self.assistant_id.is_some() {
                "assistant_id"
            } else {
                ""
            };
            layers.lay(object(base, path)?, "");
        }
        if let Some((patch, origin)) = patch {
            layers.lay(object(patch, origin)?, origin);
            layers.drop_base_tts_for_realtime();
        }
        if let Some(seconds) = self.max_duration_seconds {
            layers.set("max_duration_seconds", Value::from(seconds), "");
        }

        let map = layers.to_map();
        let value = Value::Object(map.clone());
        let assistant = Assistant::from_value(&value).map_err(|err| {
            let origin = layers.origin_of(err.path(), default_origin(mode));
            err.within(origin)
        })?;
        let webhook_object = webhook_object(&assistant, &map);
        Ok(Resolution::Assistant(Box::new(ResolvedAssistant {
            metadata: assistant.metadata(),
            assistant,
            mode,
            webhook_object,
        })))
    }
}

/// Top-level keys of the assistant being assembled, each with the response field it came from
/// (`""` for the saved assistant), so errors point at what the host actually sent.
#[derive(Default)]
struct Layers {
    entries: Vec<(String, Value, &'static str)>,
}

impl Layers {
    /// Sets one key, replacing any earlier value.
    fn set(&mut self, key: &str, value: Value, origin: &'static str) {
        match self.entries.iter_mut().find(|(k, _, _)| k == key) {
            Some(slot) => *slot = (key.to_owned(), value, origin),
            None => self.entries.push((key.to_owned(), value, origin)),
        }
    }

    /// Lays every key of `map` over what is there (shallow merge).
    fn lay(&mut self, map: &Map<String, Value>, origin: &'static str) {
        for (key, value) in canonical_keys(map) {
            self.set(&key, value, origin);
        }
    }

    fn get(&self, key: &str) -> Option<(&Value, &'static str)> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, o)| (v, *o))
    }

    /// Removes a `tts_config` inherited from the base when the response made the model realtime.
    fn drop_base_tts_for_realtime(&mut self) {
        let realtime_from_response = self.get("llm_config").is_some_and(|(llm, origin)| {
            !origin.is_empty()
                && llm
                    .get("provider")
                    .and_then(Value::as_str)
                    .and_then(LlmProvider::from_name)
                    .is_some_and(|p| p.kind() == LlmKind::Realtime)
        });
        let tts_from_base = self
            .get("tts_config")
            .is_some_and(|(_, origin)| origin.is_empty());
        if realtime_from_response && tts_from_base {
            self.entries.retain(|(k, _, _)| k != "tts_config");
        }
    }

    /// The response field an error path starts in.
    fn origin_of(&self, path: &str, fallback: &'static str) -> &'static str {
        let head = path.split(['.', '[']).next().unwrap_or_default();
        self.get(head).map_or(fallback, |(_, origin)| origin)
    }

    fn to_map(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Parses an assistant-request response body and builds the call's assistant in one step.
///
/// See [`AssistantRequestResponse::resolve`] for `number_assistant` and `lookup`. When the host
/// did not answer in time (5 s), pass `"{}"`: the call keeps the number's assistant (spec §3).
pub fn resolve_assistant<F>(
    response_json: &str,
    number_assistant: Option<&Value>,
    lookup: F,
) -> Result<Resolution, ConfigError>
where
    F: Fn(&str) -> Option<Value>,
{
    AssistantRequestResponse::from_json(response_json)?.resolve(number_assistant, lookup)
}

/// Shallow merge (spec §3 hybrid mode): every top-level key of `patch` replaces the whole value
/// of that key in `base`; nested objects are not merged. camelCase keys of either side are
/// folded to snake_case first, so `ttsConfig` replaces `tts_config`.
pub fn merge_shallow(base: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    let mut out = canonical_keys(base);
    out.extend(canonical_keys(patch));
    out
}

/// Folds the known camelCase top-level keys of an assistant object to snake_case. When both
/// spellings are present, the snake_case one wins.
fn canonical_keys(map: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let canonical = canonical_assistant_key(key);
        if canonical != key.as_str() && map.contains_key(canonical.as_ref()) {
            continue;
        }
        out.insert(canonical.into_owned(), value.clone());
    }
    out
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::invalid(path, "must be a JSON object"))
}

fn default_origin(mode: ResponseMode) -> &'static str {
    match mode {
        ResponseMode::Transient => "assistant",
        _ => "",
    }
}

/// The canonical serialization of `assistant` plus the extra top-level keys of `raw`.
fn webhook_object(assistant: &Assistant, raw: &Map<String, Value>) -> Value {
    let Ok(Value::Object(mut out)) = serde_json::to_value(assistant) else {
        return Value::Object(raw.clone());
    };
    for (key, value) in raw {
        if !ASSISTANT_FIELDS.contains(&key.as_str()) {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored() -> Value {
        json!({
            "name": "Support",
            "first_message": "Hello",
            "stt_config": {"provider":"deepgram","model":"nova-3","language":"nl"},
            "llm_config": {"provider":"openai","model":"gpt-4.1"},
            "tts_config": {"provider":"elevenlabs","voice_id":"stored-voice","stability":0.5},
            "metadata": {"a": 1}
        })
    }

    fn none(_: &str) -> Option<Value> {
        None
    }

    fn resolved(r: Resolution) -> ResolvedAssistant {
        match r {
            Resolution::Assistant(a) => *a,
            Resolution::Reject { message } => panic!("unexpected reject: {message}"),
        }
    }

    #[test]
    fn modes() {
        let m = |s: &str| AssistantRequestResponse::from_json(s).unwrap().mode();
        assert_eq!(m("{}"), ResponseMode::Default);
        assert_eq!(m(""), ResponseMode::Default);
        assert_eq!(m(r#"{"assistant":{}}"#), ResponseMode::Transient);
        assert_eq!(m(r#"{"assistant_id":"x"}"#), ResponseMode::Hybrid);
        assert_eq!(
            m(r#"{"error":"closed","assistant":{}}"#),
            ResponseMode::Reject
        );
    }

    #[test]
    fn default_uses_number_assistant() {
        let s = stored();
        let r = resolved(resolve_assistant("{}", Some(&s), none).unwrap());
        assert_eq!(r.mode, ResponseMode::Default);
        assert_eq!(r.assistant.first_message.as_deref(), Some("Hello"));
        assert_eq!(r.metadata["a"], 1);
        let err = resolve_assistant("{}", None, none).unwrap_err();
        assert_eq!(err.path(), "");
    }

    #[test]
    fn hybrid_replaces_whole_blocks() {
        let s = stored();
        let lookup = |id: &str| (id == "a1").then(stored);
        let body = r#"{"assistant_id":"a1","assistant_override":{
            "ttsConfig":{"provider":"elevenlabs","voice_id":"new"},"metadata":{"b":2}}}"#;
        let r = resolved(resolve_assistant(body, Some(&s), lookup).unwrap());
        let tts = r.assistant.tts_config.unwrap();
        assert_eq!(tts.voice_id, "new");
        assert_eq!(tts.stability, None, "block replaced, not merged");
        assert_eq!(r.metadata.get("a"), None);
        assert_eq!(r.metadata["b"], 2);
        assert_eq!(r.assistant.first_message.as_deref(), Some("Hello"));
    }

    #[test]
    fn hybrid_errors_name_their_origin() {
        let s = stored();
        let lookup = |_: &str| Some(stored());
        let err = resolve_assistant(
            r#"{"assistant_id":"a1","assistant_override":{"llm_config":{"provider":"foo","model":"m"}}}"#,
            Some(&s),
            lookup,
        )
        .unwrap_err();
        assert_eq!(err.path(), "assistant_override.llm_config.provider");
        let err = resolve_assistant(r#"{"assistant_id":"nope"}"#, Some(&s), none).unwrap_err();
        assert_eq!(err.path(), "assistant_id");
    }

    #[test]
    fn partial_transient_lies_over_the_number_assistant() {
        let s = stored();
        let body = r#"{"assistant":{"first_message":"Welcome","llm_config":{"provider":"openai","model":"gpt-5.4"}}}"#;
        let r = resolved(resolve_assistant(body, Some(&s), none).unwrap());
        assert_eq!(r.mode, ResponseMode::Transient);
        assert_eq!(r.assistant.first_message.as_deref(), Some("Welcome"));
        assert_eq!(r.assistant.llm_config.model, "gpt-5.4");
        assert_eq!(r.assistant.tts_config.unwrap().voice_id, "stored-voice");
        let err = resolve_assistant(body, None, none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "assistant.stt_config: missing required field"
        );
    }

    #[test]
    fn full_transient_without_base_and_extra_keys() {
        let r = resolved(
            resolve_assistant(
                r#"{"assistant":{"llm_config":{"provider":"xai_realtime","model":"grok-voice-think-fast-2.0"},
                   "metadata":{"crm_id":"1"},"custom_flag":true},"max_duration_seconds":120}"#,
                None,
                none,
            )
            .unwrap(),
        );
        assert_eq!(r.assistant.max_duration_seconds, Some(120));
        assert_eq!(r.webhook_object["custom_flag"], true);
        assert_eq!(r.webhook_object["metadata"]["crm_id"], "1");
        assert_eq!(r.webhook_object["max_duration_seconds"], 120);
    }

    #[test]
    fn switching_to_realtime_drops_the_inherited_tts() {
        let s = stored();
        let body = r#"{"assistant_override":{"llm_config":{"provider":"xai_realtime","model":"grok-voice-think-fast-2.0"}}}"#;
        let r = resolved(resolve_assistant(body, Some(&s), none).unwrap());
        assert!(r.assistant.tts_config.is_none());
        assert_eq!(r.assistant.pipeline(), crate::config::Pipeline::Realtime);
        let body = r#"{"assistant_override":{"llm_config":{"provider":"xai_realtime","model":"grok-voice-think-fast-2.0"},
            "tts_config":{"provider":"elevenlabs","voice_id":"v"}}}"#;
        let err = resolve_assistant(body, Some(&s), none).unwrap_err();
        assert_eq!(err.path(), "assistant_override.tts_config");
    }

    #[test]
    fn reject_carries_the_message() {
        let r = resolve_assistant(r#"{"error":"Sorry, we are closed."}"#, None, none).unwrap();
        assert_eq!(
            r,
            Resolution::Reject {
                message: "Sorry, we are closed.".into()
            }
        );
    }

    #[test]
    fn shape_errors() {
        let err = AssistantRequestResponse::from_json(r#"{"assistant":"x"}"#).unwrap_err();
        assert_eq!(err.path(), "assistant");
        let err = AssistantRequestResponse::from_json(r#"{"assistant":{},"assistant_id":"a"}"#)
            .unwrap_err();
        assert_eq!(err.path(), "assistant");
        let err = AssistantRequestResponse::from_json(r#"{"max_duration_seconds":0}"#).unwrap_err();
        assert_eq!(err.path(), "max_duration_seconds");
        let err = AssistantRequestResponse::from_json("{not json").unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON at line 1"));
    }

    #[test]
    fn merge_folds_camel_keys() {
        let base = json!({"tts_config": {"a": 1}, "first_message": "x"});
        let patch = json!({"ttsConfig": {"b": 2}, "firstMessage": "y"});
        let out = merge_shallow(base.as_object().unwrap(), patch.as_object().unwrap());
        assert_eq!(
            Value::Object(out),
            json!({"tts_config": {"b": 2}, "first_message": "y"})
        );
    }
}
