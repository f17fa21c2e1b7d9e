//! The one integration test binary: every module talks to a real server.

mod helpers;

mod auth;
mod bad_input;
mod browser;
mod cli;
mod cluster;
mod health;
mod interactions;
mod isolation;
mod jobs;
mod schema_fuzz;
mod webhooks;
