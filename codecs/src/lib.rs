//! voxline-codecs: the media primitives of a voice call, pure and synchronous.
//!
//! Nothing here does I/O, spawns tasks or reads a clock: every time-dependent
//! component takes the current instant as an argument, so it is deterministic,
//! testable on virtual time and benchable in isolation.

pub mod error;
pub mod format;
pub mod frame;
pub mod jitter;
pub mod seq;

pub use error::CodecError;
pub use format::PayloadFormat;
pub use frame::{AudioFrame, FrameOrigin, SampleRate, FRAME_MS, MAX_FRAME_SAMPLES};
pub use jitter::{
    InsertOutcome, JitterBuffer, JitterConfig, JitterError, JitterStats, Playout, PlayoutAdjust,
};
pub use seq::{SeqUnwrapper, TimestampUnwrapper};
