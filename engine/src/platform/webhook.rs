//! The four webhook bodies the platform posts to a host (assistant-request, tool-calls, status-update,
//! end-of-call-report), their common envelope, and the replies the platform expects back.
//!
//! Output is snake_case exactly as the platform sends it; input also accepts the camelCase spellings
//! seen in older references. Open-ended string sets (call status, end reason) keep unknown values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::time::Timestamp;

/// A JSON object (`Record<string, unknown>` in the platform's types): assistant config, metadata, analysis.
pub type JsonObject = Map<String, Value>;

/// Defines a string enum whose unknown wire values are kept in an `Other(String)` variant, so a newer
/// platform value neither fails parsing nor changes on re-serialization.
macro_rules! open_string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(other) => other,
                }
            }

            /// The variant for a wire string; unknown strings become `Other`.
            pub fn from_wire(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::from_wire(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Ok(Self::from_wire(&value))
            }
        }
    };
}

/// The four webhook events, as named in `message.type`, the `X-Webhook-Event` header and `webhook_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookEventKind {
    /// Inbound call before answering: the host may choose or change the assistant.
    AssistantRequest,
    /// The model called one or more tools; the host returns their results.
    ToolCalls,
    /// The call's status changed.
    StatusUpdate,
    /// The call ended and its summary, transcript and analysis are ready.
    EndOfCallReport,
}

impl WebhookEventKind {
    /// All four events, in the order the platform lists them.
    pub const ALL: [WebhookEventKind; 4] = [
        Self::AssistantRequest,
        Self::ToolCalls,
        Self::StatusUpdate,
        Self::EndOfCallReport,
    ];

    /// The wire name, e.g. `"end-of-call-report"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AssistantRequest => "assistant-request",
            Self::ToolCalls => "tool-calls",
            Self::StatusUpdate => "status-update",
            Self::EndOfCallReport => "end-of-call-report",
        }
    }

    /// Whether the platform uses the host's reply (only assistant-request and tool-calls; others just need a 2xx).
    pub fn expects_reply(self) -> bool {
        matches!(self, Self::AssistantRequest | Self::ToolCalls)
    }
}

impl fmt::Display for WebhookEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the four webhook event names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown webhook event `{0}`; expected one of assistant-request, tool-calls, status-update, end-of-call-report")]
pub struct UnknownWebhookEvent(pub String);

impl FromStr for WebhookEventKind {
    type Err = UnknownWebhookEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownWebhookEvent(s.to_owned()))
    }
}

/// How the call reached the platform (`message.call.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    /// A caller dialled one of the platform's numbers.
    #[serde(alias = "inboundPhoneCall")]
    InboundPhoneCall,
    /// The platform dialled out.
    #[serde(alias = "outboundPhoneCall")]
    OutboundPhoneCall,
    /// A browser or app connection (no phone numbers involved).
    #[serde(alias = "webCall")]
    WebCall,
}

open_string_enum! {
    /// The call's status (`message.call.status`, REST `Call.status`); the platform's type is open.
    pub enum CallStatus {
        /// Outbound call being set up.
        Connecting = "connecting",
        /// Inbound call not yet answered (assistant-request).
        Ringing = "ringing",
        /// Conversation under way.
        InProgress = "in-progress",
        /// Ended normally: caller or assistant hung up.
        Ended = "ended",
        /// Ended because of an error; status-update then carries `error`.
        EndedWithError = "ended-with-error",
        /// Handed off to another destination.
        Transferred = "transferred",
        /// Could not be set up.
        Failed = "failed",
        /// Refused, e.g. by an assistant-request reply carrying `error`.
        Rejected = "rejected",
        /// Refused because the account has no credit left.
        InsufficientCredits = "insufficient-credits",
    }
}

open_string_enum! {
    /// Why the call ended (`end_reason`). The platform documents no full list; these are the values it shows.
    pub enum EndReason {
        /// The caller hung up.
        UserHangup = "user_hangup",
        /// `max_duration_seconds` was reached.
        MaxDuration = "max_duration",
    }
}

open_string_enum! {
    /// Which media pipeline runs the call (`message.call.pipeline`).
    pub enum Pipeline {
        /// Speech-to-text → LLM → text-to-speech.
        Standard = "standard",
        /// A speech-to-speech realtime model (value inferred; the platform has only shown `standard`).
        Realtime = "realtime",
    }
}

/// The call a webhook is about (`message.call`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    /// The platform's call id.
    pub id: String,
    /// Inbound, outbound or web.
    #[serde(rename = "type")]
    pub call_type: CallType,
    /// Status at the time of the event.
    pub status: CallStatus,
    /// Pipeline kind; omitted unless known (the platform shows it only on assistant-request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
}

/// The platform number involved in the call (`message.phone_number`); all fields are null on web calls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PhoneNumberInfo {
    /// Number id: `None` = key absent (older payloads), `Some(None)` = `null` (web calls).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub id: Option<Option<String>>,
    /// The number in E.164 form.
    pub number: Option<String>,
    /// Its display name.
    pub name: Option<String>,
}

/// The other party (`message.customer`): the caller on inbound calls, the callee on outbound calls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Customer {
    /// E.164 number; `null` on web calls.
    pub number: Option<String>,
}

/// Fields every webhook carries inside `message`, besides `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// When the event happened.
    pub timestamp: Timestamp,
    /// The call.
    pub call: CallInfo,
    /// The platform number.
    #[serde(alias = "phoneNumber")]
    pub phone_number: PhoneNumberInfo,
    /// The other party.
    pub customer: Customer,
    /// The resolved assistant config plus any `metadata` the host supplied; omitted when not known yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<JsonObject>,
}

impl Envelope {
    /// The host's `metadata` echoed inside `assistant`, if it is an object.
    pub fn metadata(&self) -> Option<&JsonObject> {
        self.assistant.as_ref()?.get("metadata")?.as_object()
    }
}

/// `assistant-request`: an inbound call is ringing; the host may answer with an [`AssistantRequestResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantRequest {
    /// Common fields; `call.status` is `ringing`.
    #[serde(flatten)]
    pub envelope: Envelope,
}

/// The kind of a tool call; the platform only sends `function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallKind {
    /// A function defined in `llm_config.tools`.
    #[default]
    Function,
}

/// The function the model called and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The tool's function name.
    pub name: String,
    /// Arguments as a JSON object (not a JSON-encoded string).
    #[serde(default)]
    pub arguments: JsonObject,
}

/// One entry of `tool_call_list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Id the host must echo as `tool_call_id` in its result.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default)]
    pub kind: ToolCallKind,
    /// What to call.
    pub function: FunctionCall,
}

/// `tool-calls`: the model called tools; the host replies with a [`ToolCallsResponse`] (within 10 s unless async).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCalls {
    /// Common fields; `call.status` is `in-progress`.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The calls, in the order the model made them.
    #[serde(alias = "toolCallList")]
    pub tool_call_list: Vec<ToolCall>,
}

/// `status-update`: the call's status changed (see `envelope.call.status`); the reply body is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// Common fields.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// Why the call failed, with status `ended-with-error` (e.g. `"STT connection failed"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the call ended, once it has.
    #[serde(default, alias = "endReason", skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
}

/// Who said a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The caller.
    User,
    /// The assistant.
    Assistant,
}

/// One line of the call transcript: `{"role": …, "content": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptMessage {
    /// The speaker.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// `end-of-call-report`: sent after the call, once summary and analysis are done; the reply body is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndOfCallReport {
    /// Common fields; `call.status` is `ended`.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// Total call duration in whole seconds.
    #[serde(alias = "durationSeconds")]
    pub duration_seconds: u64,
    /// Generated summary, in the caller's language.
    pub summary: String,
    /// The full transcript; always written, accepted as empty when absent.
    #[serde(default)]
    pub messages: Vec<TranscriptMessage>,
    /// Structured data extracted per `analysis_plan`; absent when none is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<JsonObject>,
    /// Recording location, when recording is on.
    #[serde(
        default,
        alias = "recordingUrl",
        skip_serializing_if = "Option::is_none"
    )]
    pub recording_url: Option<String>,
    /// Why the call ended.
    #[serde(default, alias = "endReason", skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// When the call was answered.
    #[serde(default, alias = "startedAt", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When the call ended.
    #[serde(default, alias = "endedAt", skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

/// The contents of `message`, discriminated by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum WebhookEvent {
    /// `assistant-request`.
    AssistantRequest(AssistantRequest),
    /// `tool-calls`.
    ToolCalls(ToolCalls),
    /// `status-update`.
    StatusUpdate(StatusUpdate),
    /// `end-of-call-report`.
    EndOfCallReport(EndOfCallReport),
}

impl WebhookEvent {
    /// Which of the four events this is.
    pub fn kind(&self) -> WebhookEventKind {
        match self {
            Self::AssistantRequest(_) => WebhookEventKind::AssistantRequest,
            Self::ToolCalls(_) => WebhookEventKind::ToolCalls,
            Self::StatusUpdate(_) => WebhookEventKind::StatusUpdate,
            Self::EndOfCallReport(_) => WebhookEventKind::EndOfCallReport,
        }
    }

    /// The `X-Webhook-Event` header value (same as `message.type`).
    pub fn event_name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The common fields.
    pub fn envelope(&self) -> &Envelope {
        match self {
            Self::AssistantRequest(e) => &e.envelope,
            Self::ToolCalls(e) => &e.envelope,
            Self::StatusUpdate(e) => &e.envelope,
            Self::EndOfCallReport(e) => &e.envelope,
        }
    }

    /// The common fields, for filling in `assistant` or adjusting the call status.
    pub fn envelope_mut(&mut self) -> &mut Envelope {
        match self {
            Self::AssistantRequest(e) => &mut e.envelope,
            Self::ToolCalls(e) => &mut e.envelope,
            Self::StatusUpdate(e) => &mut e.envelope,
            Self::EndOfCallReport(e) => &mut e.envelope,
        }
    }
}

/// A webhook HTTP body: `{"message": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// The event.
    pub message: WebhookEvent,
}

/// A webhook body or reply that does not match the platform's shapes.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not JSON, or JSON of the wrong shape; the inner message names the offending field.
    #[error("invalid platform webhook JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl WebhookBody {
    /// Wraps an event.
    pub fn new(message: WebhookEvent) -> Self {
        Self { message }
    }

    /// Parses a raw body as received over HTTP.
    pub fn from_slice(body: &[u8]) -> Result<Self, WebhookError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// Serializes to the compact bytes that get signed and sent.
    pub fn to_vec(&self) -> Result<Vec<u8>, WebhookError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// The `X-Webhook-Event` header value.
    pub fn event_name(&self) -> &'static str {
        self.message.event_name()
    }
}

impl From<WebhookEvent> for WebhookBody {
    fn from(message: WebhookEvent) -> Self {
        Self::new(message)
    }
}

/// The outcome of one tool call: `{"result": <any JSON>}` or `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    /// What the tool returned; any JSON value, handed to the model.
    Result(Value),
    /// Why the tool failed, handed to the model.
    Error(String),
}

/// One entry of `results`: `{"tool_call_id": "…", "result": …}` or `{"tool_call_id": "…", "error": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallResult {
    /// The `id` of the tool call this answers.
    #[serde(alias = "toolCallId")]
    pub tool_call_id: String,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: ToolOutcome,
}

/// The host's reply to `tool-calls`, in any of the four shapes the platform accepts.
///
/// Parsing looks at the top level in this order: a `results` array, an `error` string, a `result` key,
/// and otherwise takes the whole body as the result.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCallsResponse {
    /// `{"results": [{"tool_call_id", "result"|"error"}]}`, one entry per call (recommended).
    Results(Vec<ToolCallResult>),
    /// `{"result": <any JSON>}`.
    Single(Value),
    /// `{"error": "…"}`.
    Error(String),
    /// Any other body, used as the result as a whole.
    Direct(Value),
}

impl ToolCallsResponse {
    /// Parses a raw reply body.
    pub fn from_slice(body: &[u8]) -> Result<Self, WebhookError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// The outcome for the tool call with `tool_call_id`.
    ///
    /// `Results` answers only the ids it lists; the other shapes carry one outcome that answers every call.
    pub fn outcome_for(&self, tool_call_id: &str) -> Option<ToolOutcome> {
        match self {
            Self::Results(results) => results
                .iter()
                .find(|r| r.tool_call_id == tool_call_id)
                .map(|r| r.outcome.clone()),
            Self::Single(value) | Self::Direct(value) => Some(ToolOutcome::Result(value.clone())),
            Self::Error(message) => Some(ToolOutcome::Error(message.clone())),
        }
    }
}

impl Serialize for ToolCallsResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Results(results) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("results", results)?;
                map.end()
            }
            Self::Single(value) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("result", value)?;
                map.end()
            }
            Self::Error(message) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("error", message)?;
                map.end()
            }
            Self::Direct(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ToolCallsResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        let Value::Object(mut map) = value else {
            return Ok(Self::Direct(value));
        };
        if let Some(results) = map.get("results").filter(|r| r.is_array()) {
            let results = Vec::<ToolCallResult>::deserialize(results)
                .map_err(|e| D::Error::custom(format_args!("in `results`: {e}")))?;
            return Ok(Self::Results(results));
        }
        if let Some(Value::String(message)) = map.get("error") {
            return Ok(Self::Error(message.clone()));
        }
        if let Some(result) = map.remove("result") {
            return Ok(Self::Single(result));
        }
        Ok(Self::Direct(Value::Object(map)))
    }
}

/// The host's reply to `assistant-request`: `{}`, `{assistant}`, `{assistant_id, assistant_override}`
/// or `{error}`, optionally with a top-level `max_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AssistantRequestResponse {
    /// A full or partial config for this call only (transient mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<JsonObject>,
    /// A saved assistant to use instead of the number's own.
    #[serde(
        default,
        alias = "assistantId",
        skip_serializing_if = "Option::is_none"
    )]
    pub assistant_id: Option<String>,
    /// Top-level blocks replacing those of the saved assistant (shallow: each key replaces a whole block).
    #[serde(
        default,
        alias = "assistantOverride",
        skip_serializing_if = "Option::is_none"
    )]
    pub assistant_override: Option<JsonObject>,
    /// Rejects the call; the text is spoken to the caller first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Hard cap on the call length.
    #[serde(
        default,
        alias = "maxDurationSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration_seconds: Option<u64>,
}

/// What an [`AssistantRequestResponse`] asks for, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AssistantSelection<'a> {
    /// Reject the call after speaking `message`.
    Reject {
        /// Spoken to the caller.
        message: &'a str,
    },
    /// Run this config for the call.
    Transient {
        /// The config object.
        assistant: &'a JsonObject,
    },
    /// Run a saved assistant (`None` = the number's own), with top-level blocks replaced by `overrides`.
    Saved {
        /// Which saved assistant.
        assistant_id: Option<&'a str>,
        /// Blocks to replace.
        overrides: Option<&'a JsonObject>,
    },
}

impl AssistantRequestResponse {
    /// Parses a raw reply body; an empty body means "use the default".
    pub fn from_slice(body: &[u8]) -> Result<Self, WebhookError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        Ok(serde_json::from_slice(body)?)
    }

    /// The selection this reply makes: `error` wins, then `assistant`, then the saved assistant.
    pub fn selection(&self) -> AssistantSelection<'_> {
        if let Some(message) = &self.error {
            return AssistantSelection::Reject { message };
        }
        if let Some(assistant) = &self.assistant {
            return AssistantSelection::Transient { assistant };
        }
        AssistantSelection::Saved {
            assistant_id: self.assistant_id.as_deref(),
            overrides: self.assistant_override.as_ref(),
        }
    }
}

/// Deserializes a field that is present (possibly `null`) into `Some(..)`; absence is left to `default`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn open_enums_keep_unknown_values() {
        assert_eq!(CallStatus::from_wire("in-progress"), CallStatus::InProgress);
        let odd: CallStatus = serde_json::from_value(json!("on-hold")).expect("any string");
        assert_eq!(odd, CallStatus::Other("on-hold".into()));
        assert_eq!(
            serde_json::to_value(&odd).expect("serializes"),
            json!("on-hold")
        );
        assert_eq!(EndReason::from("max_duration"), EndReason::MaxDuration);
        assert_eq!(
            EndReason::from("silence_timeout").as_str(),
            "silence_timeout"
        );
        assert!(serde_json::from_value::<EndReason>(json!(3)).is_err());
    }

    #[test]
    fn event_kind_names() {
        for kind in WebhookEventKind::ALL {
            assert_eq!(kind.as_str().parse::<WebhookEventKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                json!(kind.as_str())
            );
        }
        let err = "call-started"
            .parse::<WebhookEventKind>()
            .expect_err("unknown");
        assert!(err.to_string().contains("call-started"));
        assert!(WebhookEventKind::ToolCalls.expects_reply());
        assert!(!WebhookEventKind::StatusUpdate.expects_reply());
    }

    #[test]
    fn phone_number_id_distinguishes_absent_and_null() {
        let absent: PhoneNumberInfo =
            serde_json::from_value(json!({"number": "+31850835037", "name": "Demo"})).expect("ok");
        assert_eq!(absent.id, None);
        let null: PhoneNumberInfo =
            serde_json::from_value(json!({"id": null, "number": null, "name": null})).expect("ok");
        assert_eq!(null.id, Some(None));
        assert_eq!(
            serde_json::to_value(&null).expect("serializes"),
            json!({"id": null, "number": null, "name": null})
        );
        assert_eq!(
            serde_json::to_value(&absent).expect("serializes"),
            json!({"number": "+31850835037", "name": "Demo"})
        );
    }

    #[test]
    fn call_type_accepts_camel_case() {
        let t: CallType = serde_json::from_value(json!("outboundPhoneCall")).expect("alias");
        assert_eq!(t, CallType::OutboundPhoneCall);
        assert_eq!(
            serde_json::to_value(t).expect("ok"),
            json!("outbound_phone_call")
        );
        assert!(serde_json::from_value::<CallType>(json!("sip_call")).is_err());
    }

    #[test]
    fn assistant_request_response_selection() {
        let parse =
            |v: Value| -> AssistantRequestResponse { serde_json::from_value(v).expect("ok") };
        assert_eq!(
            AssistantRequestResponse::from_slice(b"")
                .expect("empty")
                .selection(),
            AssistantSelection::Saved {
                assistant_id: None,
                overrides: None
            }
        );
        let reject = parse(json!({"error": "Sorry, we are closed"}));
        assert_eq!(
            reject.selection(),
            AssistantSelection::Reject {
                message: "Sorry, we are closed"
            }
        );
        let transient = parse(json!({"assistant": {"first_message": "Hi"}}));
        assert!(matches!(
            transient.selection(),
            AssistantSelection::Transient { .. }
        ));
        let hybrid = parse(json!({"assistantId": "a1", "assistantOverride": {"tts_config": {}}}));
        match hybrid.selection() {
            AssistantSelection::Saved {
                assistant_id,
                overrides,
            } => {
                assert_eq!(assistant_id, Some("a1"));
                assert!(overrides.is_some_and(|o| o.contains_key("tts_config")));
            }
            other => panic!("unexpected {other:?}"),
        }
        let capped = parse(json!({"maxDurationSeconds": 300}));
        assert_eq!(capped.max_duration_seconds, Some(300));
        assert_eq!(
            serde_json::to_value(&capped).expect("ok"),
            json!({"max_duration_seconds": 300})
        );
    }
}
