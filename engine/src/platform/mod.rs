//! The platform's wire formats: call-control commands, the four webhook bodies, webhook signing and
//! the timestamp format they share.
//!
//! Everything here is plain data plus pure functions; sending HTTP requests is left to the host.

pub mod control;
pub mod signing;
pub mod time;
pub mod webhook;

pub use control::{CallControlResponse, ControlCommand, ControlError, RateLimited, RateLimiter};
pub use signing::{sign, verify, webhook_headers, SignatureError};
pub use time::{TimeError, Timestamp};
pub use webhook::{
    AssistantRequest, AssistantRequestResponse, AssistantSelection, CallInfo, CallStatus, CallType,
    Customer, EndOfCallReport, EndReason, Envelope, FunctionCall, JsonObject, PhoneNumberInfo,
    Pipeline, Role, StatusUpdate, ToolCall, ToolCallKind, ToolCallResult, ToolCalls,
    ToolCallsResponse, ToolOutcome, TranscriptMessage, WebhookBody, WebhookError, WebhookEvent,
    WebhookEventKind,
};
