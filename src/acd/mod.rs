//! Automatic contact distribution. For now the routing catalogue: skills,
//! queues and agents, as the demo data and the spine reference them. The
//! routing engine itself arrives with its own issue.

pub mod catalog;
pub mod engine;
pub mod erlang;
pub mod sim;
