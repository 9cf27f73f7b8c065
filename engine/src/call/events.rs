//! The call's ordered event stream: everything a host needs to follow a call and
//! build the platform's webhooks (status, speech, transcripts, tools, latency, usage).

use serde::{Deserialize, Serialize};

use crate::provider::{Role, Stage};

/// Lifecycle status of a call (the platform's `call.status` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Set up, not yet answered by the agent.
    Ringing,
    /// The conversation is running.
    InProgress,
    /// Ended normally.
    Ended,
    /// Ended because something failed.
    EndedWithError,
    /// Handed over to another destination.
    Transferred,
}

/// Why a call ended (the platform's `end_reason`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The caller hung up.
    UserHangup,
    /// The agent ended the call (end_call tool, end-call phrase).
    AssistantEnded,
    /// The host ended it through call control.
    HostEnded,
    /// `max_duration_seconds` was reached.
    MaxDuration,
    /// Autonomous silence handling gave up.
    SilenceTimeout,
    /// Voicemail was detected on an outbound call.
    Voicemail,
    /// The call was transferred.
    Transferred,
    /// The assistant request was rejected.
    Rejected,
    /// The caller declined recording consent (or never answered the prompt).
    ConsentDeclined,
    /// A provider or media failure ended the call.
    Error,
}

impl CallStatus {
    /// The platform's wire string, e.g. `in-progress` (same as the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Ended => "ended",
            CallStatus::EndedWithError => "ended-with-error",
            CallStatus::Transferred => "transferred",
        }
    }

    /// True for the statuses a call ends in (`ended`, `ended-with-error`, `transferred`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallStatus::Ended | CallStatus::EndedWithError | CallStatus::Transferred
        )
    }
}

impl EndReason {
    /// The `end_reason` string the platform's webhooks carry (same as the serde form).
    ///
    /// The platform documents `user_hangup` and `max_duration`; the others are the engine's own
    /// snake_case names: `assistant_ended`, `host_ended`, `silence_timeout`, `voicemail`,
    /// `transferred`, `rejected`, `consent_declined`, `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::UserHangup => "user_hangup",
            EndReason::AssistantEnded => "assistant_ended",
            EndReason::HostEnded => "host_ended",
            EndReason::MaxDuration => "max_duration",
            EndReason::SilenceTimeout => "silence_timeout",
            EndReason::Voicemail => "voicemail",
            EndReason::Transferred => "transferred",
            EndReason::Rejected => "rejected",
            EndReason::ConsentDeclined => "consent_declined",
            EndReason::Error => "error",
        }
    }
}

/// One event of the stream, stamped with call time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the stream, from 0, without gaps.
    pub seq: u64,
    /// Call time in milliseconds since the call started.
    pub at_ms: u64,
    /// The event.
    #[serde(flatten)]
    pub event: CallEvent,
}

/// Per-turn latency, from the end of the caller's speech to the first agent audio out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnLatency {
    /// Caller stopped speaking → first agent audio frame played (voice to voice).
    pub voice_to_voice_ms: u64,
    /// Caller stopped → turn committed (endpointing wait, incl. waiting for the final transcript).
    pub endpointing_ms: u64,
    /// Turn committed → first model token.
    pub llm_first_token_ms: Option<u64>,
    /// First text sent to TTS → first TTS audio.
    pub tts_first_audio_ms: Option<u64>,
}

/// Usage counters for billing and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Caller audio sent to speech recognition (or the realtime model), in seconds.
    pub stt_audio_seconds: f64,
    /// Agent audio played to the caller, in seconds.
    pub agent_audio_seconds: f64,
    /// Prompt tokens over all model requests.
    pub llm_prompt_tokens: u64,
    /// Completion tokens over all model requests.
    pub llm_completion_tokens: u64,
    /// Characters sent to TTS.
    pub tts_characters: u64,
}

/// What happened in the call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CallEvent {
    /// The call's status changed.
    Status {
        /// New status.
        status: CallStatus,
        /// Why it ended (terminal statuses only).
        #[serde(skip_serializing_if = "Option::is_none")]
        end_reason: Option<EndReason>,
        /// What failed (`ended-with-error` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A message committed earlier was taken back out of the history (the caller kept
    /// talking before the agent answered; the text returns as part of a longer message).
    MessageRetracted {
        /// Who said it.
        role: Role,
        /// The retracted text.
        content: String,
    },
    /// The caller started speaking (VAD).
    CallerSpeechStarted,
    /// The caller stopped speaking (VAD).
    CallerSpeechStopped,
    /// A caller transcript, partial or final.
    Transcript {
        /// The text.
        text: String,
        /// True when the text will not change.
        is_final: bool,
    },
    /// A message was committed to the conversation history.
    Message {
        /// Who said it.
        role: Role,
        /// What was said (for the agent: what was actually played).
        content: String,
    },
    /// The agent started speaking an utterance.
    AgentSpeechStarted {
        /// The agent turn.
        turn: u64,
    },
    /// The agent finished an utterance.
    AgentSpeechStopped {
        /// The agent turn.
        turn: u64,
        /// The text spoken.
        text: String,
    },
    /// The caller barged in; the agent stopped.
    AgentInterrupted {
        /// The agent turn.
        turn: u64,
        /// The part actually played to the caller.
        spoken: String,
        /// The whole text the agent had produced.
        full: String,
    },
    /// The agent paused for possible caller speech.
    AgentPaused {
        /// The agent turn.
        turn: u64,
    },
    /// The agent resumed after a false interruption.
    AgentResumed {
        /// The agent turn.
        turn: u64,
    },
    /// The model called a host tool; answer with a tool result.
    ToolCall {
        /// Call id to echo in the result.
        id: String,
        /// Function name.
        name: String,
        /// Arguments as a JSON object.
        arguments: serde_json::Value,
        /// True for async tools (no result awaited).
        is_async: bool,
    },
    /// A tool finished (host result, error or timeout).
    ToolResult {
        /// The call id.
        id: String,
        /// Function name.
        name: String,
        /// The result JSON (or an error object).
        result: serde_json::Value,
        /// True when no result arrived in time.
        timed_out: bool,
    },
    /// The agent transfers the call.
    Transfer {
        /// E.164 number or SIP URI.
        destination: String,
    },
    /// A DTMF digit from the caller.
    Dtmf {
        /// The digit (0-9, *, #, A-D).
        digit: char,
    },
    /// Voicemail was detected on an outbound call.
    VoicemailDetected {
        /// The transcript that matched.
        transcript: String,
    },
    /// Latency of an agent turn.
    Latency {
        /// The agent turn.
        turn: u64,
        /// The measurements.
        #[serde(flatten)]
        latency: TurnLatency,
    },
    /// A provider failed; the call continues (fallback) unless a status event follows.
    ProviderError {
        /// Which stage.
        stage: Stage,
        /// What happened.
        message: String,
    },
    /// Usage totals, emitted once when the call ends.
    Usage(Usage),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_match_the_serde_form() {
        for status in [
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Ended,
            CallStatus::EndedWithError,
            CallStatus::Transferred,
        ] {
            assert_eq!(
                serde_json::to_value(status).expect("serializes"),
                status.as_str()
            );
        }
        for reason in [
            EndReason::UserHangup,
            EndReason::AssistantEnded,
            EndReason::HostEnded,
            EndReason::MaxDuration,
            EndReason::SilenceTimeout,
            EndReason::Voicemail,
            EndReason::Transferred,
            EndReason::Rejected,
            EndReason::ConsentDeclined,
            EndReason::Error,
        ] {
            assert_eq!(
                serde_json::to_value(&reason).expect("serializes"),
                reason.as_str()
            );
        }
        assert!(CallStatus::Transferred.is_terminal());
        assert!(!CallStatus::InProgress.is_terminal());
    }
}
