//! Benchmarks, each reporting its figure next to the limit measured in the same run
//! (design §7).
//!
//! - [`sign`]: full logout tokens per second per core against the raw signature rate.

pub mod sign;
