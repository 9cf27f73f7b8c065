//! voxline: an embedded realtime voice engine for AI phone agents.
//!
//! This facade re-exports the workspace crates and, at the top level, the tokio RTP
//! endpoint a telephony application points its RTP at ([`RtpEndpoint`]).

pub use voxline_codecs as codecs;
pub use voxline_engine as engine;
pub use voxline_providers as providers;

pub use voxline_engine::media::{
    EndpointAudio, EndpointError, EndpointOptions, EndpointStats, MediaConfig, ReceiverReport,
    RtpEndpoint,
};
