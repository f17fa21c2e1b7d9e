//! The one integration test binary: every module talks to a real server.

mod helpers;

mod health;
