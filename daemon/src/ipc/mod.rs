//! Transports. Each decodes requests, identifies the caller by the kernel, and calls the same
//! [`crate::broker::Broker`] methods.

#[cfg(unix)]
pub mod socket;

#[cfg(unix)]
pub mod dbus;
