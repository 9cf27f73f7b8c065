//! One call: settings, the sans-IO core, the event stream and the agent's playout.

pub mod chunker;
pub mod core;
pub mod events;
pub mod playout;
pub mod settings;

pub use self::core::{Action, Call, CallCommand, CommandError, OpId};
pub use events::{CallEvent, CallStatus, EndReason, EventRecord, TurnLatency, Usage};
pub use settings::{
    CallSettings, CallTool, Direction, HistoryLimit, SilenceSettings, ToolKind,
    TransferDestination, TurnSettings, DEFAULT_HISTORY_LIMIT,
};
