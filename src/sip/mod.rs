//! The SIP endpoint: rsipstack's transport and transaction layers over UDP
//! and TCP on one port, a guard in front (rate limit, bans, scanners, size
//! and header-count limits) and the registrar behind; inbound calls
//! (`call`), calls we place (`uac`) and the agent's leg of a queued call
//! (`agent_leg`), trunks (`trunks`), their OPTIONS keep-alive (`keepalive`)
//! and registration (`trunk_reg`), and the outbound calls through them (`outbound`).

pub mod agent_leg;
pub mod call;
pub mod digest;
pub mod endpoint;
pub mod forward;
pub mod guard;
pub mod http;
pub mod keepalive;
pub mod midcall;
pub mod numbers;
pub mod outbound;
pub mod registrar;
pub mod sanity;
pub mod sdp;
pub mod store;
pub mod trunk_reg;
pub mod trunks;
pub mod uac;

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
    /// Requests we originate and the dialogs they make.
    pub uac: uac::Uac,
    /// Agents' phones rung for offered calls.
    pub legs: agent_leg::Legs,
    /// Outbound calls through trunks, and the trunks' rate limits.
    pub outbound: outbound::Outbound,
    /// Trunks' OPTIONS keep-alive outcomes.
    pub health: keepalive::Health,
    /// Trunks' registrations.
    pub registrations: trunk_reg::Registrations,
    /// Opens trunks' sealed passwords.
    pub sealer: crate::crypto::Sealer,
    /// Prompts played to callers (greetings), each loaded once.
    pub prompts: crate::media::prompt::PromptCache,
}
