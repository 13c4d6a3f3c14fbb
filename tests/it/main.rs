//! Integration tests: one binary, one shared `support` module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod api_connections;
mod cli;
mod conformance;
mod crash;
mod delivery;
mod examples;
mod head_of_line;
mod housekeeping;
mod keys;
mod mock_rp;
mod multinode;
mod sender;
mod shutdown;
mod store;
mod support;
mod token;
mod verify;
