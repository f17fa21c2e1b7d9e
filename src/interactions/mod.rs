//! The interaction spine: every customer contact is an interaction with a
//! lifecycle and a timeline of events; events are stored, then published on
//! the bus and delivered to tenant webhooks.

pub mod domain;
pub mod entity;
pub mod http;
pub mod service;
pub mod webhooks;

pub use service::TimelineEvent;
