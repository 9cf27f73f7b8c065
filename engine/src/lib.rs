//! voxline-engine: one phone call as a sans-IO state machine plus a thin tokio driver.
//!
//! It owns config types (the platform's assistant schema), the media path that
//! strings the codecs together, VAD, turn-taking, barge-in, call control, the
//! event stream and webhook payloads, and the provider traits it needs.

pub use voxline_codecs as codecs;

pub mod call;
pub mod config;
pub mod driver;
pub mod load_shedding;
pub mod media;
pub mod media_clock;
pub mod platform;
pub mod provider;
pub mod report;
pub mod ring;
pub mod testkit;
pub mod tick_grid;
pub mod vad;
pub mod workers;
