//! voxline-providers: one module per provider wire protocol, each implementing an engine trait.

pub use voxline_engine as engine;

pub mod deepgram;
pub mod elevenlabs;
pub mod factory;
#[cfg(feature = "fake-servers")]
pub mod fake;
pub mod net;
pub mod offline;
pub mod openai_llm;
pub mod openai_tts;
pub mod pcm;
pub mod realtime;
