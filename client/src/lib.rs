//! tokenbroker-client: the tokenbroker protocol (wire types, errors, version handshake) and a
//! blocking client for the daemon's local socket.
//!
//! This crate is the one home of every message type: the daemon, the CLI and the tray import
//! them from here. It has light dependencies so that apps can link it.

pub mod client;
#[cfg(feature = "dbus")]
pub mod dbus;
pub mod error;
pub mod protocol;
pub mod secret;
pub mod types;

pub use client::{default_socket_path, Client, ClientError};
pub use error::{BrokerError, ErrorKind};
pub use protocol::{Version, MAX_LINE, PROTOCOL_VERSION};
pub use secret::SecretText;
pub use types::*;
