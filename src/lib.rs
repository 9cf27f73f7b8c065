//! voxline: an embedded realtime voice engine for AI phone agents.
//!
//! This facade re-exports the workspace crates and hosts the tokio media
//! endpoint a telephony application points its RTP at.

pub use voxline_codecs as codecs;
pub use voxline_engine as engine;
pub use voxline_providers as providers;
