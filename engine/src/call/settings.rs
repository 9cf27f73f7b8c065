//! The resolved, typed settings one call runs with.
//!
//! Built from the assistant config (or directly by hosts and tests); every
//! duration is a `Duration` and every default is already applied.

use std::time::Duration;

use crate::provider::ToolSpec;

/// Which way the call was set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The caller dialled the agent.
    #[default]
    Inbound,
    /// The agent dialled out.
    Outbound,
    /// A browser or app session.
    Web,
}

/// Turn-taking knobs (`speech_config.turn_taking`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TurnSettings {
    /// Shortest pause after the caller stops before the agent answers.
    pub endpointing_min_delay: Duration,
    /// Longest wait after the caller stops before answering anyway.
    pub endpointing_max_delay: Duration,
    /// Caller speech needed over the agent before it counts as a barge-in.
    pub interruption_min_duration: Duration,
    /// Words needed before it counts as a barge-in (0 = off).
    pub interruption_min_words: u32,
    /// Resume the paused agent if no words arrive within this time; `None` disables resuming.
    pub false_interruption_timeout: Option<Duration>,
}

impl Default for TurnSettings {
    fn default() -> Self {
        TurnSettings {
            endpointing_min_delay: Duration::from_millis(400),
            endpointing_max_delay: Duration::from_secs(2),
            interruption_min_duration: Duration::from_millis(300),
            interruption_min_words: 0,
            false_interruption_timeout: Some(Duration::from_millis(1500)),
        }
    }
}

/// Autonomous silence handling (`speech_config.silence`).
#[derive(Clone, Debug, PartialEq)]
pub struct SilenceSettings {
    /// Silence before the first check.
    pub first_check: Duration,
    /// Silence between later checks.
    pub interval: Duration,
    /// Checks before the call ends.
    pub max_attempts: u32,
    /// Sentences for successive checks (reused from the last when fewer than attempts).
    pub messages: Vec<String>,
    /// Spoken before hanging up after the last check.
    pub final_message: Option<String>,
}

impl Default for SilenceSettings {
    fn default() -> Self {
        SilenceSettings {
            first_check: Duration::from_secs(3),
            interval: Duration::from_secs(12),
            max_attempts: 3,
            messages: vec![
                "Are you still there?".to_string(),
                "I'm still here if you need me.".to_string(),
            ],
            final_message: Some(
                "I haven't heard from you, so I'll end the call now. Goodbye.".to_string(),
            ),
        }
    }
}

/// One destination of the built-in transfer tool.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferDestination {
    /// E.164 number or SIP URI.
    pub number: String,
    /// When to pick it (shown to the model).
    pub description: String,
    /// Announcement spoken before transferring.
    pub message: Option<String>,
}

/// What happens when the model calls a tool.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolKind {
    /// A host function: raises a tool-call event and (unless async) waits for the result.
    Function {
        /// Don't wait for the result; the model continues at once.
        is_async: bool,
        /// Spoken while the tool runs.
        message: Option<String>,
        /// How long to wait for the host's result.
        timeout: Duration,
    },
    /// Built-in: hang up (after `end_call_message`, if set).
    EndCall,
    /// Built-in: transfer to one of the destinations.
    Transfer {
        /// Allowed destinations.
        destinations: Vec<TransferDestination>,
    },
}

/// A tool as the call uses it: what the model sees and what it does.
#[derive(Clone, Debug, PartialEq)]
pub struct CallTool {
    /// Name, description and argument schema given to the model.
    pub spec: ToolSpec,
    /// Behaviour when called.
    pub kind: ToolKind,
}

/// Everything one call needs to know, with defaults applied.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CallSettings {
    /// Inbound, outbound or web.
    pub direction: Direction,
    /// The system prompt.
    pub system_prompt: String,
    /// Greeting spoken when the call starts (already chosen for the direction).
    pub first_message: Option<String>,
    /// Turn-taking knobs.
    pub turn: TurnSettings,
    /// Hard cap on call length.
    pub max_duration: Option<Duration>,
    /// Autonomous silence handling, when enabled.
    pub silence: Option<SilenceSettings>,
    /// Voicemail detection (outbound): `Some(message)` enables it; the inner message is spoken before hanging up.
    pub voicemail: Option<Option<String>>,
    /// Phrases that end the call when the agent says them.
    pub end_call_phrases: Vec<String>,
    /// Spoken before the agent ends the call itself.
    pub end_call_message: Option<String>,
    /// Literal replacements applied to text before TTS.
    pub pronunciation: Vec<(String, String)>,
    /// Tools the model may call.
    pub tools: Vec<CallTool>,
    /// Recording consent prompt (inbound): when set, nothing reaches STT/LLM before the caller agrees.
    pub recording_consent: Option<String>,
    /// Speech-to-speech realtime pipeline instead of STT → LLM → TTS.
    pub realtime: bool,
    /// Model temperature.
    pub temperature: Option<f32>,
    /// Model output token cap.
    pub max_tokens: Option<u32>,
    /// Spoken when a provider fails on a turn.
    pub error_message: Option<String>,
    /// How much of the conversation the call keeps for the model (default: the latest
    /// [`DEFAULT_HISTORY_LIMIT`] messages). The event stream carries every message either way.
    pub history_limit: HistoryLimit,
}

/// Messages a call keeps for the model by default: about 50 exchanges, more than ten minutes of
/// a phone conversation at a turn every 12 s. A bound keeps a call's memory fixed however long
/// it runs and keeps each model request's prompt (its tokens and prefill time) from growing
/// without end.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// How much of the conversation a call keeps for the model.
///
/// The system prompt always stays. Whatever the bound, every message still goes out on the
/// event stream, so transcripts and end-of-call reports built from it are complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryLimit {
    /// The whole conversation: memory and prompt size grow with the call.
    Whole,
    /// The latest this many messages after the system prompt (a tool result stays with the
    /// message that called it, so the window may hold one or two more).
    Latest(usize),
}

impl HistoryLimit {
    /// The most messages kept after the system prompt, `None` for the whole conversation.
    pub fn messages(&self) -> Option<usize> {
        match *self {
            HistoryLimit::Whole => None,
            HistoryLimit::Latest(n) => Some(n),
        }
    }
}

impl Default for HistoryLimit {
    fn default() -> Self {
        HistoryLimit::Latest(DEFAULT_HISTORY_LIMIT)
    }
}

impl CallSettings {
    /// The tool specs given to the model.
    pub fn tool_specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec.clone()).collect()
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&CallTool> {
        self.tools.iter().find(|t| t.spec.name == name)
    }

    /// Applies the pronunciation replacements to text headed for TTS.
    pub fn pronounce(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (from, to) in &self.pronunciation {
            if !from.is_empty() {
                out = out.replace(from.as_str(), to);
            }
        }
        out
    }
}

impl From<crate::config::CallDirection> for Direction {
    fn from(d: crate::config::CallDirection) -> Self {
        match d {
            crate::config::CallDirection::Inbound => Direction::Inbound,
            crate::config::CallDirection::Outbound => Direction::Outbound,
            crate::config::CallDirection::Web => Direction::Web,
        }
    }
}

impl CallSettings {
    /// The settings a call runs with for a validated assistant and call direction:
    /// the direction picks the greeting, voicemail and consent behaviour.
    pub fn from_assistant(
        assistant: &crate::config::Assistant,
        direction: crate::config::CallDirection,
    ) -> Self {
        use crate::config::Tool;
        let turn = assistant.turn_taking();
        let llm = &assistant.llm_config;
        let tools = assistant
            .tools()
            .into_iter()
            .map(|tool| match tool {
                Tool::Function(f) => CallTool {
                    spec: ToolSpec {
                        name: f.name.clone(),
                        description: f.description.clone().unwrap_or_default(),
                        parameters: f
                            .parameters
                            .clone()
                            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                    },
                    kind: ToolKind::Function {
                        is_async: f.is_async,
                        message: f.message.clone(),
                        timeout: f.timeout(),
                    },
                },
                Tool::EndCall => CallTool {
                    spec: ToolSpec {
                        name: "end_call".into(),
                        description: "End the phone call. Use it when the conversation is over or the caller asks to hang up."
                            .into(),
                        parameters: serde_json::json!({"type": "object", "properties": {}}),
                    },
                    kind: ToolKind::EndCall,
                },
                Tool::TransferCall(t) => {
                    let numbers: Vec<String> = t.destinations.iter().map(|d| d.number.clone()).collect();
                    let described: Vec<String> = t
                        .destinations
                        .iter()
                        .map(|d| format!("{} ({})", d.number, d.description))
                        .collect();
                    CallTool {
                        spec: ToolSpec {
                            name: "transfer_call".into(),
                            description: format!(
                                "Transfer the call to a person or department. Destinations: {}.",
                                described.join("; ")
                            ),
                            parameters: serde_json::json!({
                                "type": "object",
                                "properties": {"destination": {"type": "string", "enum": numbers}},
                                "required": ["destination"]
                            }),
                        },
                        kind: ToolKind::Transfer {
                            destinations: t
                                .destinations
                                .iter()
                                .map(|d| TransferDestination {
                                    number: d.number.clone(),
                                    description: d.description.clone(),
                                    message: d.message.clone(),
                                })
                                .collect(),
                        },
                    }
                }
            })
            .collect();
        CallSettings {
            direction: direction.into(),
            system_prompt: llm.system_prompt().unwrap_or_default(),
            first_message: assistant.first_message_for(direction).map(str::to_string),
            turn: TurnSettings {
                endpointing_min_delay: turn.endpointing_min_delay,
                endpointing_max_delay: turn.endpointing_max_delay,
                interruption_min_duration: turn.interruption_min_duration,
                interruption_min_words: turn.interruption_min_words,
                false_interruption_timeout: turn.false_interruption_timeout,
            },
            max_duration: assistant.max_duration(),
            silence: assistant.silence_handling().map(|s| SilenceSettings {
                first_check: s.first_check,
                interval: s.interval,
                max_attempts: s.max_attempts,
                messages: s.messages.clone(),
                final_message: s.final_message.clone(),
            }),
            voicemail: assistant.voicemail_for(direction).map(|v| v.message),
            end_call_phrases: assistant.end_call_phrases().to_vec(),
            end_call_message: assistant.end_call_message().map(str::to_string),
            pronunciation: assistant
                .pronunciation()
                .iter()
                .map(|r| (r.from.clone(), r.to.clone()))
                .collect(),
            tools,
            recording_consent: assistant
                .recording_consent_for(direction)
                .map(|c| c.message.clone()),
            realtime: assistant.realtime().is_some(),
            temperature: llm.temperature.map(|t| t as f32),
            max_tokens: llm
                .max_completion_tokens
                .and_then(|t| u32::try_from(t).ok()),
            error_message: None,
            history_limit: HistoryLimit::default(),
        }
    }
}
