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
