//! Entries of `llm_config.tools[]`: every accepted shape read into one [`Tool`] (spec §8.12).
//!
//! The platform accepts a flat webhook tool, an OpenAI-style nested function and the built-ins
//! `end_call` / `transfer_call` (camel aliases too). The engine works with one normalized type and
//! writes a function tool back in the shape it came in, with canonical snake_case keys.

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use super::check;
use super::error::{join, ConfigError};
use super::ConfigSection;

/// How long the platform waits for a synchronous tool webhook to answer (spec §4).
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest accepted `timeout_seconds`: a tool may answer sooner than the platform's 10 s limit,
/// never later (spec §4).
pub const MAX_TOOL_TIMEOUT_SECONDS: f64 = 10.0;

/// Function name the built-in hang-up tool is exposed to the model under.
pub const END_CALL_TOOL_NAME: &str = "end_call";

/// Function name the built-in transfer tool is exposed to the model under.
pub const TRANSFER_CALL_TOOL_NAME: &str = "transfer_call";

/// One tool the model may call, whatever shape it was written in.
#[derive(Debug, Clone, PartialEq)]
// Tools are parsed once per call and held a handful at a time; boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
pub enum Tool {
    /// A function answered by a webhook (flat or nested shape).
    Function(FunctionTool),
    /// The built-in hang-up tool `{"type":"end_call"}`; the engine supplies name and handler.
    EndCall,
    /// The built-in transfer tool `{"type":"transfer_call","destinations":[…]}`.
    TransferCall(TransferCallTool),
}

/// The JSON shape a function tool was written in, kept so it serializes back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolShape {
    /// `{name, description, parameters, url, async, message}` (the documented form).
    #[default]
    Flat,
    /// `{type:"function", function:{name, description, parameters}, server, async}` (OpenAI).
    Nested,
}

/// A function tool: the model calls it by name and the platform posts it to a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    /// Unique function name: starts with a letter or `_`; letters, digits, `_`, `-`; ≤ 64 chars.
    pub name: String,
    /// Tells the model when and how to use the tool (required in the flat shape).
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Option<Value>,
    /// Per-tool webhook URL; overrides the assistant and account webhooks.
    pub url: Option<String>,
    /// Nested webhook override (`{url, secret}`); `url` wins when both are set.
    pub server: Option<ToolServer>,
    /// Fire-and-forget: the model does not wait for the result (default false).
    pub is_async: bool,
    /// Spoken while the tool runs; for async tools spoken instead of the result.
    /// Read from `message`, or from the legacy `async_response` / `asyncResponse`.
    pub message: Option<String>,
    /// Engine extension: answer deadline in seconds, 1–10; absent means the platform's 10 s.
    pub timeout_seconds: Option<f64>,
    /// The shape to write back.
    pub shape: ToolShape,
}

/// `server` block of a tool: where its webhook goes and how it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolServer {
    /// Webhook URL.
    pub url: String,
    /// HMAC secret for this tool's webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The built-in transfer tool's list of places the model may transfer the caller to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferCallTool {
    /// At least one destination.
    pub destinations: Vec<TransferDestination>,
}

string_enum! {
    /// Kind of a transfer destination; only `number` is documented (spec §8.12).
    pub enum DestinationType: "destination type" {
        /// A phone number in E.164.
        Number = "number",
    }
}

/// One place the built-in transfer tool can send the caller (spec §8.12, §9.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferDestination {
    /// Destination kind (default `number`).
    #[serde(rename = "type", default = "default_destination_type")]
    pub kind: DestinationType,
    /// E.164 number to transfer to.
    pub number: String,
    /// Shown to the model so it can pick the right destination.
    pub description: String,
    /// Spoken to the caller before transferring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn default_destination_type() -> DestinationType {
    DestinationType::Number
}

/// What the model is told about a tool: name, description and argument schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// Function name.
    pub name: String,
    /// When to use it.
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

impl Tool {
    /// The function name the model calls this tool by.
    pub fn name(&self) -> &str {
        match self {
            Tool::Function(f) => &f.name,
            Tool::EndCall => END_CALL_TOOL_NAME,
            Tool::TransferCall(_) => TRANSFER_CALL_TOOL_NAME,
        }
    }

    /// True for the built-in tools the engine handles itself.
    pub fn is_builtin(&self) -> bool {
        !matches!(self, Tool::Function(_))
    }

    /// The function tool, when this is one.
    pub fn as_function(&self) -> Option<&FunctionTool> {
        match self {
            Tool::Function(f) => Some(f),
            _ => None,
        }
    }

    /// The name, description and argument schema to offer the model.
    pub fn function_spec(&self) -> FunctionSpec {
        match self {
            Tool::Function(f) => FunctionSpec {
                name: f.name.clone(),
                description: f.description.clone().unwrap_or_default(),
                parameters: f.parameters.clone().unwrap_or_else(empty_object_schema),
            },
            Tool::EndCall => FunctionSpec {
                name: END_CALL_TOOL_NAME.to_owned(),
                description: "End the phone call. Use it when the conversation is finished, \
                              when the caller asks to hang up, or after saying goodbye."
                    .to_owned(),
                parameters: empty_object_schema(),
            },
            Tool::TransferCall(t) => t.function_spec(),
        }
    }
}

impl FunctionTool {
    /// A flat, synchronous tool with just a name and description.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        FunctionTool {
            name: name.into(),
            description: Some(description.into()),
            parameters: None,
            url: None,
            server: None,
            is_async: false,
            message: None,
            timeout_seconds: None,
            shape: ToolShape::Flat,
        }
    }

    /// Where this tool's webhook goes, if it overrides the assistant's: `url`, else `server.url`.
    pub fn webhook_url(&self) -> Option<&str> {
        self.url
            .as_deref()
            .or_else(|| self.server.as_ref().map(|s| s.url.as_str()))
    }

    /// The tool's own signing secret, if its `server` block has one.
    pub fn webhook_secret(&self) -> Option<&str> {
        self.server.as_ref().and_then(|s| s.secret.as_deref())
    }

    /// How long to wait for the webhook's answer: `timeout_seconds`, else 10 s (spec §4).
    pub fn timeout(&self) -> Duration {
        self.timeout_seconds
            .filter(|s| *s > 0.0 && s.is_finite())
            .map_or(DEFAULT_TOOL_TIMEOUT, Duration::from_secs_f64)
    }
}

impl TransferCallTool {
    /// The function the model sees: one `destination` argument limited to the configured numbers.
    pub fn function_spec(&self) -> FunctionSpec {
        let choices: Vec<String> = self
            .destinations
            .iter()
            .map(|d| format!("{} ({})", d.number, d.description))
            .collect();
        let numbers: Vec<&str> = self
            .destinations
            .iter()
            .map(|d| d.number.as_str())
            .collect();
        FunctionSpec {
            name: TRANSFER_CALL_TOOL_NAME.to_owned(),
            description: format!(
                "Transfer the caller to another phone number. Destinations: {}.",
                choices.join("; ")
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "destination": {
                        "type": "string",
                        "enum": numbers,
                        "description": "The number to transfer the caller to."
                    }
                },
                "required": ["destination"]
            }),
        }
    }

    /// The destination with this number, if configured.
    pub fn destination(&self, number: &str) -> Option<&TransferDestination> {
        self.destinations.iter().find(|d| d.number == number)
    }
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// True when `name` follows the platform's function-name rule (spec §8.12).
pub fn is_valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// True for an E.164 number: `+`, then 2–15 digits not starting with 0.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

impl ConfigSection for Tool {
    /// Checks name rule, URLs, schema type and destinations (spec §8.12); `timeout_seconds` outside
    /// 1–10 is rejected because the platform never waits longer than 10 s.
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        match self {
            Tool::EndCall => Ok(()),
            Tool::TransferCall(t) => {
                let list = join(path, "destinations");
                if t.destinations.is_empty() {
                    return Err(ConfigError::invalid(
                        list,
                        "at least one destination required",
                    ));
                }
                for (i, d) in t.destinations.iter().enumerate() {
                    let at = join(&list, &format!("[{i}]"));
                    if !is_e164(&d.number) {
                        return Err(ConfigError::invalid(
                            join(&at, "number"),
                            format!("\"{}\" is not an E.164 number", d.number),
                        ));
                    }
                    check::non_blank(&join(&at, "description"), &d.description)?;
                }
                Ok(())
            }
            Tool::Function(f) => {
                let name_path = match f.shape {
                    ToolShape::Flat => join(path, "name"),
                    ToolShape::Nested => join(path, "function.name"),
                };
                if !is_valid_function_name(&f.name) {
                    return Err(ConfigError::invalid(
                        name_path,
                        format!(
                            "\"{}\" is not a valid function name (letter or _ first, then letters, \
                             digits, _ or -, at most 64)",
                            f.name
                        ),
                    ));
                }
                if f.name == END_CALL_TOOL_NAME || f.name == TRANSFER_CALL_TOOL_NAME {
                    return Err(ConfigError::invalid(
                        name_path,
                        format!("\"{}\" is reserved for the built-in tool", f.name),
                    ));
                }
                if f.shape == ToolShape::Flat {
                    let description = f.description.as_deref().unwrap_or_default();
                    check::non_blank(&join(path, "description"), description)?;
                }
                if let Some(parameters) = &f.parameters {
                    if !parameters.is_object() {
                        let at = match f.shape {
                            ToolShape::Flat => join(path, "parameters"),
                            ToolShape::Nested => join(path, "function.parameters"),
                        };
                        return Err(ConfigError::invalid(at, "must be a JSON Schema object"));
                    }
                }
                if let Some(url) = &f.url {
                    check::http_url(&join(path, "url"), url)?;
                }
                if let Some(server) = &f.server {
                    check::http_url(&join(path, "server.url"), &server.url)?;
                }
                if let Some(t) = f.timeout_seconds {
                    check::range_f64(
                        &join(path, "timeout_seconds"),
                        t,
                        1.0,
                        MAX_TOOL_TIMEOUT_SECONDS,
                    )?;
                }
                Ok(())
            }
        }
    }
}

string_enum! {
    /// The `type` of a tool entry.
    enum ToolType: "tool type" {
        /// A webhook function.
        Function = "function",
        /// Built-in hang-up.
        EndCall = "end_call" | "endCall",
        /// Built-in transfer.
        TransferCall = "transfer_call" | "transferCall",
    }
}

/// Every field any tool shape may carry; read first, then sorted into a [`Tool`].
#[derive(Deserialize)]
struct RawTool {
    #[serde(rename = "type", default)]
    kind: Option<ToolType>,
    #[serde(default)]
    function: Option<RawFunction>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    server: Option<ToolServer>,
    #[serde(rename = "async", default)]
    is_async: Option<bool>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, alias = "asyncResponse")]
    async_response: Option<String>,
    #[serde(default, alias = "timeoutSeconds")]
    timeout_seconds: Option<f64>,
    #[serde(default)]
    destinations: Option<Vec<TransferDestination>>,
}

/// The `function` object of the nested (OpenAI) shape.
#[derive(Deserialize)]
struct RawFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawTool::deserialize(deserializer)?;
        match raw.kind {
            Some(ToolType::EndCall) => Ok(Tool::EndCall),
            Some(ToolType::TransferCall) => {
                let destinations = raw
                    .destinations
                    .ok_or_else(|| D::Error::missing_field("destinations"))?;
                Ok(Tool::TransferCall(TransferCallTool { destinations }))
            }
            Some(ToolType::Function) | None => {
                let (name, description, parameters, shape) = match raw.function {
                    Some(f) => (f.name, f.description, f.parameters, ToolShape::Nested),
                    None => {
                        let name = raw.name.ok_or_else(|| D::Error::missing_field("name"))?;
                        let description = raw
                            .description
                            .ok_or_else(|| D::Error::missing_field("description"))?;
                        (name, Some(description), raw.parameters, ToolShape::Flat)
                    }
                };
                Ok(Tool::Function(FunctionTool {
                    name,
                    description,
                    parameters,
                    url: raw.url,
                    server: raw.server,
                    is_async: raw.is_async.unwrap_or(false),
                    message: raw.message.or(raw.async_response),
                    timeout_seconds: raw.timeout_seconds,
                    shape,
                }))
            }
        }
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Output form of a flat function tool.
#[derive(Serialize)]
struct FlatOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
    #[serde(flatten)]
    common: CommonOut<'a>,
}

/// Output form of a nested (OpenAI) function tool.
#[derive(Serialize)]
struct NestedOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
    #[serde(flatten)]
    common: CommonOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
}

/// Fields both function shapes share.
#[derive(Serialize)]
struct CommonOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a ToolServer>,
    #[serde(rename = "async", skip_serializing_if = "is_false")]
    is_async: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<f64>,
}

/// Output form of the built-ins.
#[derive(Serialize)]
struct BuiltinOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    destinations: Option<&'a [TransferDestination]>,
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Tool::EndCall => BuiltinOut {
                kind: ToolType::EndCall.as_str(),
                destinations: None,
            }
            .serialize(serializer),
            Tool::TransferCall(t) => BuiltinOut {
                kind: ToolType::TransferCall.as_str(),
                destinations: Some(&t.destinations),
            }
            .serialize(serializer),
            Tool::Function(f) => {
                let common = CommonOut {
                    url: f.url.as_deref(),
                    server: f.server.as_ref(),
                    is_async: f.is_async,
                    message: f.message.as_deref(),
                    timeout_seconds: f.timeout_seconds,
                };
                match f.shape {
                    ToolShape::Flat => FlatOut {
                        name: &f.name,
                        description: f.description.as_deref(),
                        parameters: f.parameters.as_ref(),
                        common,
                    }
                    .serialize(serializer),
                    ToolShape::Nested => NestedOut {
                        kind: ToolType::Function.as_str(),
                        function: FunctionOut {
                            name: &f.name,
                            description: f.description.as_deref(),
                            parameters: f.parameters.as_ref(),
                        },
                        common,
                    }
                    .serialize(serializer),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(json: &str) -> Result<Tool, ConfigError> {
        Tool::from_json(json)
    }

    #[test]
    fn flat_tool_with_legacy_async_response() {
        let t = tool(
            r#"{"name":"lookup_contact","description":"Find a contact","url":"https://example.com/t",
                "async":true,"asyncResponse":"One moment"}"#,
        )
        .unwrap();
        let f = t.as_function().unwrap();
        assert_eq!(f.shape, ToolShape::Flat);
        assert!(f.is_async);
        assert_eq!(f.message.as_deref(), Some("One moment"));
        assert_eq!(f.webhook_url(), Some("https://example.com/t"));
        assert_eq!(f.timeout(), DEFAULT_TOOL_TIMEOUT);
        let out = serde_json::to_value(&t).unwrap();
        assert_eq!(out["message"], "One moment");
        assert!(out.get("async_response").is_none());
        assert_eq!(out["async"], true);
    }

    #[test]
    fn nested_tool_keeps_its_shape() {
        let t = tool(
            r#"{"type":"function","function":{"name":"book","parameters":{"type":"object"}},
                "server":{"url":"https://example.com/s","secret":"k"}}"#,
        )
        .unwrap();
        let f = t.as_function().unwrap();
        assert_eq!(f.shape, ToolShape::Nested);
        assert_eq!(f.webhook_url(), Some("https://example.com/s"));
        assert_eq!(f.webhook_secret(), Some("k"));
        let out = serde_json::to_value(&t).unwrap();
        assert_eq!(out["type"], "function");
        assert_eq!(out["function"]["name"], "book");
        assert_eq!(Tool::from_value(&out).unwrap(), t);
    }

    #[test]
    fn url_wins_over_server_url() {
        let t = tool(
            r#"{"name":"a","description":"b","url":"https://one.example","server":{"url":"https://two.example"}}"#,
        )
        .unwrap();
        assert_eq!(
            t.as_function().unwrap().webhook_url(),
            Some("https://one.example")
        );
    }

    #[test]
    fn builtins_accept_camel_aliases_and_write_snake() {
        assert_eq!(tool(r#"{"type":"endCall"}"#).unwrap(), Tool::EndCall);
        let t = tool(
            r#"{"type":"transferCall","destinations":[{"type":"number","number":"+31201234567",
                "description":"Sales","message":"Transferring you now"}]}"#,
        )
        .unwrap();
        let out = serde_json::to_value(&t).unwrap();
        assert_eq!(out["type"], "transfer_call");
        let spec = t.function_spec();
        assert_eq!(spec.name, "transfer_call");
        assert_eq!(
            spec.parameters["properties"]["destination"]["enum"][0],
            "+31201234567"
        );
        assert_eq!(
            serde_json::to_value(Tool::EndCall).unwrap(),
            json!({"type":"end_call"})
        );
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(tool(r#"{"description":"x"}"#).unwrap_err().path(), "name");
        assert_eq!(tool(r#"{"name":"x"}"#).unwrap_err().path(), "description");
        assert_eq!(
            tool(r#"{"type":"function","function":{"description":"x"}}"#)
                .unwrap_err()
                .path(),
            "function.name"
        );
        assert_eq!(
            tool(r#"{"type":"transfer_call"}"#).unwrap_err().path(),
            "destinations"
        );
    }

    #[test]
    fn bad_values_are_rejected_with_paths() {
        let err = tool(r#"{"type":"web_hook"}"#).unwrap_err();
        assert_eq!(err.path(), "type");
        assert!(err.to_string().contains("unknown tool type \"web_hook\""));
        let err = tool(r#"{"name":"9lives","description":"x"}"#).unwrap_err();
        assert_eq!(err.path(), "name");
        let err = tool(r#"{"name":"a","description":"x","timeout_seconds":30}"#).unwrap_err();
        assert_eq!(err.to_string(), "timeout_seconds: 30 out of range 1..=10");
        let err = tool(
            r#"{"type":"transfer_call","destinations":[{"number":"0612345678","description":"x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "destinations[0].number");
        let err = tool(r#"{"type":"transfer_call","destinations":[]}"#).unwrap_err();
        assert_eq!(err.path(), "destinations");
        let err = tool(r#"{"name":"a","description":"x","url":"example.com"}"#).unwrap_err();
        assert_eq!(err.path(), "url");
    }

    #[test]
    fn name_rule_and_e164() {
        assert!(is_valid_function_name("_lookup-contact2"));
        assert!(!is_valid_function_name(""));
        assert!(!is_valid_function_name("has space"));
        assert!(!is_valid_function_name(&"a".repeat(65)));
        assert!(is_e164("+31850835037"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("31850835037"));
    }
}
