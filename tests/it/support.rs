//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod app;
pub mod recording_rp;
