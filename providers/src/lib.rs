//! voxline-providers: one module per provider wire protocol, each implementing an engine trait.

pub use voxline_engine as engine;

pub mod offline;
