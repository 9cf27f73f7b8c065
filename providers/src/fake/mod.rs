//! Fake provider servers that speak the real wire protocols on 127.0.0.1, for tests of
//! the adapters and of whole calls. Compiled only with the `fake-servers` feature.
//!
//! [`http`] and [`ws`] are the scripted transports; each provider module (e.g.
//! [`openai`]) builds a strict, scriptable fake of one service on top of them.

pub mod deepgram;
pub mod elevenlabs;
pub mod http;
pub mod openai;
pub mod realtime;
pub mod ws;
