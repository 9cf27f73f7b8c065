//! voxline-providers: one module per provider wire protocol, each implementing an engine trait.

pub use voxline_engine as engine;

#[cfg(feature = "fake-servers")]
pub mod fake;
pub mod net;
pub mod realtime;
