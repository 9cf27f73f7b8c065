//! Shared network plumbing for every adapter, one copy of each: secrets, endpoint
//! resolution, the HTTP client, the SSE parser, the WebSocket connect helper and backoff.

pub mod backoff;
pub mod endpoint;
pub mod http;
pub mod query;
pub mod secret;
pub mod sse;
pub mod ws;

pub use backoff::{Backoff, Sleeper};
pub use endpoint::{Endpoint, Env, ProcessEnv, Service};
pub use http::{Auth, HttpClient, HttpTimeouts};
pub use query::Query;
pub use secret::ApiKey;
pub use sse::{SseEvent, SseParser};
pub use ws::{WsConnection, WsRequest};
