//! End-to-end test support for tokenbroker.

pub mod daemon;
pub mod fake;
pub mod peers;
