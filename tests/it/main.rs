//! Integration tests: one binary, one shared `support` module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod api_connections;
mod api_ends;
mod api_errors;
mod api_redrive;
mod api_sessions_sid;
mod api_user_wide;
mod api_wait;
mod cli;
mod conformance;
mod crash;
mod delivery;
mod encrypted;
mod examples;
mod exhaustion;
mod fuzz;
mod head_of_line;
mod health;
mod hostile;
mod housekeeping;
mod keys;
mod mock_rp;
mod mock_ssf;
mod multinode;
mod openapi;
mod operator_webhook;
mod rate_limit;
mod sender;
mod shutdown;
mod store;
mod strict_policy;
mod support;
mod token;
mod tokens;
mod verify;
