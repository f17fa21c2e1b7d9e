//! Contacts: the people a tenant reaches and serves. Their phones (E.164),
//! emails, time zones, tags and typed attributes; static lists and dynamic
//! segments (an expression language compiled to SQL); consent and
//! suppression per channel, and the one answer to "may we contact them
//! now"; CSV import as a resumable job, and CSV export.

pub mod consent;
pub mod domain;
pub mod entity;
pub mod http;
pub mod import;
pub mod lists;
mod phone_zones;
pub mod segment;
pub mod segment_sql;
pub mod store;
pub mod zones;
