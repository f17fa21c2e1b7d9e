//! The SIP endpoint: rsipstack's transport and transaction layers over UDP
//! and TCP on one port, a guard in front (rate limit, bans, scanners, size
//! and header-count limits) and the registrar behind. Calls, the B2BUA and
//! trunks come later.

pub mod call;
pub mod digest;
pub mod endpoint;
pub mod guard;
pub mod http;
pub mod numbers;
pub mod registrar;
pub mod sanity;
pub mod sdp;
pub mod store;

pub use endpoint::{SipAddrs, SipServer};
pub use http::{configure, tenant_domain};

use std::sync::Arc;

use crate::config::SipSettings;

/// What the request handlers share.
#[derive(Debug)]
pub struct Sip {
    pub settings: SipSettings,
    pub db: sea_orm::DatabaseConnection,
    pub nonces: digest::NonceKey,
    pub counts: registrar::NonceCounts,
    pub guard: Arc<guard::Guard>,
    /// Calls in progress (INVITE, CANCEL, ACK, BYE).
    pub calls: call::Calls,
}
