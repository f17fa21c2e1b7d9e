//! The one integration test binary: every module talks to a real server.

mod helpers;
mod node;
mod prompts;

mod audience;
mod auth;
mod bad_input;
mod browser;
mod cli;
mod cluster;
mod contacts;
mod flows;
mod flows_sip;
mod health;
mod imports;
mod interactions;
mod isolation;
mod jobs;
mod media;
mod media_session;
mod replay;
mod routing;
mod routing_config;
mod routing_metrics;
mod schema_fuzz;
mod sip;
mod sip_bridge;
mod sip_calls;
mod sip_forward;
mod sip_media_e2e;
mod sip_torture;
mod sip_transfer;
mod sip_transports;
mod sip_trunks;
mod sipp;
mod webhooks;
