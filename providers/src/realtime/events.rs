//! Server events of the Realtime family, read into one vendor-neutral enum.
//!
//! Every field is treated as possibly absent, `null` or empty; unknown event types and
//! fields are ignored. Both vendors' names are accepted where they differ (GA and beta
//! audio/transcript deltas, `response.text.delta` and `response.output_text.delta`, the
//! three user-transcription events), so one session loop serves xAI and OpenAI.

use serde_json::Value;
use voxline_engine::provider::TokenUsage;

/// Which event family a piece of agent text came through; one item's text is taken from
/// one family only, so a server that sends the same text twice is not heard twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextFamily {
    /// `response.output_audio_transcript.delta` (GA, xAI).
    AudioTranscript,
    /// `response.audio_transcript.delta` (OpenAI beta).
    BetaAudioTranscript,
    /// `response.output_text.delta` (GA text mode; newer xAI alongside `response.text.delta`).
    OutputText,
    /// `response.text.delta` (beta and xAI text mode).
    Text,
}

/// A function call as the server stated it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CallInfo {
    /// The call id results must echo.
    pub call_id: String,
    /// The function name, when stated.
    pub name: Option<String>,
    /// The arguments JSON text.
    pub arguments: String,
    /// The item status (`completed`, `incomplete`, …), when stated.
    pub status: Option<String>,
}

/// An `error` event's payload.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ServerError {
    /// `error.type`, e.g. `invalid_request_error`.
    pub kind: Option<String>,
    /// `error.code`, e.g. `response_cancel_not_active`.
    pub code: Option<String>,
    /// The human-readable message.
    pub message: String,
}

/// How the session treats a server `error` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// A race the protocol allows (cancel with nothing active, a second response while one
    /// runs): ignored.
    Benign,
    /// One client event failed; the session goes on. Kept as the reason if the server closes
    /// the connection next.
    Recoverable,
    /// The session cannot go on (expired, credentials rejected): the session ends with it.
    Fatal,
}

impl ServerError {
    /// The documented classification (see the module docs of `realtime`).
    pub(crate) fn severity(&self) -> Severity {
        let code = self.code.as_deref().unwrap_or_default();
        let kind = self.kind.as_deref().unwrap_or_default();
        let message = self.message.to_ascii_lowercase();
        if matches!(
            code,
            "response_cancel_not_active" | "conversation_already_has_active_response"
        ) || message.contains("no active response")
            || message.contains("already has an active response")
        {
            return Severity::Benign;
        }
        if matches!(code, "session_expired" | "invalid_api_key")
            || kind == "authentication_error"
            || message.contains("session expired")
            || message.contains("maximum duration")
        {
            return Severity::Fatal;
        }
        Severity::Recoverable
    }

    /// True for the "a response is already running" race.
    pub(crate) fn is_active_response_conflict(&self) -> bool {
        self.code.as_deref() == Some("conversation_already_has_active_response")
            || self
                .message
                .to_ascii_lowercase()
                .contains("already has an active response")
    }
}

/// One server event, vendor differences folded away.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ServerEvent {
    /// `conversation.created` (xAI's first event) or `session.created`.
    Hello,
    /// `session.updated`: the session accepted its configuration.
    SessionUpdated,
    /// `ping` (xAI keep-alive).
    Ping,
    /// `input_audio_buffer.speech_started`.
    SpeechStarted,
    /// `input_audio_buffer.speech_stopped`.
    SpeechStopped,
    /// `…input_audio_transcription.delta` (OpenAI): more text for the item.
    UserDelta {
        /// The user item.
        item_id: String,
        /// The new text.
        delta: String,
    },
    /// `…input_audio_transcription.completed` (final, or partial with `status:"in_progress"`
    /// on xAI) or `.updated` (xAI, cumulative): the item's whole text so far.
    UserText {
        /// The user item.
        item_id: String,
        /// The text so far.
        text: String,
        /// True for the final transcript.
        is_final: bool,
    },
    /// `response.created`.
    ResponseCreated,
    /// `response.output_audio.delta` / `response.audio.delta`.
    AudioDelta {
        /// The item the audio belongs to (falls back to the response id).
        key: String,
        /// Base64 audio.
        audio: String,
    },
    /// Agent text: audio transcript or text-mode deltas.
    TextDelta {
        /// The item the text belongs to (falls back to the response id).
        key: String,
        /// Which event family carried it.
        family: TextFamily,
        /// The new text.
        delta: String,
    },
    /// `response.output_item.added` / `.done` for a `function_call` item: its name and id.
    CallItem {
        /// The item id.
        item_id: String,
        /// The call, as far as stated.
        call: CallInfo,
    },
    /// `response.function_call_arguments.done`.
    CallDone {
        /// The item id, when stated.
        item_id: Option<String>,
        /// The call.
        call: CallInfo,
    },
    /// `response.done`.
    ResponseDone {
        /// `response.status`.
        status: String,
        /// Usage from `response.usage` or the top level, when not empty.
        usage: Option<TokenUsage>,
        /// `function_call` items in `response.output`.
        calls: Vec<CallInfo>,
    },
    /// `error`.
    Error(ServerError),
    /// Anything else: ignored.
    Other,
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn owned(v: &Value, key: &str) -> Option<String> {
    text(v, key).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The key agent audio and text are grouped by: the item id, else the response id.
fn item_key(v: &Value) -> String {
    owned(v, "item_id")
        .or_else(|| owned(v, "response_id"))
        .unwrap_or_default()
}

fn call_info(v: &Value) -> Option<CallInfo> {
    let call_id = owned(v, "call_id")?;
    let arguments = match v.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        // A server that sends the arguments as an object rather than JSON text.
        Some(Value::Object(o)) => Value::Object(o.clone()).to_string(),
        _ => String::new(),
    };
    Some(CallInfo {
        call_id,
        name: owned(v, "name"),
        arguments,
        status: owned(v, "status"),
    })
}

/// Token counts from a usage object: GA `input_tokens`/`output_tokens` or chat-style
/// `prompt_tokens`/`completion_tokens`. `None` for a missing or empty object.
pub(crate) fn usage(v: Option<&Value>) -> Option<TokenUsage> {
    let v = v?.as_object()?;
    let count = |names: [&str; 2]| names.iter().find_map(|n| v.get(*n).and_then(Value::as_u64));
    let prompt = count(["input_tokens", "prompt_tokens"]);
    let completion = count(["output_tokens", "completion_tokens"]);
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(TokenUsage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
    })
}

impl ServerEvent {
    /// Reads one parsed server event.
    pub(crate) fn parse(v: &Value) -> ServerEvent {
        let Some(kind) = text(v, "type") else {
            return ServerEvent::Other;
        };
        let delta = || text(v, "delta").unwrap_or_default().to_string();
        match kind {
            "conversation.created" | "session.created" => ServerEvent::Hello,
            "session.updated" => ServerEvent::SessionUpdated,
            "ping" => ServerEvent::Ping,
            "input_audio_buffer.speech_started" => ServerEvent::SpeechStarted,
            "input_audio_buffer.speech_stopped" => ServerEvent::SpeechStopped,
            "conversation.item.input_audio_transcription.delta" => ServerEvent::UserDelta {
                item_id: item_key(v),
                delta: delta(),
            },
            "conversation.item.input_audio_transcription.completed" => ServerEvent::UserText {
                item_id: item_key(v),
                text: text(v, "transcript").unwrap_or_default().to_string(),
                is_final: text(v, "status") != Some("in_progress"),
            },
            "conversation.item.input_audio_transcription.updated" => ServerEvent::UserText {
                item_id: item_key(v),
                text: text(v, "transcript").unwrap_or_default().to_string(),
                is_final: false,
            },
            "response.created" => ServerEvent::ResponseCreated,
            "response.output_audio.delta" | "response.audio.delta" => ServerEvent::AudioDelta {
                key: item_key(v),
                audio: text(v, "delta").unwrap_or_default().to_string(),
            },
            "response.output_audio_transcript.delta"
            | "response.audio_transcript.delta"
            | "response.output_text.delta"
            | "response.text.delta" => ServerEvent::TextDelta {
                key: item_key(v),
                family: match kind {
                    "response.output_audio_transcript.delta" => TextFamily::AudioTranscript,
                    "response.audio_transcript.delta" => TextFamily::BetaAudioTranscript,
                    "response.output_text.delta" => TextFamily::OutputText,
                    _ => TextFamily::Text,
                },
                delta: delta(),
            },
            "response.output_item.added" | "response.output_item.done" => {
                let Some(item) = v.get("item") else {
                    return ServerEvent::Other;
                };
                match (text(item, "type"), owned(item, "id"), call_info(item)) {
                    (Some("function_call"), Some(item_id), Some(call)) => {
                        ServerEvent::CallItem { item_id, call }
                    }
                    _ => ServerEvent::Other,
                }
            }
            "response.function_call_arguments.done" => match call_info(v) {
                Some(call) => ServerEvent::CallDone {
                    item_id: owned(v, "item_id"),
                    call,
                },
                None => ServerEvent::Other,
            },
            "response.done" => {
                let response = v.get("response");
                let status = response
                    .and_then(|r| owned(r, "status"))
                    .unwrap_or_else(|| "unknown".to_string());
                let usage =
                    usage(response.and_then(|r| r.get("usage"))).or_else(|| usage(v.get("usage")));
                let calls = response
                    .and_then(|r| r.get("output"))
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter(|i| text(i, "type") == Some("function_call"))
                            .filter_map(call_info)
                            .collect()
                    })
                    .unwrap_or_default();
                ServerEvent::ResponseDone {
                    status,
                    usage,
                    calls,
                }
            }
            "error" => {
                let e = v.get("error").unwrap_or(v);
                ServerEvent::Error(ServerError {
                    kind: owned(e, "type"),
                    code: owned(e, "code"),
                    message: text(e, "message")
                        .unwrap_or("the server reported an error")
                        .to_string(),
                })
            }
            _ => ServerEvent::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transcription_partials_and_finals() {
        let partial = json!({"type":"conversation.item.input_audio_transcription.completed",
            "item_id":"u1","transcript":"hel","status":"in_progress"});
        assert_eq!(
            ServerEvent::parse(&partial),
            ServerEvent::UserText {
                item_id: "u1".into(),
                text: "hel".into(),
                is_final: false
            }
        );
        let done = json!({"type":"conversation.item.input_audio_transcription.completed",
            "item_id":"u1","content_index":0,"transcript":"hello"});
        assert!(matches!(
            ServerEvent::parse(&done),
            ServerEvent::UserText { is_final: true, .. }
        ));
        let updated = json!({"type":"conversation.item.input_audio_transcription.updated",
            "item_id":"u1","transcript":"hello th"});
        assert!(matches!(
            ServerEvent::parse(&updated),
            ServerEvent::UserText {
                is_final: false,
                ..
            }
        ));
    }

    #[test]
    fn response_done_reads_calls_and_usage_anywhere() {
        let v = json!({"type":"response.done","response":{"id":"r","status":"completed",
            "output":[{"type":"message","id":"m"},
                      {"type":"function_call","id":"i","call_id":"c1","name":"f","arguments":"{}"}],
            "usage":{}},
            "usage":{"input_tokens":10,"output_tokens":4}});
        let ServerEvent::ResponseDone {
            status,
            usage,
            calls,
        } = ServerEvent::parse(&v)
        else {
            panic!("not a response.done");
        };
        assert_eq!(status, "completed");
        assert_eq!(
            usage,
            Some(TokenUsage {
                prompt_tokens: 10,
                completion_tokens: 4
            })
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name.as_deref(), Some("f"));
        let bare = json!({"type":"response.done","response":{"usage":{}}});
        assert!(matches!(
            ServerEvent::parse(&bare),
            ServerEvent::ResponseDone { usage: None, .. }
        ));
    }

    #[test]
    fn errors_are_classified() {
        let e = |code: Option<&str>, message: &str| ServerError {
            kind: Some("invalid_request_error".into()),
            code: code.map(str::to_string),
            message: message.into(),
        };
        assert_eq!(
            e(None, "Cancellation failed: no active response found").severity(),
            Severity::Benign
        );
        assert_eq!(
            e(Some("response_cancel_not_active"), "x").severity(),
            Severity::Benign
        );
        assert!(e(
            Some("conversation_already_has_active_response"),
            "Conversation already has an active response in progress"
        )
        .is_active_response_conflict());
        assert_eq!(
            e(
                Some("session_expired"),
                "Your session hit the maximum duration"
            )
            .severity(),
            Severity::Fatal
        );
        assert_eq!(
            e(Some("invalid_value"), "bad").severity(),
            Severity::Recoverable
        );
    }

    #[test]
    fn missing_fields_and_unknown_types_are_tolerated() {
        assert_eq!(
            ServerEvent::parse(&json!({"no":"type"})),
            ServerEvent::Other
        );
        assert_eq!(
            ServerEvent::parse(&json!({"type":"rate_limits.updated"})),
            ServerEvent::Other
        );
        assert_eq!(
            ServerEvent::parse(&json!({"type":"response.function_call_arguments.done"})),
            ServerEvent::Other
        );
        assert_eq!(
            ServerEvent::parse(&json!({"type":"response.audio.delta","response_id":"r"})),
            ServerEvent::AudioDelta {
                key: "r".into(),
                audio: String::new()
            }
        );
    }
}
