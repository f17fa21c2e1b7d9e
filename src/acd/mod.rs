//! Automatic contact distribution: the routing catalogue (skills, queues,
//! agents), the pure routing engine, the service that runs one engine per
//! tenant on the interaction spine, its HTTP API, Erlang C and the
//! simulator.

pub mod catalog;
pub mod engine;
pub mod erlang;
pub mod http;
pub mod metrics;
pub mod replay;
pub mod service;
pub mod sim;
