//! The platform's wire formats: call-control commands, the four webhook bodies, webhook signing and
//! the timestamp format they share.
//!
//! Everything here is plain data plus pure functions; sending HTTP requests is left to the host.

pub mod time;

pub use time::{TimeError, Timestamp};
