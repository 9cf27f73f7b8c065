//! Host-side reporting: the platform's webhook bodies built from a call's event stream, post-call
//! analysis through the LLM trait, and a stereo WAV recording of what was heard.
//!
//! [`CallReporter`] reads [`EventRecord`](crate::call::EventRecord)s and returns `status-update`
//! and `tool-calls` bodies as they happen, then exactly one `end-of-call-report` from
//! [`CallReporter::finish`], which consumes it. [`WavRecorder`] is a
//! [`RecordingSink`](crate::driver::RecordingSink) writing caller left, agent right.
//!
//! The engine's end reasons map to the platform's `end_reason` strings as
//! [`EndReason::as_str`](crate::call::EndReason::as_str) spells them: `user_hangup` and
//! `max_duration` are the platform's own; `assistant_ended`, `host_ended`, `silence_timeout`,
//! `voicemail`, `transferred`, `rejected`, `consent_declined` and `error` are the engine's.

pub mod analysis;
pub mod recording;
mod reporter;

pub use analysis::{AnalysisError, ModelReply, PostCallAnalyzer, DEFAULT_ANALYSIS_TIMEOUT};
pub use recording::{
    FinishedRecording, RecordingError, RecordingHandle, WavRecorder, DEFAULT_RECORDING_RATE,
};
pub use reporter::{CallMetadata, CallReport, CallReporter, UNFINISHED_STREAM_ERROR};

use crate::call::{CallStatus, Direction, EndReason};
use crate::platform;
use crate::provider::Role;

/// The platform's `end_reason` for an engine end reason (see the module docs for the strings).
pub fn platform_end_reason(reason: &EndReason) -> platform::EndReason {
    platform::EndReason::from_wire(reason.as_str())
}

/// The platform's `call.status` for an engine status.
pub fn platform_status(status: CallStatus) -> platform::CallStatus {
    match status {
        CallStatus::Ringing => platform::CallStatus::Ringing,
        CallStatus::InProgress => platform::CallStatus::InProgress,
        CallStatus::Ended => platform::CallStatus::Ended,
        CallStatus::EndedWithError => platform::CallStatus::EndedWithError,
        CallStatus::Transferred => platform::CallStatus::Transferred,
    }
}

/// The transcript role for a history role; tool results are not part of the platform's
/// transcript, so they have none.
pub fn platform_role(role: Role) -> Option<platform::Role> {
    match role {
        Role::System => Some(platform::Role::System),
        Role::User => Some(platform::Role::User),
        Role::Assistant => Some(platform::Role::Assistant),
        Role::Tool => None,
    }
}

/// The platform's `call.type` for a call direction.
pub fn call_type_for(direction: Direction) -> platform::CallType {
    match direction {
        Direction::Inbound => platform::CallType::InboundPhoneCall,
        Direction::Outbound => platform::CallType::OutboundPhoneCall,
        Direction::Web => platform::CallType::WebCall,
    }
}
