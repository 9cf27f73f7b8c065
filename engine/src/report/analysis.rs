//! Post-call analysis through the engine's [`LlmProvider`] trait: the call summary and the
//! structured data of `analysis_plan.structured_data_plan` (spec §6, §8.11, §9.4).
//!
//! Prompts come from the config helpers ([`AnalysisPlan::summary_messages`],
//! [`StructuredDataPlan::render_messages`]) with `{{schema}}`, `{{transcript}}` and
//! `{{ended_reason}}` filled. Every model request is bounded by a timeout; a failure is returned
//! as an [`AnalysisError`] so the end-of-call report can still be sent, stating it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::llm::{ChatMessage as PromptMessage, ChatRole};
use crate::config::{AnalysisPlan, PlaceholderValues, StructuredDataPlan};
use crate::platform::{JsonObject, Role as WireRole, TranscriptMessage};
use crate::provider::{
    ChatMessage, LlmEvent, LlmProvider, LlmRequest, ProviderError, Role, TokenUsage,
};

/// How long one post-call model request may take by default (summary and extraction each).
pub const DEFAULT_ANALYSIS_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest model reply quoted back in an [`AnalysisError::NotJson`] message.
const REPLY_EXCERPT_CHARS: usize = 120;

/// Why a post-call model request gave no usable result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    /// No model was given to the analyzer ([`PostCallAnalyzer::disabled`]).
    #[error("post-call analysis has no language model; pass one to PostCallAnalyzer::new")]
    NoModel,
    /// The model request failed.
    #[error("post-call model request failed: {0}")]
    Provider(#[from] ProviderError),
    /// The model did not finish within the timeout.
    #[error("post-call model request timed out after {0:?}; raise PostCallAnalyzer::with_timeout or use a faster model")]
    TimedOut(Duration),
    /// The model finished without any text.
    #[error("post-call model returned no text")]
    EmptyReply,
    /// The structured-data reply is not JSON.
    #[error("structured data reply is not JSON ({detail}): {excerpt:?}")]
    NotJson {
        /// The parser's complaint.
        detail: String,
        /// The start of the reply.
        excerpt: String,
    },
    /// The structured-data reply is JSON but not an object.
    #[error("structured data reply is JSON but not an object; the schema describes an object")]
    NotAnObject,
    /// The assistant's `analysis_plan` could not be read.
    #[error("analysis_plan is invalid: {0}")]
    InvalidPlan(String),
}

/// Runs the post-call model requests: one for the summary, one for structured data.
///
/// Cloning is cheap (the model is shared).
#[derive(Clone)]
pub struct PostCallAnalyzer {
    llm: Option<Arc<dyn LlmProvider>>,
    timeout: Duration,
}

impl std::fmt::Debug for PostCallAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostCallAnalyzer")
            .field("llm", &self.llm.as_ref().map(|l| l.name().to_owned()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A successful model reply: the text and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    /// The reply text, trimmed.
    pub text: String,
    /// Tokens the provider reported (zero when it reported none).
    pub usage: TokenUsage,
}

impl PostCallAnalyzer {
    /// An analyzer using `llm` (the catalog's post-call model, or the call's own) with the
    /// default timeout.
    pub fn new(llm: Arc<dyn LlmProvider>) -> Self {
        Self {
            llm: Some(llm),
            timeout: DEFAULT_ANALYSIS_TIMEOUT,
        }
    }

    /// An analyzer without a model: summaries are left empty and configured structured data
    /// reports [`AnalysisError::NoModel`].
    pub fn disabled() -> Self {
        Self {
            llm: None,
            timeout: DEFAULT_ANALYSIS_TIMEOUT,
        }
    }

    /// Sets the time each model request may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time each model request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a model is configured.
    pub fn has_model(&self) -> bool {
        self.llm.is_some()
    }

    /// Writes the call summary with the plan's summary prompt (or the default one).
    pub async fn summarize(
        &self,
        plan: &AnalysisPlan,
        values: &PlaceholderValues<'_>,
    ) -> Result<ModelReply, AnalysisError> {
        let messages = plan.summary_messages(values);
        self.ask(&messages, None).await
    }

    /// Extracts structured data per `plan`; the reply must be one JSON object (a Markdown code
    /// fence or text around the object is tolerated).
    pub async fn extract(
        &self,
        plan: &StructuredDataPlan,
        values: &PlaceholderValues<'_>,
    ) -> Result<(JsonObject, TokenUsage), AnalysisError> {
        let messages = plan.render_messages(values);
        let reply = self.ask(&messages, Some(0.0)).await?;
        let object = parse_object(&reply.text)?;
        Ok((object, reply.usage))
    }

    /// Sends one prompt and collects the streamed reply, within the timeout.
    async fn ask(
        &self,
        prompt: &[PromptMessage],
        temperature: Option<f32>,
    ) -> Result<ModelReply, AnalysisError> {
        let llm = self.llm.as_ref().ok_or(AnalysisError::NoModel)?;
        let request = LlmRequest {
            messages: prompt.iter().map(to_provider_message).collect(),
            tools: Vec::new(),
            temperature,
            max_tokens: None,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stream = llm.stream(request, tx);
        let collect = async move {
            let mut text = String::new();
            let mut usage = TokenUsage::default();
            while let Some(event) = rx.recv().await {
                match event {
                    LlmEvent::TextDelta(delta) => text.push_str(&delta),
                    LlmEvent::Usage(u) => {
                        usage.prompt_tokens += u.prompt_tokens;
                        usage.completion_tokens += u.completion_tokens;
                    }
                    LlmEvent::Done => break,
                    LlmEvent::FirstByte | LlmEvent::ToolCall(_) => {}
                }
            }
            (text, usage)
        };
        // The stream's sender is dropped when the request ends, so collecting always finishes.
        let joined = tokio::time::timeout(self.timeout, async { tokio::join!(stream, collect) })
            .await
            .map_err(|_| AnalysisError::TimedOut(self.timeout))?;
        let (result, (text, usage)) = joined;
        result?;
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(AnalysisError::EmptyReply);
        }
        Ok(ModelReply { text, usage })
    }
}

fn to_provider_message(message: &PromptMessage) -> ChatMessage {
    let role = match message.role {
        ChatRole::System => Role::System,
        ChatRole::User => Role::User,
        ChatRole::Assistant => Role::Assistant,
    };
    ChatMessage::text(role, message.content.clone())
}

/// The transcript as the `{{transcript}}` placeholder shows it: one `role: content` line per
/// message, in order.
pub fn transcript_text(messages: &[TranscriptMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(match m.role {
            WireRole::System => "system",
            WireRole::User => "user",
            WireRole::Assistant => "assistant",
        });
        out.push_str(": ");
        out.push_str(&m.content);
    }
    out
}

/// Reads the JSON object in a model reply, tolerating a Markdown code fence or prose around it.
pub fn parse_object(reply: &str) -> Result<JsonObject, AnalysisError> {
    let trimmed = strip_fence(reply.trim());
    let candidate = match (trimmed.find('{'), trimmed.rfind('}')) {
        (Some(start), Some(end)) if start < end && !trimmed.starts_with(['[', '"']) => {
            &trimmed[start..=end]
        }
        _ => trimmed,
    };
    match serde_json::from_str::<Value>(candidate) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(AnalysisError::NotAnObject),
        Err(e) => Err(AnalysisError::NotJson {
            detail: e.to_string(),
            excerpt: reply.chars().take(REPLY_EXCERPT_CHARS).collect(),
        }),
    }
}

/// Removes a surrounding ```` ```json … ``` ```` fence, if there is one.
fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    // Drop the info string (e.g. `json`) on the opening line.
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_found_in_fences_and_prose() {
        let plain = parse_object(r#"{"a":1}"#).expect("plain");
        assert_eq!(plain["a"], 1);
        let fenced = parse_object("```json\n{\"a\": 2}\n```").expect("fenced");
        assert_eq!(fenced["a"], 2);
        let prose = parse_object("Here you go: {\"a\": 3} Hope that helps.").expect("prose");
        assert_eq!(prose["a"], 3);
    }

    #[test]
    fn non_objects_are_errors() {
        assert_eq!(parse_object("[1, 2]"), Err(AnalysisError::NotAnObject));
        assert_eq!(parse_object("42"), Err(AnalysisError::NotAnObject));
        assert!(matches!(
            parse_object("I cannot help with that."),
            Err(AnalysisError::NotJson { .. })
        ));
        assert!(matches!(
            parse_object("{\"a\": }"),
            Err(AnalysisError::NotJson { .. })
        ));
    }

    #[test]
    fn transcript_lines() {
        let messages = [
            TranscriptMessage {
                role: WireRole::Assistant,
                content: "Hello".into(),
            },
            TranscriptMessage {
                role: WireRole::User,
                content: "Hi".into(),
            },
        ];
        assert_eq!(transcript_text(&messages), "assistant: Hello\nuser: Hi");
        assert_eq!(transcript_text(&[]), "");
    }
}
