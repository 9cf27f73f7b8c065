//! Call-control commands a host sends to a live call (`POST /calls/{id}/control`), their response, and
//! the per-call command rate limit.
//!
//! Commands are validated on parse, so the call core only ever sees well-formed ones; the rate limiter
//! is sans-IO and runs on the time since call start that the caller passes in.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The command `type` values the platform defines, in the order the spec lists them.
pub const COMMAND_TYPES: [&str; 4] = ["inject-context", "say", "end-call", "transfer"];

/// One call-control command, as sent in the body of `POST /calls/{id}/control`.
///
/// Serializes as the platform's JSON (`{"type":"say","content":"…","end_after":false}`); parsing accepts
/// the camelCase aliases `triggerResponse` and `endAfter` and rejects anything the call could not act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    try_from = "Map<String, Value>"
)]
pub enum ControlCommand {
    /// Adds text to the assistant's context without speaking it (e.g. a verification code, a CRM lookup).
    InjectContext {
        /// The text to add; never empty.
        content: String,
        /// Whether the assistant answers right after the injection; `false` when omitted.
        trigger_response: bool,
    },
    /// Speaks `content` verbatim.
    Say {
        /// The text to speak; never empty.
        content: String,
        /// Whether to hang up once the text has been spoken; `false` when omitted.
        end_after: bool,
    },
    /// Hangs up, optionally after a final sentence.
    EndCall {
        /// Goodbye spoken before hanging up; `None` hangs up at once.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Transfers the caller to a phone number or SIP URI.
    Transfer {
        /// E.164 number (`+31612345678`) or SIP URI (`sip:desk@pbx.example.com`).
        destination: String,
        /// Announcement spoken before the transfer.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// Why a control command was rejected; each message names the command and field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The body is not JSON at all.
    #[error("control command is not valid JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("control command must be a JSON object like {{\"type\":\"say\",\"content\":\"…\"}}")]
    NotAnObject,
    /// The object has no usable `type`.
    #[error("control command has no string `type`; expected one of inject-context, say, end-call, transfer")]
    MissingType,
    /// `type` names a command the platform does not define.
    #[error("unknown control command type `{0}`; expected one of inject-context, say, end-call, transfer")]
    UnknownType(String),
    /// A required field is absent.
    #[error("`{command}` command is missing the required field `{field}`")]
    MissingField {
        /// The command type.
        command: &'static str,
        /// The canonical (snake_case) field name.
        field: &'static str,
    },
    /// A field is present but unusable.
    #[error("`{command}` command has an invalid `{field}`: {reason}")]
    InvalidField {
        /// The command type.
        command: &'static str,
        /// The field name as it appeared in the body.
        field: String,
        /// What is wrong and what is expected instead.
        reason: &'static str,
    },
    /// A field the command does not define (a typo, or another platform's spelling).
    #[error("`{command}` command has an unknown field `{field}`")]
    UnknownField {
        /// The command type.
        command: &'static str,
        /// The unexpected key.
        field: String,
    },
}

impl ControlCommand {
    /// Parses and validates a command from the raw request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, ControlError> {
        let value: Value = serde_json::from_slice(body).map_err(ControlError::MalformedJson)?;
        Self::from_value(value)
    }

    /// Parses and validates a command from an already decoded JSON value.
    pub fn from_value(value: Value) -> Result<Self, ControlError> {
        match value {
            Value::Object(map) => Self::from_map(map),
            _ => Err(ControlError::NotAnObject),
        }
    }

    /// The command's `type` string, e.g. `"end-call"`.
    pub fn command_type(&self) -> &'static str {
        match self {
            Self::InjectContext { .. } => COMMAND_TYPES[0],
            Self::Say { .. } => COMMAND_TYPES[1],
            Self::EndCall { .. } => COMMAND_TYPES[2],
            Self::Transfer { .. } => COMMAND_TYPES[3],
        }
    }

    /// Whether carrying out the command ends the call (hang-up or hand-off).
    pub fn ends_call(&self) -> bool {
        match self {
            Self::InjectContext { .. } => false,
            Self::Say { end_after, .. } => *end_after,
            Self::EndCall { .. } | Self::Transfer { .. } => true,
        }
    }

    fn from_map(map: Map<String, Value>) -> Result<Self, ControlError> {
        let command = match map.get("type") {
            Some(Value::String(name)) => COMMAND_TYPES
                .iter()
                .copied()
                .find(|known| *known == name)
                .ok_or_else(|| ControlError::UnknownType(name.clone()))?,
            _ => return Err(ControlError::MissingType),
        };
        let mut fields = Fields { command, map };
        fields.map.remove("type");
        let parsed = match command {
            "inject-context" => Self::InjectContext {
                content: fields.required_text("content")?,
                trigger_response: fields.flag("trigger_response", "triggerResponse")?,
            },
            "say" => Self::Say {
                content: fields.required_text("content")?,
                end_after: fields.flag("end_after", "endAfter")?,
            },
            "end-call" => Self::EndCall {
                message: fields.optional_text("message")?,
            },
            _ => Self::Transfer {
                destination: fields.destination()?,
                message: fields.optional_text("message")?,
            },
        };
        fields.finish()?;
        Ok(parsed)
    }
}

impl TryFrom<Map<String, Value>> for ControlCommand {
    type Error = ControlError;

    fn try_from(map: Map<String, Value>) -> Result<Self, Self::Error> {
        Self::from_map(map)
    }
}

/// The fields of one command object, consumed one by one so leftovers can be reported.
struct Fields {
    command: &'static str,
    map: Map<String, Value>,
}

impl Fields {
    fn invalid(&self, field: &str, reason: &'static str) -> ControlError {
        ControlError::InvalidField {
            command: self.command,
            field: field.to_owned(),
            reason,
        }
    }

    /// Takes a field by its canonical name or camelCase alias; both at once is ambiguous.
    fn take(
        &mut self,
        name: &'static str,
        alias: Option<&'static str>,
    ) -> Result<Option<(&'static str, Value)>, ControlError> {
        let canonical = self.map.remove(name).map(|v| (name, v));
        let aliased = alias.and_then(|a| self.map.remove(a).map(|v| (a, v)));
        match (canonical, aliased) {
            (Some(_), Some(_)) => {
                Err(self.invalid(name, "given twice, in snake_case and camelCase"))
            }
            (found, None) | (None, found) => Ok(found),
        }
    }

    fn required_text(&mut self, name: &'static str) -> Result<String, ControlError> {
        match self.take(name, None)? {
            None => Err(ControlError::MissingField {
                command: self.command,
                field: name,
            }),
            Some((_, Value::String(text))) if text.trim().is_empty() => {
                Err(self.invalid(name, "must not be empty"))
            }
            Some((_, Value::String(text))) => Ok(text),
            Some((key, _)) => Err(self.invalid(key, "must be a string")),
        }
    }

    /// An optional spoken message: absent, `null` and blank all mean "say nothing".
    fn optional_text(&mut self, name: &'static str) -> Result<Option<String>, ControlError> {
        match self.take(name, None)? {
            None | Some((_, Value::Null)) => Ok(None),
            Some((_, Value::String(text))) if text.trim().is_empty() => Ok(None),
            Some((_, Value::String(text))) => Ok(Some(text)),
            Some((key, _)) => Err(self.invalid(key, "must be a string or null")),
        }
    }

    /// A boolean defaulting to `false` when absent or `null` (the platform SDK's default).
    fn flag(&mut self, name: &'static str, alias: &'static str) -> Result<bool, ControlError> {
        match self.take(name, Some(alias))? {
            None | Some((_, Value::Null)) => Ok(false),
            Some((_, Value::Bool(flag))) => Ok(flag),
            Some((key, _)) => Err(self.invalid(key, "must be true or false")),
        }
    }

    fn destination(&mut self) -> Result<String, ControlError> {
        let destination = self.required_text("destination")?;
        let trimmed = destination.trim();
        if is_e164(trimmed) || is_sip_uri(trimmed) {
            Ok(trimmed.to_owned())
        } else {
            Err(self.invalid(
                "destination",
                "expected an E.164 number like +31612345678 or a SIP URI like sip:desk@pbx.example.com",
            ))
        }
    }

    fn finish(self) -> Result<(), ControlError> {
        match self.map.into_iter().next() {
            Some((field, _)) => Err(ControlError::UnknownField {
                command: self.command,
                field,
            }),
            None => Ok(()),
        }
    }
}

/// `+` then 2–15 digits, the first not zero (ITU-T E.164).
fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// `sip:` or `sips:` (any case) followed by `[user@]host[…]`, with no whitespace or control characters.
fn is_sip_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return false;
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let host_part = match rest.rsplit_once('@') {
        Some((user, host)) if !user.is_empty() => host,
        Some(_) => return false,
        None => rest,
    };
    let host = host_part.split([';', '?']).next().unwrap_or_default();
    !host.is_empty() && !host.starts_with(':')
}

/// The platform's reply to a control request: `{"success":true,"message":"Command sent successfully"}`.
///
/// It confirms dispatch to the call, not that the command has finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallControlResponse {
    /// Whether the command was handed to the call.
    pub success: bool,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CallControlResponse {
    /// The text the platform returns when a command was dispatched.
    pub const SENT_MESSAGE: &'static str = "Command sent successfully";

    /// The success reply, exactly as the platform sends it.
    pub fn sent() -> Self {
        Self {
            success: true,
            message: Some(Self::SENT_MESSAGE.to_owned()),
        }
    }

    /// A failure reply carrying the reason (e.g. the display form of a [`ControlError`]).
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            success: false,
            message: Some(reason.into()),
        }
    }
}

/// A command arrived while the call's budget was used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited: at most {limit} control commands per {window:?} per call; retry after {retry_after:?}")]
pub struct RateLimited {
    /// How long until one more command would be accepted.
    pub retry_after: Duration,
    /// Commands allowed per window.
    pub limit: usize,
    /// The window length.
    pub window: Duration,
}

impl RateLimited {
    /// `retry_after` rounded up to whole seconds, for an HTTP `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        }
    }
}

/// Sliding-window limit on control commands for one call (the platform allows 10 per minute).
///
/// Sans-IO: every call takes `now`, the time since call start (or any monotonic origin). It remembers
/// the instants of the last `limit` accepted commands in a buffer allocated once; rejected commands do
/// not use up budget.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: NonZeroUsize,
    window: Duration,
    accepted: VecDeque<Duration>,
}

impl RateLimiter {
    /// The platform's limit: commands per window per active call.
    pub const PLATFORM_LIMIT: NonZeroUsize = match NonZeroUsize::new(10) {
        Some(n) => n,
        None => unreachable!(),
    };
    /// The platform's window.
    pub const PLATFORM_WINDOW: Duration = Duration::from_secs(60);

    /// A limiter allowing `limit` commands in any `window`; a zero window never limits.
    pub fn new(limit: NonZeroUsize, window: Duration) -> Self {
        Self {
            limit,
            window,
            accepted: VecDeque::with_capacity(limit.get()),
        }
    }

    /// Accepts one command at `now` if the window has room, else says how long to wait.
    ///
    /// `now` should not go backwards; if it does, it is treated as the latest instant seen so a clock
    /// step cannot reopen the window early.
    pub fn try_acquire(&mut self, now: Duration) -> Result<(), RateLimited> {
        let now = self.clamp(now);
        self.expire(now);
        if self.accepted.len() < self.limit.get() {
            self.accepted.push_back(now);
            return Ok(());
        }
        let oldest = self.accepted.front().copied().unwrap_or(now);
        Err(RateLimited {
            retry_after: (oldest + self.window).saturating_sub(now),
            limit: self.limit.get(),
            window: self.window,
        })
    }

    /// How many commands would be accepted at `now` without waiting.
    pub fn remaining(&mut self, now: Duration) -> usize {
        let now = self.clamp(now);
        self.expire(now);
        self.limit.get() - self.accepted.len()
    }

    /// Commands allowed per window.
    pub fn limit(&self) -> usize {
        self.limit.get()
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn clamp(&self, now: Duration) -> Duration {
        self.accepted.back().map_or(now, |&last| now.max(last))
    }

    fn expire(&mut self, now: Duration) {
        while let Some(&oldest) = self.accepted.front() {
            if now.saturating_sub(oldest) >= self.window {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
    }
}

impl Default for RateLimiter {
    /// The platform's limit: 10 commands per minute.
    fn default() -> Self {
        Self::new(Self::PLATFORM_LIMIT, Self::PLATFORM_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_rules() {
        assert!(is_e164("+31612345678"));
        assert!(is_e164("+12"));
        assert!(is_e164("+123456789012345"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+0612345678"));
        assert!(!is_e164("0612345678"));
        assert!(!is_e164("+31 6 1234 5678"));
        assert!(!is_e164("+"));
    }

    #[test]
    fn sip_uri_rules() {
        assert!(is_sip_uri("sip:desk@pbx.example.com"));
        assert!(is_sip_uri("sips:desk@pbx.example.com:5061;transport=tls"));
        assert!(is_sip_uri("SIP:+31850835037@trunk.example.net"));
        assert!(is_sip_uri("sip:pbx.example.com"));
        assert!(!is_sip_uri("sip:"));
        assert!(!is_sip_uri("sip:@pbx.example.com"));
        assert!(!is_sip_uri("sip:desk@"));
        assert!(!is_sip_uri("sip:desk @pbx.example.com"));
        assert!(!is_sip_uri("tel:+31612345678"));
        assert!(!is_sip_uri("https://pbx.example.com"));
    }

    #[test]
    fn retry_after_rounds_up() {
        let limited = RateLimited {
            retry_after: Duration::from_millis(1_500),
            limit: 10,
            window: Duration::from_secs(60),
        };
        assert_eq!(limited.retry_after_secs(), 2);
        let exact = RateLimited {
            retry_after: Duration::from_secs(3),
            ..limited
        };
        assert_eq!(exact.retry_after_secs(), 3);
    }
}
