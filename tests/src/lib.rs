//! End-to-end test support for tokenbroker.

pub mod peers;
pub mod daemon;
