//! The typed errors of the codecs crate.
//!
//! Every fallible operation on bytes that came from the network returns one of
//! these instead of panicking, so a bad packet costs one packet, never the call.

use thiserror::Error;

/// Errors raised by the media primitives.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The sample rate is not one of 8, 16, 24 or 48 kHz.
    #[error("unsupported sample rate {0} Hz (expected 8000, 16000, 24000 or 48000)")]
    UnsupportedRate(u32),
    /// A frame was built from a slice whose length is not one 20 ms frame.
    #[error("frame at {rate} Hz needs {expected} samples, got {got}")]
    FrameLength {
        /// The declared rate in Hz.
        rate: u32,
        /// Samples in one 20 ms frame at that rate.
        expected: usize,
        /// Samples supplied.
        got: usize,
    },
    /// A packet carried no payload bytes; the caller should treat it as lost.
    #[error("empty {format} payload: nothing to decode (treat the packet as lost and conceal)")]
    EmptyPayload {
        /// The payload format name (e.g. "Opus").
        format: &'static str,
    },
    /// A payload's length does not fit its format.
    #[error("{format} payload of {len} bytes is {reason}")]
    PayloadLength {
        /// The payload format name.
        format: &'static str,
        /// Payload length in bytes.
        len: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// libopus rejected an operation (corrupt packet, bad argument).
    #[error("opus {op} failed: {source}")]
    Opus {
        /// The operation that failed ("decode", "encode", "set_bitrate", ...).
        op: &'static str,
        /// The error reported by libopus.
        #[source]
        source: audiopus::Error,
    },
    /// An output buffer is smaller than the codec may need.
    #[error("output buffer of {got} bytes is too small: pass at least {needed}")]
    OutputBufferTooSmall {
        /// Minimum size in bytes.
        needed: usize,
        /// Size supplied.
        got: usize,
    },
    /// Decoded or queued audio would overflow a codec's internal queue.
    #[error("codec queue full: {needed} samples do not fit in {free} free; pull frames before adding more")]
    QueueFull {
        /// Samples that had to be stored.
        needed: usize,
        /// Samples of space left.
        free: usize,
    },
    /// A duration (in RTP clock ticks) the codec cannot produce.
    #[error("cannot produce {ticks} ticks of audio: {reason}")]
    InvalidDuration {
        /// The requested duration in RTP clock ticks.
        ticks: u32,
        /// Why it is not acceptable.
        reason: &'static str,
    },
    /// A configuration value is out of range.
    #[error("invalid {what} {value}: expected {expected}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// The value given.
        value: i64,
        /// The accepted values.
        expected: &'static str,
    },
    /// A frame's rate differs from the rate a codec or resampler was built for.
    #[error("frame at {got} Hz given to a component built for {expected} Hz; resample first")]
    RateMismatch {
        /// The rate the component expects.
        expected: u32,
        /// The rate of the frame supplied.
        got: u32,
    },
    /// The payload format is not an audio codec (e.g. telephone-event).
    #[error("payload format {0} carries no audio; handle it outside the audio codecs")]
    NotAudio(&'static str),
    /// The resampling library failed to build or run a resampler.
    #[error("resampler {from} Hz -> {to} Hz: {detail}")]
    Resampler {
        /// Input rate in Hz.
        from: u32,
        /// Output rate in Hz.
        to: u32,
        /// The library's description of the failure.
        detail: String,
    },
    /// A malformed RTP packet, or one that cannot be written.
    #[error(transparent)]
    Rtp(#[from] crate::rtp::RtpError),
    /// A malformed telephone-event payload or an invalid DTMF request.
    #[error(transparent)]
    Dtmf(#[from] crate::dtmf::DtmfError),
    /// A payload-type mapping that was rejected.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}
