//! IVR flows: Rhai scripts that take a caller (or a chat customer) from
//! the first ring to a queue.
//!
//! - `engine.rs`: the sandboxed engine, the flow API and runs by replay
//!   (a session is its journal of commands and answers).
//! - `calendar.rs`: business hours and holidays in a time zone.
//! - `refs.rs`: the prompts, queues, skills, phrases and hosts a script
//!   names, for validation on save.
//! - `testing.rs`: the simulator and offline flow tests (`*.test.toml`);
//!   `files.rs` runs test files from disk (`switchboard flow test`).
//! - `store.rs`, `service.rs`, `http.rs`: versions, publishing, the
//!   compiled cache, validation and the API. The voice channel is
//!   `sip/call_flow.rs`.

pub mod calendar;
pub mod engine;
pub mod files;
pub mod http;
pub mod refs;
pub mod service;
pub mod store;
pub mod testing;

#[cfg(test)]
mod tests;

pub use engine::{Command, Context, Diagnostic, End, Entry, Flow, FlowEngine, Limits, Next};
