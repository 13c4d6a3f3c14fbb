//! Integration tests: one binary, one shared `support` module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod crash;
mod delivery;
mod keys;
mod mock_rp;
mod sender;
mod store;
mod support;
mod token;
mod verify;
