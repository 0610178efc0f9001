//! End-to-end test support for tokenbroker.

pub mod app;
pub mod daemon;
pub mod emulators;
pub mod fake;
pub mod peers;
pub mod system;
