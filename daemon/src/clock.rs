//! Time as the daemon reads it: unix seconds, behind a trait so that the token engine's tests
//! can run a clock of their own.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current unix time in seconds (0 if the system clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A source of unix time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        now_unix()
    }
}
