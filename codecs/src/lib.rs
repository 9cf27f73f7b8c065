//! voxline-codecs: the media primitives of a voice call, pure and synchronous.
//!
//! Nothing here does I/O, spawns tasks or reads a clock: every time-dependent
//! component takes the current instant as an argument, so it is deterministic,
//! testable on virtual time and benchable in isolation.

pub mod codec;
pub mod dtmf;
pub mod error;
mod fifo;
pub mod format;
pub mod frame;
pub mod g711;
pub mod jitter;
pub mod l16;
pub mod opus;
pub mod registry;
pub mod resample;
pub mod rtp;
pub mod seq;
pub mod stats;
#[cfg(test)]
mod test_signal;

pub use codec::{
    EncodedPacket, FrameDecoder, FrameEncoder, PacketDuration, PcmDecoder, PcmEncoder, PcmEncoding,
};
pub use dtmf::{DtmfEvent, DtmfReceiver, DtmfSender, TelephoneEvent};
pub use error::CodecError;
pub use format::PayloadFormat;
pub use frame::{AudioFrame, FrameOrigin, SampleRate, FRAME_MS, MAX_FRAME_SAMPLES};
pub use jitter::{
    InsertOutcome, JitterBuffer, JitterConfig, JitterError, JitterStats, Playout, PlayoutAdjust,
};
pub use opus::{opus_packet_ticks, OpusConfig, OpusDecoder, OpusEncoder};
pub use registry::{PayloadRegistry, RtpMap};
pub use resample::Resampler;
pub use rtp::{RtpError, RtpHeader, RtpPacket, RtpSender, RtpSource, RtpWriter, SourceOutcome};
pub use seq::{SeqUnwrapper, TimestampUnwrapper};
pub use stats::{ReceiverStats, ReportBlock};
