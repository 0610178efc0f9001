//! tokenbroker-client: the tokenbroker protocol (wire types, errors, version handshake) and a
//! blocking client for the daemon's local socket.
//!
//! This crate is the one home of every message type: the daemon, the CLI and the tray import
//! them from here. It has light dependencies so that apps can link it.

pub mod client;
#[cfg(feature = "dbus")]
pub mod dbus;
pub mod error;
pub mod paths;
pub mod protocol;
pub mod secret;
pub mod types;
pub mod version;

pub use client::{default_socket_path, Client, ClientError};
pub use error::{BrokerError, ErrorKind};
pub use paths::{SOCKET_ENV, SYSTEM_SOCKET};
pub use protocol::MAX_LINE;
pub use secret::SecretText;
pub use types::*;
pub use version::{Version, PROTOCOL_VERSION};
