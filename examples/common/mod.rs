//! Code the examples share: command-line helpers, WAV input, the output folder, the live
//! transcript, the host side of a call (events, webhooks, tool results) and the simulated
//! caller. Each example includes this folder with `#[path = "common/mod.rs"] mod common;`;
//! it is not an example of its own (a folder without `main.rs` is not one to cargo).

// Every example uses a different part of this code.
#![allow(dead_code)]

pub mod audio;
pub mod caller;
pub mod cli;
pub mod codec;
pub mod cpu;
pub mod host;
pub mod output;
pub mod sim_call;
pub mod transcript;
pub mod wav;
