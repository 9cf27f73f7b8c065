//! voxline-codecs: the media primitives of a voice call, pure and synchronous.
//!
//! Nothing here does I/O, spawns tasks or reads a clock: every time-dependent
//! component takes the current instant as an argument, so it is deterministic,
//! testable on virtual time and benchable in isolation.

pub mod dtmf;
pub mod error;
pub mod format;
pub mod frame;
pub mod registry;
pub mod rtp;
pub mod seq;
pub mod stats;

pub use dtmf::{DtmfEvent, DtmfReceiver, DtmfSender, TelephoneEvent};
pub use error::CodecError;
pub use format::PayloadFormat;
pub use frame::{AudioFrame, FrameOrigin, SampleRate, FRAME_MS, MAX_FRAME_SAMPLES};
pub use registry::{PayloadRegistry, RtpMap};
pub use rtp::{RtpError, RtpHeader, RtpPacket, RtpSender, RtpSource, RtpWriter, SourceOutcome};
pub use seq::{SeqUnwrapper, TimestampUnwrapper};
pub use stats::{ReceiverStats, ReportBlock};
