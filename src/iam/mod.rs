//! Identity and access: tenants, users and roles, console sessions, API keys,
//! login throttling, the audit log, and the extractors that enforce roles.

pub mod auth;
pub mod domain;
pub mod entity;
pub mod http;
pub mod password;
pub mod store;
pub mod throttle;

pub use auth::{AdminOnly, AnyRole, Auth, Marketers, Principal, Staff, Supervisors};
pub use entity::Role;
