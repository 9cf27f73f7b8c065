//! `analysis_plan`: what is extracted from the transcript after the call (spec §8.11, §9.4).
//!
//! The structured-data prompt may use `{{schema}}`, `{{transcript}}` and `{{ended_reason}}`
//! (also `{{endedReason}}`); [`fill_placeholders`] fills them in one pass, so text inserted from
//! the transcript is never itself expanded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check;
use super::error::{join, ConfigError};
use super::llm::{ChatMessage, ChatRole};
use super::ConfigSection;

/// Conversations with fewer messages than this are not analysed (spec §8.11 default).
pub const DEFAULT_MIN_MESSAGES_THRESHOLD: u32 = 2;

/// The user prompt of the spec's example, used when a plan has a schema but no messages.
pub const DEFAULT_STRUCTURED_DATA_USER_PROMPT: &str =
    "Schema: {{schema}}\n\nTranscript: {{transcript}}\n\nCall ended because: {{ended_reason}}";

/// System prompt used when a structured-data plan has no messages.
pub const DEFAULT_STRUCTURED_DATA_SYSTEM_PROMPT: &str =
    "You extract structured data from phone call transcripts. Reply with one JSON object that \
     matches the given JSON Schema and nothing else. Use null for anything the call did not \
     reveal.";

/// System prompt used for the call summary when no summary plan overrides it.
pub const DEFAULT_SUMMARY_SYSTEM_PROMPT: &str =
    "You summarize phone calls. Write two or three sentences in the language the caller spoke: \
     why they called, what was agreed and what happens next.";

/// User prompt used for the call summary when no summary plan overrides it.
pub const DEFAULT_SUMMARY_USER_PROMPT: &str =
    "Transcript: {{transcript}}\n\nCall ended because: {{ended_reason}}";

/// `analysis_plan` of an assistant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisPlan {
    /// Structured extraction into the end-of-call report's `analysis`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "structuredDataPlan"
    )]
    pub structured_data_plan: Option<StructuredDataPlan>,
    /// Custom summary prompt. Not a platform field (it always writes a summary with its own
    /// prompt); accepted in the Vapi shape the platform derives from (spec §8.11, §11).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "summaryPlan"
    )]
    pub summary_plan: Option<SummaryPlan>,
    /// Skip analysis for conversations with fewer messages (default 2).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "minMessagesThreshold"
    )]
    pub min_messages_threshold: Option<i64>,
}

/// `analysis_plan.structured_data_plan`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StructuredDataPlan {
    /// Turns extraction on; when absent, extraction runs if a schema is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// JSON Schema (an object) of the extracted data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Prompt with placeholders; roles `system` and `user` only.
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<ChatMessage>,
    /// Reference to an analysis template (older SDK only); kept, not resolved by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "templateId")]
    pub template_id: Option<String>,
}

/// `analysis_plan.summary_plan`: an optional custom prompt for the call summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryPlan {
    /// `false` skips the summary; absent or `true` keeps it (the platform always summarizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Prompt with placeholders; roles `system` and `user` only.
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<ChatMessage>,
}

/// Values for the prompt placeholders.
#[derive(Debug, Clone, Copy)]
pub struct PlaceholderValues<'a> {
    /// Fills `{{schema}}` (as pretty JSON; empty when `None`).
    pub schema: Option<&'a Value>,
    /// Fills `{{transcript}}`.
    pub transcript: &'a str,
    /// Fills `{{ended_reason}}` / `{{endedReason}}`, e.g. `user_hangup`.
    pub ended_reason: &'a str,
}

/// Replaces `{{schema}}`, `{{transcript}}` and `{{ended_reason}}` (or `{{endedReason}}`; spaces
/// inside the braces allowed) in `template`. Unknown placeholders are left as written, and
/// inserted values are not scanned again.
pub fn fill_placeholders(template: &str, values: &PlaceholderValues<'_>) -> String {
    let mut out = String::with_capacity(template.len() + values.transcript.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match after[..end].trim() {
            "schema" => {
                if let Some(schema) = values.schema {
                    let text =
                        serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
                    out.push_str(&text);
                }
            }
            "transcript" => out.push_str(values.transcript),
            "ended_reason" | "endedReason" => out.push_str(values.ended_reason),
            _ => {
                out.push_str("{{");
                rest = after;
                continue;
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn render(messages: &[ChatMessage], values: &PlaceholderValues<'_>) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| ChatMessage::new(m.role, fill_placeholders(&m.content, values)))
        .collect()
}

impl StructuredDataPlan {
    /// Whether extraction runs: `enabled` if given, else whether a schema is present.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(self.schema.is_some())
    }

    /// The extraction prompt with placeholders filled; the default prompt when none is set.
    /// `values.schema` falls back to this plan's schema.
    pub fn render_messages(&self, values: &PlaceholderValues<'_>) -> Vec<ChatMessage> {
        let values = PlaceholderValues {
            schema: values.schema.or(self.schema.as_ref()),
            ..*values
        };
        if self.messages.is_empty() {
            render(
                &[
                    ChatMessage::new(ChatRole::System, DEFAULT_STRUCTURED_DATA_SYSTEM_PROMPT),
                    ChatMessage::new(ChatRole::User, DEFAULT_STRUCTURED_DATA_USER_PROMPT),
                ],
                &values,
            )
        } else {
            render(&self.messages, &values)
        }
    }
}

impl AnalysisPlan {
    /// The message-count threshold with the default (2) applied.
    pub fn min_messages_threshold(&self) -> u32 {
        self.min_messages_threshold
            .map_or(DEFAULT_MIN_MESSAGES_THRESHOLD, |n| {
                u32::try_from(n.max(0)).unwrap_or(u32::MAX)
            })
    }

    /// The structured-data plan when it is enabled.
    pub fn structured_data(&self) -> Option<&StructuredDataPlan> {
        self.structured_data_plan
            .as_ref()
            .filter(|p| p.is_enabled())
    }

    /// Whether structured analysis runs for a conversation of `message_count` messages.
    pub fn should_analyze(&self, message_count: usize) -> bool {
        self.structured_data().is_some()
            && message_count >= usize::try_from(self.min_messages_threshold()).unwrap_or(usize::MAX)
    }

    /// Whether a summary is written (always, unless a summary plan disables it).
    pub fn summary_enabled(&self) -> bool {
        self.summary_plan
            .as_ref()
            .and_then(|p| p.enabled)
            .unwrap_or(true)
    }

    /// The summary prompt with placeholders filled: the plan's messages, else the default.
    pub fn summary_messages(&self, values: &PlaceholderValues<'_>) -> Vec<ChatMessage> {
        match self
            .summary_plan
            .as_ref()
            .filter(|p| !p.messages.is_empty())
        {
            Some(plan) => render(&plan.messages, values),
            None => render(
                &[
                    ChatMessage::new(ChatRole::System, DEFAULT_SUMMARY_SYSTEM_PROMPT),
                    ChatMessage::new(ChatRole::User, DEFAULT_SUMMARY_USER_PROMPT),
                ],
                values,
            ),
        }
    }
}

fn validate_prompt(path: &str, messages: &[ChatMessage]) -> Result<(), ConfigError> {
    for (i, m) in messages.iter().enumerate() {
        if m.role == ChatRole::Assistant {
            return Err(ConfigError::unknown(
                join(path, &format!("[{i}].role")),
                "role",
                m.role.as_str(),
                &["system", "user"],
            ));
        }
    }
    Ok(())
}

impl ConfigSection for AnalysisPlan {
    /// Schema must be a JSON object, prompt roles system/user (spec §8.11), threshold ≥ 0.
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        if let Some(n) = self.min_messages_threshold {
            if n < 0 {
                return Err(ConfigError::invalid(
                    join(path, "min_messages_threshold"),
                    format!("{n} is negative"),
                ));
            }
        }
        if let Some(plan) = &self.structured_data_plan {
            let at = join(path, "structured_data_plan");
            if let Some(schema) = &plan.schema {
                if !schema.is_object() {
                    return Err(ConfigError::invalid(
                        join(&at, "schema"),
                        "must be a JSON Schema object",
                    ));
                }
            }
            validate_prompt(&join(&at, "messages"), &plan.messages)?;
        }
        if let Some(plan) = &self.summary_plan {
            validate_prompt(&join(path, "summary_plan.messages"), &plan.messages)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values<'a>(schema: Option<&'a Value>) -> PlaceholderValues<'a> {
        PlaceholderValues {
            schema,
            transcript: "user: hi {{schema}}",
            ended_reason: "user_hangup",
        }
    }

    #[test]
    fn fills_all_placeholders_once() {
        let schema = json!({"type":"object"});
        let out = fill_placeholders(
            "S={{schema}} T={{ transcript }} R={{ended_reason}}/{{endedReason}} X={{other}} {{",
            &values(Some(&schema)),
        );
        assert_eq!(
            out,
            "S={\n  \"type\": \"object\"\n} T=user: hi {{schema}} R=user_hangup/user_hangup X={{other}} {{"
        );
    }

    #[test]
    fn default_prompt_and_threshold() {
        let plan =
            AnalysisPlan::from_json(r#"{"structured_data_plan":{"schema":{"type":"object"}}}"#)
                .unwrap();
        assert_eq!(plan.min_messages_threshold(), 2);
        assert!(!plan.should_analyze(1));
        assert!(plan.should_analyze(2));
        let sd = plan.structured_data().unwrap();
        let msgs = sd.render_messages(&values(None));
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].content.starts_with("Schema: {"));
        assert!(msgs[1].content.ends_with("Call ended because: user_hangup"));
    }

    #[test]
    fn disabled_plan_does_not_analyze() {
        let plan = AnalysisPlan::from_json(
            r#"{"structuredDataPlan":{"enabled":false,"schema":{}},"minMessagesThreshold":0}"#,
        )
        .unwrap();
        assert_eq!(plan.min_messages_threshold(), 0);
        assert!(!plan.should_analyze(10));
        assert!(plan.summary_enabled());
    }

    #[test]
    fn bad_plans_name_the_field() {
        let err =
            AnalysisPlan::from_json(r#"{"structured_data_plan":{"schema":"x"}}"#).unwrap_err();
        assert_eq!(err.path(), "structured_data_plan.schema");
        let err = AnalysisPlan::from_json(
            r#"{"structured_data_plan":{"messages":[{"role":"assistant","content":"x"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "structured_data_plan.messages[0].role");
        let err = AnalysisPlan::from_json(r#"{"min_messages_threshold":-1}"#).unwrap_err();
        assert_eq!(err.path(), "min_messages_threshold");
    }

    #[test]
    fn summary_prompt_can_be_replaced() {
        let plan = AnalysisPlan::from_json(
            r#"{"summary_plan":{"messages":[{"role":"user","content":"Sum up: {{transcript}}"}]}}"#,
        )
        .unwrap();
        let msgs = plan.summary_messages(&values(None));
        assert_eq!(
            msgs,
            vec![ChatMessage::new(
                ChatRole::User,
                "Sum up: user: hi {{schema}}"
            )]
        );
        let default = AnalysisPlan::default().summary_messages(&values(None));
        assert_eq!(default[0].role, ChatRole::System);
    }
}
