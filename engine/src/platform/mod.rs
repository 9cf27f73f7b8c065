//! The platform's wire formats: call-control commands, the four webhook bodies, webhook signing and
//! the timestamp format they share.
//!
//! Everything here is plain data plus pure functions; sending HTTP requests is left to the host.

pub mod control;
pub mod time;

pub use control::{CallControlResponse, ControlCommand, ControlError, RateLimited, RateLimiter};
pub use time::{TimeError, Timestamp};
