//! Switchboard: a cloud contact center in one binary.
//!
//! See `ARCHITECTURE.md` for the map of this crate.

pub mod acd;
pub mod app;
pub mod asr;
pub mod bus;
pub mod cli;
pub mod config;
pub mod contacts;
pub mod crypto;
pub mod db;
pub mod error;
pub mod http;
pub mod iam;
pub mod ids;
pub mod interactions;
pub mod ivr;
pub mod jobs;
pub mod media;
pub mod metrics;
pub mod prompts;
pub mod seed;
pub mod sip;
pub mod state;
pub mod telemetry;
